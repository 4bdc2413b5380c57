#!/usr/bin/env python3
"""Accuracy of fool run models on a slice of the MNIST test split (the PATE comparison tests
every model on the last 1,000 test images, which no student trained on).

    .venv/bin/python scripts/experiments/eval_slice.py runs/pate250-student runs/mnist-dp-pate \
        [--data assets/mnist] [--rows 9000:10000]

Loads each run's model.pt (TorchScript, input (N,3,28,28) pixels in [0,1], the grey image in
all three channels, as its model.json says) and prints one line per run: run, accuracy, correct/total.
"""
import argparse
import gzip
import os

import numpy as np
import torch

ap = argparse.ArgumentParser()
ap.add_argument("runs", nargs="+")
ap.add_argument("--data", default="assets/mnist")
ap.add_argument("--rows", default="9000:10000")
a = ap.parse_args()
lo, hi = (int(x) for x in a.rows.split(":"))
with gzip.open(os.path.join(a.data, "t10k-images-idx3-ubyte.gz")) as f:
    images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)[lo:hi]
with gzip.open(os.path.join(a.data, "t10k-labels-idx1-ubyte.gz")) as f:
    labels = np.frombuffer(f.read(), np.uint8, offset=8)[lo:hi]
x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1).repeat(1, 3, 1, 1)
y = torch.from_numpy(labels.astype(np.int64))
for run in a.runs:
    m = torch.jit.load(os.path.join(run, "model.pt")).eval()
    with torch.no_grad():
        pred = torch.cat([m(x[i:i + 500]).argmax(1) for i in range(0, len(x), 500)])
    ok = int((pred == y).sum())
    print(f"{run}: accuracy {ok / len(y):.2%} ({ok}/{len(y)}) on MNIST test[{lo}:{hi}]")
