//! `fool privacy pate`: the command prints the library's analysis (human and `--json`), and
//! refuses bad vote files and settings with one clear line.
use crate::common::{fool, ok, ok_json, root};
use fool::privacy::pate::{analyse, Aggregator, Settings, Votes};
use ndarray::{Array1, Array2, Array3};
use ndarray_npy::WriteNpyExt;
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures/pate").join(name)
}

fn fails(args: &[&str], needles: &[&str]) {
    let out = fool().args(args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "args {args:?}\nstderr: {err}");
    assert!(out.stdout.is_empty(), "{args:?} printed {:?}", out.stdout);
    assert!(!err.contains("panicked"), "panic: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
    for n in needles {
        assert!(err.contains(n), "stderr lacks {n:?}: {err}");
    }
}

fn save<T: WriteNpyExt>(a: &T, p: &Path) {
    a.write_npy(std::fs::File::create(p).unwrap()).unwrap();
}

#[test]
fn the_command_prints_the_librarys_analysis() {
    let votes = fixture("typical250.npy");
    let v = votes.to_str().unwrap();
    let args = [
        "privacy",
        "pate",
        "--votes",
        v,
        "--sigma",
        "40",
        "--threshold",
        "200",
        "--sigma1",
        "150",
        "--delta",
        "1e-5",
        "--queries",
        "200",
        "--seed",
        "5",
    ];
    let j = ok_json(fool().args(args).arg("--json"));
    let want = analyse(
        &Votes::read(&votes).unwrap(),
        &Settings {
            aggregator: Aggregator::Confident {
                threshold: 200.0,
                sigma1: 150.0,
                sigma: 40.0,
            },
            delta: 1e-5,
            queries: Some(200),
            seed: 5,
        },
    )
    .unwrap();
    assert_eq!(j, serde_json::to_value(&want).unwrap());
    assert_eq!(j["queries"], 200);
    assert_eq!(j["aggregator"]["kind"], "confident");
    let ss = &j["smooth_sensitivity"];
    for k in [
        "beta",
        "ss",
        "sigma_ss",
        "noise_std",
        "epsilon_total",
        "epsilon_released",
    ] {
        assert!(ss[k].as_f64().unwrap().is_finite(), "{k}: {j}");
    }
    assert_eq!(
        ss["noise_std"].as_f64().unwrap(),
        ss["ss"].as_f64().unwrap() * ss["sigma_ss"].as_f64().unwrap()
    );
    // Another seed, another draw of the release noise; everything else the same.
    let mut other = args.to_vec();
    let last = other.len() - 1;
    other[last] = "6";
    let k = ok_json(fool().args(&other).arg("--json"));
    assert_ne!(
        k["smooth_sensitivity"]["epsilon_released"],
        ss["epsilon_released"]
    );
    assert_eq!(
        k["smooth_sensitivity"]["epsilon_total"],
        ss["epsilon_total"]
    );
    assert_eq!(k["epsilon_data_dependent"], j["epsilon_data_dependent"]);
    // Human output: the numbers, labelled.
    let text = String::from_utf8(ok(fool().args(args)).stdout).unwrap();
    for needle in [
        "200 queries to 250 teachers (10 classes), Confident-GNMax, T = 200, σ1 = 150, σ2 = 40",
        "ε data-independent",
        "ε data-dependent",
        "tighter conversion",
        "ε released",
    ] {
        assert!(text.contains(needle), "{needle:?} not in\n{text}");
    }
    // GNMax from --sigma alone, LNMax from --scale; where the sufficient conditions fail, the
    // command says what to publish instead.
    let g = ok_json(fool().args([
        "privacy", "pate", "--votes", v, "--sigma", "40", "--delta", "1e-5", "--json",
    ]));
    assert_eq!(g["aggregator"]["kind"], "gnmax");
    let l = ok_json(fool().args([
        "privacy", "pate", "--votes", v, "--scale", "20", "--delta", "1e-5", "--json",
    ]));
    assert_eq!(l["aggregator"]["kind"], "laplace");
    assert!(l["smooth_sensitivity"].is_null());
    let u = fixture("unanimous100.npy");
    let text = String::from_utf8(
        ok(fool().args([
            "privacy",
            "pate",
            "--votes",
            u.to_str().unwrap(),
            "--sigma",
            "1",
            "--delta",
            "1e-5",
        ]))
        .stdout,
    )
    .unwrap();
    assert!(
        text.contains("conditions (C5, C6)") && text.contains("publish the data-independent ε"),
        "{text}"
    );
}

#[test]
fn bad_vote_files_and_settings_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let p = |n: &str| d.join(n).to_str().unwrap().to_string();
    save(&Array1::<i64>::from(vec![3, 1, 0]), &d.join("flat.npy"));
    save(&Array3::<i64>::zeros((2, 2, 2)), &d.join("cube.npy"));
    save(
        &Array2::from_shape_vec((2, 2), vec![3i64, 1, 5, -1]).unwrap(),
        &d.join("negative.npy"),
    );
    save(
        &Array2::from_shape_vec((2, 2), vec![3.5f64, 0.5, 2.0, 2.0]).unwrap(),
        &d.join("fraction.npy"),
    );
    save(
        &Array2::from_shape_vec((2, 2), vec![f64::NAN, 4.0, 2.0, 2.0]).unwrap(),
        &d.join("nan.npy"),
    );
    save(
        &Array2::from_shape_vec((2, 2), vec![3i64, 1, 2, 1]).unwrap(),
        &d.join("totals.npy"),
    );
    save(
        &Array2::from_shape_vec((2, 2), vec![3.0f64, 1.0, 2.0, 2.0]).unwrap(),
        &d.join("floats.npy"),
    );
    std::fs::write(d.join("text.npy"), "not numpy").unwrap();
    let run = |file: &str, extra: &[&str], needles: &[&str]| {
        let f = p(file);
        let mut args = vec!["privacy", "pate", "--votes", f.as_str(), "--delta", "1e-5"];
        if !extra
            .iter()
            .any(|a| a.starts_with("--sigma") || *a == "--scale")
        {
            args.extend(["--sigma", "5"]);
        }
        args.extend(extra);
        fails(&args, needles);
    };
    run("flat.npy", &[], &["flat.npy", "2-D", "[3]"]);
    run("cube.npy", &[], &["cube.npy", "2-D"]);
    run("negative.npy", &[], &["negative.npy", "[1, 1] is negative"]);
    run("fraction.npy", &[], &["fraction.npy", "not a whole number"]);
    run("nan.npy", &[], &["nan.npy", "NaN"]);
    run(
        "totals.npy",
        &[],
        &["totals.npy", "row 0 sums to 4, row 1 to 3"],
    );
    run("text.npy", &[], &["text.npy"]);
    run("missing.npy", &[], &["missing.npy"]);
    // Whole-number floats are counts.
    ok(fool().args([
        "privacy",
        "pate",
        "--votes",
        &p("floats.npy"),
        "--sigma",
        "5",
        "--delta",
        "1e-5",
    ]));
    let t = fixture("typical100.npy");
    let t = t.to_str().unwrap().to_string();
    let bad = |extra: &[&str], needles: &[&str]| {
        let mut args = vec!["privacy", "pate", "--votes", t.as_str()];
        args.extend(extra);
        fails(&args, needles);
    };
    bad(
        &["--sigma", "0", "--delta", "1e-5"],
        &["--sigma", "positive"],
    );
    bad(
        &["--sigma", "-2", "--delta", "1e-5"],
        &["--sigma", "positive"],
    );
    bad(&["--sigma", "5", "--delta", "0"], &["--delta", "(0, 1)"]);
    bad(&["--sigma", "5", "--delta", "1.5"], &["--delta", "(0, 1)"]);
    bad(
        &["--sigma", "5", "--delta", "1e-5", "--queries", "301"],
        &["--queries", "300 rows"],
    );
    bad(
        &["--sigma", "5", "--delta", "1e-5", "--threshold", "70"],
        &["--sigma1"],
    );
    bad(
        &["--sigma", "5", "--delta", "1e-5", "--sigma1", "30"],
        &["--threshold"],
    );
    bad(
        &["--threshold", "70", "--sigma1", "30", "--delta", "1e-5"],
        &["--sigma"],
    );
    bad(
        &["--sigma", "5", "--delta", "1e-5", "--aggregator", "median"],
        &["--aggregator", "median"],
    );
}
