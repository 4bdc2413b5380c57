//! `fool report html` and `fool report model`: the page is built from real runs (a small MNIST
//! training run with per-epoch audits, a DP run, a bench sweep with kept examples, an audit
//! folder, a model report), then loaded in Debian's Chromium (headless, through
//! tests/browser/check_report.mjs and playwright-core) and judged on the rendered DOM: every
//! chart drew the marks its data implies, the filters change what is shown, the gallery images
//! load, no console error, no network request. A screenshot is kept in
//! target/test-artifacts/report.png. The classification report equals scikit-learn's on a
//! fixture. Chromium and tests/browser/node_modules come from `scripts/setup/browser.sh` (run
//! by scripts/test.sh); when missing, the browser test fails saying so.
use crate::common::{asset, fool, json, ok, ok_json, root};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

struct Runs {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Runs {
    fn p(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }
}

/// The runs, made once for every test of this module.
fn runs() -> &'static Runs {
    static RUNS: OnceLock<Runs> = OnceLock::new();
    RUNS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let data = asset("mnist");
        let train = |out: &str, extra: &[&str]| {
            let mut c = fool();
            c.args([
                "train",
                "--dataset",
                "mnist",
                "--limit",
                "1000",
                "--epochs",
                "2",
                "--batch",
                "50",
            ])
            .args([
                "--audit-every",
                "1",
                "--audit-examples",
                "500",
                "-q",
                "--data",
            ])
            .arg(&data)
            .args(extra)
            .arg("--out")
            .arg(root.join(out));
            ok(&mut c);
        };
        train("plain", &[]);
        train("dp", &["--dp", "--target-epsilon", "4"]);
        let model = root.join("plain").join("model.pt");
        ok(fool()
            .args(["audit", "--model"])
            .arg(&model)
            .arg("--data")
            .arg(&data)
            .args(["--max-examples", "500", "-q", "--out"])
            .arg(root.join("plain").join("audit")));
        ok(fool()
            .args(["bench", "mnist:test[0:24]", "--data"])
            .arg(&data)
            .arg("--model")
            .arg(&model)
            .args(["--attack", "fgsm,pgd", "--steps", "5", "--eps", "0.05,0.15"])
            .args([
                "--defense",
                "none,bits:3",
                "--adaptive",
                "--keep-examples",
                "3",
                "-q",
                "--out",
            ])
            .arg(root.join("bench")));
        ok(fool()
            .args(["report", "model", "--model"])
            .arg(&model)
            .args([
                "--dataset",
                "mnist:test[0:300]",
                "--keep",
                "40",
                "-q",
                "--data",
            ])
            .arg(&data)
            .arg("--out")
            .arg(root.join("model")));
        ok(fool()
            .args([
                "pate",
                "teachers",
                "--dataset",
                "mnist",
                "--teachers",
                "3",
                "-q",
                "--data",
            ])
            .arg(&data)
            .args("--limit 300 --epochs 1 --batch 10 --optimizer adam --lr 0.003 --out".split(' '))
            .arg(root.join("pate")));
        ok(fool()
            .args([
                "report",
                "robustness",
                "--attack",
                "fgsm",
                "--eps",
                "0.1",
                "--examples",
                "50",
                "-q",
            ])
            .arg(root.join("plain"))
            .arg(root.join("dp"))
            .arg("--out")
            .arg(root.join("robustness")));
        Runs { _dir: dir, root }
    })
}

fn read(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn build(r: &Runs, out: &Path) -> Value {
    ok_json(
        fool()
            .args(["report", "html", "--json", "--out"])
            .arg(out)
            .args(
                [
                    "plain",
                    "dp",
                    "bench",
                    "model",
                    "plain/audit",
                    "pate",
                    "robustness",
                ]
                .map(|d| r.p(d)),
            ),
    )
}

#[test]
fn the_report_renders_in_chromium_with_the_marks_its_data_implies_and_no_request() {
    let r = runs();
    let out = r.p("report.html");
    let built = build(r, &out);
    let kinds: Vec<&str> = built["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[1].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "train",
            "train",
            "bench",
            "model",
            "audit",
            "pate",
            "robustness"
        ],
        "{built}"
    );
    let html = std::fs::read_to_string(&out).unwrap();
    assert!(html.contains("Content-Security-Policy") && html.contains("default-src 'none'"));
    assert!(html.len() < 5_000_000, "{} bytes", html.len());
    let script = root().join("tests/browser/check_report.mjs");
    let modules = root().join("tests/browser/node_modules/playwright-core");
    assert!(
        modules.is_dir() && Path::new("/usr/bin/chromium").exists(),
        "the browser test needs Chromium and playwright-core: run `bash scripts/setup/browser.sh`"
    );
    let artifacts = root().join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let res = std::process::Command::new("node")
        .arg(&script)
        .arg(&out)
        .arg("--interact")
        .arg("--screenshot")
        .arg(artifacts.join("report.png"))
        .output()
        .expect("node");
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let page = json(&res);
    assert_eq!(
        page["requests"],
        serde_json::json!([]),
        "no network request"
    );
    assert_eq!(page["errors"], serde_json::json!([]), "no console error");
    let charts = page["charts"].as_array().unwrap();
    assert_eq!(charts.len() as u64, built["charts"].as_u64().unwrap());
    assert!(
        charts
            .iter()
            .all(|c| c["rendered"] == true && c["svg"] == 1),
        "{charts:?}"
    );
    let chart_in = |section: &str| -> Vec<&Value> {
        charts.iter().filter(|c| c["section"] == section).collect()
    };
    // Bench: a point and an interval per summary row, a line per setting.
    let summary = read(&r.p("bench/summary.json"));
    let rows = summary.as_array().unwrap();
    let bench = chart_in("bench-0")[0];
    assert_eq!(
        bench["marks"]["symbol"].as_u64().unwrap() as usize,
        rows.len()
    );
    assert_eq!(
        bench["marks"]["rule"].as_u64().unwrap() as usize,
        rows.len()
    );
    let settings = rows.len() / 2;
    assert_eq!(bench["marks"]["line"].as_u64().unwrap() as usize, settings);
    let f = &page["filter"];
    let attack = f["attack"].as_str().unwrap();
    let of_attack = rows.iter().filter(|r| r["attack"] == attack).count();
    assert!(of_attack < rows.len());
    assert_eq!(
        f["after"]["symbol"].as_u64().unwrap() as usize,
        of_attack,
        "{f}"
    );
    let tip = page["tooltip"]
        .as_str()
        .unwrap_or_else(|| panic!("no tooltip on hover: {page}"));
    assert!(
        tip.contains("success") && tip.contains("95% CI low") && tip.contains(attack),
        "{tip}"
    );
    // Gallery: 3 kept images × every row of the summary's settings, capped at 48, evenly.
    let browse = page["browse"].as_array().unwrap();
    let gallery = browse.iter().find(|b| b["section"] == "bench-0").unwrap();
    let cards = gallery["cards"].as_u64().unwrap() as usize;
    assert_eq!(cards, rows.len() * 3);
    let results = std::fs::read_to_string(r.p("bench/results.jsonl")).unwrap();
    let cfg = read(&r.p("bench/bench.json"));
    let kept: Vec<&str> = cfg["files"].as_array().unwrap()[..3]
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    let fooled = results
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| kept.contains(&r["file"].as_str().unwrap()) && r["success"] == true)
        .count();
    assert_eq!(
        page["fooled_only"]["shown"].as_u64().unwrap() as usize,
        fooled
    );
    let images = &page["images"];
    assert!(images["total"].as_u64().unwrap() > 0);
    assert_eq!(
        images["loaded"], images["total"],
        "every gallery image loads"
    );
    // Sorting the summary by success gives the summary's rates in order.
    let mut rates: Vec<f64> = rows
        .iter()
        .map(|r| r["success_rate"].as_f64().unwrap())
        .collect();
    rates.sort_by(f64::total_cmp);
    let sorted: Vec<f64> = page["sorted_success"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(sorted, rates);
    // Training: loss and accuracy lines per run and split, ε for the DP run only.
    let training = chart_in("training");
    assert_eq!(
        training[0]["marks"]["line"],
        2 * 2 + 2 * 2 + 1,
        "{training:?}"
    );
    assert_eq!(
        training[1]["marks"]["line"],
        2 + 2,
        "AUC and advantage per run"
    );
    // ROC: the diagonal + one curve per attack of the audit.
    let audit = read(&r.p("plain/audit/roc.json"));
    assert_eq!(
        chart_in("audits")[0]["marks"]["line"].as_u64().unwrap() as usize,
        1 + audit.as_array().unwrap().len()
    );
    // Model report: one cell per non-zero confusion count; the misclassified browser.
    let model = read(&r.p("model/model_report.json"));
    let cells = model["classification"]["confusion"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| row.as_array().unwrap().iter())
        .filter(|v| v.as_u64().unwrap() > 0)
        .count();
    assert_eq!(
        chart_in("model-0")[0]["marks"]["rect"].as_u64().unwrap() as usize,
        cells
    );
    let misses = browse.iter().find(|b| b["section"] == "model-0").unwrap();
    let wrong = model["misclassified"].as_array().unwrap().len();
    assert_eq!(misses["cards"].as_u64().unwrap() as usize, wrong.min(40));
    assert_eq!(chart_in("comparison").len(), 1, "privacy vs utility");
    // PATE: a bar per finished teacher; robustness: a point and an interval per run.
    assert_eq!(chart_in("pate-0")[0]["marks"]["rect"], 3);
    let robust = chart_in("robustness-0")[0];
    assert_eq!(robust["marks"]["symbol"], 2);
    assert_eq!(robust["marks"]["rule"], 2);
    assert!(artifacts.join("report.png").is_file());
}

#[test]
fn the_classification_report_equals_scikit_learns() {
    let fx = read(&root().join("tests/fixtures/classification_sklearn.json"));
    for case in fx["cases"].as_array().unwrap() {
        let v = |k: &str| -> Vec<usize> {
            case[k]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as usize)
                .collect()
        };
        let n = case["n_classes"].as_u64().unwrap() as usize;
        let c =
            fool::report::classification::report(&v("y_true"), &v("y_pred"), n, |k| k.to_string());
        let want = &case["report"];
        let name = case["name"].as_str().unwrap();
        let classes: Vec<&String> = want
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| k.parse::<usize>().is_ok())
            .collect();
        assert_eq!(
            c.classes.len(),
            classes.len(),
            "{name}: the classes reported"
        );
        let close = |a: f64, b: &Value, what: &str| {
            assert!(
                (a - b.as_f64().unwrap()).abs() < 1e-12,
                "{name} {what}: {a} vs {b}"
            )
        };
        for row in &c.classes {
            let w = &want[row.label.as_str()];
            close(row.precision, &w["precision"], "precision");
            close(row.recall, &w["recall"], "recall");
            close(row.f1, &w["f1-score"], "f1");
            assert_eq!(row.support as u64, w["support"].as_f64().unwrap() as u64);
        }
        close(c.accuracy, &want["accuracy"], "accuracy");
        for (mine, key) in [
            (&c.macro_avg, "macro avg"),
            (&c.weighted_avg, "weighted avg"),
        ] {
            close(mine.precision, &want[key]["precision"], key);
            close(mine.recall, &want[key]["recall"], key);
            close(mine.f1, &want[key]["f1-score"], key);
        }
        let cm: Vec<Vec<usize>> = case["confusion"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                r.as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_u64().unwrap() as usize)
                    .collect()
            })
            .collect();
        assert_eq!(c.confusion, cm, "{name}: confusion matrix");
    }
}

#[test]
fn the_model_report_counts_what_the_model_predicts() {
    let r = runs();
    let model = read(&r.p("model/model_report.json"));
    let cm = &model["classification"]["confusion"];
    let total: u64 = cm
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap())
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(total, 300);
    let diag: u64 = (0..10).map(|i| cm[i][i].as_u64().unwrap()).sum();
    assert_eq!(
        model["misclassified"].as_array().unwrap().len() as u64,
        300 - diag
    );
    let acc = model["classification"]["accuracy"].as_f64().unwrap();
    assert_eq!(acc, diag as f64 / 300.0);
    // The first misclassified image is the one the model saw, and it predicts what is recorded.
    let m = &model["misclassified"][0];
    let img = r.p("model").join(m["image"].as_str().unwrap());
    let pred = ok_json(
        fool()
            .args(["predict", "--json", "--model"])
            .arg(r.p("plain/model.pt"))
            .arg(&img),
    );
    assert_eq!(pred["top"][0]["index"], m["pred"], "{pred}");
    let text = std::fs::read_to_string(r.p("model/classification_report.txt")).unwrap();
    assert!(text.contains("macro avg") && text.contains("weighted avg"));
}

#[test]
fn unreadable_and_unfinished_folders_are_notes_and_the_page_is_still_written() {
    let r = runs();
    let dir = tempfile::tempdir().unwrap();
    // An unfinished run: the plain run's state without its metadata and model.
    let half = dir.path().join("half");
    std::fs::create_dir_all(half.join("state")).unwrap();
    for f in std::fs::read_dir(r.p("plain/state")).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, half.join("state").join(f.file_name().unwrap())).unwrap();
    }
    // A run from another fool version.
    let old = dir.path().join("old");
    std::fs::create_dir_all(&old).unwrap();
    let mut meta = read(&r.p("dp/metadata.json"));
    meta["fool_version"] = "0.0.1".into();
    std::fs::write(old.join("metadata.json"), meta.to_string()).unwrap();
    let not_run = dir.path().join("photos");
    std::fs::create_dir_all(&not_run).unwrap();
    let out = dir.path().join("r.html");
    let built = ok_json(
        fool()
            .args(["report", "html", "--json", "--out"])
            .arg(&out)
            .arg(&half)
            .arg(&old)
            .arg(&not_run)
            .arg(dir.path().join("missing")),
    );
    let notes: Vec<&str> = built["notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    let has = |s: &str| notes.iter().any(|n| n.contains(s));
    assert!(
        has("unfinished: 2 of 2 epochs done") || has("unfinished"),
        "{notes:?}"
    );
    assert!(has("written by fool 0.0.1"), "{notes:?}");
    assert!(has("photos: not a fool run"), "{notes:?}");
    assert!(has("missing: not a folder"), "{notes:?}");
    assert!(has("model.pt is missing"), "{notes:?}");
    assert_eq!(built["runs"].as_array().unwrap().len(), 2);
    let html = std::fs::read_to_string(&out).unwrap();
    assert!(html.contains("not a fool run"), "the notes are on the page");
    // Nothing readable: an error naming the folders, no file.
    let out2 = dir.path().join("none.html");
    let res = fool()
        .args(["report", "html", "--out"])
        .arg(&out2)
        .arg(&not_run)
        .output()
        .unwrap();
    assert!(!res.status.success());
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(
        err.contains("none of the 1 folders could be read") && err.contains("photos"),
        "{err}"
    );
    assert!(!out2.exists());
    // --out not an HTML file: refused before anything is read or written (no run file is
    // ever overwritten).
    let summary = r.p("bench/summary.json");
    let before = std::fs::read(&summary).unwrap();
    let res = fool()
        .args(["report", "html", "--out"])
        .arg(&summary)
        .arg(r.p("bench"))
        .output()
        .unwrap();
    assert!(!res.status.success());
    assert!(
        String::from_utf8_lossy(&res.stderr).contains("expected an .html file"),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    assert_eq!(std::fs::read(&summary).unwrap(), before);
    // --out a folder.
    let res = fool()
        .args(["report", "html", "--out"])
        .arg(dir.path())
        .arg(&old)
        .output()
        .unwrap();
    assert!(!res.status.success());
    assert!(String::from_utf8_lossy(&res.stderr).contains("is a folder"));
}

#[test]
fn kept_examples_are_the_judged_8_bit_images() {
    let r = runs();
    let cfg = read(&r.p("bench/bench.json"));
    let first = cfg["files"][0].as_str().unwrap().to_string();
    let results = std::fs::read_to_string(r.p("bench/results.jsonl")).unwrap();
    let row = results
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|x| {
            x["file"] == first.as_str()
                && x["attack"] == "pgd"
                && x["defense"] == "none"
                && x["eps"].as_f64() == Some(0.15)
        })
        .expect("the row of image 0, pgd, eps 0.15, bare model");
    let png = fool::bench::examples::adv_path(&r.p("bench"), "pgd", 0.15, None, 0);
    let clean = fool::bench::examples::clean_path(&r.p("bench"), 0);
    for (img, want) in [(&png, &row["adv_pred"]), (&clean, &row["clean_pred"])] {
        let pred = ok_json(
            fool()
                .args(["predict", "--json", "--model"])
                .arg(r.p("plain/model.pt"))
                .arg(img),
        );
        assert_eq!(&pred["top"][0]["index"], want, "{}: {pred}", img.display());
    }
    let (a, b) = (
        image::open(&png).unwrap().to_rgb8(),
        image::open(&clean).unwrap().to_rgb8(),
    );
    let linf = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| (*x as i32 - *y as i32).abs())
        .max()
        .unwrap();
    assert!(
        (linf as f64 / 255.0 - row["linf"].as_f64().unwrap()).abs() < 1e-6,
        "L∞ {linf}/255 vs {}",
        row["linf"]
    );
    assert!(linf <= (0.15f64 * 255.0).floor() as i32);
    // Only the first 3 images are kept.
    assert!(!fool::bench::examples::clean_path(&r.p("bench"), 3).exists());
}
