#!/usr/bin/env bash
# Paired single-node runs of two roomd release binaries (BENCHMARKS.md, issue 20's
# cost of the position `seq`): each pair runs A and B back to back on freshly
# started servers, the order alternating pair by pair, so background load hits
# both alike.
#
# Usage: scripts/paired-bench.sh OLD_ROOMD NEW_ROOMD [PAIRS]
#   per pair and binary: `loadgen fanout 100 50 500 --duration 10s` (deliveries per
#   server CPU-s) and `loadgen idle 10000` (RSS per idle joined+subscribed connection,
#   from a `probe` baseline). Server pinned to core 0, loadgen to core 1 (taskset).
# Env: LOADGEN (target/release/examples/loadgen), PORT (3150), OUT (results dir).
# Then: python3 scripts/paired_summary.py "$OUT"
set -euo pipefail
OLD=$1 NEW=$2 PAIRS=${3:-5}
cd "$(dirname "$0")/.."
LG=${LOADGEN:-$PWD/target/release/examples/loadgen}
PORT=${PORT:-3150}
URL="ws://127.0.0.1:$PORT/websocket"
OUT=${OUT:-bench-results/paired-$(date -u +%Y%m%d-%H%M%S)}
export ROOMD_JWT_SECRET=${ROOMD_JWT_SECRET:-bench-secret-paired}
mkdir -p "$OUT"
SERVER_PID=""
stop_server() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  SERVER_PID=""
}
trap stop_server EXIT
start_server() { # BIN
  stop_server
  taskset -c 0 "$1" --listen "127.0.0.1:$PORT" --no-rate-limits --in-memory >"$OUT/server.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 100); do
    kill -0 "$SERVER_PID" 2>/dev/null || { echo "server exited; see $OUT/server.log" >&2; exit 1; }
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/readyz")" = 200 ] && return 0
    sleep 0.1
  done
  echo "server did not start" >&2; exit 1
}
# one LABEL BIN SCENARIO: one JSON line, tagged, appended to $OUT/results.jsonl
one() {
  local label=$1 bin=$2 sc=$3 load line
  load=$(cut -d' ' -f1 /proc/loadavg)
  start_server "$bin"
  case $sc in
    fanout) line=$(taskset -c 1 "$LG" fanout 100 50 500 --duration 10s --url "$URL" --server-pid "$SERVER_PID" --json 2>>"$OUT/$label-$sc.txt" || true) ;;
    idle)
      local base
      base=$(taskset -c 1 "$LG" probe --url "$URL" --server-pid "$SERVER_PID" --json 2>/dev/null \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["server_rss_kb"])')
      line=$(taskset -c 1 "$LG" idle 10000 --baseline-rss-kb "$base" --hold 2s --url "$URL" --server-pid "$SERVER_PID" --json 2>>"$OUT/$label-$sc.txt" || true) ;;
  esac
  stop_server
  [ -n "$line" ] || { echo "$label $sc: no result" >&2; return 0; }
  echo "$line" | python3 -c 'import json,sys; d=json.load(sys.stdin); d["label"]=sys.argv[1]; d["sc"]=sys.argv[2]; d["pair"]=int(sys.argv[3]); d["load1"]=float(sys.argv[4]); print(json.dumps(d))' \
    "$label" "$sc" "$PAIR" "$load" >>"$OUT/results.jsonl"
}
for PAIR in $(seq "$PAIRS"); do
  for sc in fanout idle; do
    if [ $((PAIR % 2)) = 1 ]; then one old "$OLD" $sc; one new "$NEW" $sc
    else one new "$NEW" $sc; one old "$OLD" $sc; fi
  done
  echo "pair $PAIR done $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
done
python3 scripts/paired_summary.py "$OUT" || true
