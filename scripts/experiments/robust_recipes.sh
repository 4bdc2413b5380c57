#!/usr/bin/env bash
# Issue 18's reproductions: adversarially trained MNIST models at eps 0.3 (Wong et al.'s CNN and
# recipe: FGSM-RS, PGD, TRADES), their AutoAttack evaluation, the four-run table plain / DP-SGD /
# adversarial / DP + adversarial, and an FGSM-RS CIFAR-10 model at 8/255.
#
#   bash scripts/experiments/robust_recipes.sh [STEP...]   (default: every step, in order)
#
# Steps: mnist-fgsmrs mnist-pgd mnist-trades mnist-eval four four-report cifar-fgsmrs cifar-eval.
# Each training step skips a finished run (RUN/model.pt) and otherwise resumes it; evaluations
# reuse RUN/robustness/ (fool report robustness), so the script can be rerun after an interruption.
# Everything lands in runs/at/ and outputs/robust/; logs in runs/at/*.log.
set -euo pipefail
cd "$(dirname "$0")/../.."
FOOL=${FOOL:-target/release/fool}
mkdir -p runs/at outputs/robust

# Wong et al.'s MNIST recipe: their CNN, Adam with the one-cycle rate up to 5e-3, batch 100.
WONG=(--dataset mnist --arch wong-cnn --optimizer adam --lr 5e-3 --schedule cyclic --batch 100 --samples 0)

train() { # NAME ARGS...
  local name=$1; shift
  if [[ -f runs/at/$name/model.pt ]]; then echo "$name: done"; return; fi
  local resume=()
  [[ -d runs/at/$name/state ]] && resume=(--resume)
  echo "$name: training ($(date -u +%H:%M))${resume:+, resumed}"
  "$FOOL" train "$@" "${resume[@]}" --out "runs/at/$name" >>"runs/at/$name.log" 2>&1 || { tail -3 "runs/at/$name.log"; return 1; }
  tail -2 "runs/at/$name.log" | head -1
}

step_mnist-fgsmrs() { train mnist-fgsmrs "${WONG[@]}" --epochs 10 --adversarial fgsm-rs --adv-eps 0.3 --adv-eval 1000 --seed 0; }
step_mnist-pgd() { train mnist-pgd "${WONG[@]}" --epochs 10 --adversarial pgd --adv-eps 0.3 --adv-steps 10 --adv-warmup 4 --adv-eval 1000 --seed 0; }
step_mnist-trades() { train mnist-trades "${WONG[@]}" --epochs 10 --adversarial trades --adv-eps 0.3 --adv-steps 10 --beta 6 --adv-eval 1000 --seed 0; }
step_mnist-eval() {
  "$FOOL" report robustness runs/at/mnist-fgsmrs runs/at/mnist-pgd runs/at/mnist-trades \
    --eps 0.3 --examples 1000 --out outputs/robust/mnist-eps0.3 | tee runs/at/mnist-eval.txt
}

# The four-run table: 2,000 training examples (so that membership leaks measurably), audited
# against as many test images, evaluated at eps 0.1.
FOUR=(--dataset mnist --arch wong-cnn --limit 2000 --batch 100 --epochs 30 --samples 0
      --audit-every 30 --audit-examples 2000 --seed 0 --optimizer adam --lr 1e-3)
AT=(--adversarial pgd --adv-eps 0.1 --adv-steps 7 --adv-eval 1000)
DP=(--dp --target-epsilon 3)
step_four() {
  train four-plain "${FOUR[@]}"
  train four-at "${FOUR[@]}" "${AT[@]}"
  train four-dp "${FOUR[@]}" "${DP[@]}"
  train four-dp-at "${FOUR[@]}" "${DP[@]}" "${AT[@]}"
}
step_four-report() {
  "$FOOL" report robustness runs/at/four-plain runs/at/four-dp runs/at/four-at runs/at/four-dp-at \
    --eps 0.1 --examples 1000 --out outputs/robust/mnist-four | tee runs/at/four-report.txt
}

# CIFAR-10 at 8/255: FGSM-RS (Wong et al.) on Papernot et al.'s CNN with ReLU, their 15-epoch cyclic
# rate (about 40 min on 2 cores).
step_cifar-fgsmrs() {
  train cifar-fgsmrs --dataset cifar10 --arch cifar-cnn:act=relu --optimizer adam --lr 2e-3 \
    --schedule cyclic --batch 128 --epochs 15 --augment crop-flip --samples 0 \
    --adversarial fgsm-rs --adv-eps 8/255 --adv-eval 500 --seed 0
}
step_cifar-eval() {
  "$FOOL" report robustness runs/at/cifar-fgsmrs --eps 8/255 --examples 1000 \
    --out outputs/robust/cifar-eps8 | tee runs/at/cifar-eval.txt
}

steps=("$@")
[[ ${#steps[@]} -eq 0 ]] && steps=(mnist-fgsmrs mnist-pgd mnist-trades mnist-eval four four-report cifar-fgsmrs cifar-eval)
for s in "${steps[@]}"; do "step_$s"; done
