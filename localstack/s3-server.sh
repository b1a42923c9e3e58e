#!/usr/bin/env bash
# Local S3-compatible server for Pyralog's cold tier, on loopback only.
#
#   localstack/s3-server.sh start   # start (idempotent) and print the env to export
#   localstack/s3-server.sh env     # print the env of the running server
#   localstack/s3-server.sh stop    # stop it and remove its state
#
# Uses `minio` when it is on PATH, otherwise moto's server (installed from PyPI with pip if
# missing). Usage: eval "$(localstack/s3-server.sh start)".
#
# Settings (environment): PYRALOG_S3_PORT (default 9000; a free port is chosen if busy),
# PYRALOG_S3_BUCKET (default pyralog), PYRALOG_S3_STATE (state dir, default
# ${TMPDIR:-/tmp}/pyralog-s3-$UID). Progress goes to stderr; stdout carries only the env.
set -euo pipefail

STATE="${PYRALOG_S3_STATE:-${TMPDIR:-/tmp}/pyralog-s3-$(id -u)}"
BUCKET="${PYRALOG_S3_BUCKET:-pyralog}"
ACCESS_KEY="pyralog"
SECRET_KEY="pyralog-secret"
REGION="us-east-1"

# shellcheck source=localstack/lib.sh
source "$(dirname "$0")/lib.sh"

log() { echo "s3-server: $*" >&2; }

running() {
    [[ -f "$STATE/pid" && -f "$STATE/port" ]] || return 1
    local pid
    pid="$(cat "$STATE/pid")"
    kill -0 "$pid" 2>/dev/null || return 1
    curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$(cat "$STATE/port")/" 
}

print_env() {
    local port
    port="$(cat "$STATE/port")"
    cat <<ENV
export PYRALOG_S3_ENDPOINT=http://127.0.0.1:$port
export PYRALOG_S3_BUCKET=$BUCKET
export AWS_ACCESS_KEY_ID=$ACCESS_KEY
export AWS_SECRET_ACCESS_KEY=$SECRET_KEY
export AWS_REGION=$REGION
export AWS_ALLOW_HTTP=true
ENV
}

create_bucket() {
    local port="$1" code
    # Signed with SigV4 so MinIO accepts it too; moto accepts any credentials.
    code="$(curl -s -o "$STATE/mb.out" -w '%{http_code}' -X PUT \
        --aws-sigv4 "aws:amz:$REGION:s3" --user "$ACCESS_KEY:$SECRET_KEY" \
        "http://127.0.0.1:$port/$BUCKET")"
    case "$code" in
        200) log "created bucket $BUCKET" ;;
        409) log "bucket $BUCKET already exists" ;;
        *) log "creating bucket $BUCKET failed with HTTP $code: $(cat "$STATE/mb.out")"; return 1 ;;
    esac
}

start() {
    if running; then
        log "already running on port $(cat "$STATE/port") (pid $(cat "$STATE/pid"))"
        print_env
        return 0
    fi
    rm -rf "$STATE"
    mkdir -p "$STATE/data"
    local port="${PYRALOG_S3_PORT:-9000}"
    if ! port_free "$port"; then
        port="$(free_port)"
        log "port ${PYRALOG_S3_PORT:-9000} is busy; using $port"
    fi
    if command -v minio >/dev/null 2>&1; then
        local console
        console="$(free_port)"
        log "starting minio on 127.0.0.1:$port (data in $STATE/data)"
        MINIO_ROOT_USER="$ACCESS_KEY" MINIO_ROOT_PASSWORD="$SECRET_KEY" \
            setsid nohup minio server --quiet --address "127.0.0.1:$port" \
            --console-address "127.0.0.1:$console" "$STATE/data" >"$STATE/server.log" 2>&1 &
    else
        if ! command -v moto_server >/dev/null 2>&1; then
            log "installing moto[server] from PyPI"
            python3 -m pip install --quiet 'moto[server]' >&2
            hash -r
        fi
        log "starting moto_server on 127.0.0.1:$port (in-memory; log in $STATE/server.log)"
        setsid nohup moto_server -H 127.0.0.1 -p "$port" >"$STATE/server.log" 2>&1 &
    fi
    echo $! >"$STATE/pid"
    echo "$port" >"$STATE/port"
    for _ in $(seq 1 100); do
        if curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$port/"; then
            create_bucket "$port"
            print_env
            return 0
        fi
        if ! kill -0 "$(cat "$STATE/pid")" 2>/dev/null; then
            break
        fi
        sleep 0.2
    done
    log "server did not come up; last log lines:"
    tail -n 20 "$STATE/server.log" >&2 || true
    stop
    return 1
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    env)
        if running; then print_env; else log "not running"; exit 1; fi
        ;;
    *)
        echo "usage: $0 start|stop|env" >&2
        exit 2
        ;;
esac
