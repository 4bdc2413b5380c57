//! A bench output directory: `bench.json` (the configuration, checked when resuming),
//! `results.jsonl` (one row per image × setting, appended a unit at a time), `skipped.txt`
//! (unreadable images), and the reports written from the rows (`summary.json`, `summary.csv`,
//! the chart).
use super::plan::{eps_key, BenchConfig};
use super::stats::{self, summarize, SummaryRow};
use crate::attacks::Norm;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

/// One per-image result line of `results.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Row {
    pub file: String,
    pub label: usize,
    pub attack: String,
    pub eps: f64,
    /// The norm `eps` bounds.
    #[serde(default)]
    pub norm: Norm,
    pub defense: String,
    pub mode: String,
    pub target: Option<usize>,
    /// Prediction on the clean image through the defense.
    pub clean_pred: usize,
    /// Prediction on the attacked (8-bit) image through the defense.
    pub adv_pred: usize,
    /// Targeted: `adv_pred == target`; untargeted: `adv_pred != label`.
    pub success: bool,
    /// Distance of the attacked image to the clean one, pixel space 0..1.
    pub linf: f64,
    pub l2: f64,
    pub queries: usize,
}

/// What identifies a row: file, attack, eps, defense, mode.
pub(crate) type RowKey = (String, String, String, String, String);

impl Row {
    pub(crate) fn key(&self) -> RowKey {
        (
            self.file.clone(),
            self.attack.clone(),
            eps_key(self.eps),
            self.defense.clone(),
            self.mode.clone(),
        )
    }
}

/// `results.jsonl` in a bench output directory.
pub fn results_path(out: &Path) -> PathBuf {
    out.join("results.jsonl")
}

/// `bench.json` in a bench output directory.
pub fn config_path(out: &Path) -> PathBuf {
    out.join("bench.json")
}

fn skipped_path(out: &Path) -> PathBuf {
    out.join("skipped.txt")
}

/// Read `results.jsonl`: drop a torn last line and duplicate rows (keeping the first), and
/// rewrite the file if anything was dropped. Returns the rows.
pub fn load_results(path: &Path) -> Result<Vec<Row>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text = crate::files::read_regular_to_string(path, "a bench results file")?;
    let mut rows = Vec::new();
    let mut seen = HashSet::new();
    let mut dirty = !text.is_empty() && !text.ends_with('\n');
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Row>(line) {
            Ok(r) => {
                if seen.insert(r.key()) {
                    rows.push(r);
                } else {
                    dirty = true;
                }
            }
            Err(_) if i + 1 == lines.len() => dirty = true, // torn by an interruption
            Err(e) => {
                return Err(Error::bad_file(
                    path,
                    format!("line {}: not a result row ({e})", i + 1),
                ))
            }
        }
    }
    if dirty {
        write_rows(path, &rows)?;
    }
    Ok(rows)
}

/// Rows of several runs (shards) as one set: duplicates dropped (a unit may have run in two
/// shards' directories), in a canonical order.
pub fn merge_rows(rows: Vec<Row>) -> Vec<Row> {
    let mut seen = HashSet::new();
    let mut out: Vec<Row> = rows.into_iter().filter(|r| seen.insert(r.key())).collect();
    out.sort_by(|a, b| {
        (&a.attack, &a.mode, &a.defense, &a.file)
            .cmp(&(&b.attack, &b.mode, &b.defense, &b.file))
            .then(a.eps.total_cmp(&b.eps))
    });
    out
}

/// Rows as JSON lines.
fn jsonl(rows: &[Row]) -> Result<String> {
    let mut text = String::new();
    for r in rows {
        text.push_str(&serde_json::to_string(r).map_err(|e| Error::internal("result row", e))?);
        text.push('\n');
    }
    Ok(text)
}

/// Write rows as JSON lines, atomically.
pub fn write_rows(path: &Path, rows: &[Row]) -> Result<()> {
    let text = jsonl(rows)?;
    crate::files::write_text(path, &text)
}

/// Append rows to `results.jsonl` in one write, flushed to disk.
pub fn append_rows(path: &Path, rows: &[Row]) -> Result<()> {
    let text = jsonl(rows)?;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    f.write_all(text.as_bytes())
        .map_err(|e| Error::io(path, e))?;
    f.sync_data().map_err(|e| Error::io(path, e))
}

/// Files found unreadable by earlier runs in `out` (`skipped.txt`, one per line).
pub fn load_skipped(out: &Path) -> Result<HashSet<String>> {
    let p = skipped_path(out);
    if !p.exists() {
        return Ok(HashSet::new());
    }
    let text = crate::files::read_regular_to_string(&p, "a list of skipped files")?;
    Ok(text
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.split('\t').next().unwrap_or(l).to_string())
        .collect())
}

/// Record an unreadable file (`file<TAB>error`).
pub fn record_skipped(out: &Path, file: &str, err: &Error) -> Result<()> {
    let p = skipped_path(out);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&p)
        .map_err(|e| Error::io(&p, e))?;
    writeln!(f, "{file}\t{}", err.to_string().replace(['\n', '\t'], " "))
        .map_err(|e| Error::io(&p, e))
}

/// Write the list of skipped files of merged runs (sorted; nothing when there are none).
pub fn write_skipped(out: &Path, skipped: &HashSet<String>) -> Result<()> {
    if skipped.is_empty() {
        return Ok(());
    }
    let mut list: Vec<&String> = skipped.iter().collect();
    list.sort();
    let text: String = list.iter().map(|f| format!("{f}\tskipped\n")).collect();
    let p = skipped_path(out);
    crate::files::write_text(&p, &text)
}

/// The configuration saved in the bench output directory `dir`.
pub fn read_config(dir: &Path) -> Result<BenchConfig> {
    crate::files::read_json(&config_path(dir))
}

/// Save the config, or check it against the one already in `out` (resuming).
pub fn check_or_save_config(out: &Path, cfg: &BenchConfig) -> Result<()> {
    let p = config_path(out);
    if p.exists() {
        if read_config(out)? != *cfg {
            return Err(Error::bad_file(
                &p,
                "this output directory holds a run with other settings (model, images, attacks, eps, defenses, seed, …); use another output directory to start a new run",
            ));
        }
        return Ok(());
    }
    crate::files::write_json_bare(&p, cfg)
}

/// Write `summary.json`, `summary.csv` and the chart for a set of rows into `out`.
pub fn write_reports(out: &Path, cfg: &BenchConfig, rows: &[Row]) -> Result<Vec<SummaryRow>> {
    let summary = summarize(rows, &cfg.attacks, &cfg.eps, &cfg.defenses);
    crate::files::write_json_bare(&out.join("summary.json"), &summary)?;
    let mut csv = String::from(stats::CSV_HEADER);
    csv.push('\n');
    for s in &summary {
        csv.push_str(&s.csv());
        csv.push('\n');
    }
    let p = out.join("summary.csv");
    crate::files::write_text(&p, &csv)?;
    super::chart::success_vs_eps(out, cfg, &summary)?;
    Ok(summary)
}
