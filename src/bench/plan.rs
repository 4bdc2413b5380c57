//! What a bench run does: the settings asked for ([`Settings`]), checked and with the images
//! listed ([`Plan`]); the configuration saved with the results ([`BenchConfig`]); the units of
//! work, their seeds, and the shards they are split into.
use super::store::{Row, RowKey};
use crate::attacks::record::PreprocessInfo;
use crate::attacks::{registry, Norm, TargetMode};
use crate::datasets::{DatasetSpec, Item};
use crate::defenses::{self, Chain};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::PathBuf;

/// The settings of a run, as asked for (see `fool bench --help`).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Folder of images with labels.csv, or WordNet-id file names (with `wnids`); or a data
    /// set split and range, `mnist:test[0:1000]` (see [`DatasetSpec`]).
    pub dataset: PathBuf,
    /// The data set files of a `mnist:…`/`cifar10:…` input [default: assets/NAME].
    pub data: Option<PathBuf>,
    /// Synset list for WordNet-id file names.
    pub wnids: Option<PathBuf>,
    /// Use at most this many images.
    pub limit: Option<usize>,
    /// Shuffle the images (with `seed`) before `limit`.
    pub shuffle: bool,
    /// Attack names (see [`registry`]).
    pub attacks: Vec<String>,
    /// Iterations of each attack (its own default when `None`).
    pub steps: Option<usize>,
    /// Let attacks stop an image at its first success where that is sound (see
    /// [`super::Runner::early_stop`]).
    pub early_stop: bool,
    /// Budgets in `norm` (see [`crate::attacks::parse_eps_list`]).
    pub eps: Vec<f64>,
    pub norm: Norm,
    /// Defense specs (see [`defenses::parse`]); `none` is the bare model.
    pub defenses: Vec<String>,
    /// Also attack each defended model (BPDA, EOT).
    pub adaptive: bool,
    /// EOT draws per gradient for random defenses.
    pub eot: usize,
    /// `untargeted`, `random`, `least-likely` or a class (see [`TargetMode::parse`]).
    pub targets: String,
    /// Images per batch.
    pub batch: usize,
    /// Run seed: every unit of work is seeded from it and its own key.
    pub seed: u64,
    pub shard: Shard,
    /// Output directory (a run there with the same configuration is resumed).
    pub out: PathBuf,
    /// A detector file (`fool detect calibrate`): every unit also scores the clean images and
    /// the attacked ones; with `adaptive`, gradient attacks also target the detector.
    pub detector: Option<PathBuf>,
    /// Weight c of the detector's score in the adaptive attack's loss (loss + c·score).
    pub detector_weight: f64,
    /// Keep the first N images clean and attacked in every setting (see
    /// [`super::examples`]); not part of the configuration (a run resumes whatever it is).
    pub keep_examples: usize,
}

/// A run's settings, checked, with its images listed and its defenses parsed: everything that
/// needs no model.
pub struct Plan {
    pub settings: Settings,
    /// The images, in processing order.
    pub items: Vec<Item>,
    /// The defenses by name (as given).
    pub defenses: Vec<(String, Chain)>,
    /// The data set split the images are rows of (a `mnist:test[a:b]` input), else `None`.
    pub data: Option<crate::datasets::TensorDataset>,
    /// The output directory's lock, held as long as the plan lives.
    _lock: super::lock::OutLock,
}

impl Plan {
    /// Check `settings`, list the images, create the output directory and lock it (another
    /// run into it is refused while this plan lives; see [`super::lock`]).
    pub fn new(mut settings: Settings) -> Result<Plan> {
        if settings.batch == 0 {
            return Err(Error::field("batch", "must be at least 1"));
        }
        if !(settings.detector_weight.is_finite() && settings.detector_weight >= 0.0) {
            return Err(Error::field(
                "detector_weight",
                format!("{} is not a finite weight ≥ 0", settings.detector_weight),
            ));
        }
        for name in &settings.attacks {
            let attack = registry::build(name, settings.steps, settings.early_stop)?;
            if attack.untargeted_only() && settings.targets.trim() != "untargeted" {
                return Err(Error::field(
                    "targets",
                    format!("{name} is untargeted (it chooses its own target classes); leave --targets out"),
                ));
            }
            if !attack.supports(settings.norm) {
                return Err(Error::field(
                    "attack",
                    format!(
                        "{name}: not available under an {} budget; it implements L∞ only",
                        settings.norm.symbol()
                    ),
                ));
            }
        }
        settings.defenses = settings
            .defenses
            .iter()
            .map(|d| d.trim().to_string())
            .collect();
        let defenses = settings
            .defenses
            .iter()
            .map(|s| Ok((s.clone(), defenses::parse(s)?)))
            .collect::<Result<_>>()?;
        let spec = settings
            .dataset
            .to_str()
            .filter(|_| !settings.dataset.exists())
            .and_then(DatasetSpec::parse)
            .transpose()?;
        let (data, mut items) = match spec {
            Some(spec) => {
                if settings.wnids.is_some() {
                    return Err(Error::field(
                        "wnids",
                        "a data set input (mnist:…, cifar10:…) is labelled already; leave --wnids out",
                    ));
                }
                let (ds, items) = spec.load(settings.data.as_deref())?;
                (Some(ds), items)
            }
            None => {
                if settings.data.is_some() {
                    return Err(Error::field(
                        "data",
                        "--data is the data set folder of a mnist:… or cifar10:… input; an image folder needs none",
                    ));
                }
                let items =
                    crate::datasets::image_folder(&settings.dataset, settings.wnids.as_deref())?;
                (None, items)
            }
        };
        if settings.shuffle {
            crate::rng::SplitMix64::legacy(settings.seed).shuffle_mod(&mut items);
        }
        if let Some(n) = settings.limit {
            items.truncate(n);
        }
        crate::files::ensure_writable_dir(&settings.out, "out")?;
        let lock = super::lock::lock_out(&settings.out)?;
        Ok(Plan {
            settings,
            items,
            defenses,
            data,
            _lock: lock,
        })
    }
}

/// Everything that determines a run's results (saved as `bench.json`; a resumed or merged
/// run must have the same).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchConfig {
    pub model: String,
    pub model_sha256: String,
    pub dataset: String,
    /// Image files in processing order (after `limit`/`shuffle`).
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
    pub preprocess: PreprocessInfo,
    /// The detector the images are scored with (absent without one, so that the
    /// configuration of a run without a detector is written as before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detector: Option<DetectorConfig>,
}

/// The detector of a run, as saved in `bench.json`: what decides its scores and flags.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectorConfig {
    /// The detector file, as given.
    pub path: String,
    /// Its squeezers and threshold.
    pub squeezers: Vec<String>,
    pub threshold: f64,
    /// Weight c of the detector's score in the adaptive attack's loss (loss + c·score).
    pub weight: f64,
}

/// The defenses attacked adaptively: none without `adaptive`; every defense but `none` —
/// and `none` too with a detector (the adaptive attack then targets model and detector).
pub fn adaptive_defenses(cfg: &BenchConfig) -> Vec<&String> {
    if !cfg.adaptive {
        return Vec::new();
    }
    let with_none = cfg.detector.is_some();
    cfg.defenses
        .iter()
        .filter(|d| with_none || *d != "none")
        .collect()
}

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

    pub(crate) fn key(&self) -> String {
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

/// A shard `index` of `count` (`I/N`, 0-based).
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
    /// (`JOB_COMPLETION_INDEX`, with the count in `FOOL_SHARD_COUNT`). A variable that is set
    /// (not empty) but is no whole number, or an index without its count, is an error naming
    /// the variable: running the whole set on every task instead would repeat every unit.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Option<Shard>> {
        let bad = |msg: String| {
            Error::field(
                "shard",
                format!("{msg}; fix the scheduler's variables or give the shard explicitly"),
            )
        };
        let num = |k: &str| -> Result<Option<usize>> {
            let Some(v) = get(k).filter(|v| !v.trim().is_empty()) else {
                return Ok(None);
            };
            v.trim()
                .parse::<usize>()
                .map(Some)
                .map_err(|_| bad(format!("{k}='{}' is not a whole number", v.escape_debug())))
        };
        let (id, count) = (num("SLURM_ARRAY_TASK_ID")?, num("SLURM_ARRAY_TASK_COUNT")?);
        let (index, count, names, hint) = match (id, count) {
            (None, None) => match num("JOB_COMPLETION_INDEX")? {
                None => return Ok(None),
                Some(idx) => {
                    let count = num("FOOL_SHARD_COUNT")?.ok_or_else(|| {
                        bad("JOB_COMPLETION_INDEX is set but FOOL_SHARD_COUNT (the job's completions) is not".into())
                    })?;
                    (idx, count, "JOB_COMPLETION_INDEX and FOOL_SHARD_COUNT", "")
                }
            },
            (Some(id), Some(count)) => {
                let min = num("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
                if id < min {
                    return Err(bad(format!(
                        "SLURM_ARRAY_TASK_ID={id} is below SLURM_ARRAY_TASK_MIN={min}"
                    )));
                }
                (
                    id - min,
                    count,
                    "SLURM_ARRAY_TASK_ID (minus SLURM_ARRAY_TASK_MIN) and SLURM_ARRAY_TASK_COUNT",
                    " (a job array with a step?)",
                )
            }
            (Some(_), None) => {
                return Err(bad(
                    "SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not".into(),
                ))
            }
            (None, Some(_)) => {
                return Err(bad(
                    "SLURM_ARRAY_TASK_COUNT is set but SLURM_ARRAY_TASK_ID is not".into(),
                ))
            }
        };
        if count == 0 || index >= count {
            return Err(bad(format!(
                "{names} give shard {index}/{count}, expected an index below a count ≥ 1{hint}"
            )));
        }
        Ok(Some(Shard { index, count }))
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
                for d in adaptive_defenses(cfg) {
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
    out
}

/// The files of a batch (those known to be unreadable left out).
pub fn batch_files<'a>(
    cfg: &'a BenchConfig,
    batch: usize,
    skipped: &'a HashSet<String>,
) -> impl Iterator<Item = &'a String> + 'a {
    let lo = batch * cfg.batch;
    let hi = (lo + cfg.batch).min(cfg.files.len());
    cfg.files[lo..hi].iter().filter(|f| !skipped.contains(*f))
}

/// Rows a unit produces, as keys (files known to be unreadable produce none).
fn unit_row_keys(cfg: &BenchConfig, unit: &Unit, skipped: &HashSet<String>) -> Vec<RowKey> {
    let defenses: Vec<&String> = match &unit.adaptive {
        None => cfg.defenses.iter().collect(),
        Some(d) => cfg.defenses.iter().filter(|x| *x == d).collect(),
    };
    let mut keys = Vec::new();
    for f in batch_files(cfg, unit.batch, skipped) {
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

/// The seed of the work keyed by `parts` (a unit, a defense's draw) in a run.
pub(crate) fn seed_for(cfg: &BenchConfig, parts: &[&str]) -> i64 {
    let s = cfg.seed.to_string();
    let mut all = vec![s.as_str()];
    all.extend_from_slice(parts);
    (crate::rng::fnv1a_parts(&all) >> 1) as i64
}
