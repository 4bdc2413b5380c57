//! `fool audit`: metrics against scikit-learn, the attacks, slices, array and model inputs,
//! bad input, and an audit of a small overfit MNIST model.

use crate::common::{asset, fool, ok, ok_json};
use fool::audit::mia::LogisticRegression;
use fool::audit::{self, roc, AuditOptions, Metrics, MiaKind, OutputKind, Outputs, SliceSpec};
use ndarray::{Array1, Array2};
use ndarray_npy::WriteNpyExt;
use serde_json::Value;
use std::path::{Path, PathBuf};
use tch::{CModule, Device, Kind, Tensor};

fn fixture() -> Value {
    let p = crate::common::root().join("tests/fixtures/audit_sklearn.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[test]
fn metrics_match_sklearn() {
    let fx = fixture();
    let mut worst: f64 = 0.0;
    for c in fx["cases"].as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        let r = roc(&floats(&c["members"]), &floats(&c["nonmembers"]));
        let m = Metrics::of(&r);
        for (key, got) in [
            ("auc", m.auc),
            ("advantage", m.advantage),
            ("tpr_at_fpr_0.001", m.tpr_at_fpr_0_001),
            ("tpr_at_fpr_0.01", m.tpr_at_fpr_0_01),
            ("balanced_accuracy", m.balanced_accuracy),
        ] {
            let want = c[key].as_f64().unwrap();
            let dev = (got - want).abs();
            worst = worst.max(dev);
            assert!(dev <= 1e-12, "{name} {key}: {got} vs sklearn {want}");
        }
        if c.get("fpr").is_some() {
            assert_eq!(r.fpr, floats(&c["fpr"]), "{name} fpr");
            assert_eq!(r.tpr, floats(&c["tpr"]), "{name} tpr");
        }
    }
    eprintln!("max deviation from sklearn: {worst:e}");
}

#[test]
fn logistic_regression_matches_sklearn() {
    let lr = &fixture()["logistic"];
    let d = lr["d"].as_u64().unwrap() as usize;
    let x = floats(&lr["x"]);
    let y: Vec<bool> = lr["y"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_bool().unwrap())
        .collect();
    let fit = LogisticRegression::fit(&x, d, &y, lr["c"].as_f64().unwrap());
    let mut worst: f64 = 0.0;
    for (a, b) in fit.coef.iter().zip(floats(&lr["coef"])) {
        worst = worst.max((a - b).abs());
    }
    worst = worst.max((fit.intercept - lr["intercept"].as_f64().unwrap()).abs());
    for (i, p) in floats(&lr["proba"]).iter().enumerate() {
        worst = worst.max((fit.predict_proba(&x[i * d..(i + 1) * d]) - p).abs());
    }
    eprintln!("logistic regression: max deviation from sklearn {worst:e}");
    assert!(worst < 1e-7, "deviation {worst}");
}

/// Logits of a toy "model": members are fitted (confident on their label), non-members less so.
fn toy_logits(n: usize, classes: usize, sharp: f64, seed: i64) -> (Tensor, Tensor) {
    let _ = seed;
    let g =
        |i: usize, j: usize| ((i * 7919 + j * 104_729 + seed as usize * 31) % 1000) as f64 / 1000.0;
    let mut v = Vec::with_capacity(n * classes);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let y = i % classes;
        labels.push(y as i64);
        for j in 0..classes {
            v.push(
                g(i, j) * 2.0
                    + if j == y {
                        sharp * g(i, classes + j)
                    } else {
                        0.0
                    },
            );
        }
    }
    (
        Tensor::from_slice(&v).view([n as i64, classes as i64]),
        Tensor::from_slice(&labels),
    )
}

#[test]
fn audit_logits_rows_slices_and_skips() {
    let (ml, my) = toy_logits(300, 4, 8.0, 1);
    let (nl, ny) = toy_logits(200, 4, 2.0, 2);
    let opts = AuditOptions {
        slices: SliceSpec::everything(),
        ..AuditOptions::default()
    };
    let rows = audit::audit_logits(&ml, &my, &nl, &ny, &opts).unwrap();
    let slices: Vec<&str> = rows
        .iter()
        .filter(|r| r.attack == MiaKind::ThresholdLoss)
        .map(|r| r.slice.as_str())
        .collect();
    assert_eq!(
        slices[..5],
        ["all", "class=0", "class=1", "class=2", "class=3"]
    );
    for r in &rows {
        assert!((0.0..=1.0).contains(&r.auc), "{r:?}");
        if r.slice == "all" {
            assert!(r.auc > 0.6, "{r:?}");
        }
        assert!((r.balanced_accuracy - (1.0 + r.advantage) / 2.0).abs() < 1e-15);
        assert!(r.tpr_at_fpr_0_001 <= r.tpr_at_fpr_0_01);
        assert!(!r.roc.is_empty());
    }
    let all = rows
        .iter()
        .find(|r| r.attack == MiaKind::ThresholdLoss && r.slice == "all")
        .unwrap();
    assert_eq!((all.n_members, all.n_nonmembers), (300, 200));
    // Every attack ran on `all`.
    for a in MiaKind::ALL {
        assert!(
            rows.iter().any(|r| r.attack == a && r.slice == "all"),
            "{a}"
        );
    }
    // Same inputs, same rows (the logistic regression is seeded).
    assert_eq!(
        rows,
        audit::audit_logits(&ml, &my, &nl, &ny, &opts).unwrap()
    );

    // A class no non-member has is skipped, and so is LR on a slice with one member.
    let m = Outputs::from_tensors(&ml, &my, OutputKind::Logits, "m").unwrap();
    let n = Outputs::from_tensors(&nl, &ny, OutputKind::Logits, "n").unwrap();
    let keep: Vec<usize> = (0..n.n).filter(|&i| n.labels[i] != 3).collect();
    let one3: Vec<usize> = (0..m.n).filter(|&i| m.labels[i] != 2 || i == 2).collect();
    let report = audit::audit(&m.select(&one3), &n.select(&keep), &opts).unwrap();
    assert!(report
        .skipped
        .iter()
        .any(|s| s.slice == "class=3" && s.attack.is_none() && s.reason == "no non-members"));
    assert!(report
        .skipped
        .iter()
        .any(|s| s.slice == "class=2" && s.attack == Some(MiaKind::LogisticRegression)));
    assert!(report
        .results
        .iter()
        .any(|r| r.slice == "class=2" && r.attack == MiaKind::ThresholdLoss));
    let text = audit::format_report(&report);
    assert!(
        text.contains("skipped slice class=3: no non-members"),
        "{text}"
    );
    assert!(
        text.contains("most vulnerable slice (highest AUC"),
        "{text}"
    );
}

#[test]
fn subsample_is_deterministic_and_sorted() {
    let a = fool::rng::subsample(1000, 100, 7);
    assert_eq!(a, fool::rng::subsample(1000, 100, 7));
    assert_ne!(a, fool::rng::subsample(1000, 100, 8));
    assert_eq!(a.len(), 100);
    assert!(a.windows(2).all(|w| w[0] < w[1]) && *a.last().unwrap() < 1000);
    assert_eq!(
        fool::rng::subsample(10, 100, 7),
        (0..10).collect::<Vec<_>>()
    );
}

fn save2<T: ndarray_npy::WritableElement>(path: &Path, rows: usize, cols: usize, v: Vec<T>) {
    let a = Array2::from_shape_vec((rows, cols), v).unwrap();
    a.write_npy(std::fs::File::create(path).unwrap()).unwrap();
}

fn save1<T: ndarray_npy::WritableElement>(path: &Path, v: Vec<T>) {
    Array1::from_vec(v)
        .write_npy(std::fs::File::create(path).unwrap())
        .unwrap();
}

/// tr.npy / trl.npy / te.npy / tel.npy from toy logits, in `dir`.
fn toy_arrays(dir: &Path) -> [PathBuf; 4] {
    let (ml, my) = toy_logits(120, 3, 6.0, 3);
    let (nl, ny) = toy_logits(90, 3, 1.0, 4);
    let p = |n: &str| dir.join(n);
    let f32s = |t: &Tensor| Vec::<f32>::try_from(t.to_kind(Kind::Float).view([-1])).unwrap();
    save2(&p("tr.npy"), 120, 3, f32s(&ml));
    save1(&p("trl.npy"), Vec::<i64>::try_from(&my).unwrap());
    let nv = Vec::<f64>::try_from(nl.to_kind(Kind::Double).view([-1])).unwrap();
    save2(&p("te.npy"), 90, 3, nv); // float64 works too
    let nyv: Vec<u8> = Vec::<i64>::try_from(&ny)
        .unwrap()
        .iter()
        .map(|&v| v as u8)
        .collect();
    save1(&p("tel.npy"), nyv); // and uint8 labels
    [p("tr.npy"), p("trl.npy"), p("te.npy"), p("tel.npy")]
}

fn array_args(f: &[PathBuf; 4]) -> Vec<String> {
    let mut v = Vec::new();
    for (flag, path) in [
        "--train-logits",
        "--train-labels",
        "--test-logits",
        "--test-labels",
    ]
    .iter()
    .zip(f)
    {
        v.push(flag.to_string());
        v.push(path.display().to_string());
    }
    v
}

#[test]
fn cli_on_arrays_json_table_and_files() {
    let dir = tempfile::tempdir().unwrap();
    let files = toy_arrays(dir.path());
    let rows = ok_json(fool().arg("audit").args(array_args(&files)).args([
        "--json",
        "--slices",
        "class,correctness",
    ]));
    let rows = rows.as_array().unwrap();
    let keys = [
        "attack",
        "slice",
        "auc",
        "advantage",
        "tpr_at_fpr_0.001",
        "tpr_at_fpr_0.01",
        "balanced_accuracy",
        "n_members",
        "n_nonmembers",
    ];
    for r in rows {
        for k in keys {
            assert!(r.get(k).is_some(), "row lacks {k}: {r}");
        }
    }
    let slices: std::collections::BTreeSet<&str> =
        rows.iter().map(|r| r["slice"].as_str().unwrap()).collect();
    for s in ["all", "class=0", "class=1", "class=2", "correct"] {
        assert!(slices.contains(s), "{slices:?}");
    }
    // The library gives the same rows from the same arrays.
    let m = audit::read_outputs_npy(&files[0], &files[1], OutputKind::Logits).unwrap();
    let n = audit::read_outputs_npy(&files[2], &files[3], OutputKind::Logits).unwrap();
    let opts = AuditOptions {
        slices: SliceSpec::everything(),
        ..AuditOptions::default()
    };
    let lib = audit::audit(&m, &n, &opts).unwrap();
    assert_eq!(
        serde_json::to_value(&lib.results).unwrap(),
        Value::Array(rows.clone())
    );

    // Human table and --out files.
    let od = dir.path().join("report");
    let out = ok(fool()
        .arg("audit")
        .args(array_args(&files))
        .args(["--attacks", "threshold", "--out"])
        .arg(&od));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("threshold-entropy") && !text.contains("logistic-regression"));
    assert!(text.contains("most vulnerable slice"), "{text}");
    for f in ["audit.json", "audit.csv", "roc.png", "roc.svg"] {
        assert!(od.join(f).is_file(), "{f} missing");
    }
    let csv = std::fs::read_to_string(od.join("audit.csv")).unwrap();
    assert_eq!(csv.lines().count(), 4);
    assert!(csv.starts_with("attack,slice,auc,advantage,tpr_at_fpr_0.001"));
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(od.join("audit.json")).unwrap()).unwrap();
    assert_eq!(saved.as_array().unwrap().len(), 3);

    // Probabilities instead of logits.
    let probs = |t: &Tensor| {
        Vec::<f64>::try_from(t.to_kind(Kind::Float).softmax(-1, Kind::Double).view([-1])).unwrap()
    };
    let (ml, _) = toy_logits(120, 3, 6.0, 3);
    let (nl, _) = toy_logits(90, 3, 1.0, 4);
    save2(&dir.path().join("ptr.npy"), 120, 3, probs(&ml));
    save2(&dir.path().join("pte.npy"), 90, 3, probs(&nl));
    let mut pf = files.clone();
    pf[0] = dir.path().join("ptr.npy");
    pf[2] = dir.path().join("pte.npy");
    let auc_p = ok_json(fool().arg("audit").args(array_args(&pf)).args([
        "--probabilities",
        "--json",
        "--attacks",
        "loss",
    ]))[0]["auc"]
        .as_f64()
        .unwrap();
    let auc_l = rows[0]["auc"].as_f64().unwrap();
    assert!((auc_p - auc_l).abs() < 1e-9, "{auc_p} vs {auc_l}");
}

/// Run fool, expect exit 1 with one stderr line holding every needle, and no `--out` folder.
fn fails(args: &[String], needles: &[&str]) {
    let out_dir = tempfile::tempdir().unwrap();
    let od = out_dir.path().join("never");
    let out = fool()
        .arg("audit")
        .args(args)
        .arg("--out")
        .arg(&od)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "args {args:?}\nstderr: {err}");
    assert!(!err.contains("panicked"), "panic: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
    for n in needles {
        assert!(err.contains(n), "stderr lacks {n:?}: {err}");
    }
    assert!(!od.exists(), "{} was created", od.display());
    assert!(out.stdout.is_empty());
}

#[test]
fn bad_arrays() {
    let dir = tempfile::tempdir().unwrap();
    let files = toy_arrays(dir.path());
    let p = |n: &str| dir.path().join(n);
    let with = |i: usize, path: PathBuf| {
        let mut f = files.clone();
        f[i] = path;
        array_args(&f)
    };
    // Labels of the wrong length.
    save1(&p("short.npy"), vec![0i64; 119]);
    fails(
        &with(1, p("short.npy")),
        &["short.npy", "119 labels", "120 rows"],
    );
    // Different class counts.
    save2(&p("four.npy"), 90, 4, vec![0.5f32; 360]);
    fails(&with(2, p("four.npy")), &["four.npy", "4 classes", "3"]);
    // Labels out of range, negative labels.
    let mut bad = vec![0i64; 120];
    bad[7] = 3;
    save1(&p("range.npy"), bad.clone());
    fails(
        &with(1, p("range.npy")),
        &["range.npy", "label 3 at row 7", "out of range"],
    );
    bad[7] = -1;
    save1(&p("neg.npy"), bad);
    fails(&with(1, p("neg.npy")), &["neg.npy", "label -1"]);
    // NaN and infinite logits.
    let mut v = vec![0.1f32; 360];
    v[40] = f32::NAN;
    save2(&p("nan.npy"), 120, 3, v.clone());
    fails(
        &with(0, p("nan.npy")),
        &["nan.npy", "NaN or infinite", "row 13"],
    );
    v[40] = f32::INFINITY;
    save2(&p("inf.npy"), 120, 3, v);
    fails(&with(0, p("inf.npy")), &["inf.npy", "NaN or infinite"]);
    // Empty member set.
    save2(&p("empty.npy"), 0, 3, Vec::<f32>::new());
    save1(&p("empty_l.npy"), Vec::<i64>::new());
    let mut f = files.clone();
    f[0] = p("empty.npy");
    f[1] = p("empty_l.npy");
    fails(&array_args(&f), &["empty.npy", "no examples"]);
    // 1-D logits.
    save1(&p("flat.npy"), vec![0.5f32; 120]);
    fails(&with(0, p("flat.npy")), &["flat.npy", "2-D", "(n, C)"]);
    // Integer logits, float labels, 2-D labels, not .npy, missing file.
    save2(&p("int.npy"), 120, 3, vec![1i64; 360]);
    fails(&with(0, p("int.npy")), &["int.npy", "float32 or float64"]);
    save1(&p("flabels.npy"), vec![0.0f32; 120]);
    fails(&with(1, p("flabels.npy")), &["flabels.npy", "integer"]);
    save2(&p("l2d.npy"), 120, 1, vec![0i64; 120]);
    fails(&with(1, p("l2d.npy")), &["l2d.npy", "1-D"]);
    std::fs::write(p("text.npy"), "hello").unwrap();
    fails(&with(2, p("text.npy")), &["text.npy", ".npy format"]);
    fails(&with(3, p("missing.npy")), &["missing.npy"]);
    // Probabilities that are not.
    let mut a = array_args(&files);
    a.push("--probabilities".into());
    fails(&a, &["tr.npy", "not a probability vector"]);
    // Flags.
    fails(&array_args(&files)[..6], &["--test-labels", "missing"]);
    let mut a = array_args(&files);
    a.extend(["--slices".into(), "class,colour".into()]);
    fails(&a, &["--slices", "colour"]);
    let mut a = array_args(&files);
    a.extend(["--attacks".into(), "magic".into()]);
    fails(&a, &["--attacks", "magic"]);
    let mut a = array_args(&files);
    a.extend(["--folds".into(), "1".into()]);
    fails(&a, &["--folds"]);
}

/// A model whose output is the first `classes` pixels: loads and runs, wrong class count.
fn wrong_classes_model(path: &Path) {
    crate::common::trace(path, 28, |x| x.flatten(1, -1).narrow(1, 0, 5));
}

#[test]
fn bad_models() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model.pt");
    wrong_classes_model(&model);
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let mp = model.display().to_string();
    let data = asset("mnist").display().to_string();
    // No metadata.json beside the model and no --members.
    fails(
        &s(&["--model", &mp, "--dataset", "mnist", "--data", &data]),
        &["--members", "metadata.json"],
    );
    // No --dataset and no metadata.
    fails(&s(&["--model", &mp, "--members", "10"]), &["--dataset"]);
    // Output size does not match the data set's classes.
    fails(
        &s(&[
            "--model",
            &mp,
            "--dataset",
            "mnist",
            "--data",
            &data,
            "--members",
            "20",
            "--max-examples",
            "20",
            "--device",
            "cpu",
        ]),
        &["model.pt", "5 classes", "mnist has 10"],
    );
    // Not a model; --members 0; too many members.
    std::fs::write(dir.path().join("junk.pt"), "junk").unwrap();
    let junk = dir.path().join("junk.pt").display().to_string();
    fails(
        &s(&[
            "--model",
            &junk,
            "--dataset",
            "mnist",
            "--data",
            &data,
            "--members",
            "5",
        ]),
        &["junk.pt", "TorchScript"],
    );
    fails(
        &s(&["--model", &mp, "--dataset", "mnist", "--members", "0"]),
        &["--members", "0"],
    );
    fails(
        &s(&[
            "--model",
            &mp,
            "--dataset",
            "mnist",
            "--data",
            &data,
            "--members",
            "70000",
        ]),
        &["--members", "60000"],
    );
    // members.npy (written by `fool train`) with an index outside the training split.
    save1(&dir.path().join("members.npy"), vec![0i64, 1, 60_000]);
    fails(
        &s(&["--model", &mp, "--dataset", "mnist", "--data", &data]),
        &["members.npy", "member index 60000", "60000 examples"],
    );
}

/// Logits of `model` on rows `idx` of `ds`, in batches of 500 as the CLI runs them.
fn logits(model: &CModule, ds: &fool::datasets::TensorDataset, idx: &[usize]) -> Tensor {
    let outs: Vec<Tensor> = ds
        .batches(idx, 500, Device::Cpu, fool::datasets::Feed::Rgb)
        .map(|b| tch::no_grad(|| model.forward_ts(&[b.images])).unwrap())
        .collect();
    Tensor::cat(&outs, 0)
}

#[test]
fn audit_of_an_overfit_mnist_model() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let data = asset("mnist");
    // Small and trained long enough to overfit (test accuracy about 60%).
    let train_args = "train --dataset mnist --limit 250 --epochs 6 --batch 25 --lr 0.02 --samples 0 --device cpu";
    ok(fool()
        .args(train_args.split(' '))
        .arg("--data")
        .arg(&data)
        .arg("--out")
        .arg(&run)
        .arg("--quiet"));
    let model = run.join("model.pt");
    let rows = ok_json(
        fool()
            .arg("audit")
            .arg("--model")
            .arg(&model)
            .args([
                "--dataset",
                "mnist",
                "--max-examples",
                "500",
                "--device",
                "cpu",
            ])
            .arg("--data")
            .arg(&data)
            .arg("--json"),
    );
    let rows = rows.as_array().unwrap();
    let loss = rows
        .iter()
        .find(|r| r["attack"] == "threshold-loss" && r["slice"] == "all")
        .unwrap();
    eprintln!("overfit MNIST model: {loss}");
    assert!(loss["auc"].as_f64().unwrap() > 0.55, "{loss}");
    assert_eq!(loss["n_members"], 250); // the examples it was trained on
    assert_eq!(loss["n_nonmembers"], 500);

    // The same rows from logits computed here.
    let m = CModule::load_on_device(&model, Device::Cpu).unwrap();
    let train = fool::datasets::load(
        fool::datasets::DatasetName::Mnist,
        &data,
        fool::datasets::Split::Train,
    )
    .unwrap();
    let test = fool::datasets::load(
        fool::datasets::DatasetName::Mnist,
        &data,
        fool::datasets::Split::Test,
    )
    .unwrap();
    let im: Vec<usize> = (0..250).collect();
    let inn = fool::rng::subsample(test.len(), 500, 0);
    let ids = |v: &[usize]| Tensor::from_slice(&v.iter().map(|&i| i as i64).collect::<Vec<_>>());
    let lib = audit::audit_logits(
        &logits(&m, &train, &im),
        &train.labels_at(&ids(&im), Device::Cpu),
        &logits(&m, &test, &inn),
        &test.labels_at(&ids(&inn), Device::Cpu),
        &AuditOptions::default(),
    )
    .unwrap();
    assert_eq!(
        serde_json::to_value(&lib).unwrap(),
        Value::Array(rows.clone())
    );
}
