#!/usr/bin/env bash
# Runs the whole benchmark suite on this machine and writes bench/results/report.{json,md}.
#
#   bench/run.sh                         full run (see the defaults below; about 15 minutes)
#   BENCH_SMOKE=1 bench/run.sh           smoke run: every workload, tiny sizes (seconds; CI)
#   BENCH_S3=1 bench/run.sh              cold tier on the S3-compatible server of localstack/
#   BENCH_PEER=tansu bench/run.sh        also the Tansu peer (bench/peer/tansu.sh)
#   BENCH_CLUSTER=1 bench/run.sh         also RF=3 quorum vs RF=1 on a 3-node loopback cluster
#                                        (bench/results/replication.{json,md}; on in smoke runs)
# Always: TLS + authentication vs plaintext on two single nodes (bench/results/tls.{json,md}).
#
# Knobs (environment): BENCH_RECORDS (per W1 run), BENCH_RECORD_BYTES ("1024,100"),
# BENCH_PARTITIONS ("1,8"), BENCH_LATENCY_SECONDS, BENCH_DRAIN_MB (W4 backlog),
# BENCH_COLD_RECORDS (W5/W6), BENCH_W7_MB (W7's archived backlog), BENCH_PROFILE (release|debug),
# BENCH_REPLICATION_RECORDS, BENCH_CLUSTER_PORT_BASE (default 17410), BENCH_GROUPS_RECORDS,
# BENCH_COMMIT_SECONDS, BENCH_TLS_RECORDS, BENCH_TLS_CONNECTIONS, BENCH_LEDGER_RECORDS,
# BENCH_LEDGER_PRODUCE_RECORDS (W1 ledger vs plain; default BENCH_RECORDS).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${BENCH_SMOKE:-}" ]; then
  : "${BENCH_RECORDS:=20000}" "${BENCH_LATENCY_SECONDS:=2}" "${BENCH_DRAIN_MB:=8}"
  : "${BENCH_COLD_RECORDS:=20000}" "${BENCH_W7_MB:=16}" "${BENCH_PROFILE:=debug}" "${BENCH_QUIET:=1}"
  : "${BENCH_CLUSTER:=1}" "${BENCH_REPLICATION_RECORDS:=5000}"
  : "${BENCH_GROUPS_RECORDS:=20000}" "${BENCH_COMMIT_SECONDS:=1}"
  : "${BENCH_TLS_RECORDS:=5000}" "${BENCH_TLS_CONNECTIONS:=20}"
  : "${BENCH_LEDGER_RECORDS:=50000}" "${BENCH_LEDGER_PRODUCE_RECORDS:=5000}"
fi
: "${BENCH_RECORD_BYTES:=1024,100}"
profile=${BENCH_PROFILE:-release}
# A debug run (CI's smoke run) reuses the test build: the same command, the same features.
if [ "$profile" = release ]; then cargo build --locked --release --bin pyralog
else cargo build --locked --workspace --all-targets; fi
bin=${CARGO_TARGET_DIR:-target}/$profile/pyralog
work=$(mktemp -d)
pid=
spid=
cleanup() {
  [ -n "$pid" ] && { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }
  [ -n "$spid" ] && { kill "$spid" 2>/dev/null || true; wait "$spid" 2>/dev/null || true; }
  [ -n "${BENCH_CLUSTER:-}" ] && PYRALOG_CLUSTER_STATE="$work/cluster" PYRALOG_BIN="$bin" \
    PYRALOG_CLUSTER_PORT_BASE="${BENCH_CLUSTER_PORT_BASE:-17410}" localstack/cluster.sh stop 2>/dev/null || true
  [ -n "${BENCH_S3:-}" ] && localstack/s3-server.sh stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

store="file://$work/data/objects"
store_args=()
if [ -n "${BENCH_S3:-}" ]; then
  eval "$(localstack/s3-server.sh start)"
  store="s3://$PYRALOG_S3_BUCKET/bench-$(date +%s)"
  store_args=(--endpoint "$PYRALOG_S3_ENDPOINT")
  export PYRALOG_COLD_TIER__STORE__ENDPOINT=$PYRALOG_S3_ENDPOINT PYRALOG_COLD_TIER__STORE__ALLOW_HTTP=true
  export PYRALOG_COLD_TIER__STORE__REGION=us-east-1
  export PYRALOG_COLD_TIER__STORE__ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID PYRALOG_COLD_TIER__STORE__SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY
fi

peer_args=()
if [ "${BENCH_PEER:-}" = tansu ]; then
  size=${BENCH_RECORD_BYTES:-1024}; size=${size%%,*}
  BENCH_PEER_RECORDS=${BENCH_RECORDS:-1000000} BENCH_PEER_RECORD_BYTES=$size \
    bench/peer/tansu.sh "$work/peer.json"
  peer_args=(--peer "$work/peer.json")
fi

"$bin" dev --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 --data-dir "$work/data" \
  --object-store "$store" >"$work/banner" 2>"$work/node.log" &
pid=$!
for _ in $(seq 1 200); do grep -q http "$work/banner" 2>/dev/null && break; sleep 0.1; done
url=$(grep -o 'http://[0-9.:]*' "$work/banner" | head -1)
mkdir -p bench/results
"$bin" --server "$url" bench suite --data-dir "$work/data" --server-pid "$pid" \
  --records "${BENCH_RECORDS:-1000000}" --record-bytes "${BENCH_RECORD_BYTES:-1024,100}" \
  --partitions "${BENCH_PARTITIONS:-1,8}" --latency-seconds "${BENCH_LATENCY_SECONDS:-20}" \
  --drain-mb "${BENCH_DRAIN_MB:-2048}" --object-store "$store" "${store_args[@]}" \
  --cold-records "${BENCH_COLD_RECORDS:-2000000}" --w7-mb "${BENCH_W7_MB:-256}" \
  "${peer_args[@]}" \
  --json bench/results/report.json --markdown bench/results/report.md ${BENCH_QUIET:+--quiet}

# Consumer groups and the idempotent producer on the same node: idempotent vs plain produce,
# commit throughput, rebalance times (bench/results/groups.{json,md}).
"$bin" --server "$url" bench groups --records "${BENCH_GROUPS_RECORDS:-500000}" \
  --record-bytes "${BENCH_RECORD_BYTES%%,*}" --commit-seconds "${BENCH_COMMIT_SECONDS:-5}" \
  --json bench/results/groups.json --markdown bench/results/groups.md ${BENCH_QUIET:+--quiet}

# Ledger mode: archive encode with and without the chain, `ledger verify` MB/s next to raw
# GETs of the same objects, and W1 on a ledger log vs a plain log on the suite's node,
# alternating rounds (bench/results/ledger.{json,md}).
"$bin" --server "$url" bench ledger --object-store "${store%/}/ledger-bench" "${store_args[@]}" \
  --records "${BENCH_LEDGER_RECORDS:-1000000}" --record-bytes "${BENCH_RECORD_BYTES%%,*}" \
  --produce-records "${BENCH_LEDGER_PRODUCE_RECORDS:-${BENCH_RECORDS:-1000000}}" --quiet \
  --json bench/results/ledger.json --markdown bench/results/ledger.md >/dev/null

# What TLS and authentication cost: the same node as above (plaintext) against a
# `dev --secure` node (TLS, client certificates, ACLs) in the same run.
"$bin" dev --secure --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 \
  --data-dir "$work/secure" >"$work/secure-banner" 2>"$work/secure-node.log" &
spid=$!
for _ in $(seq 1 200); do grep -q https "$work/secure-banner" 2>/dev/null && break; sleep 0.1; done
surl=$(grep -o 'https://[0-9.:]*' "$work/secure-banner" | head -1)
certs="$work/secure/secure"
"$bin" --server "$url" --tls-ca "$certs/ca.pem" --tls-cert "$certs/client-admin.pem" \
  --tls-key "$certs/client-admin-key.pem" bench tls --secure-server "$surl" \
  --server-pid "$pid" --secure-pid "$spid" --records "${BENCH_TLS_RECORDS:-300000}" \
  --record-bytes "${BENCH_RECORD_BYTES%%,*}" --connections "${BENCH_TLS_CONNECTIONS:-1000}" \
  --latency-seconds "${BENCH_LATENCY_SECONDS:-20}" \
  --json bench/results/tls.json --markdown bench/results/tls.md ${BENCH_QUIET:+--quiet} >/dev/null
kill "$spid" 2>/dev/null || true; wait "$spid" 2>/dev/null || true; spid=

if [ -n "${BENCH_CLUSTER:-}" ]; then
  # The single node is done; the cluster gets the machine to itself.
  kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; pid=
  base=${BENCH_CLUSTER_PORT_BASE:-17410}
  rb=${BENCH_RECORD_BYTES:-1024}; rb=${rb%%,*}
  PYRALOG_CLUSTER_STATE="$work/cluster" PYRALOG_BIN="$bin" PYRALOG_CLUSTER_NO_S3=1 \
    PYRALOG_CLUSTER_PORT_BASE="$base" localstack/cluster.sh start
  "$bin" --server "http://127.0.0.1:$base" bench replication \
    --records "${BENCH_REPLICATION_RECORDS:-500000}" --record-bytes "$rb" \
    --latency-seconds "${BENCH_LATENCY_SECONDS:-20}" \
    --json bench/results/replication.json --markdown bench/results/replication.md ${BENCH_QUIET:+--quiet}
fi
