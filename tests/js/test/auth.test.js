"use strict";
// SPEC.md section 2: authentication before a socket joins a namespace.

const { describe, it, before, after, afterEach } = require("node:test");
const assert = require("node:assert/strict");
const crypto = require("node:crypto");
const jwt = require("jsonwebtoken");
const { startServer } = require("../lib/server");
const c = require("../lib/client");

const b64u = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
const now = () => Math.floor(Date.now() / 1000);

describe(c.title("authentication"), () => {
  let server;
  before(async () => {
    server = await startServer();
  });
  after(async () => {
    c.closeAll();
    await server?.stop();
  });
  afterEach(() => c.closeAll());

  // Who the server thinks a socket is: the `sender` another socket sees.
  async function senderSeenBy(socket) {
    const observer = await c.connect(server, "/");
    const id = c.uid("m");
    const got = c.waitFor(observer, "chat:message", (m) => m.id === id);
    assert.deepEqual(await c.ack(socket, "chat:message", { id }), { ok: true });
    return (await got).sender;
  }

  it("accepts a token in auth.token; sub is the user id", c.T, async () => {
    const user = c.uid("alice");
    const socket = await c.connect(server, "/", { user });
    assert.equal(socket.connected, true);
    assert.equal(await senderSeenBy(socket), user);
  });

  it("accepts a token in the Authorization: Bearer header", c.T, async () => {
    const user = c.uid("bob");
    const socket = await c.connect(server, "/", { user, tokenVia: "header" });
    assert.equal(socket.connected, true);
    assert.equal(await senderSeenBy(socket), user);
  });

  it("prefers auth.token over the Authorization header", c.T, async () => {
    const fromAuth = c.uid("auth");
    const fromHeader = c.uid("header");
    const socket = await c.connect(server, "/", {
      user: fromAuth,
      extraHeaders: { Authorization: `Bearer ${server.token(fromHeader)}` },
    });
    assert.equal(await senderSeenBy(socket), fromAuth);
  });

  it('refuses a socket without a token: "Authentication required"', c.T, async () => {
    const err = await c.connectError(server, "/", { token: null });
    assert.equal(err.message, "Authentication required");
  });

  it('refuses a token with a bad signature: "Invalid token"', c.T, async () => {
    const token = server.token(c.uid("eve"), { secret: "not-the-secret" });
    assert.equal((await c.connectError(server, "/", { token })).message, "Invalid token");
  });

  it('refuses a tampered payload: "Invalid token"', c.T, async () => {
    const [h, , s] = server.token(c.uid("eve")).split(".");
    const token = `${h}.${b64u({ sub: "admin", role: "admin", exp: now() + 3600 })}.${s}`;
    assert.equal((await c.connectError(server, "/", { token })).message, "Invalid token");
  });

  it('refuses an expired token: "Invalid token"', c.T, async () => {
    const token = server.token(c.uid("old"), { claims: { exp: now() - 3600 } });
    assert.equal((await c.connectError(server, "/", { token })).message, "Invalid token");
  });

  it('refuses a token whose nbf is in the future: "Invalid token"', c.T, async () => {
    const token = server.token(c.uid("early"), { claims: { nbf: now() + 3600 } });
    assert.equal((await c.connectError(server, "/", { token })).message, "Invalid token");
  });

  it('refuses alg "none": "Invalid token"', c.T, async () => {
    const token = `${b64u({ alg: "none", typ: "JWT" })}.${b64u({ sub: c.uid("none"), exp: now() + 3600 })}.`;
    assert.equal((await c.connectError(server, "/", { token })).message, "Invalid token");
  });

  it('refuses algorithm confusion (RS256 header, HMAC signature): "Invalid token"', c.T, async () => {
    const signingInput = `${b64u({ alg: "RS256", typ: "JWT" })}.${b64u({ sub: c.uid("conf"), exp: now() + 3600 })}`;
    const sig = crypto.createHmac("sha256", server.secret).update(signingInput).digest("base64url");
    const err = await c.connectError(server, "/", { token: `${signingInput}.${sig}` });
    assert.equal(err.message, "Invalid token");
  });

  it('refuses an RS256 token of an unknown key: "Invalid token"', c.T, async () => {
    const { privateKey } = crypto.generateKeyPairSync("rsa", { modulusLength: 2048 });
    const token = jwt.sign({ sub: c.uid("rsa"), exp: now() + 3600 }, privateKey, { algorithm: "RS256" });
    assert.equal((await c.connectError(server, "/", { token })).message, "Invalid token");
  });

  it('refuses garbage: "Invalid token"', c.T, async () => {
    for (const token of ["not-a-jwt", "a.b.c", "Bearer x"]) {
      assert.equal((await c.connectError(server, "/", { token })).message, "Invalid token", token);
    }
  });

  it('refuses a token without sub: "Invalid token"', c.T, async () => {
    const token = server.token("ignored", { claims: { sub: undefined } });
    assert.equal((await c.connectError(server, "/", { token })).message, "Invalid token");
  });

  it('refuses a bad token in the Authorization header: "Invalid token"', c.T, async () => {
    const err = await c.connectError(server, "/", {
      token: server.token(c.uid("eve"), { secret: "wrong" }),
      tokenVia: "header",
    });
    assert.equal(err.message, "Invalid token");
  });

  it("checks tokens on every namespace (/chat, /notifications)", c.T, async () => {
    for (const ns of ["/chat", "/notifications"]) {
      assert.equal((await c.connectError(server, ns, { token: null })).message, "Authentication required", ns);
      assert.equal((await c.connectError(server, ns, { token: "garbage" })).message, "Invalid token", ns);
      const ok = await c.connect(server, ns);
      assert.equal(ok.connected, true, ns);
    }
  });

  it('refuses an unknown namespace: "Invalid namespace"', c.T, async () => {
    const err = await c.connectError(server, "/no-such-namespace");
    assert.equal(err.message, "Invalid namespace");
  });

  it("a refused socket causes nothing: no presence, no broadcast", c.T, async () => {
    const watcher = await c.connect(server, "/");
    const refused = c.uid("expired");
    const from = c.mark(watcher);
    const token = server.token(refused, { claims: { exp: now() - 3600 } });
    assert.equal((await c.connectError(server, "/", { user: refused, token })).message, "Invalid token");
    await c.expectNone(watcher, "users:online", 300, (list) => list.includes(refused), { from });
    await c.expectNone(watcher, "chat:message", 0, undefined, { from });
  });
});
