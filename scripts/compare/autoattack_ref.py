#!/usr/bin/env python3
"""fool's AutoAttack against the reference on the same TorchScript model, images and eps.

Runs the original AutoAttack (Croce & Hein's `autoattack` package, fra31/auto-attack, from a
local checkout given with --autoattack-dir: `AutoAttack(version='standard')`, APGD-CE, APGD-T,
FAB-T, Square 5000 queries, 100 iterations each) and `fool bench DATASET:test[a:b] --attack
autoattack` (and `pgd`) in one run, with the same number of threads, and prints:

- each one's robust accuracy with its 95% Wilson interval, and whether fool's lies inside the
  reference's interval (the agreement the issue asks for);
- the per-image agreement (robust under both, broken by both, broken by one only);
- fool's PGD-20 robust accuracy (AutoAttack must never be weaker) and the wall-clock ratio.

With --torchattacks it also runs torchattacks 3.5.1's `AutoAttack(version='standard')`, whose
APGD, APGD-T and FAB run 10 iterations (its classes' default; the standard version runs 100) and
whose Square rescales its schedule: a weaker, faster variant, printed for reference only.

    git clone https://github.com/fra31/auto-attack /tmp/auto-attack
    .venv/bin/python scripts/compare/autoattack_ref.py --model runs/at/mnist-fgsmrs/model.pt \\
        --dataset mnist --rows 0:1000 --eps 0.3 --autoattack-dir /tmp/auto-attack

Neither reference is a dependency of fool: the checkout is used in place, torchattacks is
installed by hand (`.venv/bin/pip install torchattacks==3.5.1`).
"""
import argparse
import json
import math
import os
import pickle
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

from at_mnist_reference import idx  # the IDX reader (same folder)


def wilson(k, n, z=1.959964):
    if n == 0:
        return 0.0, 1.0
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return max(0.0, c - h), min(1.0, c + h)


def test_split(name, data):
    """The test split as (N,3,H,W) float pixels in [0,1] and int64 labels, as fool reads it."""
    if name == "mnist":
        x = idx(os.path.join(data, "t10k-images-idx3-ubyte.gz"))[:, None]
        y = idx(os.path.join(data, "t10k-labels-idx1-ubyte.gz"))
        x = np.repeat(x, 3, axis=1)
    else:
        binary = os.path.join(data, "test_batch.bin")
        if os.path.exists(binary):  # the binary version fool reads: label byte + 3072 pixels
            raw = np.fromfile(binary, dtype=np.uint8).reshape(-1, 3073)
            x, y = raw[:, 1:].reshape(-1, 3, 32, 32), raw[:, 0]
        else:  # the Python version
            with open(os.path.join(data, "cifar-10-batches-py", "test_batch"), "rb") as f:
                d = pickle.load(f, encoding="bytes")
            x = np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
            y = np.asarray(d[b"labels"])
    return torch.from_numpy(x.copy()).float() / 255, torch.from_numpy(y.astype(np.int64))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--dataset", choices=["mnist", "cifar10"], required=True)
    p.add_argument("--data", help="data set folder [assets/DATASET]")
    p.add_argument("--rows", default="0:1000", help="test rows a:b")
    p.add_argument("--eps", required=True, help="L-inf eps, e.g. 0.3 or 8/255")
    p.add_argument("--batch", type=int, default=250)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--fool", default="target/release/fool")
    p.add_argument("--out", help="fool's output folder [a temporary one]")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--autoattack-dir", required=True, help="a checkout of fra31/auto-attack")
    p.add_argument("--torchattacks", action="store_true", help="also run torchattacks' AutoAttack")
    p.add_argument("--nominal", action="store_true",
                   help="also run the reference at the nominal eps (not on the 8-bit grid)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    eps_nominal = float(a.eps.split("/")[0]) / float(a.eps.split("/")[1]) if "/" in a.eps else float(a.eps)
    # fool's images are 8-bit: the largest change within eps is floor(eps*255) levels. The
    # reference, on continuous values, runs at that budget (0.3 -> 76/255 = 0.298), the same
    # set of perturbations up to rounding; --nominal also runs it at the eps as given.
    eps = math.floor(eps_nominal * 255 + 1e-6) / 255
    lo, hi = (int(v) for v in a.rows.split(":"))
    data = a.data or os.path.join("assets", a.dataset)
    x, y = test_split(a.dataset, data)
    x, y = x[lo:hi], y[lo:hi]
    n = len(y)

    sys.path.insert(0, a.autoattack_dir)
    from autoattack import AutoAttack

    model = torch.jit.load(a.model).eval()
    with torch.no_grad():
        clean = torch.cat([model(x[i:i + a.batch]).argmax(1) for i in range(0, n, a.batch)]) == y
    aa = AutoAttack(model, norm="Linf", eps=eps, version="standard", device="cpu", seed=a.seed, verbose=False)
    t0 = time.perf_counter()
    adv = aa.run_standard_evaluation(x, y, bs=a.batch)
    ref_s = time.perf_counter() - t0
    assert (adv - x).abs().max() <= eps + 1e-6
    with torch.no_grad():
        ref_robust = torch.cat([model(adv[i:i + a.batch]).argmax(1) for i in range(0, n, a.batch)]) == y
    ref_robust = ref_robust.numpy()
    nominal_robust = None
    if a.nominal and eps != eps_nominal:
        aa_nom = AutoAttack(model, norm="Linf", eps=eps_nominal, version="standard", device="cpu",
                            seed=a.seed, verbose=False)
        adv_nom = aa_nom.run_standard_evaluation(x, y, bs=a.batch)
        with torch.no_grad():
            nominal_robust = (torch.cat([model(adv_nom[i:i + a.batch]).argmax(1)
                                         for i in range(0, n, a.batch)]) == y).numpy()
    ta_robust, ta_s = None, None
    if a.torchattacks:
        import torchattacks

        ta = torchattacks.AutoAttack(model, norm="Linf", eps=eps, version="standard", n_classes=10, seed=a.seed)
        t0 = time.perf_counter()
        ta_robust = []
        for i in range(0, n, a.batch):
            xb, yb = x[i:i + a.batch], y[i:i + a.batch]
            with torch.no_grad():
                ta_robust.append(model(ta(xb, yb)).argmax(1) == yb)
        ta_s = time.perf_counter() - t0
        ta_robust = torch.cat(ta_robust).numpy()

    out = a.out or tempfile.mkdtemp(prefix="fool-aa-")
    cmd = [a.fool, "bench", f"{a.dataset}:test[{lo}:{hi}]", "--model", a.model, "--attack", "autoattack",
           "--eps", a.eps, "--batch", str(a.batch), "--seed", str(a.seed), "--out", out, "--quiet"]
    if a.data:
        cmd += ["--data", a.data]
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    fool_s = time.perf_counter() - t0
    pgd_out = out + "-pgd"
    cmd_pgd = cmd[:]
    cmd_pgd[cmd_pgd.index("autoattack")] = "pgd"
    cmd_pgd[cmd_pgd.index(out)] = pgd_out
    subprocess.run(cmd_pgd, check=True, env=env, stdout=subprocess.DEVNULL)

    def robust_of(folder):
        r = np.zeros(n, dtype=bool)
        with open(os.path.join(folder, "results.jsonl")) as f:
            for line in f:
                row = json.loads(line)
                r[int(row["file"].split("/")[1]) - lo] = row["adv_pred"] == row["label"]
        return r

    fool_robust = robust_of(out)
    pgd_robust = robust_of(pgd_out)
    with open(os.path.join(out, "summary.json")) as f:
        stages = json.load(f)[0]["cascade"]["stages"]

    def line(name, r):
        k = int(r.sum())
        l, h = wilson(k, n)
        return k, l, h, f"{name:<28} robust accuracy {100 * k / n:6.2f}% [95% CI {100 * l:.2f}, {100 * h:.2f}]"

    print(f"{a.model}, {a.dataset} test[{lo}:{hi}] ({n} images), L-inf eps {a.eps} "
          f"(8-bit: {round(eps * 255)}/255 = {eps:.5f}), {a.threads} threads")
    print(f"clean accuracy {100 * clean.float().mean():.2f}%")
    k_ref, l_ref, h_ref, s = line("AutoAttack (original)", ref_robust)
    print(s)
    if nominal_robust is not None:
        print(line(f"AutoAttack at eps {eps_nominal:.5f}", nominal_robust)[3] + " (nominal eps, off the 8-bit grid)")
    if ta_robust is not None:
        print(line("torchattacks AutoAttack", ta_robust)[3] + f" ({ta_s:.1f} s; 10 iterations per attack)")
    k_fool, _, _, s = line("fool autoattack", fool_robust)
    print(s)
    print(line("fool pgd (20 steps)", pgd_robust)[3])
    print("fool's cascade: " + ", ".join(f"{st['stage']} -{st['broken']} -> {100 * st['robust_accuracy']:.2f}%"
                                         for st in stages))
    inside = l_ref <= k_fool / n <= h_ref
    print(f"fool's robust accuracy {'inside' if inside else 'OUTSIDE'} the reference's 95% interval")
    print(f"never weaker than PGD-20: {'yes' if k_fool <= int(pgd_robust.sum()) else 'NO'}")
    both_r = int((fool_robust & ref_robust).sum())
    both_b = int((~fool_robust & ~ref_robust).sum())
    only_f = int((~fool_robust & ref_robust).sum())
    only_r = int((fool_robust & ~ref_robust).sum())
    print(f"per image: {both_r} robust under both, {both_b} broken by both, {only_f} broken by fool only, "
          f"{only_r} by the reference only; agreement {100 * (both_r + both_b) / n:.1f}%")
    print(f"time: AutoAttack {ref_s:.1f} s, fool {fool_s:.1f} s (whole CLI run), ratio {ref_s / fool_s:.2f}x")
    sys.exit(0 if inside else 1)


if __name__ == "__main__":
    main()
