//! `report::mlflow`: a finished run folder logged to an MLflow tracking server over its REST API.
//!
//! The folder's files are the truth: [`upload`] reads what a command wrote — a training run
//! (`metadata.json`: the configuration, every epoch's metrics, the model's SHA-256), a bench
//! output (`bench.json` + `summary.json`: success rate and robust accuracy per setting, the eps
//! index as step) or an audit (`audit.json`) — and logs it as one MLflow run: params, metrics
//! with steps, tags and the artifact files ([`collect`]). Requests stay within MLflow's batch
//! limits and are retried on transient failures ([`client`]). Which run the folder went to is
//! recorded in `DIR/mlflow.json` ([`Record`]), so uploading it again logs into the same run
//! rather than a duplicate.
pub mod batch;
pub mod client;
pub mod collect;
mod kinds;

use crate::files::{read_json, write_json};
use crate::{Error, Result};
use batch::{artifact_root, batches};
use client::Api;
pub use collect::{collect, Collected, Kind, RECORD_FILE};
use std::path::Path;
use std::time::Duration;

/// How to upload.
#[derive(Debug, Clone)]
pub struct Options {
    /// Log a new run even when the folder's `mlflow.json` names one on this server.
    pub new_run: bool,
    /// Pauses before each retry of a request that failed transiently (connection failures,
    /// timeouts, 429, 5xx); their number is the number of retries.
    pub backoff: Vec<Duration>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            new_run: false,
            backoff: [500, 1000, 2000, 4000].map(Duration::from_millis).to_vec(),
        }
    }
}

/// `DIR/mlflow.json`: the MLflow run a folder was logged to.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Record {
    pub uri: String,
    pub experiment_id: String,
    pub run_id: String,
    pub artifact_uri: String,
    /// When the last upload finished (UTC, RFC 3339); null while one is under way or failed.
    pub uploaded_at: Option<String>,
}

/// What [`upload`] logged.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Uploaded {
    pub dir: std::path::PathBuf,
    pub kind: Kind,
    pub uri: String,
    pub experiment: String,
    pub experiment_id: String,
    pub run_id: String,
    /// The run in MLflow's web UI.
    pub run_url: String,
    /// Logged into the run the folder's mlflow.json named (an earlier upload), not a new one.
    pub reused: bool,
    pub params: usize,
    /// Metric values (every step of every metric).
    pub metrics: usize,
    pub tags: usize,
    /// `runs/log-batch` requests.
    pub requests: usize,
    /// Artifact files uploaded.
    pub artifacts: Vec<String>,
    /// What was not logged, and why.
    pub warnings: Vec<String>,
}

/// Now, ms since 1970.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// `ms` since 1970 as UTC RFC 3339 (`2026-12-08T01:10:44Z`).
pub fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The folder's `mlflow.json`, if any.
pub fn read_record(dir: &Path) -> Result<Option<Record>> {
    let p = dir.join(RECORD_FILE);
    if !p.exists() {
        return Ok(None);
    }
    read_json(&p).map(Some)
}

fn same_server(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// Log the run folder `dir` to the MLflow server at `uri` in the experiment `experiment`
/// (created when missing). A folder whose `mlflow.json` names a run on the same server is
/// logged into that run (metrics already there are not duplicated: their timestamps are the
/// same), unless `opts.new_run`; a run that is gone, in another experiment or with other
/// params is refused (field `new_run`). Errors about the server are `Error::Failed` for
/// `mlflow`; a `uri` that is not `http://…` is `Error::Invalid` for `mlflow`.
pub fn upload(dir: &Path, uri: &str, experiment: &str, opts: &Options) -> Result<Uploaded> {
    let c = collect(dir)?;
    let previous = read_record(dir)?;
    let api = Api::new(uri, &opts.backoff)?;
    let experiment_id = api.experiment_id(experiment)?;
    let reuse = previous.filter(|r| same_server(&r.uri, uri) && !opts.new_run);
    let (run, reused) = match reuse {
        Some(r) => {
            let run = existing_run(&api, dir, &r, (experiment, &experiment_id), &c)?;
            (run, true)
        }
        None => {
            let start = c.end_ms - c.duration_ms;
            let run = api.create_run(&experiment_id, &c.name, start, &c.tags)?;
            (run, false)
        }
    };
    let mut record = Record {
        uri: api.uri.clone(),
        experiment_id: run.experiment_id.clone(),
        run_id: run.run_id.clone(),
        artifact_uri: run.artifact_uri.clone(),
        uploaded_at: None,
    };
    let record_path = dir.join(RECORD_FILE);
    write_json(&record_path, &record)?;
    let base = if reused {
        run.start_time
    } else {
        c.end_ms - c.duration_ms
    };
    let result = log(&api, &run, &c, base);
    let status = if result.is_ok() { "FINISHED" } else { "FAILED" };
    let finished = api.finish_run(&run.run_id, status, base + c.duration_ms);
    let (requests, artifacts, mut warnings) = result?;
    finished?;
    record.uploaded_at = Some(rfc3339(now_ms()));
    write_json(&record_path, &record)?;
    warnings.splice(0..0, c.warnings.iter().cloned());
    Ok(Uploaded {
        dir: dir.to_path_buf(),
        kind: c.kind,
        uri: api.uri.clone(),
        experiment: experiment.to_string(),
        run_url: format!(
            "{}/#/experiments/{}/runs/{}",
            api.uri, run.experiment_id, run.run_id
        ),
        experiment_id: run.experiment_id,
        run_id: run.run_id,
        reused,
        params: c.params.len(),
        metrics: c.metrics.len(),
        tags: c.tags.len(),
        requests,
        artifacts,
        warnings,
    })
}

/// The run `r` names, when it can take this folder again.
fn existing_run(
    api: &Api,
    dir: &Path,
    r: &Record,
    (experiment, experiment_id): (&str, &str),
    c: &Collected,
) -> Result<client::RunInfo> {
    let refuse = |why: String| {
        Error::field(
            "new_run",
            format!(
                "{} was logged to the MLflow run {} ({}), which {why}; log it as a new run instead",
                dir.display(),
                r.run_id,
                dir.join(RECORD_FILE).display()
            ),
        )
    };
    let run = match api.get_run(&r.run_id)? {
        Some(run) if run.lifecycle_stage != "deleted" => run,
        _ => return Err(refuse(format!("{} no longer has", api.uri))),
    };
    if run.experiment_id != experiment_id {
        return Err(refuse(format!(
            "is in another experiment (id {}) than '{experiment}' (id {experiment_id})",
            run.experiment_id
        )));
    }
    for (k, v) in &c.params {
        if let Some((_, old)) = run.params.iter().find(|(key, _)| key == k) {
            if old != v {
                let short = |s: &str| collect::truncate(s, 60);
                return Err(refuse(format!(
                    "has other parameters ({k}: {} there, {} now)",
                    short(old),
                    short(v)
                )));
            }
        }
    }
    Ok(run)
}

/// Log params, tags and metrics in batches, then the artifacts: (requests, artifact names,
/// warnings).
fn log(
    api: &Api,
    run: &client::RunInfo,
    c: &Collected,
    base: i64,
) -> Result<(usize, Vec<String>, Vec<String>)> {
    let metrics: Vec<_> = c
        .metrics
        .iter()
        .map(|m| (m.clone(), base + m.offset_ms))
        .collect();
    let all = batches(&c.params, &c.tags, &metrics);
    for (i, b) in all.iter().enumerate() {
        api.log_batch(&run.run_id, b, i, all.len())?;
    }
    let mut names = vec![];
    let mut warnings = vec![];
    let Some(root) = artifact_root(&run.artifact_uri) else {
        if !c.artifacts.is_empty() {
            warnings.push(format!(
                "artifacts not uploaded: the run's artifact location is {}, not the server's artifact proxy (mlflow-artifacts:); start the server with --serve-artifacts",
                run.artifact_uri
            ));
        }
        return Ok((all.len(), names, warnings));
    };
    for path in &c.artifacts {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        api.put_artifact(&root, &name, bytes)?;
        names.push(name);
    }
    Ok((all.len(), names, warnings))
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_dates() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(super::rfc3339(1_796_692_244_999), "2026-12-08T01:10:44Z");
    }
}
