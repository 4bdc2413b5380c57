#!/usr/bin/env python3
"""fool's L2 Square Attack vs the original (fra31/auto-attack's `SquareAttack(norm='L2')`) on the
same TorchScript model (a `fool train` MNIST run: its model.json gives the normalization), the
same test images and budgets: success rate on the correctly classified images, both sides.

The reference needs a checkout of fra31/auto-attack (only its autoattack/*.py files; not committed
here): --autoattack-dir DIR with DIR/autoattack/square.py. fool runs as
`fool bench mnist:test[0:N] --attack square --norm l2 --steps Q` (Square's defaults: p_init 0.05,
the schedule rescaled to Q queries; the same settings are given to the reference). fool queries and
returns 8-bit images (the exact projection into the L2 ball); the reference works in floats.

    .venv/bin/python scripts/compare/square_l2_ref.py --autoattack-dir /tmp/auto-attack \
        --run RUN --n 64 --eps 1,2 --queries 1000
"""
import argparse, gzip, json, pathlib, subprocess, sys, tempfile

import numpy as np
import torch

ap = argparse.ArgumentParser()
ap.add_argument("--autoattack-dir", required=True)
ap.add_argument("--run", required=True, help="a fool train run folder (MNIST)")
ap.add_argument("--n", type=int, default=64)
ap.add_argument("--eps", default="1,2")
ap.add_argument("--queries", type=int, default=1000)
ap.add_argument("--p-init", type=float, default=0.05)
ap.add_argument("--data", default="assets/mnist")
ap.add_argument("--fool", default="target/release/fool")
a = ap.parse_args()
sys.path.insert(0, a.autoattack_dir)
from autoattack.square import SquareAttack  # noqa: E402

run = pathlib.Path(a.run)
m = torch.jit.load(str(run / "model.pt")).eval()
card = json.loads((run / "model.json").read_text())
mean = torch.tensor(card["mean"]).view(1, 3, 1, 1)
std = torch.tensor(card["std"]).view(1, 3, 1, 1)
f = lambda z: m((z - mean) / std)
with gzip.open(f"{a.data}/t10k-images-idx3-ubyte.gz") as fh:
    x = np.frombuffer(fh.read(), np.uint8, offset=16).reshape(-1, 28, 28)[: a.n]
with gzip.open(f"{a.data}/t10k-labels-idx1-ubyte.gz") as fh:
    y = np.frombuffer(fh.read(), np.uint8, offset=8)[: a.n]
x = torch.tensor(x, dtype=torch.float32).div(255).unsqueeze(1).repeat(1, 3, 1, 1)
y = torch.tensor(y, dtype=torch.long)
with torch.no_grad():
    clean = f(x).argmax(1) == y
print(f"{a.n} MNIST test images, {int(clean.sum())} correctly classified; {a.queries} queries, p_init {a.p_init}")
with tempfile.TemporaryDirectory() as out:
    subprocess.run([a.fool, "bench", f"mnist:test[0:{a.n}]", "--data", a.data, "--model", str(run / "model.pt"),
                    "--attack", "square", "--norm", "l2", "--eps", a.eps, "--steps", str(a.queries),
                    "--out", out, "-q"], check=True, stdout=subprocess.DEVNULL)
    fool_rows = {round(r["eps"], 6): r for r in json.loads((pathlib.Path(out) / "summary.json").read_text())}
for eps in [float(e) for e in a.eps.split(",")]:
    torch.manual_seed(0)
    sq = SquareAttack(f, p_init=a.p_init, n_queries=a.queries, eps=eps, norm="L2", n_restarts=1, seed=0,
                      verbose=False, device="cpu", resc_schedule=True)
    adv = sq.perturb(x, y)
    with torch.no_grad():
        fooled = (f(adv).argmax(1) != y) & clean
    ref = fooled.sum().item() / clean.sum().item()
    r = fool_rows[round(eps, 6)]
    print(f"L2 eps {eps}: success on correct images: reference {ref:.3f} ({fooled.sum().item()}/{int(clean.sum())}), "
          f"fool {r['success_rate']:.3f} ({r['successes']}/{r['n']}) [95% CI {r['ci_low']:.3f}, {r['ci_high']:.3f}]")
