//! MLflow's tracking REST API (2.x and 3.x, under `URI/api/2.0/mlflow/`) and its artifact proxy
//! (`URI/api/2.0/mlflow-artifacts/artifacts/`), over the blocking HTTP client of `fool_serve`:
//! retries with back-off on connection failures, timeouts, 429 and 5xx; every other failure is
//! one message naming the request and MLflow's own `message`.
use super::batch::{encode, Batch, MAX_TAGS};
use crate::{Error, Result};
use serde_json::{json, Value};
use std::time::Duration;

const API: &str = "/api/2.0/mlflow";
const ARTIFACTS: &str = "/api/2.0/mlflow-artifacts/artifacts";
const TIMEOUT: Duration = Duration::from_secs(30);

/// A number as MLflow's JSON takes it: non-finite values as "NaN", "Infinity", "-Infinity".
fn number(v: f64) -> Value {
    if v.is_finite() {
        json!(v)
    } else if v.is_nan() {
        json!("NaN")
    } else if v > 0.0 {
        json!("Infinity")
    } else {
        json!("-Infinity")
    }
}

/// What a request ended with, when it did not succeed.
#[derive(Debug)]
pub enum Failure {
    /// The server answered with this status: MLflow's `error_code` and `message` when the body
    /// is MLflow's JSON error, else None and the start of the body.
    Status {
        status: u16,
        code: Option<String>,
        message: String,
    },
    /// No answer (connection refused, reset, timed out), after every retry.
    Transport(String),
}

/// A run as the server has it.
#[derive(Debug, Clone)]
pub struct RunInfo {
    pub run_id: String,
    pub experiment_id: String,
    pub artifact_uri: String,
    pub start_time: i64,
    /// `active` or `deleted`.
    pub lifecycle_stage: String,
    pub params: Vec<(String, String)>,
}

impl RunInfo {
    fn parse(v: &Value) -> RunInfo {
        let info = &v["run"]["info"];
        let s = |k: &str| info[k].as_str().unwrap_or_default().to_string();
        let params = v["run"]["data"]["params"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|p| {
                        let f = |k: &str| p[k].as_str().unwrap_or_default().to_string();
                        (f("key"), f("value"))
                    })
                    .collect()
            })
            .unwrap_or_default();
        RunInfo {
            run_id: s("run_id"),
            experiment_id: s("experiment_id"),
            artifact_uri: s("artifact_uri"),
            start_time: info["start_time"].as_i64().unwrap_or(0),
            lifecycle_stage: s("lifecycle_stage"),
            params,
        }
    }
}

/// A tracking server.
pub struct Api {
    http: fool_serve::client::Client,
    /// The server, as given (no trailing `/`).
    pub uri: String,
    backoff: Vec<Duration>,
}

fn fail(msg: impl Into<String>) -> Error {
    Error::failed("mlflow", msg)
}

impl Api {
    /// A client of the server at `uri` (`http://HOST:PORT[/PREFIX]`); nothing is sent yet.
    pub fn new(uri: &str, backoff: &[Duration]) -> Result<Api> {
        let uri = uri.trim_end_matches('/').to_string();
        if uri.starts_with("https://") {
            return Err(Error::field(
                "mlflow",
                "https is not supported: give the tracking server's http:// URI (or that of a local http proxy to it)",
            ));
        }
        if !uri.starts_with("http://") {
            return Err(Error::field(
                "mlflow",
                "not an MLflow tracking URI: expected http://HOST:PORT",
            ));
        }
        let http = fool_serve::client::Client::new(&uri, None, true).map_err(|e| {
            let e = crate::error::message_line(&e);
            let why = e
                .split_once(" is not a URL: ")
                .map_or(e.as_str(), |(_, w)| w);
            Error::field("mlflow", format!("not a URL: {why}"))
        })?;
        Ok(Api {
            http,
            uri,
            backoff: backoff.to_vec(),
        })
    }

    /// Send one request, retrying connection failures, timeouts, 429 and 5xx after each pause
    /// of the back-off; the status and body of the last answer otherwise.
    fn send(
        &self,
        method: &str,
        path: &str,
        ctype: Option<&str>,
        body: Vec<u8>,
        timeout: Duration,
    ) -> std::result::Result<(u16, Vec<u8>), Failure> {
        let mut attempt = 0;
        loop {
            let r = self
                .http
                .request(method, path, ctype, body.clone(), timeout);
            let retry = match &r {
                Err(_) => true,
                Ok((s, _)) => *s == 429 || *s >= 500,
            };
            if retry && attempt < self.backoff.len() {
                std::thread::sleep(self.backoff[attempt]);
                attempt += 1;
                continue;
            }
            let tries = attempt + 1;
            return match r {
                Err(e) => {
                    // The client's message starts with the URL, which the caller names.
                    let url = format!("{}{path}: ", self.uri);
                    let e = crate::error::message_line(&e);
                    let e = e.strip_prefix(&url).unwrap_or(&e);
                    Err(Failure::Transport(format!("{e} (after {tries} tries)")))
                }
                Ok((status, b)) if (200..300).contains(&status) => Ok((status, b.to_vec())),
                Ok((status, b)) => {
                    let v: Option<Value> = serde_json::from_slice(&b).ok();
                    let code = v
                        .as_ref()
                        .and_then(|v| v["error_code"].as_str().map(str::to_string));
                    let text = String::from_utf8_lossy(&b);
                    let message = match v.as_ref().and_then(|v| v["message"].as_str()) {
                        Some(m) => m.to_string(),
                        None if text.trim_start().starts_with('<') => "an HTML page".into(),
                        None if text.trim().is_empty() => "an empty body".into(),
                        None => text.chars().take(120).collect(),
                    };
                    let message = crate::error::message_line(&message);
                    Err(Failure::Status {
                        status,
                        code,
                        message: message.chars().take(400).collect(),
                    })
                }
            };
        }
    }

    /// A tracking API call (`GET`: `what` carries its query; `POST`: `body` is the JSON).
    fn call(
        &self,
        method: &str,
        what: &str,
        body: Option<&Value>,
    ) -> std::result::Result<Value, Failure> {
        let path = format!("{API}/{what}");
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let ctype = body.map(|_| "application/json");
        let (_, b) = self.send(method, &path, ctype, bytes, TIMEOUT)?;
        serde_json::from_slice(&b).map_err(|_| {
            let text = String::from_utf8_lossy(&b);
            Failure::Status {
                status: 200,
                code: None,
                message: if text.trim_start().starts_with('<') {
                    "an HTML page".into()
                } else {
                    format!(
                        "'{}'",
                        crate::error::message_line(&text)
                            .chars()
                            .take(80)
                            .collect::<String>()
                    )
                },
            }
        })
    }

    /// The error for a failed call: what was asked and what the server said.
    pub fn error(&self, method: &str, what: &str, f: Failure) -> Error {
        let endpoint = what.split('?').next().unwrap_or(what);
        match f {
            Failure::Transport(e) => fail(format!("cannot reach the MLflow server: {e}")),
            Failure::Status {
                status,
                code: None,
                message,
            } => fail(format!(
                "not an MLflow tracking server: {method} {API}/{endpoint} answered {status} with {message}, not MLflow's JSON"
            )),
            Failure::Status {
                status,
                code: Some(code),
                message,
            } => fail(format!(
                "{method} {API}/{endpoint} was refused ({status} {code}): {message}"
            )),
        }
    }

    /// The id of the experiment `name`, created when there is none.
    pub fn experiment_id(&self, name: &str) -> Result<String> {
        let what = format!(
            "experiments/get-by-name?experiment_name={}",
            encode(name, false)
        );
        for _ in 0..2 {
            match self.call("GET", &what, None) {
                Ok(v) => {
                    let e = &v["experiment"];
                    if e["lifecycle_stage"] == "deleted" {
                        return Err(Error::field(
                            "experiment",
                            format!("the MLflow experiment '{name}' is deleted: restore it, or choose another name"),
                        ));
                    }
                    return e["experiment_id"]
                        .as_str()
                        .map(str::to_string)
                        .ok_or_else(|| {
                            fail(format!(
                                "GET {API}/experiments/get-by-name: no experiment_id in the answer"
                            ))
                        });
                }
                Err(Failure::Status { code: Some(c), .. }) if c == "RESOURCE_DOES_NOT_EXIST" => {
                    match self.call("POST", "experiments/create", Some(&json!({ "name": name }))) {
                        Ok(v) => {
                            if let Some(id) = v["experiment_id"].as_str() {
                                return Ok(id.to_string());
                            }
                            return Err(fail(
                                "POST experiments/create: no experiment_id in the answer",
                            ));
                        }
                        // Created meanwhile by someone else: look it up again.
                        Err(Failure::Status { code: Some(c), .. })
                            if c == "RESOURCE_ALREADY_EXISTS" => {}
                        Err(f) => return Err(self.error("POST", "experiments/create", f)),
                    }
                }
                Err(f) => return Err(self.error("GET", &what, f)),
            }
        }
        Err(fail(format!(
            "the experiment '{name}' could not be found nor created"
        )))
    }

    /// A new run in `experiment_id`.
    pub fn create_run(
        &self,
        experiment_id: &str,
        name: &str,
        start_time: i64,
        tags: &[(String, String)],
    ) -> Result<RunInfo> {
        let tags: Vec<Value> = tags
            .iter()
            .take(MAX_TAGS)
            .map(|(k, v)| json!({"key": k, "value": v}))
            .collect();
        let body = json!({"experiment_id": experiment_id, "run_name": name, "start_time": start_time, "tags": tags});
        let v = self
            .call("POST", "runs/create", Some(&body))
            .map_err(|f| self.error("POST", "runs/create", f))?;
        let run = RunInfo::parse(&v);
        if run.run_id.is_empty() {
            return Err(fail("POST runs/create: no run_id in the answer"));
        }
        Ok(run)
    }

    /// The run `run_id`, or None when the server has no such run.
    pub fn get_run(&self, run_id: &str) -> Result<Option<RunInfo>> {
        let what = format!("runs/get?run_id={}", encode(run_id, false));
        match self.call("GET", &what, None) {
            Ok(v) => Ok(Some(RunInfo::parse(&v))),
            Err(Failure::Status { code: Some(c), .. }) if c == "RESOURCE_DOES_NOT_EXIST" => {
                Ok(None)
            }
            Err(f) => Err(self.error("GET", &what, f)),
        }
    }

    /// `runs/log-batch`; `index` of `count` names the request in errors.
    pub fn log_batch(&self, run_id: &str, b: &Batch, index: usize, count: usize) -> Result<()> {
        let kv = |v: &[(String, String)]| -> Vec<Value> {
            v.iter()
                .map(|(k, v)| json!({"key": k, "value": v}))
                .collect()
        };
        let metrics: Vec<Value> = b
            .metrics
            .iter()
            .map(|(m, ts)| json!({"key": m.key, "value": number(m.value), "timestamp": ts, "step": m.step}))
            .collect();
        let body = json!({"run_id": run_id, "metrics": metrics, "params": kv(&b.params), "tags": kv(&b.tags)});
        self.call("POST", "runs/log-batch", Some(&body))
            .map(drop)
            .map_err(|f| {
                let what = format!(
                    "runs/log-batch (request {} of {count}: {} params, {} tags, {} metrics)",
                    index + 1,
                    b.params.len(),
                    b.tags.len(),
                    b.metrics.len()
                );
                self.error("POST", &what, f)
            })
    }

    /// `runs/update`: the run's status (`FINISHED`, `FAILED`) and end time.
    pub fn finish_run(&self, run_id: &str, status: &str, end_time: i64) -> Result<()> {
        let body = json!({"run_id": run_id, "status": status, "end_time": end_time});
        self.call("POST", "runs/update", Some(&body))
            .map(drop)
            .map_err(|f| self.error("POST", "runs/update", f))
    }

    /// Upload `bytes` as the artifact `name` of the run whose artifacts are at `root` (its
    /// `artifact_uri` without the `mlflow-artifacts:` scheme).
    pub fn put_artifact(&self, root: &str, name: &str, bytes: Vec<u8>) -> Result<()> {
        let path = format!("{ARTIFACTS}/{}/{}", encode(root, true), encode(name, false));
        let timeout = TIMEOUT + Duration::from_secs(bytes.len() as u64 / 1_000_000);
        self.send(
            "PUT",
            &path,
            Some("application/octet-stream"),
            bytes,
            timeout,
        )
        .map(drop)
        .map_err(|f| match f {
            Failure::Transport(e) => fail(format!("artifact {name}: no answer: {e}")),
            Failure::Status {
                status, message, ..
            } => fail(format!(
                "artifact {name}: PUT {ARTIFACTS}/… was refused ({status}): {message}"
            )),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_and_non_urls_are_refused() {
        let e = Api::new("https://mlflow.example.com", &[]).err().unwrap();
        assert!(e.to_string().contains("https is not supported"), "{e}");
        let e = Api::new("localhost:5000", &[]).err().unwrap();
        assert!(e.to_string().contains("not an MLflow tracking URI"), "{e}");
        let e = Api::new("http://127.0.0.1:5000 x", &[]).err().unwrap();
        assert_eq!(e.to_string(), "mlflow: not a URL: invalid uri character");
        assert!(Api::new("http://127.0.0.1:5000/", &[]).is_ok());
    }
}
