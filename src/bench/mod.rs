//! `fool bench`: attack success rate versus epsilon over a labelled image folder, for every
//! attack × budget × defense × mode (non-adaptive, adaptive), resumable and shardable.
//!
//! The work is cut into *units*: one batch of images × one attack × one eps × one mode
//! (× one defense in adaptive mode; a non-adaptive unit attacks the bare model once and
//! judges the result through every defense). Each unit is seeded from the run seed and its
//! own key, so it computes the same rows whatever ran before it, on whichever shard. A unit's
//! rows are appended to `results.jsonl` in one write and flushed; a resumed run skips units
//! whose rows are all there, so the summary of an interrupted-and-resumed run, or of merged
//! shards, equals that of one uninterrupted run.
use crate::attacks::{Attack, Budget, Goal, Norm, Victim};
use crate::datasets::Item;
use crate::defenses::{self, Defended, Defense as _};
use crate::model::Classifier;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

pub mod chart;

pub mod stats;

pub use stats::{summarize, wilson, SummaryRow};

/// How targets are chosen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TargetMode {
    Untargeted,
    /// The same class for every image.
    Fixed(usize),
    /// A class ≠ the true label, drawn per image from the run seed.
    Random,
    /// The class the bare model finds least likely on the clean image.
    LeastLikely,
}

/// Everything that determines a run's results (saved as `bench.json`; a resumed or merged
/// run must have the same).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchConfig {
    pub model: String,
    pub model_sha256: String,
    pub dataset: String,
    /// Image files in processing order (after --limit/--shuffle).
    pub files: Vec<String>,
    pub attacks: Vec<String>,
    pub steps: Option<usize>,
    pub early_stop: bool,
    pub eps: Vec<f64>,
    /// The norm eps bounds (L∞ when absent, as in runs made before L2 existed).
    #[serde(default)]
    pub norm: Norm,
    pub defenses: Vec<String>,
    pub adaptive: bool,
    pub eot: usize,
    pub targets: TargetMode,
    pub batch: usize,
    pub seed: u64,
    pub preprocess: crate::attacks::record::PreprocessInfo,
}

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

impl Row {
    fn key(&self) -> RowKey {
        (
            self.file.clone(),
            self.attack.clone(),
            eps_key(self.eps),
            self.defense.clone(),
            self.mode.clone(),
        )
    }
}

type RowKey = (String, String, String, String, String);

/// Canonical text of an eps value for keys and file names.
pub fn eps_key(eps: f64) -> String {
    format!("{eps:.8}")
}

/// A unit of work.
#[derive(Debug, Clone)]
pub struct Unit {
    pub batch: usize,
    pub attack: String,
    pub eps: f64,
    /// `None`: non-adaptive (all defenses); `Some(d)`: adaptive against defense `d`.
    pub adaptive: Option<String>,
}

impl Unit {
    pub fn mode(&self) -> &'static str {
        if self.adaptive.is_some() {
            "adaptive"
        } else {
            "non-adaptive"
        }
    }
    fn key(&self) -> String {
        format!(
            "{}|{}|{}|{}",
            self.batch,
            self.attack,
            eps_key(self.eps),
            self.adaptive.as_deref().unwrap_or("-")
        )
    }
    /// Human name of the setting, for progress messages.
    pub fn setting(&self) -> String {
        match &self.adaptive {
            None => format!("{} eps {:.4}", self.attack, self.eps),
            Some(d) => format!("{} eps {:.4} adaptive vs {d}", self.attack, self.eps),
        }
    }
}

/// A shard `index` of `count` (`--shard i/N`, 0-based).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    pub fn parse(s: &str) -> Result<Shard> {
        let bad = || {
            Error::field(
                "shard",
                format!("'{s}': expected I/N with 0 ≤ I < N, e.g. 0/4"),
            )
        };
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count) = (
            i.trim().parse::<usize>().map_err(|_| bad())?,
            n.trim().parse::<usize>().map_err(|_| bad())?,
        );
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }

    /// From a scheduler's environment: Slurm job arrays (`SLURM_ARRAY_TASK_ID`, offset by
    /// `SLURM_ARRAY_TASK_MIN`, and `SLURM_ARRAY_TASK_COUNT`) or a Kubernetes Indexed Job
    /// (`JOB_COMPLETION_INDEX`, with the count in `FOOL_SHARD_COUNT`).
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Option<Shard>> {
        let num = |k: &str| get(k).and_then(|v| v.trim().parse::<usize>().ok());
        if let (Some(id), Some(count)) = (num("SLURM_ARRAY_TASK_ID"), num("SLURM_ARRAY_TASK_COUNT"))
        {
            let min = num("SLURM_ARRAY_TASK_MIN").unwrap_or(0);
            return Shard::parse(&format!("{}/{count}", id.saturating_sub(min))).map(Some);
        }
        if let Some(idx) = num("JOB_COMPLETION_INDEX") {
            let count = num("FOOL_SHARD_COUNT").ok_or_else(|| {
                Error::field("shard", "JOB_COMPLETION_INDEX is set but FOOL_SHARD_COUNT (the job's completions) is not")
            })?;
            return Shard::parse(&format!("{idx}/{count}")).map(Some);
        }
        Ok(None)
    }

    pub fn owns(&self, batch: usize) -> bool {
        batch % self.count == self.index
    }
}

/// All units of a configuration, in run order (batch-major, so each batch is loaded once).
pub fn units(cfg: &BenchConfig) -> Vec<Unit> {
    let n_batches = cfg.files.len().div_ceil(cfg.batch.max(1));
    let mut out = Vec::new();
    for batch in 0..n_batches {
        for attack in &cfg.attacks {
            for &eps in &cfg.eps {
                out.push(Unit {
                    batch,
                    attack: attack.clone(),
                    eps,
                    adaptive: None,
                });
                if cfg.adaptive {
                    for d in cfg.defenses.iter().filter(|d| *d != "none") {
                        out.push(Unit {
                            batch,
                            attack: attack.clone(),
                            eps,
                            adaptive: Some(d.clone()),
                        });
                    }
                }
            }
        }
    }
    out
}

/// Rows a unit produces, as keys (files known to be unreadable produce none).
fn unit_row_keys(cfg: &BenchConfig, unit: &Unit, skipped: &HashSet<String>) -> Vec<RowKey> {
    let lo = unit.batch * cfg.batch;
    let hi = (lo + cfg.batch).min(cfg.files.len());
    let defenses: Vec<&String> = match &unit.adaptive {
        None => cfg.defenses.iter().collect(),
        Some(d) => cfg.defenses.iter().filter(|x| *x == d).collect(),
    };
    let mut keys = Vec::new();
    for f in cfg.files[lo..hi].iter().filter(|f| !skipped.contains(*f)) {
        for d in &defenses {
            keys.push((
                f.clone(),
                unit.attack.clone(),
                eps_key(unit.eps),
                (*d).clone(),
                unit.mode().to_string(),
            ));
        }
    }
    keys
}

fn seed_for(cfg: &BenchConfig, parts: &[&str]) -> i64 {
    let s = cfg.seed.to_string();
    let mut all = vec![s.as_str()];
    all.extend_from_slice(parts);
    (crate::rng::fnv1a_parts(&all) >> 1) as i64
}

/// Read `results.jsonl`: drop a torn last line and duplicate rows (keeping the first), and
/// rewrite the file if anything was dropped. Returns the rows.
pub fn load_results(path: &Path) -> Result<Vec<Row>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
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

/// Write rows as JSON lines, atomically.
pub fn write_rows(path: &Path, rows: &[Row]) -> Result<()> {
    let mut text = String::new();
    for r in rows {
        text.push_str(&serde_json::to_string(r).expect("row serializes"));
        text.push('\n');
    }
    crate::files::write_atomic(path, |f| {
        f.write_all(text.as_bytes()).map_err(|e| Error::io(path, e))
    })
}

/// The images of one batch, loaded and preprocessed. Unreadable files are returned as
/// errors for the caller to report and skip.
pub struct LoadedBatch {
    pub items: Vec<Item>,
    pub x: Tensor,
    pub labels: Tensor,
    pub failed: Vec<(Item, Error)>,
}

pub fn load_batch(model: &Classifier, items: &[Item]) -> LoadedBatch {
    let mut ok = Vec::new();
    let mut xs = Vec::new();
    let mut failed = Vec::new();
    for it in items {
        match crate::imageio::load_rgb(&it.path) {
            Ok(img) => {
                xs.push(model.pre.pixels(&img, tch::Device::Cpu));
                ok.push(it.clone());
            }
            Err(e) => failed.push((it.clone(), e)),
        }
    }
    let labels: Vec<i64> = ok.iter().map(|i| i.label as i64).collect();
    let x = if xs.is_empty() {
        Tensor::zeros([0], (Kind::Float, model.device))
    } else {
        Tensor::stack(&xs, 0).to_device(model.device)
    };
    LoadedBatch {
        items: ok,
        x,
        labels: Tensor::from_slice(&labels).to_device(model.device),
        failed,
    }
}

/// Builds an attack by name, with early stopping on or off.
pub type AttackFactory<'a> = dyn Fn(&str, bool) -> Result<Box<dyn Attack>> + 'a;

/// Everything a unit needs.
pub struct Runner<'a> {
    pub cfg: &'a BenchConfig,
    pub model: &'a Classifier,
    pub defenses: Vec<(String, defenses::Chain)>,
    pub make_attack: &'a AttackFactory<'a>,
}

fn argmax(logits: &Tensor) -> Vec<usize> {
    Vec::<i64>::try_from(logits.argmax(-1, false).to_device(tch::Device::Cpu))
        .unwrap_or_default()
        .into_iter()
        .map(|v| v as usize)
        .collect()
}

impl Runner<'_> {
    fn defense(&self, name: &str) -> &defenses::Chain {
        &self
            .defenses
            .iter()
            .find(|(n, _)| n == name)
            .expect("configured defense")
            .1
    }

    /// Predictions through `defense`, with the randomness of a random defense seeded by `key`.
    fn predict(&self, defense: &str, x: &Tensor, key: &[&str]) -> Result<Vec<usize>> {
        tch::manual_seed(seed_for(self.cfg, key));
        let d = self.defense(defense);
        let logits = tch::no_grad(|| -> Result<Tensor> { self.model.logits(&d.apply(x)?) })?;
        Ok(argmax(&logits))
    }

    /// Per-image targets for the batch (None when untargeted).
    fn targets(&self, b: &LoadedBatch) -> Result<Option<Vec<usize>>> {
        let classes = self.model.num_classes;
        Ok(match &self.cfg.targets {
            TargetMode::Untargeted => None,
            TargetMode::Fixed(t) => Some(vec![*t; b.items.len()]),
            TargetMode::Random => Some(
                b.items
                    .iter()
                    .map(|it| {
                        let r = (crate::rng::fnv1a_parts(&[
                            &self.cfg.seed.to_string(),
                            "target",
                            &it.file,
                        ]) % (classes as u64 - 1)) as usize;
                        if r >= it.label {
                            r + 1
                        } else {
                            r
                        }
                    })
                    .collect(),
            ),
            TargetMode::LeastLikely => {
                let logits = tch::no_grad(|| self.model.logits(&b.x))?;
                Some(argmax(&(-logits)))
            }
        })
    }

    /// Whether a unit's attack may stop an image at its first success. Only where the model
    /// that decides success is the one attacked, deterministically: an adaptive unit against a
    /// deterministic defense, or a non-adaptive unit judged without defenses. A non-adaptive
    /// unit judged through defenses runs every step — an image stopped at the bare model's
    /// first misclassification is barely adversarial and any input transformation undoes it,
    /// which would credit the defense with what is only a weaker attack (the standard
    /// non-adaptive evaluation attacks the bare model with all its steps). A random defense
    /// judges with a fresh draw, so a success under one draw is no reason to stop either.
    pub fn early_stop(&self, unit: &Unit) -> bool {
        self.cfg.early_stop
            && match &unit.adaptive {
                None => self.cfg.defenses.iter().all(|d| d == "none"),
                Some(d) => !self.defense(d).random(),
            }
    }

    /// Run one unit on a loaded batch; returns its rows.
    pub fn run_unit(
        &self,
        unit: &Unit,
        b: &LoadedBatch,
        on_step: &mut dyn FnMut(crate::attacks::StepInfo),
    ) -> Result<Vec<Row>> {
        if b.items.is_empty() {
            return Ok(Vec::new());
        }
        let targets = self.targets(b)?;
        let goal = match &targets {
            None => Goal::Untargeted(b.labels.shallow_clone()),
            Some(t) => {
                let t: Vec<i64> = t.iter().map(|&v| v as i64).collect();
                Goal::Targeted(Tensor::from_slice(&t).to_device(self.model.device))
            }
        };
        let budget = Budget::new(unit.eps, self.cfg.norm);
        let batch_key = unit.batch.to_string();
        tch::manual_seed(seed_for(self.cfg, &[&unit.key()]));
        let (adv, queries) = if budget.is_empty() {
            // No 8-bit change fits in the budget: the attacked image is the clean one.
            (b.x.shallow_clone(), vec![0; b.items.len()])
        } else {
            let attack = (self.make_attack)(&unit.attack, self.early_stop(unit))?;
            let out = match &unit.adaptive {
                None => attack.run(self.model, &b.x, &goal, budget, on_step)?,
                Some(d) => {
                    let victim = Defended {
                        model: self.model,
                        defense: self.defense(d),
                        eot: self.cfg.eot,
                    };
                    attack.run(&victim as &dyn Victim, &b.x, &goal, budget, on_step)?
                }
            };
            let q = out
                .image_queries
                .unwrap_or_else(|| vec![out.queries; b.items.len()]);
            (out.adv, q)
        };
        let adv = crate::attacks::project_quantized(&b.x, &adv, budget);
        let (linf, l2) = crate::attacks::distances(&adv, &b.x);
        let defenses: Vec<String> = match &unit.adaptive {
            None => self.cfg.defenses.clone(),
            Some(d) => vec![d.clone()],
        };
        let mut rows = Vec::new();
        for def in &defenses {
            let clean = self.predict(def, &b.x, &[&batch_key, def, "clean"])?;
            let advp = self.predict(def, &adv, &[&unit.key(), def, "judge"])?;
            for (i, it) in b.items.iter().enumerate() {
                let target = targets.as_ref().map(|t| t[i]);
                let success = match target {
                    Some(t) => advp[i] == t,
                    None => advp[i] != it.label,
                };
                rows.push(Row {
                    file: it.file.clone(),
                    label: it.label,
                    attack: unit.attack.clone(),
                    eps: unit.eps,
                    norm: self.cfg.norm,
                    defense: def.clone(),
                    mode: unit.mode().to_string(),
                    target,
                    clean_pred: clean[i],
                    adv_pred: advp[i],
                    success,
                    linf: linf[i],
                    l2: l2[i],
                    queries: queries[i],
                });
            }
        }
        Ok(rows)
    }
}

/// Which units still have to run: those of this shard whose rows are not all in `done`.
pub fn pending(
    cfg: &BenchConfig,
    shard: Shard,
    done: &[Row],
    skipped: &HashSet<String>,
) -> Vec<Unit> {
    let have: HashSet<RowKey> = done.iter().map(Row::key).collect();
    units(cfg)
        .into_iter()
        .filter(|u| shard.owns(u.batch))
        .filter(|u| {
            !unit_row_keys(cfg, u, skipped)
                .iter()
                .all(|k| have.contains(k))
        })
        .collect()
}

/// Files found unreadable by earlier runs in `out` (`skipped.txt`, one per line).
pub fn load_skipped(out: &Path) -> Result<HashSet<String>> {
    let p = out.join("skipped.txt");
    if !p.exists() {
        return Ok(HashSet::new());
    }
    let text = std::fs::read_to_string(&p).map_err(|e| Error::io(&p, e))?;
    Ok(text
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.split('\t').next().unwrap_or(l).to_string())
        .collect())
}

/// Record an unreadable file (`file<TAB>error`).
pub fn record_skipped(out: &Path, file: &str, err: &Error) -> Result<()> {
    let p = out.join("skipped.txt");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&p)
        .map_err(|e| Error::io(&p, e))?;
    writeln!(f, "{file}\t{}", err.to_string().replace(['\n', '\t'], " "))
        .map_err(|e| Error::io(&p, e))
}

/// Append rows to `results.jsonl` in one write, flushed to disk.
pub fn append_rows(path: &Path, rows: &[Row]) -> Result<()> {
    let mut text = String::new();
    for r in rows {
        text.push_str(&serde_json::to_string(r).expect("row serializes"));
        text.push('\n');
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    f.write_all(text.as_bytes())
        .map_err(|e| Error::io(path, e))?;
    f.sync_data().map_err(|e| Error::io(path, e))
}

/// Write `summary.json`, `summary.csv` and the chart for a set of rows into `out`.
pub fn write_reports(out: &Path, cfg: &BenchConfig, rows: &[Row]) -> Result<Vec<SummaryRow>> {
    let summary = summarize(rows, &cfg.attacks, &cfg.eps, &cfg.defenses);
    let json = serde_json::to_string_pretty(&summary).expect("summary serializes");
    let p = out.join("summary.json");
    crate::files::write_atomic(&p, |f| {
        f.write_all(json.as_bytes()).map_err(|e| Error::io(&p, e))
    })?;
    let mut csv = String::from(stats::CSV_HEADER);
    csv.push('\n');
    for s in &summary {
        csv.push_str(&s.csv());
        csv.push('\n');
    }
    let p = out.join("summary.csv");
    crate::files::write_atomic(&p, |f| {
        f.write_all(csv.as_bytes()).map_err(|e| Error::io(&p, e))
    })?;
    chart::success_vs_eps(out, cfg, &summary)?;
    Ok(summary)
}

/// Paths of a bench output directory.
pub fn results_path(out: &Path) -> PathBuf {
    out.join("results.jsonl")
}

pub fn config_path(out: &Path) -> PathBuf {
    out.join("bench.json")
}

/// Save the config, or check it against the one already in `out` (resuming).
pub fn check_or_save_config(out: &Path, cfg: &BenchConfig) -> Result<()> {
    let p = config_path(out);
    if p.exists() {
        let text = std::fs::read_to_string(&p).map_err(|e| Error::io(&p, e))?;
        let old: BenchConfig = serde_json::from_str(&text)
            .map_err(|e| Error::bad_file(&p, format!("not a fool bench config ({e})")))?;
        if old != *cfg {
            return Err(Error::bad_file(
                &p,
                "this output directory holds a run with other settings (model, images, attacks, eps, defenses, seed, …); use another --out to start a new run",
            ));
        }
        return Ok(());
    }
    let text = serde_json::to_string_pretty(cfg).expect("config serializes");
    crate::files::write_atomic(&p, |f| {
        f.write_all(text.as_bytes()).map_err(|e| Error::io(&p, e))
    })
}

/// Parse a defense list (`none,jpeg:75,bits:4`) into named chains; names are kept as given.
pub fn parse_defenses(list: &[String]) -> Result<Vec<(String, defenses::Chain)>> {
    list.iter()
        .map(|s| Ok((s.clone(), defenses::parse(s)?)))
        .collect()
}
