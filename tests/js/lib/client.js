"use strict";
// socket.io-client helpers for the black-box tests: connected sockets that
// record every event they receive, bounded waits, and negative assertions.

const crypto = require("node:crypto");
const { io } = require("socket.io-client");
const { httpRequest } = require("./server");

const TRANSPORT = process.env.SB_TRANSPORT || "websocket";
if (!["websocket", "polling"].includes(TRANSPORT)) {
  throw new Error(`SB_TRANSPORT must be "websocket" or "polling", not ${JSON.stringify(TRANSPORT)}`);
}

// Default bound of a positive wait, and of a negative one.
const WAIT_MS = 3000;
const NONE_MS = 250;

const sockets = new Set();

function uid(prefix = "u") {
  return `${prefix}-${crypto.randomBytes(4).toString("hex")}`;
}

function describeSocket(socket) {
  return `${socket.user || "?"}@${socket.nsp}${socket.id ? `#${socket.id}` : ""}`;
}

// Every event a socket receives is kept in socket.__rec.log as
// {event, args}; args are the event's arguments as the client got them (with
// connection state recovery on, a trailing offset string may follow).
function record(socket) {
  const rec = { log: [], listeners: new Set(), disconnects: [] };
  socket.__rec = rec;
  socket.onAny((event, ...args) => {
    const entry = { event, args };
    rec.log.push(entry);
    for (const listener of [...rec.listeners]) listener(entry);
  });
  socket.on("disconnect", (reason, description) => {
    rec.disconnects.push(reason);
    for (const listener of [...rec.listeners]) listener({ event: "disconnect", args: [reason, description] });
  });
  return rec;
}

// Creates (but does not connect) a socket of user `user` on namespace `ns`.
//   token: a token to use instead of a fresh one; null: no token at all
//   tokenVia: "auth" (auth.token, default) or "header" (Authorization: Bearer)
//   name, role: claims of the fresh token
//   auth, extraHeaders, transports, reconnection: socket.io-client options
//   url: the base url to connect to (default: server.clientUrl(), which is
//        the server, or the next gateway of a cluster)
function makeSocket(server, ns = "/", opts = {}) {
  const user = opts.user || uid("user");
  const token =
    opts.token !== undefined ? opts.token : server.token(user, { name: opts.name, role: opts.role });
  const auth = { ...(opts.auth || {}) };
  const extraHeaders = { ...(opts.extraHeaders || {}) };
  if (token !== null) {
    if (opts.tokenVia === "header") extraHeaders.Authorization = `Bearer ${token}`;
    else auth.token = token;
  }
  const base = opts.url || server.clientUrl();
  const socket = io(`${base}${ns}`, {
    forceNew: true,
    autoConnect: false,
    transports: opts.transports || [TRANSPORT],
    upgrade: opts.upgrade !== undefined ? opts.upgrade : true,
    reconnection: opts.reconnection === true,
    reconnectionDelay: 100,
    reconnectionDelayMax: 300,
    randomizationFactor: 0,
    timeout: 5000,
    // the tests' own timers keep the process alive while they wait; the
    // client's (heartbeat, reconnection) must not once the tests are done
    autoUnref: true,
    auth,
    extraHeaders,
  });
  socket.user = user;
  socket.baseUrl = base;
  socket.userName = opts.name === undefined ? `Name ${user}` : opts.name;
  record(socket);
  sockets.add(socket);
  return socket;
}

// Resolves with the socket once it is connected; rejects with the
// connect_error (err.message is the server's CONNECT_ERROR message).
function connect(server, ns = "/", opts = {}) {
  const socket = makeSocket(server, ns, opts);
  const timeoutMs = opts.timeoutMs || 6000;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      done();
      socket.disconnect();
      reject(new Error(`connect of ${describeSocket(socket)} timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    const onConnect = () => {
      done();
      resolve(socket);
    };
    const onError = (err) => {
      done();
      socket.disconnect();
      reject(err);
    };
    const done = () => {
      clearTimeout(timer);
      socket.off("connect", onConnect);
      socket.off("connect_error", onError);
    };
    socket.once("connect", onConnect);
    socket.once("connect_error", onError);
    socket.connect();
  });
}

// Expects the connection to be refused; resolves with the connect_error.
async function connectError(server, ns = "/", opts = {}) {
  let socket;
  try {
    socket = await connect(server, ns, opts);
  } catch (err) {
    return err;
  }
  socket.disconnect();
  throw new Error(`expected a connect_error, but ${describeSocket(socket)} connected`);
}

function matches(entry, event, predicate) {
  if (entry.event !== event) return false;
  if (!predicate) return true;
  try {
    return Boolean(predicate(entry.args[0], entry.args));
  } catch {
    return false;
  }
}

function mark(socket) {
  return socket.__rec.log.length;
}

// Payloads (first arguments) of the events `event` the socket received since
// index `from` (default: all), optionally filtered.
function received(socket, event, { from = 0, predicate } = {}) {
  return socket.__rec.log
    .slice(from)
    .filter((e) => matches(e, event, predicate))
    .map((e) => e.args[0]);
}

// Waits for the event `event` (matching `predicate(payload, args)`) and
// resolves with its arguments. Only events received from index `from` count;
// the default is "from now", so start the wait before the action.
function waitForArgs(socket, event, predicate, timeoutMs = WAIT_MS, { from } = {}) {
  const rec = socket.__rec;
  const start = from === undefined ? rec.log.length : from;
  for (const entry of rec.log.slice(start)) {
    if (matches(entry, event, predicate)) return Promise.resolve(entry.args);
  }
  return quiet(new Promise((resolve, reject) => {
    const listener = (entry) => {
      if (matches(entry, event, predicate)) {
        clearTimeout(timer);
        rec.listeners.delete(listener);
        resolve(entry.args);
      }
    };
    const timer = setTimeout(() => {
      rec.listeners.delete(listener);
      const seen = received(socket, event, { from: start });
      reject(
        new Error(
          `timed out after ${timeoutMs} ms waiting for "${event}"${predicate ? " (matching)" : ""} ` +
            `on ${describeSocket(socket)}; "${event}" payloads seen: ${JSON.stringify(seen).slice(0, 800)}`,
        ),
      );
    }, timeoutMs);
    rec.listeners.add(listener);
  }));
}

// As waitForArgs, resolving with the first argument (the payload).
function waitFor(socket, event, predicate, timeoutMs = WAIT_MS, opts = {}) {
  return quiet(waitForArgs(socket, event, predicate, timeoutMs, opts).then((args) => args[0]));
}

// A promise that is not reported as unhandled when a test fails before
// awaiting it (awaiting it still throws).
function quiet(promise) {
  promise.catch(() => {});
  return promise;
}

// Resolves after `ms` if the socket received no event `event` matching
// `predicate` since index `from` (default: the call); rejects otherwise.
// Start it before the action, await it after.
function expectNone(socket, event, ms = NONE_MS, predicate, { from } = {}) {
  const start = from === undefined ? mark(socket) : from;
  return quiet(
    (async () => {
      await new Promise((r) => setTimeout(r, ms));
      const got = received(socket, event, { from: start, predicate });
      if (got.length > 0) {
        throw new Error(
          `${describeSocket(socket)} should not have received "${event}", got: ${JSON.stringify(got).slice(0, 800)}`,
        );
      }
    })(),
  );
}

// Emits with an acknowledgement and resolves with the ack's first argument.
async function ack(socket, event, ...args) {
  try {
    return await socket.timeout(WAIT_MS).emitWithAck(event, ...args);
  } catch (err) {
    throw new Error(`no ack for "${event}" from ${describeSocket(socket)} within ${WAIT_MS} ms (${err.message})`);
  }
}

// Resolves with the disconnect reason (at once if it already happened since
// index `fromDisconnect`).
function waitDisconnect(socket, timeoutMs = WAIT_MS, { fromDisconnect = 0 } = {}) {
  const rec = socket.__rec;
  if (rec.disconnects.length > fromDisconnect) return Promise.resolve(rec.disconnects[fromDisconnect]);
  return quiet(new Promise((resolve, reject) => {
    const listener = (entry) => {
      if (entry.event === "disconnect") {
        clearTimeout(timer);
        rec.listeners.delete(listener);
        resolve(entry.args[0]);
      }
    };
    const timer = setTimeout(() => {
      rec.listeners.delete(listener);
      reject(new Error(`${describeSocket(socket)} was not disconnected within ${timeoutMs} ms`));
    }, timeoutMs);
    rec.listeners.add(listener);
  }));
}

// Resolves on the next "connect" event of a (re)connecting socket.
function waitConnect(socket, timeoutMs = WAIT_MS) {
  return quiet(new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.off("connect", onConnect);
      reject(new Error(`${describeSocket(socket)} did not (re)connect within ${timeoutMs} ms`));
    }, timeoutMs);
    const onConnect = () => {
      clearTimeout(timer);
      resolve();
    };
    socket.once("connect", onConnect);
  }));
}

// Sends a raw Engine.IO packet string on the socket's current transport,
// bypassing every encoder (for malformed input).
async function rawSend(server, socket, text) {
  const engine = socket.io.engine;
  if (engine.transport.name === "websocket") {
    engine.transport.ws.send(text);
    return;
  }
  const base = socket.baseUrl || server.url;
  await httpRequest("POST", `${base}/socket.io/?EIO=4&transport=polling&sid=${encodeURIComponent(engine.id)}`, {
    headers: { "Content-Type": "text/plain;charset=UTF-8" },
    body: text,
  });
}

// Disconnects every socket the helpers made. A WebSocket whose close
// handshake does not finish quickly is terminated, so that a server that
// never answers (or a paused test socket) cannot hold the process for the
// 30 s close timeout of `ws`.
function closeAll() {
  for (const socket of sockets) {
    const ws = socket.io.engine?.transport?.ws;
    try {
      socket.disconnect();
    } catch {
      // ignore
    }
    if (ws && typeof ws.terminate === "function") {
      setTimeout(() => {
        try {
          ws.terminate();
        } catch {
          // ignore
        }
      }, 300);
    }
  }
  sockets.clear();
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Retries `fn` until it returns without throwing, bounded by `timeoutMs`.
async function eventually(fn, timeoutMs = WAIT_MS, intervalMs = 50) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await sleep(intervalMs);
    }
  }
}

// Options for every test: a bound on its time.
const T = { timeout: 20_000 };

// Test-suite name with the transport, so that the two runs are told apart.
const title = (name) => `${name} [${TRANSPORT}]`;

module.exports = {
  TRANSPORT,
  WAIT_MS,
  NONE_MS,
  T,
  title,
  uid,
  makeSocket,
  connect,
  connectError,
  mark,
  received,
  waitFor,
  waitForArgs,
  expectNone,
  ack,
  waitDisconnect,
  waitConnect,
  rawSend,
  closeAll,
  sleep,
  eventually,
};
