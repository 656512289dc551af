"use strict";
// Connection state recovery: a client whose transport is cut reconnects by
// itself and gets what it missed (socket.recovered), or recovered === false
// when that is impossible. With recovery on, the server appends the offset
// as a trailing string argument to broadcast events; the helpers only look
// at the first argument.

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

async function join(socket, room) {
  assert.deepEqual(await c.ack(socket, "room:join", room), { ok: true });
}

// A (reconnecting) and B in one room; A has received one broadcast, so that
// it holds an offset.
async function pair(server) {
  const room = c.uid("room");
  const a = await c.connect(server, "/", { reconnection: true });
  const b = await c.connect(server, "/");
  await join(a, room);
  await join(b, room);
  const got = c.waitFor(a, "room:message", (m) => m?.text === "before");
  assert.deepEqual(await c.ack(b, "room:message", { roomId: room, text: "before" }), { ok: true });
  await got;
  return { room, a, b };
}

// Cuts A's transport (no DISCONNECT packet: a lost connection).
async function cut(a) {
  const disconnected = c.waitDisconnect(a, 3000, { fromDisconnect: a.__rec.disconnects.length });
  a.io.engine.close();
  await disconnected;
}

const count = (socket, event, pred) => c.received(socket, event, { predicate: pred }).length;

describe(c.title("connection state recovery"), () => {
  it("after a cut transport: recovered, same id, every missed packet exactly once and in order, still in the room", c.T, async () => {
    const server = await fresh();
    const { room, a, b } = await pair(server);
    const id = a.id;
    const reconnected = c.waitConnect(a, 5000);
    await cut(a);
    assert.equal(a.connected, false);

    for (const text of ["missed-1", "missed-2", "missed-3"]) {
      assert.deepEqual(await c.ack(b, "room:message", { roomId: room, text }), { ok: true });
    }
    const sent = await c.ack(b, "message:send", { roomId: room, content: "missed stored" });
    const chatId = c.uid("missed-chat");
    assert.deepEqual(await c.ack(b, "chat:message", { id: chatId }), { ok: true });

    await reconnected;
    assert.equal(a.recovered, true, "socket.recovered");
    assert.equal(a.id, id, "the socket id is unchanged");
    await c.eventually(() => assert.equal(count(a, "chat:message", (m) => m?.id === chatId), 1), 3000);
    await c.sleep(300);
    const texts = c.received(a, "room:message").map((m) => m.text).filter((t) => t.startsWith("missed"));
    assert.deepEqual(texts, ["missed-1", "missed-2", "missed-3"], "each missed room:message once, in order");
    assert.equal(count(a, "message:new", (m) => m?.id === sent.id), 1, "the missed message:new once");
    assert.equal(count(a, "chat:message", (m) => m?.id === chatId), 1, "the missed chat:message once");
    assert.equal(count(a, "room:message", (m) => m?.text === "before"), 1, "nothing replayed twice");

    // still a member without joining again, in both directions
    const got = c.waitFor(a, "room:message", (m) => m?.text === "after");
    assert.deepEqual(await c.ack(b, "room:message", { roomId: room, text: "after" }), { ok: true });
    await got;
    const back = c.waitFor(b, "room:message", (m) => m?.text === "from a");
    assert.deepEqual(await c.ack(a, "room:message", { roomId: room, text: "from a" }), { ok: true });
    await back;
  });

  it("recovers twice in a row", c.T, async () => {
    const server = await fresh();
    const { room, a, b } = await pair(server);
    const id = a.id;
    for (const round of [1, 2]) {
      const reconnected = c.waitConnect(a, 5000);
      await cut(a);
      assert.deepEqual(await c.ack(b, "room:message", { roomId: room, text: `round-${round}` }), { ok: true });
      await reconnected;
      assert.equal(a.recovered, true, `round ${round}`);
      assert.equal(a.id, id);
      await c.waitFor(a, "room:message", (m) => m?.text === `round-${round}`, 3000, { from: 0 });
    }
    await c.sleep(200);
    assert.equal(count(a, "room:message", (m) => m?.text?.startsWith("round-")), 2);
  });

  it("after a server restart (unknown pid): recovered === false, a new id, no rooms", { timeout: 30_000 }, async () => {
    const server = await fresh();
    const { room, a } = await pair(server);
    const id = a.id;
    const reconnected = c.waitConnect(a, 15_000);
    await server.restart();
    await reconnected;
    assert.equal(a.recovered, false);
    assert.notEqual(a.id, id);
    assert.deepEqual(await c.ack(a, "room:message", { roomId: room, text: "x" }), { error: "not a member" });
  });

  it("with a pid the server never issued: recovered === false, nothing replayed", c.T, async () => {
    const server = await fresh();
    const { room, a, b } = await pair(server);
    const id = a.id;
    const reconnected = c.waitConnect(a, 5000);
    await cut(a);
    a._pid = "not-a-real-pid";
    assert.deepEqual(await c.ack(b, "room:message", { roomId: room, text: "lost" }), { ok: true });
    await reconnected;
    assert.equal(a.recovered, false);
    assert.notEqual(a.id, id);
    await c.expectNone(a, "room:message", 300, (m) => m?.text === "lost", { from: 0 });
  });

  it("after the recovery window: recovered === false", c.T, async () => {
    const server = await fresh({ SWITCHBOARD_RECOVERY_WINDOW: "500ms" });
    const { a } = await pair(server);
    a.io.reconnectionDelay(1500);
    a.io.reconnectionDelayMax(1500);
    const reconnected = c.waitConnect(a, 6000);
    await cut(a);
    await reconnected;
    assert.equal(a.recovered, false);
  });

  it("SWITCHBOARD_RECOVERY_WINDOW=0s: no recovery, and no offset argument on events", c.T, async () => {
    const server = await fresh({ SWITCHBOARD_RECOVERY_WINDOW: "0s" });
    const { room, a, b } = await pair(server);
    const args = c.waitForArgs(b, "room:message", (m) => m?.text === "plain");
    await c.ack(a, "room:message", { roomId: room, text: "plain" });
    assert.equal((await args).length, 1, `arguments: ${JSON.stringify(await args)}`);
    const reconnected = c.waitConnect(a, 5000);
    await cut(a);
    await c.ack(b, "room:message", { roomId: room, text: "gone" });
    await reconnected;
    assert.ok(!a.recovered, `recovered is ${a.recovered}`);
    await c.expectNone(a, "room:message", 300, (m) => m?.text === "gone", { from: 0 });
  });
});
