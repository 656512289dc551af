"use strict";
// A few wire checks that the socket.io-client suites rely on: the
// handshake, heartbeat with short intervals, session expiry, and the upgrade
// from polling to WebSocket.

const { describe, it, before, after, afterEach } = require("node:test");
const assert = require("node:assert/strict");
const { startServer, httpRequest } = require("../lib/server");
const c = require("../lib/client");

let server;
before(async () => {
  server = await startServer({
    env: { SWITCHBOARD_PING_INTERVAL: "300ms", SWITCHBOARD_PING_TIMEOUT: "200ms", SWITCHBOARD_MAX_HTTP_BUFFER_SIZE: "100KB" },
  });
});
after(async () => {
  c.closeAll();
  await server?.stop();
});
afterEach(() => c.closeAll());

async function handshake() {
  const res = await httpRequest("GET", `${server.url}/socket.io/?EIO=4&transport=polling`);
  const body = res.text;
  assert.equal(res.status, 200, body);
  assert.equal(body[0], "0", `an OPEN packet, got ${body}`);
  return JSON.parse(body.slice(1));
}

describe(c.title("engine.io wire"), () => {
  it("the polling handshake carries sid, upgrades, pingInterval, pingTimeout and maxPayload from the settings", c.T, async () => {
    const open = await handshake();
    assert.equal(typeof open.sid, "string");
    assert.ok(open.sid.length > 0);
    assert.deepEqual(open.upgrades, ["websocket"]);
    assert.equal(open.pingInterval, 300);
    assert.equal(open.pingTimeout, 200);
    assert.equal(open.maxPayload, 100_000);
  });

  it("an unknown sid answers 400", c.T, async () => {
    const res = await httpRequest("GET", `${server.url}/socket.io/?EIO=4&transport=polling&sid=nope`);
    assert.equal(res.status, 400);
  });

  it("a session that never answers pings is closed after pingInterval + pingTimeout", c.T, async () => {
    const { sid } = await handshake();
    await c.sleep(1200);
    const res = await httpRequest("GET", `${server.url}/socket.io/?EIO=4&transport=polling&sid=${encodeURIComponent(sid)}`);
    assert.equal(res.status, 400, "the session should be gone");
  });

  it("a client answering pings stays connected across many ping intervals", c.T, async () => {
    const a = await c.connect(server, "/");
    const b = await c.connect(server, "/");
    await c.sleep(1500);
    assert.equal(a.connected, true);
    assert.equal(b.connected, true);
    assert.deepEqual(a.__rec.disconnects, []);
    const id = c.uid("m");
    const got = c.waitFor(b, "chat:message", (m) => m?.id === id);
    await c.ack(a, "chat:message", { id });
    await got;
  });

  it("the upgrade from polling to WebSocket keeps the socket working", c.T, async () => {
    const a = await c.connect(server, "/", { transports: ["polling", "websocket"] });
    const b = await c.connect(server, "/");
    if (a.io.engine.transport.name !== "websocket") {
      await new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error("no upgrade within 3 s")), 3000);
        a.io.engine.once("upgrade", () => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    assert.equal(a.io.engine.transport.name, "websocket");
    const id = c.uid("m");
    const got = c.waitFor(b, "chat:message", (m) => m?.id === id);
    assert.deepEqual(await c.ack(a, "chat:message", { id }), { ok: true });
    await got;
    const back = c.uid("m");
    const got2 = c.waitFor(a, "chat:message", (m) => m?.id === back);
    await c.ack(b, "chat:message", { id: back });
    await got2;
  });
});
