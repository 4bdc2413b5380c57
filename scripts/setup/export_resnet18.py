#!/usr/bin/env python3
"""Export torchvision's ImageNet ResNet-18 to TorchScript for fool, with its labels.

For users without ../shared: loads resnet18(weights=ResNet18_Weights.IMAGENET1K_V1)
(downloads the weights, about 45 MB, into torch's cache; needs internet), puts it in eval
mode, traces it on a (1,3,224,224) input and saves the TorchScript module to --out. Writes
the 1000 class names as {"0": "tench", ...} to --labels. Both files are written to a
temporary file next to the destination and renamed, so an interrupted run leaves no
half-written file.

The model takes (N,3,224,224) input normalized with the ImageNet mean/std and returns (N,1000)
logits: fool's defaults (--size 224 --resize 256, ImageNet mean/std) fit it.

Usage: python scripts/setup/export_resnet18.py --out assets/model.pt --labels assets/imagenet_labels.json
       (--random-weights: untrained weights, no download; only for testing this script)
"""
import argparse
import json
import os
import sys
import tempfile


def fail(msg):
    print(f"export_resnet18: error: {msg}", file=sys.stderr)
    sys.exit(1)


def write_atomic(path, write):
    """Call write(tmp_path), then rename tmp_path to path (same directory)."""
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.basename(path), dir=d)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; use the usual mode
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="TorchScript model file to write")
    ap.add_argument("--labels", required=True, help="labels JSON file to write")
    ap.add_argument("--random-weights", action="store_true",
                    help="untrained weights (no download); for testing the export only")
    args = ap.parse_args()

    try:
        import torch
        from torchvision.models import ResNet18_Weights, resnet18
    except ImportError as e:
        fail(f"{e}; install torch and torchvision (pip install torch==2.11.0 torchvision==0.26.0)")

    meta = ResNet18_Weights.IMAGENET1K_V1.meta
    categories = list(meta["categories"])
    if len(categories) != 1000:
        fail(f"expected 1000 ImageNet categories, torchvision lists {len(categories)}")

    weights = None if args.random_weights else ResNet18_Weights.IMAGENET1K_V1
    try:
        model = resnet18(weights=weights)
    except Exception as e:  # download errors come as URLError, HTTPError, RuntimeError, ...
        fail(f"could not get the ResNet-18 IMAGENET1K_V1 weights ({type(e).__name__}: {e}); "
             "this needs internet access to download.pytorch.org, or the weights file "
             "already in torch's cache (torch.hub.get_dir()/checkpoints)")
    model.eval()

    try:
        example = torch.rand(1, 3, 224, 224)
        with torch.no_grad():
            traced = torch.jit.trace(model, example)
            # The traced module must reproduce the eager one.
            diff = (traced(example) - model(example)).abs().max().item()
        if diff > 1e-4:
            fail(f"traced model differs from the eager one (max abs diff {diff:g})")
        # Traced modules remember the mode they were traced in; make sure it is eval.
        traced.eval()
    except SystemExit:
        raise
    except Exception as e:
        fail(f"tracing failed: {type(e).__name__}: {e}")

    try:
        write_atomic(args.out, lambda tmp: torch.jit.save(traced, tmp))
        labels = {str(i): name for i, name in enumerate(categories)}

        def write_labels(tmp):
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(labels, f, ensure_ascii=False, indent=0)
                f.write("\n")

        write_atomic(args.labels, write_labels)
    except OSError as e:
        fail(f"cannot write {e.filename or ''}: {e.strerror or e}")

    what = "untrained (--random-weights)" if args.random_weights else "IMAGENET1K_V1"
    print(f"export_resnet18: wrote {args.out} (ResNet-18, {what} weights, TorchScript, "
          f"input (N,3,224,224) ImageNet-normalized) and {args.labels} "
          f"({len(labels)} labels)", file=sys.stderr)


if __name__ == "__main__":
    main()
