"use strict";
// SPEC.md section 3: room:join, room:message, room:leave, typing:*, on `/`
// and on `/chat`.

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

function assertTimestamp(ts, t0) {
  assert.equal(typeof ts, "number", `timestamp should be a number, got ${JSON.stringify(ts)}`);
  assert.ok(ts >= t0 - 5000 && ts <= Date.now() + 5000, `timestamp ${ts} is not ms since the epoch near ${t0}`);
}

for (const ns of ["/", "/chat"]) {
  const otherNs = ns === "/" ? "/chat" : "/";

  describe(c.title(`room:join on ${ns}`), () => {
    for (const form of ["string", "object"]) {
      it(`${form} form: ack {ok:true}; others in the room: room:user-joined {userId, roomId}; the joiner: room:history []; nobody else`, c.T, async () => {
        const room = c.uid("room");
        const a = await c.connect(server, ns);
        const b = await c.connect(server, ns);
        const outsider = await c.connect(server, ns);
        const elsewhere = await c.connect(server, otherNs);
        await joinAll(room, a, b);
        await join(outsider, c.uid("other-room"));
        await join(elsewhere, room); // same name, other namespace

        const d = await c.connect(server, ns);
        const expected = { userId: d.user, roomId: room };
        const atA = c.waitFor(a, "room:user-joined", (p) => p?.userId === d.user);
        const atB = c.waitFor(b, "room:user-joined", (p) => p?.userId === d.user);
        const history = c.waitFor(d, "room:history");
        const none = [d, outsider, elsewhere].map((s) => c.expectNone(s, "room:user-joined", 300));
        await join(d, form === "string" ? room : { roomId: room });
        assert.deepEqual(await atA, expected);
        assert.deepEqual(await atB, expected);
        assert.deepEqual(await history, []);
        await Promise.all(none);
      });
    }

    it("a malformed room:join is refused with {error} and joins nothing", c.T, async () => {
      const a = await c.connect(server, ns);
      for (const bad of [42, null, {}, [], { since: "x" }, true]) {
        const res = await c.ack(a, "room:join", bad);
        assert.equal(typeof res?.error, "string", `payload ${JSON.stringify(bad)}: ack ${JSON.stringify(res)}`);
      }
      const res = await c.ack(a, "room:join");
      assert.equal(typeof res?.error, "string", `no payload: ack ${JSON.stringify(res)}`);
      assert.equal(a.connected, true);
    });
  });

  describe(c.title(`room:message on ${ns}`), () => {
    it("every member, the sender included, gets {...payload, sender, timestamp}; non-members, the sender's other socket and other namespaces do not", c.T, async () => {
      const room = c.uid("room");
      const alice = c.uid("alice");
      const a = await c.connect(server, ns, { user: alice });
      const aOther = await c.connect(server, ns, { user: alice }); // same user, not in the room
      const b = await c.connect(server, ns);
      const outsider = await c.connect(server, ns);
      const elsewhere = await c.connect(server, otherNs);
      await joinAll(room, a, b);
      await join(outsider, c.uid("other-room"));
      await join(elsewhere, room);

      const payload = { roomId: room, text: "hi room", meta: { k: [1, 2] } };
      const t0 = Date.now();
      const waits = [a, b].map((s) => c.waitFor(s, "room:message", (m) => m?.text === payload.text));
      const none = [aOther, outsider, elsewhere].map((s) => c.expectNone(s, "room:message", 300));
      assert.deepEqual(await c.ack(a, "room:message", payload), { ok: true });
      for (const w of waits) {
        const got = await w;
        assertTimestamp(got.timestamp, t0);
        assert.deepEqual(got, { ...payload, sender: alice, timestamp: got.timestamp });
      }
      await Promise.all(none);
    });

    it("the server sets sender: a client cannot pose as another user", c.T, async () => {
      const room = c.uid("room");
      const a = await c.connect(server, ns);
      const b = await c.connect(server, ns);
      await joinAll(room, a, b);
      const got = c.waitFor(b, "room:message", (m) => m?.text === "spoof");
      await c.ack(a, "room:message", { roomId: room, text: "spoof", sender: "mallory", timestamp: 1 });
      const m = await got;
      assert.equal(m.sender, a.user);
      assert.ok(m.timestamp > 1e12);
    });

    it('a non-member sender gets {error:"not a member"} and nobody receives', c.T, async () => {
      const room = c.uid("room");
      const a = await c.connect(server, ns);
      const b = await c.connect(server, ns);
      const intruder = await c.connect(server, ns);
      await joinAll(room, a, b);
      const none = [a, b, intruder].map((s) => c.expectNone(s, "room:message", 300));
      assert.deepEqual(await c.ack(intruder, "room:message", { roomId: room, text: "let me in" }), {
        error: "not a member",
      });
      await Promise.all(none);
    });

    it("a malformed room:message is refused with {error}; nobody receives", c.T, async () => {
      const room = c.uid("room");
      const a = await c.connect(server, ns);
      const b = await c.connect(server, ns);
      await joinAll(room, a, b);
      const none = [a, b].map((s) => c.expectNone(s, "room:message", 300));
      for (const bad of [{ text: "no room" }, room, 7, null, [room], { roomId: 12 }]) {
        const res = await c.ack(a, "room:message", bad);
        assert.equal(typeof res?.error, "string", `payload ${JSON.stringify(bad)}: ack ${JSON.stringify(res)}`);
      }
      await Promise.all(none);
    });
  });

  describe(c.title(`room:leave on ${ns}`), () => {
    it("others get room:user-left {userId, roomId}; the leaver gets none and no longer receives room:message nor may send", c.T, async () => {
      const room = c.uid("room");
      const a = await c.connect(server, ns);
      const b = await c.connect(server, ns);
      const leaver = await c.connect(server, ns);
      const outsider = await c.connect(server, ns);
      await joinAll(room, a, b, leaver);

      const expected = { userId: leaver.user, roomId: room };
      const waits = [a, b].map((s) => c.waitFor(s, "room:user-left", (p) => p?.userId === leaver.user));
      const none = [leaver, outsider].map((s) => c.expectNone(s, "room:user-left", 300));
      assert.deepEqual(await c.ack(leaver, "room:leave", room), { ok: true });
      for (const w of waits) assert.deepEqual(await w, expected);
      await Promise.all(none);

      const got = c.waitFor(b, "room:message", (m) => m?.text === "after leave");
      const gone = c.expectNone(leaver, "room:message", 300);
      await c.ack(a, "room:message", { roomId: room, text: "after leave" });
      await got;
      await gone;
      assert.deepEqual(await c.ack(leaver, "room:message", { roomId: room, text: "x" }), { error: "not a member" });
    });

    it("leaving a room one is not in is refused with {error}", c.T, async () => {
      const a = await c.connect(server, ns);
      const res = await c.ack(a, "room:leave", c.uid("never-joined"));
      assert.equal(typeof res?.error, "string", `ack ${JSON.stringify(res)}`);
    });

    it("a disconnect sends room:user-left to every room the socket was in", c.T, async () => {
      const r1 = c.uid("room");
      const r2 = c.uid("room");
      const a = await c.connect(server, ns);
      const b = await c.connect(server, ns);
      const gone = await c.connect(server, ns);
      await joinAll(r1, a, gone);
      await joinAll(r2, b, gone);
      const atA = c.waitFor(a, "room:user-left", (p) => p?.userId === gone.user);
      const atB = c.waitFor(b, "room:user-left", (p) => p?.userId === gone.user);
      gone.disconnect();
      assert.deepEqual(await atA, { userId: gone.user, roomId: r1 });
      assert.deepEqual(await atB, { userId: gone.user, roomId: r2 });
    });
  });

  describe(c.title(`typing:start / typing:stop on ${ns}`), () => {
    it("others in the room get typing:start {userId, userName} and typing:stop {userId}; the sender and non-members do not", c.T, async () => {
      const room = c.uid("room");
      const a = await c.connect(server, ns, { name: "Alice Typist" });
      const b = await c.connect(server, ns);
      const d = await c.connect(server, ns);
      const outsider = await c.connect(server, ns);
      const elsewhere = await c.connect(server, otherNs);
      await joinAll(room, a, b, d);
      await join(outsider, c.uid("other-room"));
      await join(elsewhere, room);

      let waits = [b, d].map((s) => c.waitFor(s, "typing:start", (p) => p?.userId === a.user));
      let none = [a, outsider, elsewhere].map((s) => c.expectNone(s, "typing:start", 300));
      assert.deepEqual(await c.ack(a, "typing:start", room), { ok: true });
      for (const w of waits) assert.deepEqual(await w, { userId: a.user, userName: "Alice Typist" });
      await Promise.all(none);

      waits = [b, d].map((s) => c.waitFor(s, "typing:stop", (p) => p?.userId === a.user));
      none = [a, outsider, elsewhere].map((s) => c.expectNone(s, "typing:stop", 300));
      assert.deepEqual(await c.ack(a, "typing:stop", room), { ok: true });
      for (const w of waits) assert.deepEqual(await w, { userId: a.user });
      await Promise.all(none);
    });

    it("userName defaults to the user id when the token has no name", c.T, async () => {
      const room = c.uid("room");
      const a = await c.connect(server, ns, { name: null });
      const b = await c.connect(server, ns);
      await joinAll(room, a, b);
      const got = c.waitFor(b, "typing:start");
      a.emit("typing:start", room);
      assert.deepEqual(await got, { userId: a.user, userName: a.user });
    });

    it('a non-member gets {error:"not a member"} and nobody receives', c.T, async () => {
      const room = c.uid("room");
      const a = await c.connect(server, ns);
      const b = await c.connect(server, ns);
      const intruder = await c.connect(server, ns);
      await joinAll(room, a, b);
      const none = [a, b].flatMap((s) => [c.expectNone(s, "typing:start", 300), c.expectNone(s, "typing:stop", 300)]);
      assert.deepEqual(await c.ack(intruder, "typing:start", room), { error: "not a member" });
      assert.deepEqual(await c.ack(intruder, "typing:stop", room), { error: "not a member" });
      await Promise.all(none);
    });
  });
}
