//! LiRA (`fool audit --lira-shadows N`): the statistics against independent references, and
//! the whole attack on a small overfit MNIST model trained on a random half, with resume.
// The references are mpmath's, printed with 20 digits.
#![allow(clippy::excessive_precision)]

use crate::common::{asset, fool, ok};
use fool::audit::MiaKind;
use fool::lira::{
    self, logit_confidence, norm_logcdf, norm_logpdf, scores, Confidences, LiraObserver,
    LiraOptions, LiraOutcome, Target,
};
use serde_json::Value;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use tch::Device;

fn close(a: f64, b: f64, rel: f64) -> bool {
    a == b || (a - b).abs() <= rel * b.abs().max(1e-300)
}

#[test]
fn log_cdf_matches_high_precision_references() {
    // log Φ(z) from mpmath (50 digits): mp.log(mp.ncdf(z)).
    let refs = [
        (-40.0, -804.60844201375378817),
        (-30.0, -454.32124395634319711),
        (-20.0, -203.91715537109726394),
        (-19.9, -201.91716770733259757),
        (-10.0, -53.231285150512470578),
        (-5.0, -15.064998393988725736),
        (-1.5, -2.705944400823889807),
        (0.0, -std::f64::consts::LN_2),
        (0.5, -0.36894641528865639307),
        (3.0, -0.0013508099647481937988),
        (6.0, -9.8658764552437573169e-10),
        (6.5, -4.0160005839397591118e-11),
        (10.0, -7.619853024160526066e-24),
    ];
    for (z, want) in refs {
        let got = norm_logcdf(z);
        assert!(
            close(got, want, 1e-12),
            "log Φ({z}) = {got}, expected {want}"
        );
    }
    assert_eq!(norm_logcdf(f64::INFINITY), 0.0);
    assert_eq!(norm_logcdf(f64::NEG_INFINITY), f64::NEG_INFINITY);
    assert!(norm_logcdf(40.0) <= 0.0 && norm_logcdf(40.0) > -1e-300);
    // Monotone across the branch points.
    let zs: Vec<f64> = (-500..=500).map(|i| i as f64 * 0.1).collect();
    for w in zs.windows(2) {
        assert!(norm_logcdf(w[0]) <= norm_logcdf(w[1]), "{w:?}");
    }
}

#[test]
fn log_pdf_matches_high_precision_references() {
    // mp.log(mp.npdf(x, mu, sigma))
    let refs = [
        ((0.3, -1.2, 0.7), -2.8581819566128791963),
        ((5.0, 0.0, 1e-3), -12499994.011183253702),
        ((-2.0, 1.0, 3.0), -2.5175508218727824332),
    ];
    for ((x, mu, s), want) in refs {
        let got = norm_logpdf(x, mu, s);
        assert!(
            close(got, want, 1e-13),
            "log N({x}; {mu}, {s}) = {got}, expected {want}"
        );
    }
}

#[test]
fn logit_confidence_against_closed_forms() {
    // mpmath: log(p_y) - log(1 - p_y) with 50 digits.
    let got = logit_confidence(&[2.0, -1.0, 0.5, 3.0], 0);
    assert!(close(got, -1.095674329414382301, 1e-14), "{got}");
    let got = logit_confidence(&[-800.0, 0.0, 5.0], 0);
    assert!(close(got, -805.00671534848911807, 1e-14), "{got}");
    // Two classes: φ = z_y − z_other.
    assert!(close(logit_confidence(&[0.1, 0.2], 1), 0.1, 1e-14));
    assert!(close(logit_confidence(&[3.0, -4.5], 0), 7.5, 1e-15));
    // Uniform logits over C classes: p_y = 1/C, φ = −ln(C − 1).
    for c in [2usize, 3, 10, 1000] {
        let z = vec![0.7; c];
        let got = logit_confidence(&z, c / 2);
        assert!(close(got, -((c - 1) as f64).ln(), 1e-12), "{c}: {got}");
    }
    // Saturated softmax, where log(1 − p_y) of the probabilities would be −∞.
    assert!(close(
        logit_confidence(&[1000.0, 0.0, 0.0], 0),
        1000.0 - std::f64::consts::LN_2,
        1e-15
    ));
    // Against the naive formula where it is accurate.
    let z = [0.3, -1.1, 2.2, 0.0, -0.4];
    let e: Vec<f64> = z.iter().map(|v: &f64| v.exp()).collect();
    let s: f64 = e.iter().sum();
    for (y, &ey) in e.iter().enumerate() {
        let naive = (ey / s).ln() - ((s - ey) / s).ln();
        assert!(close(logit_confidence(&z, y), naive, 1e-12));
    }
}

#[test]
fn scores_of_a_toy_example() {
    // 3 examples, 4 shadows, one query. Example 0: IN φ 1, 2; OUT φ −1, −2. Example 1: OUT of
    // every shadow. Example 2: IN every shadow (cannot be scored).
    let c = Confidences {
        queries: 1,
        target: vec![1.2, 0.0, 5.0],
        shadows: vec![
            vec![1.0, 0.5, 3.0],
            vec![2.0, 1.5, 4.0],
            vec![-1.0, 2.5, 5.0],
            vec![-2.0, 3.5, 7.0],
        ],
        shadow_in: vec![
            vec![true, false, true],
            vec![true, false, true],
            vec![false, false, true],
            vec![false, false, true],
        ],
    };
    let s = scores(&c, false);
    // Per-example fits (np.std): IN 1.5 ± 0.5, OUT −1.5 ± 0.5.
    let want = (-0.5 * 0.6f64.powi(2)) - (-0.5 * 5.4f64.powi(2));
    assert!(close(s.online[0].unwrap(), want, 1e-12), "{:?}", s.online);
    assert!(close(s.offline[0].unwrap(), norm_logcdf(5.4), 1e-12));
    // Example 1: OUT 2 ± √1.25; no IN.
    assert_eq!(s.online[1], None);
    let z = (0.0 - 2.0) / 1.25f64.sqrt();
    assert!(close(s.offline[1].unwrap(), norm_logcdf(z), 1e-12));
    assert_eq!((s.online[2], s.offline[2]), (None, None));
    // Global σ: pooled within-example (ddof 1 per group) over every IN and OUT group.
    let ss = 0.5 + 0.5 + 5.0 + 8.75;
    let dof: f64 = 1.0 + 1.0 + 3.0 + 3.0;
    let g = (ss / dof).sqrt();
    assert!(close(s.global_sigma, g, 1e-12), "{} vs {g}", s.global_sigma);
    let s = scores(&c, true);
    let want = (2.7f64.powi(2) - 0.3f64.powi(2)) / (2.0 * g * g);
    assert!(close(s.online[0].unwrap(), want, 1e-12));
    assert!(close(s.offline[1].unwrap(), norm_logcdf(-2.0 / g), 1e-12));

    // Two queries: the per-query scores are averaged.
    let c2 = Confidences {
        queries: 2,
        target: vec![1.2, 1.2],
        shadows: c.shadows.iter().map(|v| vec![v[0], v[0]]).collect(),
        shadow_in: c.shadow_in.iter().map(|v| vec![v[0]]).collect(),
    };
    let s2 = scores(&c2, false);
    assert!(close(s2.online[0].unwrap(), 14.4, 1e-12));
}

fn run_ok(cmd: &mut assert_cmd::Command) -> std::process::Output {
    ok(cmd.env("OMP_NUM_THREADS", "1"))
}

/// Shadow models of the LiRA runs.
const SHADOWS: usize = 8;

/// Train a target on MNIST (the first 400 examples, a random half with `half` if given).
/// Adam, small batches: after 6 epochs it is 98% accurate on its 200 examples and 80% on
/// the test split, and models trained alike agree enough for LiRA (with SGD at lr 0.02,
/// a few epochs leave models so different from one another that LiRA is near chance).
fn train_target(out: &Path, half: Option<&str>, epochs: &str) {
    let mut c = fool();
    c.args("train --dataset mnist --limit 400 --batch 10 --optimizer adam --lr 0.002".split(' '))
        .args("--samples 0 --device cpu --quiet --epochs".split(' '))
        .arg(epochs)
        .arg("--data")
        .arg(asset("mnist"))
        .arg("--out")
        .arg(out);
    if let Some(h) = half {
        c.args(["--half", h]);
    }
    run_ok(&mut c);
}

fn audit_cmd(model: &Path, shadows: &Path, extra: &[&str]) -> assert_cmd::Command {
    let mut c = fool();
    c.arg("audit")
        .arg("--model")
        .arg(model)
        .arg("--shadow-dir")
        .arg(shadows)
        .arg("--lira-shadows")
        .arg(SHADOWS.to_string())
        .args(["--device", "cpu", "--json"])
        .args(extra)
        .env("OMP_NUM_THREADS", "1");
    c
}

fn rows(o: &std::process::Output) -> Vec<Value> {
    let v: Value = serde_json::from_slice(&o.stdout).expect("JSON on stdout");
    v.as_array().unwrap().clone()
}

fn read_i64(p: &Path) -> Vec<i64> {
    use ndarray_npy::ReadNpyExt;
    ndarray::Array1::<i64>::read_npy(std::fs::File::open(p).unwrap())
        .unwrap()
        .to_vec()
}

fn fails(mut c: assert_cmd::Command, needles: &[&str]) {
    let o = c.env("OMP_NUM_THREADS", "1").output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    for n in needles {
        assert!(err.contains(n), "{err:?} should mention {n}");
    }
}

/// Stops LiRA after epoch `epoch` of shadow `shadow`; counts the finished shadows.
struct StopAt {
    shadow: usize,
    epoch: usize,
    finished: usize,
}

impl LiraObserver for StopAt {
    fn epoch_end(&mut self, shadow: usize, epoch: usize) -> ControlFlow<()> {
        if (shadow, epoch) == (self.shadow, self.epoch) {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }
    fn shadow_end(&mut self, _shadow: usize, _trained: bool) -> ControlFlow<()> {
        self.finished += 1;
        ControlFlow::Continue(())
    }
}

#[test]
fn lira_on_an_overfit_mnist_half_and_resume() {
    // Alone in a process: the interrupted shadows are trained in-process.
    crate::train::isolated("lira::lira_on_an_overfit_mnist_half_and_resume", lira_run);
}

fn lira_run() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("target");
    train_target(&run, Some("7"), "10");
    let model = run.join("model.pt");
    let members: Vec<i64> = read_i64(&run.join("members.npy"));
    assert_eq!(members.len(), 200);

    // Uninterrupted: every attack (the classic ones on members vs the test split, LiRA on the
    // pool).
    let a = dir.path().join("shadows-a");
    let t0 = std::time::Instant::now();
    let o = run_ok(&mut audit_cmd(&model, &a, &[]));
    eprintln!(
        "LiRA with {SHADOWS} shadows: {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    let all = rows(&o);
    assert!(all.iter().any(|r| r["attack"] == "threshold-loss"));
    let lira: Vec<Value> = all
        .iter()
        .filter(|r| r["attack"].as_str().unwrap().starts_with("lira"))
        .cloned()
        .collect();
    assert_eq!(lira.len(), 2, "{lira:?}");

    // Which pool examples can be scored, from the shadows' members.npy.
    let mut ins = vec![0usize; 400];
    for i in 0..SHADOWS {
        let d = a.join(format!("shadow-{i:03}"));
        for f in ["model.pt", "metadata.json", "members.npy"] {
            assert!(d.join(f).is_file(), "{}", d.join(f).display());
        }
        assert!(
            !d.join("state").exists(),
            "finished shadows drop their state"
        );
        let m = read_i64(&d.join("members.npy"));
        assert_eq!(m.len(), 200);
        for &e in &m {
            ins[e as usize] += 1;
        }
    }
    let is_member = |e: usize| members.binary_search(&(e as i64)).is_ok();
    for r in &lira {
        let online = r["attack"] == "lira-online";
        let ok = |e: usize| ins[e] < SHADOWS && (!online || ins[e] > 0);
        let nm = (0..400).filter(|&e| ok(e) && is_member(e)).count();
        let nn = (0..400).filter(|&e| ok(e) && !is_member(e)).count();
        assert_eq!(r["slice"], "all");
        assert_eq!(
            (r["n_members"].as_u64(), r["n_nonmembers"].as_u64()),
            (Some(nm as u64), Some(nn as u64)),
            "{r}"
        );
        let auc = r["auc"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&auc), "{r}");
        eprintln!("{r}");
    }
    let online = lira.iter().find(|r| r["attack"] == "lira-online").unwrap();
    let offline = lira.iter().find(|r| r["attack"] == "lira-offline").unwrap();
    // 10 epochs: with PyTorch's initialisation 6 epochs overfit too little (online AUC 0.648).
    assert!(online["auc"].as_f64().unwrap() > 0.65, "{online}");
    assert!(
        online["tpr_at_fpr_0.01"].as_f64().unwrap() > 0.02,
        "{online}"
    );
    assert!(offline["auc"].as_f64().unwrap() > 0.6, "{offline}");

    // Reusing the finished shadows: nothing retrained, same rows.
    let mtime = |p: PathBuf| std::fs::metadata(p).unwrap().modified().unwrap();
    let before = mtime(a.join("shadow-000/model.pt"));
    let o = run_ok(&mut audit_cmd(&model, &a, &["--attacks", "lira"]));
    assert_eq!(rows(&o), lira);
    assert_eq!(mtime(a.join("shadow-000/model.pt")), before);

    // Interrupted (through the library) after 2 finished shadows and 1 epoch of the third,
    // then resumed by the CLI.
    let b = dir.path().join("shadows-b");
    let target = Target::load(&model).unwrap();
    let opts = LiraOptions {
        shadow_dir: Some(b.clone()),
        attacks: MiaKind::LIRA.to_vec(),
        ..LiraOptions::new(SHADOWS, Device::Cpu)
    };
    let mut stop = StopAt {
        shadow: 2,
        epoch: 1,
        finished: 0,
    };
    let o = lira::run(&target, &opts, &mut stop).unwrap();
    assert_eq!(o, LiraOutcome::Stopped);
    assert_eq!(stop.finished, 2);
    assert!(b.join("shadow-001/model.pt").is_file());
    assert!(!b.join("shadow-002/model.pt").exists());
    assert!(b.join("shadow-002/state/state.json").is_file());
    let times: Vec<_> = (0..2)
        .map(|i| mtime(b.join(format!("shadow-{i:03}/model.pt"))))
        .collect();
    let o = run_ok(&mut audit_cmd(&model, &b, &["--attacks", "lira"]));
    assert_eq!(
        rows(&o),
        lira,
        "a resumed run gives the uninterrupted run's numbers"
    );
    for (i, t) in times.iter().enumerate() {
        assert_eq!(
            &mtime(b.join(format!("shadow-{i:03}/model.pt"))),
            t,
            "shadow {i} retrained"
        );
    }

    // Errors: a target without members.npy, bad flags.
    let nm = dir.path().join("no-members");
    std::fs::create_dir_all(&nm).unwrap();
    for f in ["model.pt", "metadata.json"] {
        std::fs::copy(run.join(f), nm.join(f)).unwrap();
    }
    fails(
        audit_cmd(&nm.join("model.pt"), &a, &[]),
        &["members.npy", "random half"],
    );
    let mut c = fool();
    c.arg("audit")
        .arg("--model")
        .arg(&model)
        .args(["--attacks", "lira", "--json"]);
    fails(c, &["--lira-shadows"]);
    let mut c = fool();
    c.arg("audit")
        .arg("--model")
        .arg(&model)
        .args(["--lira-shadows", "1", "--attacks", "lira"]);
    fails(c, &["--lira-shadows", "at least 2"]);
}

#[test]
fn lira_needs_a_target_trained_on_a_half() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("full");
    train_target(&run, None, "1");
    let mut c = fool();
    c.arg("audit")
        .arg("--model")
        .arg(run.join("model.pt"))
        .args(["--lira-shadows", "4", "--device", "cpu"]);
    fails(c, &["--lira-shadows", "random half"]);
}
