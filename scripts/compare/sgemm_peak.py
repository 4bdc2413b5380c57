#!/usr/bin/env python3
"""The machine's float32 matrix-multiply peak through libtorch (MKL sgemm), and the fraction of it
an attack throughput reaches.

Times torch.mm on square float32 matrices (1024, 2048, 4096) with THREADS threads and glibc's
malloc thresholds as fool sets them, the median of REPS products each; the best size is the peak
(2·n³ FLOP per product). With --image-steps R (a PGD throughput, image-steps/s) and --gflop G
(FLOP per image-step: MobileNetV2 at 224×224 is ≈ 0.3 G multiply-adds forward, so ≈ 0.6 GFLOP
forward + ≈ 1.2 GFLOP for the input-gradient backward: 1.8 by default), prints the fraction
R·G / peak.

    .venv/bin/python scripts/compare/sgemm_peak.py [--threads 2] [--image-steps 40.2] [--gflop 1.8]
"""
import argparse
import os
import statistics
import time

import torch


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--image-steps", type=float, help="attack throughput, image-steps/s")
    ap.add_argument("--gflop", type=float, default=1.8, help="GFLOP per image-step")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    best = 0.0
    for n in (1024, 2048, 4096):
        x, y = torch.randn(n, n), torch.randn(n, n)
        torch.mm(x, y)
        ts = []
        for _ in range(a.reps):
            t0 = time.perf_counter()
            torch.mm(x, y)
            ts.append(time.perf_counter() - t0)
        gf = 2 * n ** 3 / statistics.median(ts) / 1e9
        best = max(best, gf)
        print(f"sgemm {n}x{n}, {a.threads} threads: {gf:.1f} GFLOP/s (median of {a.reps})")
    print(f"peak: {best:.1f} GFLOP/s")
    if a.image_steps:
        used = a.image_steps * a.gflop
        print(f"{a.image_steps} image-steps/s x {a.gflop} GFLOP = {used:.1f} GFLOP/s = {100 * used / best:.0f}% of the peak")


if __name__ == "__main__":
    main()
