//! `fool report privacy RUN... --out DIR`: DP vs non-DP runs side by side; `fool report
//! robustness RUN... --out DIR`: robustness × privacy.
use super::{print_json, OutputArgs};
use anyhow::Result;
use clap::{Args, Subcommand};
use fool::report::privacy as report;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct ReportArgs {
    #[command(subcommand)]
    sub: ReportSub,
}

#[derive(Subcommand, Debug)]
enum ReportSub {
    /// Privacy (membership audits, ε), utility (test accuracy) and robustness of training runs:
    /// privacy_by_epoch.png/svg, privacy_vs_utility.png/svg, privacy_report.csv/json
    Privacy(PrivacyArgs),
    /// Robustness × privacy of training runs: clean accuracy, AutoAttack robust accuracy (95%
    /// interval), DP ε, membership AUC and TPR@0.1%FPR, training time; each run is evaluated on
    /// its data set's test split (kept in RUN/robustness/, reused next time):
    /// robustness_report.csv/json, robust_vs_privacy.png/svg
    Robustness(RobustnessArgs),
    /// One self-contained HTML report (offline, no network request) of bench sweeps, training
    /// runs, audits and model reports: charts with filters, tables, galleries
    Html(super::report_html::HtmlArgs),
    /// Per-class report of a model on a data set slice: precision/recall/F1 (as scikit-learn's
    /// classification_report), confusion matrix, misclassified images, report.html
    Model(super::report_html::ModelReportArgs),
    /// Log run folders (a training run, a bench output, an audit) to an MLflow tracking server:
    /// params, metrics per epoch or eps, tags, artifacts; DIR/mlflow.json records the run
    Mlflow(super::report_mlflow::MlflowReportArgs),
}

#[derive(Args, Debug)]
pub struct RobustnessArgs {
    /// Run folders written by `fool train --out` (membership audits from --audit-every and
    /// RUN/audit/audit.json, as `fool report privacy`)
    #[arg(required = true)]
    runs: Vec<PathBuf>,
    /// The attack every run is evaluated with (see `fool bench --attack`)
    #[arg(long, default_value = "autoattack")]
    attack: String,
    /// L∞ budget, e.g. 0.3 or 8/255 [default: the first adversarially trained run's eps, else
    /// 0.3 for mnist and 8/255 for cifar10]
    #[arg(long)]
    eps: Option<String>,
    /// Test images evaluated (the first N of the test split)
    #[arg(long, default_value_t = 1000)]
    examples: usize,
    /// Images per batch
    #[arg(long, default_value_t = 250)]
    batch: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// auto, cpu or cuda[:N]
    #[arg(long, default_value = "auto")]
    device: String,
    /// Output folder
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Args, Debug)]
pub struct PrivacyArgs {
    /// Run folders written by `fool train --out` (audits from --audit-every; optional
    /// RUN/audit/audit.json from `fool audit --out RUN/audit` and RUN/bench/summary.json from
    /// `fool bench … --out RUN/bench`)
    #[arg(required = true)]
    runs: Vec<PathBuf>,
    /// Output folder
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    output: OutputArgs,
}

fn fmt(v: Option<f64>, digits: usize) -> String {
    v.map(|v| format!("{v:.digits$}"))
        .unwrap_or_else(|| "-".into())
}

pub fn run(a: ReportArgs) -> Result<ExitCode> {
    let a = match a.sub {
        ReportSub::Privacy(a) => a,
        ReportSub::Robustness(r) => return robustness(r),
        ReportSub::Html(h) => return super::report_html::html(h),
        ReportSub::Model(m) => return super::report_html::model(m),
        ReportSub::Mlflow(m) => return super::report_mlflow::run(m),
    };
    let rows = report::generate(&a.runs, &a.out)?;
    if a.output.json {
        print_json(&rows)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<20} {:<24} {:>8} {:>9} {:>9} {:>8} {:>11} {:>10}  best attack",
        "run", "kind", "ε", "test acc", "best AUC", "adv.", "TPR@0.1%FPR", "robust acc"
    );
    for r in &rows {
        println!(
            "{:<20} {:<24} {:>8} {:>9} {:>9} {:>8} {:>11} {:>10}  {}",
            r.run,
            r.kind,
            r.epsilon
                .map(|e| format!("{e:.2}"))
                .unwrap_or_else(|| "∞".into()),
            r.test_accuracy
                .map(|v| format!("{:.2}%", 100.0 * v))
                .unwrap_or_else(|| "-".into()),
            fmt(r.best_auc, 3),
            fmt(r.best_advantage, 3),
            fmt(r.tpr_at_fpr_0_001, 4),
            r.robust_accuracy
                .map(|v| format!("{:.1}%", 100.0 * v))
                .unwrap_or_else(|| "-".into()),
            r.best_auc_attack
                .clone()
                .unwrap_or_else(|| "(no audit)".into()),
        );
    }
    println!(
        "wrote privacy_by_epoch.png/svg, privacy_vs_utility.png/svg, privacy_report.csv/json in {}",
        a.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn robustness(a: RobustnessArgs) -> Result<ExitCode> {
    use fool::report::robustness as rr;
    let eps = a
        .eps
        .as_deref()
        .map(|e| fool::attacks::parse_eps(e).map_err(|m| anyhow::anyhow!("--eps: {m}")))
        .transpose()?;
    let settings = rr::Settings {
        attack: a.attack.clone(),
        eps,
        examples: a.examples,
        batch: a.batch,
        seed: a.seed,
        device: fool::device::parse_device(&a.device)?,
    };
    let quiet = a.output.quiet || a.output.json;
    let rows = rr::generate(&a.runs, &settings, &a.out, &mut |run, dir| {
        if !quiet {
            eprintln!("{run}: {} (in {})", a.attack, dir.display());
        }
    })?;
    if a.output.json {
        print_json(&rows)?;
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(r) = rows.first() {
        println!(
            "{} at L∞ eps {:.1}/255 on the first {} test images",
            r.attack,
            r.eps * 255.0,
            r.n
        );
    }
    println!(
        "{:<20} {:<12} {:>7} {:<18} {:>8} {:>24} {:>9} {:>11} {:>9}",
        "run",
        "kind",
        "ε",
        "adversarial",
        "clean",
        "robust [95% CI]",
        "MIA AUC",
        "TPR@0.1%FPR",
        "train s"
    );
    for r in &rows {
        println!(
            "{:<20} {:<12} {:>7} {:<18} {:>7.2}% {:>7.2}% [{:>5.1}, {:>5.1}] {:>9} {:>11} {:>9.0}",
            r.run,
            r.kind,
            r.epsilon.map_or("∞".into(), |e| format!("{e:.2}")),
            r.adversarial.clone().unwrap_or_else(|| "-".into()),
            100.0 * r.clean_accuracy,
            100.0 * r.robust_accuracy,
            100.0 * r.robust_ci_low,
            100.0 * r.robust_ci_high,
            fmt(r.membership_auc, 3),
            fmt(r.tpr_at_fpr_0_001, 4),
            r.train_seconds
        );
    }
    println!(
        "wrote robustness_report.csv/json, robust_vs_privacy.png/svg in {}",
        a.out.display()
    );
    Ok(ExitCode::SUCCESS)
}
