"use strict";
// Binary payloads (BINARY_EVENT with attachments): Buffers inside event
// payloads reach the receivers intact, as Buffers.

const { describe, it, before, after, afterEach } = require("node:test");
const assert = require("node:assert/strict");
const crypto = require("node:crypto");
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

function assertBuffer(got, expected, what) {
  assert.ok(Buffer.isBuffer(got), `${what} should arrive as a Buffer, got ${Object.prototype.toString.call(got)}`);
  assert.ok(got.equals(expected), `${what}: bytes differ`);
}

describe(c.title("binary payloads"), () => {
  it("chat:message: Buffer fields, nested and in arrays, arrive intact at every receiver", c.T, async () => {
    const alice = c.uid("alice");
    const a1 = await c.connect(server, "/", { user: alice });
    const a2 = await c.connect(server, "/", { user: alice });
    const b = await c.connect(server, "/");
    const file = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    const parts = [crypto.randomBytes(1000), Buffer.alloc(0), Buffer.from("héllo", "utf8")];
    const id = c.uid("bin");
    const waits = [a2, b].map((s) => c.waitFor(s, "chat:message", (m) => m?.id === id));
    const receipt = c.waitFor(a1, "chat:message:received", (m) => m?.id === id);
    assert.deepEqual(await c.ack(a1, "chat:message", { id, file, nested: { parts, label: "x" } }), { ok: true });
    assert.deepEqual(await receipt, { id, status: "delivered" });
    for (const w of waits) {
      const got = await w;
      assert.equal(got.sender, alice);
      assert.equal(got.nested.label, "x");
      assertBuffer(got.file, file, "file");
      assert.equal(got.nested.parts.length, 3);
      got.nested.parts.forEach((p, i) => assertBuffer(p, parts[i], `parts[${i}]`));
    }
  });

  it("room:message: a binary payload reaches every member, the sender included, intact", c.T, async () => {
    const room = c.uid("room");
    const a = await c.connect(server, "/");
    const b = await c.connect(server, "/");
    const outsider = await c.connect(server, "/");
    for (const s of [a, b]) assert.deepEqual(await c.ack(s, "room:join", room), { ok: true });
    const data = crypto.randomBytes(100_000);
    const waits = [a, b].map((s) => c.waitFor(s, "room:message", (m) => m?.roomId === room));
    const none = c.expectNone(outsider, "room:message", 300);
    assert.deepEqual(await c.ack(a, "room:message", { roomId: room, data }), { ok: true });
    for (const w of waits) {
      const got = await w;
      assert.equal(got.sender, a.user);
      assertBuffer(got.data, data, "data");
    }
    await none;
  });

  it("/chat: a binary room:message is delivered too", c.T, async () => {
    const room = c.uid("room");
    const a = await c.connect(server, "/chat");
    const b = await c.connect(server, "/chat");
    for (const s of [a, b]) assert.deepEqual(await c.ack(s, "room:join", room), { ok: true });
    const data = Buffer.from([0, 255, 1, 254]);
    const got = c.waitFor(b, "room:message", (m) => m?.roomId === room);
    await c.ack(a, "room:message", { roomId: room, data });
    assertBuffer((await got).data, data, "data");
  });
});
