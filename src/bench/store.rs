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
    /// With a detector: its score of the attacked (8-bit) image, and whether it is flagged.
    /// Absent without one (rows written as before; older rows load).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detector_score: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flagged: Option<bool>,
    /// With a detector: its score of the clean image, and whether it is flagged (a false
    /// positive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clean_score: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clean_flagged: Option<bool>,
    /// For a cascade (AutoAttack): the stage that broke the image (`clean` when the model
    /// already misclassifies it), absent when none did and for single attacks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broken_by: Option<String>,
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

pub(crate) fn skipped_path(out: &Path) -> PathBuf {
    out.join("skipped.txt")
}

/// Read `results.jsonl`: drop a torn last line and duplicate rows (keeping the first), and
/// rewrite the file if anything was dropped. Returns the rows.
pub fn load_results(path: &Path) -> Result<Vec<Row>> {
    let (rows, dirty) = read_results(path)?;
    if dirty {
        write_rows(path, &rows)?;
    }
    Ok(rows)
}

/// [`load_results`] without changing the file (a merge reads other runs' directories, which
/// may still be written to): the rows, and whether a torn line or a duplicate was dropped.
pub(crate) fn read_results(path: &Path) -> Result<(Vec<Row>, bool)> {
    if !path.exists() {
        return Ok((Vec::new(), false));
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
    Ok((rows, dirty))
}

/// Check that every row is one the run `cfg` makes (its images, attacks, budgets, defenses,
/// modes and norm): rows are only adopted with the configuration they were made with.
pub(crate) fn check_rows(path: &Path, cfg: &BenchConfig, rows: &[Row]) -> Result<()> {
    let files: HashSet<&str> = cfg.files.iter().map(String::as_str).collect();
    let eps: HashSet<String> = cfg.eps.iter().map(|e| eps_key(*e)).collect();
    for (i, r) in rows.iter().enumerate() {
        let why = if !files.contains(r.file.as_str()) {
            format!("image '{}' is not one of its images", r.file.escape_debug())
        } else if !cfg.attacks.contains(&r.attack) {
            format!(
                "attack '{}' is not one of its attacks",
                r.attack.escape_debug()
            )
        } else if !eps.contains(&eps_key(r.eps)) {
            format!("eps {} is not one of its budgets", r.eps)
        } else if !cfg.defenses.contains(&r.defense) {
            format!(
                "defense '{}' is not one of its defenses",
                r.defense.escape_debug()
            )
        } else if !(r.mode == "non-adaptive"
            || r.mode == "adaptive" && super::plan::adaptive_defenses(cfg).contains(&&r.defense))
        {
            format!("mode '{}' is not one of its modes", r.mode.escape_debug())
        } else if r.norm != cfg.norm {
            format!("norm {} is not its norm", r.norm.name())
        } else {
            continue;
        };
        return Err(Error::bad_file(
            path,
            format!(
                "row {} is not of the run in {}: {why}; use another output directory",
                i + 1,
                config_path(path.parent().unwrap_or(Path::new("."))).display()
            ),
        ));
    }
    Ok(())
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
    if rows.is_empty() {
        return Ok(()); // a batch of unreadable images: no file made for nothing
    }
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

/// Save the config, or check it against the one already in `out` (resuming). Results (or a
/// list of skipped images) without a `bench.json` are refused: nothing tells which settings
/// they were made with, and adopting them could mix two runs' rows.
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
    for (f, what) in [
        (results_path(out), "result rows"),
        (skipped_path(out), "a list of skipped images"),
    ] {
        if f.symlink_metadata().is_ok()
            && !crate::files::read_regular_to_string(&f, "a bench output file")?
                .trim()
                .is_empty()
        {
            return Err(Error::bad_file(
                &f,
                format!(
                    "holds {what} but {} (the settings they were made with) is missing, so they cannot be resumed; move them away or use another output directory",
                    p.display()
                ),
            ));
        }
    }
    crate::files::write_json_bare(&p, cfg)
}

/// Write `summary.json`, `summary.csv` and the chart for a set of rows into `out`. Each
/// summary row counts the images (not `skipped`) it has no row for as `missing` (a partial
/// merge).
pub fn write_reports(
    out: &Path,
    cfg: &BenchConfig,
    rows: &[Row],
    skipped: &HashSet<String>,
) -> Result<Vec<SummaryRow>> {
    let mut summary = summarize(rows, &cfg.attacks, &cfg.eps, &cfg.defenses);
    let expected = cfg.files.iter().filter(|f| !skipped.contains(*f)).count();
    for s in &mut summary {
        s.missing = expected.saturating_sub(s.n_images);
    }
    crate::files::write_json_bare(&out.join("summary.json"), &summary)?;
    let mut csv = String::from(stats::CSV_HEADER);
    if cfg.detector.is_some() {
        csv.push_str(stats::CSV_DETECTION_HEADER);
    }
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
