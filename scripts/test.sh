#!/usr/bin/env bash
# The whole test suite: unit, property and end-to-end tests (real pyralog processes on
# loopback). Installs what the tests need when it is missing. Usage: scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# The end-to-end tests start the real binary.
cargo build --locked --bin pyralog

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --locked --workspace --profile ci
else
  echo "cargo-nextest not found; using cargo test" >&2
  cargo test --locked --workspace
fi
