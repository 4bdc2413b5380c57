#!/usr/bin/env python3
"""Private Evolution's nearest-neighbour vote, fool against the reference implementation's
backend, on the same embeddings, same threads, one run.

The work: every private embedding finds its nearest synthetic embedding (exact, L2), then the
vote histogram. The reference implementation (microsoft/DPSDA, `pe.histogram.nearest_neighbor_
backend`) uses Faiss's exact `IndexFlatL2` by default (`auto`), falling back to scikit-learn; its
`torch` backend builds the whole `cdist` matrix. This script runs Faiss's IndexFlatL2 (add the
synthetic set, search the private set: the calls the reference makes) and fool's
`synth::vote::nearest` + `histogram` (examples/synth_vote.rs: chunks of 1,024 private rows, one
matrix product each, argmin) with the same number of threads and glibc's default malloc settings on both sides (the example
binary does not apply the thresholds `fool` sets at start-up), checks that both pick the same
neighbours (ties aside) and prints medians and the ratio.

Usage: .venv/bin/python scripts/compare/bench_vote.py [--private 60000 --synthetic 60000 --dim 1280 --threads 2 --reps 3]
Needs: pip install faiss-cpu (1.15.1 here); cargo build --release --example synth_vote.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ap = argparse.ArgumentParser()
ap.add_argument("--private", type=int, default=60000)
ap.add_argument("--synthetic", type=int, default=60000)
ap.add_argument("--dim", type=int, default=1280)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--reps", type=int, default=3)
ap.add_argument("--seed", type=int, default=0)
a = ap.parse_args()

os.environ["OMP_NUM_THREADS"] = str(a.threads)
import numpy as np  # noqa: E402
import faiss  # noqa: E402

faiss.omp_set_num_threads(a.threads)
root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
exe = os.path.join(root, "target/release/examples/synth_vote")
if not os.path.exists(exe):
    sys.exit("bench_vote: build it first: cargo build --release --example synth_vote")

# Embeddings like a feature extractor's: non-negative (post-ReLU averages), clustered in 10
# classes, so nearest neighbours are meaningful rather than ties of random noise.
rng = np.random.default_rng(a.seed)
centres = rng.gamma(2.0, 0.5, size=(10, a.dim)).astype(np.float32)
def draw(n):
    c = rng.integers(0, 10, size=n)
    return (centres[c] * rng.gamma(4.0, 0.25, size=(n, a.dim))).astype(np.float32)
priv, syn = draw(a.private), draw(a.synthetic)

with tempfile.TemporaryDirectory() as d:
    pp, sp, ip = (os.path.join(d, f) for f in ("p.npy", "s.npy", "ids.npy"))
    np.save(pp, priv)
    np.save(sp, syn)
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), MKL_NUM_THREADS=str(a.threads))
    out = subprocess.run([exe, pp, sp, "1", str(a.reps), ip], check=True, capture_output=True,
                         text=True, env=env)
    fool = json.loads(out.stdout)
    fool_ids = np.load(ip).reshape(-1)

peer = []
for _ in range(a.reps):
    t = time.perf_counter()
    index = faiss.IndexFlatL2(a.dim)
    index.add(syn)
    _, ids = index.search(priv, 1)
    hist = np.bincount(ids.reshape(-1), minlength=a.synthetic)
    peer.append(time.perf_counter() - t)
peer_ids = ids.reshape(-1)

agree = float(np.mean(fool_ids == peer_ids))
# Where they differ, the two distances must be equal up to float32 rounding (a tie).
diff = np.nonzero(fool_ids != peer_ids)[0][:1000]
def dist(i, j):
    return float(np.sum((priv[i].astype(np.float64) - syn[j]) ** 2))
worst = max((abs(dist(i, fool_ids[i]) - dist(i, peer_ids[i])) / dist(i, peer_ids[i]) for i in diff), default=0.0)

fm, pm = statistics.median(fool["seconds"]), statistics.median(peer)
print(f"work: {a.private} private x {a.synthetic} synthetic, {a.dim}-d, exact L2 nearest neighbour + histogram; "
      f"{a.threads} threads each; {a.reps} repeats")
print(f"fool (synth::vote, libtorch {fool['threads']} threads): " + ", ".join(f"{s:.2f}" for s in fool["seconds"]) + f" s, median {fm:.2f} s")
print(f"reference backend (faiss {faiss.__version__} IndexFlatL2): " + ", ".join(f"{s:.2f}" for s in peer) + f" s, median {pm:.2f} s")
print(f"same neighbour for {agree:.4%} of private rows; largest relative distance gap where they differ: {worst:.2e}")
print(f"ratio (reference / fool): {pm / fm:.2f}x")
