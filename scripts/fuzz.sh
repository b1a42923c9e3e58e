#!/usr/bin/env bash
# Runs the fuzz targets (fuzz/, one per decoder) for a bounded time each: the committed corpus
# (fuzz/tests/__fuzz__/<target>/corpus/), then random inputs for FUZZ_SECONDS (default 5).
# Runs on stable as an ordinary test binary; a failure prints the input that caused it.
#
# Usage: scripts/fuzz.sh                  every target, FUZZ_SECONDS each (two at a time)
#        FUZZ_SECONDS=600 scripts/fuzz.sh batch segment_log
#                                          chosen targets, longer
# Coverage-guided fuzzing (nightly, `cargo install cargo-bolero`), which also grows the corpus:
#        cd fuzz && cargo bolero test --engine libfuzzer batch
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-5}"
case "$seconds" in
  '' | *[!0-9]*) echo "FUZZ_SECONDS must be a whole number of seconds" >&2; exit 2 ;;
esac
export BOLERO_RANDOM_TEST_TIME_MS=$((seconds * 1000))

if [ "$#" -gt 0 ]; then
  for t in "$@"; do
    cargo test --locked --workspace --test fuzz -- --exact "$t" --test-threads 1
  done
else
  cargo test --locked --workspace --test fuzz -- --test-threads 2
fi
