#!/usr/bin/env python3
"""Export the penultimate features of fool's ImageNet classifier (assets/model.pt) as a
TorchScript module, the public embedding network of `fool synth --embedding network`.

The ImageNet model is public (never trained on the private data PE votes with). For
torchvision's MobileNetV2 (the ../shared model: children `features`, `classifier`) the
embedding is `features` followed by global average pooling: 1280 dimensions. For the ResNet-18
that set-up exports without ../shared (children conv1 … layer4, avgpool, fc) it is every child
but `fc`: 512 dimensions. The module takes (N,3,H,W) ImageNet-normalized input of any H, W ≥ 32
and returns (N,d). Written to a temporary file beside --out and renamed.

Usage: python scripts/setup/export_features.py --model assets/model.pt --out assets/embedding.pt
"""
import argparse
import os
import sys
import tempfile

import torch


class Features(torch.nn.Module):
    def __init__(self, parts):
        super().__init__()
        self.parts = torch.nn.ModuleList(parts)

    def forward(self, x):
        for p in self.parts:
            x = p(x)
        return torch.flatten(torch.nn.functional.adaptive_avg_pool2d(x, 1), 1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    try:
        m = torch.jit.load(a.model, map_location="cpu").eval()
    except Exception as e:  # noqa: BLE001 - one clear line
        sys.exit(f"export_features: error: {a.model}: not a loadable TorchScript model ({e})")
    children = dict(m.named_children())
    if "features" in children:
        parts = [children["features"]]
    elif "fc" in children:
        parts = [c for n, c in m.named_children() if n not in ("fc", "avgpool")]
    else:
        sys.exit(f"export_features: error: {a.model}: neither a MobileNetV2 (features) nor a ResNet (fc)")
    f = Features(parts).eval()
    with torch.no_grad():
        traced = torch.jit.trace(f, torch.rand(2, 3, 64, 64), check_trace=False)
        d = traced(torch.rand(1, 3, 96, 96)).shape[1]
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(a.out)), suffix=".tmp")
    os.close(fd)
    traced.save(tmp)
    os.replace(tmp, a.out)
    print(f"export_features: {a.out}: {d}-d features of {a.model}")


if __name__ == "__main__":
    main()
