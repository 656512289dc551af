"use strict";
// SPEC.md section 6 and docs/configuration.md "Limits": every limit with a
// small setting, and malformed input. The offender gets a clear error; every
// other socket and the server carry on.

const { describe, it, before, after, afterEach } = require("node:test");
const assert = require("node:assert/strict");
const { startServer } = require("../lib/server");
const c = require("../lib/client");

const CLOSE_REASONS = ["transport close", "transport error", "parse error", "io server disconnect"];

const servers = [];
async function fresh(env) {
  const s = await startServer({ env });
  servers.push(s);
  return s;
}
afterEach(() => c.closeAll());
after(async () => {
  c.closeAll();
  await Promise.all(servers.map((s) => s.stop()));
});

async function join(socket, room) {
  assert.deepEqual(await c.ack(socket, "room:join", room), { ok: true });
}

// The bystanders still talk to each other and a new socket still connects.
async function assertServerFine(server, b, d) {
  assert.equal(b.connected, true, "a bystander was disconnected");
  assert.equal(d.connected, true, "a bystander was disconnected");
  const id = c.uid("alive");
  const got = c.waitFor(d, "chat:message", (m) => m?.id === id);
  assert.deepEqual(await c.ack(b, "chat:message", { id }), { ok: true });
  await got;
  const late = await c.connect(server, "/");
  assert.equal(late.connected, true);
  late.disconnect();
}

async function assertClosedByServer(socket) {
  const reason = await c.waitDisconnect(socket, 5000);
  assert.ok(CLOSE_REASONS.includes(reason), `unexpected disconnect reason ${reason}`);
  return reason;
}

describe(c.title("limit: SWITCHBOARD_MAX_HTTP_BUFFER_SIZE"), () => {
  it("a payload over the limit closes that client's session only; nothing is delivered; under the limit is fine", c.T, async () => {
    const server = await fresh({ SWITCHBOARD_MAX_HTTP_BUFFER_SIZE: "10KB" });
    const a = await c.connect(server, "/");
    const b = await c.connect(server, "/");
    const d = await c.connect(server, "/");

    const small = { id: c.uid("small"), blob: "s".repeat(5_000) };
    const got = c.waitFor(b, "chat:message", (m) => m?.id === small.id);
    assert.deepEqual(await c.ack(a, "chat:message", small), { ok: true });
    assert.equal((await got).blob.length, 5_000);

    const big = { id: c.uid("big"), blob: "x".repeat(20_000) };
    const none = [b, d].map((s) => c.expectNone(s, "chat:message", 500, (m) => m?.id === big.id));
    a.emit("chat:message", big);
    await assertClosedByServer(a);
    await Promise.all(none);
    await assertServerFine(server, b, d);
  });
});

describe(c.title("limit: SWITCHBOARD_EVENT_RATE / SWITCHBOARD_EVENT_BURST"), () => {
  it('over the token bucket: ack {error:"rate limit exceeded"}, nothing delivered for those; tokens refill', c.T, async () => {
    const server = await fresh({ SWITCHBOARD_EVENT_RATE: "5", SWITCHBOARD_EVENT_BURST: "5" });
    const a = await c.connect(server, "/");
    const b = await c.connect(server, "/");
    const tag = c.uid("burst");
    const t0 = Date.now();
    const acks = await Promise.all(
      Array.from({ length: 12 }, (_, i) => c.ack(a, "chat:message", { id: `${tag}-${i}` })),
    );
    // 5 tokens at once, plus at most what 5 per second refilled meanwhile
    const refill = Math.floor(((Date.now() - t0) / 1000) * 5) + 1;
    const accepted = acks.filter((r) => r?.ok === true).length;
    const refused = acks.filter((r) => JSON.stringify(r) === JSON.stringify({ error: "rate limit exceeded" })).length;
    assert.equal(accepted + refused, acks.length, `unexpected acks ${JSON.stringify(acks)}`);
    assert.ok(accepted >= 5 && accepted <= 5 + refill, `${accepted} accepted of a burst of 5: ${JSON.stringify(acks)}`);
    assert.ok(refused >= 1, "some events must be refused");
    await c.sleep(300);
    const delivered = c.received(b, "chat:message", { predicate: (m) => m?.id?.startsWith(tag) });
    assert.equal(delivered.length, accepted, "only accepted events are delivered");
    assert.equal(a.connected, true);

    await c.sleep(1100); // 5 tokens back
    assert.deepEqual(await c.ack(a, "chat:message", { id: c.uid("later") }), { ok: true });
  });

  it('over the bucket without an ack: an `error` event {event, error:"rate limit exceeded"}, at most one per second', c.T, async () => {
    const server = await fresh({ SWITCHBOARD_EVENT_RATE: "5", SWITCHBOARD_EVENT_BURST: "5" });
    const a = await c.connect(server, "/");
    for (let i = 0; i < 15; i++) a.emit("chat:message", { id: c.uid("noack") });
    const err = await c.waitFor(a, "error", undefined, 3000, { from: 0 });
    assert.deepEqual(err, { event: "chat:message", error: "rate limit exceeded" });
    await c.sleep(300);
    assert.equal(c.received(a, "error").length, 1, "at most one error event per second");
    assert.equal(a.connected, true);
  });
});

describe(c.title("limit: SWITCHBOARD_MAX_ROOMS_PER_SOCKET"), () => {
  it('one room too many: ack {error:"too many rooms"}, not joined, nobody told; leaving frees a place', c.T, async () => {
    const server = await fresh({ SWITCHBOARD_MAX_ROOMS_PER_SOCKET: "3" });
    const a = await c.connect(server, "/");
    const b = await c.connect(server, "/");
    const rooms = [c.uid("r"), c.uid("r"), c.uid("r"), c.uid("r")];
    for (const r of rooms.slice(0, 3)) await join(a, r);
    await join(b, rooms[3]);
    const none = c.expectNone(b, "room:user-joined", 300);
    assert.deepEqual(await c.ack(a, "room:join", rooms[3]), { error: "too many rooms" });
    assert.deepEqual(await c.ack(a, "room:join", { roomId: rooms[3] }), { error: "too many rooms" });
    await none;
    assert.deepEqual(await c.ack(a, "room:message", { roomId: rooms[3], text: "x" }), { error: "not a member" });
    assert.deepEqual(await c.ack(a, "room:leave", rooms[0]), { ok: true });
    await join(a, rooms[3]);
  });
});

describe(c.title("limit: SWITCHBOARD_MAX_ROOM_NAME_LENGTH"), () => {
  it('a room id over the limit: ack {error:"room name too long"}; at the limit is fine', c.T, async () => {
    const server = await fresh({ SWITCHBOARD_MAX_ROOM_NAME_LENGTH: "16" });
    const a = await c.connect(server, "/");
    await join(a, "r".repeat(16));
    assert.deepEqual(await c.ack(a, "room:join", "r".repeat(17)), { error: "room name too long" });
    assert.deepEqual(await c.ack(a, "room:join", { roomId: "q".repeat(200) }), { error: "room name too long" });
    assert.equal(a.connected, true);
  });
});

describe(c.title("limit: SWITCHBOARD_MAX_SOCKETS_PER_USER"), () => {
  it('one socket too many for a user in a namespace: connect_error "Too many connections"; other users and namespaces fine', c.T, async () => {
    const server = await fresh({ SWITCHBOARD_MAX_SOCKETS_PER_USER: "2" });
    const u = c.uid("greedy");
    const s1 = await c.connect(server, "/", { user: u });
    await c.connect(server, "/", { user: u });
    const err = await c.connectError(server, "/", { user: u });
    assert.equal(err.message, "Too many connections");
    await c.connect(server, "/chat", { user: u });
    await c.connect(server, "/");
    s1.disconnect();
    await c.eventually(() => c.connect(server, "/", { user: u }), 3000, 100);
  });
});

describe(c.title("limit: SWITCHBOARD_MAX_ATTACHMENTS"), () => {
  it("more binary attachments than allowed closes that session only; up to the limit is delivered", c.T, async () => {
    const server = await fresh({ SWITCHBOARD_MAX_ATTACHMENTS: "2" });
    const a = await c.connect(server, "/");
    const b = await c.connect(server, "/");
    const d = await c.connect(server, "/");
    const okId = c.uid("two");
    const got = c.waitFor(b, "chat:message", (m) => m?.id === okId);
    assert.deepEqual(await c.ack(a, "chat:message", { id: okId, f: [Buffer.from([1]), Buffer.from([2])] }), { ok: true });
    assert.deepEqual((await got).f.map((x) => [...x]), [[1], [2]]);

    const badId = c.uid("three");
    const none = [b, d].map((s) => c.expectNone(s, "chat:message", 500, (m) => m?.id === badId));
    a.emit("chat:message", { id: badId, f: [Buffer.from([1]), Buffer.from([2]), Buffer.from([3])] });
    await assertClosedByServer(a);
    await Promise.all(none);
    await assertServerFine(server, b, d);
  });
});

describe(c.title("limit: SWITCHBOARD_MAX_PENDING_BYTES (slow reader)"), () => {
  it("a socket that does not read is cut off; the other members get everything; the server stays up", { timeout: 40_000 }, async () => {
    const server = await fresh({ SWITCHBOARD_MAX_PENDING_BYTES: "256KiB" });
    const room = c.uid("flood");
    const sender = await c.connect(server, "/");
    const fast = await c.connect(server, "/");
    const slow = await c.connect(server, "/");
    for (const s of [sender, fast, slow]) await join(s, room);

    // Stop reading: the WebSocket's TCP socket, or the polling loop (the
    // pending GET completes with the first message, then no GET follows).
    const transport = slow.io.engine.transport;
    if (transport.name === "websocket") transport.ws.pause();
    else transport.pause(() => {});

    // Over WebSocket the kernel's socket buffers hold a few MB before the
    // server's queue fills; over polling nothing is read without a request.
    const count = transport.name === "websocket" ? 60 : 12;
    const blob = "z".repeat(200_000);
    for (let i = 0; i < count; i++) {
      assert.deepEqual(await c.ack(sender, "room:message", { roomId: room, i, blob }), { ok: true });
    }
    await c.eventually(
      () => assert.equal(c.received(fast, "room:message", { predicate: (m) => m?.roomId === room }).length, count),
      15_000,
      100,
    );
    // the server has closed the slow socket's session: it is no member any more
    await c.eventually(async () => {
      const res = await server.api("GET", `/api/rooms/${room}/members`);
      assert.equal(res.status, 200, res.text);
      assert.ok(!res.body.sockets.includes(slow.id), `slow socket still a member: ${res.text}`);
      assert.ok(res.body.sockets.includes(fast.id));
    }, 10_000, 100);
    if (transport.name === "websocket") {
      transport.ws.resume();
      await assertClosedByServer(slow);
    }
    // (over polling the paused client never asks again; the server side is what counts)
    assert.ok(
      c.received(slow, "room:message", { predicate: (m) => m?.roomId === room }).length < count,
      "the slow reader cannot have got everything",
    );
    await assertServerFine(server, sender, fast);
  });
});

describe(c.title("malformed packets"), () => {
  // Each variant: the offending client is disconnected; the bystanders and
  // the server are fine.
  const variants = [
    ["an EVENT that is not JSON", (s) => s.io.engine.write("2garbage[")],
    ["an EVENT with truncated JSON", (s) => s.io.engine.write('2["chat:message",{"id":')],
    ["an EVENT whose payload is not an array", (s) => s.io.engine.write('2{"chat:message":1}')],
    ["an unknown Socket.IO packet type", (s) => s.io.engine.write("9[]")],
    [
      "a BINARY_EVENT with a placeholder out of range",
      (s) => {
        s.io.engine.write('51-["chat:message",{"id":"p","f":{"_placeholder":true,"num":7}}]');
        s.io.engine.write(Buffer.from([1, 2, 3]));
      },
    ],
    ["an unknown Engine.IO packet type", (s, server) => c.rawSend(server, s, "9oops")],
  ];

  let server;
  before(async () => {
    server = await fresh();
  });

  for (const [what, send] of variants) {
    it(`${what}: that client is disconnected, others and the server are fine`, c.T, async () => {
      const bad = await c.connect(server, "/");
      const b = await c.connect(server, "/");
      const d = await c.connect(server, "/");
      const none = [b, d].map((s) => c.expectNone(s, "chat:message", 300));
      await send(bad, server);
      await assertClosedByServer(bad);
      await Promise.all(none);
      await assertServerFine(server, b, d);
    });
  }
});
