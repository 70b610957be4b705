# Shared steps of the scripts that run client suites against a real roomd
# (tests/browser/run.sh, tests/interop/run.sh): sourced, never run.
#
# The caller sets LOG_TAG (the log prefix, e.g. "browser") before sourcing,
# then uses, in this order:
#   roomd_bin [path]          BIN: the binary (default target/release/roomd)
#   require_node_npm          node and npm are on PATH
#   npm_deps DIR              the locked node dependencies in DIR
#   roomd_workdir TAG KEEP    WORK and SERVER_LOG, and the traps that stop
#                             the server and show its log on failure (the
#                             work dir is kept on failure or when KEEP is 1)
#   roomd_start ARGS…         roomd on 127.0.0.1:PORT (PORT, SERVER_PID set)
#                             with ARGS after --listen, up within 10 s

: "${LOG_TAG:?set LOG_TAG before sourcing tests/lib.sh}"
LIB_REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

log() { printf '[%s] %s\n' "$LOG_TAG" "$*"; }
die() { printf '[%s] ERROR: %s\n' "$LOG_TAG" "$*" >&2; exit 2; }

roomd_bin() {
  if [[ $# -ge 1 && -n "$1" ]]; then
    BIN="$1"
    [[ "$BIN" = /* ]] || BIN="$PWD/$BIN"
  else
    BIN="$LIB_REPO_ROOT/target/release/roomd"
  fi
  [[ -x "$BIN" ]] || die "roomd binary not found or not executable: $BIN (build it with: cargo build --release)"
}

require_node_npm() {
  command -v node >/dev/null || die "node is required"
  command -v npm >/dev/null || die "npm is required"
}

npm_deps() {
  log "installing node dependencies in $1"
  if [[ -f "$1/package-lock.json" ]]; then
    (cd "$1" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  else
    (cd "$1" && npm install --no-audit --no-fund --loglevel=error >/dev/null)
  fi
}

roomd_workdir() {
  WORK="$(mktemp -d "${TMPDIR:-/tmp}/roomd-$1.XXXXXX")"
  SERVER_LOG="$WORK/server.log"
  SERVER_PID=""
  LIB_KEEP_LOGS="${2:-0}"
  trap roomd_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

# The EXIT trap: stops the server (TERM, then KILL after 3 s), prints the
# end of its log if the script failed, removes the work dir if it passed.
roomd_cleanup() {
  local rc=$?
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 30); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  if [[ $rc -ne 0 && -s "$SERVER_LOG" ]]; then
    printf '[%s] last lines of the server log (%s):\n' "$LOG_TAG" "$SERVER_LOG" >&2
    tail -n 40 "$SERVER_LOG" | sed $'s/\x1b\\[[0-9;]*m//g' >&2 || true
  fi
  if [[ $rc -eq 0 && "$LIB_KEEP_LOGS" != 1 ]]; then
    rm -rf "$WORK"
  fi
  exit "$rc"
}

roomd_start() {
  PORT="$(node -e '
    const s = require("net").createServer();
    s.listen(0, "127.0.0.1", () => { process.stdout.write(String(s.address().port)); s.close(); });
  ')"
  [[ "$PORT" =~ ^[0-9]+$ ]] || die "could not pick a free port"

  log "starting $BIN --listen 127.0.0.1:$PORT $* (log: $SERVER_LOG)"
  "$BIN" --listen "127.0.0.1:$PORT" "$@" >"$SERVER_LOG" 2>&1 &
  SERVER_PID=$!

  local ready=0 code
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
  log "server is up on 127.0.0.1:$PORT (pid $SERVER_PID)"
}
