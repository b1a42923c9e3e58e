#!/usr/bin/env bash
# Local Azure Blob Storage server (Azurite, from npm) for Pyralog's cold tier, on loopback only.
#
#   localstack/azure-server.sh start   # start (idempotent) and print the env to export
#   localstack/azure-server.sh env     # print the env of the running server
#   localstack/azure-server.sh stop    # stop it and remove its state
#
# Azurite is installed with npm into PYRALOG_TOOLS_DIR (default ~/.cache/pyralog) when it is
# missing. It serves the emulator's well-known account `devstoreaccount1` path-style
# (`http://127.0.0.1:PORT/devstoreaccount1/CONTAINER/...`), with the account key Microsoft
# publishes for it. Usage: eval "$(localstack/azure-server.sh start)".
#
# Settings (environment): PYRALOG_AZURE_PORT (default 10000; a free port is chosen if busy),
# PYRALOG_AZURE_CONTAINER (default pyralog), PYRALOG_AZURE_STATE (state dir, default
# ${TMPDIR:-/tmp}/pyralog-azure-$UID). Progress goes to stderr; stdout carries only the env.
set -euo pipefail

STATE="${PYRALOG_AZURE_STATE:-${TMPDIR:-/tmp}/pyralog-azure-$(id -u)}"
CONTAINER="${PYRALOG_AZURE_CONTAINER:-pyralog}"
TOOLS="${PYRALOG_TOOLS_DIR:-$HOME/.cache/pyralog}/azurite"
ACCOUNT="devstoreaccount1"
# The emulator's published development key (not a secret: every Azurite has it).
KEY="Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

# shellcheck source=localstack/lib.sh
source "$(dirname "$0")/lib.sh"

log() { echo "azure-server: $*" >&2; }

running() {
    [[ -f "$STATE/pid" && -f "$STATE/port" ]] || return 1
    kill -0 "$(cat "$STATE/pid")" 2>/dev/null || return 1
    curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$(cat "$STATE/port")/"
}

print_env() {
    cat <<ENV
export PYRALOG_AZURE_ENDPOINT=http://127.0.0.1:$(cat "$STATE/port")/$ACCOUNT
export PYRALOG_AZURE_CONTAINER=$CONTAINER
export PYRALOG_AZURE_ACCOUNT=$ACCOUNT
export PYRALOG_AZURE_KEY=$KEY
ENV
}

install() {
    [[ -x "$TOOLS/node_modules/.bin/azurite-blob" ]] && return 0
    command -v npm >/dev/null 2>&1 || { log "npm not found: install Node.js and npm"; return 1; }
    log "installing azurite from npm into $TOOLS"
    mkdir -p "$TOOLS"
    [[ -f "$TOOLS/package.json" ]] || echo '{"name":"pyralog-test-servers","private":true}' >"$TOOLS/package.json"
    (cd "$TOOLS" && npm install --silent --no-audit --no-fund azurite >&2)
}

# Creates the container with a Shared Key signed request (Azurite, like Azure, has no
# anonymous create).
create_container() {
    python3 - "$1" "$ACCOUNT" "$KEY" "$CONTAINER" <<'PY'
import base64, hashlib, hmac, sys, urllib.error, urllib.request
from email.utils import formatdate
port, account, key, container = sys.argv[1:]
date, version = formatdate(usegmt=True), "2021-08-06"
resource = f"/{account}/{account}/{container}\nrestype:container"
to_sign = "PUT\n" + "\n" * 11 + f"x-ms-date:{date}\nx-ms-version:{version}\n" + resource
sig = base64.b64encode(hmac.new(base64.b64decode(key), to_sign.encode(), hashlib.sha256).digest())
req = urllib.request.Request(
    f"http://127.0.0.1:{port}/{account}/{container}?restype=container", method="PUT",
    headers={"x-ms-date": date, "x-ms-version": version,
             "Authorization": f"SharedKey {account}:{sig.decode()}"})
try:
    urllib.request.urlopen(req, timeout=10)
    print(f"azure-server: created container {container}", file=sys.stderr)
except urllib.error.HTTPError as e:
    if e.code != 409:
        sys.exit(f"azure-server: creating container {container} failed with HTTP {e.code}: {e.read()[:300]!r}")
    print(f"azure-server: container {container} already exists", file=sys.stderr)
PY
}

start() {
    if running; then
        log "already running on port $(cat "$STATE/port") (pid $(cat "$STATE/pid"))"
        print_env
        return 0
    fi
    install
    rm -rf "$STATE"
    mkdir -p "$STATE/data"
    local port="${PYRALOG_AZURE_PORT:-10000}"
    if ! port_free "$port"; then
        port="$(free_port)"
        log "port ${PYRALOG_AZURE_PORT:-10000} is busy; using $port"
    fi
    log "starting azurite-blob on 127.0.0.1:$port (data in $STATE/data)"
    # --skipApiVersionCheck: clients may speak a newer service version than this Azurite.
    setsid nohup "$TOOLS/node_modules/.bin/azurite-blob" --blobHost 127.0.0.1 \
        --blobPort "$port" --location "$STATE/data" --skipApiVersionCheck --silent \
        >"$STATE/server.log" 2>&1 &
    echo $! >"$STATE/pid"
    echo "$port" >"$STATE/port"
    for _ in $(seq 1 100); do
        if curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$port/"; then
            create_container "$port"
            print_env
            return 0
        fi
        kill -0 "$(cat "$STATE/pid")" 2>/dev/null || break
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
