#!/usr/bin/env python3
"""PGD throughput: `fool bench` versus torchattacks on the same work, in one run.

Same TorchScript model (assets/model.pt), same images (the first N of
assets/imagenet-samples in file-name order, resize 256 / center crop 224), same batch
size, eps, step size (2.5·eps/steps, fool's default) and number of steps, random start,
no early stopping (fool: --no-early-stop; torchattacks never stops early), same number of
torch threads.

Equal footing by default: torchattacks runs in child processes, once with glibc's malloc thresholds
at 1 GiB (MALLOC_MMAP_THRESHOLD_/MALLOC_TRIM_THRESHOLD_, what fool sets for itself at start-up: the
headline ratio) and once with glibc's defaults (how users run it: printed beside, labelled), with the
same thread count as fool (OMP_NUM_THREADS and torch.set_num_threads). Reps are interleaved
(fool, peer equal, peer as users run it) and medians are quoted with their min–max.

What is timed: the attack loop only. Both sides are run with STEPS and with 1 step; the
difference divided by (STEPS − 1) is the cost of one PGD iteration over the N images, which
removes start-up, model loading, image decoding and the final evaluation from both sides.
Throughput = N / (cost of one iteration) image-steps per second. Repeated REPS times;
medians are reported.

    .venv/bin/pip install torchattacks==3.5.1      # benchmark-only dependency
    .venv/bin/python scripts/compare/bench_pgd.py [--n 64] [--batch 32] [--steps 10] [--reps 3]

Per iteration, fool computes: one forward on the 8-bit-rounded image (straight-through), one
input-gradient backward, the sign step, the exact projection onto the 8-bit L∞ ball and [0, 1], and
the per-image success/best-so-far bookkeeping. torchattacks computes: one forward, one input-gradient
backward, the sign step, a clamp to the eps ball and to [0, 1].
"""
import argparse
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import torch
import torchvision.transforms as T
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FOOL = os.path.join(ROOT, "target", "release", "fool")
DATA = os.path.join(ROOT, "assets", "imagenet-samples")
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def load_images(n):
    rows = sorted(csv.DictReader(open(os.path.join(DATA, "labels.csv"))), key=lambda r: r["file"])[:n]
    tf = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor()])
    x = torch.stack([tf(Image.open(os.path.join(DATA, r["file"])).convert("RGB")) for r in rows])
    y = torch.tensor([int(r["index"]) for r in rows])
    return x, y


def torchattacks_time(model, x, y, batch, eps, steps):
    import torchattacks

    alpha = 2.5 * eps / steps
    atk = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=True)
    t0 = time.perf_counter()
    for i in range(0, len(x), batch):
        atk(x[i:i + batch], y[i:i + batch])
    return time.perf_counter() - t0


def fool_time(n, batch, eps_str, steps, threads):
    with tempfile.TemporaryDirectory() as out:
        cmd = [FOOL, "bench", DATA, "--limit", str(n), "--batch", str(batch), "--attack", "pgd",
               "--steps", str(steps), "--eps", eps_str, "--defense", "none", "--no-early-stop",
               "--quiet", "--json", "--device", "cpu", "--out", out]
        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
        return time.perf_counter() - t0


# glibc's allocator as fool sets it for itself (src/device.rs: tune_cpu_allocator).
EQUAL_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(1 << 30), "MALLOC_TRIM_THRESHOLD_": str(1 << 30)}


def peer_child(a, eps):
    """One rep of torchattacks in this (child) process: prints the per-iteration seconds."""
    torch.set_num_threads(a.threads)
    model = torch.nn.Sequential(T.Normalize(MEAN, STD), torch.jit.load(os.path.join(ROOT, "assets", "model.pt")).eval())
    x, y = load_images(a.n)
    ta = (torchattacks_time(model, x, y, a.batch, eps, a.steps) - torchattacks_time(model, x, y, a.batch, eps, 1)) / (a.steps - 1)
    print(json.dumps({"per_step_s": ta}))


def peer_time(a, allocator):
    env = {k: v for k, v in os.environ.items() if k not in EQUAL_MALLOC and k != "GLIBC_TUNABLES"}
    env["OMP_NUM_THREADS"] = str(a.threads)
    if allocator == "equal":
        env.update(EQUAL_MALLOC)
    cmd = [sys.executable, os.path.abspath(__file__), "--peer-child", "--n", str(a.n), "--batch", str(a.batch),
           "--steps", str(a.steps), "--eps", a.eps, "--threads", str(a.threads)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])["per_step_s"]


def spread(v):
    return f"{statistics.median(v):.1f} [{min(v):.1f}–{max(v):.1f}]"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--eps", default="4/255")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--peer-child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    num, den = (a.eps.split("/") + ["1"])[:2]
    eps = float(num) / float(den)
    if a.peer_child:
        return peer_child(a, eps)
    import torchattacks

    print(f"machine: {cpu_model()}, {os.cpu_count()} cores; torch {torch.__version__}, "
          f"torchattacks {torchattacks.__version__}, threads {a.threads}")
    print(f"work: PGD, eps {a.eps}, step 2.5*eps/steps, random start, {a.steps} steps, "
          f"{a.n} ImageNet samples, batch {a.batch}, MobileNetV2 (assets/model.pt), CPU")
    per_step = {"fool": [], "torchattacks (equal allocator)": [], "torchattacks (as users run it)": []}
    for rep in range(a.reps):
        fo = (fool_time(a.n, a.batch, a.eps, a.steps, a.threads) - fool_time(a.n, a.batch, a.eps, 1, a.threads)) / (a.steps - 1)
        te = peer_time(a, "equal")
        tu = peer_time(a, "users")
        per_step["fool"].append(fo)
        per_step["torchattacks (equal allocator)"].append(te)
        per_step["torchattacks (as users run it)"].append(tu)
        print(f"rep {rep + 1}: one PGD iteration over {a.n} images: fool {fo:.3f} s, torchattacks {te:.3f} s "
              f"(equal allocator), {tu:.3f} s (glibc defaults)")
    rate = {k: [a.n / t for t in v] for k, v in per_step.items()}
    for k, v in rate.items():
        print(f"image-steps/s, median [min–max]: {k:<32} {spread(v)}")
    med = {k: statistics.median(v) for k, v in per_step.items()}
    eq = med["torchattacks (equal allocator)"] / med["fool"]
    users = med["torchattacks (as users run it)"] / med["fool"]
    print(f"throughput ratio fool/torchattacks, equal footing (same allocator, {a.threads} threads): {eq:.2f}")
    print(f"throughput ratio as users run them (torchattacks with glibc's defaults): {users:.2f}")
    print(json.dumps({"n": a.n, "batch": a.batch, "steps": a.steps, "eps": a.eps, "threads": a.threads,
                      "per_step_s": per_step, "ratio_equal": eq, "ratio_users": users}))

if __name__ == "__main__":
    sys.exit(main())
