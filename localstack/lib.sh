# Shared by the loopback test servers (s3-server.sh, azure-server.sh): sourced, not run.
# Each script sets STATE (its state dir) and defines log() before sourcing this.

# Whether 127.0.0.1:$1 can be bound.
port_free() {
    python3 -c 'import socket,sys; s=socket.socket(); s.bind(("127.0.0.1",int(sys.argv[1])))' "$1" 2>/dev/null
}

# A port the kernel picks as free on 127.0.0.1.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# Stops the server whose pid is in $STATE/pid (started with setsid: its whole process group)
# and removes $STATE.
stop() {
    if [[ -f "$STATE/pid" ]]; then
        local pid
        pid="$(cat "$STATE/pid")"
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL -- "-$pid" 2>/dev/null || true
        log "stopped (pid $pid)"
    fi
    rm -rf "$STATE"
}
