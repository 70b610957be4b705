#!/usr/bin/env bash
# A fresh cluster node's readiness time and memory against the size of the
# room log (issue 19; BENCHMARKS.md "Cluster growth").
#
# Usage: scripts/cluster-growth.sh ROOMD_BIN LOADGEN_BIN MESSAGES [EXTRA_ROOMD_FLAGS...]
#   Starts one nats-server (JetStream, default sync, R1) -- or NATS_N=3 clustered
#   servers and R3 streams, issue 19's setup -- and a writer
#   node, sends about MESSAGES messages with `loadgen fanout` (20 rooms, 2
#   senders each = 40 writers), then starts a second node and reports the
#   time from its spawn to `GET /readyz` 200, its VmRSS once ready, and the
#   streams' sizes. Every process it starts is stopped by its PID.
# Env: NATS_SERVER (default: PATH), RATE (msgs/s, 4000), PORT0 (3400),
#      NATS_PORT (14400; monitor +100; with NATS_N=3 servers use NATS_PORT..+2,
#      monitors +100..+102, routes +200..+202), NATS_N (1 or 3).
set -euo pipefail
ROOMD=$1 LOADGEN=$2 MESSAGES=$3
shift 3
NATS=${NATS_SERVER:-$(command -v nats-server)}
RATE=${RATE:-4000}
PORT0=${PORT0:-3400}
NATS_PORT=${NATS_PORT:-14400}
MON=$((NATS_PORT + 100))
export ROOMD_JWT_SECRET=bench-secret-growth
DIR=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$DIR"; }
trap cleanup EXIT

NATS_N=${NATS_N:-1}
ROUTES=""
for i in $(seq 0 $((NATS_N - 1))); do ROUTES+="${ROUTES:+, }\"nats-route://127.0.0.1:$((NATS_PORT + 200 + i))\""; done
URLS=""
for i in $(seq 0 $((NATS_N - 1))); do
  URLS+="${URLS:+,}nats://127.0.0.1:$((NATS_PORT + i))"
  {
    echo "server_name: s$i"
    echo "listen: 127.0.0.1:$((NATS_PORT + i))"
    echo "http: 127.0.0.1:$((MON + i))"
    echo "jetstream { store_dir: \"$DIR/js$i\" }"
    if [ "$NATS_N" -gt 1 ]; then
      echo "cluster { name: growth, listen: \"127.0.0.1:$((NATS_PORT + 200 + i))\", routes: [$ROUTES] }"
    fi
  } >"$DIR/nats$i.conf"
  "$NATS" -c "$DIR/nats$i.conf" >"$DIR/nats$i.log" 2>&1 &
  PIDS+=($!)
done
for i in $(seq 0 $((NATS_N - 1))); do
  for _ in $(seq 300); do curl -sf "http://127.0.0.1:$((MON + i))/healthz?js-enabled-only=true" >/dev/null && break; sleep 0.1; done
done
REPL=(--cluster-replicas 1)
if [ "$NATS_N" -gt 1 ]; then REPL=(); fi

node() { # node <id> <port> [flags...]
  local id=$1 port=$2
  shift 2
  "$ROOMD" --cluster "$URLS" "${REPL[@]}" --node-id "$id" \
    --listen "127.0.0.1:$port" --no-rate-limits --data-dir "$DIR/$id" "$@" >"$DIR/$id.log" 2>&1 &
  echo $!
}
wait_ready() { # bounded: 120 s
  local i
  for i in $(seq 12000); do curl -sf "http://127.0.0.1:$1/readyz" >/dev/null && return 0; sleep 0.01; done
  echo "port $1 not ready after 120 s" >&2; exit 1
}

W=$(node w "$PORT0" "$@")
PIDS+=("$W")
wait_ready "$PORT0"
DUR=$(( (MESSAGES + RATE - 1) / RATE ))
"$LOADGEN" fanout 20 1 "$RATE" --duration "${DUR}s" --senders-per-room 2 \
  --url "ws://127.0.0.1:$PORT0/websocket" --server-pid "$W" >"$DIR/loadgen.log" 2>&1 || {
  tail -20 "$DIR/loadgen.log"; exit 1; }
sleep 2 # the last snapshots and purges

streams=$(curl -sf "http://127.0.0.1:$MON/jsz?streams=true")
sent=$(grep -o 'sent [0-9]*' "$DIR/loadgen.log" | head -1 || true)
start=$(date +%s%N)
F=$(node fresh $((PORT0 + 1)) "$@")
PIDS+=("$F")
wait_ready $((PORT0 + 1))
ready_ms=$(( ($(date +%s%N) - start) / 1000000 ))
sleep 1
rss_kb=$(awk '/VmRSS/ {print $2}' "/proc/$F/status")
applied=$(curl -sf "http://127.0.0.1:$((PORT0 + 1))/metrics" | awk '/^roomd_cluster_applied_total/ {print $2}')
echo "$streams" | python3 -c '
import json, sys
for s in json.load(sys.stdin)["account_details"][0]["stream_detail"]:
    st = s["state"]
    print("stream %s: %d messages, %.1f MB" % (s["name"], st["messages"], st["bytes"] / 1e6))'
grep -E "sent|deliver" "$DIR/loadgen.log" | head -3 || true
echo "messages≈$MESSAGES $sent fresh_ready_ms=$ready_ms fresh_rss_mb=$(awk "BEGIN{print $rss_kb/1024}") fresh_applied=$applied"
