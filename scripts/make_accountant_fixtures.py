#!/usr/bin/env python3
"""Write tests/fixtures/accountant_opacus.json: Opacus's privacy accountants on a table of
DP-SGD settings (Poisson-subsampled Gaussian), the reference for tests/accountant.rs.

Installs nothing: run it with a Python that has opacus (and torch) installed, e.g.
    .venv/bin/pip install opacus==1.6.0
    .venv/bin/python scripts/make_accountant_fixtures.py
"""
import json
import os
import sys
import time
import warnings

import opacus
from opacus.accountants import PRVAccountant, RDPAccountant
from opacus.accountants.utils import get_noise_multiplier

warnings.filterwarnings("ignore")  # "optimal order is the largest alpha" and the like

OUT = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "accountant_opacus.json"
)

MNIST_Q = 256 / 60000
CIFAR_Q = 256 / 50000

# (name, noise, sample_rate, steps, delta)
SETTINGS = [
    ("mnist_60ep", 1.1, MNIST_Q, int(60 / MNIST_Q), 1e-5),
    ("mnist_15ep", 1.1, MNIST_Q, int(15 / MNIST_Q), 1e-5),
    ("mnist_sigma0.7", 0.7, MNIST_Q, int(15 / MNIST_Q), 1e-5),
    ("mnist_sigma2", 2.0, MNIST_Q, int(60 / MNIST_Q), 1e-6),
    ("cifar_20ep", 1.1, CIFAR_Q, int(20 / CIFAR_Q), 1e-5),
    ("cifar_sigma1.5", 1.5, CIFAR_Q, int(50 / CIFAR_Q), 1e-5),
    ("cifar_sigma0.8", 0.8, CIFAR_Q, int(10 / CIFAR_Q), 1e-5),
    ("cifar_b1024", 1.0, 1024 / 50000, int(30 / (1024 / 50000)), 1e-5),
    ("q1_sigma1_1step", 1.0, 1.0, 1, 1e-5),
    ("q1_sigma2_10steps", 2.0, 1.0, 10, 1e-5),
    ("q1_sigma5_100steps", 5.0, 1.0, 100, 1e-6),
    ("q1_sigma3_1step", 3.0, 1.0, 1, 1e-6),
    ("q0.1_sigma0.5_10", 0.5, 0.1, 10, 1e-5),
    ("q0.1_sigma0.8_100", 0.8, 0.1, 100, 1e-5),
    ("q0.1_sigma1_1000", 1.0, 0.1, 1000, 1e-5),
    ("q0.1_sigma2_1", 2.0, 0.1, 1, 1e-5),
    ("q0.05_sigma1.3_2000", 1.3, 0.05, 2000, 1e-6),
    ("q0.01_sigma0.6_100", 0.6, 0.01, 100, 1e-5),
    ("q0.01_sigma1_10000", 1.0, 0.01, 10000, 1e-5),
    ("q0.01_sigma3_1000", 3.0, 0.01, 1000, 1e-5),
    ("q0.01_sigma5_1", 5.0, 0.01, 1, 1e-5),
    ("q0.001_sigma1_1000", 1.0, 0.001, 1000, 1e-5),
    ("q0.001_sigma0.9_50000", 0.9, 0.001, 50000, 1e-5),
    ("q0.001_sigma4_20000", 4.0, 0.001, 20000, 1e-6),
    ("q0.001_sigma0.5_100", 0.5, 0.001, 100, 1e-5),
    ("q1e-4_sigma0.7_100000", 0.7, 1e-4, 100000, 1e-5),
    ("q1e-4_sigma1_10000", 1.0, 1e-4, 10000, 1e-6),
    ("q1e-4_sigma2_1", 2.0, 1e-4, 1, 1e-5),
    ("q1e-4_sigma0.5_1000", 0.5, 1e-4, 1000, 1e-5),
    ("q0.02_sigma1.2_5000", 1.2, 0.02, 5000, 1e-5),
    ("q0.003_sigma1.5_30000", 1.5, 0.003, 30000, 1e-6),
    ("q0.2_sigma1_50", 1.0, 0.2, 50, 1e-5),
    ("q0.5_sigma2_200", 2.0, 0.5, 200, 1e-5),
    ("q0.004_sigma0.55_2000", 0.55, 0.004, 2000, 1e-5),
]

# (name, target_epsilon, sample_rate, epochs, delta, accountant)
NOISE = [
    ("mnist_eps3_rdp", 3.0, MNIST_Q, 60, 1e-5, "rdp"),
    ("mnist_eps3_prv", 3.0, MNIST_Q, 60, 1e-5, "prv"),
    ("mnist_eps1_rdp", 1.0, MNIST_Q, 15, 1e-5, "rdp"),
    ("mnist_eps1_prv", 1.0, MNIST_Q, 15, 1e-5, "prv"),
    ("cifar_eps8_rdp", 8.0, CIFAR_Q, 20, 1e-5, "rdp"),
    ("cifar_eps8_prv", 8.0, CIFAR_Q, 20, 1e-5, "prv"),
    ("q0.01_eps2_rdp", 2.0, 0.01, 10, 1e-6, "rdp"),
    ("q0.01_eps2_prv", 2.0, 0.01, 10, 1e-6, "prv"),
]


def main():
    rows = []
    for name, noise, q, steps, delta in SETTINGS:
        t0 = time.time()
        rdp = RDPAccountant()
        rdp.history = [(noise, q, steps)]
        eps_rdp, alpha = rdp.get_privacy_spent(delta=delta)
        t1 = time.time()
        prv = PRVAccountant()
        prv.history = [(noise, q, steps)]
        eps_prv = prv.get_epsilon(delta=delta)
        t2 = time.time()
        print(
            f"{name:28s} rdp {eps_rdp:10.5f} (alpha {alpha:5.1f}, {t1 - t0:5.2f}s)"
            f"  prv {eps_prv:10.5f} ({t2 - t1:5.2f}s)",
            file=sys.stderr,
        )
        rows.append(
            {
                "name": name,
                "noise": noise,
                "sample_rate": q,
                "steps": steps,
                "delta": delta,
                "rdp_epsilon": float(eps_rdp),
                "rdp_best_alpha": float(alpha),
                "prv_epsilon": float(eps_prv),
            }
        )
    noise_rows = []
    for name, target, q, epochs, delta, acc in NOISE:
        t0 = time.time()
        sigma = get_noise_multiplier(
            target_epsilon=target,
            target_delta=delta,
            sample_rate=q,
            epochs=epochs,
            accountant=acc,
        )
        print(f"{name:28s} sigma {sigma:.6f} ({time.time() - t0:5.2f}s)", file=sys.stderr)
        noise_rows.append(
            {
                "name": name,
                "target_epsilon": target,
                "sample_rate": q,
                "epochs": epochs,
                "steps": int(epochs / q),
                "delta": delta,
                "accountant": acc,
                "noise": float(sigma),
            }
        )
    doc = {
        "source": "scripts/make_accountant_fixtures.py",
        "opacus_version": opacus.__version__,
        "note": "RDPAccountant.get_privacy_spent (DEFAULT_ALPHAS), PRVAccountant.get_epsilon "
        "(eps_error=0.01, delta_error=delta/1000; the upper bound), get_noise_multiplier "
        "(epsilon_tolerance=0.01, steps=int(epochs/sample_rate))",
        "epsilon": rows,
        "noise_multiplier": noise_rows,
    }
    with open(OUT, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"wrote {os.path.normpath(OUT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
