#!/usr/bin/env bash
# Seeded outputs of one `fool` binary, fingerprinted, for before/after comparisons of a change
# that must not change behaviour (a refactor): every command below is seeded, so two binaries
# that behave the same write the same files. Timings (seconds, examples/s, …) and the version
# are masked in JSON before hashing; everything else — PNGs, .npy arrays, summaries, metadata,
# audits, LiRA scores, reports (byte for byte), stdout of --json commands (as JSON) — must match.
#
#   bash scripts/compare/seeded_outputs.sh BINARY OUT_DIR      # run and fingerprint -> OUT_DIR/manifest.txt
#   bash scripts/compare/seeded_outputs.sh --diff A_DIR B_DIR  # compare two manifests (exit 1 on a difference)
#
# Run from the repo root after `bash scripts/setup/setup.sh` (needs assets/). A few minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY="${PYTHON:-python3}"

if [ "${1:-}" = "--diff" ]; then
    diff <(sort "$2/manifest.txt") <(sort "$3/manifest.txt") && {
        echo "identical: $(wc -l < "$2/manifest.txt") files"
        exit 0
    }
    echo "DIFFERENT (see above)" >&2
    exit 1
fi

BIN="$(realpath "$1")"
OUT="$(realpath -m "$2")"
rm -rf "$OUT"
mkdir -p "$OUT"
export OMP_NUM_THREADS=1 # deterministic CPU reductions whatever the machine
run() { # run NAME ARGS...: stdout to OUT/NAME.stdout
    local name="$1"
    shift
    echo "[seeded] fool $*" >&2
    "$BIN" "$@" > "$OUT/$name.stdout"
}

# Attack, predict, apply: the dog (targeted SGD, and PGD from a random start).
run attack attack assets/dog.png --target goldfish --seed 0 --out "$OUT/attack" --json -q
run attack-rs attack assets/dog.png --target tabby --random-start --steps 30 --seed 4 --out "$OUT/attack-rs" --json -q
run predict predict assets/dog.png --json -q
run predict-adv predict "$OUT/attack/dog_goldfish.png" --defense jpeg:75 --json -q
run apply apply assets/dog.png --perturbation "$OUT/attack/dog_goldfish.npy" --output "$OUT/applied.png" --json -q

# Bench: shuffled samples, two attacks, a defense with and without BPDA, random targets.
run bench bench assets/imagenet-samples --attack fgsm,pgd --eps 0,2/255,4/255 --defense none,jpeg:75 \
    --adaptive --steps 5 --limit 8 --batch 4 --shuffle --seed 3 --out "$OUT/bench" --json -q
run bench-t bench assets/imagenet-samples --attack pgd --eps 4/255 --targets random --steps 4 \
    --limit 4 --seed 5 --out "$OUT/bench-t" --json -q
run bench-ll bench assets/imagenet-samples --attack mifgsm,cw,square --eps 4/255 --targets least-likely \
    --steps 4 --limit 4 --seed 5 --out "$OUT/bench-ll" --json -q

# Train: a half (members.npy), audits during training, DP with both accountants.
run train train --dataset mnist --limit 600 --epochs 2 --batch 64 --half 7 --seed 3 --audit-every 1 \
    --audit-examples 200 --samples 4 --checkpoint-every 1 --out "$OUT/train" --json -q
run train-dp train --dataset mnist --limit 600 --epochs 1 --batch 64 --dp --noise 1.0 --clip 1.0 \
    --seed 2 --out "$OUT/train-dp" --json -q
run train-prv train --dataset mnist --limit 600 --epochs 1 --batch 64 --dp --target-epsilon 8 \
    --accountant prv --seed 2 --out "$OUT/train-prv" --json -q
# The same run again into another folder: training is deterministic on CPU.
run train-r1 train --dataset mnist --limit 600 --epochs 2 --batch 64 --half 7 --seed 3 --audit-every 1 \
    --audit-examples 200 --out "$OUT/train-r" --json -q

# Audits: threshold + LR with slices, from arrays, and LiRA with 2 one-epoch shadows.
run audit audit --model "$OUT/train/model.pt" --slices class,correctness --max-examples 300 --seed 1 \
    --out "$OUT/train/audit" --json -q
run lira audit --model "$OUT/train/model.pt" --lira-shadows 2 --lira-epochs 1 --attacks all \
    --max-examples 200 --shadow-dir "$OUT/shadows" --json -q

# Accounting and the cross-run report.
run eps privacy epsilon --n 60000 --batch 256 --noise 1.1 --epochs 60 --delta 1e-5 --json
run eps-prv privacy epsilon --n 60000 --batch 256 --noise 1.1 --epochs 60 --delta 1e-5 --accountant prv --json
run noise privacy noise --n 60000 --batch 256 --epochs 60 --target-epsilon 3 --delta 1e-5 --json
run report report privacy "$OUT/train" "$OUT/train-dp" --out "$OUT/report" --json -q

# Fingerprint: files as bytes (JSON timings masked), --json stdout as parsed JSON without timings.
"$PY" - "$OUT" <<'PYEOF'
import hashlib, json, os, re, sys
out = sys.argv[1]
DROP = re.compile(r"(second|elapsed|duration|per_sec|fool_version|^time$|^timestamp$)")
def clean(v):
    if isinstance(v, dict):
        return {k: clean(x) for k, x in v.items() if not DROP.search(k)}
    if isinstance(v, list):
        return [clean(x) for x in v]
    if isinstance(v, str):
        return v.replace(out, "<OUT>")
    return v
# Timing values are masked in the raw text, so the hash still covers the files' exact bytes
# (formatting, key order, final newline); stdout of --json commands is compared as parsed JSON.
MASK = re.compile(r'("[^"]*(?:second|elapsed|duration|per_sec|fool_version)[^"]*"\s*:\s*)(-?[0-9][0-9.eE+-]*|"[^"]*"|null)')
def digest(path):
    data = open(path, "rb").read()
    name = os.path.basename(path)
    if name.endswith((".json", ".jsonl")):
        data = MASK.sub(r'\1"<masked>"', data.decode()).replace(out, "<OUT>").encode()
    elif name.endswith(".stdout") and data.strip():
        try:
            data = json.dumps(clean(json.loads(data)), sort_keys=True).encode()
        except ValueError:
            pass
    return hashlib.sha256(data).hexdigest()[:16]
lines = []
for root, dirs, files in os.walk(out):
    dirs.sort()
    for f in sorted(files):
        p = os.path.join(root, f)
        rel = os.path.relpath(p, out)
        # TorchScript archives and state tensors embed file names and pickler ids; the models
        # are compared through what they compute (metadata accuracies, audits, LiRA scores).
        if f == "manifest.txt" or f.endswith((".pt", ".svg")) or f.startswith((".", "bench.lock")):
            continue
        lines.append(f"{rel} {digest(p)}")
open(os.path.join(out, "manifest.txt"), "w").write("\n".join(lines) + "\n")
print(f"{len(lines)} files fingerprinted in {out}/manifest.txt")
PYEOF
