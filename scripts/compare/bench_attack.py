#!/usr/bin/env python3
"""Per-step time of fool's single-image SGD attack against the same loop in PyTorch eager.

Both sides run the same TorchScript model (assets/model.pt) on the same 224x224 dog
(assets/dog.png, used as is: ToTensor, no resize) with the same attack: the perturbation r
lives in pixel space [0,1]; each step evaluates x = clamp(x0 + r, 0, 1) through a
straight-through rounding to the 8-bit grid within the budget (what fool does), normalizes
with the ImageNet mean/std, takes the cross-entropy to the target class, back-propagates to r,
and updates velocity = momentum * velocity + grad, r -= lr * velocity, then clamps r to
[-eps, eps] and x0 + r to [0, 1]. It keeps the best 8-bit image and reads the mean loss and
probability every step, as fool does. `--steps N --no-early-stop` is N + 1 forwards and N
backwards here (fool may also differentiate its final evaluation: one more backward, a
constant that the per-step difference below cancels).

Per-step time = (time at HI steps - time at LO steps) / (HI - LO), which removes start-up,
model loading and fool's output writing and verification. For fool the time is `elapsed_s`
of its JSON record (from argument parsing to the record) and, separately, the wall clock of
the whole process; for PyTorch it is the attack loop, in this process, after one warm-up run.
Both use the same number of CPU threads (`torch.set_num_threads` here, OMP_NUM_THREADS and
MKL_NUM_THREADS for fool's libtorch, which is this venv's torch library). Measurements during
which other processes used more than --max-foreign of the CPUs are discarded and repeated.

Usage: .venv/bin/python scripts/compare/bench_attack.py [--reps 5] [--lo 10] [--hi 60] [--threads N]
"""
import argparse
import json
import math
import os
import platform
import resource
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    sys.exit("error: torch is not importable; run with .venv/bin/python after bash scripts/setup/setup.sh")

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def die(msg):
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(1)


# --- image loading: Pillow when present, else a small PNG decoder (setup.sh installs only torch)
def _png_decode(path):
    """8-bit, non-interlaced greyscale/RGB/RGBA/grey+alpha PNG -> (w, h, RGB bytes)."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG file (install Pillow for other formats)")
    pos, idat, hdr = 8, [], None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            hdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    if hdr is None:
        raise ValueError("PNG without IHDR")
    w, h, depth, ctype, _, _, interlace = hdr
    channels = {0: 1, 2: 3, 4: 2, 6: 4}.get(ctype)
    if depth != 8 or channels is None or interlace:
        raise ValueError("unsupported PNG variant (install Pillow)")
    raw = zlib.decompress(b"".join(idat))
    stride, bpp = w * channels, channels
    out, prev = bytearray(h * stride), bytearray(stride)
    for y in range(h):
        ftype = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if ftype == 1:
                line[i] = (line[i] + a) & 255
            elif ftype == 2:
                line[i] = (line[i] + b) & 255
            elif ftype == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif ftype == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 255
        out[y * stride:(y + 1) * stride] = line
        prev = line
    if channels == 3:
        rgb = bytes(out)
    else:
        px = [out[i:i + channels] for i in range(0, len(out), channels)]
        rgb = b"".join(bytes((p[0], p[0], p[0])) if channels <= 2 else bytes(p[:3]) for p in px)
    return w, h, rgb


def load_pixels(path):
    """The image as a (1,3,H,W) float tensor in [0,1] (torchvision ToTensor), no resize."""
    try:
        from PIL import Image
        with Image.open(path) as im:
            im = im.convert("RGB")
            w, h = im.size
            rgb = im.tobytes()
    except ImportError:
        w, h, rgb = _png_decode(path)
    t = torch.frombuffer(bytearray(rgb), dtype=torch.uint8).view(h, w, 3)
    return (t.permute(2, 0, 1).float() / 255.0).unsqueeze(0).contiguous()


# --- the attack, op for op as fool's SgdAttack::run ------------------------------------------
def project_quantized(x0, x, eps):
    m = math.floor(eps * 255.0 + 1e-6)
    k0 = (x0 * 255.0).round()
    lo = (k0 - m).clamp_min(0.0)
    hi = (k0 + m).clamp_max(255.0)
    k = (x.clamp(0.0, 1.0) * 255.0).round()
    return k.maximum(lo).minimum(hi) / 255.0


def attack(model, x0, target, steps, eps, lr, momentum, mean, std):
    """Returns the best 8-bit image's target probability (a sanity check against fool)."""
    x0 = x0.detach()
    r = torch.zeros_like(x0)
    r = (x0 + r).clamp(0.0, 1.0) - x0
    velocity = torch.zeros_like(x0)
    n = x0.shape[0]
    best_adv = x0.clone()
    best_success = torch.zeros(n, dtype=torch.bool)
    best_score = torch.full((n,), float("-inf"))
    for step in range(steps + 1):
        r_var = r.detach().requires_grad_(True)
        x = (x0 + r_var).clamp(0.0, 1.0)
        xq = project_quantized(x0, x, eps)
        x_ste = x + (xq - x).detach()
        logits = model((x_ste - mean) / std).float()
        reached = logits.argmax(-1) == target
        prob = logits.softmax(-1).gather(1, target.unsqueeze(1)).squeeze(1).detach()
        better = (reached & ~best_success) | ((reached == best_success) & (prob > best_score))
        best_adv = torch.where(better.view(-1, 1, 1, 1), xq.detach(), best_adv)
        best_success = torch.where(better, reached, best_success)
        best_score = torch.where(better, prob, best_score)
        loss = F.cross_entropy(logits, target, reduction="none")
        n_reached = int(best_success.sum())
        _ = (loss.mean().item(), prob.mean().item())  # what fool's progress display reads
        if step == steps:
            break
        (grad,) = torch.autograd.grad(loss.sum(), [r_var])
        velocity = velocity * momentum + grad
        r = r - velocity * lr  # no early stop: every image keeps moving
        r = r.clamp(-eps, eps)
        r = (x0 + r).clamp(0.0, 1.0) - x0
    del n_reached
    return float(best_score[0])


# --- fool ---------------------------------------------------------------------------------------
def run_fool(args, steps, threads):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    with tempfile.TemporaryDirectory(prefix="fool-bench-") as out:
        cmd = [args.fool, args.image, "--target", args.target_name, "--steps", str(steps),
               "--eps", args.eps, "--lr", str(args.lr), "--momentum", str(args.momentum),
               "--model", args.model, "--labels", args.labels, "--device", "cpu",
               "--no-early-stop", "--quiet", "--json", "--out", out]
        t0 = time.perf_counter()
        p = subprocess.run(cmd, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
    if p.returncode not in (0, 3):  # 3: finished without reaching the goal
        die(f"{' '.join(cmd)} exited with {p.returncode}:\n{p.stderr.strip()}")
    try:
        rec = json.loads(p.stdout)
    except json.JSONDecodeError:
        die(f"fool did not print a JSON record:\n{p.stdout[:500]}\n{p.stderr[:500]}")
    return rec, wall


def parse_eps(s):
    if "/" in s:
        a, b = s.split("/", 1)
        return float(a) / float(b)
    return float(s)


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def med(xs):
    return statistics.median(xs)


# --- other load on the machine ----------------------------------------------------------------
# Other processes on a small machine (a build, a test run) make both sides many times slower
# (OpenMP threads spin at barriers when oversubscribed). Each measurement records how much CPU
# the rest of the machine used meanwhile: the machine's busy time (/proc/stat) minus this
# process's and its children's. A measurement with more than --max-foreign of the machine's
# capacity used by others is discarded and repeated once the machine is quiet again.
HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def machine_busy_s():
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    # user nice system idle iowait irq softirq steal ...
    return (v[0] + v[1] + v[2] + v[5] + v[6] + (v[7] if len(v) > 7 else 0)) / HZ


def own_cpu_s():
    a = resource.getrusage(resource.RUSAGE_SELF)
    b = resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


class Load:
    def __init__(self, ncpu):
        self.ncpu = ncpu

    def start(self):
        self.t0, self.b0, self.o0 = time.perf_counter(), machine_busy_s(), own_cpu_s()

    def foreign(self):
        """Fraction of the machine's CPU capacity used by others since start()."""
        wall = time.perf_counter() - self.t0
        b1 = machine_busy_s()
        if b1 is None or self.b0 is None or wall <= 0:
            return 0.0
        return max(0.0, (b1 - self.b0) - (own_cpu_s() - self.o0)) / (wall * self.ncpu)

    def wait_quiet(self, limit, max_wait=300.0):
        """Wait (in 1 s windows) until others use less than `limit`; False on time-out."""
        t_end = time.monotonic() + max_wait
        while time.monotonic() < t_end:
            self.start()
            time.sleep(1.0)
            if self.foreign() < limit:
                return True
        return False


def main():
    try:
        ncpu = len(os.sched_getaffinity(0))
    except AttributeError:
        ncpu = os.cpu_count() or 1
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=5, help="repetitions (medians are reported)")
    ap.add_argument("--lo", type=int, default=10, help="low step count")
    ap.add_argument("--hi", type=int, default=60, help="high step count")
    ap.add_argument("--threads", type=int, default=ncpu, help="CPU threads for both (default: cores)")
    ap.add_argument("--fool", default=os.path.join(ROOT, "target", "release", "fool"))
    ap.add_argument("--model", default=os.path.join(ROOT, "assets", "model.pt"))
    ap.add_argument("--labels", default=os.path.join(ROOT, "assets", "imagenet_labels.json"))
    ap.add_argument("--image", default=os.path.join(ROOT, "assets", "dog.png"))
    ap.add_argument("--target-name", default="goldfish", help="target as given to fool")
    ap.add_argument("--target-index", type=int, default=1, help="the same target as an index")
    ap.add_argument("--eps", default="10/255")
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--max-foreign", type=float, default=0.05,
                    help="discard a measurement when other processes used more than this "
                         "fraction of the CPUs meanwhile (default 0.05; 1 disables)")
    ap.add_argument("--max-retries", type=int, default=10)
    args = ap.parse_args()
    if not (0 < args.lo < args.hi) or args.reps < 1 or args.threads < 1:
        die("need 0 < --lo < --hi, --reps >= 1 and --threads >= 1")
    for what, p in (("fool binary", args.fool), ("model", args.model),
                    ("labels", args.labels), ("image", args.image)):
        if not os.path.exists(p):
            hint = "cargo build --release" if what == "fool binary" else "bash scripts/setup/setup.sh"
            die(f"{what} {p} not found (run {hint})")
    eps = parse_eps(args.eps)

    torch.set_num_threads(args.threads)
    model = torch.jit.load(args.model, map_location="cpu").eval()
    x0 = load_pixels(args.image)
    if tuple(x0.shape[-2:]) != (224, 224):
        die(f"{args.image} is {tuple(x0.shape[-2:])}, expected 224x224 (used as is, no resize)")
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    target = torch.tensor([args.target_index])
    with torch.no_grad():
        p0 = model((x0 - mean) / std).float().softmax(-1)[0]
    top_p, top_i = p0.max(0)

    print("== fool vs PyTorch eager: single-image SGD attack step (CPU) ==")
    print(f"date:      {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    print(f"machine:   {cpu_model()}, {os.cpu_count()} logical CPUs ({ncpu} usable), "
          f"{platform.system()} {platform.release()}")
    print(f"python:    {platform.python_version()}, torch {torch.__version__}")
    print(f"threads:   {args.threads} (torch.get_num_threads() = {torch.get_num_threads()}; "
          f"fool: OMP_NUM_THREADS=MKL_NUM_THREADS={args.threads})")
    print(f"model:     {os.path.relpath(args.model, ROOT)} -> {os.path.realpath(args.model)}")
    print(f"image:     {os.path.relpath(args.image, ROOT)} {tuple(x0.shape)}, "
          f"top-1 class {int(top_i)} p={float(top_p):.4f} (PyTorch)")
    print(f"attack:    target {args.target_index} ({args.target_name}), eps {args.eps}, "
          f"lr {args.lr}, momentum {args.momentum}, no early stop; steps {args.lo} and {args.hi}, "
          f"{args.reps} repetitions")

    # Warm-up: the TorchScript profiling executor optimizes after the first runs; page cache.
    attack(model, x0, target, args.lo, eps, args.lr, args.momentum, mean, std)
    rec, _ = run_fool(args, args.lo, args.threads)
    if rec.get("target", {}).get("index") != args.target_index:
        die(f"fool resolved --target {args.target_name} to {rec.get('target')}, "
            f"not index {args.target_index}")
    fool_p0 = rec["original"]["top"][0]
    print(f"fool sees: top-1 class {fool_p0['index']} p={fool_p0['prob']:.4f} "
          f"(same preprocessing: {fool_p0['index'] == int(top_i) and abs(fool_p0['prob'] - float(top_p)) < 1e-4})")
    print()

    load = Load(ncpu)
    discarded = {"fool": 0, "py": 0}

    def measured(kind, fn):
        """Run fn() until it completes on a quiet machine; returns (result, wall seconds)."""
        for _ in range(args.max_retries + 1):
            if not load.wait_quiet(args.max_foreign):
                print("warning: the machine did not get quiet; measuring anyway", flush=True)
            load.start()
            t0 = time.perf_counter()
            out = fn()
            wall = time.perf_counter() - t0
            f = load.foreign()
            if f <= args.max_foreign:
                return out, wall
            discarded[kind] += 1
            print(f"  (discarded a {kind} run of {wall:.2f} s: other processes used "
                  f"{f:.0%} of the CPUs meanwhile)", flush=True)
        die(f"other processes kept the machine busy; {args.max_retries + 1} tries failed")

    res = {k: [] for k in ("fool_lo", "fool_hi", "wall_lo", "wall_hi", "py_lo", "py_hi")}
    probs = {"fool": None, "py": None}
    for rep in range(args.reps):
        for steps, tag in ((args.lo, "lo"), (args.hi, "hi")):
            (rec, wall), _ = measured("fool", lambda: run_fool(args, steps, args.threads))
            res[f"fool_{tag}"].append(rec["elapsed_s"])
            res[f"wall_{tag}"].append(wall)
            if tag == "hi":
                probs["fool"] = rec["goal_class_prob"]
            p, t = measured("py", lambda: attack(model, x0, target, steps, eps, args.lr,
                                                 args.momentum, mean, std))
            res[f"py_{tag}"].append(t)
            if tag == "hi":
                probs["py"] = p
        print(f"rep {rep + 1}/{args.reps}: fool elapsed_s {res['fool_lo'][-1]:.3f} / "
              f"{res['fool_hi'][-1]:.3f} s, wall {res['wall_lo'][-1]:.3f} / {res['wall_hi'][-1]:.3f} s; "
              f"pytorch loop {res['py_lo'][-1]:.3f} / {res['py_hi'][-1]:.3f} s "
              f"({args.lo} / {args.hi} steps)", flush=True)

    d = args.hi - args.lo
    per = {k: [(h - l) / d for l, h in zip(res[f"{k}_lo"], res[f"{k}_hi"])]
           for k in ("fool", "wall", "py")}
    rows = [("fool (elapsed_s in JSON)", "fool"), ("fool (process wall clock)", "wall"),
            ("PyTorch eager (loop)", "py")]
    print()
    print(f"{'':28} {'steps=' + str(args.lo):>10} {'steps=' + str(args.hi):>10} "
          f"{'per step':>10}   (medians of {args.reps}; per step = (t_hi - t_lo) / {d})")
    for name, k in rows:
        print(f"{name:28} {med(res[k + '_lo']):9.3f}s {med(res[k + '_hi']):9.3f}s "
              f"{med(per[k]) * 1e3:8.1f}ms")
    ratio = med(per["fool"]) / med(per["py"])
    ratio_wall = med(per["wall"]) / med(per["py"])
    print(f"per-step spread (min..max): fool {min(per['fool']) * 1e3:.1f}..{max(per['fool']) * 1e3:.1f} ms, "
          f"pytorch {min(per['py']) * 1e3:.1f}..{max(per['py']) * 1e3:.1f} ms")
    print(f"ratio fool/pytorch per step: {ratio:.3f} (elapsed_s), {ratio_wall:.3f} (wall clock)"
          f"  -> {'fool is no slower' if ratio <= 1.0 else 'fool is slower'}")
    print(f"measurements discarded for other load on the machine: fool {discarded['fool']}, "
          f"pytorch {discarded['py']} (threshold {args.max_foreign:.0%} of the CPUs)")
    print(f"after {args.hi} steps, p(target) of the best 8-bit image: fool {probs['fool']:.4f}, "
          f"pytorch {probs['py']:.4f}")


if __name__ == "__main__":
    main()
