#!/usr/bin/env bash
# Side-by-side benchmark: runs the scenarios of PERFORMANCE.md against one or
# more servers with the `loadgen` crate, the server pinned to one core and the
# load generator to another, and prints per scenario the server's CPU time per
# delivered message, RSS per idle connection, deliveries/s, latency and loss.
#
# Usage: loadtest/bench.sh [--servers node,node-cluster,socketioxide,socketioxide-cluster,switchboard,
#                                    switchboard-cluster]
#                          [--scenarios idle10k,fanout20,fanout400,fanoutmax,rooms1k,rooms5k,idle100k,
#                                       idle2k,rooms1k10,fanoutshort]
#                          [--repeat N] [--interleave] [--port P] [--out FILE] [--quick]
#        loadtest/bench.sh --pid PID --port P [--scenarios ...]   # a server already running
#        loadtest/bench.sh --cmd 'COMMAND' --name NAME --port P   # any server start command
#        loadtest/bench.sh --markdown RESULTS.jsonl   # medians of a past run as a Markdown table
#
# --interleave runs repetition by repetition (each repetition: every scenario,
# each on every server in turn) instead of server by server, so that a drift of
# the machine's other load falls on all servers alike.
#
# Each scenario gets a freshly started server (so RSS figures start clean),
# stopped afterwards by its pid. `node-cluster` (`socketioxide-cluster`) is
# two Node (socketioxide) processes with the Redis adapter plus a
# redis-server, all on the server core; clients alternate between the two,
# and CPU and RSS are summed over the three processes. `switchboard-cluster` is
# a redis-server, one `switchboard router` and two `switchboard gateway`s, all
# on the server core; it is used once every process answers /readyz; clients
# alternate between the two gateways, and CPU and RSS are summed over the four
# processes. With --pid nothing is started or stopped.
# Everything is bounded in time: server start (30 s), each loadgen run
# (`timeout`), server stop (each process in the reverse order of its start:
# SIGTERM, 5 s, then SIGKILL to that pid only).
#
# The server and the load generator each run in a session of their own
# (setsid) whose autogroup gets nice $NICE: with autogroup scheduling, a plain
# `nice` only orders processes within one session, and unrelated builds in
# other sessions would otherwise take half of each core (runqueue waits of
# 60 % were measured before this).
#
# env: SERVER_CPU (0), LOADGEN_CPU (1), NICE (-15), JWT_SECRET, CARGO_TARGET_DIR
# (where the release binaries are found and built; default target/), LOADGEN and
# SWITCHBOARD (binary paths; default CARGO_TARGET_DIR/release/{loadgen,switchboard}),
# PEERS_TARGET (target dir for the socketioxide peer), SOURCE_ADDRS
# (127.0.0.2-127.0.0.9, used when clients exceed one source's ports).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SERVER_CPU=${SERVER_CPU:-0}
LOADGEN_CPU=${LOADGEN_CPU:-1}
NICE=${NICE:--15}
JWT_SECRET=${JWT_SECRET:-bench-secret-not-for-production}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
LOADGEN=${LOADGEN:-$TARGET_DIR/release/loadgen}
SWITCHBOARD=${SWITCHBOARD:-$TARGET_DIR/release/switchboard}
PEERS_TARGET=${PEERS_TARGET:-$ROOT/target/peers}
SOURCE_ADDRS=${SOURCE_ADDRS:-127.0.0.2-127.0.0.9}

servers=node,socketioxide
scenarios=idle10k,fanout20,fanout400,fanoutmax,rooms1k,rooms5k
repeat=1
port=3400
out=""
attach_pid=""
custom_cmd=""
custom_name=custom
quick=0
interleave=0
markdown_of=""

while [[ $# -gt 0 ]]; do
  case $1 in
    --servers) servers=$2; shift 2 ;;
    --scenarios) scenarios=$2; shift 2 ;;
    --repeat) repeat=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --pid) attach_pid=$2; shift 2 ;;
    --cmd) custom_cmd=$2; shift 2 ;;
    --name) custom_name=$2; shift 2 ;;
    --quick) quick=1; shift ;;
    --interleave) interleave=1; shift ;;
    --markdown) markdown_of=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
    *) echo "bench: unknown option $1" >&2; exit 2 ;;
  esac
done
if [[ -n $attach_pid ]]; then servers=attached; fi
if [[ -n $custom_cmd ]]; then servers=$custom_name; fi

# Open files: each client and each server connection is one descriptor.
ulimit -n 1000000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
FD_LIMIT=$(ulimit -n)

out=${out:-$ROOT/loadtest/results/$(date -u +%Y%m%dT%H%M%SZ).jsonl}
if [[ -z $markdown_of ]]; then
  mkdir -p "$(dirname "$out")"
  : >"$out"
fi

log() { echo "bench: $*" >&2; }

# --- building ---------------------------------------------------------------

ensure_loadgen() {
  if [[ ! -x $LOADGEN ]]; then
    log "building loadgen"
    (cd "$ROOT" && timeout 1800 cargo build --release -p loadgen)
  fi
}

ensure_server() {
  case $1 in
    node|node-cluster)
      if [[ ! -d $ROOT/loadtest/peers/node/node_modules ]]; then
        log "installing the node peer's packages"
        (cd "$ROOT/loadtest/peers/node" && timeout 600 npm ci --no-audit --no-fund)
      fi ;;
    socketioxide|socketioxide-cluster)
      if [[ ! -x $PEERS_TARGET/release/peer-socketioxide ]]; then
        log "building the socketioxide peer"
        timeout 1800 cargo build --release --manifest-path "$ROOT/loadtest/peers/socketioxide/Cargo.toml" \
          --target-dir "$PEERS_TARGET"
      fi ;;
    switchboard|switchboard-cluster)
      if [[ ! -x $SWITCHBOARD ]]; then
        log "building switchboard"
        (cd "$ROOT" && timeout 1800 cargo build --release -p switchboard)
      fi ;;
  esac
}

# --- server lifecycle -------------------------------------------------------

SERVER_PIDS=()
SERVER_NAMES=()

# Starts one process of the server under test on the server core.
spawn() { # log-name command...
  local logname=$1; shift
  boosted "$SERVER_CPU" "$@" >"$out.$logname.log" 2>&1 &
  SERVER_PIDS+=($!)
  SERVER_NAMES+=("$logname")
}

# Runs a command pinned to a CPU in a new session whose autogroup has nice
# $NICE. The autogroup is set from inside the new session before the exec, so
# there is no race; setsid, bash, nice and taskset all exec: $! is the
# command's own pid.
boosted() { # cpu command...
  local cpu=$1; shift
  exec setsid bash -c 'echo "$1" >/proc/self/autogroup 2>/dev/null || true; n=$1 c=$2; shift 2; exec nice -n "$n" taskset -c "$c" "$@"' \
    boosted "$NICE" "$cpu" "$@"
}

wait_port() { # port
  local i pid
  for i in $(seq 1 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    for pid in "${SERVER_PIDS[@]}"; do
      if ! kill -0 "$pid" 2>/dev/null; then log "a server process exited at start; see $out.*.log"; return 1; fi
    done
    sleep 0.1
  done
  log "nothing listens on $1 after 30 s"
  return 1
}

# Waits until GET /readyz on an admin port answers 200 (30 s at most).
wait_ready() { # port
  local i pid
  for i in $(seq 1 300); do
    if curl -fs -o /dev/null --max-time 1 "http://127.0.0.1:$1/readyz"; then return 0; fi
    for pid in "${SERVER_PIDS[@]}"; do
      if ! kill -0 "$pid" 2>/dev/null; then log "a server process exited at start; see $out.*.log"; return 1; fi
    done
    sleep 0.1
  done
  log "127.0.0.1:$1/readyz is not 200 after 30 s"
  return 1
}

# Switchboard's settings for the benchmark, standalone and cluster alike:
# presence lists off (the peers have no presence), the per-socket event rate
# limit out of the way of the fan-out publisher (the peers have none).
SWITCHBOARD_ENV=(SWITCHBOARD_JWT_SECRET="$JWT_SECRET" SWITCHBOARD_PRESENCE_BROADCAST=false
  SWITCHBOARD_PRESENCE_ON_CONNECT=false SWITCHBOARD_EVENT_RATE=1000000 SWITCHBOARD_EVENT_BURST=1000000
  SWITCHBOARD_LOG=warn)

# Sets SERVER_URLS; the pids are in SERVER_PIDS.
start_server() { # name
  local name=$1
  SERVER_URLS="http://127.0.0.1:$port"
  case $name in
    node) spawn node env PORT="$port" HOST=127.0.0.1 JWT_SECRET="$JWT_SECRET" node "$ROOT/loadtest/peers/node/server.js" ;;
    node-cluster|socketioxide-cluster)
      local redis_port=$((port + 100)) i
      local -a peer=(node "$ROOT/loadtest/peers/node/server.js")
      [[ $name == socketioxide-cluster ]] && peer=("$PEERS_TARGET/release/peer-socketioxide")
      spawn redis redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no
      wait_port "$redis_port" || { stop_server; return 1; }
      for i in 0 1; do
        spawn "$name$i" env PORT="$((port + i))" HOST=127.0.0.1 JWT_SECRET="$JWT_SECRET" \
          REDIS_URL="redis://127.0.0.1:$redis_port" "${peer[@]}"
      done
      wait_port "$((port + 1))" || { stop_server; return 1; }
      SERVER_URLS="http://127.0.0.1:$port,http://127.0.0.1:$((port + 1))" ;;
    socketioxide) spawn socketioxide env PORT="$port" HOST=127.0.0.1 JWT_SECRET="$JWT_SECRET" "$PEERS_TARGET/release/peer-socketioxide" ;;
    # The admin port on a free port of its own.
    switchboard) spawn switchboard env SWITCHBOARD_LISTEN="127.0.0.1:$port" \
        SWITCHBOARD_ADMIN_LISTEN="127.0.0.1:$((port + 1000))" "${SWITCHBOARD_ENV[@]}" "$SWITCHBOARD" ;;
    # Redis on port+100 (no persistence), the router's gRPC on port+200 and
    # its admin on port+1002, gateway i on port+i with admin on port+1000+i.
    switchboard-cluster)
      local redis_port=$((port + 100)) i
      local redis_url="redis://127.0.0.1:$((port + 100))"
      spawn redis redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no
      wait_port "$redis_port" || { stop_server; return 1; }
      spawn router env SWITCHBOARD_REDIS_URL="$redis_url" SWITCHBOARD_GRPC_LISTEN="127.0.0.1:$((port + 200))" \
        SWITCHBOARD_ADMIN_LISTEN="127.0.0.1:$((port + 1002))" SWITCHBOARD_NODE_ID=bench-router \
        SWITCHBOARD_LOG=warn "$SWITCHBOARD" router
      wait_ready "$((port + 1002))" || { stop_server; return 1; }
      for i in 0 1; do
        spawn "gateway$i" env SWITCHBOARD_LISTEN="127.0.0.1:$((port + i))" \
          SWITCHBOARD_ADMIN_LISTEN="127.0.0.1:$((port + 1000 + i))" SWITCHBOARD_REDIS_URL="$redis_url" \
          SWITCHBOARD_CLUSTER_SECRET=bench-cluster-secret SWITCHBOARD_NODE_ID="bench-gw$i" \
          "${SWITCHBOARD_ENV[@]}" "$SWITCHBOARD" gateway
      done
      for i in 0 1; do wait_ready "$((port + 1000 + i))" || { stop_server; return 1; }; done
      SERVER_URLS="http://127.0.0.1:$port,http://127.0.0.1:$((port + 1))" ;;
    *) spawn "$name" bash -c "exec $custom_cmd" ;;
  esac
  wait_port "$port" || { stop_server; return 1; }
}

# Stops the processes in the reverse order of their start (a cluster's
# gateways before its router, Redis last, so that none waits on a dead
# Redis), each by its pid: SIGTERM, then SIGKILL after 5 s.
stop_server() {
  local pid i k
  for ((k = ${#SERVER_PIDS[@]} - 1; k >= 0; k--)); do
    pid=${SERVER_PIDS[k]}
    kill "$pid" 2>/dev/null || true
    for i in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  SERVER_PIDS=()
  SERVER_NAMES=()
}
trap stop_server EXIT INT TERM

# utime + stime (ticks of 1/100 s) of /proc/PID/stat, fields 14 and 15
# (counted after the ')' that ends the command name).
# Summed over the pids given.
cpu_ticks() { local p t=0; for p in "$@"; do t=$((t + $(sed 's/.*) //' "/proc/$p/stat" | awk '{print $12 + $13}'))); done; echo "$t"; }
# Per process, as a JSON array of {name, cpu_ticks, rss_kib} (0 for a process
# that is gone).
proc_each() { # name... -- pid...
  local -a names=()
  while [[ $1 != -- ]]; do names+=("$1"); shift; done
  shift
  local k=0 p cpu rss
  for p in "$@"; do
    cpu=$(cpu_ticks "$p" 2>/dev/null) || cpu=0
    rss=$(rss_kib "$p" 2>/dev/null) || rss=0
    echo "{\"name\": \"${names[k]:-$p}\", \"cpu_ticks\": ${cpu:-0}, \"rss_kib\": ${rss:-0}}"
    k=$((k + 1))
  done | jq -sc .
}
rss_kib() { local p t=0; for p in "$@"; do t=$((t + $(awk '/^VmRSS:/{print $2}' "/proc/$p/status"))); done; echo "$t"; }

# --- scenarios --------------------------------------------------------------

# Prints the loadgen arguments of a scenario; bounded by --duration etc.
scenario_args() {
  local q=$quick
  case $1 in
    idle10k)   echo "idle --clients $((q ? 2000 : 10000)) --duration 10 --ramp 2000" ;;
    # The first check of loadgen against the peers (docs/benchmarks.md).
    idle2k)    echo "idle --clients 2000 --duration 10 --ramp 2000" ;;
    rooms1k10) echo "rooms --clients 1000 --room-size 10 --publishers 10 --rate 1 --duration 10" ;;
    fanoutshort) echo "fanout --clients 1000 --rates 50,100,200,400,800,1600 --duration 3 --drain 3" ;;
    idle100k)  echo "idle --clients 100000 --duration 20 --ramp 5000 --source-addrs $SOURCE_ADDRS" ;;
    fanout20)  echo "fanout --clients $((q ? 200 : 1000)) --rates 20 --duration 10 --max-p99-ms 1e9 --max-loss 1" ;;
    fanout400) echo "fanout --clients $((q ? 200 : 1000)) --rates 400 --duration 10 --max-p99-ms 1e9 --max-loss 1" ;;
    fanoutmax) echo "fanout --clients $((q ? 200 : 1000)) --rates 100,200,400,800,1200,1600,2400,3200 --duration 5 --drain 3" ;;
    rooms1k)   echo "rooms --clients 1000 --room-size 10 --publishers 10 --rate 1 --duration $((q ? 5 : 20))" ;;
    rooms5k)   echo "rooms --clients $((q ? 2000 : 5000)) --room-size 10 --publishers 10 --rate 1 --duration $((q ? 5 : 20))" ;;
    *) return 1 ;;
  esac
}

# Clients a scenario opens, for the open-files check.
scenario_clients() { scenario_args "$1" | sed -n 's/.*--clients \([0-9]*\).*/\1/p'; }

run_one() { # server scenario rep
  local name=$1 sc=$2 rep=$3 pids args clients
  args=$(scenario_args "$sc") || { log "unknown scenario $sc"; return 1; }
  clients=$(scenario_clients "$sc")
  # Server and load generator each need one descriptor per client.
  if (( clients + 100 > FD_LIMIT )); then
    log "skip $name/$sc: open files limit $FD_LIMIT is below $((clients + 100))"
    return 0
  fi
  if [[ -n $attach_pid ]]; then
    SERVER_URLS="http://127.0.0.1:$port"
    pids=${attach_pid//,/ }
  else
    start_server "$name" || return 0
    pids="${SERVER_PIDS[*]}"
  fi
  local cpu0 rss0 cpu1 rss1 json each0 each1
  # shellcheck disable=SC2086 # pids is a list of words
  cpu0=$(cpu_ticks $pids); rss0=$(rss_kib $pids); each0=$(proc_each "${SERVER_NAMES[@]}" -- $pids)
  log "$name/$sc #$rep: loadgen $args"
  local report lg
  report=$(mktemp)
  # shellcheck disable=SC2086 # args and pids are lists of words
  boosted "$LOADGEN_CPU" timeout 900 "$LOADGEN" $args \
    --url "$SERVER_URLS" --jwt-secret "$JWT_SECRET" --server-pid "${pids// /,}" \
    >"$report" 2>>"$out.loadgen.log" &
  lg=$!
  wait "$lg" || true
  json=$(tail -n 1 "$report")
  rm -f "$report"
  # shellcheck disable=SC2086
  cpu1=$(cpu_ticks $pids 2>/dev/null || echo "$cpu0"); rss1=$(rss_kib $pids 2>/dev/null || echo 0)
  # shellcheck disable=SC2086
  each1=$(proc_each "${SERVER_NAMES[@]}" -- $pids)
  [[ -z $attach_pid ]] && stop_server
  if ! jq -e . >/dev/null 2>&1 <<<"$json"; then
    log "$name/$sc #$rep: no report (see $out.loadgen.log)"
    return 0
  fi
  jq -c --arg name "$name" --arg scenario "$sc" --argjson rep "$rep" \
        --arg date "$(date -u +%FT%TZ)" --argjson cpu0 "$cpu0" --argjson cpu1 "$cpu1" \
        --argjson rss0 "${rss0:-0}" --argjson rss1 "${rss1:-0}" --argjson each0 "$each0" --argjson each1 "$each1" \
        '{name: $name, scenario: $scenario, rep: $rep, date: $date,
          proc: {cpu_s: (($cpu1 - $cpu0) / 100), rss_before_kib: $rss0, rss_after_kib: $rss1,
                 each: [range(0; $each1 | length) as $k
                        | {name: $each1[$k].name, cpu_s: (($each1[$k].cpu_ticks - $each0[$k].cpu_ticks) / 100),
                           rss_after_kib: $each1[$k].rss_kib}]}} + .' \
        <<<"$json" >>"$out"
  tail -n 1 "$out" | summary_line
}

# One line per run: the figures PERFORMANCE.md compares.
summary_line() {
  jq -r '
    def f(x; n): if x == null then "-" else (x * pow(10; n) | round / pow(10; n) | tostring) end;
    [ .name, .scenario,
      "cpu/deliv=" + f(.server.cpu_us_per_delivery; 1) + "us",
      "cpu/connect=" + f(.server.cpu_us_per_connect; 0) + "us",
      "rss/conn=" + f(.server.rss_kib_per_connection; 2) + "KiB",
      "deliv/s=" + f(.deliveries_per_s; 0),
      "p50=" + f(.latency_p50_ms; 2) + "ms", "p99=" + f(.latency_p99_ms; 2) + "ms",
      "loss=" + f(.loss; 4),
      "connected=" + (.connected | tostring) + "/" + (.clients | tostring),
      "server_cpu=" + f(.server.cpu_util; 2), "loadgen_cpu=" + f(.loadgen_cpu_util; 2),
      (if (.proc.each // [] | length) > 1
       then "cpu_s=" + (.proc.each | map(.name + ":" + f(.cpu_s; 2)) | join(",")) else empty end) ]
    | join("  ")'
}

# Medians over repetitions, one line per server and scenario.
medians() {
  jq -rs '
    def med: sort | if length == 0 then null else .[(length - 1) / 2 | floor] end;
    def f(x; n): if x == null then "-" else (x * pow(10; n) | round / pow(10; n) | tostring) end;
    group_by([.name, .scenario])[]
    | { name: .[0].name, scenario: .[0].scenario, n: length,
        cpu: (map(.server.cpu_us_per_delivery // empty) | med),
        connect: (map(.server.cpu_us_per_connect // empty) | med),
        rss: (map(.server.rss_kib_per_connection // empty) | med),
        dps: (map(.deliveries_per_s) | med), p99: (map(.latency_p99_ms) | med),
        loss: (map(.loss) | med) }
    | [ .name, .scenario, "n=" + (.n | tostring), "cpu/deliv=" + f(.cpu; 1) + "us",
        "cpu/connect=" + f(.connect; 0) + "us", "rss/conn=" + f(.rss; 2) + "KiB",
        "deliv/s=" + f(.dps; 0), "p99=" + f(.p99; 2) + "ms", "loss=" + f(.loss; 4) ]
    | join("  ")' "$out"
}

# Medians over repetitions as a Markdown table (docs/benchmarks.md).
markdown() { # results.jsonl
  echo "| server | scenario | runs | server CPU µs/delivery | server CPU µs/connect | RSS KiB/conn | deliveries/s | p50 ms | p99 ms | loss | server core | loadgen core | loadgen µs/delivery |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
  jq -rs '
    def med: map(select(. != null)) | sort | if length == 0 then null else .[(length - 1) / 2 | floor] end;
    def f(n): if . == null then "–" else (. * pow(10; n) | round / pow(10; n) | tostring) end;
    group_by([.name, .scenario])[]
    | [ .[0].name, .[0].scenario, (length | tostring),
        (map(.server.cpu_us_per_delivery) | med | f(1)),
        (map(.server.cpu_us_per_connect) | med | f(0)),
        (map(.server.rss_kib_per_connection) | med | f(1)),
        (map(.deliveries_per_s) | med | f(0)),
        (map(if .delivered > 0 then .latency_p50_ms else null end) | med | f(2)),
        (map(if .delivered > 0 then .latency_p99_ms else null end) | med | f(1)),
        (map(if .expected > 0 then .loss else null end) | med | f(4)),
        (map(.server.cpu_util) | med | f(2)),
        (map(.loadgen_cpu_util) | med | f(2)),
        (map(.loadgen_cpu_us_per_delivery) | med | f(2)) ]
    | "| " + join(" | ") + " |"' "$1"
}

# --- main -------------------------------------------------------------------

if [[ -n $markdown_of ]]; then markdown "$markdown_of"; exit 0; fi

ensure_loadgen
IFS=, read -ra server_list <<<"$servers"
IFS=, read -ra scenario_list <<<"$scenarios"
for s in "${server_list[@]}"; do ensure_server "$s"; done
log "results: $out (open files limit $FD_LIMIT; server on cpu $SERVER_CPU, loadgen on cpu $LOADGEN_CPU)"
if ((interleave)); then
  for rep in $(seq 1 "$repeat"); do
    for sc in "${scenario_list[@]}"; do
      for s in "${server_list[@]}"; do run_one "$s" "$sc" "$rep"; done
    done
  done
else
  for s in "${server_list[@]}"; do
    for sc in "${scenario_list[@]}"; do
      for rep in $(seq 1 "$repeat"); do run_one "$s" "$sc" "$rep"; done
    done
  done
fi
echo "--- medians ($out)"
medians
