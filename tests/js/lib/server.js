"use strict";
// Starts and stops the switchboard binary for the black-box tests.
//
// The binary is `SWITCHBOARD_BIN`, default `<repo>/target/debug/switchboard`.
// It runs with a clean environment: only the settings below and the test's
// overrides, so that nothing of the developer's shell leaks in.

const { spawn } = require("node:child_process");
const crypto = require("node:crypto");
const fs = require("node:fs");
const http = require("node:http");
const net = require("node:net");
const path = require("node:path");
const jwt = require("jsonwebtoken");

const REPO = path.resolve(__dirname, "..", "..", "..");
const BIN = process.env.SWITCHBOARD_BIN
  ? path.resolve(process.env.SWITCHBOARD_BIN)
  : path.join(REPO, "target", "debug", "switchboard");
const READY_TIMEOUT_MS = Number(process.env.SB_READY_TIMEOUT_MS || 15_000);

// Settings every test server gets unless the test overrides them. The fast
// presence interval keeps the presence tests short; it is not the default of
// the binary (250ms).
const BASE_ENV = {
  SWITCHBOARD_LOG: process.env.SB_SERVER_LOG || "warn",
  SWITCHBOARD_PRESENCE_INTERVAL: "50ms",
};

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
    for (const [k, v] of Object.entries(this.overrides)) {
      if (v === undefined || v === null) delete env[k];
      else env[k] = String(v);
    }
    return env;
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
    this.stderr = "";
    const child = spawn(BIN, [], {
      env: this.env(),
      stdio: ["ignore", "pipe", "pipe"],
      detached: true,
    });
    this.child = child;
    running.add(child);
    const keep = (chunk) => {
      this.stderr += chunk.toString();
      if (this.stderr.length > 64 * 1024) this.stderr = this.stderr.slice(-64 * 1024);
      if (process.env.SB_DEBUG) process.stderr.write(`[switchboard:${this.port}] ${chunk}`);
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

    const deadline = Date.now() + READY_TIMEOUT_MS;
    const probe = `${this.url}/socket.io/?EIO=4&transport=polling`;
    return (async () => {
      for (;;) {
        if (child.exitInfo) {
          const err = new Error(
            `switchboard (${BIN}) exited before it was ready ` +
              `(${JSON.stringify(child.exitInfo.error ? String(child.exitInfo.error) : child.exitInfo)}); ` +
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
    if (!child) return;
    this.child = null;
    kill(child);
    let timer;
    await Promise.race([child.exited, new Promise((r) => (timer = setTimeout(r, 5000)))]);
    clearTimeout(timer);
    // a leftover holder of the pipes must not keep this process alive
    child.stdout.destroy();
    child.stderr.destroy();
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
    const res = await httpRequest(method, `${this.url}${urlPath}`, { headers, body: payload });
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

// Starts a server; `env` overrides or removes (null) settings, `apiKey: null`
// turns the server API off.
async function startServer(options = {}) {
  const server = new SwitchboardServer(options);
  await server.start();
  return server;
}

module.exports = { startServer, SwitchboardServer, BIN, REPO, freePort, sleep, httpRequest };
