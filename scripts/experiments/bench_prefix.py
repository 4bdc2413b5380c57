#!/usr/bin/env python3
"""Keep the finished part of an interrupted, sharded `fool bench` run.

`fool bench` cuts a sweep into batches of images; shard I of N runs batches I, I+N, ...
This copies, from each shard's results.jsonl, the rows of batches 0..K-1, where K is the
largest number such that every unit of each of those batches has finished in some shard
(the image set `--limit K*batch` would select, without --shuffle), into OUT/shard-I with the
shard's bench.json. Then `fool bench merge OUT/shard-* --out OUT` writes the summary and chart
of those K*batch images.

    python3 scripts/experiments/bench_prefix.py outputs/bench-pgd-full/shard-0 outputs/bench-pgd-full/shard-1 \
        --out outputs/bench-pgd-prefix
"""
import argparse
import json
import os
import shutil

ap = argparse.ArgumentParser()
ap.add_argument("shards", nargs="+")
ap.add_argument("--out", required=True)
a = ap.parse_args()

cfg = json.load(open(os.path.join(a.shards[0], "bench.json")))
files, batch = cfg["files"], cfg["batch"]
batch_of = {f: i // batch for i, f in enumerate(files)}
non_none = [d for d in cfg["defenses"] if d != "none"]
# Rows per image: every eps × (every defense non-adaptive + every other defense adaptive).
per_image = len(cfg["attacks"]) * len(cfg["eps"]) * (
    len(cfg["defenses"]) + (len(non_none) if cfg["adaptive"] else 0))

rows = {}
count = {}
for d in a.shards:
    for line in open(os.path.join(d, "results.jsonl")):
        r = json.loads(line)
        b = batch_of[r["file"]]
        rows.setdefault(d, []).append((b, line))
        count[b] = count.get(b, 0) + 1
k = 0
while k * batch < len(files):
    size = min(batch, len(files) - k * batch)
    if count.get(k, 0) != size * per_image:
        break
    k += 1
print(f"{k} complete batches: the first {min(k * batch, len(files))} of {len(files)} images")
for i, d in enumerate(a.shards):
    dst = os.path.join(a.out, os.path.basename(os.path.normpath(d)))
    os.makedirs(dst, exist_ok=True)
    shutil.copy(os.path.join(d, "bench.json"), dst)
    with open(os.path.join(dst, "results.jsonl"), "w") as f:
        f.writelines(line for b, line in rows.get(d, []) if b < k)
