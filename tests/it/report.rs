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
