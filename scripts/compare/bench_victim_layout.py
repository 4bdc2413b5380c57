#!/usr/bin/env python3
"""Why fool freezes the victim's parameters and feeds it channels-last input.

Times one forward pass plus the gradient with respect to the input (one attack step) of the
TorchScript model in assets/model.pt on a batch of random images, in PyTorch eager, for:
default (parameters require grad, NCHW-contiguous input), parameters frozen, frozen plus
channels-last input; and a forward pass alone. Prints the median of --reps runs of each.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/compare/bench_victim_layout.py --batch 32 --threads 1
"""
import argparse
import time

import torch

ap = argparse.ArgumentParser()
ap.add_argument("--model", default="assets/model.pt")
ap.add_argument("--batch", type=int, default=32)
ap.add_argument("--size", type=int, default=224)
ap.add_argument("--threads", type=int, default=1)
ap.add_argument("--reps", type=int, default=3)
a = ap.parse_args()
torch.set_num_threads(a.threads)
m = torch.jit.load(a.model).eval()
x = torch.rand(a.batch, 3, a.size, a.size)


def step(inp):
    times = []
    for _ in range(a.reps):
        v = inp.clone().requires_grad_(True)
        t = time.perf_counter()
        out = m(v)
        torch.autograd.grad(out.logsumexp(1).sum(), [v])
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


print(f"default {step(x):.2f} s")
for p in m.parameters():
    p.requires_grad_(False)
print(f"frozen params {step(x):.2f} s")
print(f"frozen + channels_last {step(x.contiguous(memory_format=torch.channels_last)):.2f} s")
with torch.no_grad():
    t = time.perf_counter()
    m(x)
    print(f"forward only {time.perf_counter() - t:.2f} s")
