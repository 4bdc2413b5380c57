//! What a run folder holds, as MLflow sees a run: params (the configuration as `key=value`
//! strings), metrics with steps, tags and the artifact files. Only reads the folder; the files
//! are the truth, MLflow gets a copy.
use super::kinds;
use crate::train::RunDir;
use crate::{Error, Result};
use serde::Serialize;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// MLflow's longest key (params, metrics and tags).
pub const MAX_KEY: usize = 250;
/// MLflow's longest param value (longer values are truncated).
pub const MAX_PARAM_VALUE: usize = 6000;
/// MLflow's longest tag value.
pub const MAX_TAG_VALUE: usize = 8000;
/// Larger files are not uploaded as artifacts (with a warning).
pub const MAX_ARTIFACT_BYTES: u64 = 100 * 1024 * 1024;
/// The files of a folder uploaded as artifacts: these extensions, plus `model.pt`.
const ARTIFACT_EXTENSIONS: &[&str] = &["png", "svg", "json", "jsonl", "csv", "html", "txt", "npy"];
/// The record of the upload itself (see `super::Record`), never an artifact.
pub const RECORD_FILE: &str = "mlflow.json";

/// The kind of folder: what `fool` command wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// `fool train` or `fool pate student`: metadata.json.
    Train,
    /// `fool bench`: bench.json and summary.json.
    Bench,
    /// `fool audit --out`: audit.json.
    Audit,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Train => "train",
            Kind::Bench => "bench",
            Kind::Audit => "audit",
        }
    }
}

/// One metric value: `offset_ms` after the run's start (its timestamp once the start is known).
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub key: String,
    pub value: f64,
    pub step: i64,
    pub offset_ms: i64,
}

/// A folder as an MLflow run.
#[derive(Debug, Clone)]
pub struct Collected {
    pub kind: Kind,
    /// The run's name: the folder's name.
    pub name: String,
    pub params: Vec<(String, String)>,
    pub metrics: Vec<Metric>,
    pub tags: Vec<(String, String)>,
    /// Files to upload, in name order.
    pub artifacts: Vec<PathBuf>,
    /// What is left out, and why.
    pub warnings: Vec<String>,
    /// When the run ended (ms since 1970): its main file's modification time.
    pub end_ms: i64,
    /// How long it ran (ms), where the folder says (a training run's epochs), else 0.
    pub duration_ms: i64,
}

/// A key as MLflow accepts it: alphanumerics, `_ - . /` and spaces (anything else becomes
/// `_`), no empty, `.` or `..` path segment, at most [`MAX_KEY`] characters.
pub fn sanitize_key(key: &str) -> String {
    let clean: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_-./ ".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let parts: Vec<String> = clean
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            if s.chars().all(|c| c == '.') {
                s.replace('.', "_")
            } else {
                s.to_string()
            }
        })
        .collect();
    let joined = parts.join("/");
    let mut out: String = joined.chars().take(MAX_KEY).collect();
    while out.ends_with('/') {
        out.pop();
    }
    if out.is_empty() {
        "_".into()
    } else {
        out
    }
}

/// The first `max` characters of `s`.
pub fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// A JSON value as `key=value` params: objects flattened with `.`, lists of scalars joined with
/// `,`, other lists as JSON, nulls left out.
pub fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
    let scalar = |x: &Value| match x {
        Value::String(s) => Some(s.clone()),
        Value::Number(_) | Value::Bool(_) => Some(x.to_string()),
        _ => None,
    };
    match v {
        Value::Null => {}
        Value::Object(m) => {
            for (k, x) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, x, out);
            }
        }
        Value::Array(a) => match a.iter().map(scalar).collect::<Option<Vec<_>>>() {
            Some(items) => out.push((prefix.to_string(), items.join(","))),
            None => out.push((prefix.to_string(), v.to_string())),
        },
        other => out.push((prefix.to_string(), scalar(other).unwrap_or_default())),
    }
}

pub(super) fn to_value<T: Serialize>(what: &str, v: &T) -> Result<Value> {
    serde_json::to_value(v).map_err(|e| Error::internal(what, e))
}

/// Modification time of a file, ms since 1970.
pub(super) fn mtime_ms(path: &Path) -> Result<i64> {
    let t = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .map_err(|e| Error::io(path, e))?;
    Ok(t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64))
}

/// Read a run folder: a training run (metadata.json), a bench output (bench.json and
/// summary.json) or an audit (audit.json).
pub fn collect(dir: &Path) -> Result<Collected> {
    if !dir.is_dir() {
        return Err(Error::bad_file(dir, "not a folder"));
    }
    let name = std::fs::canonicalize(dir)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| dir.display().to_string());
    let mut c = Collected {
        kind: Kind::Train,
        name: name.clone(),
        params: vec![],
        metrics: vec![],
        tags: vec![],
        artifacts: vec![],
        warnings: vec![],
        end_ms: 0,
        duration_ms: 0,
    };
    let run = RunDir::new(dir);
    if run.metadata_path().is_file() {
        kinds::train(&run, &mut c)?;
    } else if dir.join("bench.json").is_file() {
        if !dir.join("summary.json").is_file() {
            return Err(Error::bad_file(
                dir,
                "a bench output without summary.json: the bench has not finished (run it again to resume)",
            ));
        }
        kinds::bench(dir, &mut c)?;
    } else if dir.join("audit.json").is_file() {
        kinds::audit(dir, &mut c)?;
    } else {
        return Err(Error::bad_file(
            dir,
            "not a fool run folder: no metadata.json (a training run), bench.json and summary.json (a bench) or audit.json (an audit)",
        ));
    }
    c.tags.splice(
        0..0,
        [
            ("fool.version", env!("CARGO_PKG_VERSION").to_string()),
            ("fool.kind", c.kind.name().to_string()),
            ("mlflow.runName", name),
            ("mlflow.source.name", "fool".to_string()),
        ]
        .map(|(k, v)| (k.to_string(), v)),
    );
    artifacts(dir, &mut c)?;
    tidy(&mut c);
    Ok(c)
}

/// Keys sanitized and values truncated; the first of duplicate params, tags and (key, step)
/// metrics kept.
fn tidy(c: &mut Collected) {
    let mut seen = std::collections::HashSet::new();
    c.params.retain_mut(|(k, v)| {
        *k = sanitize_key(k);
        *v = truncate(v, MAX_PARAM_VALUE);
        seen.insert(k.clone())
    });
    seen.clear();
    c.tags.retain_mut(|(k, v)| {
        *k = sanitize_key(k);
        *v = truncate(v, MAX_TAG_VALUE);
        seen.insert(k.clone())
    });
    let mut steps = std::collections::HashSet::new();
    c.metrics.retain_mut(|m| {
        m.key = sanitize_key(&m.key);
        steps.insert((m.key.clone(), m.step))
    });
}

/// The folder's files that go up as artifacts: regular files directly in it with an
/// [`ARTIFACT_EXTENSIONS`] extension, and model.pt; not hidden files, not [`RECORD_FILE`], not
/// files over [`MAX_ARTIFACT_BYTES`] (a warning each).
fn artifacts(dir: &Path, c: &mut Collected) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        let wanted = name == "model.pt" || ARTIFACT_EXTENSIONS.contains(&ext.as_str());
        if name.starts_with('.') || name == RECORD_FILE || !wanted {
            continue;
        }
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        if meta.len() > MAX_ARTIFACT_BYTES {
            c.warnings.push(format!(
                "{name}: {:.0} MB, over the {} MB limit for artifacts; not uploaded",
                meta.len() as f64 / 1048576.0,
                MAX_ARTIFACT_BYTES / 1048576
            ));
            continue;
        }
        c.artifacts.push(path);
    }
    c.artifacts.sort();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_what_mlflow_accepts() {
        assert_eq!(
            sanitize_key("success_rate/pgd/jpeg:75+bits:4/non-adaptive"),
            "success_rate/pgd/jpeg_75_bits_4/non-adaptive"
        );
        assert_eq!(sanitize_key("/a//b/"), "a/b");
        assert_eq!(sanitize_key("a/../b/./c"), "a/__/b/_/c");
        assert_eq!(sanitize_key("ε=0.3"), "__0.3");
        assert_eq!(sanitize_key(""), "_");
        assert_eq!(sanitize_key(&"k".repeat(300)).len(), MAX_KEY);
        assert_eq!(
            truncate(&"é".repeat(7000), MAX_PARAM_VALUE).chars().count(),
            6000
        );
    }

    #[test]
    fn configs_flatten_to_strings() {
        let v = serde_json::json!({
            "dp": {"clip": 1.0, "noise": 1.1, "target_epsilon": null},
            "eps": [0.0, 0.5], "name": "x", "nested": [{"a": 1}], "flag": true,
        });
        let mut out = vec![];
        flatten("", &v, &mut out);
        let get = |k: &str| {
            out.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("dp.clip"), Some("1.0"));
        assert_eq!(get("dp.noise"), Some("1.1"));
        assert_eq!(get("dp.target_epsilon"), None);
        assert_eq!(get("eps"), Some("0.0,0.5"));
        assert_eq!(get("name"), Some("x"));
        assert_eq!(get("nested"), Some(r#"[{"a":1}]"#));
        assert_eq!(get("flag"), Some("true"));
    }
}
