#!/usr/bin/env python3
"""DP-SGD training throughput: fool vs Opacus, same work, one run.

Both train the TF-Privacy/Opacus MNIST CNN (conv 16@8x8/2 pad 3, max-pool 2/1, conv 32@4x4/2,
max-pool 2/1, dense 32, dense 10, ReLU) on the 60,000 MNIST training images for one epoch of
Poisson-sampled batches (expected batch 256, q = 256/60000, 234 steps), clip C = 1.0, noise
σ = 1.1, SGD lr 0.1 momentum 0.9, on the CPU with the same number of threads. Each side is
also run without DP (fixed shuffled batches of 256, 235 steps) to give its DP overhead.

Measured: training examples per second over the training steps only (data already in memory,
no evaluation), the median of --repeats runs of each, and each process's peak RSS
(/usr/bin/time). fool's number is the `examples_per_second` it records for the epoch in
metadata.json; Opacus's is timed around its training loop the same way.

Equal footing by default: the PyTorch/Opacus workers run with glibc's malloc thresholds at 1 GiB
(MALLOC_MMAP_THRESHOLD_/MALLOC_TRIM_THRESHOLD_, what fool sets for itself at start-up) and the same
threads (OMP_NUM_THREADS and torch.set_num_threads); Opacus is also run with glibc's defaults (as users
run it), printed beside and labelled. Medians are quoted with min–max.

Per step, fool computes: the forward with per-layer activations kept, per-example gradient norms by
layer (no per-example gradient tensors), the clip factors, one weighted backward, Gaussian noise, the
SGD update. Opacus computes: the forward with hooks, per-example gradients per layer (grad_sample),
their norms, clipping, the sum, noise, the update.

Needs opacus in the project venv (`.venv/bin/pip install opacus==1.6.0`; not installed by
setup, benchmarks only) and a release build of fool. Usage:

    .venv/bin/python scripts/compare/bench_dp.py [--repeats 3] [--threads 2]
"""
import argparse
import gzip
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FOOL = os.path.join(ROOT, "target", "release", "fool")
MNIST = os.path.join(ROOT, "assets", "mnist")


def read_mnist():
    import numpy as np

    with gzip.open(os.path.join(MNIST, "train-images-idx3-ubyte.gz")) as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)
    with gzip.open(os.path.join(MNIST, "train-labels-idx1-ubyte.gz")) as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8)
    return x, y


def worker(mode, threads):
    """Train one epoch with PyTorch (+Opacus when mode == 'dp'); print examples/s as JSON."""
    import numpy as np
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    x, y = read_mnist()
    x = (torch.from_numpy(x.astype(np.float32) / 255.0) - 0.1307) / 0.3081
    y = torch.from_numpy(y.astype(np.int64))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 16, 8, 2, padding=3)
            self.conv2 = nn.Conv2d(16, 32, 4, 2)
            self.fc1 = nn.Linear(32 * 4 * 4, 32)
            self.fc2 = nn.Linear(32, 10)

        def forward(self, t):
            t = F.max_pool2d(F.relu(self.conv1(t)), 2, 1)
            t = F.max_pool2d(F.relu(self.conv2(t)), 2, 1)
            t = F.relu(self.fc1(t.flatten(1)))
            return self.fc2(t)

    model = Net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, y), batch_size=256, shuffle=True
    )
    if mode == "dp":
        from opacus import PrivacyEngine

        engine = PrivacyEngine(accountant="rdp")
        model, opt, loader = engine.make_private(
            module=model,
            optimizer=opt,
            data_loader=loader,
            noise_multiplier=1.1,
            max_grad_norm=1.0,
            poisson_sampling=True,
        )
    model.train()
    n = 0
    start = time.perf_counter()
    for xb, yb in loader:
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(xb), yb)
        loss.backward()
        opt.step()
        n += len(yb)
    secs = time.perf_counter() - start
    out = {"examples": n, "seconds": secs, "examples_per_second": n / secs}
    if mode == "dp":
        out["epsilon"] = engine.get_epsilon(1e-5)
    print(json.dumps(out))


def timed(cmd, env=None):
    """Run cmd under /usr/bin/time; return (stdout, peak RSS in MiB)."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        full = ["/usr/bin/time", "-f", "%M", "-o", tf.name] + cmd
        r = subprocess.run(full, capture_output=True, text=True, env=env)
        if r.returncode != 0:
            sys.exit(f"failed: {' '.join(cmd)}\n{r.stderr[-2000:]}")
        return r.stdout, int(tf.read().split()[-1]) / 1024.0


def run_fool(dp, threads):
    out = tempfile.mkdtemp(prefix="bench-dp-")
    try:
        cmd = [FOOL, "train", "--dataset", "mnist", "--arch", "cnn", "--epochs", "1",
               "--batch", "256", "--lr", "0.1", "--momentum", "0.9", "--samples", "0",
               "--device", "cpu", "--json", "--quiet", "--out", os.path.join(out, "run")]
        if dp:
            cmd += ["--dp", "--noise", "1.1", "--clip", "1.0", "--delta", "1e-5"]
        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
        stdout, rss = timed(cmd, env)
        meta = json.loads(stdout)
        rec = meta["history"][0]
        return rec["examples_per_second"], rss, meta.get("epsilon")
    finally:
        shutil.rmtree(out, ignore_errors=True)


# glibc's allocator as fool sets it for itself (src/device.rs: tune_cpu_allocator).
EQUAL_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(1 << 30), "MALLOC_TRIM_THRESHOLD_": str(1 << 30)}


def run_torch(mode, threads, allocator="equal"):
    env = {k: v for k, v in os.environ.items() if k not in EQUAL_MALLOC and k != "GLIBC_TUNABLES"}
    env["OMP_NUM_THREADS"] = str(threads)
    if allocator == "equal":
        env.update(EQUAL_MALLOC)
    stdout, rss = timed([sys.executable, __file__, "--worker", mode, "--threads", str(threads)], env)
    d = json.loads(stdout.strip().splitlines()[-1])
    return d["examples_per_second"], rss, d.get("epsilon")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--worker", choices=["dp", "plain"])
    a = ap.parse_args()
    if a.worker:
        return worker(a.worker, a.threads)
    import opacus
    import torch

    print(f"torch {torch.__version__}, opacus {opacus.__version__}, threads {a.threads}, "
          f"repeats {a.repeats}, cpu: {os.cpu_count()} logical")
    runs = [
        ("fool dp", lambda: run_fool(True, a.threads)),
        ("opacus dp", lambda: run_torch("dp", a.threads)),
        ("fool plain", lambda: run_fool(False, a.threads)),
        ("torch plain", lambda: run_torch("plain", a.threads)),
        ("opacus dp (glibc defaults)", lambda: run_torch("dp", a.threads, "users")),
    ]
    res = {name: [] for name, _ in runs}
    # Interleave the runs so slow drifts of the machine hit all four alike.
    for r in range(a.repeats):
        for name, fn in runs:
            eps_s, rss, eps = fn()
            res[name].append((eps_s, rss, eps))
            print(f"  run {r + 1} {name:26s} {eps_s:9.1f} examples/s  peak RSS {rss:7.1f} MiB"
                  + (f"  ε={eps:.3f}" if eps else ""), flush=True)
    med = {k: statistics.median(v[0] for v in vals) for k, vals in res.items()}
    rss = {k: statistics.median(v[1] for v in vals) for k, vals in res.items()}
    print("\nmedian examples/s [min–max] (training steps only):")
    for k, vals in res.items():
        xs = [v[0] for v in vals]
        print(f"  {k:26s} {med[k]:9.1f} [{min(xs):.1f}–{max(xs):.1f}]   peak RSS {rss[k]:7.1f} MiB")
    print(f"\nDP-SGD throughput ratio fool/opacus, equal footing: {med['fool dp'] / med['opacus dp']:.2f}")
    print(f"DP-SGD ratio as users run them (Opacus with glibc's defaults): "
          f"{med['fool dp'] / med['opacus dp (glibc defaults)']:.2f}")
    print(f"non-private ratio fool/torch:        {med['fool plain'] / med['torch plain']:.2f}")
    print(f"DP overhead fool (plain/dp):         {med['fool plain'] / med['fool dp']:.2f}x")
    print(f"DP overhead opacus (plain/dp):       {med['torch plain'] / med['opacus dp']:.2f}x")


if __name__ == "__main__":
    main()
