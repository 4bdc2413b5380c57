//! `fool privacy epsilon|noise` against Opacus's numbers (tests/fixtures/accountant_opacus.json).

use crate::common::{fool, ok, ok_json};
use serde_json::Value;

fn fixture_row(table: &str, name: &str) -> Value {
    let p = crate::common::root().join("tests/fixtures/accountant_opacus.json");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    v[table]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in the fixture"))
        .clone()
}

fn run_json(args: &[&str]) -> Value {
    ok_json(fool().args(args).arg("--json"))
}

const MNIST: [&str; 10] = [
    "--n", "60000", "--batch", "256", "--epochs", "60", "--delta", "1e-5", "--noise", "1.1",
];

#[test]
fn mnist_epsilon_matches_opacus_both_accountants() {
    let row = fixture_row("epsilon", "mnist_60ep");
    let mut args = vec!["privacy", "epsilon"];
    args.extend(MNIST);
    let v = run_json(&args);
    // Opacus's convention: steps = int(epochs / q) = int(60·60000/256).
    assert_eq!(v["steps"], 14062);
    assert_eq!(v["steps"], row["steps"]);
    assert_eq!(v["accountant"], "rdp");
    assert_eq!(
        (v["n"].as_u64(), v["batch"].as_u64()),
        (Some(60000), Some(256))
    );
    assert_eq!(v["epochs"].as_f64(), Some(60.0));
    assert_eq!(v["sample_rate"].as_f64(), Some(256.0 / 60000.0));
    assert_eq!(v["noise"].as_f64(), Some(1.1));
    assert_eq!(v["delta"].as_f64(), Some(1e-5));
    let rel = |a: &Value, b: &Value| {
        (a.as_f64().unwrap() - b.as_f64().unwrap()).abs() / b.as_f64().unwrap()
    };
    assert!(rel(&v["epsilon"], &row["rdp_epsilon"]) < 1e-6, "{v}");
    assert_eq!(v["best_order"], row["rdp_best_alpha"]);

    args.extend(["--accountant", "prv"]);
    let v = run_json(&args);
    assert_eq!(v["accountant"], "prv");
    assert!(v.get("best_order").is_none());
    assert!(rel(&v["epsilon"], &row["prv_epsilon"]) < 1e-4, "{v}");
}

#[test]
fn sample_rate_and_steps_instead_of_dataset_and_epochs() {
    let row = fixture_row("epsilon", "q0.01_sigma1_10000");
    let v = run_json(&[
        "privacy",
        "epsilon",
        "--sample-rate",
        "0.01",
        "--steps",
        "10000",
        "--noise",
        "1",
        "--delta",
        "1e-5",
    ]);
    assert_eq!(v["steps"], 10000);
    assert!(v.get("n").is_none() && v.get("epochs").is_none());
    let (got, want) = (
        v["epsilon"].as_f64().unwrap(),
        row["rdp_epsilon"].as_f64().unwrap(),
    );
    assert!((got - want).abs() < 1e-6 * want, "{got} vs {want}");
}

#[test]
fn noise_for_a_budget_is_calibrated() {
    let row = fixture_row("noise_multiplier", "mnist_eps3_rdp");
    let v = run_json(&[
        "privacy",
        "noise",
        "--n",
        "60000",
        "--batch",
        "256",
        "--epochs",
        "60",
        "--target-epsilon",
        "3",
        "--delta",
        "1e-5",
    ]);
    let (sigma, eps) = (v["noise"].as_f64().unwrap(), v["epsilon"].as_f64().unwrap());
    assert_eq!(v["target_epsilon"].as_f64(), Some(3.0));
    assert!(eps <= 3.0 && eps > 2.99, "{v}");
    let want = row["noise"].as_f64().unwrap();
    assert!(
        (sigma - want).abs() < 0.01 * want,
        "σ {sigma} vs Opacus {want}"
    );
}

#[test]
fn human_output_is_one_line() {
    let out = ok(fool().args(["privacy", "epsilon"]).args(MNIST));
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.starts_with("ε = 2.597 (δ = 1e-5) after 14062 steps")
            && text.contains("RDP accountant, best order 8.1"),
        "{text}"
    );
}

#[test]
fn bad_values_are_one_line_errors_naming_the_flag() {
    let base = ["privacy", "epsilon", "--n", "60000", "--epochs", "5"];
    for (args, flag) in [
        (
            ["--batch", "256", "--noise", "0", "--delta", "1e-5"],
            "--noise",
        ),
        (
            ["--batch", "256", "--noise", "-1", "--delta", "1e-5"],
            "--noise",
        ),
        (
            ["--batch", "256", "--noise", "1", "--delta", "1.5"],
            "--delta",
        ),
        (
            ["--batch", "70000", "--noise", "1", "--delta", "1e-5"],
            "--batch",
        ),
    ] {
        let out = fool().args(base).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with(&format!("fool: error: {flag}: ")), "{err}");
    }
    let out = fool()
        .args([
            "privacy",
            "noise",
            "--sample-rate",
            "0.01",
            "--steps",
            "100",
            "--target-epsilon",
            "0.01",
            "--delta",
            "1e-5",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.starts_with("fool: error: --target-epsilon: ") && err.contains("out of reach"),
        "{err}"
    );
    // A library error on a field is printed with the field's flag.
    let out = fool()
        .args(["privacy", "epsilon", "--sample-rate", "0", "--epochs", "1"])
        .args(["--noise", "1", "--delta", "1e-5"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.starts_with("fool: error: --sample-rate: is 0") && err.lines().count() == 1,
        "{err}"
    );
    // Unknown accountant and conflicting flags are usage errors (exit 2).
    for extra in [&["--accountant", "gdp"][..], &["--sample-rate", "0.1"][..]] {
        let out = fool()
            .args(["privacy", "epsilon"])
            .args(MNIST)
            .args(extra)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{extra:?}");
    }
}
