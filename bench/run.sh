#!/usr/bin/env bash
# Runs the whole benchmark suite on this machine and writes bench/results/report.{json,md}.
#   bench/run.sh                 full run (1M records per W1 run)
#   BENCH_RECORDS=20000 BENCH_LATENCY_SECONDS=2 bench/run.sh   smoke run (seconds)
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${BENCH_PROFILE:-release}
if [ "$profile" = release ]; then cargo build --locked --release --bin pyralog; else cargo build --locked --bin pyralog; fi
bin=target/$profile/pyralog
work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
"$bin" dev --listen 127.0.0.1:0 --data-dir "$work/data" >"$work/banner" 2>"$work/node.log" &
pid=$!
for _ in $(seq 1 200); do grep -q listening "$work/banner" 2>/dev/null && break; sleep 0.1; done
url=$(grep -o 'http://[0-9.:]*' "$work/banner")
mkdir -p bench/results
"$bin" --server "$url" bench suite --data-dir "$work/data" --server-pid "$pid" \
  --records "${BENCH_RECORDS:-1000000}" --record-bytes "${BENCH_RECORD_BYTES:-1024}" \
  --partitions "${BENCH_PARTITIONS:-1,8}" --latency-seconds "${BENCH_LATENCY_SECONDS:-20}" \
  --json bench/results/report.json --markdown bench/results/report.md ${BENCH_QUIET:+--quiet}
