#!/usr/bin/env python3
"""Download the tutorial's dog photo (outputs/original.png of the do-community/
tricking-neural-networks repository on GitHub) to OUT.

Tries the master branch, then main. The download must decode as an image (Pillow when it is
installed, else at least the PNG signature is checked); it is written to a temporary file next
to OUT and renamed, so OUT is either the complete photo or untouched.

Usage: python scripts/setup/fetch_dog.py assets/dog.png
"""
import io
import os
import sys
import tempfile
import urllib.error
import urllib.request

URLS = [
    "https://raw.githubusercontent.com/do-community/tricking-neural-networks/master/outputs/original.png",
    "https://raw.githubusercontent.com/do-community/tricking-neural-networks/main/outputs/original.png",
]
MAX_BYTES = 50 * 1024 * 1024


def fail(msg):
    print(f"fetch_dog: error: {msg}", file=sys.stderr)
    sys.exit(1)


def check_image(data):
    """A short description of the image, or raises ValueError."""
    try:
        from PIL import Image
    except ImportError:
        if not data.startswith(b"\x89PNG\r\n\x1a\n"):
            raise ValueError("not a PNG file")
        return "PNG (not decoded: Pillow is not installed)"
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            return f"{im.format} {im.size[0]}x{im.size[1]} {im.mode}"
    except Exception as e:
        raise ValueError(f"does not decode as an image ({e})") from None


def download(url):
    req = urllib.request.Request(url, headers={"User-Agent": "fool-fetch-dog/1"})
    with urllib.request.urlopen(req, timeout=60) as r:
        data = r.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise ValueError("response larger than 50 MB")
    return data


def main():
    if len(sys.argv) != 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__.strip(), file=sys.stderr)
        sys.exit(2 if len(sys.argv) != 2 else 0)
    out = sys.argv[1]
    errors = []
    for url in URLS:
        try:
            data = download(url)
            desc = check_image(data)
            break
        except urllib.error.HTTPError as e:
            errors.append(f"{url}: HTTP {e.code} {e.reason}")
        except (urllib.error.URLError, OSError, ValueError) as e:
            errors.append(f"{url}: {getattr(e, 'reason', None) or e}")
    else:
        fail("could not download the dog photo:\n  " + "\n  ".join(errors)
             + "\n(no internet access? put any photo at " + out + " instead)")

    d = os.path.dirname(os.path.abspath(out))
    try:
        os.makedirs(d, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".png", dir=d)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; use the usual mode
            os.replace(tmp, out)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
    except OSError as e:
        fail(f"cannot write {out}: {e.strerror or e}")
    print(f"fetch_dog: wrote {out} ({desc}, {len(data)} bytes) from {url}", file=sys.stderr)


if __name__ == "__main__":
    main()
