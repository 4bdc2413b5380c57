//! `fool report robustness RUN...`: what plain, DP, adversarially trained and DP + adversarially
//! trained models buy and cost, in one table — clean accuracy, robust accuracy under AutoAttack
//! (with its 95% interval), DP ε, membership leakage (AUC, TPR at 0.1% FPR) and training time.
//!
//! Every run is evaluated at the same eps (`--eps`; default the adversarial training eps of the
//! first adversarially trained run, else 0.3 for MNIST and 8/255 for CIFAR-10) by `fool bench`
//! on the first `examples` images of its data set's test split, the bench output kept in
//! `RUN/robustness/ATTACK-eps…-n…/` (resumable: a second report reuses it). Membership numbers
//! come from the run's audits as `fool report privacy` reads them (`--audit-every`, and
//! `RUN/audit/audit.json` from `fool audit`, LiRA included). Writes `robustness_report.csv`,
//! `robustness_report.json` and `robust_vs_privacy.png/svg` (robust accuracy against
//! TPR@0.1%FPR, one labelled point per run).
use super::privacy::{load_run, row, Run};
use crate::attacks::image::ModelRef;
use crate::attacks::Norm;
use crate::bench::{self, Outcome, Shard};
use crate::datasets::DatasetName;
use crate::files::ensure_writable_dir;
use crate::plot::{line_chart, write_png_svg, COLORS};
use crate::{Error, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::{Path, PathBuf};
use tch::Device;

/// How the runs are evaluated.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The attack (`autoattack` by default).
    pub attack: String,
    /// L∞ budget; `None`: see the module documentation.
    pub eps: Option<f64>,
    /// Test images evaluated (the first ones of the split).
    pub examples: usize,
    pub batch: usize,
    pub seed: u64,
    pub device: Device,
}

/// One run's row.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RobustRow {
    pub run: String,
    pub kind: String,
    pub dataset: String,
    pub arch: String,
    /// DP ε (null: not private, ε = ∞).
    pub epsilon: Option<f64>,
    /// The adversarial training, e.g. `pgd eps 0.3` (null: none).
    pub adversarial: Option<String>,
    /// Accuracy on the whole test split (from the run).
    pub test_accuracy: Option<f64>,
    pub attack: String,
    pub eps: f64,
    /// Images evaluated, their clean accuracy, and the accuracy under the attack with its
    /// 95% Wilson interval.
    pub n: usize,
    pub clean_accuracy: f64,
    pub robust_accuracy: f64,
    pub robust_ci_low: f64,
    pub robust_ci_high: f64,
    pub membership_auc: Option<f64>,
    pub membership_attack: Option<String>,
    #[serde(rename = "tpr_at_fpr_0.001")]
    pub tpr_at_fpr_0_001: Option<f64>,
    /// Wall-clock training time over all epochs, seconds.
    pub train_seconds: f64,
}

/// The eps all runs are evaluated at (see the module documentation).
fn common_eps(runs: &[Run], asked: Option<f64>) -> f64 {
    asked
        .or_else(|| {
            runs.iter()
                .find_map(|r| r.meta.config.recipe.adversarial.map(|a| a.eps))
        })
        .unwrap_or_else(|| match runs.first().map(|r| r.meta.dataset) {
            Some(DatasetName::Mnist) => 0.3,
            _ => 8.0 / 255.0,
        })
}

/// Evaluate every run (or reuse its earlier evaluation) and write the report into `out`.
/// `progress` hears about each run before it is evaluated.
pub fn generate(
    dirs: &[impl AsRef<Path>],
    s: &Settings,
    out: &Path,
    progress: &mut dyn FnMut(&str, &Path),
) -> Result<Vec<RobustRow>> {
    if s.examples == 0 {
        return Err(Error::field("examples", "must be at least 1"));
    }
    let runs = dirs
        .iter()
        .map(|d| load_run(d.as_ref()))
        .collect::<Result<Vec<_>>>()?;
    let eps = common_eps(&runs, s.eps);
    if !(eps > 0.0 && eps <= 1.0) {
        return Err(Error::field(
            "eps",
            format!("{eps}: expected an L∞ radius in (0, 1]"),
        ));
    }
    ensure_writable_dir(out, "out")?;
    let mut rows = Vec::new();
    for run in &runs {
        let dir = run.dir.join("robustness").join(format!(
            "{}-eps{}-n{}",
            s.attack,
            bench::eps_key(eps),
            s.examples
        ));
        progress(&run.name, &dir);
        let summary = evaluate(run, s, eps, &dir)?;
        let b = summary
            .iter()
            .find(|r| r.attack == s.attack)
            .ok_or_else(|| Error::failed(&run.name, "the evaluation wrote no summary row"))?;
        let (lo, hi) = match &b.cascade {
            Some(c) => (c.robust_ci_low, c.robust_ci_high),
            None => bench::wilson(
                (b.robust_accuracy * b.n_images as f64).round() as usize,
                b.n_images,
            ),
        };
        let p = row(run);
        rows.push(RobustRow {
            run: run.name.clone(),
            kind: p.kind.clone(),
            dataset: p.dataset.clone(),
            arch: p.arch.clone(),
            epsilon: p.epsilon,
            adversarial: run
                .meta
                .config
                .recipe
                .adversarial
                .map(|a| format!("{} eps {:.4}", adv_name(a.kind), a.eps)),
            test_accuracy: p.test_accuracy,
            attack: s.attack.clone(),
            eps,
            n: b.n_images,
            clean_accuracy: b.clean_accuracy,
            robust_accuracy: b.robust_accuracy,
            robust_ci_low: lo,
            robust_ci_high: hi,
            membership_auc: p.best_auc,
            membership_attack: p.best_auc_attack.clone(),
            tpr_at_fpr_0_001: p.tpr_at_fpr_0_001,
            train_seconds: run.meta.history.iter().map(|h| h.seconds).sum(),
        });
    }
    write(&rows, out)?;
    Ok(rows)
}

fn adv_name(k: crate::train::adversarial::AdvKind) -> &'static str {
    use crate::train::adversarial::AdvKind;
    match k {
        AdvKind::Pgd => "pgd",
        AdvKind::FgsmRs => "fgsm-rs",
        AdvKind::Trades => "trades",
    }
}

/// `fool bench DATASET:test[0:n] --model RUN/model.pt --attack ATTACK --eps EPS --out DIR`.
fn evaluate(run: &Run, s: &Settings, eps: f64, dir: &Path) -> Result<Vec<bench::SummaryRow>> {
    let spec = crate::model::ModelSpec {
        path: run.dir.join("model.pt"),
        device: s.device,
        size: None,
        resize: None,
        mean: None,
        std: None,
        resize_always: false,
        labels: None,
        default_labels: run.dir.join("labels.json"),
    };
    let loaded = spec.load()?;
    let plan = bench::Plan::new(bench::Settings {
        dataset: PathBuf::from(format!("{}:test[0:{}]", run.meta.dataset, s.examples)),
        data: Some(run.meta.config.data_dir.clone()),
        wnids: None,
        limit: None,
        shuffle: false,
        attacks: vec![s.attack.clone()],
        steps: None,
        early_stop: true,
        eps: vec![eps],
        norm: Norm::Linf,
        defenses: vec!["none".into()],
        adaptive: false,
        eot: 1,
        targets: "untargeted".into(),
        batch: s.batch,
        seed: s.seed,
        shard: Shard::ALL,
        out: dir.to_path_buf(),
        detector: None,
        detector_weight: 0.0,
        keep_examples: 0,
    })?;
    let m = ModelRef {
        model: &loaded.model,
        labels: &loaded.labels,
        path: &spec.path,
        labels_path: loaded.labels_path.as_deref(),
    };
    match bench::run(&plan, m, &mut ())? {
        Outcome::Finished(r) => Ok(r.summary),
        Outcome::Stopped { .. } => Err(Error::failed(&run.name, "the evaluation stopped")),
    }
}

fn opt(v: Option<f64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

/// The CSV and JSON tables and the chart.
pub fn write(rows: &[RobustRow], out: &Path) -> Result<()> {
    crate::files::write_json_bare(&out.join("robustness_report.json"), &rows)?;
    let mut csv = String::from("run,kind,dataset,arch,epsilon,adversarial,test_accuracy,attack,eps,n,clean_accuracy,robust_accuracy,robust_ci_low,robust_ci_high,membership_auc,membership_attack,tpr_at_fpr_0.001,train_seconds\n");
    for r in rows {
        let fields = [
            r.run.clone(),
            r.kind.replace(',', ";"),
            r.dataset.clone(),
            r.arch.replace(',', ";"),
            r.epsilon.map_or("inf".into(), |e| e.to_string()),
            r.adversarial.clone().unwrap_or_default(),
            opt(r.test_accuracy),
            r.attack.clone(),
            r.eps.to_string(),
            r.n.to_string(),
            r.clean_accuracy.to_string(),
            r.robust_accuracy.to_string(),
            r.robust_ci_low.to_string(),
            r.robust_ci_high.to_string(),
            opt(r.membership_auc),
            r.membership_attack.clone().unwrap_or_default(),
            opt(r.tpr_at_fpr_0_001),
            format!("{:.1}", r.train_seconds),
        ];
        csv.push_str(&fields.join(","));
        csv.push('\n');
    }
    crate::files::write_text(&out.join("robustness_report.csv"), &csv)?;
    write_png_svg(
        out,
        "robust_vs_privacy",
        (900, 620),
        |a| draw(a, rows),
        |a| draw(a, rows),
    )
}

/// Robust accuracy (with its interval) against membership TPR at 0.1% FPR, one labelled point
/// per run (runs without an audit sit at x = 0, marked "no audit").
fn draw<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, rows: &[RobustRow]) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let err = crate::plot::chart_err::<DB::ErrorType>;
    root.fill(&WHITE).map_err(err)?;
    let x_top = rows
        .iter()
        .filter_map(|r| r.tpr_at_fpr_0_001)
        .fold(0.01f64, f64::max)
        * 1.3;
    let eps = rows.first().map_or(0.0, |r| r.eps);
    let attack = rows.first().map_or("", |r| r.attack.as_str());
    let mut chart = line_chart(
        &root,
        format!(
            "robustness vs privacy: {attack} at eps {:.1}/255 vs membership leakage",
            eps * 255.0
        ),
        17,
        (0.0..x_top, 0.0..1.0),
        (
            "membership TPR at 0.1% FPR (higher: leaks more)",
            "robust accuracy (95% interval)",
        ),
    )?;
    for (i, r) in rows.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let x = r.tpr_at_fpr_0_001.unwrap_or(0.0);
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(x, r.robust_ci_low), (x, r.robust_ci_high)],
                color.stroke_width(2),
            )))
            .map_err(err)?;
        chart
            .draw_series(std::iter::once(Circle::new(
                (x, r.robust_accuracy),
                5,
                color.filled(),
            )))
            .map_err(err)?;
        let eps_text = r
            .epsilon
            .map_or("ε = ∞".to_string(), |e| format!("ε = {e:.2}"));
        let audit = if r.tpr_at_fpr_0_001.is_none() {
            ", no audit"
        } else {
            ""
        };
        chart
            .draw_series(std::iter::once(Text::new(
                format!(
                    "{} ({eps_text}, clean {:.1}%{audit})",
                    r.run,
                    100.0 * r.clean_accuracy
                ),
                (x + x_top * 0.015, r.robust_accuracy + 0.02),
                ("sans-serif", 13).into_font().color(&color),
            )))
            .map_err(err)?;
    }
    root.present().map_err(err)?;
    Ok(())
}
