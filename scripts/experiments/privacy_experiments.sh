#!/usr/bin/env bash
# The training runs behind README's "privacy, utility and robustness" section and BENCHMARKS.md
# (issue: fool train / fool audit). CPU, sequential; minutes to an hour on 2 cores.
# Usage: bash scripts/experiments/privacy_experiments.sh [RUNS_DIR]   (default runs/)
set -euo pipefail
cd "$(dirname "$0")/../.."
R=${1:-runs}
F=target/release/fool
mkdir -p "$R"
t() { /usr/bin/time -f "$1: %e s wall, %M KB peak RSS" "${@:2}"; }
# MNIST: non-private, and DP at ε ≤ 3 (δ = 1e-5).
[ -f "$R/mnist-plain/model.pt" ] || t mnist-plain $F train --dataset mnist --optimizer adam --epochs 20 --audit-every 4 \
    --out "$R/mnist-plain" --resume
[ -f "$R/mnist-dp/model.pt" ] || t mnist-dp $F train --dataset mnist --arch cnn:act=tanh --epochs 40 --dp --target-epsilon 3 \
    --delta 1e-5 --lr 0.03 --momentum 0.9 --checkpoint-every 10 --out "$R/mnist-dp" --resume
# CIFAR-10: the membership-inference tutorial's 2-conv vs 3-conv small CNN, and a DP model at ε = 8.
[ -f "$R/cifar-c2/model.pt" ] || t cifar-c2 $F train --dataset cifar10 --arch small-cnn:conv=2 --optimizer adam --epochs 10 \
    --batch 128 --audit-every 2 --out "$R/cifar-c2" --resume
[ -f "$R/cifar-c3/model.pt" ] || t cifar-c3 $F train --dataset cifar10 --arch small-cnn:conv=3 --optimizer adam --epochs 10 \
    --batch 128 --audit-every 2 --out "$R/cifar-c3" --resume
[ -f "$R/cifar-dp/model.pt" ] || t cifar-dp $F train --dataset cifar10 --arch small-cnn:conv=3,act=tanh --dp --target-epsilon 8 \
    --delta 1e-5 --epochs 10 --batch 512 --lr 0.05 --audit-every 2 --out "$R/cifar-dp" --resume
$F report privacy "$R/cifar-c2" "$R/cifar-c3" "$R/cifar-dp" --out "$R/privacy-report-cifar"
$F report privacy "$R/mnist-plain" "$R/mnist-dp" --out "$R/privacy-report-mnist"
