#!/usr/bin/env bash
# The PATE runs behind README's "fool pate" numbers and BENCHMARKS.md (issue: fool pate). CPU,
# sequential, resumable (rerun to continue; finished steps are skipped).
#   (a) the recipe: 100 teachers, GNMax σ = 5 on 9,000 MNIST test images, student tested on the last 1,000;
#   (b) the paper's MNIST setting: 250 teachers, Confident-GNMax T = 200, σ1 = 150, σ2 = 40, 640 queries;
#   (c) DP-SGD at a similar ε, evaluated on the same last 1,000 test images.
# Usage: bash scripts/experiments/pate_mnist.sh [a|b|c|all] [RUNS_DIR]   (default: all, runs/)
set -euo pipefail
cd "$(dirname "$0")/../.."
PART=${1:-all}
R=${2:-runs}
F=target/release/fool
mkdir -p "$R"
t() { /usr/bin/time -f "$1: %e s wall, %M KB peak RSS" "${@:2}"; }
TEACH=(--dataset mnist --optimizer adam --epochs 10 --batch 32)
STUDENT=(--optimizer adam --epochs 20 --batch 32 --delta 1e-5 --test "mnist:test[9000:10000]")
if [[ $PART == a || $PART == all ]]; then
    t teachers-100 $F pate teachers "${TEACH[@]}" --teachers 100 --out "$R/pate100" --quiet > "$R/pate100-teachers.txt"
    [ -f "$R/pate100/votes.npy" ] || t votes-100 $F pate votes "$R/pate100" --pool "mnist:test[0:9000]" --quiet
    t student-100 $F pate student "$R/pate100" --aggregator gnmax --sigma 5 --queries 9000 "${STUDENT[@]}" \
        --out "$R/pate100-student" --quiet > "$R/pate100-student.txt"
    t analysis-100 $F privacy pate --votes "$R/pate100/votes.npy" --sigma 5 --delta 1e-5 > "$R/pate100-analysis.txt"
fi
if [[ $PART == b || $PART == all ]]; then
    t teachers-250 $F pate teachers "${TEACH[@]}" --teachers 250 --out "$R/pate250" --quiet > "$R/pate250-teachers.txt"
    [ -f "$R/pate250/votes.npy" ] || t votes-250 $F pate votes "$R/pate250" --pool "mnist:test[0:9000]" --quiet
    t student-250 $F pate student "$R/pate250" --aggregator confident --threshold 200 --sigma1 150 --sigma 40 \
        --queries 640 "${STUDENT[@]}" --out "$R/pate250-student" --quiet > "$R/pate250-student.txt"
    t analysis-250 $F privacy pate --votes "$R/pate250/votes.npy" --threshold 200 --sigma1 150 --sigma 40 \
        --queries 640 --delta 1e-5 > "$R/pate250-analysis.txt"
fi
if [[ $PART == c || $PART == all ]]; then
    # DP-SGD at about the ε the (b) student records (EPS, default 2.7), the same CNN family, and a
    # non-private model; every model tested on the last 1,000 test images, audited, reported together.
    EPS=${EPS:-2.7}
    [ -f "$R/mnist-dp-pate/model.pt" ] || t dp-sgd $F train --dataset mnist --arch cnn:act=tanh --epochs 30 --dp \
        --target-epsilon "$EPS" --delta 1e-5 --lr 0.03 --momentum 0.9 --out "$R/mnist-dp-pate" --resume --quiet
    [ -f "$R/mnist-plain-pate/model.pt" ] || t plain $F train --dataset mnist --optimizer adam --epochs 10 \
        --out "$R/mnist-plain-pate" --resume --quiet
    for run in pate100-student pate250-student mnist-dp-pate mnist-plain-pate; do
        [ -f "$R/$run/audit/audit.json" ] || t "audit-$run" $F audit --model "$R/$run/model.pt" --out "$R/$run/audit" --quiet > "$R/$run-audit.txt"
    done
    .venv/bin/python scripts/experiments/eval_slice.py "$R/pate100-student" "$R/pate250-student" \
        "$R/mnist-dp-pate" "$R/mnist-plain-pate" > "$R/pate-last1000.txt"
    $F report privacy "$R/mnist-plain-pate" "$R/mnist-dp-pate" "$R/pate250-student" "$R/pate100-student" \
        --out "$R/privacy-report-pate"
fi
