#!/usr/bin/env bash
# Browser tests: the meeting-room web app that roomd embeds, driven in
# headless Chromium (the system browser, Debian package `chromium`) through
# playwright-core. No browser is downloaded.
#
# usage: tests/browser/run.sh [path-to-roomd-binary]
#   default binary: target/release/roomd (relative to the repo root)
# env:
#   CHROMIUM=/usr/bin/chromium      the browser to drive
#   BROWSER_TIMEOUT_MS=120000       overall timeout of the scenario
#   BROWSER_KEEP_LOGS=1             keep the server log and data dir
#   BROWSER_SCENARIOS="a b"         run only these scenarios (default: every
#                                   *.mjs here: host-guest, share-links)
# Screenshots go to tests/browser/artifacts/ (gitignored).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"

log() { printf '[browser] %s\n' "$*"; }
die() { printf '[browser] ERROR: %s\n' "$*" >&2; exit 2; }

if [[ $# -ge 1 && -n "$1" ]]; then
  BIN="$1"
  [[ "$BIN" = /* ]] || BIN="$PWD/$BIN"
else
  BIN="$REPO_ROOT/target/release/roomd"
fi
[[ -x "$BIN" ]] || die "roomd binary not found or not executable: $BIN (build it with: cargo build --release)"
command -v node >/dev/null || die "node is required"
command -v npm >/dev/null || die "npm is required"
export CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
[[ -x "$CHROMIUM" ]] || die "no Chromium at $CHROMIUM (Debian: apt-get install -y chromium)"

log "installing node dependencies in $SCRIPT_DIR"
(cd "$SCRIPT_DIR" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)

export ROOMD_JWT_SECRET=browser-test-secret
WORK="$(mktemp -d "${TMPDIR:-/tmp}/roomd-browser.XXXXXX")"
SERVER_LOG="$WORK/server.log"
SERVER_PID=""

cleanup() {
  local rc=$?
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 30); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  if [[ $rc -ne 0 && -s "$SERVER_LOG" ]]; then
    printf '[browser] last lines of the server log (%s):\n' "$SERVER_LOG" >&2
    tail -n 40 "$SERVER_LOG" | sed $'s/\x1b\\[[0-9;]*m//g' >&2 || true
  fi
  if [[ $rc -eq 0 && "${BROWSER_KEEP_LOGS:-0}" != 1 ]]; then
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

PORT="$(node -e '
  const s = require("net").createServer();
  s.listen(0, "127.0.0.1", () => { process.stdout.write(String(s.address().port)); s.close(); });
')"
[[ "$PORT" =~ ^[0-9]+$ ]] || die "could not pick a free port"

log "starting $BIN on 127.0.0.1:$PORT (data: $WORK/data, log: $SERVER_LOG)"
"$BIN" --listen "127.0.0.1:$PORT" --data-dir "$WORK/data" >"$SERVER_LOG" 2>&1 &
SERVER_PID=$!

ready=0
for _ in $(seq 1 100); do
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    wait "$SERVER_PID" && code=0 || code=$?
    SERVER_PID=""
    die "server exited early with status $code"
  fi
  if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
    ready=1
    break
  fi
  sleep 0.1
done
[[ $ready == 1 ]] || die "server did not accept connections on 127.0.0.1:$PORT within 10s"
log "server is up (pid $SERVER_PID)"

HOST_TOKEN="$("$BIN" token --user-id browser-host --username hannah --name "Hannah Host" --role user --ttl 1h | tr -d '[:space:]')"
[[ -n "$HOST_TOKEN" ]] || die "minting the host token failed"
export HOST_TOKEN
export ROOMD_HTTP="http://127.0.0.1:$PORT"
export ARTIFACTS_DIR="$SCRIPT_DIR/artifacts"
mkdir -p "$ARTIFACTS_DIR"

SCENARIOS="${BROWSER_SCENARIOS:-$(cd "$SCRIPT_DIR" && ls ./*.mjs | xargs -n1 basename | sed 's/\.mjs$//' | tr '\n' ' ')}"
passed=0
failed=0
for scenario in $SCENARIOS; do
  [[ -f "$SCRIPT_DIR/$scenario.mjs" ]] || die "no scenario $SCRIPT_DIR/$scenario.mjs"
  log "running $scenario"
  # Each scenario bounds every wait itself; this is only a last resort.
  if timeout 300 node "$SCRIPT_DIR/$scenario.mjs"; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
  fi
done
echo "browser: $passed passed, $failed failed (screenshots in $ARTIFACTS_DIR)"
[[ $failed == 0 ]]
