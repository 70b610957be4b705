#!/usr/bin/env bash
# Runs every test roomd has: formatting and lints, the Rust unit and
# integration tests (real sockets, the real binary for crash tests), and the
# interop tests with published DDP and Socket.IO client libraries from npm, and the
# web app in headless Chromium.
#
# Usage: scripts/test-all.sh          (from anywhere)
# Needs: cargo (with rustfmt, clippy), node >= 20 and npm for the interop and
# browser steps, and Chromium (/usr/bin/chromium) for the browser step.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings

step "cargo test (unit, integration, crash and restart tests)"
cargo test --all-targets

step "cargo build --release (binary for interop tests)"
cargo build --release

step "interop: unmodified DDP and Socket.IO client libraries from npm"
tests/interop/run.sh target/release/roomd

step "browser: the embedded web app in headless Chromium"
tests/browser/run.sh target/release/roomd

step "all tests passed"
