"""One DP-SGD epoch on MNIST in Opacus with fool's defaults (σ 1.1, C 1, expected batch 256,
Poisson sampling) and the tutorial CNN: the test accuracy a PyTorch user gets, to put beside
`fool train --dataset mnist --dp --epochs 1`.

    .venv/bin/pip install opacus==1.6.0     # benchmarks only; not installed by set-up
    .venv/bin/python scripts/compare/dp_one_epoch.py --act tanh --lr 1.0 --momentum 0 --seeds 3

Accuracy only (no timing): torch uses 2 threads, as fool on this machine.
"""
import argparse
import gzip
import json
import os
import statistics

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MNIST = os.path.join(ROOT, "assets", "mnist")


def read(split):
    img = {"train": "train-images-idx3-ubyte.gz", "test": "t10k-images-idx3-ubyte.gz"}[split]
    lab = {"train": "train-labels-idx1-ubyte.gz", "test": "t10k-labels-idx1-ubyte.gz"}[split]
    with gzip.open(os.path.join(MNIST, img)) as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)
    with gzip.open(os.path.join(MNIST, lab)) as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8)
    x = (torch.from_numpy(x.astype(np.float32) / 255.0) - 0.1307) / 0.3081
    return x, torch.from_numpy(y.astype(np.int64))


class Cnn(nn.Module):
    """fool's `cnn` (the TF-Privacy / Opacus tutorial CNN)."""

    def __init__(self, act):
        super().__init__()
        self.act = torch.tanh if act == "tanh" else F.relu
        self.conv1 = nn.Conv2d(1, 16, 8, 2, padding=3)
        self.conv2 = nn.Conv2d(16, 32, 4, 2)
        self.fc1 = nn.Linear(32 * 4 * 4, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, t):
        t = F.max_pool2d(self.act(self.conv1(t)), 2, 1)
        t = F.max_pool2d(self.act(self.conv2(t)), 2, 1)
        return self.fc2(self.act(self.fc1(t.flatten(1))))


def one(seed, a, xtr, ytr, xte, yte):
    from opacus import PrivacyEngine

    torch.manual_seed(seed)
    model = Cnn(a.act)
    opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=a.momentum)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(xtr, ytr), batch_size=a.batch, shuffle=True)
    engine = PrivacyEngine(accountant="rdp")
    model, opt, loader = engine.make_private(
        module=model, optimizer=opt, data_loader=loader, noise_multiplier=a.noise,
        max_grad_norm=a.clip, poisson_sampling=True)
    model.train()
    for xb, yb in loader:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(xb), yb).backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        acc = (model(xte).argmax(1) == yte).float().mean().item()
    return acc, engine.get_epsilon(1e-5)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--act", default="relu")
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--noise", type=float, default=1.1)
    p.add_argument("--clip", type=float, default=1.0)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    xtr, ytr = read("train")
    xte, yte = read("test")
    accs = []
    for s in range(a.seeds):
        acc, eps = one(s, a, xtr, ytr, xte, yte)
        accs.append(acc)
        print(json.dumps({"seed": s, "test_accuracy": acc, "epsilon": eps}), flush=True)
    print(json.dumps({"settings": vars(a), "median": statistics.median(accs),
                      "min": min(accs), "max": max(accs)}))


if __name__ == "__main__":
    main()
