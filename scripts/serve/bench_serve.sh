#!/usr/bin/env bash
# Benchmark `fool serve` against the FastAPI baseline (scripts/serve/fastapi_baseline.py) on the
# same model, the same image and the same batching limits, with `fool loadtest` as the load
# generator. Not run by the tests.
#
#   scripts/serve/bench_serve.sh BIN [options]
#     BIN                  the fool binary (e.g. target/release/fool)
#     --batches "1 8"      max-batch settings to compare (default "1 8")
#     --delay-ms D         --max-delay-ms for both servers (default 2)
#     --queue Q            --queue for both servers (default 256)
#     --concurrency C      loadtest concurrency (default 16)
#     --requests R         measured requests per run (default 500)
#     --warmup W           unmeasured requests before each run (default 2*C)
#     --threads T          torch threads of the baseline (default: nproc, libtorch's default)
#     --model M --image F  (default assets/model.pt, assets/dog.png)
#   Environment: FOOL_PORT / FASTAPI_PORT (default 18180 / 18181), FOOL_SERVE_ARGS (extra
#   arguments for `fool serve`), PYTHON (default .venv/bin/python).
#
# For each max-batch setting both servers are started (loopback only), each is loaded in turn
# while the other one idles, and a table is printed: server, max-batch, throughput, p50/p95/p99
# latency, errors, and the throughput ratio fool/fastapi. Raw JSON results go to
# outputs/bench_serve/.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

usage() { sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
[ $# -ge 1 ] || usage
BIN="$1"; shift
case "$BIN" in -h|--help) usage ;; esac
[ -x "$BIN" ] || { echo "error: $BIN is not an executable fool binary" >&2; exit 2; }
BIN="$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")"

BATCHES="1 8"; DELAY=2; QUEUE=256; CONC=16; REQS=500; WARMUP=""; THREADS="$(nproc)"
MODEL=assets/model.pt; IMAGE=assets/dog.png
while [ $# -gt 0 ]; do
    case "$1" in
        --batches) BATCHES="$2"; shift 2 ;;
        --delay-ms) DELAY="$2"; shift 2 ;;
        --queue) QUEUE="$2"; shift 2 ;;
        --concurrency) CONC="$2"; shift 2 ;;
        --requests) REQS="$2"; shift 2 ;;
        --warmup) WARMUP="$2"; shift 2 ;;
        --threads) THREADS="$2"; shift 2 ;;
        --model) MODEL="$2"; shift 2 ;;
        --image) IMAGE="$2"; shift 2 ;;
        -h|--help) usage ;;
        *) echo "error: unknown option $1" >&2; usage ;;
    esac
done
WARMUP="${WARMUP:-$((2 * CONC))}"
P1="${FOOL_PORT:-18180}"; P2="${FASTAPI_PORT:-18181}"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
OUT="$ROOT/outputs/bench_serve"; mkdir -p "$OUT"
# libtorch from the venv for a fool binary built against it (as scripts/setup/setup.sh does)
if TORCH_LIB="$("$PYTHON" -c 'import os,torch;print(os.path.join(os.path.dirname(torch.__file__),"lib"))' 2>/dev/null)"; then
    export LD_LIBRARY_PATH="$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
"$PYTHON" -c "import fastapi, uvicorn, PIL" 2>/dev/null || bash "$ROOT/scripts/serve/setup_py.sh"

for p in "$P1" "$P2"; do
    if curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$p/"; then
        echo "error: port $p is already in use (set FOOL_PORT / FASTAPI_PORT)" >&2; exit 1
    fi
done

PIDS=(); LOAD_PID=""
stop_servers() {
    local pid
    if [ -n "$LOAD_PID" ]; then kill "$LOAD_PID" 2>/dev/null || true; LOAD_PID=""; fi
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    PIDS=()
}
trap stop_servers EXIT
trap 'exit 130' INT TERM

wait_ready() { # PORT PID NAME LOG
    local i
    for i in $(seq 1 240); do
        if curl -sf -o /dev/null --max-time 2 "http://127.0.0.1:$1/v2/health/ready"; then return 0; fi
        if ! kill -0 "$2" 2>/dev/null; then
            echo "error: $3 exited before it was ready; its log ($4):" >&2; tail -20 "$4" >&2; exit 1
        fi
        sleep 0.25
    done
    echo "error: $3 not ready on port $1 after 60 s; its log ($4):" >&2; tail -20 "$4" >&2; exit 1
}

load() { # PORT N OUTFILE: the loadtest's JSON into OUTFILE; in the background + wait (the
          # pid is the binary's own), so that a signal stops the run at once (trap above)
    "$BIN" loadtest "http://127.0.0.1:$1/predictions/model" --body "$IMAGE" \
        --concurrency "$CONC" --requests "$2" --json >"$3" &
    LOAD_PID=$!
    wait "$LOAD_PID"
    LOAD_PID=""
}

field() { # JSON KEY
    "$PYTHON" -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"
}

echo "fool serve vs FastAPI baseline: model $MODEL, image $IMAGE, concurrency $CONC, $REQS requests" \
     "(+$WARMUP warm-up), max-delay $DELAY ms, queue $QUEUE, baseline threads $THREADS, $(nproc) cores" >&2
ROWS=()
for B in $BATCHES; do
    # shellcheck disable=SC2086
    "$BIN" serve --model "$MODEL" --port "$P1" --max-batch "$B" --max-delay-ms "$DELAY" \
        --queue "$QUEUE" --quiet ${FOOL_SERVE_ARGS:-} >"$OUT/fool_b$B.log" 2>&1 &
    PIDS+=($!); FOOL_PID=$!
    "$PYTHON" scripts/serve/fastapi_baseline.py --model "$MODEL" --port "$P2" --max-batch "$B" \
        --max-delay-ms "$DELAY" --queue "$QUEUE" --threads "$THREADS" >"$OUT/fastapi_b$B.log" 2>&1 &
    PIDS+=($!); FASTAPI_PID=$!
    wait_ready "$P1" "$FOOL_PID" "fool serve" "$OUT/fool_b$B.log"
    wait_ready "$P2" "$FASTAPI_PID" "the FastAPI baseline" "$OUT/fastapi_b$B.log"
    for s in fool fastapi; do
        port="$P1"; [ "$s" = fastapi ] && port="$P2"
        if [ "$WARMUP" -gt 0 ]; then load "$port" "$WARMUP" /dev/null; fi
        load "$port" "$REQS" "$OUT/${s}_b$B.json"
        json="$(cat "$OUT/${s}_b$B.json")"
        ROWS+=("$s $B $json")
        echo "  $s max-batch $B: $json" >&2
    done
    stop_servers
done

"$PYTHON" - "${ROWS[@]}" <<'EOF'
import json, sys
rows = []
for arg in sys.argv[1:]:
    server, batch, js = arg.split(" ", 2)
    rows.append((server, int(batch), json.loads(js)))
print(f"{'server':<8} {'max-batch':>9} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
      f"{'errors':>6} {'fool/fastapi':>12}")
tput = {(s, b): r["throughput"] for s, b, r in rows}
for s, b, r in rows:
    ratio = ""
    if s == "fool" and tput.get(("fastapi", b)):
        ratio = f"{tput[(s, b)] / tput[('fastapi', b)]:.2f}x"
    print(f"{s:<8} {b:>9} {r['throughput']:>8.1f} {r['p50_ms']:>8.1f} {r['p95_ms']:>8.1f} "
          f"{r['p99_ms']:>8.1f} {r['errors']:>6} {ratio:>12}")
EOF
