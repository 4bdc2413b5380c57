#!/usr/bin/env bash
# One-time (idempotent) set-up for fool. Sourced by scripts/demo.sh and scripts/test.sh.
#  1. a project-local virtualenv .venv with torch==2.11.0 (libtorch for tch 0.24);
#  2. assets/: the model, labels, dog photo and data sets — linked from ../shared when it
#     exists, otherwise obtained from public sources (torchvision's ResNet-18 exported to
#     TorchScript by scripts/setup/export_resnet18.py, the tutorial's dog photo);
#  3. the release build of the `fool` binary.
# Every step is skipped when it is already done.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
TORCH_VERSION=2.11.0
VENV="$ROOT/.venv"
SHARED="${FOOL_SHARED:-$ROOT/../shared}"
say() { printf '[setup] %s\n' "$*" >&2; }

# --- 1. virtualenv with torch ------------------------------------------------------------
if ! "$VENV/bin/python" -c "import numpy, torch, sys; sys.exit(0 if torch.__version__.split('+')[0]=='$TORCH_VERSION' else 1)" 2>/dev/null; then
    if [ ! -x "$VENV/bin/python" ]; then
        say "creating virtualenv $VENV"
        python3 -m venv "$VENV" || {
            echo "error: 'python3 -m venv' failed; on Debian install it with: apt-get install python3-venv" >&2
            exit 1
        }
    fi
    say "installing torch==$TORCH_VERSION (and numpy) into $VENV (about 5 GB with the CUDA libraries; a few minutes)"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "torch==$TORCH_VERSION" numpy
else
    say "torch $TORCH_VERSION already in $VENV"
fi
export PATH="$VENV/bin:$PATH"
export LIBTORCH_USE_PYTORCH=1
TORCH_LIB="$("$VENV/bin/python" -c 'import os,torch;print(os.path.join(os.path.dirname(torch.__file__),"lib"))')"
export LD_LIBRARY_PATH="$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

# --- 2. assets -----------------------------------------------------------------------------
mkdir -p assets outputs
link() { # link SRC DEST: symlink when missing or stale
    if [ "$(readlink "$2" 2>/dev/null)" != "$1" ]; then rm -rf "$2"; ln -s "$1" "$2"; fi
}
if [ -d "$SHARED/models" ] && [ -d "$SHARED/data" ]; then
    SHARED="$(cd "$SHARED" && pwd)"
    link "$SHARED/models/mobilenet_v2_imagenet.pt" assets/model.pt
    link "$SHARED/data/imagenet_idx_to_label.json" assets/imagenet_labels.json
    link "$SHARED/data/dog.png" assets/dog.png
    link "$SHARED/data/seed_adversarial_r.npy" assets/seed_adversarial_r.npy
    link "$SHARED/data/imagenet-samples" assets/imagenet-samples
    link "$SHARED/data/mnist" assets/mnist
    link "$SHARED/data/cifar10" assets/cifar10
    say "assets/ linked from $SHARED (MobileNetV2 ImageNet model, labels, dog photo, data sets)"
else
    if [ ! -s assets/model.pt ] || [ ! -s assets/imagenet_labels.json ]; then
        say "no ../shared here: exporting torchvision's ResNet-18 (IMAGENET1K_V1) to assets/model.pt"
        python -c "import torchvision" 2>/dev/null || python -m pip install --quiet "torchvision==0.26.0"
        python scripts/setup/export_resnet18.py --out assets/model.pt --labels assets/imagenet_labels.json
    fi
    if [ ! -s assets/dog.png ]; then
        say "downloading the tutorial's dog photo to assets/dog.png"
        python scripts/setup/fetch_dog.py assets/dog.png
    fi
    # MNIST and CIFAR-10 for `fool train` (md5-checked; about 175 MB). Not fatal: only
    # training and the data set tests need them.
    for f in mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz \
        cifar10/data_batch_{1..5}.bin cifar10/test_batch.bin; do
        if [ ! -s "assets/$f" ]; then
            say "downloading MNIST and CIFAR-10 to assets/mnist and assets/cifar10"
            python scripts/setup/fetch_datasets.py --out assets ||
                say "warning: MNIST / CIFAR-10 unavailable; fool train will need --data DIR"
            break
        fi
    done
    say "assets/ prepared from public sources (ResNet-18 instead of the MobileNetV2 of ../shared)"
fi

# The public embedding network of `fool synth --embedding network` (the classifier's
# penultimate features; seconds).
if [ ! -s assets/embedding.pt ] || [ assets/model.pt -nt assets/embedding.pt ]; then
    python scripts/setup/export_features.py --model assets/model.pt --out assets/embedding.pt
fi

# --- 2b. Python side of fool serve's interop test and benchmark (FastAPI, uvicorn, Pillow,
# tritonclient[http]; pinned in scripts/serve/requirements.txt; seconds when already there) --------
bash "$ROOT/scripts/serve/setup_py.sh"

# --- 3. build --------------------------------------------------------------------------------
say "building the release binary (cargo build --release)"
cargo build --release --quiet
FOOL="$ROOT/target/release/fool"
export FOOL
