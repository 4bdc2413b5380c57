#!/usr/bin/env bash
# A local MLflow tracking server for `--mlflow` and its tests (tests/it/mlflow.rs).
#
#   bash scripts/setup/mlflow_server.sh start   # prints: export FOOL_MLFLOW_URI=http://127.0.0.1:PORT
#   bash scripts/setup/mlflow_server.sh stop
#   bash scripts/setup/mlflow_server.sh uri     # the running server's URI (exit 1 when none)
#
# `start` installs mlflow (pinned below) into its own virtualenv .mlflow-venv (once: about a
# minute; skipped when it is there), then starts `mlflow server` on a free loopback port with a
# SQLite store and proxied artifacts (--serve-artifacts) in a new temporary folder, waits until
# it answers, and writes its URI to target/mlflow-server/uri. A server this script started and
# that still answers is reused. `stop` ends it (its whole process group) and removes its folder.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
MLFLOW_VERSION=3.18.0
VENV="$ROOT/.mlflow-venv"
STATE="$ROOT/target/mlflow-server"
say() { printf '[mlflow_server] %s\n' "$*" >&2; }

healthy() { # healthy URI: the server answers /health
    "$VENV/bin/python" - "$1" <<'EOF' 2>/dev/null
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1] + "/health", timeout=2) as r:
    sys.exit(0 if r.status == 200 else 1)
EOF
}

running_uri() { # the URI of a server this script started that still answers
    [ -s "$STATE/uri" ] && [ -s "$STATE/pid" ] || return 1
    kill -0 "$(cat "$STATE/pid")" 2>/dev/null || return 1
    healthy "$(cat "$STATE/uri")" || return 1
    cat "$STATE/uri"
}

install() {
    if "$VENV/bin/mlflow" --version 2>/dev/null | grep -qx "mlflow, version $MLFLOW_VERSION"; then
        return
    fi
    if [ ! -x "$VENV/bin/python" ]; then
        python3 -m venv "$VENV" || {
            echo "error: 'python3 -m venv' failed; on Debian install it with: apt-get install python3-venv" >&2
            exit 1
        }
    fi
    say "installing mlflow==$MLFLOW_VERSION into $VENV (about a minute, once)"
    local t0=$SECONDS
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "mlflow==$MLFLOW_VERSION"
    say "mlflow installed in $((SECONDS - t0)) s"
}

stop() {
    if [ -s "$STATE/pid" ]; then
        local pid
        pid="$(cat "$STATE/pid")"
        # The server was started in its own session: its process group is its pid.
        # Only a process that is still the mlflow server (not a pid reused since).
        if kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "mlflow server"; then
            kill -TERM -- "-$pid" 2>/dev/null || true
            for _ in $(seq 1 50); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.2
            done
            kill -KILL -- "-$pid" 2>/dev/null || true
        fi
        say "stopped the MLflow server (process group $pid)"
    fi
    if [ -s "$STATE/data" ]; then
        rm -rf "$(cat "$STATE/data")"
    fi
    rm -rf "$STATE"
}

start() {
    if uri="$(running_uri)"; then
        say "the MLflow server at $uri is running"
        echo "export FOOL_MLFLOW_URI=$uri"
        return
    fi
    stop 2>/dev/null
    install
    mkdir -p "$STATE"
    local port data uri pid
    port="$("$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    data="$(mktemp -d "${TMPDIR:-/tmp}/fool-mlflow.XXXXXX")"
    echo "$data" >"$STATE/data"
    uri="http://127.0.0.1:$port"
    setsid "$VENV/bin/mlflow" server \
        --backend-store-uri "sqlite:///$data/mlflow.db" \
        --artifacts-destination "$data/artifacts" --serve-artifacts \
        --host 127.0.0.1 --port "$port" --workers 1 \
        </dev/null >"$STATE/log" 2>&1 &
    pid=$!
    echo "$pid" >"$STATE/pid"
    local t0=$SECONDS
    until healthy "$uri"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "error: the MLflow server exited; its log ($STATE/log) ends with:" >&2
            tail -n 20 "$STATE/log" >&2
            stop 2>/dev/null
            exit 1
        fi
        if [ $((SECONDS - t0)) -ge 120 ]; then
            echo "error: the MLflow server did not answer $uri/health within 120 s; its log ($STATE/log) ends with:" >&2
            tail -n 20 "$STATE/log" >&2
            stop 2>/dev/null
            exit 1
        fi
        sleep 0.5
    done
    echo "$uri" >"$STATE/uri"
    say "MLflow $MLFLOW_VERSION tracking server at $uri (started in $((SECONDS - t0)) s; data in $data)"
    echo "export FOOL_MLFLOW_URI=$uri"
}

case "${1:-}" in
start) start ;;
stop) stop ;;
uri) running_uri ;;
*)
    echo "usage: bash scripts/setup/mlflow_server.sh start|stop|uri" >&2
    exit 2
    ;;
esac
