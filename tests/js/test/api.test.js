"use strict";
// docs/api.md: the HTTP JSON server API, seen by socket.io-client sockets.

const { describe, it, before, after, afterEach } = require("node:test");
const assert = require("node:assert/strict");
const { startServer } = require("../lib/server");
const c = require("../lib/client");

let server;
const extra = [];
before(async () => {
  server = await startServer();
});
after(async () => {
  c.closeAll();
  await Promise.all([server, ...extra].map((s) => s?.stop()));
});
afterEach(() => c.closeAll());

async function join(socket, room) {
  assert.deepEqual(await c.ack(socket, "room:join", room), { ok: true });
}

async function ok(res, expected = { ok: true }) {
  assert.equal(res.status, 200, `status ${res.status}: ${res.text}`);
  assert.deepEqual(res.body, expected);
}

const sorted = (list) => [...list].sort();
const q = (ns) => encodeURIComponent(ns);

const ENDPOINTS = [
  ["POST", "/api/emit", { event: "x", data: 1 }],
  ["POST", "/api/notify", { userId: "u", data: 1 }],
  ["GET", "/api/users/online"],
  ["GET", "/api/rooms/lobby/members"],
  ["GET", "/api/rooms/lobby/history"],
  ["POST", "/api/users/u/join", { room: "lobby" }],
  ["POST", "/api/users/u/leave", { room: "lobby" }],
  ["POST", "/api/users/u/disconnect"],
  ["POST", "/api/sockets/s/disconnect"],
];

describe(c.title("server API: access"), () => {
  it('every endpoint answers 401 {"error":"unauthorized"} without a key or with a wrong one', c.T, async () => {
    for (const [method, path, body] of ENDPOINTS) {
      for (const [what, opts] of [
        ["no key", { key: null }],
        ["wrong bearer key", { key: "wrong-key" }],
        ["wrong X-Api-Key", { key: "wrong-key", keyHeader: "x-api-key" }],
      ]) {
        const res = await server.api(method, path, body, opts);
        assert.equal(res.status, 401, `${method} ${path} with ${what}: ${res.status} ${res.text}`);
        assert.deepEqual(res.body, { error: "unauthorized" }, `${method} ${path} with ${what}`);
      }
    }
  });

  it("the key is accepted as Authorization: Bearer and as X-Api-Key", c.T, async () => {
    for (const keyHeader of ["bearer", "x-api-key"]) {
      const res = await server.api("GET", "/api/users/online", undefined, { keyHeader });
      assert.equal(res.status, 200, `${keyHeader}: ${res.text}`);
      assert.ok(Array.isArray(res.body?.users), res.text);
    }
  });

  it("without SWITCHBOARD_API_KEY every /api/ path answers 404", c.T, async () => {
    const noApi = await startServer({ apiKey: null });
    extra.push(noApi);
    for (const [method, path, body] of ENDPOINTS) {
      const res = await noApi.api(method, path, body, { key: "anything" });
      assert.equal(res.status, 404, `${method} ${path}: ${res.status} ${res.text}`);
    }
  });
});

describe(c.title("server API: POST /api/emit"), () => {
  it("without rooms or users: every socket of the namespace (default /), no other namespace", c.T, async () => {
    const s1 = await c.connect(server, "/");
    const s2 = await c.connect(server, "/");
    const chat = await c.connect(server, "/chat");
    const tag = c.uid("news");
    const waits = [s1, s2].map((s) => c.waitFor(s, "news", (d) => d?.tag === tag));
    const none = c.expectNone(chat, "news", 300);
    await ok(await server.api("POST", "/api/emit", { event: "news", data: { tag, title: "hello" } }));
    for (const w of waits) assert.deepEqual(await w, { tag, title: "hello" });
    await none;
  });

  it("args: several arguments arrive in order", c.T, async () => {
    const s1 = await c.connect(server, "/");
    const tag = c.uid("args");
    const got = c.waitForArgs(s1, "multi", (first) => first === tag);
    await ok(await server.api("POST", "/api/emit", { event: "multi", args: [tag, { b: 1 }, 3, [true]] }));
    assert.deepEqual((await got).slice(0, 4), [tag, { b: 1 }, 3, [true]]);
  });

  it("rooms: only sockets in any of them, each once", c.T, async () => {
    const r1 = c.uid("room");
    const r2 = c.uid("room");
    const inBoth = await c.connect(server, "/");
    const inR2 = await c.connect(server, "/");
    const outside = await c.connect(server, "/");
    await join(inBoth, r1);
    await join(inBoth, r2);
    await join(inR2, r2);
    const tag = c.uid("t");
    const waits = [inBoth, inR2].map((s) => c.waitFor(s, "ev", (d) => d === tag));
    const none = c.expectNone(outside, "ev", 300);
    await ok(await server.api("POST", "/api/emit", { event: "ev", data: tag, rooms: [r1, r2] }));
    await Promise.all(waits);
    await none;
    assert.equal(c.received(inBoth, "ev", { predicate: (d) => d === tag }).length, 1, "delivered once");
  });

  it("except: rooms and socket ids are left out", c.T, async () => {
    const lobby = c.uid("lobby");
    const muted = c.uid("muted");
    const a = await c.connect(server, "/");
    const b = await c.connect(server, "/");
    const m = await c.connect(server, "/");
    for (const s of [a, b, m]) await join(s, lobby);
    await join(m, muted);
    let tag = c.uid("t");
    let waits = [a, b].map((s) => c.waitFor(s, "ev", (d) => d === tag));
    let none = c.expectNone(m, "ev", 300);
    await ok(await server.api("POST", "/api/emit", { event: "ev", data: tag, rooms: [lobby], except: [muted] }));
    await Promise.all(waits);
    await none;

    tag = c.uid("t");
    waits = [a, m].map((s) => c.waitFor(s, "ev", (d) => d === tag));
    none = c.expectNone(b, "ev", 300);
    await ok(await server.api("POST", "/api/emit", { event: "ev", data: tag, except: [b.id] }));
    await Promise.all(waits);
    await none;
  });

  it("rooms: a socket id is a room", c.T, async () => {
    const a = await c.connect(server, "/");
    const b = await c.connect(server, "/");
    const tag = c.uid("t");
    const got = c.waitFor(a, "direct", (d) => d === tag);
    const none = c.expectNone(b, "direct", 300);
    await ok(await server.api("POST", "/api/emit", { event: "direct", data: tag, rooms: [a.id] }));
    await got;
    await none;
  });

  it("users: every socket of those users and nobody else", c.T, async () => {
    const u = c.uid("target");
    const a1 = await c.connect(server, "/", { user: u });
    const a2 = await c.connect(server, "/", { user: u });
    const b = await c.connect(server, "/");
    const tag = c.uid("t");
    const waits = [a1, a2].map((s) => c.waitFor(s, "for-you", (d) => d === tag));
    const none = c.expectNone(b, "for-you", 300);
    await ok(await server.api("POST", "/api/emit", { event: "for-you", data: tag, users: [u] }));
    await Promise.all(waits);
    await none;
  });

  it('namespace: "/chat" reaches /chat only; "*" reaches every namespace', c.T, async () => {
    const root = await c.connect(server, "/");
    const chat = await c.connect(server, "/chat");
    const notif = await c.connect(server, "/notifications");
    let tag = c.uid("t");
    let got = c.waitFor(chat, "ev", (d) => d === tag);
    let none = [root, notif].map((s) => c.expectNone(s, "ev", 300));
    await ok(await server.api("POST", "/api/emit", { event: "ev", data: tag, namespace: "/chat" }));
    await got;
    await Promise.all(none);

    tag = c.uid("t");
    const waits = [root, chat, notif].map((s) => c.waitFor(s, "ev", (d) => d === tag));
    await ok(await server.api("POST", "/api/emit", { event: "ev", data: tag, namespace: "*" }));
    await Promise.all(waits);
  });

  it('an unknown namespace answers 404 {"error":"unknown namespace"}', c.T, async () => {
    const res = await server.api("POST", "/api/emit", { event: "ev", data: 1, namespace: "/nope" });
    assert.equal(res.status, 404, res.text);
    assert.deepEqual(res.body, { error: "unknown namespace" });
  });

  it("a malformed body, a missing event or a reserved event name answers 400 {error}, and nothing is sent", c.T, async () => {
    const s = await c.connect(server, "/");
    const from = c.mark(s);
    for (const [what, body, rawBody] of [
      ["invalid JSON", undefined, "{not json"],
      ["no event", { data: 1 }],
      ["event not a string", { event: 5, data: 1 }],
      ['reserved "connect"', { event: "connect", data: 1 }],
      ['reserved "disconnect"', { event: "disconnect", data: 1 }],
    ]) {
      const res = await server.api("POST", "/api/emit", body, { rawBody });
      assert.equal(res.status, 400, `${what}: ${res.status} ${res.text}`);
      assert.equal(typeof res.body?.error, "string", `${what}: ${res.text}`);
    }
    await c.sleep(200);
    assert.deepEqual(s.__rec.log.slice(from).filter((e) => e.event !== "users:online"), []);
    assert.equal(s.connected, true);
  });
});

describe(c.title("server API: queries"), () => {
  it("GET /api/users/online: each user once, per namespace", c.T, async () => {
    const fresh = await startServer();
    extra.push(fresh);
    const u1 = c.uid("on1");
    const u2 = c.uid("on2");
    const u3 = c.uid("on3");
    await c.connect(fresh, "/", { user: u1 });
    await c.connect(fresh, "/", { user: u1 });
    await c.connect(fresh, "/", { user: u2 });
    const chat = await c.connect(fresh, "/chat", { user: u3 });
    let res = await fresh.api("GET", "/api/users/online");
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(sorted(res.body.users), sorted([u1, u2]));
    res = await fresh.api("GET", "/api/users/online?namespace=/");
    assert.deepEqual(sorted(res.body.users), sorted([u1, u2]));
    res = await fresh.api("GET", `/api/users/online?namespace=${q("/chat")}`);
    assert.deepEqual(res.body, { users: [u3] });
    chat.disconnect();
    await c.eventually(async () => {
      const r = await fresh.api("GET", `/api/users/online?namespace=${q("/chat")}`);
      assert.deepEqual(r.body, { users: [] });
    });
    res = await fresh.api("GET", `/api/users/online?namespace=${q("/nope")}`);
    assert.equal(res.status, 404, res.text);
    assert.deepEqual(res.body, { error: "unknown namespace" });
  });

  it("GET /api/rooms/{roomId}/members: users once, every socket id", c.T, async () => {
    const room = c.uid("room");
    const u = c.uid("member");
    const a1 = await c.connect(server, "/", { user: u });
    const a2 = await c.connect(server, "/", { user: u });
    const b = await c.connect(server, "/");
    await join(a1, room);
    await join(a2, room);
    await join(b, c.uid("other"));
    const res = await server.api("GET", `/api/rooms/${room}/members`);
    assert.equal(res.status, 200, res.text);
    assert.deepEqual({ users: res.body.users, sockets: sorted(res.body.sockets) }, { users: [u], sockets: sorted([a1.id, a2.id]) });
    const chatRes = await server.api("GET", `/api/rooms/${room}/members?namespace=${q("/chat")}`);
    assert.equal(chatRes.status, 200, chatRes.text);
    assert.deepEqual(chatRes.body, { users: [], sockets: [] });
  });

  it("GET /api/rooms/{roomId}/history: newest `limit`, oldest first, or everything after `since`", c.T, async () => {
    const room = c.uid("room");
    const a = await c.connect(server, "/", { name: "Historian" });
    await join(a, room);
    const ids = [];
    for (const content of ["h0", "h1", "h2", "h3", "h4"]) {
      const res = await c.ack(a, "message:send", { roomId: room, content });
      ids.push(res.id);
    }
    let res = await server.api("GET", `/api/rooms/${room}/history`);
    assert.equal(res.status, 200, res.text);
    const all = res.body.messages;
    assert.deepEqual(all.map((m) => m.id), ids);
    for (const [i, m] of all.entries()) {
      assert.deepEqual(
        { ...m, createdAt: 0 },
        { id: ids[i], roomId: room, sender: { id: a.user, name: "Historian" }, content: `h${i}`, type: "text", createdAt: 0 },
      );
      assert.equal(typeof m.createdAt, "number");
    }
    res = await server.api("GET", `/api/rooms/${room}/history?limit=2`);
    assert.deepEqual(res.body, { messages: all.slice(3) });
    res = await server.api("GET", `/api/rooms/${room}/history?since=${encodeURIComponent(ids[1])}`);
    assert.deepEqual(res.body, { messages: all.slice(2) });
    res = await server.api("GET", `/api/rooms/${room}/history?namespace=${q("/chat")}`);
    assert.deepEqual(res.body, { messages: [] });
  });
});

describe(c.title("server API: membership and disconnects"), () => {
  it("POST /api/users/{userId}/join and /leave move every socket of the user; answer {ok, sockets}", c.T, async () => {
    const room = c.uid("room");
    const u = c.uid("moved");
    const a1 = await c.connect(server, "/", { user: u });
    const a2 = await c.connect(server, "/", { user: u });
    const chat = await c.connect(server, "/chat", { user: u });
    await ok(await server.api("POST", `/api/users/${u}/join`, { room }), { ok: true, sockets: 2 });
    const members = await server.api("GET", `/api/rooms/${room}/members`);
    assert.deepEqual(sorted(members.body.sockets), sorted([a1.id, a2.id]));

    // now a member: may send, and both sockets receive
    const waits = [a1, a2].map((s) => c.waitFor(s, "room:message", (m) => m?.text === "joined by api"));
    const none = c.expectNone(chat, "room:message", 300);
    assert.deepEqual(await c.ack(a1, "room:message", { roomId: room, text: "joined by api" }), { ok: true });
    await Promise.all(waits);
    await none;

    await ok(await server.api("POST", `/api/users/${u}/leave`, { room }), { ok: true, sockets: 2 });
    assert.deepEqual(await c.ack(a1, "room:message", { roomId: room, text: "x" }), { error: "not a member" });

    await ok(await server.api("POST", `/api/users/${u}/join`, { room, namespace: "/chat" }), { ok: true, sockets: 1 });
    assert.deepEqual(await c.ack(chat, "message", { roomId: room, content: "x" }), { ok: true });
    await ok(await server.api("POST", `/api/users/${c.uid("absent")}/join`, { room }), { ok: true, sockets: 0 });
  });

  it("POST /api/users/{userId}/disconnect: the user's sockets get io server disconnect and stay disconnected; others stay", c.T, async () => {
    const u = c.uid("kicked");
    const a1 = await c.connect(server, "/", { user: u, reconnection: true });
    const a2 = await c.connect(server, "/", { user: u, reconnection: true });
    const chat = await c.connect(server, "/chat", { user: u });
    const other = await c.connect(server, "/");
    const reasons = [a1, a2].map((s) => c.waitDisconnect(s));
    await ok(await server.api("POST", `/api/users/${u}/disconnect`), { ok: true, sockets: 2 });
    assert.deepEqual(await Promise.all(reasons), ["io server disconnect", "io server disconnect"]);
    await c.sleep(500);
    assert.equal(a1.connected, false, "does not reconnect by itself");
    assert.equal(a2.connected, false, "does not reconnect by itself");
    assert.equal(chat.connected, true, "namespace defaults to /");
    assert.equal(other.connected, true);

    const reason = c.waitDisconnect(chat);
    await ok(await server.api("POST", `/api/users/${u}/disconnect`, { namespace: "/chat" }), { ok: true, sockets: 1 });
    assert.equal(await reason, "io server disconnect");
  });

  it("POST /api/sockets/{socketId}/disconnect: that socket only", c.T, async () => {
    const u = c.uid("one");
    const a1 = await c.connect(server, "/", { user: u });
    const a2 = await c.connect(server, "/", { user: u });
    const reason = c.waitDisconnect(a1);
    await ok(await server.api("POST", `/api/sockets/${encodeURIComponent(a1.id)}/disconnect`), { ok: true, sockets: 1 });
    assert.equal(await reason, "io server disconnect");
    await c.sleep(200);
    assert.equal(a2.connected, true);
  });
});
