"""PATE privacy analysis: `fool privacy pate` vs TF Privacy's reference script on the same votes.

Runs the reference (`research/pate_2018/ICLR2018/smooth_sensitivity_table.py`, in
../shared/reference or --reference) and fool on the same vote file, the same settings, one after
the other, `--repeats` times each, and prints the wall times, their medians and the ratio; also
checks that both give the same data-dependent ε and smooth-sensitivity numbers (the reference
prints them to 3-4 digits).

Needs a Python with numpy, scipy, sympy and absl-py for the reference (no TensorFlow), e.g.
    python -m venv /tmp/pate-ref && /tmp/pate-ref/bin/pip install numpy scipy sympy absl-py
and a release build of fool. Run from the repository root:
    /tmp/pate-ref/bin/python scripts/compare/bench_pate.py [--votes FILE] [--queries 9000] \
        [--sigma2 40 --threshold 200 --sigma1 150 | --gnmax] [--repeats 3]
Without --votes it writes a synthetic (9000, 10) matrix of 250 teachers' votes (most queries
with a clear plurality, some contentious, seeded) to /tmp/pate_bench_votes.npy.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import time
import json

import numpy as np


def synthetic(path, queries, teachers=250, classes=10, seed=2018):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(queries):
        alpha = np.full(classes, 0.3)
        alpha[rng.integers(classes)] = 8.0 if rng.random() < 0.8 else 1.0
        rows.append(rng.multinomial(teachers, rng.dirichlet(alpha)))
    np.save(path, np.array(rows, dtype=np.int64))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--votes")
    ap.add_argument("--queries", type=int, default=9000)
    ap.add_argument("--sigma2", type=float, default=40.0)
    ap.add_argument("--threshold", type=float, default=200.0)
    ap.add_argument("--sigma1", type=float, default=150.0)
    ap.add_argument("--delta", type=float, default=1e-5)
    ap.add_argument("--gnmax", action="store_true", help="plain GNMax: no threshold step")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--reference", default="../shared/reference/tf-privacy-pate_2018")
    ap.add_argument("--fool", default="target/release/fool")
    a = ap.parse_args()
    if a.gnmax:
        a.threshold = a.sigma1 = None
    votes = a.votes or "/tmp/pate_bench_votes.npy"
    if not a.votes:
        synthetic(votes, a.queries)
    votes = os.path.abspath(votes)
    n = np.load(votes).shape[0]
    ref_dir = os.path.join(os.path.abspath(a.reference), "ICLR2018")
    ref_cmd = [sys.executable, "smooth_sensitivity_table.py", f"--counts_file={votes}",
               f"--sigma2={a.sigma2}", f"--delta={a.delta}", f"--queries={min(a.queries, n)}"]
    fool_cmd = [os.path.abspath(a.fool), "privacy", "pate", "--votes", votes, "--sigma", str(a.sigma2),
                "--delta", str(a.delta), "--queries", str(min(a.queries, n)), "--json"]
    if a.threshold is not None:
        ref_cmd += [f"--threshold={a.threshold}", f"--sigma1={a.sigma1}"]
        fool_cmd += ["--threshold", str(a.threshold), "--sigma1", str(a.sigma1)]
    times = {"reference": [], "fool": []}
    outs = {}
    for _ in range(a.repeats):
        for name, cmd, cwd in (("reference", ref_cmd, ref_dir), ("fool", fool_cmd, None)):
            t = time.perf_counter()
            p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
            times[name].append(time.perf_counter() - t)
            if p.returncode != 0:
                sys.exit(f"{name} failed: {p.stderr[-2000:]}")
            outs[name] = p.stdout
    print(f"votes: {votes} ({n} rows), queries {min(a.queries, n)}, sigma2 {a.sigma2}, "
          f"threshold {a.threshold}, sigma1 {a.sigma1}, delta {a.delta}")
    for name, ts in times.items():
        print(f"{name:10s} " + " ".join(f"{t:.3f}" for t in ts) + f"  median {statistics.median(ts):.3f} s")
    print(f"ratio (reference / fool, medians): {statistics.median(times['reference']) / statistics.median(times['fool']):.1f}x")
    f = json.loads(outs["fool"])
    last = [l for l in outs["reference"].splitlines() if "goes from" in l][-1]
    print("reference:", last)
    s = f["smooth_sensitivity"] or {}
    print(f"fool:      order {f['order']}, eps dd {f['epsilon_data_dependent']:.3f} -> total "
          f"{s.get('epsilon_total', float('nan')):.3f} +/- {s.get('noise_std', float('nan')):.3f} "
          f"(ss = {s.get('ss', float('nan')):.4}, beta = {s.get('beta', float('nan')):.4f}, "
          f"sigma_ss = {s.get('sigma_ss', float('nan')):.3f}); released {s.get('epsilon_released', float('nan')):.3f}")
    m = re.search(r"RDP at (\S+) goes from (\S+) to (\S+) \+/- (\S+)", last)
    same = (float(m.group(1)) == f["order"] and abs(float(m.group(2)) - f["epsilon_data_dependent"]) < 6e-4
            and abs(float(m.group(3)) - s["epsilon_total"]) < 6e-4)
    print("same numbers:", "yes" if same else "NO")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
