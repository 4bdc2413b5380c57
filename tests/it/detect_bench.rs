//! `fool bench --detector`: feature squeezing calibrated on 30 ImageNet samples with MobileNetV2,
//! then PGD on 8 other samples — per-row scores, the summary's detection statistics recomputed
//! from results.jsonl, the clean false-positive rate on the calibration images, a detector of
//! another model refused, runs without a detector unchanged, and the adaptive attack (He et al.
//! 2017) evading the detector that catches the non-adaptive one.
use crate::common::{asset, fool, ok, ok_json};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Calibrate on the first 30 samples (batches of 8, as the bench below takes them).
fn calibrate(dir: &Path) -> PathBuf {
    let det = dir.join("detector.json");
    ok(fool()
        .args(["detect", "calibrate"])
        .arg(asset("imagenet-samples"))
        .args(["--squeezers", "bits:5,median:3,jpeg:75", "--fpr", "0.1"])
        .args(["--limit", "30", "--batch", "8", "--quiet", "--out"])
        .arg(&det));
    det
}

/// A folder of the samples `lo..hi` (in labels.csv order), linked, with their labels.
fn subset(dir: &Path, lo: usize, hi: usize) -> PathBuf {
    let src = asset("imagenet-samples");
    let out = dir.join("images");
    std::fs::create_dir_all(&out).unwrap();
    let text = std::fs::read_to_string(src.join("labels.csv")).unwrap();
    let mut lines = text.lines();
    let mut csv = format!("{}\n", lines.next().unwrap());
    for line in lines.skip(lo).take(hi - lo) {
        let file = line.split(',').nth(2).unwrap();
        std::os::unix::fs::symlink(src.join(file), out.join(file)).unwrap();
        csv.push_str(line);
        csv.push('\n');
    }
    std::fs::write(out.join("labels.csv"), csv).unwrap();
    out
}

fn bench(images: &Path, out: &Path, detector: Option<&Path>, extra: &[&str]) -> Value {
    let mut cmd = fool();
    cmd.arg("bench").arg(images);
    cmd.args([
        "--model",
        "assets/model.pt",
        "--batch",
        "8",
        "--json",
        "--out",
    ]);
    cmd.arg(out).args(extra);
    if let Some(det) = detector {
        cmd.arg("--detector").arg(det);
    }
    ok_json(&mut cmd)
}

fn rows(out: &Path) -> Vec<Value> {
    std::fs::read_to_string(out.join("results.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

const DETECTOR_FIELDS: [&str; 4] = ["detector_score", "flagged", "clean_score", "clean_flagged"];

#[test]
fn detection_rates_from_the_rows_and_the_adaptive_attack_evades() {
    let d = tempfile::tempdir().unwrap();
    let det = calibrate(d.path());
    let images = subset(d.path(), 40, 48);
    let out = d.path().join("bench");
    let summary = bench(
        &images,
        &out,
        Some(&det),
        &["--attack", "pgd", "--eps", "2/255,4/255", "--adaptive"],
    );
    let detector: Value = serde_json::from_str(&std::fs::read_to_string(&det).unwrap()).unwrap();
    let threshold = detector["threshold"].as_f64().unwrap();
    let rows = rows(&out);
    assert_eq!(rows.len(), 8 * 2 * 2, "8 images × 2 eps × 2 modes");
    for r in &rows {
        let s = r["detector_score"].as_f64().expect("a score");
        assert_eq!(r["flagged"].as_bool().unwrap(), s > threshold, "{r}");
        let c = r["clean_score"].as_f64().expect("a clean score");
        assert_eq!(r["clean_flagged"].as_bool().unwrap(), c > threshold, "{r}");
    }
    let mut rate = std::collections::HashMap::new();
    for s in summary.as_array().unwrap() {
        let (eps, mode) = (s["eps"].as_f64().unwrap(), s["mode"].as_str().unwrap());
        let mine: Vec<&Value> = (rows.iter())
            .filter(|r| r["eps"].as_f64() == Some(eps) && r["mode"] == mode)
            .collect();
        let correct: Vec<&&Value> = mine
            .iter()
            .filter(|r| r["clean_pred"] == r["label"])
            .collect();
        let succ: Vec<&&&Value> = correct.iter().filter(|r| r["success"] == true).collect();
        let flagged = succ.iter().filter(|r| r["flagged"] == true).count();
        let clean_flagged = mine.iter().filter(|r| r["clean_flagged"] == true).count();
        assert_eq!(s["successes"].as_u64().unwrap() as usize, succ.len());
        assert_eq!(s["detected"].as_u64().unwrap() as usize, flagged);
        let want = if succ.is_empty() {
            0.0
        } else {
            flagged as f64 / succ.len() as f64
        };
        assert_eq!(s["detection_rate"].as_f64().unwrap(), want, "{s}");
        let (lo, hi) = fool::bench::wilson(flagged, succ.len());
        assert_eq!(
            (
                s["detection_ci_low"].as_f64().unwrap(),
                s["detection_ci_high"].as_f64().unwrap()
            ),
            (lo, hi)
        );
        assert_eq!(
            s["clean_fpr"].as_f64().unwrap(),
            clean_flagged as f64 / mine.len() as f64
        );
        assert_eq!(
            s["undetected_success_rate"].as_f64().unwrap(),
            (succ.len() - flagged) as f64 / correct.len() as f64
        );
        rate.insert(
            (s["eps"].to_string(), mode.to_string()),
            (
                s["detection_rate"].as_f64().unwrap(),
                s["undetected_success_rate"].as_f64().unwrap(),
            ),
        );
    }
    // The known result (He et al. 2017): the detector catches most non-adaptive adversarial
    // examples; the attack that also minimises its score is (nearly) never flagged, and
    // succeeds undetected more often.
    for eps in [2.0 / 255.0, 4.0 / 255.0] {
        let e = Value::from(eps).to_string();
        let (na, ad) = (
            &rate[&(e.clone(), "non-adaptive".into())],
            &rate[&(e, "adaptive".into())],
        );
        assert!(
            na.0 >= 0.7,
            "non-adaptive detection rate {} at eps {eps}",
            na.0
        );
        assert!(
            ad.0 < na.0,
            "adaptive {} vs non-adaptive {} at eps {eps}",
            ad.0,
            na.0
        );
        assert!(
            ad.1 > na.1,
            "undetected success: adaptive {} vs non-adaptive {}",
            ad.1,
            na.1
        );
    }
}

#[test]
fn clean_fpr_on_the_calibration_images_is_at_most_the_calibrated_rate() {
    let d = tempfile::tempdir().unwrap();
    let det = calibrate(d.path());
    // eps 0: nothing fits in the budget, so no attack runs; the clean images are scored in
    // the batches calibration scored them in.
    let out = d.path().join("bench");
    let summary = bench(
        &asset("imagenet-samples"),
        &out,
        Some(&det),
        &["--limit", "30", "--attack", "pgd", "--eps", "0"],
    );
    let s = &summary.as_array().unwrap()[0];
    let detector: Value = serde_json::from_str(&std::fs::read_to_string(&det).unwrap()).unwrap();
    let fpr = s["clean_fpr"].as_f64().unwrap();
    assert!(fpr <= 0.1, "clean FPR {fpr} on the calibration images");
    assert_eq!(fpr, detector["achieved_fpr"].as_f64().unwrap());
}

#[test]
fn a_detector_of_another_model_is_refused_and_no_detector_changes_nothing() {
    let d = tempfile::tempdir().unwrap();
    let det = calibrate(d.path());
    let images = subset(d.path(), 40, 44);
    // Another model: the same file with another model hash.
    let mut other: Value = serde_json::from_str(&std::fs::read_to_string(&det).unwrap()).unwrap();
    other["model"]["sha256"] = Value::from("ab".repeat(32));
    let other_path = d.path().join("other.json");
    std::fs::write(&other_path, other.to_string()).unwrap();
    let out = fool()
        .arg("bench")
        .arg(&images)
        .args([
            "--model",
            "assets/model.pt",
            "--attack",
            "fgsm",
            "--eps",
            "2/255",
        ])
        .arg("--out")
        .arg(d.path().join("refused"))
        .arg("--detector")
        .arg(&other_path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--detector")
            && err.contains("another model")
            && err.trim().lines().count() == 1,
        "{err}"
    );

    // The same run with and without a detector: the rows agree but for the detector's fields,
    // which a run without one does not write (nor bench.json its detector, nor the summary).
    let args = ["--attack", "fgsm", "--eps", "0,2/255"];
    let (plain, scored) = (d.path().join("plain"), d.path().join("scored"));
    let s_plain = bench(&images, &plain, None, &args);
    let s_scored = bench(&images, &scored, Some(&det), &args);
    let (a, b) = (rows(&plain), rows(&scored));
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        let mut y = y.clone();
        for f in DETECTOR_FIELDS {
            assert!(x.get(f).is_none(), "{x}");
            assert!(y.as_object_mut().unwrap().remove(f).is_some(), "{y}");
        }
        assert_eq!(*x, y);
    }
    let cfg = std::fs::read_to_string(plain.join("bench.json")).unwrap();
    assert!(!cfg.contains("detector"), "{cfg}");
    assert!(std::fs::read_to_string(scored.join("bench.json"))
        .unwrap()
        .contains("\"detector\""));
    for s in s_plain.as_array().unwrap() {
        assert!(
            s.get("detection_rate").is_none() && s.get("clean_fpr").is_none(),
            "{s}"
        );
    }
    for s in s_scored.as_array().unwrap() {
        assert!(s.get("detection_rate").is_some(), "{s}");
    }
    let csv = std::fs::read_to_string(plain.join("summary.csv")).unwrap();
    assert!(!csv.contains("detection_rate"));
}
