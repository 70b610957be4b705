#!/usr/bin/env bash
# Rooms by interest against every room on every node, measured
# (BENCHMARKS.md, "Rooms by interest"). Usage:
#   scripts/bench-interest.sh <roomd-binary> <interest|all> [rooms-per-node] [messages-per-room]
# One nats-server (JetStream, R1) and three nodes; 3 x rooms-per-node rooms,
# each used through one node only. Prints each node's RSS and rooms held,
# the first-call times of rooms node b did not hold, and a fresh fourth
# node's ready time and RSS.
set -euo pipefail
bin=$1 mode=$2 per=${3:-300} msgs=${4:-10}
root=$(cd "$(dirname "$0")/.." && pwd)
nats=${ROOMD_NATS_SERVER:-$(command -v nats-server)}
[[ -d "$root/tests/interop/node_modules/ws" ]] || npm ci --prefix "$root/tests/interop" --silent
dir=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$dir"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
np=$(port)
"$nats" -js -a 127.0.0.1 -p "$np" -sd "$dir/nats" >"$dir/nats.log" 2>&1 &
pids+=($!)
sleep 1
secret=bench-$RANDOM
urls=() http=()
start() { # id -> sets $p (port) and pushes the pid
  p=$(port)
  ROOMD_JWT_SECRET=$secret ROOMD_LISTEN=127.0.0.1:$p "$bin" --no-rate-limits --cluster "nats://127.0.0.1:$np" \
    --node-id "$1" --cluster-replicas 1 --cluster-rooms "$mode" >"$dir/$1.log" 2>&1 &
  pids+=($!)
  until curl -sf "http://127.0.0.1:$p/readyz" >/dev/null; do sleep 0.05; done
}
rss() { awk '/^VmRSS:/{print $2}' "/proc/$1/status"; }
loaded() { curl -s "http://127.0.0.1:$1/metrics" | awk '/^roomd_rooms_loaded /{print $2}'; }
ports=()
for id in a b c; do start "$id"; ports+=("$p"); urls+=("ws://127.0.0.1:$p/websocket"); done
node "$root/scripts/bench-interest.mjs" "$secret" "$per" "$msgs" "${urls[@]}"
for i in 0 1 2; do
  echo "node ${urls[$i]}: rss_kb=$(rss "${pids[$((i + 1))]}") rooms_loaded=$(loaded "${ports[$i]}")"
done
t0=$(date +%s%N)
start d
echo "fresh node d: ready_ms=$((($(date +%s%N) - t0) / 1000000)) rss_kb=$(rss "${pids[4]}") rooms_loaded=$(loaded "$p")"
