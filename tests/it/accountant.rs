//! The privacy accountants against Opacus 1.6 (tests/fixtures/accountant_opacus.json, made
//! by scripts/fixtures/make_accountant_fixtures.py), plus edge cases and argument errors.
use fool::privacy::accountant::{
    self as acc, epsilon, noise_for_epsilon, prv, rdp, AccountantKind,
};
use serde_json::Value;

fn fixture() -> Value {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/accountant_opacus.json");
    serde_json::from_str(&std::fs::read_to_string(&p).expect("fixture")).expect("JSON")
}

fn f(v: &Value, k: &str) -> f64 {
    v[k].as_f64().unwrap_or_else(|| panic!("{k} in {v}"))
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs()
}

#[test]
fn fixture_is_from_opacus_1_6() {
    let fx = fixture();
    assert_eq!(fx["opacus_version"], "1.6.0");
    assert!(fx["epsilon"].as_array().unwrap().len() >= 30);
}

#[test]
fn rdp_matches_opacus() {
    let fx = fixture();
    let mut worst = (0.0, String::new());
    for row in fx["epsilon"].as_array().unwrap() {
        let (noise, q, delta) = (f(row, "noise"), f(row, "sample_rate"), f(row, "delta"));
        let steps = row["steps"].as_u64().unwrap();
        let (eps, order) = acc::rdp_epsilon(noise, q, steps, delta).unwrap();
        let want = f(row, "rdp_epsilon");
        let err = rel(eps, want);
        assert!(err < 1e-6, "{}: ε {eps} vs Opacus {want}", row["name"]);
        assert_eq!(order, Some(f(row, "rdp_best_alpha")), "{}", row["name"]);
        assert_eq!(
            epsilon(AccountantKind::Rdp, noise, q, steps, delta).unwrap(),
            eps
        );
        if err > worst.0 {
            worst = (err, row["name"].to_string());
        }
    }
    eprintln!(
        "RDP: max relative error vs Opacus {:.2e} ({})",
        worst.0, worst.1
    );
}

#[test]
fn prv_matches_opacus() {
    let fx = fixture();
    let mut worst = (0.0, String::new());
    for row in fx["epsilon"].as_array().unwrap() {
        let (noise, q, delta) = (f(row, "noise"), f(row, "sample_rate"), f(row, "delta"));
        let steps = row["steps"].as_u64().unwrap();
        let t = std::time::Instant::now();
        let eps = epsilon(AccountantKind::Prv, noise, q, steps, delta).unwrap();
        let secs = t.elapsed().as_secs_f64();
        let want = f(row, "prv_epsilon");
        let err = rel(eps, want);
        eprintln!(
            "{:28} {eps:.6} vs {want:.6} rel {err:.1e} {secs:.2}s",
            row["name"]
        );
        assert!(err < 0.02, "{}: ε {eps} vs Opacus {want}", row["name"]);
        // PRV is the tighter accountant (its +0.01 error margin aside).
        assert!(eps <= f(row, "rdp_epsilon") + 0.011, "{}", row["name"]);
        if err > worst.0 {
            worst = (err, row["name"].to_string());
        }
    }
    eprintln!(
        "PRV: max relative error vs Opacus {:.2e} ({})",
        worst.0, worst.1
    );
}

#[test]
fn prv_bounds_bracket_the_estimate() {
    let q = 256.0 / 60000.0;
    let b = prv::epsilon_bounds(1.1, q, 14062, 1e-5, 0.01, 1e-8).unwrap();
    assert!(b.lower < b.estimate && b.estimate < b.upper, "{b:?}");
    assert!(b.upper - b.lower < 0.03, "{b:?}");
    // Tighter error margins: the estimate hardly moves, the bounds close in.
    let t = prv::epsilon_bounds(1.1, q, 14062, 1e-5, 0.002, 1e-9).unwrap();
    assert!((t.estimate - b.estimate).abs() < 0.005, "{t:?} {b:?}");
    assert!(t.upper < b.upper && t.lower > b.lower);
}

#[test]
fn noise_calibration_matches_opacus() {
    let fx = fixture();
    let mut worst_eps: f64 = 0.0;
    let mut worst_sigma: f64 = 0.0;
    for row in fx["noise_multiplier"].as_array().unwrap() {
        let kind: AccountantKind = row["accountant"].as_str().unwrap().parse().unwrap();
        let (target, q, delta) = (
            f(row, "target_epsilon"),
            f(row, "sample_rate"),
            f(row, "delta"),
        );
        let steps = row["steps"].as_u64().unwrap();
        // Opacus's convention for epochs: steps = int(epochs / q).
        assert_eq!(steps, (f(row, "epochs") / q) as u64);
        let t = std::time::Instant::now();
        let sigma = noise_for_epsilon(kind, target, q, steps, delta).unwrap();
        let secs = t.elapsed().as_secs_f64();
        let eps = epsilon(kind, sigma, q, steps, delta).unwrap();
        assert!(eps <= target, "{}: ε {eps} > {target}", row["name"]);
        let e_err = rel(eps, target);
        assert!(e_err < 0.01, "{}: ε {eps} vs target {target}", row["name"]);
        // Slightly less noise already overshoots: σ is the smallest to 1e-4.
        let below = epsilon(kind, sigma * (1.0 - 1e-4), q, steps, delta).unwrap();
        assert!(below > target, "{}: σ·(1−1e-4) gives {below}", row["name"]);
        // Opacus stops its bisection once ε is within 0.01 of the target, so its σ is a
        // little larger.
        let want = f(row, "noise");
        let s_err = rel(sigma, want);
        eprintln!(
            "{:20} σ {sigma:.6} vs Opacus {want:.6} (rel {s_err:.1e}), ε {eps:.6}, {secs:.2}s",
            row["name"]
        );
        assert!(s_err < 0.01, "{}: σ {sigma} vs Opacus {want}", row["name"]);
        assert!(sigma <= want * (1.0 + 1e-3), "{}", row["name"]);
        worst_eps = worst_eps.max(e_err);
        worst_sigma = worst_sigma.max(s_err);
    }
    eprintln!("noise: max ε gap to target {worst_eps:.1e}, max σ gap to Opacus {worst_sigma:.1e}");
}

#[test]
fn rdp_closed_forms_and_trivial_cases() {
    // q = 1: the Gaussian mechanism, RDP α/(2σ²) per step.
    let orders = rdp::default_orders();
    assert_eq!(orders.len(), 99 + 52);
    assert_eq!(
        (orders[0], orders[98], orders[99], orders[150]),
        (1.1, 10.9, 12.0, 63.0)
    );
    let r = rdp::compute_rdp(1.0, 2.0, 10, &orders);
    for (a, v) in orders.iter().zip(&r) {
        assert!((v - 10.0 * a / 8.0).abs() < 1e-12);
    }
    // q = 0 or no steps: nothing spent.
    assert!(rdp::compute_rdp(0.0, 1.0, 100, &orders)
        .iter()
        .all(|&v| v == 0.0));
    for kind in [AccountantKind::Rdp, AccountantKind::Prv] {
        assert_eq!(epsilon(kind, 1.0, 0.0, 1000, 1e-5).unwrap(), 0.0);
        assert_eq!(epsilon(kind, 1.0, 0.01, 0, 1e-5).unwrap(), 0.0);
    }
    // RDP of the subsampled mechanism is at most that of the full one, grows with q and
    // order, and at small q behaves like 2q²α/σ²·… (below q²α/σ² for σ ≥ 1).
    let full = rdp::compute_rdp(1.0, 1.0, 1, &orders);
    let sub = rdp::compute_rdp(0.01, 1.0, 1, &orders);
    let sub2 = rdp::compute_rdp(0.02, 1.0, 1, &orders);
    for i in 0..orders.len() {
        assert!(sub[i] > 0.0 && sub[i] < full[i] && sub[i] < sub2[i]);
        if i > 0 {
            assert!(sub[i] >= sub[i - 1]);
        }
    }
    // Composition is linear in steps.
    let one = rdp::compute_rdp(0.01, 1.1, 1, &orders);
    let many = rdp::compute_rdp(0.01, 1.1, 1000, &orders);
    for (a, b) in one.iter().zip(&many) {
        assert!((b - 1000.0 * a).abs() <= 1e-12 * b);
    }
    // The conversion picks the best order and returns (∞, NaN) when nothing is finite.
    let (e, a) = rdp::eps_from_rdp(&[2.0, 3.0], &[0.5, 0.6], 1e-5);
    let at = |a: f64, r: f64| r - (1e-5f64.ln() + a.ln()) / (a - 1.0) + ((a - 1.0) / a).ln();
    assert_eq!(a, 3.0);
    assert!((e - at(3.0, 0.6)).abs() < 1e-15 && e < at(2.0, 0.5));
    let (e, a) = rdp::eps_from_rdp(&[2.0], &[f64::NAN], 1e-5);
    assert!(e.is_infinite() && a.is_nan());
}

#[test]
fn epsilon_is_monotone() {
    let q = 256.0 / 50000.0;
    for kind in [AccountantKind::Rdp, AccountantKind::Prv] {
        let e = |s: f64, n: u64| epsilon(kind, s, q, n, 1e-5).unwrap();
        assert!(e(1.0, 2000) > e(1.2, 2000), "{kind}");
        assert!(e(1.0, 2000) < e(1.0, 4000), "{kind}");
        assert!(
            epsilon(kind, 1.0, q, 2000, 1e-6).unwrap() > e(1.0, 2000),
            "{kind}"
        );
    }
}

#[test]
fn bad_arguments_name_the_field() {
    let msg = |r: fool::Result<f64>| r.unwrap_err().to_string();
    for kind in [AccountantKind::Rdp, AccountantKind::Prv] {
        for noise in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(msg(epsilon(kind, noise, 0.01, 10, 1e-5)).starts_with("noise: "));
        }
        for q in [-0.1, 1.5, f64::NAN] {
            assert!(msg(epsilon(kind, 1.0, q, 10, 1e-5)).starts_with("sample_rate: "));
        }
        for d in [0.0, 1.0, -1e-5, f64::NAN] {
            assert!(msg(epsilon(kind, 1.0, 0.01, 10, d)).starts_with("delta: "));
        }
        for t in [0.0, -1.0, f64::NAN] {
            assert!(msg(noise_for_epsilon(kind, t, 0.01, 10, 1e-5)).starts_with("target_epsilon: "));
        }
        assert!(msg(noise_for_epsilon(kind, 1.0, 0.0, 10, 1e-5)).starts_with("sample_rate: "));
        assert!(msg(noise_for_epsilon(kind, 1.0, 0.01, 0, 1e-5)).starts_with("steps: "));
        assert!(msg(noise_for_epsilon(kind, 1.0, 0.01, 10, 2.0)).starts_with("delta: "));
    }
    // Out of reach: RDP with the default orders cannot go below ~0.1 at δ = 1e-5, PRV not
    // below its 0.01 error margin.
    let e = msg(noise_for_epsilon(
        AccountantKind::Rdp,
        0.05,
        0.01,
        100,
        1e-5,
    ));
    assert!(
        e.starts_with("target_epsilon: ") && e.contains("out of reach"),
        "{e}"
    );
    let e = msg(noise_for_epsilon(
        AccountantKind::Prv,
        0.005,
        0.01,
        100,
        1e-5,
    ));
    assert!(
        e.starts_with("target_epsilon: ") && e.contains("out of reach"),
        "{e}"
    );
    // A PRV grid too large to build is an error, not an allocation failure.
    let e = msg(epsilon(AccountantKind::Prv, 0.3, 0.5, 1_000_000, 1e-5));
    assert!(e.starts_with("accountant: ") && e.contains("RDP"), "{e}");
}

#[test]
fn accountant_kind_parses_and_prints() {
    assert_eq!(
        "rdp".parse::<AccountantKind>().unwrap(),
        AccountantKind::Rdp
    );
    assert_eq!(
        "PRV".parse::<AccountantKind>().unwrap(),
        AccountantKind::Prv
    );
    let e = "gdp".parse::<AccountantKind>().unwrap_err().to_string();
    assert!(e.starts_with("accountant: "), "{e}");
    assert_eq!(AccountantKind::Prv.to_string(), "prv");
    assert_eq!(
        serde_json::to_string(&AccountantKind::Rdp).unwrap(),
        "\"rdp\""
    );
    let k: AccountantKind = serde_json::from_str("\"prv\"").unwrap();
    assert_eq!(k, AccountantKind::Prv);
}

/// Private Evolution's accounting: T Gaussian mechanisms of sensitivity 1 are √T/σ-GDP, and
/// ε follows from δ by the exact conversion. The pairs are the ones the Private Evolution
/// papers use (σ = 2√2, T = 5 and σ = 5√2, T = 20 at δ = 1e-5).
#[test]
fn gdp_matches_known_pairs() {
    let s2 = std::f64::consts::SQRT_2;
    let e1 = acc::gdp::epsilon_of(2.0 * s2, 5, 1e-5).unwrap();
    assert!((e1 - 3.34).abs() < 0.005, "{e1}");
    let e2 = acc::gdp::epsilon_of(5.0 * s2, 20, 1e-5).unwrap();
    assert!((e2 - 2.59).abs() < 0.005, "{e2}");
    // Root finding gives back the σ of a known ε.
    let sigma = acc::gdp::noise_for_epsilon(e1, 5, 1e-5).unwrap();
    assert!(rel(sigma, 2.0 * s2) < 1e-9, "{sigma}");
}

/// The same mechanisms through fool's DP-SGD accountants with q = 1 (every example in every
/// step: the plain Gaussian mechanism): PRV, numerically near-exact, agrees with GDP within
/// its ε error; RDP is an upper bound, a little loose.
#[test]
fn gdp_agrees_with_prv_and_is_below_rdp() {
    for &(sigma, t, delta) in &[
        (2.0, 5u64, 1e-5),
        (7.0, 20, 1e-5),
        (1.0, 1, 1e-6),
        (15.0, 4, 1e-6),
    ] {
        let g = acc::gdp::epsilon_of(sigma, t, delta).unwrap();
        let p = prv::epsilon(sigma, 1.0, t, delta).unwrap();
        let r = epsilon(AccountantKind::Rdp, sigma, 1.0, t, delta).unwrap();
        assert!(
            (p - g).abs() < 0.02 + 0.005 * g,
            "σ {sigma} T {t}: GDP {g} PRV {p}"
        );
        assert!(r >= g, "σ {sigma} T {t}: RDP {r} below GDP {g}");
    }
}
