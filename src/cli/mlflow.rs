//! `--mlflow URI [--experiment NAME]` of `fool train`, `fool bench`, `fool audit` and `fool pate
//! student`: once the command's files are written, its folder is logged to MLflow
//! (`fool::report::mlflow::upload`). A failed upload never fails the command: one warning line
//! says how to upload the folder later with `fool report mlflow`.
use super::OutputArgs;
use anyhow::{bail, Result};
use clap::Args;
use fool::report::mlflow::{self, Uploaded};
use fool::Error;
use serde_json::{json, Value};
use std::path::Path;

#[derive(Args, Debug, Clone)]
pub struct MlflowArgs {
    /// Log the finished run (its params, metrics, tags and files) to the MLflow tracking server
    /// at this URI, e.g. http://127.0.0.1:5000; a failed upload is a warning, the run's files
    /// stay complete (upload them later with `fool report mlflow DIR --mlflow URI`)
    #[arg(long, value_name = "URI")]
    pub mlflow: Option<String>,
    /// The MLflow experiment of --mlflow (created when missing)
    #[arg(long, value_name = "NAME", default_value = "fool", requires = "mlflow")]
    pub experiment: String,
}

/// The outcome of `--mlflow` (None without it).
pub struct Logged(Option<std::result::Result<Uploaded, String>>);

/// An upload error as its reason alone (the caller names --mlflow and the URI).
pub fn reason(e: &Error) -> String {
    match e {
        Error::Invalid { field, msg } if field == "mlflow" => msg.clone(),
        Error::Failed { what, msg } if what == "mlflow" => msg.clone(),
        Error::Invalid { field, msg } => format!("{}: {msg}", super::flag_for(field)),
        e => e.to_string(),
    }
}

impl MlflowArgs {
    /// Refuse --mlflow for a command run without an output folder (nothing to log).
    pub fn needs_folder(&self, out: Option<&Path>, flag: &str) -> Result<()> {
        if self.mlflow.is_some() && out.is_none() {
            bail!("--mlflow: needs {flag} DIR: the run's files there are what is logged to MLflow");
        }
        Ok(())
    }

    /// [`MlflowArgs::upload`] when there is an output folder (see [`MlflowArgs::needs_folder`]).
    pub fn upload_to(&self, dir: Option<&Path>, out: &OutputArgs) -> Logged {
        match dir {
            Some(d) => self.upload(d, out),
            None => Logged(None),
        }
    }

    /// Log `dir` to the server of --mlflow, if given. A failure prints one warning line on
    /// stderr (even with --quiet); the upload's own notes are printed unless quiet.
    pub fn upload(&self, dir: &Path, out: &OutputArgs) -> Logged {
        let Some(uri) = &self.mlflow else {
            return Logged(None);
        };
        match mlflow::upload(dir, uri, &self.experiment, &mlflow::Options::default()) {
            Ok(u) => {
                if !out.quiet {
                    for w in &u.warnings {
                        eprintln!("fool: warning: --mlflow {uri}: {w}");
                    }
                }
                Logged(Some(Ok(u)))
            }
            Err(e) => {
                let new_run = matches!(&e, Error::Invalid { field, .. } if field == "new_run");
                let why = reason(&e);
                eprintln!(
                    "fool: warning: --mlflow {uri}: {why}; the run's files in {0} are complete, upload them later with: fool report mlflow {0} --mlflow {uri}{1}",
                    dir.display(),
                    if new_run { " --new-run" } else { "" }
                );
                Logged(Some(Err(why)))
            }
        }
    }
}

impl Logged {
    /// The `"mlflow"` field of --json: the run, or the error.
    pub fn json(&self) -> Option<Value> {
        match &self.0 {
            None => None,
            Some(Ok(u)) => Some(json!({
                "run_id": u.run_id,
                "experiment_id": u.experiment_id,
                "run_url": u.run_url,
                "reused": u.reused,
            })),
            Some(Err(e)) => Some(json!({ "error": e })),
        }
    }

    /// The command's --json value with the `"mlflow"` field: added to an object; a list (a
    /// bench summary, audit rows) becomes `{LIST_KEY: list, "mlflow": …}`. Unchanged without
    /// --mlflow.
    pub fn attach<T: serde::Serialize>(&self, value: &T, list_key: &str) -> Result<Value> {
        let mut v = serde_json::to_value(value)?;
        let Some(m) = self.json() else {
            return Ok(v);
        };
        match v.as_object_mut() {
            Some(o) => {
                o.insert("mlflow".into(), m);
                Ok(v)
            }
            None => Ok(json!({ list_key: v, "mlflow": m })),
        }
    }

    /// The human report's line about the upload (nothing without --mlflow or when it failed:
    /// the warning said it).
    pub fn print(&self) {
        if let Some(Ok(u)) = &self.0 {
            println!("{}", summary_line(u));
        }
    }
}

/// `logged to MLflow run ID (a new run in experiment NAME): P params, M metric values, A artifacts: URL`.
pub fn summary_line(u: &Uploaded) -> String {
    format!(
        "logged {} to MLflow run {} ({} in experiment '{}'): {} params, {} metric values, {} tags, {} artifacts: {}",
        u.dir.display(),
        u.run_id,
        if u.reused { "the same run as before" } else { "a new run" },
        u.experiment,
        u.params,
        u.metrics,
        u.tags,
        u.artifacts.len(),
        u.run_url
    )
}
