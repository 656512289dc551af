"use strict";
// SPEC.md section 3: message:send (stored messages), history on join,
// message:read, on `/` and on `/chat`.

const { describe, it, before, after, afterEach } = require("node:test");
const assert = require("node:assert/strict");
const { startServer } = require("../lib/server");
const c = require("../lib/client");

let server;
before(async () => {
  server = await startServer();
});
after(async () => {
  c.closeAll();
  await server?.stop();
});
afterEach(() => c.closeAll());

async function join(socket, room) {
  assert.deepEqual(await c.ack(socket, "room:join", room), { ok: true }, `${socket.user} joins ${JSON.stringify(room)}`);
}

async function joinAll(room, ...sockets) {
  for (const s of sockets) await join(s, room);
}

async function send(socket, roomId, content, type) {
  const payload = type === undefined ? { roomId, content } : { roomId, content, type };
  const res = await c.ack(socket, "message:send", payload);
  assert.equal(typeof res?.id, "string", `message:send ack should be {id}, got ${JSON.stringify(res)}`);
  assert.deepEqual(res, { id: res.id });
  return res.id;
}

// message:new is {id, sender: {id, name}, content, type, createdAt}; a
// roomId equal to the room is tolerated (stored messages carry one).
function assertMessageNew(got, { id, room, sender, name, content, type, t0 }) {
  const keys = Object.keys(got).sort();
  const allowed = ["content", "createdAt", "id", "roomId", "sender", "type"];
  assert.deepEqual(keys.filter((k) => !allowed.includes(k)), [], `unexpected fields in ${JSON.stringify(got)}`);
  if ("roomId" in got) assert.equal(got.roomId, room);
  assert.equal(got.id, id);
  assert.deepEqual(got.sender, { id: sender, name });
  assert.equal(got.content, content);
  assert.equal(got.type, type);
  assert.equal(typeof got.createdAt, "number");
  assert.ok(got.createdAt >= t0 - 5000 && got.createdAt <= Date.now() + 5000, `createdAt ${got.createdAt}`);
}

function assertStored(msg, { id, room, sender, name, content, type }) {
  assert.deepEqual(
    { ...msg, createdAt: 0 },
    { id, roomId: room, sender: { id: sender, name }, content, type, createdAt: 0 },
  );
  assert.equal(typeof msg.createdAt, "number");
}

for (const ns of ["/", "/chat"]) {
  const otherNs = ns === "/" ? "/chat" : "/";

  describe(c.title(`message:send on ${ns}`), () => {
    it("ack {id}; every member, the sender included: message:new {id, sender:{id,name}, content, type:\"text\", createdAt}; non-members: nothing", c.T, async () => {
      const room = c.uid("room");
      const a = await c.connect(server, ns, { name: "Alice Sender" });
      const b = await c.connect(server, ns);
      const outsider = await c.connect(server, ns);
      const elsewhere = await c.connect(server, otherNs);
      await joinAll(room, a, b);
      await join(elsewhere, room);

      const t0 = Date.now();
      const waits = [a, b].map((s) => c.waitFor(s, "message:new", (m) => m?.content === "hello stored"));
      const none = [outsider, elsewhere].map((s) => c.expectNone(s, "message:new", 300));
      const id = await send(a, room, "hello stored");
      for (const w of waits) {
        assertMessageNew(await w, { id, room, sender: a.user, name: "Alice Sender", content: "hello stored", type: "text", t0 });
      }
      await Promise.all(none);
    });

    it("keeps the given type", c.T, async () => {
      const room = c.uid("room");
      const a = await c.connect(server, ns);
      await join(a, room);
      const got = c.waitFor(a, "message:new", (m) => m?.content === "https://example.org/cat.png");
      const t0 = Date.now();
      const id = await send(a, room, "https://example.org/cat.png", "image");
      assertMessageNew(await got, {
        id, room, sender: a.user, name: a.userName, content: "https://example.org/cat.png", type: "image", t0,
      });
    });

    it("ids of successive messages are distinct strings in increasing (string) order", c.T, async () => {
      const room = c.uid("room");
      const a = await c.connect(server, ns);
      const b = await c.connect(server, ns);
      await joinAll(room, a, b);
      const ids = [];
      for (let i = 0; i < 12; i++) ids.push(await send(i % 2 ? a : b, room, `n${i}`));
      for (let i = 1; i < ids.length; i++) {
        assert.ok(ids[i - 1] < ids[i], `ids out of order: ${JSON.stringify(ids)}`);
      }
      const delivered = await c.eventually(() => {
        const got = c.received(b, "message:new").filter((m) => m?.content?.startsWith("n"));
        assert.equal(got.length, 12);
        return got;
      });
      assert.deepEqual(delivered.map((m) => m.id), ids, "message:new arrives in the order of the ids");
    });

    it('a non-member gets {error:"not a member"}; nothing is sent or stored', c.T, async () => {
      const room = c.uid("room");
      const a = await c.connect(server, ns);
      const intruder = await c.connect(server, ns);
      await join(a, room);
      const none = [a, intruder].map((s) => c.expectNone(s, "message:new", 300));
      assert.deepEqual(await c.ack(intruder, "message:send", { roomId: room, content: "spam" }), {
        error: "not a member",
      });
      await Promise.all(none);
      const later = await c.connect(server, ns);
      const history = c.waitFor(later, "room:history");
      await join(later, room);
      assert.deepEqual(await history, []);
    });

    it("a malformed message:send is refused with {error}; nothing is sent", c.T, async () => {
      const room = c.uid("room");
      const a = await c.connect(server, ns);
      await join(a, room);
      const none = c.expectNone(a, "message:new", 300);
      for (const bad of [{ roomId: room }, { content: "no room" }, room, null, 5, [room, "x"]]) {
        const res = await c.ack(a, "message:send", bad);
        assert.equal(typeof res?.error, "string", `payload ${JSON.stringify(bad)}: ack ${JSON.stringify(res)}`);
      }
      await none;
    });
  });

  describe(c.title(`room:history on ${ns}`), () => {
    it("a later joiner gets the stored messages, oldest first, as {id, roomId, sender:{id,name}, content, type, createdAt}", c.T, async () => {
      const room = c.uid("room");
      const a = await c.connect(server, ns, { name: "Hist A" });
      const b = await c.connect(server, ns, { name: "Hist B" });
      await joinAll(room, a, b);
      const news = c.waitFor(a, "message:new", (m) => m?.content === "three");
      const ids = [await send(a, room, "one"), await send(b, room, "two", "image"), await send(a, room, "three")];
      const createdAt = (await news).createdAt;

      const later = await c.connect(server, ns);
      const history = c.waitFor(later, "room:history");
      await join(later, { roomId: room });
      const msgs = await history;
      assert.equal(msgs.length, 3, JSON.stringify(msgs));
      assertStored(msgs[0], { id: ids[0], room, sender: a.user, name: "Hist A", content: "one", type: "text" });
      assertStored(msgs[1], { id: ids[1], room, sender: b.user, name: "Hist B", content: "two", type: "image" });
      assertStored(msgs[2], { id: ids[2], room, sender: a.user, name: "Hist A", content: "three", type: "text" });
      assert.equal(msgs[2].createdAt, createdAt, "createdAt in history equals the one of message:new");
      assert.ok(msgs[0].createdAt <= msgs[1].createdAt && msgs[1].createdAt <= msgs[2].createdAt);
    });

    it("{roomId, since}: only the messages strictly after since", c.T, async () => {
      const room = c.uid("room");
      const a = await c.connect(server, ns);
      await join(a, room);
      const ids = [];
      for (const content of ["m0", "m1", "m2", "m3"]) ids.push(await send(a, room, content));

      const later = await c.connect(server, ns);
      let history = c.waitFor(later, "room:history");
      await join(later, { roomId: room, since: ids[1] });
      assert.deepEqual((await history).map((m) => [m.id, m.content]), [[ids[2], "m2"], [ids[3], "m3"]]);

      const last = await c.connect(server, ns);
      history = c.waitFor(last, "room:history");
      await join(last, { roomId: room, since: ids[3] });
      assert.deepEqual(await history, []);
    });

    it("rooms keep separate histories (and namespaces too)", c.T, async () => {
      const r1 = c.uid("room");
      const r2 = c.uid("room");
      const a = await c.connect(server, ns);
      await joinAll(r1, a);
      await joinAll(r2, a);
      await send(a, r1, "in r1");
      await send(a, r2, "in r2");
      const later = await c.connect(server, ns);
      const history = c.waitFor(later, "room:history");
      await join(later, r2);
      assert.deepEqual((await history).map((m) => m.content), ["in r2"]);
      const other = await c.connect(server, otherNs);
      const h2 = c.waitFor(other, "room:history");
      await join(other, r1);
      assert.deepEqual(await h2, []);
    });
  });

  describe(c.title(`message:read on ${ns}`), () => {
    it("others in the room get message:read {messageId, userId} the first time only; a repeat, even from the user's other socket, acks ok and sends nothing", c.T, async () => {
      const room = c.uid("room");
      const bob = c.uid("bob");
      const a = await c.connect(server, ns);
      const b1 = await c.connect(server, ns, { user: bob });
      const b2 = await c.connect(server, ns, { user: bob });
      const d = await c.connect(server, ns);
      const outsider = await c.connect(server, ns);
      await joinAll(room, a, b1, b2, d);
      const messageId = await send(a, room, "please read");

      const expected = { messageId, userId: bob };
      const waits = [a, b2, d].map((s) => c.waitFor(s, "message:read", (p) => p?.messageId === messageId));
      const none = [b1, outsider].map((s) => c.expectNone(s, "message:read", 300));
      assert.deepEqual(await c.ack(b1, "message:read", { messageId, roomId: room }), { ok: true });
      for (const w of waits) assert.deepEqual(await w, expected);
      await Promise.all(none);

      const again = [a, b1, b2, d].map((s) => c.expectNone(s, "message:read", 300));
      assert.deepEqual(await c.ack(b1, "message:read", { messageId, roomId: room }), { ok: true });
      assert.deepEqual(await c.ack(b2, "message:read", { messageId, roomId: room }), { ok: true });
      await Promise.all(again);
    });

    it("an unknown message is refused with {error}; nothing is sent", c.T, async () => {
      const room = c.uid("room");
      const a = await c.connect(server, ns);
      const b = await c.connect(server, ns);
      await joinAll(room, a, b);
      const none = [a, b].map((s) => c.expectNone(s, "message:read", 300));
      const res = await c.ack(b, "message:read", { messageId: "no-such-message", roomId: room });
      assert.equal(typeof res?.error, "string", `ack ${JSON.stringify(res)}`);
      const res2 = await c.ack(b, "message:read", { roomId: room });
      assert.equal(typeof res2?.error, "string", `ack ${JSON.stringify(res2)}`);
      await Promise.all(none);
    });

    it('a non-member gets {error:"not a member"}; nothing is sent', c.T, async () => {
      const room = c.uid("room");
      const a = await c.connect(server, ns);
      const intruder = await c.connect(server, ns);
      await join(a, room);
      const messageId = await send(a, room, "members only");
      const none = c.expectNone(a, "message:read", 300);
      assert.deepEqual(await c.ack(intruder, "message:read", { messageId, roomId: room }), { error: "not a member" });
      await none;
    });
  });
}

describe(c.title("SWITCHBOARD_HISTORY_ON_JOIN"), () => {
  let small;
  before(async () => {
    small = await startServer({ env: { SWITCHBOARD_HISTORY_ON_JOIN: "3" } });
  });
  after(async () => {
    c.closeAll();
    await small?.stop();
  });

  it("room:history holds the newest N messages, oldest first", c.T, async () => {
    const room = c.uid("room");
    const a = await c.connect(small, "/");
    await join(a, room);
    for (const content of ["h1", "h2", "h3", "h4", "h5"]) await send(a, room, content);
    const later = await c.connect(small, "/");
    const history = c.waitFor(later, "room:history");
    await join(later, room);
    assert.deepEqual((await history).map((m) => m.content), ["h3", "h4", "h5"]);
  });
});
