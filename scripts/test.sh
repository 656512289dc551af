#!/usr/bin/env bash
# The whole test suite, on a fresh Debian machine with Rust and Node.js.
# Installs what is missing (npm packages, python-socketio), then runs:
# formatting, clippy, the Rust tests, the JavaScript (socket.io-client) tests
# over WebSocket and polling, and the Python (python-socketio) test.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

step() { printf '\n=== %s\n' "$*"; }

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

step "python tests (python-socketio)"
venv="$root/target/pyenv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt
(cd tests/python && SWITCHBOARD_BIN="$bin" "$venv/bin/python" -m unittest -v)

step "all tests passed"
