#!/usr/bin/env bash
# A 3-node Pyralog cluster on loopback, every node a controller voter, sharing the local
# S3-compatible server (localstack/s3-server.sh) as its cold tier.
#
#   localstack/cluster.sh start     # build if needed, start S3 + 3 nodes (idempotent)
#   localstack/cluster.sh status    # which nodes run, and the cluster as node 1 sees it
#   localstack/cluster.sh stop      # SIGTERM every node (data is kept)
#   localstack/cluster.sh clean     # stop and remove the nodes' data
#
# Nodes listen on 127.0.0.1:7410, :7420, :7430 (metrics on :7411, :7421, :7431). Point any
# client at one of them: `pyralog --server http://127.0.0.1:7410 logs create orders
# --replication-factor 3 --min-in-sync-replicas 2`. Settings (environment):
# PYRALOG_CLUSTER_STATE (default ${TMPDIR:-/tmp}/pyralog-cluster-$UID), PYRALOG_BIN (default
# target/release/pyralog, built if missing), PYRALOG_CLUSTER_NO_S3=1 (no cold tier),
# PYRALOG_CLUSTER_PORT_BASE (default 7410: nodes on BASE, BASE+10, BASE+20).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
STATE="${PYRALOG_CLUSTER_STATE:-${TMPDIR:-/tmp}/pyralog-cluster-$(id -u)}"
BIN="${PYRALOG_BIN:-$ROOT/target/release/pyralog}"
BASE="${PYRALOG_CLUSTER_PORT_BASE:-7410}"
PORTS=("$BASE" "$((BASE + 10))" "$((BASE + 20))")
VOTERS="1=127.0.0.1:${PORTS[0]},2=127.0.0.1:${PORTS[1]},3=127.0.0.1:${PORTS[2]}"

log() { echo "cluster: $*" >&2; }

running() { [[ -f "$STATE/node$1/pid" ]] && kill -0 "$(cat "$STATE/node$1/pid")" 2>/dev/null; }

start() {
    if [[ ! -x "$BIN" ]]; then
        log "building $BIN"
        (cd "$ROOT" && cargo build --release --bin pyralog >&2)
    fi
    local s3_env=()
    if [[ "${PYRALOG_CLUSTER_NO_S3:-0}" != 1 ]]; then
        eval "$("$ROOT/localstack/s3-server.sh" start)"
        s3_env=(
            "PYRALOG_COLD_TIER__STORE__URL=s3://$PYRALOG_S3_BUCKET/cluster"
            "PYRALOG_COLD_TIER__STORE__ENDPOINT=$PYRALOG_S3_ENDPOINT"
            "PYRALOG_COLD_TIER__STORE__ALLOW_HTTP=true"
            "PYRALOG_COLD_TIER__STORE__REGION=us-east-1"
            "PYRALOG_COLD_TIER__STORE__ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID"
            "PYRALOG_COLD_TIER__STORE__SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY"
        )
    fi
    for i in 1 2 3; do
        if running "$i"; then
            log "node $i already runs (pid $(cat "$STATE/node$i/pid"))"
            continue
        fi
        local dir="$STATE/node$i" port="${PORTS[$((i - 1))]}"
        mkdir -p "$dir"
        env "${s3_env[@]}" PYRALOG_NODE_ID="$i" PYRALOG_CLUSTER__VOTERS="$VOTERS" \
            "$BIN" serve --listen "127.0.0.1:$port" --metrics-listen "127.0.0.1:$((port + 1))" \
            --data-dir "$dir/data" >"$dir/stdout" 2>"$dir/node.log" &
        echo $! >"$dir/pid"
        log "node $i: pid $!, 127.0.0.1:$port, log $dir/node.log"
    done
    for i in 1 2 3; do
        for _ in $(seq 100); do
            grep -q "listening on" "$STATE/node$i/stdout" 2>/dev/null && break
            running "$i" || { log "node $i exited; see $STATE/node$i/node.log"; exit 1; }
            sleep 0.1
        done
    done
    log "up: --server http://127.0.0.1:${PORTS[0]} (or :${PORTS[1]}, :${PORTS[2]})"
}

stop() {
    for i in 1 2 3; do
        if running "$i"; then
            kill -TERM "$(cat "$STATE/node$i/pid")" || true
        fi
    done
    for i in 1 2 3; do
        for _ in $(seq 300); do running "$i" || break; sleep 0.1; done
        rm -f "$STATE/node$i/pid"
    done
    log "stopped"
}

status() {
    for i in 1 2 3; do
        if running "$i"; then echo "node $i: running (pid $(cat "$STATE/node$i/pid"))"; else echo "node $i: stopped"; fi
    done
    if running 1; then "$BIN" --server "http://127.0.0.1:${PORTS[0]}" cluster describe || true; fi
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    clean) stop; rm -rf "$STATE"; log "removed $STATE" ;;
    *) echo "usage: $0 start|status|stop|clean" >&2; exit 2 ;;
esac
