// Node socket.io 4.x benchmark peer: the room:join / room:message handlers of
// Switchboard (SPEC.md section 3), HS256 auth from auth.token, and the Redis
// adapter when REDIS_URL is set (for a cluster of several processes).
//
// env: PORT (3000), HOST (127.0.0.1), JWT_SECRET (auth off when unset),
//      REDIS_URL (adapter off when unset), RECOVERY=1 (connection state
//      recovery, 2 minutes, as Switchboard's default).
"use strict";

const http = require("node:http");
const { Server } = require("socket.io");
const jwt = require("jsonwebtoken");

const PORT = Number(process.env.PORT || 3000);
const HOST = process.env.HOST || "127.0.0.1";
const SECRET = process.env.JWT_SECRET;

async function main() {
  const httpServer = http.createServer();
  const options = {};
  if (process.env.RECOVERY === "1") {
    options.connectionStateRecovery = { maxDisconnectionDuration: 2 * 60 * 1000 };
  }
  const io = new Server(httpServer, options);

  if (process.env.REDIS_URL) {
    const { createClient } = require("redis");
    const { createAdapter } = require("@socket.io/redis-adapter");
    const pub = createClient({ url: process.env.REDIS_URL });
    const sub = pub.duplicate();
    await Promise.all([pub.connect(), sub.connect()]);
    io.adapter(createAdapter(pub, sub));
  }

  io.use((socket, next) => {
    if (!SECRET) {
      socket.data.userId = socket.id;
      return next();
    }
    const token = socket.handshake.auth && socket.handshake.auth.token;
    if (!token) return next(new Error("Authentication required"));
    try {
      const claims = jwt.verify(token, SECRET, { algorithms: ["HS256"] });
      socket.data.userId = String(claims.sub);
      next();
    } catch (_) {
      next(new Error("Invalid token"));
    }
  });

  io.on("connection", (socket) => {
    socket.on("room:join", (arg, ack) => {
      const roomId = typeof arg === "string" ? arg : arg && arg.roomId;
      if (typeof roomId !== "string" || roomId === "") {
        if (typeof ack === "function") ack({ error: "Invalid roomId" });
        return;
      }
      socket.join(roomId);
      if (typeof ack === "function") ack({ ok: true });
    });

    socket.on("room:message", (payload, ack) => {
      const roomId = payload && payload.roomId;
      if (typeof roomId !== "string" || !socket.rooms.has(roomId)) {
        if (typeof ack === "function") ack({ error: "Not a member of this room" });
        return;
      }
      io.to(roomId).emit("room:message", {
        ...payload,
        sender: socket.data.userId,
        timestamp: Date.now(),
      });
      if (typeof ack === "function") ack({ ok: true });
    });
  });

  httpServer.listen(PORT, HOST, () => {
    console.error(`node socket.io peer listening on ${HOST}:${PORT} (pid ${process.pid})`);
  });
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
