#!/usr/bin/env python3
"""Adversarial training on MNIST in plain PyTorch, as Wong et al. 2020 ("Fast is better than
free", locuslab/fast_adversarial MNIST) describe it: their CNN (conv 16@4x4 s2 p1, conv 32@4x4
s2 p1, dense 100, dense 10), Adam with a one-cycle rate (0 -> 5e-3 at 2/5 of the run -> 0),
batch 100, eps 0.3, and either FGSM from a uniform random start with step 1.25*eps
(`--attack fgsm`, their default) or PGD-k from a random start (`--attack pgd`).

The reference loop for `fool train --arch wong-cnn --optimizer adam --lr 5e-3 --schedule cyclic
--batch 100 --adversarial fgsm-rs|pgd --adv-eps 0.3`: it prints per-epoch time and examples/s
(the adversarial-training throughput comparison) and the clean and PGD robust accuracy of the
result, and saves the model as TorchScript taking fool's input, (N,3,28,28) pixels in [0,1]
(the first channel is used), with a fool model card beside it, so that `fool bench
mnist:test[0:1000] --model OUT.pt --attack autoattack` and `scripts/compare/autoattack_ref.py`
evaluate the same network.

    .venv/bin/python scripts/compare/at_mnist_reference.py --out runs/at/ref-fgsm.pt
"""
import argparse
import gzip
import json
import os
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def mnist(data, split):
    pre = "train" if split == "train" else "t10k"
    x = idx(os.path.join(data, f"{pre}-images-idx3-ubyte.gz"))
    y = idx(os.path.join(data, f"{pre}-labels-idx1-ubyte.gz"))
    return torch.from_numpy(x.copy()).float().div(255).unsqueeze(1), torch.from_numpy(y.astype(np.int64))


def net():
    return nn.Sequential(
        nn.Conv2d(1, 16, 4, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 4, stride=2, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 100), nn.ReLU(), nn.Linear(100, 10))


class FoolInput(nn.Module):
    """(N,3,H,W) pixels -> the network on the first channel (fool's grey-image input)."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x[:, :1])


def pgd(model, x, y, eps, alpha, iters, restarts=1):
    """L-inf PGD from a uniform random start, the perturbation kept in the ball and the image in
    [0,1]; with restarts, the first one that fools each image is kept."""
    best = torch.zeros_like(x)
    for _ in range(restarts):
        d = torch.empty_like(x).uniform_(-eps, eps)
        d = torch.min(torch.max(d, -x), 1 - x)
        for _ in range(iters):
            d.requires_grad_(True)
            loss = F.cross_entropy(model(x + d), y)
            g, = torch.autograd.grad(loss, d)
            d = (d.detach() + alpha * g.sign()).clamp(-eps, eps)
            d = torch.min(torch.max(d, -x), 1 - x)
        with torch.no_grad():
            fooled = model(x + d).argmax(1) != y
            best[fooled] = d[fooled]
            if restarts == 1:
                best = d
    return best.detach()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="assets/mnist")
    p.add_argument("--attack", choices=["fgsm", "pgd"], default="fgsm")
    p.add_argument("--eps", type=float, default=0.3)
    p.add_argument("--alpha", type=float, help="step size [1.25*eps for fgsm, 0.01 for pgd]")
    p.add_argument("--iters", type=int, default=40, help="PGD training steps")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--eval", type=int, default=1000, help="test images for the robust accuracy")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--out", required=True)
    a = p.parse_args()
    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    alpha = a.alpha if a.alpha is not None else (1.25 * a.eps if a.attack == "fgsm" else 0.01)
    xtr, ytr = mnist(a.data, "train")
    xte, yte = mnist(a.data, "test")
    model = net()
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    per_epoch = len(ytr) // a.batch
    total = a.epochs * per_epoch
    step = 0
    for epoch in range(a.epochs):
        t0 = time.time()
        perm = torch.randperm(len(ytr))
        correct = 0
        for i in range(per_epoch):
            b = perm[i * a.batch:(i + 1) * a.batch]
            x, y = xtr[b], ytr[b]
            step += 1
            frac = step / total
            lr = a.lr * (frac / 0.4 if frac <= 0.4 else (1 - frac) / 0.6)
            for g in opt.param_groups:
                g["lr"] = lr
            if a.attack == "fgsm":
                d = pgd(model, x, y, a.eps, alpha, 1)
            else:
                d = pgd(model, x, y, a.eps, alpha, a.iters)
            out = model((x + d).clamp(0, 1))
            loss = F.cross_entropy(out, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            correct += (out.argmax(1) == y).sum().item()
        dt = time.time() - t0
        print(f"epoch {epoch + 1}/{a.epochs}: train acc {correct / (per_epoch * a.batch):.4f}, "
              f"{dt:.1f} s, {per_epoch * a.batch / dt:.0f} examples/s, lr {lr:.5f}", flush=True)
    model.eval()
    with torch.no_grad():
        clean = (model(xte).argmax(1) == yte).float().mean().item()
    x, y = xte[:a.eval], yte[:a.eval]
    d = pgd(model, x, y, a.eps, 2.5 * a.eps / 20, 20)
    with torch.no_grad():
        robust = (model(x + d).argmax(1) == y).float().mean().item()
    print(f"clean accuracy {clean:.4f} (10000 test images); PGD-20 robust accuracy {robust:.4f} "
          f"(first {a.eval} test images, eps {a.eps})")
    scripted = torch.jit.trace(FoolInput(model), torch.zeros(1, 3, 28, 28))
    tmp = a.out + ".tmp"
    scripted.save(tmp)
    os.replace(tmp, a.out)
    card = {"format": "fool-model/1", "size": 28, "resize": 28, "mean": [0.0] * 3,
            "std": [1.0] * 3, "labels": "", "input": "(N,3,28,28) pixels in [0,1]; the first channel is used"}
    with open(os.path.splitext(a.out)[0] + ".json", "w") as f:
        json.dump(card, f, indent=2)
    print(f"saved {a.out}")


if __name__ == "__main__":
    main()
