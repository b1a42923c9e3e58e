#!/usr/bin/env bash
# The Tansu peer, on this machine, in this session: installs Tansu 0.6.0 from crates.io (with
# its SQLite storage engine: durable, on the same local disk as Pyralog's data) and the Kafka
# client confluent-kafka from PyPI when they are missing, starts Tansu on loopback, runs the
# same W1 shape as Pyralog (record size, ~1 MiB batches, acks=leader, one partition) and writes
# the figures as JSON to $1 for `pyralog bench suite --peer`.
#
#   bench/peer/tansu.sh out.json
#   TANSU_ROOT (install dir, default ~/.cache/pyralog/tansu), BENCH_PEER_RECORDS,
#   BENCH_PEER_RECORD_BYTES
set -euo pipefail
out=${1:?usage: bench/peer/tansu.sh OUT.json}
here=$(cd "$(dirname "$0")" && pwd)
root=${TANSU_ROOT:-$HOME/.cache/pyralog/tansu}
bin=$root/bin/tansu
if [ ! -x "$bin" ]; then
  echo "tansu.sh: installing tansu 0.6.0 from crates.io into $root (a long build)" >&2
  cargo install tansu --version 0.6.0 --features libsql --locked --root "$root" >&2
fi
python3 -c 'import confluent_kafka' 2>/dev/null || python3 -m pip install --quiet confluent-kafka >&2
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# Tansu resolves sqlite:// paths against its working directory.
(cd "$work" && exec "$bin" broker --listener-url "tcp://127.0.0.1:$port" \
  --advertised-listener-url "tcp://127.0.0.1:$port" --storage-engine "sqlite://tansu.db" \
  >"$work/tansu.log" 2>&1) &
tpid=$!
trap 'kill "$tpid" 2>/dev/null || true; wait "$tpid" 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 100); do
  python3 -c "import socket; socket.create_connection(('127.0.0.1',$port),1)" 2>/dev/null && break
  sleep 0.1
done
python3 "$here/kafka_produce.py" --bootstrap "127.0.0.1:$port" --server-pid "$tpid" \
  --records "${BENCH_PEER_RECORDS:-1000000}" --record-bytes "${BENCH_PEER_RECORD_BYTES:-1024}" \
  --name "Tansu 0.6.0 (SQLite storage)" \
  --notes "Tansu stores batches in SQLite on the same disk; its client is librdkafka, Pyralog's is its own Rust client." \
  --out "$out"
