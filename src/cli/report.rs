//! `fool report privacy RUN... --out DIR`: DP vs non-DP runs side by side.
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
    let ReportSub::Privacy(a) = a.sub;
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
