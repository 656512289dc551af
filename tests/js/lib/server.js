"use strict";
// Starts and stops the switchboard binary for the black-box tests.
//
// The binary is `SWITCHBOARD_BIN`, default `<repo>/target/debug/switchboard`.
// It runs with a clean environment: only the settings below and the test's
// overrides, so that nothing of the developer's shell leaks in.
//
// SB_TOPOLOGY picks what a "server" is: `standalone` (default) is one
// process; `cluster` is a private redis-server, 2 routers and 3 gateways
// (SwitchboardCluster below), with the same interface, so that every test
// file runs unchanged on both. In a cluster, clients are spread over the
// gateways in turn (`clientUrl()`, used by lib/client.js), and so are server
// API calls.

const { spawn } = require("node:child_process");
const crypto = require("node:crypto");
const fs = require("node:fs");
const http = require("node:http");
const net = require("node:net");
const os = require("node:os");
const path = require("node:path");
const jwt = require("jsonwebtoken");

const REPO = path.resolve(__dirname, "..", "..", "..");
const BIN = process.env.SWITCHBOARD_BIN
  ? path.resolve(process.env.SWITCHBOARD_BIN)
  : path.join(REPO, "target", "debug", "switchboard");
const READY_TIMEOUT_MS = Number(process.env.SB_READY_TIMEOUT_MS || 15_000);
const TOPOLOGY = process.env.SB_TOPOLOGY || "standalone";
if (!["standalone", "cluster"].includes(TOPOLOGY)) {
  throw new Error(`SB_TOPOLOGY must be "standalone" or "cluster", not ${JSON.stringify(TOPOLOGY)}`);
}
// The redis-server of a cluster (its own, on a free port; never the system one).
const REDIS_BIN = process.env.SB_REDIS_SERVER || "redis-server";

// Settings every test server gets unless the test overrides them. The fast
// presence interval keeps the presence tests short; it is not the default of
// the binary (250ms).
const BASE_ENV = {
  SWITCHBOARD_LOG: process.env.SB_SERVER_LOG || "warn",
  SWITCHBOARD_PRESENCE_INTERVAL: "50ms",
};

// A test's settings over `env`: null or undefined removes a setting.
function withOverrides(env, overrides) {
  for (const [k, v] of Object.entries(overrides)) {
    if (v === undefined || v === null) delete env[k];
    else env[k] = String(v);
  }
  return env;
}

const running = new Set();
// Kills the server by its id: its process group (it was spawned as a group
// leader, so a wrapper script's children go too), else the process itself.
function kill(child) {
  try {
    process.kill(-child.pid, "SIGKILL");
  } catch {
    try {
      process.kill(child.pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
}

process.on("exit", () => {
  for (const child of running) kill(child);
});

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// One HTTP request without keep-alive (so that no pooled connection keeps
// the test process alive). Resolves with {status, headers, text}.
function httpRequest(method, url, { headers = {}, body, timeoutMs = 5000 } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers, agent: false, timeout: timeoutMs }, (res) => {
      const chunks = [];
      res.on("data", (d) => chunks.push(d));
      res.on("end", () =>
        resolve({ status: res.statusCode, headers: res.headers, text: Buffer.concat(chunks).toString("utf8") }),
      );
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error(`${method} ${url} timed out after ${timeoutMs} ms`)));
    req.on("error", reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

// Spawns `command` as a process group leader with its output kept in
// `holder.stderr` (the last 64 KiB, stdout and stderr together) and copied
// to our stderr with SB_DEBUG. The child gets `exitInfo` and an `exited`
// promise; it is killed when this process exits.
function spawnTracked(command, args, env, holder, label) {
  holder.stderr = "";
  const child = spawn(command, args, { env, stdio: ["ignore", "pipe", "pipe"], detached: true });
  running.add(child);
  const keep = (chunk) => {
    holder.stderr += chunk.toString();
    if (holder.stderr.length > 64 * 1024) holder.stderr = holder.stderr.slice(-64 * 1024);
    if (process.env.SB_DEBUG) process.stderr.write(`[${label()}] ${chunk}`);
  };
  child.stderr.on("data", keep);
  child.stdout.on("data", keep);
  child.exitInfo = null;
  child.exited = new Promise((resolve) => {
    child.once("exit", (code, signal) => {
      child.exitInfo = { code, signal };
      running.delete(child);
      resolve();
    });
    child.once("error", (err) => {
      child.exitInfo = { error: err };
      running.delete(child);
      resolve();
    });
  });
  return child;
}

// Kills a tracked child and waits (at most 5 s) for it to be gone.
async function stopChild(child) {
  if (!child) return;
  kill(child);
  let timer;
  await Promise.race([child.exited, new Promise((r) => (timer = setTimeout(r, 5000)))]);
  clearTimeout(timer);
  // a leftover holder of the pipes must not keep this process alive
  child.stdout.destroy();
  child.stderr.destroy();
}

function describeExit(child) {
  return JSON.stringify(child.exitInfo.error ? String(child.exitInfo.error) : child.exitInfo);
}

class SwitchboardServer {
  constructor(options = {}) {
    this.secret = options.secret || crypto.randomBytes(24).toString("hex");
    // apiKey: null starts the server without SWITCHBOARD_API_KEY (API off).
    this.apiKey =
      options.apiKey === null ? null : options.apiKey || crypto.randomBytes(16).toString("hex");
    this.overrides = options.env || {};
    this.child = null;
    this.stderr = "";
    this.port = null;
    this.adminPort = null;
  }

  get url() {
    return `http://127.0.0.1:${this.port}`;
  }

  get adminUrl() {
    return `http://127.0.0.1:${this.adminPort}`;
  }

  get topology() {
    return "standalone";
  }

  // Where the next client connects (lib/client.js): the one server here,
  // the gateways in turn in a cluster.
  clientUrl() {
    return this.url;
  }

  // Where the next server API call goes.
  apiUrl() {
    return this.url;
  }

  env() {
    const env = {
      // A clean environment: PATH only so that a wrapper script would work.
      PATH: process.env.PATH || "/usr/bin:/bin",
      RUST_BACKTRACE: "1",
      ...BASE_ENV,
      SWITCHBOARD_LISTEN: `127.0.0.1:${this.port}`,
      SWITCHBOARD_ADMIN_LISTEN: `127.0.0.1:${this.adminPort}`,
      SWITCHBOARD_JWT_SECRET: this.secret,
    };
    if (this.apiKey !== null) env.SWITCHBOARD_API_KEY = this.apiKey;
    return withOverrides(env, this.overrides);
  }

  // Starts the process on fresh ports (retrying if a port was taken in the
  // meantime) and waits until the polling handshake answers 200.
  async start() {
    if (!fs.existsSync(BIN)) {
      throw new Error(
        `switchboard binary not found at ${BIN}: build it (cargo build -p switchboard) ` +
          `or point SWITCHBOARD_BIN at it`,
      );
    }
    let lastError;
    for (let attempt = 0; attempt < 3; attempt++) {
      this.port = await freePort();
      this.adminPort = await freePort();
      try {
        await this.spawnAndWait();
        return this;
      } catch (err) {
        lastError = err;
        await this.stop();
        // Retry only when the process died (a port race); a timeout is final.
        if (!err.exited) break;
      }
    }
    throw lastError;
  }

  // Stops the process and starts it again on the same ports with the same
  // secret and key (a server restart as the clients see it).
  async restart() {
    await this.stop();
    let lastError;
    for (let attempt = 0; attempt < 20; attempt++) {
      try {
        await this.spawnAndWait();
        return this;
      } catch (err) {
        lastError = err;
        await this.stop();
        if (!err.exited) break;
        await sleep(100); // the port may still be held for a moment
      }
    }
    throw lastError;
  }

  spawnAndWait() {
    const child = spawnTracked(BIN, [], this.env(), this, () => `switchboard:${this.port}`);
    this.child = child;

    const deadline = Date.now() + READY_TIMEOUT_MS;
    const probe = `${this.url}/socket.io/?EIO=4&transport=polling`;
    return (async () => {
      for (;;) {
        if (child.exitInfo) {
          const err = new Error(
            `switchboard (${BIN}) exited before it was ready (${describeExit(child)}); ` +
              `output:\n${this.stderr || "(none)"}`,
          );
          err.exited = true;
          throw err;
        }
        try {
          const res = await httpRequest("GET", probe, { timeoutMs: 1000 });
          if (res.status === 200) return;
        } catch {
          // not listening yet
        }
        if (Date.now() > deadline) {
          throw new Error(
            `switchboard (${BIN}) did not answer ${probe} with 200 within ${READY_TIMEOUT_MS} ms; ` +
              `output:\n${this.stderr || "(none)"}`,
          );
        }
        await sleep(50);
      }
    })();
  }

  async stop() {
    const child = this.child;
    this.child = null;
    await stopChild(child);
  }

  // An HS256 token. `claims` may override or remove (undefined) any claim.
  token(user, { name, role = "user", expiresIn = 3600, claims = {}, secret, header } = {}) {
    const now = Math.floor(Date.now() / 1000);
    const payload = { sub: user, name: name === undefined ? `Name ${user}` : name, role, exp: now + expiresIn };
    if (name === null) delete payload.name;
    if (role === null) delete payload.role;
    for (const [k, v] of Object.entries(claims)) {
      if (v === undefined) delete payload[k];
      else payload[k] = v;
    }
    const options = { algorithm: "HS256" };
    if (header) options.header = header;
    return jwt.sign(payload, secret || this.secret, options);
  }

  // Calls the server API. `key: null` sends no key; `keyHeader` is
  // "bearer" (Authorization: Bearer) or "x-api-key".
  async api(method, urlPath, body, { key = this.apiKey, keyHeader = "bearer", rawBody } = {}) {
    const headers = {};
    if (key !== null && key !== undefined) {
      if (keyHeader === "x-api-key") headers["X-Api-Key"] = key;
      else headers.Authorization = `Bearer ${key}`;
    }
    let payload;
    if (rawBody !== undefined) {
      payload = rawBody;
      headers["Content-Type"] = "application/json";
    } else if (body !== undefined) {
      payload = JSON.stringify(body);
      headers["Content-Type"] = "application/json";
    }
    const res = await httpRequest(method, `${this.apiUrl()}${urlPath}`, { headers, body: payload });
    const text = res.text;
    let json;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: res.status, body: json, text, headers: res.headers };
  }
}

// How many of each cluster role a SwitchboardCluster runs.
const ROUTERS = 2;
const GATEWAYS = 3;

// True when a Redis answers PING on 127.0.0.1:port within timeoutMs.
function redisPing(port, timeoutMs = 500) {
  return new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1");
    let reply = "";
    const done = (ok) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    socket.on("connect", () => socket.write("PING\r\n"));
    socket.on("data", (chunk) => {
      reply += chunk.toString();
      if (reply.includes("\r\n")) done(reply.startsWith("+PONG"));
    });
    socket.on("error", () => done(false));
  });
}

// A cluster with the interface of SwitchboardServer: a private redis-server,
// then ROUTERS `switchboard router` and GATEWAYS `switchboard gateway`
// processes, each on free ports of 127.0.0.1 and in its own process group.
// `url`/`adminUrl` are the first gateway's; `clientUrl()` and `apiUrl()`
// hand out the gateways in turn; `restart()` restarts everything (Redis
// comes back empty, so no session survives it, as with a standalone restart);
// `stop()` kills everything.
class SwitchboardCluster extends SwitchboardServer {
  constructor(options = {}) {
    super(options);
    this.clusterSecret = crypto.randomBytes(16).toString("hex");
    this.redis = { id: "redis", port: null, child: null, stderr: "" };
    const node = (role, prefix) => (_, i) => ({
      role,
      index: i,
      id: `${prefix}-${i + 1}`,
      port: null,
      adminPort: null,
      child: null,
      stderr: "",
    });
    this.routers = Array.from({ length: ROUTERS }, node("router", "router"));
    this.gateways = Array.from({ length: GATEWAYS }, node("gateway", "gw"));
    this.restarts = 0;
    this.nextClient = 0;
    this.nextApi = 0;
  }

  get topology() {
    return "cluster";
  }

  // Every gateway's url, in order.
  get gatewayUrls() {
    return this.gateways.map((g) => `http://127.0.0.1:${g.port}`);
  }

  clientUrl() {
    return this.gatewayUrls[this.nextClient++ % this.gateways.length];
  }

  apiUrl() {
    return this.gatewayUrls[this.nextApi++ % this.gateways.length];
  }

  // The admin url (/metrics, /readyz) of router or gateway `index`.
  adminUrlOf(role, index) {
    const nodes = role === "router" ? this.routers : this.gateways;
    return `http://127.0.0.1:${nodes[index].adminPort}`;
  }

  nodeEnv(node) {
    const env = {
      PATH: process.env.PATH || "/usr/bin:/bin",
      RUST_BACKTRACE: "1",
      NO_COLOR: "1", // plain text in failure messages
      ...BASE_ENV,
      SWITCHBOARD_NODE_ID: node.id,
      SWITCHBOARD_REDIS_URL: `redis://127.0.0.1:${this.redis.port}`,
      SWITCHBOARD_ADMIN_LISTEN: `127.0.0.1:${node.adminPort}`,
      SWITCHBOARD_CLUSTER_SECRET: this.clusterSecret,
    };
    if (node.role === "router") {
      env.SWITCHBOARD_GRPC_LISTEN = `127.0.0.1:${node.port}`;
    } else {
      env.SWITCHBOARD_LISTEN = `127.0.0.1:${node.port}`;
      env.SWITCHBOARD_JWT_SECRET = this.secret;
    }
    if (this.apiKey !== null) env.SWITCHBOARD_API_KEY = this.apiKey;
    // A test's settings go to every process: each reads those of its role.
    return withOverrides(env, this.overrides);
  }

  async start() {
    if (!fs.existsSync(BIN)) {
      throw new Error(
        `switchboard binary not found at ${BIN}: build it (cargo build -p switchboard) ` +
          `or point SWITCHBOARD_BIN at it`,
      );
    }
    let lastError;
    for (let attempt = 0; attempt < 3; attempt++) {
      this.redis.port = await freePort();
      for (const node of [...this.routers, ...this.gateways]) {
        node.port = await freePort();
        node.adminPort = await freePort();
      }
      this.port = this.gateways[0].port;
      this.adminPort = this.gateways[0].adminPort;
      try {
        await this.launchAll();
        return this;
      } catch (err) {
        lastError = err;
        await this.stop();
        // Retry only when a process died (a port race); a timeout is final.
        if (!err.exited) break;
      }
    }
    throw lastError;
  }

  // Everything stops and starts again on the same ports with the same
  // secrets; the gateways get new node ids, as replacements would.
  async restart() {
    await this.stop();
    this.restarts += 1;
    for (const g of this.gateways) g.id = `gw-${g.index + 1}-r${this.restarts}`;
    let lastError;
    for (let attempt = 0; attempt < 20; attempt++) {
      try {
        await this.launchAll();
        return this;
      } catch (err) {
        lastError = err;
        await this.stop();
        if (!err.exited) break;
        await sleep(100); // a port may still be held for a moment
      }
    }
    throw lastError;
  }

  async launchAll() {
    await this.launchRedis();
    await Promise.all(this.routers.map((n) => this.launchNode(n, [`${this.adminUrlOf("router", n.index)}/readyz`])));
    await Promise.all(
      this.gateways.map((n) =>
        this.launchNode(n, [
          `${this.adminUrlOf("gateway", n.index)}/readyz`,
          `http://127.0.0.1:${n.port}/socket.io/?EIO=4&transport=polling`,
        ]),
      ),
    );
  }

  async launchRedis() {
    const redis = this.redis;
    const args = ["--port", String(redis.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"];
    args.push("--daemonize", "no", "--dir", os.tmpdir());
    const env = { PATH: process.env.PATH || "/usr/bin:/bin" };
    redis.child = spawnTracked(REDIS_BIN, args, env, redis, () => `redis:${redis.port}`);
    const deadline = Date.now() + READY_TIMEOUT_MS;
    for (;;) {
      const child = redis.child;
      if (child.exitInfo) {
        if (child.exitInfo.error && child.exitInfo.error.code === "ENOENT") {
          throw new Error(
            `${REDIS_BIN} not found: the cluster topology needs redis-server ` +
              `(apt-get install -y redis-server, or point SB_REDIS_SERVER at it)`,
          );
        }
        const err = new Error(`redis-server exited before it answered PING (${describeExit(child)}); ` +
          `output:\n${redis.stderr || "(none)"}`);
        err.exited = true;
        throw err;
      }
      if (await redisPing(redis.port)) return;
      if (Date.now() > deadline) {
        throw new Error(`redis-server on port ${redis.port} did not answer PING within ${READY_TIMEOUT_MS} ms; ` +
          `output:\n${redis.stderr || "(none)"}`);
      }
      await sleep(20);
    }
  }

  // Starts one router or gateway and waits until every probe answers 200.
  async launchNode(node, probes) {
    node.child = spawnTracked(BIN, [node.role], this.nodeEnv(node), node, () => node.id);
    const deadline = Date.now() + READY_TIMEOUT_MS;
    for (;;) {
      const child = node.child;
      if (!child) throw new Error(`${node.id} was stopped while starting`);
      if (child.exitInfo) {
        const err = new Error(
          `switchboard ${node.role} ${node.id} (${BIN}) exited before it was ready (${describeExit(child)}); ` +
            `output:\n${node.stderr || "(none)"}`,
        );
        err.exited = true;
        throw err;
      }
      let ready = true;
      for (const probe of probes) {
        try {
          const res = await httpRequest("GET", probe, { timeoutMs: 1000 });
          ready = ready && res.status === 200;
        } catch {
          ready = false; // not listening yet
        }
        if (!ready) break;
      }
      if (ready) return;
      if (Date.now() > deadline) {
        throw new Error(
          `switchboard ${node.role} ${node.id} did not answer ${probes.join(" and ")} with 200 within ` +
            `${READY_TIMEOUT_MS} ms; output:\n${node.stderr || "(none)"}\n${this.outputTails()}`,
        );
      }
      await sleep(50);
    }
  }

  // The last lines of every process's output, for failure messages.
  outputTails(lines = 20) {
    return [this.redis, ...this.routers, ...this.gateways]
      .map((n) => `---- ${n.id} ----\n${(n.stderr || "(none)").split("\n").slice(-lines).join("\n")}`)
      .join("\n");
  }

  // The output of all processes, joined (as `stderr` of a standalone server).
  get output() {
    return this.outputTails(Infinity);
  }

  async stop() {
    const take = (n) => {
      const child = n.child;
      n.child = null;
      return child;
    };
    await Promise.all(this.gateways.map((n) => stopChild(take(n))));
    await Promise.all(this.routers.map((n) => stopChild(take(n))));
    await stopChild(take(this.redis));
  }
}

// Starts a server; `env` overrides or removes (null) settings, `apiKey: null`
// turns the server API off.
// With SB_TOPOLOGY=cluster the "server" is a SwitchboardCluster.
async function startServer(options = {}) {
  const server = TOPOLOGY === "cluster" ? new SwitchboardCluster(options) : new SwitchboardServer(options);
  await server.start();
  return server;
}

module.exports = {
  startServer,
  SwitchboardServer,
  SwitchboardCluster,
  TOPOLOGY,
  BIN,
  REPO,
  freePort,
  sleep,
  httpRequest,
};
