#!/usr/bin/env python3
"""PGD / PGD-L2 / APGD throughput: `fool bench` versus torchattacks on the same work, in one run.

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

What is timed: the attack loop only. Both sides are run with STEPS and with LO steps (1; 2 for
APGD); the difference divided by (STEPS − LO) is the cost of one iteration over the N images,
which removes start-up, model loading, image decoding and the final evaluation from both sides.
Throughput = N / (cost of one iteration) image-steps per second. Repeated REPS times;
medians are reported.

Attacks (--attack): pgd (L∞, torchattacks.PGD), pgdl2 (fool --norm l2, torchattacks.PGDL2; eps
default 0.5, step 2.5·eps/steps on both), apgd (APGD-CE L∞, one restart, ρ 0.75,
torchattacks.APGD). --batches 1,8,32,128 runs the scaling sweep (N = max(batch, --n) images per
batch size) and writes a table, JSON and a chart (--chart STEM: STEM.svg and STEM.png).

    # benchmark-only dependency; the pins keep pip from upgrading torch (libtorch for tch 0.24):
    .venv/bin/pip install torchattacks==3.5.1 torch==2.11.0 torchvision==0.26.0
    .venv/bin/python scripts/compare/bench_pgd.py [--attack pgd] [--n 64] [--batch 32] [--steps 10] [--reps 3]
    .venv/bin/python scripts/compare/bench_pgd.py --batches 1,8,32,128 --n 32 --steps 6 --no-users \
        --chart docs/bench-pgd-scaling

Per iteration, fool computes: one forward on the 8-bit-rounded image (straight-through), one
input-gradient backward, the sign step, the exact projection onto the 8-bit L∞ ball and [0, 1], and
the per-image success/best-so-far bookkeeping. torchattacks computes: one forward, one input-gradient
backward, the sign step, a clamp to the eps ball and to [0, 1]. PGD-L2 is the same with the
gradient normalized per image and the projection onto the L2 ball (fool: exact on the 8-bit grid).
APGD, both sides: one forward, one input-gradient backward, the step and momentum, the projection,
the per-image loss/best-point bookkeeping and the checkpoint tests.
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


def peer_attack(model, attack, eps, steps):
    import torchattacks

    alpha = 2.5 * eps / steps
    if attack == "pgd":
        return torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=True)
    if attack == "pgdl2":
        return torchattacks.PGDL2(model, eps=eps, alpha=alpha, steps=steps, random_start=True)
    return torchattacks.APGD(model, norm="Linf", eps=eps, steps=steps, n_restarts=1, loss="ce", rho=0.75)


def torchattacks_time(model, x, y, batch, eps, steps, attack):
    atk = peer_attack(model, attack, eps, steps)
    t0 = time.perf_counter()
    for i in range(0, len(x), batch):
        atk(x[i:i + batch], y[i:i + batch])
    return time.perf_counter() - t0


FOOL_ATTACK = {"pgd": ("pgd", "linf"), "pgdl2": ("pgd", "l2"), "apgd": ("apgd", "linf")}


def lo_steps(attack):
    return 2 if attack == "apgd" else 1


def fool_time(n, batch, eps_str, steps, threads, attack):
    name, norm = FOOL_ATTACK[attack]
    with tempfile.TemporaryDirectory() as out:
        cmd = [FOOL, "bench", DATA, "--limit", str(n), "--batch", str(batch), "--attack", name,
               "--norm", norm, "--steps", str(steps), "--eps", eps_str, "--defense", "none",
               "--no-early-stop", "--quiet", "--json", "--device", "cpu", "--out", out]
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
    lo = lo_steps(a.attack)
    ta = (torchattacks_time(model, x, y, a.batch, eps, a.steps, a.attack)
          - torchattacks_time(model, x, y, a.batch, eps, lo, a.attack)) / (a.steps - lo)
    print(json.dumps({"per_step_s": ta}))


def peer_time(a, allocator):
    env = {k: v for k, v in os.environ.items() if k not in EQUAL_MALLOC and k != "GLIBC_TUNABLES"}
    env["OMP_NUM_THREADS"] = str(a.threads)
    if allocator == "equal":
        env.update(EQUAL_MALLOC)
    cmd = [sys.executable, os.path.abspath(__file__), "--peer-child", "--n", str(a.n), "--batch", str(a.batch),
           "--steps", str(a.steps), "--eps", a.eps, "--threads", str(a.threads), "--attack", a.attack]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])["per_step_s"]


def spread(v):
    return f"{statistics.median(v):.1f} [{min(v):.1f}–{max(v):.1f}]"


def measure(a):
    """REPS interleaved reps of fool and the peer on a.n images at a.batch: per-iteration seconds."""
    lo = lo_steps(a.attack)
    per_step = {"fool": [], "torchattacks (equal allocator)": []}
    if a.users:
        per_step["torchattacks (as users run it)"] = []
    for rep in range(a.reps):
        fo = (fool_time(a.n, a.batch, a.eps, a.steps, a.threads, a.attack)
              - fool_time(a.n, a.batch, a.eps, lo, a.threads, a.attack)) / (a.steps - lo)
        per_step["fool"].append(fo)
        per_step["torchattacks (equal allocator)"].append(peer_time(a, "equal"))
        line = (f"rep {rep + 1}: one {a.attack} iteration over {a.n} images, batch {a.batch}: fool {fo:.3f} s, "
                f"torchattacks {per_step['torchattacks (equal allocator)'][-1]:.3f} s (equal allocator)")
        if a.users:
            per_step["torchattacks (as users run it)"].append(peer_time(a, "users"))
            line += f", {per_step['torchattacks (as users run it)'][-1]:.3f} s (glibc defaults)"
        print(line, flush=True)
    return per_step


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--attack", choices=["pgd", "pgdl2", "apgd"], default="pgd")
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--batches", help="comma-separated batch sizes: the scaling sweep")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--eps", help="budget (default 4/255; pgdl2: 0.5)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--no-users", dest="users", action="store_false",
                    help="skip the peer run with glibc's defaults")
    ap.add_argument("--chart", help="scaling sweep: write the chart to CHART.svg and CHART.png")
    ap.add_argument("--peer-child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.eps is None:
        a.eps = "0.5" if a.attack == "pgdl2" else "4/255"
    num, den = (a.eps.split("/") + ["1"])[:2]
    eps = float(num) / float(den)
    if a.peer_child:
        return peer_child(a, eps)
    import torchattacks

    print(f"machine: {cpu_model()}, {os.cpu_count()} cores; torch {torch.__version__}, "
          f"torchattacks {torchattacks.__version__}, threads {a.threads}")
    if a.batches:
        return scaling(a)
    print(f"work: {a.attack}, eps {a.eps}, {a.steps} steps (timed: {a.steps} minus {lo_steps(a.attack)}), "
          f"{a.n} ImageNet samples, batch {a.batch}, MobileNetV2 (assets/model.pt), CPU")
    per_step = measure(a)
    rate = {k: [a.n / t for t in v] for k, v in per_step.items()}
    for k, v in rate.items():
        print(f"image-steps/s, median [min–max]: {k:<32} {spread(v)}")
    med = {k: statistics.median(v) for k, v in per_step.items()}
    eq = med["torchattacks (equal allocator)"] / med["fool"]
    print(f"throughput ratio fool/torchattacks, equal footing (same allocator, {a.threads} threads): {eq:.2f}")
    out = {"attack": a.attack, "n": a.n, "batch": a.batch, "steps": a.steps, "eps": a.eps, "threads": a.threads,
           "per_step_s": per_step, "ratio_equal": eq}
    if a.users:
        users = med["torchattacks (as users run it)"] / med["fool"]
        print(f"throughput ratio as users run them (torchattacks with glibc's defaults): {users:.2f}")
        out["ratio_users"] = users
    print(json.dumps(out))


def scaling(a):
    """Throughput vs batch size, fool and torchattacks (equal allocator): table, JSON, chart."""
    n0 = a.n
    rows = []
    for b in [int(v) for v in a.batches.split(",")]:
        a.batch, a.n = b, max(b, n0)
        print(f"-- batch {b}: {a.attack}, eps {a.eps}, {a.steps} steps, {a.n} images", flush=True)
        per_step = measure(a)
        med = {k: a.n / statistics.median(v) for k, v in per_step.items()}
        rows.append({"batch": b, "n": a.n, "per_step_s": per_step, "image_steps_per_s": med})
    print(f"\n{a.attack} throughput vs batch size (image-steps/s, median of {a.reps}; {a.threads} threads)")
    names = list(rows[0]["image_steps_per_s"])
    print("| batch | " + " | ".join(names) + " | fool / torchattacks (equal) |")
    print("|---" * (len(names) + 2) + "|")
    for r in rows:
        m = r["image_steps_per_s"]
        print(f"| {r['batch']} | " + " | ".join(f"{m[k]:.1f}" for k in names)
              + f" | {m['fool'] / m['torchattacks (equal allocator)']:.2f} |")
    if a.chart:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from chart import line_chart

        series = {k: [(r["batch"], r["image_steps_per_s"][k]) for r in rows] for k in names}
        line_chart(a.chart, f"{a.attack} on MobileNetV2, CPU, {a.threads} threads", "batch size",
                   "image-steps/s", series, dashed=("torchattacks (as users run it)",))
        print(f"wrote {a.chart}.svg, {a.chart}.png")
    print(json.dumps({"attack": a.attack, "steps": a.steps, "eps": a.eps, "threads": a.threads, "rows": rows}))

if __name__ == "__main__":
    sys.exit(main())
