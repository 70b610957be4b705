#!/usr/bin/env bash
# Interop suite: run published DDP, Socket.IO and REST client libraries
# against a real roomd. Node scenarios are `<name>.mjs`; Python scenarios are
# `<name>.py`, run in a venv (target/interop-venv) holding the PyPI packages
# pinned below.
#
# usage: tests/interop/run.sh [path-to-roomd-binary]
#   default binary: target/release/roomd (relative to the repo root)
# env:
#   SCENARIOS="simpleddp-core ddpjs-core"  run a subset (names with or without .mjs)
#   INTEROP_SKIP_RC=1                       skip the rc-messages scenario
#   DEBUG_FRAMES=1                          print every WebSocket frame live
#   INTEROP_TIMEOUT_MS=20000                overall timeout per scenario
#   INTEROP_PYTHON=/path/to/python          use this Python (with the packages) instead of the venv
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
ALL_SCENARIOS=(simpleddp-core ddpjs-core rc-messages rc-ddp-client socketio slack-web rc-rest)
# PyPI packages of the Python scenarios, pinned.
PY_PACKAGES=("rocketchat-API==3.7.1" "websocket-client==1.9.2")
LOG_TAG=interop
# shellcheck source=tests/lib.sh
source "$SCRIPT_DIR/../lib.sh"

# --- binary ---------------------------------------------------------------
roomd_bin "${1:-}"
require_node_npm

# @rocket.chat/ddp-client uses the global WebSocket: built into Node >= 22,
# behind a flag on Node 20 (older Nodes have neither, and fail that scenario).
NODE_FLAGS=()
if ! node -e 'process.exit(typeof WebSocket === "function" ? 0 : 1)' 2>/dev/null &&
  node --experimental-websocket -e 'process.exit(typeof WebSocket === "function" ? 0 : 1)' 2>/dev/null; then
  NODE_FLAGS+=(--experimental-websocket)
fi

# --- scenarios ------------------------------------------------------------
if [[ -n "${SCENARIOS:-}" ]]; then
  read -r -a SELECTED <<<"$SCENARIOS"
else
  SELECTED=("${ALL_SCENARIOS[@]}")
fi
RUN_LIST=()
for s in "${SELECTED[@]}"; do
  s="${s%.mjs}"
  [[ -f "$SCRIPT_DIR/$s.mjs" || -f "$SCRIPT_DIR/$s.py" ]] || die "unknown scenario '$s' (known: ${ALL_SCENARIOS[*]})"
  if [[ "$s" == rc-messages && "${INTEROP_SKIP_RC:-0}" == 1 ]]; then
    log "skipping rc-messages (INTEROP_SKIP_RC=1)"
    continue
  fi
  RUN_LIST+=("$s")
done
[[ ${#RUN_LIST[@]} -gt 0 ]] || die "no scenario selected"

# --- node dependencies ----------------------------------------------------
npm_deps "$SCRIPT_DIR"

# --- python dependencies --------------------------------------------------
PYTHON=""
for s in "${RUN_LIST[@]}"; do
  [[ -f "$SCRIPT_DIR/$s.py" ]] || continue
  if [[ -n "${INTEROP_PYTHON:-}" ]]; then
    PYTHON="$INTEROP_PYTHON"
    break
  fi
  command -v python3 >/dev/null || die "python3 is required for $s"
  VENV="$REPO_ROOT/target/interop-venv"
  if [[ ! -x "$VENV/bin/python" ]] || ! "$VENV/bin/python" -c 'import rocketchat_API, websocket' 2>/dev/null; then
    log "installing ${PY_PACKAGES[*]} from PyPI into $VENV"
    python3 -m venv "$VENV" || die "python3 -m venv failed (install python3-venv)"
    "$VENV/bin/pip" install -q --disable-pip-version-check "${PY_PACKAGES[@]}" || die "pip install failed"
  fi
  PYTHON="$VENV/bin/python"
  break
done

# --- server ---------------------------------------------------------------
export ROOMD_JWT_SECRET=interop-secret
roomd_workdir interop "${INTEROP_KEEP_LOGS:-0}"
SERVER_ARGS=()
if "$BIN" --help 2>&1 | grep -q -- '--in-memory'; then
  SERVER_ARGS+=(--in-memory)
else
  log "binary does not advertise --in-memory; starting without it"
fi
roomd_start "${SERVER_ARGS[@]}"

# --- tokens ---------------------------------------------------------------
mint() { # mint USER_ID USERNAME "Full Name" ROLE
  local tok
  tok="$("$BIN" token --user-id "$1" --username "$2" --name "$3" --role "$4" --ttl 24h)" ||
    die "minting a token for $2 failed"
  tok="$(printf '%s' "$tok" | tr -d '[:space:]')"
  [[ -n "$tok" ]] || die "minting a token for $2 printed nothing"
  printf '%s' "$tok"
}

export ROOMD_URL="ws://127.0.0.1:$PORT/websocket"
export ALICE_ID=interop-alice BOB_ID=interop-bob CAROL_ID=interop-carol BOT_ID=interop-bot
export BOT_USERNAME=interop-bot
ALICE_TOKEN="$(mint "$ALICE_ID" alice "Alice Liddell" user)"
BOB_TOKEN="$(mint "$BOB_ID" bob "Bob Builder" user)"
CAROL_TOKEN="$(mint "$CAROL_ID" carol "Carol Danvers" user)"
BOT_TOKEN="$(mint "$BOT_ID" "$BOT_USERNAME" "Interop Bot" bot)"
export ALICE_TOKEN BOB_TOKEN CAROL_TOKEN BOT_TOKEN
# The Socket.IO scenario's own users: other scenarios log their tokens out.
export SIO_HOST_ID=interop-sio-host SIO_USER_ID=interop-sio-user SIO_OTHER_ID=interop-sio-other
SIO_HOST_TOKEN="$(mint "$SIO_HOST_ID" sio-host "Sio Host" user)"
SIO_USER_TOKEN="$(mint "$SIO_USER_ID" sio-user "Sio User" user)"
SIO_OTHER_TOKEN="$(mint "$SIO_OTHER_ID" sio-other "Sio Other" user)"
export SIO_HOST_TOKEN SIO_USER_TOKEN SIO_OTHER_TOKEN
# The REST scenarios' own users.
export SLACK_ALICE_ID=interop-slack-alice SLACK_BOB_ID=interop-slack-bob
SLACK_ALICE_TOKEN="$(mint "$SLACK_ALICE_ID" slack-alice "Slack Alice" user)"
SLACK_BOB_TOKEN="$(mint "$SLACK_BOB_ID" slack-bob "Slack Bob" user)"
export SLACK_ALICE_TOKEN SLACK_BOB_TOKEN
export RC_REST_ALICE_ID=interop-rest-alice RC_REST_BOB_ID=interop-rest-bob
RC_REST_ALICE_TOKEN="$(mint "$RC_REST_ALICE_ID" rest-alice "Rest Alice" user)"
RC_REST_BOB_TOKEN="$(mint "$RC_REST_BOB_ID" rest-bob "Rest Bob" user)"
export RC_REST_ALICE_TOKEN RC_REST_BOB_TOKEN

# --- run ------------------------------------------------------------------
passed=0
failed=0
FAILED_NAMES=()
for s in "${RUN_LIST[@]}"; do
  log "running $s"
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    log "server is no longer running; $s cannot run"
    failed=$((failed + 1)); FAILED_NAMES+=("$s")
    continue
  fi
  # The scenario has its own (shorter) timeout; this is only a last resort.
  if [[ -f "$SCRIPT_DIR/$s.py" ]]; then
    run=("$PYTHON" "$SCRIPT_DIR/$s.py")
  else
    run=(node "${NODE_FLAGS[@]}" "$SCRIPT_DIR/$s.mjs")
  fi
  if timeout 120 "${run[@]}"; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1)); FAILED_NAMES+=("$s")
  fi
done

log "results: ${#RUN_LIST[@]} scenario(s)"
if [[ $failed -gt 0 ]]; then
  log "failed: ${FAILED_NAMES[*]}"
fi
echo "interop: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
