"use strict";
// What only a cluster has: clients on different gateways talking, and a
// client behind a round-robin load balancer with no sticky sessions
// (docs/cluster.md, "No sticky sessions"): every polling request may reach
// another gateway, which forwards it to the session's owner; the WebSocket
// upgrade request is proxied the same way.
//
// Runs with SB_TOPOLOGY=cluster (npm run test:cluster); skipped otherwise.

const { describe, it, before, after, afterEach } = require("node:test");
const assert = require("node:assert/strict");
const { startServer, TOPOLOGY } = require("../lib/server");
const { startProxy } = require("../lib/rr-proxy");
const c = require("../lib/client");

const skip = TOPOLOGY === "cluster" ? false : "needs a cluster: runs with SB_TOPOLOGY=cluster (npm run test:cluster)";

async function join(socket, room) {
  assert.deepEqual(await c.ack(socket, "room:join", room), { ok: true });
}

// a and b in one room exchange `rounds` messages each way; each receives
// every message of the other, once, in order.
async function exchange(a, b, room, rounds = 5) {
  for (let i = 0; i < rounds; i++) {
    for (const [from, to] of [
      [a, b],
      [b, a],
    ]) {
      const text = `${from.user}-${i}`;
      const got = c.waitFor(to, "room:message", (m) => m?.text === text);
      assert.deepEqual(await c.ack(from, "room:message", { roomId: room, text }), { ok: true });
      const message = await got;
      assert.equal(message.sender, from.user);
    }
  }
  await c.sleep(200);
  for (const [socket, other] of [
    [a, b],
    [b, a],
  ]) {
    const texts = c.received(socket, "room:message", { predicate: (m) => m?.sender === other.user }).map((m) => m.text);
    assert.deepEqual(
      texts,
      Array.from({ length: rounds }, (_, i) => `${other.user}-${i}`),
      `${socket.user}: every message of ${other.user} once, in order`,
    );
  }
}

describe(c.title("cluster: gateways and a round-robin load balancer"), { skip }, () => {
  let server;
  let proxy;
  before(async () => {
    server = await startServer();
    proxy = await startProxy(server.gatewayUrls);
  });
  after(async () => {
    c.closeAll();
    if (proxy) await proxy.close();
    if (server) await server.stop();
  });
  afterEach(() => c.closeAll());

  it("a client on gateway 1 and one on gateway 3 exchange room messages", c.T, async () => {
    const [gw1, , gw3] = server.gatewayUrls;
    const room = c.uid("room");
    const a = await c.connect(server, "/", { url: gw1 });
    const b = await c.connect(server, "/", { url: gw3 });
    await join(a, room);
    const joined = c.waitFor(a, "room:user-joined", (m) => m?.userId === b.user);
    await join(b, room);
    assert.deepEqual(await joined, { userId: b.user, roomId: room });
    await exchange(a, b, room);
  });

  it("polling only through the proxy: every request to the next gateway, a chat exchange works", c.T, async () => {
    const before = [...proxy.counts];
    const room = c.uid("room");
    const opts = { url: proxy.url, transports: ["polling"], upgrade: false };
    const a = await c.connect(server, "/", opts);
    const b = await c.connect(server, "/", opts);
    await join(a, room);
    await join(b, room);
    await exchange(a, b, room);

    // chat:message reaches the other socket; the sender gets its receipt.
    const got = c.waitFor(b, "chat:message", (m) => m?.id === "m-1");
    const receipt = c.waitFor(a, "chat:message:received", (m) => m?.id === "m-1");
    assert.deepEqual(await c.ack(a, "chat:message", { id: "m-1", text: "via any gateway" }), { ok: true });
    assert.equal((await got).sender, a.user);
    assert.deepEqual(await receipt, { id: "m-1", status: "delivered" });

    assert.equal(a.io.engine.transport.name, "polling");
    const used = proxy.counts.map((n, i) => n - before[i]);
    assert.ok(used.every((n) => n > 0), `every gateway got requests of the sessions: ${JSON.stringify(used)}`);
    assert.deepEqual(a.__rec.disconnects, [], "no disconnect");
    assert.deepEqual(b.__rec.disconnects, [], "no disconnect");
  });

  it("polling, then the WebSocket upgrade through the proxy", c.T, async () => {
    const room = c.uid("room");
    const opts = { url: proxy.url, transports: ["polling", "websocket"], upgrade: true };
    const a = await c.connect(server, "/", opts);
    const b = await c.connect(server, "/", opts);
    for (const socket of [a, b]) {
      await c.eventually(() => assert.equal(socket.io.engine.transport.name, "websocket"), 5000);
    }
    await join(a, room);
    await join(b, room);
    await exchange(a, b, room, 3);
    assert.deepEqual(a.__rec.disconnects, [], "no disconnect");
  });
});
