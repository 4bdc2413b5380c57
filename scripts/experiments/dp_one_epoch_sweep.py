"""One DP-SGD epoch on MNIST at issue 17's fixed privacy settings (σ 1.1, C 1, expected batch
256) across architectures and optimizer settings: the sweep behind the `--dp` defaults
(BENCHMARKS.md "Issue 17, steps 2–5"). One seed per setting, appended to OUT as JSON lines;
rerun to continue (finished settings are skipped). Each run is ~4 s on 2 cores.

    python3 scripts/experiments/dp_one_epoch_sweep.py [OUT]   (default runs/dp-one-epoch.jsonl)
"""
import json
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FOOL = os.path.join(ROOT, "target", "release", "fool")


def grid():
    for arch in ["cnn:act=tanh", "cnn:act=relu", "cnn:act=tanh,norm=group"]:
        for opt in ["--momentum 0 --lr 1.0", "--momentum 0 --lr 2.0", "--momentum 0.5 --lr 0.5",
                    "--momentum 0.9 --lr 0.1", "--momentum 0.9 --lr 0.2",
                    "--optimizer adam --lr 0.004", "--optimizer adam --lr 0.008"]:
            yield f"--arch {arch} {opt}"
    for extra in ["--warmup 20", "--ema 0.9", "--ema 0.99", "--schedule cosine"]:
        yield f"--arch cnn:act=tanh --momentum 0 --lr 1.0 {extra}"


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "runs", "dp-one-epoch.jsonl")
    done = set()
    if os.path.exists(out):
        done = {json.loads(line)["args"] for line in open(out)}
    tmp = out + ".run"
    for args in grid():
        if args in done:
            continue
        cmd = [FOOL, "train", "--dataset", "mnist", "--dp", "--noise", "1.1", "--epochs", "1",
               "--seed", "0", "--samples", "0", "--quiet", "--json", "--out", tmp] + args.split()
        p = subprocess.run(cmd, capture_output=True, text=True, check=True)
        shutil.rmtree(tmp, ignore_errors=True)
        row = {"args": args, "test_accuracy": json.loads(p.stdout)["test_accuracy"]}
        with open(out, "a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
