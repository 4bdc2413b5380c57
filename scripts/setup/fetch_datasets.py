#!/usr/bin/env python3
"""Download MNIST and CIFAR-10 from their public sources into OUT/mnist and OUT/cifar10,
the layout `fool train --dataset mnist|cifar10 --data DIR` reads (and scripts/setup/setup.sh
uses when ../shared is absent).

* MNIST: the four canonical IDX files, kept gzipped (train-images-idx3-ubyte.gz,
  train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz),
  from torchvision's mirror https://ossci-datasets.s3.amazonaws.com/mnist/ (Google's
  https://storage.googleapis.com/cvdf-datasets/mnist/ as a fallback); about 11 MB.
* CIFAR-10: https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz (about 163 MB),
  whose cifar-10-batches-bin/ members data_batch_1.bin ... data_batch_5.bin,
  test_batch.bin and batches.meta.txt are extracted flat into OUT/cifar10.

Every data file is checked against its canonical md5 (the values of ../shared/data/*/MD5SUMS,
written to OUT/*/MD5SUMS too) before it is moved into place, so a file is either complete
and correct or absent. Files already present with the right md5 are not downloaded again.

Not tested where it was written: that machine has no internet access (it has the same
files in ../shared). The md5 checks are what guarantee the result.

Usage: python scripts/setup/fetch_datasets.py [--out assets] [--only mnist|cifar10]
"""
import argparse
import hashlib
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request

MNIST_URLS = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
]
MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
CIFAR_MD5 = {
    "data_batch_1.bin": "5dd7e06a14cb22eb9f671a540d1b7c25",
    "data_batch_2.bin": "5ea93a67294ea407fff1d09f752e9692",
    "data_batch_3.bin": "942cd6a4bcdd0dd3c604fbe906cb4421",
    "data_batch_4.bin": "ae636b3ba5c66a11e91e8cb52e771fcb",
    "data_batch_5.bin": "53f37980c15c3d472c316c40844f3f0d",
    "test_batch.bin": "803d5f7f4d78ea53de84dbe85f74fb6d",
}
CIFAR_EXTRA = ["batches.meta.txt"]  # no published md5: checked for ten class names
CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer",
                 "dog", "frog", "horse", "ship", "truck"]
CHUNK = 1 << 20


class FetchError(Exception):
    pass


def say(msg):
    print(f"fetch_datasets: {msg}", file=sys.stderr)


def md5_file(path):
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def good(path, md5):
    return os.path.isfile(path) and md5_file(path) == md5


def prepare_dir(d):
    if os.path.islink(d) and not os.path.exists(d):
        os.unlink(d)  # a stale link to a ../shared that is gone
    os.makedirs(d, exist_ok=True)


def download(url, dest_dir):
    """Stream URL into a temporary file in dest_dir; return its path."""
    req = urllib.request.Request(url, headers={"User-Agent": "fool-fetch-datasets/1"})
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=dest_dir)
    try:
        with urllib.request.urlopen(req, timeout=60) as r, os.fdopen(fd, "wb") as f:
            shutil.copyfileobj(r, f, CHUNK)
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp


def publish(tmp, path):
    """Move a verified temporary file into place with the usual permissions."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private
    os.replace(tmp, path)


def write_md5sums(d, sums):
    with open(os.path.join(d, "MD5SUMS"), "w") as f:
        for name, md5 in sums.items():
            f.write(f"{md5}  {name}\n")


def fetch_mnist(out):
    d = os.path.join(out, "mnist")
    prepare_dir(d)
    for name, md5 in MNIST_MD5.items():
        path = os.path.join(d, name)
        if good(path, md5):
            say(f"{path}: present, md5 ok")
            continue
        errors = []
        for base in MNIST_URLS:
            url = base + name
            try:
                tmp = download(url, d)
            except (urllib.error.URLError, OSError) as e:
                errors.append(f"{url}: {getattr(e, 'reason', None) or e}")
                continue
            got = md5_file(tmp)
            if got != md5:
                os.unlink(tmp)
                errors.append(f"{url}: md5 {got}, expected {md5}")
                continue
            publish(tmp, path)
            say(f"{path}: downloaded from {url}, md5 ok")
            break
        else:
            raise FetchError(f"could not get {name}:\n  " + "\n  ".join(errors))
    write_md5sums(d, MNIST_MD5)


def check_meta(path):
    with open(path) as f:
        names = [line.strip() for line in f if line.strip()]
    if len(names) != 10:
        raise FetchError(f"{path}: {len(names)} class names, expected 10")


def fetch_cifar10(out):
    d = os.path.join(out, "cifar10")
    prepare_dir(d)
    meta = os.path.join(d, "batches.meta.txt")
    if all(good(os.path.join(d, n), m) for n, m in CIFAR_MD5.items()) and os.path.isfile(meta):
        say(f"{d}: present, md5s ok")
        write_md5sums(d, CIFAR_MD5)
        return
    say(f"downloading {CIFAR_URL} (about 163 MB)")
    try:
        archive = download(CIFAR_URL, d)
    except (urllib.error.URLError, OSError) as e:
        raise FetchError(f"{CIFAR_URL}: {getattr(e, 'reason', None) or e}") from None
    try:
        wanted = set(CIFAR_MD5) | set(CIFAR_EXTRA)
        staged = {}
        try:
            with tarfile.open(archive, "r:gz") as tar:
                for member in tar:
                    name = os.path.basename(member.name)
                    if not member.isfile() or name not in wanted or name in staged:
                        continue
                    src = tar.extractfile(member)
                    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=d)
                    staged[name] = tmp
                    with os.fdopen(fd, "wb") as f:
                        shutil.copyfileobj(src, f, CHUNK)
            missing = sorted(wanted - set(staged))
            if missing:
                raise FetchError(f"{CIFAR_URL}: the archive lacks {', '.join(missing)}")
            for name, md5 in CIFAR_MD5.items():
                got = md5_file(staged[name])
                if got != md5:
                    raise FetchError(f"{CIFAR_URL}: {name} has md5 {got}, expected {md5}")
            check_meta(staged["batches.meta.txt"])
            for name, tmp in staged.items():
                publish(tmp, os.path.join(d, name))
            staged = {}
        except (tarfile.TarError, EOFError, OSError) as e:
            raise FetchError(f"{CIFAR_URL}: cannot extract the archive ({e})") from None
        finally:
            for tmp in staged.values():
                if os.path.exists(tmp):
                    os.unlink(tmp)
    finally:
        os.unlink(archive)
    write_md5sums(d, CIFAR_MD5)
    say(f"{d}: extracted {', '.join(sorted(wanted))}, md5s ok")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="assets", help="parent folder of mnist/ and cifar10/ (default: assets)")
    p.add_argument("--only", choices=["mnist", "cifar10"], help="fetch one data set only")
    a = p.parse_args()
    try:
        if a.only in (None, "mnist"):
            fetch_mnist(a.out)
        if a.only in (None, "cifar10"):
            fetch_cifar10(a.out)
    except FetchError as e:
        say(f"error: {e}\n(no internet access? copy the files by hand; see the docstring of {sys.argv[0]})")
        sys.exit(1)
    except OSError as e:
        say(f"error: {e}")
        sys.exit(1)


if __name__ == "__main__":
    main()
