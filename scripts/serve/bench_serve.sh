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
#     --rounds N           measured runs per server and setting, alternating (default 5)
#     --endpoint E         predictions (the image file as body, default) or infer (KServe v2
#                          JSON: the image as the normalized FP32 [1,3,224,224] tensor)
#     --warmup W           unmeasured requests before each run (default 2*C)
#     --threads T          libtorch intra-op threads of both servers (default: nproc, libtorch's default)
#     --model M --image F  (default assets/model.pt, assets/dog.png)
#   Environment: FOOL_PORT / FASTAPI_PORT (default 18180 / 18181), FOOL_SERVE_ARGS (extra
#   arguments for `fool serve`), BASELINE_ARGS (extra arguments for the baseline, e.g.
#   --plain-layout), PYTHON (default .venv/bin/python). Equal footing: the baseline feeds the model
#   as fool does (frozen parameters, channels-last input) unless --plain-layout; give both the same
#   allocator with FOOL_MALLOC=default (fool otherwise raises glibc's malloc thresholds).
#
# For each max-batch setting both servers are started (loopback only) and loaded in turn, N rounds
# alternating which goes first, while the other idles; printed: each round's throughput and
# p50/p95/p99 latency, then per setting the medians and the median of the per-round throughput
# ratios fool/fastapi. Raw JSON results go to outputs/bench_serve/.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

usage() { sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
[ $# -ge 1 ] || usage
BIN="$1"; shift
case "$BIN" in -h|--help) usage ;; esac
[ -x "$BIN" ] || { echo "error: $BIN is not an executable fool binary" >&2; exit 2; }
BIN="$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")"

BATCHES="1 8"; DELAY=2; QUEUE=256; CONC=16; REQS=500; WARMUP=""; THREADS="$(nproc)"; ROUNDS=5; ENDPOINT=predictions
MODEL=assets/model.pt; IMAGE=assets/dog.png
while [ $# -gt 0 ]; do
    case "$1" in
        --batches) BATCHES="$2"; shift 2 ;;
        --delay-ms) DELAY="$2"; shift 2 ;;
        --queue) QUEUE="$2"; shift 2 ;;
        --concurrency) CONC="$2"; shift 2 ;;
        --requests) REQS="$2"; shift 2 ;;
        --rounds) ROUNDS="$2"; shift 2 ;;
        --endpoint) ENDPOINT="$2"; shift 2 ;;
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
    "$BIN" loadtest "http://127.0.0.1:$1$PATH_" --body "$BODY" \
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
case "$ENDPOINT" in
    predictions) PATH_=/predictions/model; BODY="$IMAGE" ;;
    infer)
        PATH_=/v2/models/model/infer; BODY="$OUT/infer_body.json"
        "$PYTHON" - "$IMAGE" "$BODY" <<'EOF'
import json, sys
import numpy as np
from PIL import Image
img = Image.open(sys.argv[1]).convert("RGB")
assert img.size == (224, 224), "the infer body is built from a 224x224 image"
x = np.asarray(img, dtype=np.float32) / 255.0
x = (x - np.array([0.485, 0.456, 0.406], np.float32)) / np.array([0.229, 0.224, 0.225], np.float32)
x = x.transpose(2, 0, 1)[None]
body = {"inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32",
                    "data": [float(v) for v in x.ravel()]}]}
json.dump(body, open(sys.argv[2], "w"))
EOF
        ;;
    *) echo "error: --endpoint is predictions or infer" >&2; exit 2 ;;
esac
echo "endpoint $PATH_, body $BODY ($(stat -c %s "$BODY") bytes)" >&2

ROWS=()
for B in $BATCHES; do
    # shellcheck disable=SC2086
    "$BIN" serve --model "$MODEL" --port "$P1" --max-batch "$B" --max-delay-ms "$DELAY" \
        --queue "$QUEUE" --threads "$THREADS" --quiet ${FOOL_SERVE_ARGS:-} >"$OUT/fool_b$B.log" 2>&1 &
    PIDS+=($!); FOOL_PID=$!
    # shellcheck disable=SC2086
    "$PYTHON" scripts/serve/fastapi_baseline.py --model "$MODEL" --port "$P2" --max-batch "$B" \
        --max-delay-ms "$DELAY" --queue "$QUEUE" --threads "$THREADS" ${BASELINE_ARGS:-} \
        >"$OUT/fastapi_b$B.log" 2>&1 &
    PIDS+=($!); FASTAPI_PID=$!
    wait_ready "$P1" "$FOOL_PID" "fool serve" "$OUT/fool_b$B.log"
    wait_ready "$P2" "$FASTAPI_PID" "the FastAPI baseline" "$OUT/fastapi_b$B.log"
    for s in fool fastapi; do
        port="$P1"; [ "$s" = fastapi ] && port="$P2"
        if [ "$WARMUP" -gt 0 ]; then load "$port" "$WARMUP" /dev/null; fi
    done
    # Rounds, alternating which server goes first, so that a machine that speeds up or slows
    # down during the run touches both alike; the ratio is taken per round.
    for r in $(seq 1 "$ROUNDS"); do
        order="fool fastapi"; [ $((r % 2)) -eq 0 ] && order="fastapi fool"
        for s in $order; do
            port="$P1"; [ "$s" = fastapi ] && port="$P2"
            load "$port" "$REQS" "$OUT/${s}_b${B}_r$r.json"
            json="$(tr -d '\n' < "$OUT/${s}_b${B}_r$r.json")"
            ROWS+=("$s $B $r $json")
            echo "  $s max-batch $B round $r: $json" >&2
        done
    done
    stop_servers
done

"$PYTHON" - "${ROWS[@]}" <<'EOF'
import json, statistics, sys
rows = []
for arg in sys.argv[1:]:
    server, batch, rnd, js = arg.split(" ", 3)
    rows.append((server, int(batch), int(rnd), json.loads(js)))
print(f"{'round':>5} {'server':<8} {'max-batch':>9} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'errors':>6}")
for s, b, r, x in rows:
    print(f"{r:>5} {s:<8} {b:>9} {x['throughput']:>8.1f} {x['p50_ms']:>8.1f} {x['p95_ms']:>8.1f} "
          f"{x['p99_ms']:>8.1f} {x['errors']:>6}")
print()
print(f"{'max-batch':>9} {'server':<8} {'median req/s':>12} {'median p99 ms':>13}   median ratio fool/fastapi (per round)")
for b in sorted({b for _, b, _, _ in rows}):
    ratios = []
    for r in sorted({r for _, bb, r, _ in rows if bb == b}):
        t = {s: x["throughput"] for s, bb, rr, x in rows if bb == b and rr == r}
        if t.get("fastapi"):
            ratios.append(t["fool"] / t["fastapi"])
    for s in ("fool", "fastapi"):
        xs = [x for ss, bb, _, x in rows if ss == s and bb == b]
        ratio = ""
        if s == "fool" and ratios:
            ratio = f"{statistics.median(ratios):.2f}x  (rounds: {', '.join(f'{q:.2f}' for q in ratios)})"
        print(f"{b:>9} {s:<8} {statistics.median(x['throughput'] for x in xs):>12.1f} "
              f"{statistics.median(x['p99_ms'] for x in xs):>13.1f}   {ratio}")
EOF
