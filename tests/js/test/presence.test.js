"use strict";
// SPEC.md section 3, presence: users:online. Each test has its own server so
// that the lists are exact.

const { describe, it, afterEach } = require("node:test");
const assert = require("node:assert/strict");
const { startServer } = require("../lib/server");
const c = require("../lib/client");

const servers = [];
async function fresh(env) {
  const s = await startServer({ env });
  servers.push(s);
  return s;
}
afterEach(async () => {
  c.closeAll();
  await Promise.all(servers.splice(0).map((s) => s.stop()));
});

const sorted = (list) => [...list].sort();
const isList = (expected) => (list) => Array.isArray(list) && JSON.stringify(sorted(list)) === JSON.stringify(sorted(expected));

function assertNoDuplicates(...sockets) {
  for (const s of sockets) {
    for (const list of c.received(s, "users:online")) {
      assert.ok(Array.isArray(list), `users:online should be an array, got ${JSON.stringify(list)}`);
      assert.equal(new Set(list).size, list.length, `a user listed twice: ${JSON.stringify(list)}`);
    }
  }
}

describe(c.title("presence (users:online, broadcast on)"), () => {
  it("every socket of the namespace gets the list of online users, each once, when a user's first socket connects and when its last one disconnects", c.T, async () => {
    const server = await fresh();
    const alice = c.uid("alice");
    const bob = c.uid("bob");
    const a = await c.connect(server, "/", { user: alice });
    await c.waitFor(a, "users:online", isList([alice]), 3000, { from: 0 });

    const b1 = await c.connect(server, "/", { user: bob });
    await c.waitFor(a, "users:online", isList([alice, bob]), 3000, { from: 0 });
    await c.waitFor(b1, "users:online", isList([alice, bob]), 3000, { from: 0 });

    const b2 = await c.connect(server, "/", { user: bob });
    await c.sleep(200);
    assertNoDuplicates(a, b1, b2);

    // bob still has a socket: nobody is told bob left
    const stillThere = c.expectNone(a, "users:online", 300, (list) => !list.includes(bob));
    b1.disconnect();
    await stillThere;

    const from = c.mark(a);
    b2.disconnect();
    await c.waitFor(a, "users:online", isList([alice]), 3000, { from });
    assertNoDuplicates(a, b1, b2);
  });

  it("a user online only in /chat is reported to /chat sockets", c.T, async () => {
    const server = await fresh();
    const carol = c.uid("carol");
    const dave = c.uid("dave");
    const cs = await c.connect(server, "/chat", { user: carol });
    await c.waitFor(cs, "users:online", (l) => Array.isArray(l) && l.includes(carol), 3000, { from: 0 });
    await c.connect(server, "/chat", { user: dave });
    await c.waitFor(cs, "users:online", (l) => Array.isArray(l) && l.includes(carol) && l.includes(dave), 3000, { from: 0 });
  });

  it("updates are coalesced: a connection storm yields at most one list per interval", c.T, async () => {
    const intervalMs = 500;
    const server = await fresh({ SWITCHBOARD_PRESENCE_INTERVAL: `${intervalMs}ms` });
    const watcher = c.uid("watcher");
    const w = await c.connect(server, "/", { user: watcher });
    await c.waitFor(w, "users:online", isList([watcher]), 3000, { from: 0 });
    await c.sleep(intervalMs + 50);

    const users = Array.from({ length: 10 }, () => c.uid("storm"));
    const from = c.mark(w);
    const t0 = Date.now();
    await Promise.all(users.map((user) => c.connect(server, "/", { user })));
    await c.waitFor(w, "users:online", isList([watcher, ...users]), 5000, { from });
    const elapsed = Date.now() - t0;
    const count = c.received(w, "users:online", { from }).length;
    assert.ok(
      count <= Math.floor((elapsed + 50) / intervalMs) + 1,
      `${count} users:online in ${elapsed} ms with an interval of ${intervalMs} ms`,
    );
    assertNoDuplicates(w);
  });
});

describe(c.title("presence with SWITCHBOARD_PRESENCE_BROADCAST=false"), () => {
  it("a socket gets the list once when it connects and as the ack of users:online; nobody gets updates", c.T, async () => {
    const server = await fresh({ SWITCHBOARD_PRESENCE_BROADCAST: "false" });
    const alice = c.uid("alice");
    const bob = c.uid("bob");
    const a = await c.connect(server, "/", { user: alice });
    await c.waitFor(a, "users:online", isList([alice]), 3000, { from: 0 });

    const fromA = c.mark(a);
    const b = await c.connect(server, "/", { user: bob });
    await c.waitFor(b, "users:online", isList([alice, bob]), 3000, { from: 0 });
    await c.expectNone(a, "users:online", 300, undefined, { from: fromA });

    const list = await c.ack(a, "users:online");
    assert.ok(Array.isArray(list), `the ack should be the list, got ${JSON.stringify(list)}`);
    assert.deepEqual(sorted(list), sorted([alice, bob]));

    b.disconnect();
    await c.expectNone(a, "users:online", 300, undefined, { from: fromA });
    await c.eventually(async () => assert.deepEqual(await c.ack(a, "users:online"), [alice]));
    assert.equal(c.received(a, "users:online").length, 1, "exactly one users:online event, on connect");
    assert.equal(c.received(b, "users:online").length, 1, "exactly one users:online event, on connect");
  });
});
