#!/usr/bin/env python3
"""Write tests/fixtures/audit_sklearn.json: membership-inference metrics computed by
scikit-learn, for tests/audit.rs to compare `fool::audit` against.

Each score set has member scores (positives) and non-member scores (higher = more likely a
member), with the metrics of `fool::audit::metrics`, computed from scikit-learn's
`roc_curve(y, s, drop_intermediate=False)`:

* auc: `roc_auc_score`;
* advantage: max(tpr - fpr);
* tpr_at_fpr_0.001 / 0.01: max(tpr[fpr <= alpha]) (no interpolation);
* balanced_accuracy: max((tpr + 1 - fpr) / 2).

Plus one logistic-regression problem fitted by scikit-learn (L2, C given, intercept not
penalized) to check `fool::audit::attacks::LogisticRegression`.

Needs numpy and scikit-learn (`.venv/bin/pip install scikit-learn`); the output is
committed, so the tests do not need them.

    .venv/bin/python scripts/make_audit_fixtures.py
"""
import json
import pathlib

import numpy as np
import sklearn
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score, roc_curve

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "audit_sklearn.json"


def metrics(members, nonmembers):
    y = np.concatenate([np.ones(len(members)), np.zeros(len(nonmembers))])
    s = np.concatenate([members, nonmembers])
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    return {
        "auc": float(roc_auc_score(y, s)),
        "advantage": float(np.max(tpr - fpr)),
        "tpr_at_fpr_0.001": float(np.max(tpr[fpr <= 0.001])),
        "tpr_at_fpr_0.01": float(np.max(tpr[fpr <= 0.01])),
        "balanced_accuracy": float(np.max((tpr + 1 - fpr) / 2)),
    }, fpr, tpr


def case(name, members, nonmembers, with_roc=False):
    members = [float(v) for v in members]
    nonmembers = [float(v) for v in nonmembers]
    m, fpr, tpr = metrics(np.array(members), np.array(nonmembers))
    c = {"name": name, "members": members, "nonmembers": nonmembers, **m}
    if with_roc:
        c["fpr"] = [float(v) for v in fpr]
        c["tpr"] = [float(v) for v in tpr]
    return c


def main():
    cases = []
    rng = np.random.default_rng(11)
    cases.append(case("small_ties", np.round(rng.normal(0.3, 1, 60), 1),
                      np.round(rng.normal(0, 1, 80), 1), with_roc=True))
    rng = np.random.default_rng(12)
    cases.append(case("normal_rounded", np.round(rng.normal(0.5, 1, 700), 3),
                      np.round(rng.normal(0, 1, 700), 3)))
    rng = np.random.default_rng(13)
    cases.append(case("integer_ties", rng.binomial(9, 0.55, 900),
                      rng.binomial(9, 0.45, 400)))
    cases.append(case("all_equal", np.ones(200), np.ones(300), with_roc=True))
    rng = np.random.default_rng(14)
    cases.append(case("imbalanced_many_members", np.round(rng.normal(1, 1, 1500), 2),
                      np.round(rng.normal(0, 1, 120), 2)))
    rng = np.random.default_rng(15)
    cases.append(case("imbalanced_many_nonmembers", np.round(rng.normal(1.5, 1, 100), 3),
                      np.round(rng.normal(0, 1, 1800), 3)))
    rng = np.random.default_rng(16)
    cases.append(case("separable", np.round(rng.uniform(2, 3, 200), 3),
                      np.round(rng.uniform(0, 1, 250), 3)))
    rng = np.random.default_rng(17)
    # Loss-like scores: −loss with many members at exactly 0 and a long tail.
    ml = np.where(rng.uniform(size=600) < 0.3, 0.0, np.round(rng.exponential(0.5, 600), 3))
    nl = np.where(rng.uniform(size=500) < 0.1, 0.0, np.round(rng.exponential(1.0, 500), 3))
    cases.append(case("loss_like", -ml, -nl))

    rng = np.random.default_rng(21)
    n, d = 300, 4
    y = rng.uniform(size=n) < 0.5
    x = rng.normal(size=(n, d)) + np.outer(y, [0.8, -0.3, 0.0, 0.5])
    x = np.round(x, 4)
    c = 0.5
    lr = LogisticRegression(C=c, solver="newton-cholesky", tol=1e-14, max_iter=1000).fit(x, y)
    logistic = {
        "c": c,
        "d": d,
        "x": [float(v) for v in x.ravel()],
        "y": [bool(v) for v in y],
        "coef": [float(v) for v in lr.coef_[0]],
        "intercept": float(lr.intercept_[0]),
        "proba": [float(v) for v in lr.predict_proba(x)[:, 1]],
    }

    data = {
        "generator": "scripts/make_audit_fixtures.py",
        "sklearn": sklearn.__version__,
        "numpy": np.__version__,
        "cases": cases,
        "logistic": logistic,
    }
    OUT.write_text(json.dumps(data, separators=(",", ":")) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes, {len(cases)} score sets)")


if __name__ == "__main__":
    main()
