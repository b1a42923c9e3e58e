#!/usr/bin/env bash
# The whole test suite: unit, property and end-to-end tests (real pyralog processes on
# loopback, and real S3-compatible and Azure Blob servers for the cold tier). Installs what the tests need
# when it is missing. Usage: scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# The end-to-end tests start the real binary. One build of every target with the workspace's
# feature set, which the test runner below reuses (building `--bin pyralog` alone resolves
# other features and compiles the dependencies a second time).
cargo build --locked --workspace --all-targets

# An S3-compatible server on loopback (MinIO if installed, else moto from PyPI), for the
# cold-tier tests; stopped when the suite ends.
stop_servers=()
trap 'for s in "${stop_servers[@]}"; do "$s" stop || true; done' EXIT
if [ -z "${PYRALOG_S3_ENDPOINT:-}" ]; then
  export PYRALOG_S3_STATE="${TMPDIR:-/tmp}/pyralog-s3-test-$$"
  eval "$(localstack/s3-server.sh start)"
  stop_servers+=(localstack/s3-server.sh)
fi

# An Azure Blob server on loopback (Azurite, installed from npm when missing), for the same
# cold-tier tests on Azure; stopped when the suite ends.
if [ -z "${PYRALOG_AZURE_ENDPOINT:-}" ]; then
  export PYRALOG_AZURE_STATE="${TMPDIR:-/tmp}/pyralog-azure-test-$$"
  eval "$(localstack/azure-server.sh start)"
  stop_servers+=(localstack/azure-server.sh)
fi

# DuckDB (PyPI) reads the archived Parquet in the SQL-engine conformance test.
if ! python3 -c "import duckdb" >/dev/null 2>&1; then
  python3 -m pip install --quiet duckdb >&2
fi
# grpcio (PyPI) is the stock client of the API-contract test (a client generated from the
# .proto alone, with its default 4 MiB receive limit and the shipped retry service config).
if ! python3 -c "import grpc, grpc_tools" >/dev/null 2>&1; then
  python3 -m pip install --quiet grpcio grpcio-tools >&2
fi
# pyarrow (PyPI) is the analytic consumer of the FETCH_FORMAT_ARROW test.
if ! python3 -c "import pyarrow" >/dev/null 2>&1; then
  python3 -m pip install --quiet pyarrow >&2
fi

# pyiceberg and DuckDB with its iceberg extension (PyPI) read the logs' Iceberg tables in the
# lakehouse tests. DuckDB's extension packages must match its version exactly, so they live
# in their own virtualenv, rebuilt when the pinned list changes.
lakehouse_venv="${XDG_CACHE_HOME:-$HOME/.cache}/pyralog/lakehouse-venv"
lakehouse_reqs=tests/python/lakehouse-requirements.txt
if ! cmp -s "$lakehouse_reqs" "$lakehouse_venv/requirements.txt"; then
  rm -rf "$lakehouse_venv"
  python3 -m venv "$lakehouse_venv"
  "$lakehouse_venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    -r "$lakehouse_reqs" >&2
  cp "$lakehouse_reqs" "$lakehouse_venv/requirements.txt"
fi
export PYRALOG_LAKEHOUSE_PYTHON="$lakehouse_venv/bin/python"

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --locked --workspace --profile ci
  # The replication and consumer-group tests (kills, pauses, failovers) again on secure
  # clusters: TLS, mutual TLS between nodes, authenticated clients.
  PYRALOG_E2E_SECURE=1 cargo nextest run --locked --workspace --profile ci \
    -E 'package(pyralog-e2e) & (binary(replication) | binary(groups) | test(/three_controllers/))'
else
  echo "cargo-nextest not found; using cargo test" >&2
  cargo test --locked --workspace
  PYRALOG_E2E_SECURE=1 cargo test --locked -p pyralog-e2e --test replication --test groups
fi

# Every decoder's fuzz target for a few seconds each (corpus, then random inputs; ~1 minute).
FUZZ_SECONDS=5 scripts/fuzz.sh

# The benchmarks must not rot: the criterion micro-benchmarks once each (test mode), then the
# whole suite at smoke size against a real node (seconds; figures are printed, not checked).
cargo test --locked --workspace --bench batch_codec --bench index_lookup --bench group_commit --bench read_path --bench parquet_codec
BENCH_SMOKE=1 BENCH_PROFILE=debug bench/run.sh >/dev/null
test -s bench/results/report.md
