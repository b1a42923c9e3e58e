#!/usr/bin/env bash
# Runs the fuzz targets (fuzz/, one per decoder) for a bounded time each: the committed corpus
# (fuzz/corpus/<target>/), then mutated inputs for FUZZ_SECONDS (default 5). Runs on stable as
# an ordinary test binary; a failure saves the input and names the file (FUZZ_INPUT=<file>
# replays it, FUZZ_SEED=<n> repeats a run's inputs).
#
# Usage: scripts/fuzz.sh                  every target, FUZZ_SECONDS each (two at a time)
#        FUZZ_SECONDS=600 scripts/fuzz.sh batch segment_log
#                                          chosen targets, longer
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-5}"
case "$seconds" in
  '' | *[!0-9]*) echo "FUZZ_SECONDS must be a whole number of seconds" >&2; exit 2 ;;
esac
export FUZZ_SECONDS="$seconds"

if [ "$#" -gt 0 ]; then
  for t in "$@"; do
    cargo test --locked --workspace --test fuzz -- --exact "$t" --test-threads 1
  done
else
  cargo test --locked --workspace --test fuzz -- --test-threads 2
fi
