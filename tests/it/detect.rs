//! `fool detect`: feature squeezing calibrated on the ImageNet samples with MobileNetV2, scores
//! read back with `fool detect score`, adversarial examples from fool's own attack, and bad input.
use crate::common::{asset, fool, json, ok, ok_json, tiny_model};
use fool::attacks::{registry, Budget, Goal};
use fool::datasets::{image_folder, load_batch};
use fool::model::Classifier;
use fool::preprocess::Preprocess;
use std::path::{Path, PathBuf};
use tch::Device;

const SQUEEZERS: &str = "bits:5,median:3,jpeg:75";

/// The first `n` sample images, in the order `fool detect calibrate` takes them.
fn samples(skip: usize, n: usize) -> Vec<PathBuf> {
    image_folder(&asset("imagenet-samples"), None)
        .unwrap()
        .into_iter()
        .skip(skip)
        .take(n)
        .map(|it| it.path)
        .collect()
}

fn calibrate(out: &Path, limit: usize, fpr: &str) -> serde_json::Value {
    ok_json(
        fool()
            .args(["detect", "calibrate"])
            .arg(asset("imagenet-samples"))
            .args([
                "--squeezers",
                SQUEEZERS,
                "--fpr",
                fpr,
                "--limit",
                &limit.to_string(),
                "--batch",
                "8",
                "--json",
                "--out",
            ])
            .arg(out),
    )
}

/// `fool detect score --json` on `images`: (score, flagged) per image. Batches of 8, as
/// `calibrate` runs: the same images in the same batches give bit-identical scores.
fn score(detector: &Path, images: &[PathBuf]) -> Vec<(f64, bool)> {
    let v = ok_json(
        fool()
            .args(["detect", "score", "--json", "--batch", "8", "--detector"])
            .arg(detector)
            .args(images),
    );
    let rows = v["images"].as_array().unwrap();
    assert_eq!(rows.len(), images.len());
    rows.iter()
        .map(|r| {
            (
                r["score"].as_f64().unwrap(),
                r["flagged"].as_bool().unwrap(),
            )
        })
        .collect()
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// Calibration on 40 clean images at fpr 0.1, checked against the scores `detect score`
/// reports for the same images; then BIM adversarial examples (L∞ 2/255, 10 steps, early stop,
/// untargeted) of 8 other images, saved as PNGs and scored: feature squeezing separates them.
#[test]
fn calibration_threshold_and_adversarial_examples() {
    let d = tempfile::tempdir().unwrap();
    let det = d.path().join("detector.json");
    let fpr = 0.1;
    let cal = calibrate(&det, 40, "0.1");
    assert_eq!(cal["format"], "fool-detector/1");
    assert_eq!(cal["n"], 40);
    let threshold = cal["threshold"].as_f64().unwrap();
    let achieved = cal["achieved_fpr"].as_f64().unwrap();
    assert!(achieved <= fpr, "achieved {achieved} > {fpr}");

    // Adversarial examples with fool's own attack, on images outside the calibration set.
    let model = Classifier::load(&asset("model.pt"), Device::Cpu, Preprocess::default()).unwrap();
    let items = &image_folder(&asset("imagenet-samples"), None).unwrap()[40..48];
    let batch = load_batch(&model, items);
    let preds: Vec<usize> = Vec::<i64>::try_from(model.probs(&batch.x).unwrap().argmax(-1, false))
        .unwrap()
        .into_iter()
        .map(|p| p as usize)
        .collect();
    let goal = Goal::new(None, &preds, Device::Cpu);
    let attack = registry::build("bim", Some(10), true).unwrap();
    let out = attack
        .run(
            &model,
            &batch.x,
            &goal,
            Budget::linf(2.0 / 255.0),
            &mut |_| {},
        )
        .unwrap();
    let mut adv_paths = vec![];
    for (i, ok) in out.success.iter().enumerate() {
        if *ok {
            let p = d.path().join(format!("adv{i}.png"));
            fool::imageio::save_png(&fool::imageio::tensor_to_rgb(&out.adv.get(i as i64)), &p)
                .unwrap();
            adv_paths.push(p);
        }
    }
    assert!(
        adv_paths.len() >= 6,
        "only {} of 8 attacks succeeded",
        adv_paths.len()
    );
    // One `detect score` run for the clean and the adversarial images (one model load).
    let all: Vec<PathBuf> = samples(0, 40)
        .into_iter()
        .chain(adv_paths.iter().cloned())
        .collect();
    let mut clean = score(&det, &all);
    let adv = clean.split_off(40);

    // The rule, computed here: k = ⌊0.1·40⌋ = 4 scores may lie above the threshold, so it is
    // the 36th smallest score.
    let mut sorted: Vec<f64> = clean.iter().map(|s| s.0).collect();
    sorted.sort_by(f64::total_cmp);
    assert_eq!(threshold, sorted[40 - 4 - 1], "threshold is not the rule's");
    let flagged = clean.iter().filter(|s| s.1).count();
    assert_eq!(flagged as f64 / 40.0, achieved);
    assert!(clean.iter().all(|s| s.1 == (s.0 > threshold)));
    let clean_scores: Vec<f64> = clean.iter().map(|s| s.0).collect();

    let adv_scores: Vec<f64> = adv.iter().map(|s| s.0).collect();
    let detected = adv.iter().filter(|s| s.1).count() as f64 / adv.len() as f64;
    eprintln!(
        "detect: clean mean {:.4} (n 40), adversarial mean {:.4} (n {}), threshold {threshold:.4}, \
         achieved fpr {achieved}, detection rate {detected:.3}",
        mean(&clean_scores),
        mean(&adv_scores),
        adv.len()
    );
    assert!(
        mean(&adv_scores) > mean(&clean_scores) + 0.5,
        "adversarial mean {} not clearly above clean mean {}",
        mean(&adv_scores),
        mean(&clean_scores)
    );
    assert!(detected >= 0.75, "detection rate {detected}");
}

/// The same calibration twice writes the same bytes (the file has no timing fields).
#[test]
fn calibration_is_deterministic() {
    let d = tempfile::tempdir().unwrap();
    let (a, b) = (d.path().join("a.json"), d.path().join("b.json"));
    for p in [&a, &b] {
        ok(fool()
            .args(["detect", "calibrate", "-q"])
            .arg(asset("imagenet-samples"))
            .args([
                "--limit",
                "6",
                "--batch",
                "4",
                "--squeezers",
                SQUEEZERS,
                "--out",
            ])
            .arg(p));
    }
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&a).unwrap()).unwrap();
    assert_eq!(v["n"], 6);
    assert_eq!(v["fpr"], 0.05);
    assert_eq!(
        v["squeezers"],
        serde_json::json!(["bits:5", "median:3", "jpeg:75"])
    );
    assert_eq!(v["model"]["num_classes"], 1000);
    assert_eq!(
        v["model"]["sha256"],
        fool::model::sha256_file(&asset("model.pt")).unwrap()
    );
}

/// A failed command: exit code 1, one line on stderr containing each of `needles`, nothing on
/// stdout.
fn fails(cmd: &mut assert_cmd::Command, needles: &[&str]) {
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{cmd:?}: {err}");
    assert!(out.stdout.is_empty(), "{cmd:?} printed {:?}", json(&out));
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    for n in needles {
        assert!(err.contains(n), "{cmd:?}: {err:?} lacks {n:?}");
    }
}

#[test]
fn bad_calibration_input_writes_nothing() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("sub/detector.json");
    let empty = d.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let samples = asset("imagenet-samples");
    let cases: Vec<(Vec<&str>, &Path, Vec<&str>)> = vec![
        (
            vec!["--squeezers", "sharpen:3"],
            &samples,
            vec!["--squeezers", "unknown defense"],
        ),
        (
            vec!["--squeezers", "bits:5,noise:0.1"],
            &samples,
            vec!["--squeezers", "random"],
        ),
        (vec!["--fpr", "1.5"], &samples, vec!["--fpr", "[0, 1)"]),
        (vec!["--limit", "0"], &samples, vec!["--limit"]),
        (
            vec![],
            Path::new("/nonexistent/folder"),
            vec!["/nonexistent/folder"],
        ),
        (vec![], &empty, vec![empty.to_str().unwrap(), "labels.csv"]),
    ];
    for (args, dir, needles) in cases {
        fails(
            fool()
                .args(["detect", "calibrate"])
                .arg(dir)
                .args(&args)
                .arg("--out")
                .arg(&out),
            &needles,
        );
        assert!(!d.path().join("sub").exists(), "{args:?} wrote something");
    }
}

#[test]
fn bad_detector_files_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let good = d.path().join("good.json");
    ok(fool()
        .args(["detect", "calibrate", "-q"])
        .arg(asset("imagenet-samples"))
        .args(["--limit", "2", "--out"])
        .arg(&good));
    let dog = asset("dog.png");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&good).unwrap()).unwrap();
    // The good file scores.
    let s = score(&good, std::slice::from_ref(&dog));
    assert!(s[0].0.is_finite());

    let edit = |name: &str, f: &dyn Fn(&mut serde_json::Value)| -> PathBuf {
        let mut w = v.clone();
        f(&mut w);
        let p = d.path().join(name);
        std::fs::write(&p, serde_json::to_string_pretty(&w).unwrap()).unwrap();
        p
    };
    let text = std::fs::read_to_string(&good).unwrap();
    let nan = d.path().join("nan-literal.json");
    let thr = format!("\"threshold\": {}", v["threshold"]);
    assert!(text.contains(&thr));
    std::fs::write(&nan, text.replace(&thr, "\"threshold\": NaN")).unwrap();
    let cases: Vec<(PathBuf, Vec<&str>)> = vec![
        (
            edit("version.json", &|w| w["format"] = "fool-detector/9".into()),
            vec!["field format"],
        ),
        (
            edit("null.json", &|w| w["threshold"] = serde_json::Value::Null),
            vec!["field threshold"],
        ),
        (
            edit("neg.json", &|w| w["threshold"] = (-1.0).into()),
            vec!["field threshold"],
        ),
        (nan, vec!["not valid JSON"]),
        (
            edit("unknown.json", &|w| w["squeezers"][0] = "sharpen:3".into()),
            vec!["field squeezers"],
        ),
        (
            edit("random.json", &|w| w["squeezers"][0] = "noise:0.1".into()),
            vec!["field squeezers", "random"],
        ),
        (
            edit("fpr.json", &|w| w["fpr"] = 1.5.into()),
            vec!["field fpr"],
        ),
        (
            edit("missing.json", &|w| {
                w.as_object_mut().unwrap().remove("n");
            }),
            vec!["`n`"],
        ),
        (
            edit("sha.json", &|w| {
                w["model"]["sha256"] = "00".repeat(32).into()
            }),
            vec!["another model"],
        ),
    ];
    for (file, needles) in cases {
        let mut needles = needles;
        let name = file.display().to_string();
        needles.push(&name);
        fails(
            fool()
                .args(["detect", "score", "--detector"])
                .arg(&file)
                .arg(&dog),
            &needles,
        );
    }
    // Another model (a tiny 10-class net, 224×224) with the good file.
    let tiny = d.path().join("tiny.pt");
    tiny_model(&tiny, 10, 224, 1);
    let good_name = good.display().to_string();
    fails(
        fool()
            .args(["detect", "score", "--detector"])
            .arg(&good)
            .arg(&dog)
            .args(["-q", "--model"])
            .arg(&tiny),
        &[&good_name, "another model", "1000 classes, not 10"],
    );
    // Unreadable image.
    fails(
        fool()
            .args(["detect", "score", "--detector"])
            .arg(&good)
            .arg(d.path().join("nope.png")),
        &["nope.png"],
    );
}
