#!/usr/bin/env bash
# The whole test suite: unit, property and end-to-end tests (real pyralog processes on
# loopback, and a real S3-compatible server for the cold tier). Installs what the tests need
# when it is missing. Usage: scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# The end-to-end tests start the real binary.
cargo build --locked --bin pyralog

# An S3-compatible server on loopback (MinIO if installed, else moto from PyPI), for the
# cold-tier tests; stopped when the suite ends.
if [ -z "${PYRALOG_S3_ENDPOINT:-}" ]; then
  export PYRALOG_S3_STATE="${TMPDIR:-/tmp}/pyralog-s3-test-$$"
  eval "$(localstack/s3-server.sh start)"
  trap 'localstack/s3-server.sh stop || true' EXIT
fi

# DuckDB (PyPI) reads the archived Parquet in the SQL-engine conformance test.
if ! python3 -c "import duckdb" >/dev/null 2>&1; then
  python3 -m pip install --quiet duckdb >&2
fi

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --locked --workspace --profile ci
else
  echo "cargo-nextest not found; using cargo test" >&2
  cargo test --locked --workspace
fi

# The benchmarks must not rot: the criterion micro-benchmarks once each (test mode), then the
# whole suite at smoke size against a real node (seconds; figures are printed, not checked).
cargo test --locked -p pyralog-types -p pyralog-hot-tier -p pyralog-cold-tier \
  --bench batch_codec --bench index_lookup --bench parquet_codec
BENCH_SMOKE=1 BENCH_PROFILE=debug bench/run.sh >/dev/null
test -s bench/results/report.md
