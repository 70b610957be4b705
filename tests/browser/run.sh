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
#                                   *.mjs here: host-guest, share-links,
#                                   reconnect)
# Screenshots go to tests/browser/artifacts/ (gitignored).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LOG_TAG=browser
# shellcheck source=tests/lib.sh
source "$SCRIPT_DIR/../lib.sh"

roomd_bin "${1:-}"
require_node_npm
export CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
[[ -x "$CHROMIUM" ]] || die "no Chromium at $CHROMIUM (Debian: apt-get install -y chromium)"

npm_deps "$SCRIPT_DIR"

export ROOMD_JWT_SECRET=browser-test-secret
roomd_workdir browser "${BROWSER_KEEP_LOGS:-0}"
roomd_start --data-dir "$WORK/data"

HOST_TOKEN="$("$BIN" token --user-id browser-host --username hannah --name "Hannah Host" --role user --ttl 1h | tr -d '[:space:]')"
[[ -n "$HOST_TOKEN" ]] || die "minting the host token failed"
export HOST_TOKEN
export ROOMD_HTTP="http://127.0.0.1:$PORT"
# Scenarios that restart a server run their own (reconnect.mjs).
export ROOMD_BIN="$BIN"
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
