#!/usr/bin/env bash
# A 3-node Pyralog cluster on loopback, every node a controller voter, sharing the local
# S3-compatible server (localstack/s3-server.sh) as its cold tier.
#
#   localstack/cluster.sh start     # build if needed, start S3 + 3 nodes (idempotent)
#   localstack/cluster.sh start --secure   # the same with TLS, mutual TLS between nodes,
#                                   # client authentication and ACLs (certificates made in
#                                   # $PYRALOG_CLUSTER_STATE/certs; `admin` is the superuser)
#   localstack/cluster.sh flags     # the CLI flags that reach the cluster (TLS files too)
#   localstack/cluster.sh status    # which nodes run, and the cluster as node 1 sees it
#   localstack/cluster.sh stop      # SIGTERM every node (data is kept)
#   localstack/cluster.sh clean     # stop and remove the nodes' data
#
# Nodes serve clients on 127.0.0.1:7410, :7420, :7430 (metrics on :7411, :7421, :7431; the
# cluster listeners for Raft and replication on :7412, :7422, :7432). Point any
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
# Voters are named by their cluster listeners (client port + 2).
VOTERS="1=127.0.0.1:$((PORTS[0] + 2)),2=127.0.0.1:$((PORTS[1] + 2)),3=127.0.0.1:$((PORTS[2] + 2))"
CERTS="$STATE/certs"
SECURE=0
if [[ "${2:-}" == "--secure" || -f "$STATE/secure" ]]; then SECURE=1; fi

log() { echo "cluster: $*" >&2; }

# Client flags for the CLI against this cluster.
client_flags() {
    if [[ $SECURE == 1 ]]; then
        echo "--server https://127.0.0.1:${PORTS[0]} --tls-ca $CERTS/ca.pem --tls-cert $CERTS/client-admin.pem --tls-key $CERTS/client-admin-key.pem"
    else
        echo "--server http://127.0.0.1:${PORTS[0]}"
    fi
}

# The [security] section of node $1.
security_config() {
    printf '[security]\nclient_ca = "%s"\n' "$CERTS/ca.pem"
    printf '[security.tls]\ncert = "%s"\nkey = "%s"\n' "$CERTS/node-$1.pem" "$CERTS/node-$1-key.pem"
    printf '[security.cluster_tls]\ncert = "%s"\nkey = "%s"\nca = "%s"\n' \
        "$CERTS/node-$1.pem" "$CERTS/node-$1-key.pem" "$CERTS/ca.pem"
    printf '[security.auth]\nenabled = true\nsuperusers = ["admin"]\n'
}

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
    mkdir -p "$STATE"
    if [[ $SECURE == 1 && ! -f "$CERTS/ca.pem" ]]; then
        "$BIN" certs init "$CERTS" --nodes 3 --clients admin >&2
        touch "$STATE/secure"
    fi
    for i in 1 2 3; do
        if running "$i"; then
            log "node $i already runs (pid $(cat "$STATE/node$i/pid"))"
            continue
        fi
        local dir="$STATE/node$i" port="${PORTS[$((i - 1))]}"
        mkdir -p "$dir"
        local config=()
        if [[ $SECURE == 1 ]]; then
            security_config "$i" >"$dir/security.toml"
            config=(--config "$dir/security.toml")
        fi
        env "${s3_env[@]}" PYRALOG_NODE_ID="$i" PYRALOG_CLUSTER__VOTERS="$VOTERS" \
            PYRALOG_CLUSTER__LISTEN="127.0.0.1:$((port + 2))" \
            "$BIN" serve "${config[@]}" --listen "127.0.0.1:$port" \
            --metrics-listen "127.0.0.1:$((port + 1))" \
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
    log "up: pyralog $(client_flags) ... (or ports :${PORTS[1]}, :${PORTS[2]})"
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
    # shellcheck disable=SC2046 # the flags are words
    if running 1; then "$BIN" $(client_flags) cluster describe || true; fi
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    clean) stop; rm -rf "$STATE"; log "removed $STATE" ;;
    flags) client_flags ;;
    *) echo "usage: $0 start [--secure]|status|stop|clean|flags" >&2; exit 2 ;;
esac
