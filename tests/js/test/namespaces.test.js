"use strict";
// SPEC.md sections 3 and 4: the `/chat` shorthand, separate rooms per
// namespace, and `/notifications`.

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
  assert.deepEqual(await c.ack(socket, "room:join", room), { ok: true });
}

describe(c.title("/chat namespace"), () => {
  it("message {roomId, content}: every member, the sender included, gets room:message {roomId, content, sender, timestamp}; others do not", c.T, async () => {
    const room = c.uid("room");
    const a = await c.connect(server, "/chat");
    const b = await c.connect(server, "/chat");
    const outsider = await c.connect(server, "/chat");
    await join(a, room);
    await join(b, room);
    const t0 = Date.now();
    const waits = [a, b].map((s) => c.waitFor(s, "room:message", (m) => m?.content === "short"));
    const none = [c.expectNone(outsider, "room:message", 300), c.expectNone(a, "message", 300), c.expectNone(b, "message", 300)];
    assert.deepEqual(await c.ack(a, "message", { roomId: room, content: "short" }), { ok: true });
    for (const w of waits) {
      const got = await w;
      assert.equal(typeof got.timestamp, "number");
      assert.ok(got.timestamp >= t0 - 5000 && got.timestamp <= Date.now() + 5000);
      assert.deepEqual(got, { roomId: room, content: "short", sender: a.user, timestamp: got.timestamp });
    }
    await Promise.all(none);
  });

  it('message from a non-member: {error:"not a member"}, nobody receives', c.T, async () => {
    const room = c.uid("room");
    const a = await c.connect(server, "/chat");
    const intruder = await c.connect(server, "/chat");
    await join(a, room);
    const none = [a, intruder].map((s) => c.expectNone(s, "room:message", 300));
    assert.deepEqual(await c.ack(intruder, "message", { roomId: room, content: "x" }), { error: "not a member" });
    await Promise.all(none);
  });

  it("rooms of /chat and / are separate, in both directions", c.T, async () => {
    const room = c.uid("r1");
    const user = c.uid("both");
    const root = await c.connect(server, "/", { user });
    const rootPeer = await c.connect(server, "/");
    const chat = await c.connect(server, "/chat", { user });
    const chatPeer = await c.connect(server, "/chat");
    await join(root, room);
    await join(rootPeer, room);
    await join(chatPeer, room);

    // the same user, in the room on `/` only, is not a member on /chat
    assert.deepEqual(await c.ack(chat, "message", { roomId: room, content: "x" }), { error: "not a member" });
    assert.deepEqual(await c.ack(chat, "room:message", { roomId: room, content: "x" }), { error: "not a member" });

    let got = c.waitFor(chatPeer, "room:message", (m) => m?.content === "on chat");
    let none = [root, rootPeer].map((s) => c.expectNone(s, "room:message", 300));
    await c.ack(chatPeer, "message", { roomId: room, content: "on chat" });
    await got;
    await Promise.all(none);

    got = c.waitFor(rootPeer, "room:message", (m) => m?.content === "on root");
    none = [chat, chatPeer].map((s) => c.expectNone(s, "room:message", 300));
    await c.ack(root, "room:message", { roomId: room, content: "on root" });
    await got;
    await Promise.all(none);
  });
});

describe(c.title("/notifications namespace"), () => {
  it("POST /api/notify reaches every socket of that user with `notification`, and nobody else", c.T, async () => {
    const u1 = c.uid("notified");
    const n1 = await c.connect(server, "/notifications", { user: u1 });
    const n2 = await c.connect(server, "/notifications", { user: u1 });
    const n3 = await c.connect(server, "/notifications");
    const root = await c.connect(server, "/", { user: u1 });
    const data = { text: "ping", id: c.uid("n"), nested: { a: [1, 2] } };
    const waits = [n1, n2].map((s) => c.waitFor(s, "notification", (d) => d?.id === data.id));
    const none = [n3, root].map((s) => c.expectNone(s, "notification", 300));
    const res = await server.api("POST", "/api/notify", { userId: u1, data });
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(res.body, { ok: true });
    for (const w of waits) assert.deepEqual(await w, data);
    await Promise.all(none);
  });

  it("a socket is in the room user:<userId>", c.T, async () => {
    const u1 = c.uid("roomed");
    const n1 = await c.connect(server, "/notifications", { user: u1 });
    const other = await c.connect(server, "/notifications");
    const got = c.waitFor(n1, "custom", (d) => d === "via room");
    const none = c.expectNone(other, "custom", 300);
    const res = await server.api("POST", "/api/emit", {
      event: "custom",
      data: "via room",
      namespace: "/notifications",
      rooms: [`user:${u1}`],
    });
    assert.equal(res.status, 200, res.text);
    await got;
    await none;
  });

  it("notifying a user without sockets answers {ok:true}", c.T, async () => {
    const res = await server.api("POST", "/api/notify", { userId: c.uid("nobody"), data: 1 });
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(res.body, { ok: true });
  });
});
