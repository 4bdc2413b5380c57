"""Per-epoch DP-SGD time with augmentation multiplicity K (issue 17's speed table): one epoch of
`fool train --dp --augment crop-flip --multiplicity K` on the first N CIFAR-10 images, K = 1, 2,
4, 8, repeated; prints each median, its spread, and the ratio to K = 1 (ideal: at most K).
Each side is fool itself, so no peer footing is involved; run on a quiet machine.

    .venv/bin/python scripts/compare/bench_multiplicity.py --arch cifar-cnn --limit 4096 --repeat 3
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FOOL = os.path.join(ROOT, "target", "release", "fool")


def epoch_seconds(arch, limit, batch, k):
    out = tempfile.mkdtemp()
    try:
        cmd = [FOOL, "train", "--dataset", "cifar10", "--arch", arch, "--limit", str(limit),
               "--batch", str(batch), "--epochs", "1", "--dp", "--noise", "1", "--augment",
               "crop-flip", "--samples", "0", "--quiet", "--json", "--out", out]
        if k > 1:
            cmd += ["--multiplicity", str(k)]
        meta = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        return meta["history"][0]["train_seconds"]
    finally:
        shutil.rmtree(out)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--arch", default="cifar-cnn")
    p.add_argument("--limit", type=int, default=4096)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--ks", default="1,2,4,8")
    p.add_argument("--repeat", type=int, default=3)
    a = p.parse_args()
    base = None
    print(f"arch {a.arch}, {a.limit} CIFAR-10 images, expected batch {a.batch}, one DP epoch "
          f"(training time only, no evaluation); median of {a.repeat}")
    for k in map(int, a.ks.split(",")):
        runs = [epoch_seconds(a.arch, a.limit, a.batch, k) for _ in range(a.repeat)]
        med = statistics.median(runs)
        base = base or med
        print(json.dumps({"k": k, "median_s": round(med, 2), "min_s": round(min(runs), 2),
                          "max_s": round(max(runs), 2), "ratio_to_k1": round(med / base, 2),
                          "examples_per_s": round(a.limit / med, 1)}), flush=True)


if __name__ == "__main__":
    main()
