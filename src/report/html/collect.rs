//! Reading the folders given to `fool report html`: what kind of run each is, and what of it is
//! readable. Nothing here writes into a run; a folder that is partly readable gives what it has
//! and a note saying what is missing.
use crate::audit::render::RocCurve;
use crate::audit::AuditResult;
use crate::bench::{self, BenchConfig, Row, SummaryRow};
use crate::files::read_json;
use crate::train::{EpochRecord, Metadata, RunDir, State};
use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// A folder's kind, and its contents as far as they could be read.
pub enum Loaded {
    Bench(BenchRun),
    Train(Box<TrainRun>),
    Audit(AuditRun),
    Model(ModelRun),
    Pate(Box<PateRun>),
    Robustness(RobustnessRun),
}

/// A `fool pate teachers` ensemble folder: its manifest and each teacher's metadata (None:
/// not finished).
pub struct PateRun {
    pub name: String,
    pub dir: PathBuf,
    pub manifest: crate::pate::Manifest,
    pub teachers: Vec<Option<Metadata>>,
}

/// A `fool report robustness --out` folder.
pub struct RobustnessRun {
    pub name: String,
    pub dir: PathBuf,
    pub rows: Vec<crate::report::robustness::RobustRow>,
}

/// A `fool bench` output folder.
pub struct BenchRun {
    pub name: String,
    pub dir: PathBuf,
    pub config: BenchConfig,
    pub summary: Vec<SummaryRow>,
    /// Rows of the images kept as examples (`--keep-examples`), in file order.
    pub example_rows: Vec<(usize, Row)>,
}

/// A `fool train` run folder (finished, or only its saved state).
pub struct TrainRun {
    pub name: String,
    pub dir: PathBuf,
    /// `None`: unfinished (no metadata.json): the history is the saved state's.
    pub meta: Option<Metadata>,
    pub history: Vec<EpochRecord>,
    pub epochs_planned: usize,
    /// RUN/audit/roc.json (from `fool audit --out RUN/audit`).
    pub roc: Vec<RocCurve>,
}

/// A `fool audit --out` folder.
pub struct AuditRun {
    pub name: String,
    pub dir: PathBuf,
    pub results: Vec<AuditResult>,
    pub roc: Vec<RocCurve>,
}

/// A `fool report model` output folder.
pub struct ModelRun {
    pub name: String,
    pub dir: PathBuf,
    pub report: super::super::model::ModelReport,
}

/// The last component of a folder, for titles.
pub fn name_of(dir: &Path) -> String {
    let canon = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    canon
        .file_name()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| dir.display().to_string())
}

/// Read one folder. `notes` collects what is missing or odd in a folder that is still shown.
pub fn load(dir: &Path, notes: &mut Vec<String>) -> Result<Loaded> {
    if !dir.is_dir() {
        return Err(Error::bad_file(dir, "not a folder"));
    }
    let has = |f: &str| dir.join(f).is_file();
    let name = name_of(dir);
    if has("model_report.json") {
        let report = read_json(&dir.join("model_report.json"))?;
        return Ok(Loaded::Model(ModelRun {
            name,
            dir: dir.to_path_buf(),
            report,
        }));
    }
    if has("robustness_report.json") {
        let rows = read_json(&dir.join("robustness_report.json"))?;
        return Ok(Loaded::Robustness(RobustnessRun {
            name,
            dir: dir.to_path_buf(),
            rows,
        }));
    }
    if let Some(manifest) = crate::pate::Manifest::read(dir)? {
        let teachers: Vec<Option<Metadata>> = (0..manifest.teachers)
            .map(|k| crate::pate::teacher_dir(dir, k).metadata().ok().flatten())
            .collect();
        let done = teachers.iter().filter(|t| t.is_some()).count();
        if done < manifest.teachers {
            notes.push(format!(
                "{}: {done} of {} teachers finished; the table shows those",
                dir.display(),
                manifest.teachers
            ));
        }
        return Ok(Loaded::Pate(Box::new(PateRun {
            name,
            dir: dir.to_path_buf(),
            manifest,
            teachers,
        })));
    }
    if has("bench.json") {
        return load_bench(dir, name, notes).map(Loaded::Bench);
    }
    if has("metadata.json") || dir.join("state").join("state.json").is_file() {
        return load_train(dir, name, notes).map(|t| Loaded::Train(Box::new(t)));
    }
    if has("audit.json") {
        let results: Vec<AuditResult> = read_json(&dir.join("audit.json"))?;
        let roc = read_roc(&dir.join("roc.json"), notes);
        return Ok(Loaded::Audit(AuditRun {
            name,
            dir: dir.to_path_buf(),
            results,
            roc,
        }));
    }
    Err(Error::bad_file(
        dir,
        "not a fool run: expected metadata.json or state/ (fool train), bench.json (fool bench), audit.json (fool audit --out), pate.json (fool pate teachers), robustness_report.json (fool report robustness) or model_report.json (fool report model)",
    ))
}

fn read_roc(path: &Path, notes: &mut Vec<String>) -> Vec<RocCurve> {
    if !path.is_file() {
        return vec![];
    }
    match read_json(path) {
        Ok(r) => r,
        Err(e) => {
            notes.push(format!("{e}: its ROC curves are left out"));
            vec![]
        }
    }
}

fn load_bench(dir: &Path, name: String, notes: &mut Vec<String>) -> Result<BenchRun> {
    let config = bench::read_config(dir)?;
    let results = bench::results_path(dir);
    let rows = if results.is_file() {
        crate::bench::store::read_results(&results)?.0
    } else {
        vec![]
    };
    let summary_path = dir.join("summary.json");
    let summary: Vec<SummaryRow> = if summary_path.is_file() {
        read_json(&summary_path)?
    } else {
        let units = bench::units(&config).len();
        notes.push(format!(
            "{}: unfinished (no summary.json): {} result rows of {} units × their images; the chart shows what is there",
            dir.display(),
            rows.len(),
            units
        ));
        bench::summarize(&rows, &config.attacks, &config.eps, &config.defenses)
    };
    if summary.is_empty() {
        notes.push(format!("{}: no results yet", dir.display()));
    }
    let kept = count_kept(dir);
    let example_rows = rows
        .into_iter()
        .filter_map(|r| {
            let i = config.files.iter().position(|f| *f == r.file)?;
            (i < kept).then_some((i, r))
        })
        .collect();
    Ok(BenchRun {
        name,
        dir: dir.to_path_buf(),
        config,
        summary,
        example_rows,
    })
}

/// How many images have a clean example kept (the N of `--keep-examples`, as far as done).
fn count_kept(dir: &Path) -> usize {
    let mut n = 0;
    while bench::examples::clean_path(dir, n).is_file() {
        n += 1;
    }
    n
}

fn load_train(dir: &Path, name: String, notes: &mut Vec<String>) -> Result<TrainRun> {
    let run = RunDir::new(dir);
    let roc = read_roc(&dir.join("audit").join("roc.json"), notes);
    if let Some(meta) = run.metadata()? {
        if meta.fool_version != env!("CARGO_PKG_VERSION") {
            notes.push(format!(
                "{}: written by fool {} (this is {}); shown as far as it reads",
                dir.display(),
                meta.fool_version,
                env!("CARGO_PKG_VERSION")
            ));
        }
        if !run.model_path().is_file() {
            notes.push(format!("{}: model.pt is missing", dir.display()));
        }
        return Ok(TrainRun {
            name,
            dir: dir.to_path_buf(),
            history: meta.history.clone(),
            epochs_planned: meta.config.epochs,
            meta: Some(meta),
            roc,
        });
    }
    let state = State::read(&run.state_dir())?;
    notes.push(format!(
        "{}: unfinished: {} of {} epochs done, no metadata.json or model.pt yet (shown from state/)",
        dir.display(),
        state.history.len(),
        state.config.epochs
    ));
    Ok(TrainRun {
        name,
        dir: dir.to_path_buf(),
        meta: None,
        history: state.history,
        epochs_planned: state.config.epochs,
        roc,
    })
}
