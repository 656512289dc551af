"use strict";
// SPEC.md section 3: chat:message and announcement, on `/` and on `/chat`.

const { describe, it, before, after, afterEach } = require("node:test");
const assert = require("node:assert/strict");
const { startServer } = require("../lib/server");
const c = require("../lib/client");

function assertTimestamp(ts, t0) {
  assert.equal(typeof ts, "number", `timestamp should be a number, got ${JSON.stringify(ts)}`);
  assert.ok(ts >= t0 - 5000 && ts <= Date.now() + 5000, `timestamp ${ts} is not ms since the epoch near ${t0}`);
}

let server;
before(async () => {
  server = await startServer();
});
after(async () => {
  c.closeAll();
  await server?.stop();
});
afterEach(() => c.closeAll());

for (const ns of ["/", "/chat"]) {
  const otherNs = ns === "/" ? "/chat" : "/";

  describe(c.title(`chat:message on ${ns}`), () => {
    it("sender: ack and chat:message:received; every other socket, the sender's other socket too: chat:message; the sender itself: nothing", c.T, async () => {
      const alice = c.uid("alice");
      const a1 = await c.connect(server, ns, { user: alice });
      const a2 = await c.connect(server, ns, { user: alice });
      const b = await c.connect(server, ns);
      const elsewhere = await c.connect(server, otherNs, { user: alice });

      const payload = { id: c.uid("m"), text: "hello", extra: { n: 1, list: [1, "two"] } };
      const t0 = Date.now();
      const atA2 = c.waitFor(a2, "chat:message", (m) => m.id === payload.id);
      const atB = c.waitFor(b, "chat:message", (m) => m.id === payload.id);
      const receipt = c.waitFor(a1, "chat:message:received", (m) => m.id === payload.id);
      const noEcho = c.expectNone(a1, "chat:message");
      const noLeak = c.expectNone(elsewhere, "chat:message");

      assert.deepEqual(await c.ack(a1, "chat:message", payload), { ok: true });
      assert.deepEqual(await receipt, { id: payload.id, status: "delivered" });
      for (const got of [await atA2, await atB]) {
        assertTimestamp(got.timestamp, t0);
        assert.deepEqual(got, { ...payload, sender: alice, timestamp: got.timestamp });
      }
      await noEcho;
      await noLeak;
    });

    it("the server sets sender and timestamp: a client cannot pose as another user", c.T, async () => {
      const a = await c.connect(server, ns);
      const b = await c.connect(server, ns);
      const id = c.uid("m");
      const got = c.waitFor(b, "chat:message", (m) => m.id === id);
      const t0 = Date.now();
      await c.ack(a, "chat:message", { id, sender: "mallory", timestamp: 1 });
      const m = await got;
      assert.equal(m.sender, a.user);
      assertTimestamp(m.timestamp, t0);
    });

    it("is delivered when sent without an acknowledgement", c.T, async () => {
      const a = await c.connect(server, ns);
      const b = await c.connect(server, ns);
      const id = c.uid("m");
      const got = c.waitFor(b, "chat:message", (m) => m.id === id);
      const receipt = c.waitFor(a, "chat:message:received", (m) => m.id === id);
      a.emit("chat:message", { id, text: "no ack" });
      assert.equal((await got).text, "no ack");
      assert.deepEqual(await receipt, { id, status: "delivered" });
    });

    it("a payload without id, or not an object, is refused with {error}; nobody receives; the sender stays connected", c.T, async () => {
      const alice = c.uid("alice");
      const a1 = await c.connect(server, ns, { user: alice });
      const a2 = await c.connect(server, ns, { user: alice });
      const b = await c.connect(server, ns);
      const from = [a1, a2, b].map(c.mark);

      for (const bad of [{ text: "no id" }, "a string", 42, null, [1, 2], true]) {
        const res = await c.ack(a1, "chat:message", bad);
        assert.equal(typeof res?.error, "string", `payload ${JSON.stringify(bad)}: ack ${JSON.stringify(res)}`);
      }
      const res = await c.ack(a1, "chat:message");
      assert.equal(typeof res?.error, "string", `no payload: ack ${JSON.stringify(res)}`);

      await c.expectNone(a2, "chat:message", 250, undefined, { from: from[1] });
      await c.expectNone(b, "chat:message", 0, undefined, { from: from[2] });
      await c.expectNone(a1, "chat:message:received", 0, undefined, { from: from[0] });
      assert.equal(a1.connected, true);
      const id = c.uid("m");
      const got = c.waitFor(b, "chat:message", (m) => m.id === id);
      assert.deepEqual(await c.ack(a1, "chat:message", { id }), { ok: true });
      await got;
    });
  });

  describe(c.title(`announcement on ${ns}`), () => {
    it("from role admin: every socket of the namespace, the sender included, gets the payload; ack {ok:true}", c.T, async () => {
      const admin = await c.connect(server, ns, { role: "admin" });
      const u1 = await c.connect(server, ns);
      const u2 = await c.connect(server, ns);
      const elsewhere = await c.connect(server, otherNs);
      const payload = { title: c.uid("news"), body: "maintenance at noon", n: [1, 2, 3] };
      const waits = [admin, u1, u2].map((s) => c.waitFor(s, "announcement", (p) => p?.title === payload.title));
      const noLeak = c.expectNone(elsewhere, "announcement");
      assert.deepEqual(await c.ack(admin, "announcement", payload), { ok: true });
      for (const w of waits) assert.deepEqual(await w, payload);
      await noLeak;
    });

    it("any payload: a plain string is passed as is", c.T, async () => {
      const admin = await c.connect(server, ns, { role: "admin" });
      const u1 = await c.connect(server, ns);
      const text = c.uid("plain announcement");
      const waits = [admin, u1].map((s) => c.waitFor(s, "announcement", (p) => p === text));
      assert.deepEqual(await c.ack(admin, "announcement", text), { ok: true });
      for (const w of waits) assert.equal(await w, text);
    });

    it('from role user: ack {error:"forbidden"} and nobody receives', c.T, async () => {
      const user = await c.connect(server, ns, { role: "user" });
      const other = await c.connect(server, ns);
      const admin = await c.connect(server, ns, { role: "admin" });
      const none = [user, other, admin].map((s) => c.expectNone(s, "announcement", 300));
      assert.deepEqual(await c.ack(user, "announcement", { title: "x" }), { error: "forbidden" });
      await Promise.all(none);
    });

    it('without a role claim the role is "user": forbidden', c.T, async () => {
      const s = await c.connect(server, ns, { role: null });
      const other = await c.connect(server, ns);
      const none = [s, other].map((x) => c.expectNone(x, "announcement", 300));
      assert.deepEqual(await c.ack(s, "announcement", "hello"), { error: "forbidden" });
      await Promise.all(none);
    });
  });
}

describe(c.title("SWITCHBOARD_ANNOUNCE_ROLES"), () => {
  let custom;
  before(async () => {
    custom = await startServer({ env: { SWITCHBOARD_ANNOUNCE_ROLES: "moderator,staff" } });
  });
  after(async () => {
    c.closeAll();
    await custom?.stop();
  });

  it("only the configured roles may announce", c.T, async () => {
    const mod = await c.connect(custom, "/", { role: "moderator" });
    const staff = await c.connect(custom, "/", { role: "staff" });
    const admin = await c.connect(custom, "/", { role: "admin" });
    for (const [sender, text] of [[mod, "from mod"], [staff, "from staff"]]) {
      const waits = [mod, staff, admin].map((s) => c.waitFor(s, "announcement", (p) => p === text));
      assert.deepEqual(await c.ack(sender, "announcement", text), { ok: true });
      await Promise.all(waits);
    }
    const none = [mod, staff, admin].map((s) => c.expectNone(s, "announcement", 300));
    assert.deepEqual(await c.ack(admin, "announcement", "from admin"), { error: "forbidden" });
    await Promise.all(none);
  });
});
