#!/usr/bin/env node
"use strict";
// Runs the suite once per transport: `node run.js` (both), `node run.js
// websocket`, `node run.js polling`; further arguments name test files.
// The binary is SWITCHBOARD_BIN, default <repo>/target/debug/switchboard.
// With SB_TOPOLOGY=cluster (`npm run test:cluster`) every server is a
// cluster: Redis, 2 routers, 3 gateways (lib/server.js).

const { spawnSync } = require("node:child_process");
const fs = require("node:fs");
const path = require("node:path");

const args = process.argv.slice(2);
let transports = ["websocket", "polling"];
if (args[0] === "websocket" || args[0] === "polling") transports = [args.shift()];
const testDir = path.join(__dirname, "test");
const files = args.length
  ? args
  : fs
      .readdirSync(testDir)
      .filter((f) => f.endsWith(".test.js"))
      .sort()
      .map((f) => path.join("test", f));

const { BIN } = require("./lib/server");
if (!fs.existsSync(BIN)) {
  console.error(
    `switchboard binary not found at ${BIN}: build it (cargo build -p switchboard) or point SWITCHBOARD_BIN at it`,
  );
  process.exit(1);
}

let failed = false;
for (const transport of transports) {
  const on = process.env.SB_TOPOLOGY === "cluster" ? " on a cluster (Redis, 2 routers, 3 gateways)" : "";
  console.log(`\n=== socket.io-client over ${transport}${on} ===`);
  const res = spawnSync(process.execPath, [
    "--test",
    "--test-reporter=spec",
    "--test-timeout=120000",
    `--test-concurrency=${process.env.SB_TEST_CONCURRENCY || 3}`,
    ...files,
  ], {
    cwd: __dirname,
    stdio: "inherit",
    env: { ...process.env, SB_TRANSPORT: transport },
    timeout: 10 * 60 * 1000,
  });
  if (res.status !== 0) {
    failed = true;
    console.log(`=== ${transport}: FAILED (exit ${res.status}${res.signal ? `, ${res.signal}` : ""}) ===`);
  } else {
    console.log(`=== ${transport}: passed ===`);
  }
}
process.exit(failed ? 1 : 0);
