//! The resumable bench driver ([`run`]) and the merge of shard outputs ([`merge`]), reporting
//! progress to an [`Observer`].
use super::plan::{batch_files, pending, units, BenchConfig, DetectorConfig, Plan, Shard, Unit};
use super::runner::{batch_name, load_batch, LoadedBatch, Runner};
use super::stats::SummaryRow;
use super::store;
use crate::attacks::image::ModelRef;
use crate::attacks::record::PreprocessInfo;
use crate::attacks::{StepInfo, TargetMode};
use crate::datasets::Item;
use crate::{Error, Result};
use std::collections::{HashMap, HashSet};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

/// What a run is about to do.
#[derive(Debug, Clone)]
pub struct Start<'a> {
    pub images: usize,
    /// Units of work in this shard: all, already done, to run now.
    pub units: usize,
    pub done: usize,
    pub to_run: usize,
    pub shard: Shard,
    pub out: &'a Path,
}

/// Follows a run (progress bars, logs). Every method does nothing by default.
pub trait Observer {
    /// The run starts.
    fn started(&mut self, start: &Start) {
        let _ = start;
    }
    /// An image could not be read: it is left out of the run (and listed in `skipped.txt`).
    fn skipped(&mut self, file: &str, err: &Error) {
        let _ = (file, err);
    }
    /// A unit of work starts.
    fn unit_started(&mut self, unit: &Unit) {
        let _ = unit;
    }
    /// One step of the unit's attack, on a batch of `images` images.
    fn step(&mut self, unit: &Unit, images: usize, info: StepInfo) {
        let _ = (unit, images, info);
    }
    /// The unit's rows are saved; `done` units have run so far. `Break` stops the run here, as
    /// an interruption would: running it again resumes.
    fn unit_done(&mut self, unit: &Unit, done: usize) -> ControlFlow<()> {
        let _ = (unit, done);
        ControlFlow::Continue(())
    }
}

/// No progress reports.
impl Observer for () {}

/// What a finished run (or a merge) wrote.
#[derive(Debug, Clone)]
pub struct Report {
    pub summary: Vec<SummaryRow>,
    /// Images left out as unreadable.
    pub skipped: usize,
    /// The output directory.
    pub out: PathBuf,
}

/// How a run ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Every unit of the shard has its rows; the reports are written.
    Finished(Report),
    /// The observer stopped the run after `units` units; running it again resumes.
    Stopped { units: usize },
}

/// Run the plan's units of work with `m` (those not already done in the output directory),
/// appending each unit's rows to `results.jsonl` as it ends, then write the summary and chart.
/// Each unit is seeded from the run seed and its own key, so an interrupted and resumed run
/// (or a merge of shards) ends with the rows of one uninterrupted run.
pub fn run(plan: &Plan, m: ModelRef, observer: &mut dyn Observer) -> Result<Outcome> {
    let (s, model) = (&plan.settings, m.model);
    if let Some(ds) = &plan.data {
        crate::datasets::spec::check_model(ds, model, m.path)?;
    }
    if let Some(bad) = plan.items.iter().find(|i| i.label >= model.num_classes) {
        return Err(Error::failed(
            &bad.file,
            format!(
                "label {} is out of range for a {}-class model",
                bad.label, model.num_classes
            ),
        ));
    }
    let cfg = BenchConfig {
        model: m.path.display().to_string(),
        model_sha256: crate::model::sha256_file(m.path)?,
        dataset: s.dataset.display().to_string(),
        files: plan.items.iter().map(|i| i.file.clone()).collect(),
        attacks: s.attacks.clone(),
        steps: s.steps,
        early_stop: s.early_stop,
        eps: s.eps.clone(),
        norm: s.norm,
        defenses: s.defenses.clone(),
        adaptive: s.adaptive,
        eot: s.eot,
        targets: TargetMode::parse(&s.targets, m.labels)?,
        batch: s.batch,
        seed: s.seed,
        preprocess: PreprocessInfo::from(&model.pre),
        detector: None,
    };
    let detector = match &s.detector {
        None => None,
        Some(p) => {
            let file = crate::detect::load(p)
                .and_then(|f| f.check_model(p, model).map(|()| f))
                .map_err(|e| Error::field("detector", e.to_string()))?;
            Some(file.detector()?)
        }
    };
    let cfg = BenchConfig {
        detector: detector.as_ref().map(|d| DetectorConfig {
            path: s
                .detector
                .as_ref()
                .expect("a detector file")
                .display()
                .to_string(),
            squeezers: d.specs(),
            threshold: d.threshold,
            weight: s.detector_weight,
        }),
        ..cfg
    };
    store::check_or_save_config(&s.out, &cfg)?;
    super::examples::save_labels(&s.out, m.labels, s.keep_examples)?;
    let results = store::results_path(&s.out);
    let mut rows = store::load_results(&results)?;
    store::check_rows(&results, &cfg, &rows)?;
    let mut skipped = store::load_skipped(&s.out)?;
    let todo = pending(&cfg, s.shard, &rows, &skipped);
    let total = units(&cfg)
        .into_iter()
        .filter(|u| s.shard.owns(u.batch))
        .count();
    let start = Start {
        images: plan.items.len(),
        units: total,
        done: total - todo.len(),
        to_run: todo.len(),
        shard: s.shard,
        out: &s.out,
    };
    observer.started(&start);
    let runner = Runner {
        cfg: &cfg,
        model,
        defenses: &plan.defenses,
        detector: detector.as_ref(),
    };
    let by_file: HashMap<&str, &Item> = plan.items.iter().map(|i| (i.file.as_str(), i)).collect();
    let mut current: Option<(usize, LoadedBatch, Option<Vec<f64>>)> = None;
    for (done, unit) in todo.iter().enumerate() {
        if current.as_ref().map(|(b, _, _)| *b) != Some(unit.batch) {
            let items: Vec<Item> = batch_files(&cfg, unit.batch, &skipped)
                .map(|f| (*by_file[f.as_str()]).clone())
                .collect();
            let lb = match &plan.data {
                Some(ds) => crate::datasets::spec::load_rows(ds, model, &items),
                None => load_batch(model, &items),
            };
            for (it, e) in &lb.failed {
                observer.skipped(&it.file, e);
                store::record_skipped(&s.out, &it.file, e)?;
                skipped.insert(it.file.clone());
            }
            runner.check_batch(&lb)?;
            let clean = runner.clean_scores(&lb).map_err(|e| {
                Error::failed(
                    &format!("batch {}, {}", unit.batch, batch_name(&lb)),
                    format!("detector on the clean images: {e}"),
                )
            })?;
            current = Some((unit.batch, lb, clean));
        }
        let (_, lb, clean) = current.as_ref().expect("batch loaded");
        observer.unit_started(unit);
        let images = lb.items.len();
        let (new_rows, adv) = runner
            .run_unit(unit, lb, clean.as_deref(), &mut |info| {
                observer.step(unit, images, info)
            })
            .map_err(|e| {
                Error::failed(
                    &format!("batch {}, {}", unit.batch, batch_name(lb)),
                    format!("{}: {e}", unit.setting()),
                )
            })?;
        let files: Vec<&str> = lb.items.iter().map(|it| it.file.as_str()).collect();
        super::examples::keep(&s.out, &cfg, unit, &files, &lb.x, &adv, s.keep_examples)?;
        store::append_rows(&results, &new_rows)?;
        rows.extend(new_rows);
        if observer.unit_done(unit, done + 1).is_break() {
            return Ok(Outcome::Stopped { units: done + 1 });
        }
    }
    // Nothing measured is no result: a shard whose every image is unreadable fails.
    let mine: Vec<&String> = (cfg.files.iter().enumerate())
        .filter(|(i, _)| s.shard.owns(i / cfg.batch.max(1)))
        .map(|(_, f)| f)
        .collect();
    if !mine.is_empty() && mine.iter().all(|f| skipped.contains(*f)) {
        return Err(Error::bad_file(
            &s.dataset,
            format!(
                "none of the {} images{} could be read, nothing was measured (each is listed with its error in {})",
                mine.len(),
                if s.shard == Shard::ALL { String::new() } else { format!(" of shard {}/{}", s.shard.index, s.shard.count) },
                store::skipped_path(&s.out).display()
            ),
        ));
    }
    let summary = store::write_reports(&s.out, &cfg, &rows, &skipped)?;
    Ok(Outcome::Finished(Report {
        summary,
        skipped: skipped.len(),
        out: s.out.clone(),
    }))
}

/// A merge of shard outputs.
#[derive(Debug, Clone)]
pub struct Merged {
    pub report: Report,
    /// Units of work in no shard's results (a partial merge; the summary covers what is there).
    pub missing: usize,
    /// The batches those units belong to, and the run's batches in all.
    pub missing_batches: Vec<usize>,
    pub batches: usize,
}

/// The top-level settings in which two configurations differ (`seed`, `eps`, …).
fn differing(a: &BenchConfig, b: &BenchConfig) -> String {
    let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) =
        (serde_json::to_value(a), serde_json::to_value(b))
    else {
        return "settings".into();
    };
    let keys: Vec<&str> = (a.iter())
        .filter(|(k, v)| b.get(*k) != Some(*v))
        .map(|(k, _)| k.as_str())
        .collect();
    keys.join(", ")
}

/// Combine the output directories of a run's shards into one in `out`: one `results.jsonl`,
/// `skipped.txt`, summary and chart, as a single-machine run would have written. Refused, with
/// nothing written, when the directories are not one complete set of shards of one run: a
/// directory given twice, settings that differ, rows in two directories (a shard run twice, or
/// shards of different counts), a shard still running, or units of work in none of them (a
/// shard missing or unfinished). With `allow_partial` the last three are merged as they are:
/// rows found twice are kept once, and the summary counts each setting's `missing` images.
pub fn merge(dirs: &[PathBuf], out: &Path, allow_partial: bool) -> Result<Merged> {
    let mut canonical: Vec<PathBuf> = Vec::new();
    for d in dirs {
        let c = std::fs::canonicalize(d).map_err(|e| Error::io(d, e))?;
        if let Some(i) = canonical.iter().position(|x| *x == c) {
            return Err(Error::bad_file(
                d,
                format!(
                    "given twice (also as {}); give each shard's directory once",
                    dirs[i].display()
                ),
            ));
        }
        canonical.push(c);
    }
    let mut cfg: Option<BenchConfig> = None;
    let mut rows = Vec::new();
    let mut from: HashMap<store::RowKey, usize> = HashMap::new();
    let mut skipped = HashSet::new();
    for (i, d) in dirs.iter().enumerate() {
        if let Some(who) = super::lock::running_in(d)? {
            if !allow_partial {
                return Err(Error::bad_file(
                    d,
                    format!("a fool bench ({who}) is still running there; merge when it has ended"),
                ));
            }
        }
        let c = store::read_config(d)?;
        let cfg = cfg.get_or_insert_with(|| c.clone());
        if *cfg != c {
            return Err(Error::bad_file(
                &store::config_path(d),
                format!(
                    "settings differ from {} ({}): not shards of one run",
                    store::config_path(&dirs[0]).display(),
                    differing(cfg, &c)
                ),
            ));
        }
        let path = store::results_path(d);
        let (mine, _) = store::read_results(&path)?;
        store::check_rows(&path, cfg, &mine)?;
        let mut repeated: Option<(usize, usize)> = None;
        for r in mine {
            match from.get(&r.key()) {
                Some(&j) => repeated = Some((j, repeated.map_or(1, |(_, n)| n + 1))),
                None => {
                    from.insert(r.key(), i);
                    rows.push(r);
                }
            }
        }
        if let (Some((j, n)), false) = (repeated, allow_partial) {
            return Err(Error::bad_file(
                d,
                format!(
                    "{n} of its result rows are also in {} (the same shard twice, or shards of different counts?); give each shard's directory once",
                    dirs[j].display()
                ),
            ));
        }
        skipped.extend(store::load_skipped(d)?);
    }
    let cfg = cfg.ok_or_else(|| Error::field("dirs", "no shard output directories given"))?;
    let rows = store::merge_rows(rows);
    let missing = pending(&cfg, Shard::ALL, &rows, &skipped);
    let batches = cfg.files.len().div_ceil(cfg.batch.max(1));
    let mut missing_batches: Vec<usize> = missing.iter().map(|u| u.batch).collect();
    missing_batches.dedup();
    if !missing.is_empty() && !allow_partial {
        return Err(Error::field(
            "allow_partial",
            format!(
                "not set, but {} of {} units of work ({} of {} batches: {}) are in none of the given directories: a shard is missing or unfinished; give every shard's directory",
                missing.len(),
                units(&cfg).len(),
                missing_batches.len(),
                batches,
                batch_list(&missing_batches)
            ),
        ));
    }
    if rows.is_empty() {
        return Err(Error::field(
            "dirs",
            "no result rows in the given directories: nothing to merge",
        ));
    }
    crate::files::ensure_writable_dir(out, "out")?;
    let _lock = super::lock::lock_out(out)?;
    store::check_or_save_config(out, &cfg)?;
    store::write_rows(&store::results_path(out), &rows)?;
    store::write_skipped(out, &skipped)?;
    let summary = store::write_reports(out, &cfg, &rows, &skipped)?;
    Ok(Merged {
        report: Report {
            summary,
            skipped: skipped.len(),
            out: out.to_path_buf(),
        },
        missing: missing.len(),
        missing_batches,
        batches,
    })
}

/// Batch numbers as ranges: "0, 2-4, 7".
pub fn batch_list(batches: &[usize]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < batches.len() {
        let mut j = i;
        while j + 1 < batches.len() && batches[j + 1] == batches[j] + 1 {
            j += 1;
        }
        parts.push(if i == j {
            batches[i].to_string()
        } else {
            format!("{}-{}", batches[i], batches[j])
        });
        i = j + 1;
    }
    parts.join(", ")
}
