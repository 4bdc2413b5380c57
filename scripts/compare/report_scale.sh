#!/usr/bin/env bash
# `fool report html` at the issue's scale: a 42,000-row ImageNet bench sweep (1000 images × 42
# settings) plus four MNIST training runs; prints the build time (median of 5), the file size
# and Chromium's time to the first render of every chart (median of 3, tests/browser).
#
# The sweep: a real run on the first 4 ImageNet samples (fgsm, pgd × 7 eps × 3 defenses = 42
# settings, 4 examples kept), whose result rows are then repeated to 1000 images (files renamed,
# bench.json listing 1000 files): the report reads and parses all 42,000 rows as it would for a
# real sweep; the numbers in those copies are the 4 images' (this measures the report, not the
# attack). Usage: bash scripts/compare/report_scale.sh [WORKDIR]   (default /tmp/fool-report-scale)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
FOOL="${FOOL:-$ROOT/target/release/fool}"
W="${1:-/tmp/fool-report-scale}"
mkdir -p "$W"
cd "$ROOT"
if [ ! -s "$W/sweep/summary.json" ]; then
    "$FOOL" bench assets/imagenet-samples --limit 4 --attack fgsm,pgd --steps 3 \
        --eps 1/255,2/255,3/255,4/255,6/255,8/255,16/255 --defense none,jpeg:75,bits:5 \
        --keep-examples 4 --batch 4 --out "$W/sweep" -q
fi
python3 - "$W/sweep" <<'PY'
import json, sys, pathlib
d = pathlib.Path(sys.argv[1])
cfg = json.loads((d / "bench.json").read_text())
rows = [json.loads(l) for l in (d / "results.jsonl").read_text().splitlines() if l.strip()]
real = cfg["files"][:4]
files = real + [f"copy{i:04d}_{real[i % 4]}" for i in range(4, 1000)]
by_file = {f: [r for r in rows if r["file"] == f] for f in real}
out = []
for i, f in enumerate(files):
    for r in by_file[real[i % 4]]:
        out.append(dict(r, file=f))
cfg["files"] = files
(d / "bench.json").write_text(json.dumps(cfg, indent=1))
(d / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in out))
print(f"sweep: {len(out)} rows, {len(files)} images, {len(out) // len(files)} settings")
PY
for k in 1 2 3 4; do
    if [ ! -s "$W/run$k/metadata.json" ]; then
        extra=""
        [ $((k % 2)) -eq 0 ] && extra="--dp --target-epsilon $k"
        "$FOOL" train --dataset mnist --limit 2000 --epochs 5 --batch 50 --audit-every 1 $extra --out "$W/run$k" -q >/dev/null
        "$FOOL" audit --model "$W/run$k/model.pt" --out "$W/run$k/audit" -q >/dev/null
    fi
done
times=()
for i in 1 2 3 4 5; do
    s=$(date +%s.%N)
    "$FOOL" report html "$W/sweep" "$W"/run{1,2,3,4} --out "$W/report.html" -q >/dev/null
    e=$(date +%s.%N)
    times+=("$(echo "$e - $s" | bc)")
    echo "build $i: ${times[-1]} s"
done
printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print "build time, median of " NR ": " a[int((NR+1)/2)] " s"}'
echo "file size: $(stat -c %s "$W/report.html") bytes"
renders=()
for i in 1 2 3; do
    ms=$(node tests/browser/check_report.mjs "$W/report.html" | python3 -c 'import json,sys; d=json.load(sys.stdin); assert not d["errors"] and not d["requests"], d; print(d["first_render_ms"])')
    renders+=("$ms")
    echo "chromium first render $i: $ms ms"
done
printf '%s\n' "${renders[@]}" | sort -n | awk '{a[NR]=$1} END {print "first render, median of " NR ": " a[int((NR+1)/2)] " ms"}'
