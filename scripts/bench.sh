#!/usr/bin/env bash
# Runs the load generator scenarios behind BENCHMARKS.md, each on a freshly
# started release server, several times, and prints medians.
#
# Usage: scripts/bench.sh [scenario...]   (default: all)
#   scenarios: idle join joinrate race fanout ramp latency chat durable
# Env: RUNS (default 3), PORT (default 3100), OUT (results dir).
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
PORT=${PORT:-3100}
OUT=${OUT:-bench-results/$(date -u +%Y%m%d-%H%M%S)}
URL="ws://127.0.0.1:$PORT/websocket"
export ROOMD_JWT_SECRET=${ROOMD_JWT_SECRET:-bench-secret}
mkdir -p "$OUT"

cargo build --release --bin roomd --example loadgen >/dev/null
BIN=target/release/roomd
LG=target/release/examples/loadgen

SERVER_PID=""
start_server() { # extra roomd args...
  stop_server
  if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
    echo "port $PORT is already in use; stop whatever listens there" >&2; exit 1
  fi
  "$BIN" --listen "127.0.0.1:$PORT" --no-rate-limits "$@" >"$OUT/server.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 100); do
    kill -0 "$SERVER_PID" 2>/dev/null || { echo "server exited; see $OUT/server.log" >&2; exit 1; }
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "server did not start" >&2; exit 1
}
stop_server() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  SERVER_PID=""
}
trap stop_server EXIT

# run NAME ROOMD_ARGS -- LOADGEN_ARGS...: RUNS times, fresh server each time.
run() {
  local name=$1; shift
  local server_args=()
  while [ "$1" != "--" ]; do server_args+=("$1"); shift; done
  shift
  for i in $(seq "$RUNS"); do
    start_server "${server_args[@]}"
    "$LG" "$@" --url "$URL" --server-pid "$SERVER_PID" --json >>"$OUT/$name.jsonl" 2>>"$OUT/$name.txt" \
      || echo "run $i of $name exited non-zero" | tee -a "$OUT/$name.txt" >&2
  done
  stop_server
}

scenarios=("$@")
[ ${#scenarios[@]} -eq 0 ] && scenarios=(idle join joinrate race fanout ramp latency chat durable)
for s in "${scenarios[@]}"; do
  echo "== $s" >&2
  case $s in
    # 19,000 idle connections joined to 1,900 rooms and subscribed; two
    # loadgen shards, since one process may hold at most 20,000 files here.
    idle)
      for i in $(seq "$RUNS"); do
        start_server --in-memory
        base=$("$LG" probe --url "$URL" --server-pid "$SERVER_PID" --json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["server_rss_kb"])')
        "$LG" idle 19000 --shard 1/2 --baseline-rss-kb "$base" --hold 25s --url "$URL" --server-pid "$SERVER_PID" --json >>"$OUT/idle.jsonl" 2>>"$OUT/idle.txt" &
        p1=$!
        "$LG" idle 19000 --shard 2/2 --baseline-rss-kb "$base" --hold 25s --url "$URL" --server-pid "$SERVER_PID" --json >>"$OUT/idle.jsonl" 2>>"$OUT/idle.txt" || true
        wait $p1 || true
      done
      stop_server ;;
    join) run join --in-memory -- join 15000 150 50 ;;
    # Half the measured burst maximum (~30k joins/s wall here).
    joinrate) run joinrate --in-memory -- join 15000 150 100 --rate 15000 ;;
    race) RUNS=1 run race --in-memory -- race --clients 300 --seats 5 --iterations 50 ;;
    fanout) run fanout --in-memory -- fanout 100 50 2000 --duration 10s ;;
    ramp) RUNS=1 run ramp --in-memory -- fanout 100 50 500 --ramp --step 5s ;;
    # 10,000 connections, 5,000 msgs/s: pairs (method latency) and rooms of
    # ten (with fan-out).
    latency) run latency-pairs --in-memory -- fanout 5000 2 5000 --duration 10s
             run latency-tens --in-memory -- fanout 1000 10 5000 --duration 10s ;;
    # Rooms of 50 fill their 1,000-message history within a minute, after
    # which RSS should stay flat.
    chat) RUNS=1 run chat --in-memory -- chat --clients 500 --room-size 50 --duration 240s ;;
    durable)
      rm -rf "$OUT/data"
      run join-durable --data-dir "$OUT/data" -- join 15000 150 50
      rm -rf "$OUT/data"
      run fanout-durable --data-dir "$OUT/data" -- fanout 100 50 2000 --duration 10s
      rm -rf "$OUT/data" ;;
    *) echo "unknown scenario $s" >&2; exit 2 ;;
  esac
done
python3 scripts/bench_summary.py "$OUT"
