#!/usr/bin/env bash
# The runs behind README's "fool synth" comparison and BENCHMARKS.md (issue: fool synth): DP
# synthetic MNIST by Private Evolution with the offline digit simulator, a CNN trained only on
# it (tested on the real test set), next to DP-SGD at the same (ε, δ), every model audited for
# membership (members: the 60,000 private training images; non-members: the test set).
# CPU, sequential, resumable (rerun to continue; finished steps are skipped).
# Usage: bash scripts/experiments/synth_mnist.sh [EPS...] [RUNS_DIR via R=...]   (default: 1 10)
set -euo pipefail
cd "$(dirname "$0")/../.."
R=${R:-runs}
F=target/release/fool
mkdir -p "$R"
t() { /usr/bin/time -f "$1: %e s wall, %M KB peak RSS" "${@:2}"; }
# δ = 1/(n ln n) for n = 60,000, what `fool synth --delta auto` takes; DP-SGD gets the same.
DELTA=$(python3 -c 'import math; n=60000; print(repr(1/(n*math.log(n))))')
for EPS in "${@:-1 10}"; do
    for E in $EPS; do
        S="$R/synth-mnist-e$E"
        [ -f "$S/synth.json" ] && grep -q '"iteration": 4' "$S/data/dataset.json" 2>/dev/null \
            || t "synth-e$E" $F synth --private mnist:train --api digits --epsilon "$E" --delta auto \
                --samples 60000 --iterations 4 --seed 0 --out "$S" --resume --quiet
        [ -f "$R/on-synth-e$E/model.pt" ] || t "train-on-synth-e$E" $F train --data "$S/data" --epochs 10 \
            --seed 0 --out "$R/on-synth-e$E" --resume --quiet
        [ -f "$R/mnist-dp-e$E/model.pt" ] || t "dp-sgd-e$E" $F train --dataset mnist --arch cnn:act=tanh \
            --epochs 30 --lr 0.03 --momentum 0.9 --dp --target-epsilon "$E" --delta "$DELTA" --seed 0 \
            --out "$R/mnist-dp-e$E" --resume --quiet
        for run in "on-synth-e$E" "mnist-dp-e$E"; do
            [ -f "$R/$run/audit/audit.json" ] || t "audit-$run" $F audit --model "$R/$run/model.pt" \
                --out "$R/$run/audit" --quiet > "$R/$run-audit.txt"
        done
    done
done
RUNS=()
for E in ${@:-1 10}; do RUNS+=("$R/on-synth-e$E" "$R/mnist-dp-e$E"); done
$F report privacy "${RUNS[@]}" --out "$R/privacy-report-synth"
