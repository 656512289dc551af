// Switchboard chat scenario for k6: virtual users connect with a token, join
// rooms of SB_ROOM_SIZE, chat (`room:message` with the send time in the
// payload) with `typing:start` / `typing:stop` around each message, and
// measure how long each message takes to reach every member.
//
//   k6 run -e SB_SECRET=... loadtest/k6/chat.js
//
// Every setting is an environment variable (k6 `-e NAME=value` or the
// process environment); see docs/benchmarks.md, section "k6".
//
// Metrics (besides k6's own ws_* metrics):
//   sb_delivery_latency   Trend  receiver's Date.now() - sentAt, per delivery
//   sb_connect_time       Trend  WebSocket creation -> Socket.IO CONNECT accepted
//   sb_ack_time           Trend  emit -> ack, tagged event=room:join|room:message
//   sb_messages_sent      Counter  room:message emitted
//   sb_messages_received  Counter  room:message of this run delivered (all members, sender included)
//   sb_messages_lost      Counter  own messages not echoed back before the session ended
//   sb_typing_sent / sb_typing_received  Counters
//   sb_pings              Counter  server pings answered
//   sb_errors             Counter  every failure, tagged kind=...
//   sb_error_rate         Rate     failures / (failures + successful connects, acks, echoes)

import http from "k6/http";
import { sleep } from "k6";
import exec from "k6/execution";
import { Counter, Rate, Trend } from "k6/metrics";
import {
  SocketIOClient,
  envBool,
  envNumber,
  mintHs256,
  parseDuration,
  pollingUrl,
  socketIoUrl,
} from "./lib/socketio.js";

// ---- configuration --------------------------------------------------------

const URL_BASE = __ENV.SB_URL || "ws://127.0.0.1:3000";
const PATH = __ENV.SB_PATH || "/socket.io/";
const NAMESPACE = __ENV.SB_NAMESPACE || "/";
const SECRET = __ENV.SB_SECRET || "";
const TOKENS = (__ENV.SB_TOKEN || "").split(",").map((t) => t.trim()).filter(Boolean);
const VUS = envNumber("SB_VUS", 10);
const ROOM_SIZE = Math.max(1, envNumber("SB_ROOM_SIZE", 5));
const PUBLISHERS = Math.min(ROOM_SIZE, envNumber("SB_PUBLISHERS", ROOM_SIZE));
const MSG_RATE = envNumber("SB_MSG_RATE", 1); // messages per second per publisher
const TYPING = envBool("SB_TYPING", true);
const TYPING_LEAD_MS = envNumber("SB_TYPING_LEAD_MS", 200);
const PAYLOAD_BYTES = envNumber("SB_PAYLOAD_BYTES", 64);
const DURATION_MS = parseDuration(__ENV.SB_DURATION, "30s");
const SESSION_MS = parseDuration(__ENV.SB_SESSION, __ENV.SB_DURATION || "30s");
const RAMP_UP_MS = parseDuration(__ENV.SB_RAMP_UP, "0s");
const GRACE_MS = parseDuration(__ENV.SB_GRACE, "2s");
const ACK_TIMEOUT_MS = parseDuration(__ENV.SB_ACK_TIMEOUT, "5s");
const RETRY_MS = parseDuration(__ENV.SB_RETRY_DELAY, "1s");
const P99_MS = envNumber("SB_P99_MS", 250);
const CONNECT_P99_MS = envNumber("SB_CONNECT_P99_MS", 2000);
const MAX_ERROR_RATE = envNumber("SB_MAX_ERROR_RATE", 0.01);
const ABORT_ON_FAIL = envBool("SB_ABORT_ON_FAIL", false);
const HOST_HEADER = __ENV.SB_HOST_HEADER || "";

if (!SECRET && TOKENS.length === 0) {
  throw new Error("set SB_SECRET (the server's SWITCHBOARD_JWT_SECRET) or SB_TOKEN (one or more comma-separated JWTs)");
}
if (!(MSG_RATE > 0)) throw new Error("SB_MSG_RATE must be > 0");

const threshold = (expr) => (ABORT_ON_FAIL ? [{ threshold: expr, abortOnFail: true, delayAbortEval: "5s" }] : [expr]);

export const options = {
  scenarios: {
    chat: {
      executor: "constant-vus",
      vus: VUS,
      duration: `${Math.ceil((DURATION_MS + RAMP_UP_MS) / 1000)}s`,
      // Sessions end on their own before the duration (see default()); this
      // only covers a session stuck on a slow close.
      gracefulStop: `${Math.ceil((GRACE_MS + ACK_TIMEOUT_MS) / 1000) + 5}s`,
    },
  },
  thresholds: {
    sb_delivery_latency: threshold(`p(99)<${P99_MS}`),
    sb_error_rate: threshold(`rate<${MAX_ERROR_RATE}`),
    sb_connect_time: threshold(`p(99)<${CONNECT_P99_MS}`),
    // A run that delivered nothing must not pass on empty latency stats.
    sb_messages_received: ["count>0"],
  },
  summaryTrendStats: ["avg", "min", "med", "p(90)", "p(99)", "p(99.9)", "max"],
};

// ---- metrics --------------------------------------------------------------

const deliveryLatency = new Trend("sb_delivery_latency", true);
const connectTime = new Trend("sb_connect_time", true);
const ackTime = new Trend("sb_ack_time", true);
const messagesSent = new Counter("sb_messages_sent");
const messagesReceived = new Counter("sb_messages_received");
const messagesLost = new Counter("sb_messages_lost");
const typingSent = new Counter("sb_typing_sent");
const typingReceived = new Counter("sb_typing_received");
const pings = new Counter("sb_pings");
const errors = new Counter("sb_errors");
const errorRate = new Rate("sb_error_rate");

const VERBOSE = envBool("SB_VERBOSE", false);
const logged = new Set(); // error kinds this VU has logged (each once unless SB_VERBOSE)

function fail(kind, detail) {
  errors.add(1, { kind });
  errorRate.add(true, { kind });
  if (VERBOSE || !logged.has(kind)) {
    logged.add(kind);
    console.warn(`VU ${__VU}: ${kind}${detail ? `: ${detail}` : ""}`);
  }
}
function succeed() {
  errorRate.add(false);
}

// ---- lifecycle ------------------------------------------------------------

// Runs once: checks that the server answers and fixes a run id, so that the
// rooms and user ids of this run are fresh and its messages are recognised.
export function setup() {
  const probe = pollingUrl(URL_BASE, PATH);
  const params = HOST_HEADER ? { headers: { Host: HOST_HEADER } } : {};
  const res = http.get(probe, params);
  if (res.status !== 200) {
    throw new Error(`${probe} answered ${res.status} ${res.error || ""}: is Switchboard running there?`);
  }
  const runId = __ENV.SB_RUN_ID || `${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`;
  console.log(
    `switchboard k6 chat: ${socketIoUrl(URL_BASE, PATH)} nsp=${NAMESPACE} run=${runId} vus=${VUS} ` +
      `rooms of ${ROOM_SIZE} (${PUBLISHERS} publishing ${MSG_RATE}/s) typing=${TYPING} ` +
      `thresholds: p99<${P99_MS}ms errors<${MAX_ERROR_RATE} connect p99<${CONNECT_P99_MS}ms`,
  );
  return { runId, start: Date.now() };
}

function tokenFor(runId, vu) {
  if (TOKENS.length > 0) return TOKENS[(vu - 1) % TOKENS.length];
  const claims = { sub: `k6-${runId}-${vu}`, name: `k6 user ${vu}`, role: "user" };
  if (__ENV.SB_JWT_ISSUER) claims.iss = __ENV.SB_JWT_ISSUER;
  if (__ENV.SB_JWT_AUDIENCE) claims.aud = __ENV.SB_JWT_AUDIENCE;
  return mintHs256(SECRET, claims, Math.ceil((DURATION_MS + RAMP_UP_MS) / 1000) + 3600);
}

// One iteration = one session: connect, join, chat until the session (or the
// test) ends, wait SB_GRACE for the last deliveries, disconnect.
export default function (data) {
  const vu = exec.vu.idInTest;
  if (exec.vu.iterationInScenario === 0 && RAMP_UP_MS > 0) {
    sleep((((vu - 1) % VUS) / VUS) * (RAMP_UP_MS / 1000));
  }
  const testEnd = data.start + RAMP_UP_MS + DURATION_MS;
  const now = Date.now();
  const chatUntil = Math.min(now + SESSION_MS, testEnd) - GRACE_MS;
  if (chatUntil - now < 1000) {
    // Too little time left for a session: idle out the rest of the test.
    sleep(Math.max(0.1, (testEnd - now) / 1000));
    return;
  }
  runSession(data.runId, vu, chatUntil);
}

function runSession(runId, vu, chatUntil) {
  const roomIndex = Math.floor((vu - 1) / ROOM_SIZE);
  const member = (vu - 1) % ROOM_SIZE;
  const roomId = `k6-${runId}-room-${roomIndex}`;
  const publisher = member < PUBLISHERS;
  const timers = new Set(); // pending timeouts and intervals, cleared at the end
  const outstanding = new Map(); // seq -> sentAt, own messages not yet echoed
  let seq = 0;
  let chatting = false;
  let ending = false;
  let failed = false; // a failed session waits SB_RETRY_DELAY before the next one
  const sessionFail = (kind, detail) => {
    failed = true;
    fail(kind, detail);
  };
  const padding = "x".repeat(Math.max(0, PAYLOAD_BYTES));
  // Zero samples so that these show in the summary (as 0) on a clean run.
  errors.add(0);
  messagesLost.add(0);

  const headers = HOST_HEADER ? { Host: HOST_HEADER } : undefined;
  const client = new SocketIOClient(socketIoUrl(URL_BASE, PATH), {
    namespace: NAMESPACE,
    auth: { token: tokenFor(runId, vu) },
    ackTimeoutMs: ACK_TIMEOUT_MS,
    headers,
    tags: { room_size: String(ROOM_SIZE) },
  });

  const later = (fn, ms) => {
    const t = setTimeout(() => {
      timers.delete(t);
      fn();
    }, ms);
    timers.add(t);
  };
  const every = (fn, ms) => timers.add(setInterval(fn, ms));
  const clearTimers = () => {
    for (const t of timers) {
      clearTimeout(t);
      clearInterval(t);
    }
    timers.clear();
  };

  const finish = () => {
    if (ending) return;
    ending = true;
    chatting = false;
    clearTimers();
    // Whatever of our own messages has not come back by now is lost.
    if (outstanding.size > 0) {
      messagesLost.add(outstanding.size);
      for (let i = 0; i < outstanding.size; i++) fail("lost");
      outstanding.clear();
    }
    client.close();
  };

  // Nothing accepted the CONNECT in time.
  later(() => {
    if (!client.connected && !ending) {
      sessionFail("connect_timeout");
      finish();
    }
  }, ACK_TIMEOUT_MS);

  client.onConnect = (ms) => {
    connectTime.add(ms);
    succeed();
    client.emitWithAck("room:join", [roomId], (err, args, rtt) => {
      if (!checkAck("room:join", err, args, rtt)) {
        finish();
        return;
      }
      startChatting();
    });
  };
  client.onConnectError = (data) => {
    sessionFail("connect_error", data && data.message);
    finish();
  };
  client.onDisconnect = () => {
    if (!ending) sessionFail("disconnected");
    finish();
  };
  client.onError = (message) => {
    if (!ending) sessionFail("ws_error", message);
  };
  client.onClose = (planned) => {
    if (!planned && !ending) sessionFail("closed");
    ending = true;
    chatting = false;
    clearTimers();
    // Keeps the iteration (and so the VU) from reconnecting at once.
    if (failed) setTimeout(() => {}, RETRY_MS);
  };
  client.onPing = () => pings.add(1);
  client.onProtocolError = (what) => sessionFail("protocol", what);

  client.on("room:message", (msg) => {
    // Only messages of this run count; the recovery offset argument that
    // follows the payload is ignored.
    if (!msg || msg.k6 !== runId || typeof msg.sentAt !== "number") return;
    deliveryLatency.add(Date.now() - msg.sentAt);
    messagesReceived.add(1);
    if (msg.vu === vu && outstanding.delete(msg.seq)) succeed();
  });
  client.on("typing:start", () => typingReceived.add(1));
  client.on("typing:stop", () => typingReceived.add(1));
  client.on("error", (e) => sessionFail("server_error", e && e.error));

  function checkAck(event, err, args, rtt) {
    if (err) {
      // "closed" after we started ending is the session's own close.
      if (!(err === "closed" && ending)) sessionFail(`ack_${err}`, event);
      return false;
    }
    const answer = args[0];
    if (answer && answer.error) {
      sessionFail("ack_error", `${event}: ${answer.error}`);
      return false;
    }
    ackTime.add(rtt, { event });
    succeed();
    return true;
  }

  function sendMessage() {
    if (!chatting) return;
    const n = seq++;
    const sentAt = Date.now();
    outstanding.set(n, sentAt);
    messagesSent.add(1);
    client.emitWithAck(
      "room:message",
      [{ roomId, text: padding, sentAt, k6: runId, vu, seq: n }],
      (err, args, rtt) => {
        if (!checkAck("room:message", err, args, rtt)) outstanding.delete(n);
      },
    );
  }

  function tick() {
    if (!chatting) return;
    if (TYPING) {
      client.emit("typing:start", roomId);
      typingSent.add(1);
      later(() => {
        if (!chatting) return;
        client.emit("typing:stop", roomId);
        typingSent.add(1);
        sendMessage();
      }, TYPING_LEAD_MS);
    } else {
      sendMessage();
    }
  }

  function startChatting() {
    const remaining = chatUntil - Date.now();
    // Stop sending at chatUntil, then wait SB_GRACE for the last deliveries.
    later(() => {
      chatting = false;
      later(finish, GRACE_MS);
    }, Math.max(0, remaining));
    if (!publisher) {
      chatting = false;
      return;
    }
    chatting = true;
    const period = 1000 / MSG_RATE;
    // A random phase so that the publishers of a room do not send in step.
    later(() => {
      tick();
      every(tick, period);
    }, Math.random() * period);
  }
}
