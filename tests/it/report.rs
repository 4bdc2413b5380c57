//! `fool train --audit-every` and `fool report privacy`.

use crate::common::{fool, ok, ok_json};
use fool::audit::{audit_logits, AuditOptions};
use fool::datasets::{self, DatasetName, Split};
use std::path::Path;
use tch::{CModule, Device, Kind, Tensor};

fn train(out: &Path, extra: &[&str]) -> serde_json::Value {
    ok_json(
        fool()
            .args("train --dataset mnist --limit 600 --epochs 4 --batch 30".split(' '))
            .args([
                "--lr",
                "0.02",
                "--audit-every",
                "2",
                "--audit-examples",
                "500",
                "--samples",
                "40",
            ])
            .args(["--json", "--out"])
            .arg(out)
            .args(extra),
    )
}

/// Logits of an exported model on rows `idx` of a split.
fn logits(model: &Path, ds: &datasets::TensorDataset, idx: &Tensor) -> Tensor {
    let m = CModule::load(model).unwrap();
    let x = ds.pixels(idx, Device::Cpu).expand([-1, 3, -1, -1], false);
    tch::no_grad(|| m.forward_ts(&[x]).unwrap())
}

#[test]
fn audits_during_training_and_the_privacy_report() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain");
    let private = dir.path().join("private");
    let mp = train(&plain, &[]);
    let md = train(&private, &["--dp", "--noise", "1.0"]);
    for meta in [&mp, &md] {
        let h = meta["history"].as_array().unwrap();
        let audited: Vec<u64> = h
            .iter()
            .filter(|r| r.get("audit").is_some())
            .map(|r| r["epoch"].as_u64().unwrap())
            .collect();
        assert_eq!(audited, vec![2, 4]);
        let rows = h[3]["audit"].as_array().unwrap();
        let attacks: Vec<&str> = rows.iter().map(|r| r["attack"].as_str().unwrap()).collect();
        assert_eq!(
            attacks,
            [
                "threshold-loss",
                "threshold-confidence",
                "threshold-entropy",
                "logistic-regression"
            ]
        );
        assert_eq!(rows[0]["n_members"], 500);
        assert_eq!(rows[0]["n_nonmembers"], 500);
    }
    // The final audit equals an audit of the exported model on the same examples.
    let train_ds = datasets::load(
        DatasetName::Mnist,
        &DatasetName::Mnist.default_dir(),
        Split::Train,
    )
    .unwrap();
    let test_ds = datasets::load(
        DatasetName::Mnist,
        &DatasetName::Mnist.default_dir(),
        Split::Test,
    )
    .unwrap();
    let idx = Tensor::arange(500, (Kind::Int64, Device::Cpu));
    let model = plain.join("model.pt");
    let rows = audit_logits(
        &logits(&model, &train_ds, &idx),
        &train_ds.labels_at(&idx, Device::Cpu),
        &logits(&model, &test_ds, &idx),
        &test_ds.labels_at(&idx, Device::Cpu),
        &AuditOptions {
            seed: 0,
            ..Default::default()
        },
    )
    .unwrap();
    let recorded = mp["history"][3]["audit"].as_array().unwrap();
    for (want, got) in rows.iter().zip(recorded) {
        let auc = got["auc"].as_f64().unwrap();
        assert!(
            (auc - want.auc).abs() < 1e-3,
            "{}: {auc} vs {}",
            want.attack,
            want.auc
        );
    }

    // Robustness of the plain run, from `fool bench` on its exported samples.
    ok(fool()
        .arg("bench")
        .arg(plain.join("samples"))
        .arg("--model")
        .arg(plain.join("model.pt"))
        .args(["--attack", "fgsm", "--eps", "0,0.1,0.2", "--quiet", "--out"])
        .arg(plain.join("bench")));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(plain.join("bench/summary.json")).unwrap())
            .unwrap();
    let at_01 = summary
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["eps"].as_f64() == Some(0.1))
        .unwrap()["robust_accuracy"]
        .clone();

    let out = dir.path().join("report");
    let rep = ok_json(
        fool()
            .args(["report", "privacy"])
            .arg(&plain)
            .arg(&private)
            .arg("--out")
            .arg(&out)
            .arg("--json"),
    );
    let rows = rep.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["run"], "plain");
    assert_eq!(rows[0]["private"], false);
    assert!(rows[0]["epsilon"].is_null());
    assert_eq!(rows[1]["private"], true);
    assert_eq!(rows[0]["robust_accuracy"], at_01, "smallest non-zero eps");
    assert_eq!(rows[0]["robust_eps"], 0.1);
    assert!(
        rows[1]["robust_accuracy"].is_null(),
        "no bench for the DP run"
    );
    assert_eq!(rows[1]["epsilon"], md["epsilon"]);
    for (row, meta) in rows.iter().zip([&mp, &md]) {
        let last = meta["history"][3]["audit"].as_array().unwrap();
        let best = last
            .iter()
            .map(|r| r["auc"].as_f64().unwrap())
            .fold(0.0, f64::max);
        assert_eq!(row["best_auc"].as_f64().unwrap(), best);
        assert_eq!(row["test_accuracy"], meta["test_accuracy"]);
    }
    for f in [
        "privacy_by_epoch.png",
        "privacy_by_epoch.svg",
        "privacy_vs_utility.png",
        "privacy_vs_utility.svg",
        "privacy_report.csv",
        "privacy_report.json",
    ] {
        assert!(out.join(f).is_file(), "{f}");
    }
    let csv = std::fs::read_to_string(out.join("privacy_report.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3);
    assert!(csv.lines().nth(1).unwrap().starts_with("plain,mnist,"));
    assert!(
        csv.lines().nth(1).unwrap().contains(",inf,"),
        "non-private ε is inf: {csv}"
    );

    // Not a run folder: one clear error, nothing written.
    let out2 = dir.path().join("report2");
    let o = fool()
        .args(["report", "privacy"])
        .arg(dir.path())
        .arg("--out")
        .arg(&out2)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("metadata.json") && err.trim().lines().count() == 1,
        "{err}"
    );
    assert!(!out2.exists());
}

/// `fool report robustness`: a plain and an adversarially trained run evaluated with the same
/// attack at the same eps (the adversarial run's) on their test split: robust accuracy within
/// its interval and below the clean accuracy, the adversarial run the more robust, membership
/// numbers from the audits; the evaluation is kept in RUN/robustness and reused; CSV, JSON and
/// the chart are written; bad settings are refused.
#[test]
fn the_robustness_report_evaluates_each_run_once_and_tables_it() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain");
    let at = dir.path().join("at");
    train(&plain, &["--arch", "wong-cnn"]);
    train(
        &at,
        &[
            "--arch",
            "wong-cnn",
            "--adversarial",
            "fgsm-rs",
            "--adv-eps",
            "0.1",
            "--adv-eval",
            "50",
        ],
    );
    let out = dir.path().join("report");
    let report = || {
        let mut c = fool();
        c.args(["report", "robustness"])
            .arg(&plain)
            .arg(&at)
            .args([
                "--attack",
                "pgd",
                "--examples",
                "60",
                "--batch",
                "30",
                "--json",
                "--out",
            ])
            .arg(&out);
        c
    };
    let rows = ok_json(&mut report());
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for r in rows {
        let f = |k: &str| r[k].as_f64().unwrap();
        assert_eq!(
            r["eps"].as_f64().unwrap(),
            0.1,
            "the adversarial run's eps: {r}"
        );
        assert_eq!(r["n"], 60);
        assert!(
            f("robust_ci_low") <= f("robust_accuracy")
                && f("robust_accuracy") <= f("robust_ci_high")
        );
        assert!(f("robust_accuracy") <= f("clean_accuracy"), "{r}");
        assert!(
            r["epsilon"].is_null() && r["membership_auc"].as_f64().is_some(),
            "{r}"
        );
        assert!(f("train_seconds") > 0.0);
    }
    assert!(rows[0]["adversarial"].is_null());
    assert_eq!(rows[1]["adversarial"], "fgsm-rs eps 0.1000");
    assert!(
        rows[1]["robust_accuracy"].as_f64() > rows[0]["robust_accuracy"].as_f64(),
        "{rows:?}"
    );
    for f in [
        "robustness_report.csv",
        "robustness_report.json",
        "robust_vs_privacy.png",
        "robust_vs_privacy.svg",
    ] {
        assert!(out.join(f).is_file(), "{f}");
    }
    let cached = plain
        .join("robustness")
        .join(format!("pgd-eps{}-n60", fool::bench::eps_key(0.1)));
    let results = std::fs::read_to_string(cached.join("results.jsonl")).unwrap();
    assert_eq!(results.lines().count(), 60);
    // A second report reuses the evaluations: the same rows, nothing attacked again.
    let again = ok_json(&mut report());
    assert_eq!(
        again.as_array().unwrap()[0]["robust_accuracy"],
        rows[0]["robust_accuracy"]
    );
    assert_eq!(
        std::fs::read_to_string(cached.join("results.jsonl")).unwrap(),
        results
    );
    // The privacy report now also shows the robust accuracy it measured.
    let p = ok_json(
        fool()
            .args(["report", "privacy"])
            .arg(&at)
            .args(["--json", "--out"])
            .arg(dir.path().join("p")),
    );
    assert_eq!(p[0]["robust_accuracy"], rows[1]["robust_accuracy"]);
    for (extra, says) in [
        (vec!["--examples", "0"], "--examples"),
        (vec!["--eps", "2"], "--eps"),
    ] {
        let o = fool()
            .args(["report", "robustness"])
            .arg(&plain)
            .args(&extra)
            .args(["--out"])
            .arg(dir.path().join("bad"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success() && err.contains(says),
            "{extra:?}: {err}"
        );
    }
}
