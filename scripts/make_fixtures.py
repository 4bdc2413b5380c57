#!/usr/bin/env python3
"""Reference logits for fool's preprocessing test, computed with PyTorch + torchvision.

Run from the repo root after `bash scripts/setup.sh` (needs torchvision in .venv:
`.venv/bin/pip install torchvision==0.26.0`):

    .venv/bin/python scripts/make_fixtures.py

Writes tests/fixtures/torchvision_logits.json: for each case the image, the torchvision
transform used, the full logit vector of assets/model.pt (rounded to 1e-5) and the top-5.
tests/preprocess_vs_torchvision.rs runs fool's own loading + preprocessing + model on the
same files and compares.
"""
import json
import os
import sys

import torch
import torchvision
from PIL import Image
from torchvision import transforms as T

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
CASES = [
    # name, image, torchvision transform chain (before ToTensor/Normalize), fool flags
    ("dog_as_is", "assets/dog.png", [], {}),
    ("dog_resize256_crop224", "assets/dog.png", [T.Resize(256), T.CenterCrop(224)], {"resize_always": True}),
    ("tench_resize256_crop224", "assets/imagenet-samples/n01440764_tench.JPEG",
     [T.Resize(256), T.CenterCrop(224)], {}),
    ("shark_resize224_crop224", "assets/imagenet-samples/n01484850_great_white_shark.JPEG",
     [T.Resize(224), T.CenterCrop(224)], {"resize": 224}),
    ("airedale_grey_resize256_crop224", "assets/imagenet-samples/n02096051_Airedale.JPEG",
     [T.Resize(256), T.CenterCrop(224)], {}),
]


def main():
    torch.set_grad_enabled(False)
    model = torch.jit.load("assets/model.pt", map_location="cpu").eval()
    out = {"torch": torch.__version__, "torchvision": torchvision.__version__,
           "model": "assets/model.pt", "cases": []}
    for name, path, geom, flags in CASES:
        img = Image.open(path).convert("RGB")
        tf = T.Compose(geom + [T.ToTensor(), T.Normalize(MEAN, STD)])
        logits = model(tf(img).unsqueeze(0))[0]
        top = torch.topk(logits.softmax(-1), 5)
        out["cases"].append({
            "name": name,
            "image": path,
            "transform": repr(tf),
            "fool": flags,
            "logits": [round(float(v), 5) for v in logits],
            "top5": [int(i) for i in top.indices],
            "top5_prob": [round(float(p), 6) for p in top.values],
        })
        print(f"{name}: top5 {out['cases'][-1]['top5']} p={out['cases'][-1]['top5_prob'][0]:.4f}")
    dst = "tests/fixtures/torchvision_logits.json"
    tmp = dst + ".tmp"
    with open(tmp, "w") as f:
        json.dump(out, f)
    os.replace(tmp, dst)
    print("wrote", dst)




def make_cmyk_fixture():
    """A small synthetic CMYK JPEG (Pillow writes Adobe CMYK JPEGs) for the bad-input test."""
    img = Image.new("RGB", (40, 30))
    img.putdata([(x * 6, y * 8, 128) for y in range(30) for x in range(40)])
    img.convert("CMYK").save("tests/fixtures/cmyk.jpg", quality=95)
    print("wrote tests/fixtures/cmyk.jpg")


if __name__ == "__main__":
    make_cmyk_fixture()
    sys.exit(main())
