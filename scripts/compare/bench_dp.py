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

Scaling (--scaling batch|model): DP-SGD throughput of fool and Opacus (equal allocator) and fool's
plain step, vs the expected batch size (MNIST CNN, 64 … 4096, one epoch over the 60,000 images) or vs
the model at a fixed batch (MNIST CNN b256 one epoch; CIFAR-10 small-cnn:conv=2 b256 over the first
10,240 images; ResNet-18/GroupNorm b32 over the first 512 CIFAR-10 images): a table, JSON, and with
--chart STEM a chart (STEM.svg, STEM.png). Both sides process each whole batch at once (fool with
--max-physical-batch equal to the batch; Opacus without a memory manager) and run the same network definitions (the PyTorch
ones below mirror src/nets: same layers, GroupNorm with min(32, C) groups).

Needs opacus in the project venv (`.venv/bin/pip install opacus==1.6.0 torch==2.11.0`, the pin keeps
pip from upgrading the libtorch fool links; not installed by
setup, benchmarks only) and a release build of fool. Usage:

    .venv/bin/python scripts/compare/bench_dp.py [--repeats 3] [--threads 2]
    .venv/bin/python scripts/compare/bench_dp.py --scaling batch --chart docs/bench-dp-batch
    .venv/bin/python scripts/compare/bench_dp.py --scaling model --chart docs/bench-dp-model
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
CIFAR = os.path.join(ROOT, "assets", "cifar10")
# --scaling model: (fool --arch, dataset, batch, training examples used)
MODELS = [("cnn", "mnist", 256, 60000), ("small-cnn:conv=2", "cifar10", 256, 10240),
          ("resnet18", "cifar10", 32, 512)]


def read_mnist():
    import numpy as np

    with gzip.open(os.path.join(MNIST, "train-images-idx3-ubyte.gz")) as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)
    with gzip.open(os.path.join(MNIST, "train-labels-idx1-ubyte.gz")) as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8)
    return x, y


def read_cifar():
    import numpy as np

    raw = np.concatenate([np.fromfile(os.path.join(CIFAR, f"data_batch_{i}.bin"), np.uint8).reshape(-1, 3073)
                          for i in range(1, 6)])
    return raw[:, 1:].reshape(-1, 3, 32, 32), raw[:, 0]


def torch_net(arch):
    """The PyTorch twin of fool's src/nets architecture `arch`."""
    import torch.nn as nn
    import torch.nn.functional as F

    class Cnn(nn.Module):
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

    class SmallCnn(nn.Module):  # small-cnn:conv=2 on 3x32x32
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 32, 3)
            self.conv2 = nn.Conv2d(32, 32, 3)
            self.fc1 = nn.Linear(32 * 6 * 6, 64)
            self.fc2 = nn.Linear(64, 10)

        def forward(self, t):
            t = F.max_pool2d(F.relu(self.conv1(t)), 2, 2)
            t = F.max_pool2d(F.relu(self.conv2(t)), 2, 2)
            return self.fc2(F.relu(self.fc1(t.flatten(1))))

    def gn(c):
        return nn.GroupNorm(min(32, c), c)

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.c1, self.n1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), gn(cout)
            self.c2, self.n2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), gn(cout)
            self.down = None
            if stride != 1 or cin != cout:
                self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, 0, bias=False), gn(cout))

        def forward(self, h):
            y = F.relu(self.n1(self.c1(h)))
            y = self.n2(self.c2(y))
            return F.relu(y + (self.down(h) if self.down is not None else h))

    class Resnet18(nn.Module):  # 3x3 stem, no max-pool, GroupNorm
        def __init__(self):
            super().__init__()
            self.stem, self.norm = nn.Conv2d(3, 64, 3, 1, 1, bias=False), gn(64)
            blocks, cin = [], 64
            for stage, cout in enumerate([64, 128, 256, 512]):
                for b in range(2):
                    blocks.append(Block(cin, cout, 2 if stage > 0 and b == 0 else 1))
                    cin = cout
            self.blocks = nn.Sequential(*blocks)
            self.fc = nn.Linear(512, 10)

        def forward(self, t):
            h = self.blocks(F.relu(self.norm(self.stem(t))))
            return self.fc(h.mean((2, 3)))

    return {"cnn": Cnn, "small-cnn:conv=2": SmallCnn, "resnet18": Resnet18}[arch]()


def worker(mode, threads, arch="cnn", batch=256, limit=60000):
    """Train one epoch with PyTorch (+Opacus when mode == 'dp'); print examples/s as JSON."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    if arch == "cnn":
        x, y = read_mnist()
        x = (torch.from_numpy(x[:limit].astype(np.float32) / 255.0) - 0.1307) / 0.3081
    else:
        x, y = read_cifar()
        x = (torch.from_numpy(x[:limit].astype(np.float32) / 255.0) - 0.5) / 0.25
    y = torch.from_numpy(y[:limit].astype(np.int64))
    model = torch_net(arch)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, y), batch_size=batch, shuffle=True
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


def run_fool(dp, threads, arch="cnn", batch=256, limit=60000):
    out = tempfile.mkdtemp(prefix="bench-dp-")
    try:
        dataset = "mnist" if arch == "cnn" else "cifar10"
        cmd = [FOOL, "train", "--dataset", dataset, "--arch", arch, "--epochs", "1",
               "--batch", str(batch), "--lr", "0.1", "--momentum", "0.9", "--samples", "0",
               "--limit", str(limit), "--max-physical-batch", str(batch),
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


def run_torch(mode, threads, allocator="equal", arch="cnn", batch=256, limit=60000):
    env = {k: v for k, v in os.environ.items() if k not in EQUAL_MALLOC and k != "GLIBC_TUNABLES"}
    env["OMP_NUM_THREADS"] = str(threads)
    if allocator == "equal":
        env.update(EQUAL_MALLOC)
    stdout, rss = timed([sys.executable, __file__, "--worker", mode, "--threads", str(threads), "--arch", arch,
                         "--batch", str(batch), "--limit", str(limit)], env)
    d = json.loads(stdout.strip().splitlines()[-1])
    return d["examples_per_second"], rss, d.get("epsilon")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--worker", choices=["dp", "plain"])
    ap.add_argument("--arch", default="cnn", help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, default=256, help=argparse.SUPPRESS)
    ap.add_argument("--limit", type=int, default=60000, help=argparse.SUPPRESS)
    ap.add_argument("--scaling", choices=["batch", "model"])
    ap.add_argument("--batches", default="64,256,1024,4096", help="--scaling batch: expected batch sizes")
    ap.add_argument("--chart", help="--scaling: write the chart to CHART.svg and CHART.png")
    a = ap.parse_args()
    if a.worker:
        return worker(a.worker, a.threads, a.arch, a.batch, a.limit)
    if a.scaling:
        return scaling(a)
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


def scaling(a):
    """DP-SGD throughput of fool and Opacus (and fool's plain step) vs batch size or model."""
    import opacus
    import torch

    print(f"torch {torch.__version__}, opacus {opacus.__version__}, threads {a.threads}, "
          f"repeats {a.repeats}, cpu: {os.cpu_count()} logical; scaling by {a.scaling}")
    if a.scaling == "batch":
        cases = [("cnn", int(b), 60000) for b in a.batches.split(",")]
    else:
        cases = [(arch, b, lim) for arch, _, b, lim in MODELS]
    rows = []
    for arch, b, lim in cases:
        runs = [("fool dp", lambda: run_fool(True, a.threads, arch, b, lim)),
                ("opacus dp", lambda: run_torch("dp", a.threads, "equal", arch, b, lim)),
                ("fool plain", lambda: run_fool(False, a.threads, arch, b, lim))]
        res = {name: [] for name, _ in runs}
        for r in range(a.repeats):
            for name, fn in runs:
                eps_s, rss, _ = fn()
                res[name].append((eps_s, rss))
                print(f"  {arch} b{b} run {r + 1} {name:10s} {eps_s:9.1f} examples/s  peak RSS {rss:7.1f} MiB",
                      flush=True)
        med = {k: statistics.median(v[0] for v in vals) for k, vals in res.items()}
        rss = {k: statistics.median(v[1] for v in vals) for k, vals in res.items()}
        rows.append({"arch": arch, "batch": b, "examples": lim, "examples_per_s": med, "peak_rss_mib": rss,
                     "runs": res})
    print(f"\nDP-SGD examples/s, median of {a.repeats} (equal allocator, {a.threads} threads), peak RSS MiB")
    print("| model | batch | fool DP | Opacus DP | fool / Opacus | fool plain | fool DP overhead | "
          "peak RSS fool / Opacus |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        m, rs = r["examples_per_s"], r["peak_rss_mib"]
        print(f"| {r['arch']} | {r['batch']} | {m['fool dp']:.1f} | {m['opacus dp']:.1f} | "
              f"{m['fool dp'] / m['opacus dp']:.2f} | {m['fool plain']:.1f} | "
              f"{m['fool plain'] / m['fool dp']:.2f}x | {rs['fool dp']:.0f} / {rs['opacus dp']:.0f} |")
    if a.chart:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from chart import line_chart

        key = "batch" if a.scaling == "batch" else "arch"
        names = ["fool dp", "opacus dp", "fool plain"]
        if a.scaling == "batch":
            series = {k: [(r["batch"], r["examples_per_s"][k]) for r in rows] for k in names}
            line_chart(a.chart, f"DP-SGD, MNIST CNN, CPU, {a.threads} threads", "expected batch size",
                       "examples/s", series, dashed=("fool plain",))
        else:
            series = {"fool / Opacus (DP)": [(r[key], r["examples_per_s"]["fool dp"] / r["examples_per_s"]["opacus dp"])
                                             for r in rows],
                      "fool DP overhead": [(r[key], r["examples_per_s"]["fool plain"] / r["examples_per_s"]["fool dp"])
                                           for r in rows]}
            line_chart(a.chart, f"DP-SGD by model, CPU, {a.threads} threads", "model (batch)",
                       "ratio", series, dashed=("fool DP overhead",))
        print(f"wrote {a.chart}.svg, {a.chart}.png")
    print(json.dumps({"scaling": a.scaling, "threads": a.threads, "rows": rows}))


if __name__ == "__main__":
    main()
