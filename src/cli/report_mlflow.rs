//! `fool report mlflow DIR... --mlflow URI [--experiment NAME] [--new-run]`: log run folders
//! written earlier (a training run, a bench output, an audit) to an MLflow tracking server.
use super::mlflow::{reason, summary_line};
use super::{print_json, OutputArgs};
use anyhow::Result;
use clap::Args;
use fool::report::mlflow;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct MlflowReportArgs {
    /// Run folders: a training run (`fool train --out`, `fool pate student --out`: metadata.json),
    /// a bench output (bench.json and summary.json) or an audit (`fool audit --out`: audit.json)
    #[arg(required = true)]
    dirs: Vec<PathBuf>,
    /// The MLflow tracking server, e.g. http://127.0.0.1:5000 (http only)
    #[arg(long, value_name = "URI")]
    mlflow: String,
    /// The MLflow experiment (created when missing)
    #[arg(long, value_name = "NAME", default_value = "fool")]
    experiment: String,
    /// Log a new MLflow run even when the folder's mlflow.json names the run an earlier upload
    /// went to (by default that run is logged into again, without duplicating its metrics)
    #[arg(long)]
    new_run: bool,
    #[command(flatten)]
    output: OutputArgs,
}

pub fn run(a: MlflowReportArgs) -> Result<ExitCode> {
    let opts = mlflow::Options {
        new_run: a.new_run,
        ..mlflow::Options::default()
    };
    let mut done = vec![];
    let mut failed = false;
    for dir in &a.dirs {
        match mlflow::upload(dir, &a.mlflow, &a.experiment, &opts) {
            Ok(u) => {
                if !a.output.json {
                    println!("{}", summary_line(&u));
                }
                if !a.output.quiet {
                    for w in &u.warnings {
                        eprintln!("fool: warning: {}: {w}", dir.display());
                    }
                }
                done.push(serde_json::to_value(&u)?);
            }
            Err(e) => {
                failed = true;
                let server = match &e {
                    fool::Error::Invalid { field, .. } => field == "mlflow",
                    fool::Error::Failed { what, .. } => what == "mlflow",
                    _ => false,
                };
                let what = if server {
                    format!("--mlflow {}: ", a.mlflow)
                } else {
                    String::new()
                };
                eprintln!("fool: error: {what}{}", reason(&e));
                done.push(serde_json::json!({"dir": dir, "error": reason(&e)}));
            }
        }
    }
    if a.output.json {
        print_json(&done)?;
    }
    Ok(if failed {
        ExitCode::from(super::EXIT_ERROR)
    } else {
        ExitCode::SUCCESS
    })
}
