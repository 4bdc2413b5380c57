//! Training the teachers of an ensemble (resumable: a finished teacher is kept, a partial one
//! resumed; shardable: shard i/N trains the teachers k with k mod N = i), and checking that an
//! ensemble — possibly merged from shards trained elsewhere — is complete and consistent.
use super::{first_difference, manifest_path, teacher_dir, Manifest};
use crate::bench::Shard;
use crate::privacy::dpsgd::StepStats;
use crate::train::{self, EpochRecord, Metadata, Outcome, Resume, Run, Splits, Started};
use crate::{Error, Result};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use tch::Device;

/// One teacher in the table.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TeacherRow {
    pub teacher: usize,
    pub dir: PathBuf,
    pub train_examples: usize,
    pub test_accuracy: f64,
    /// Trained (or finished) by this call; false when it was already finished.
    pub trained: bool,
}

/// What [`train_teachers`] did (or [`check`] found).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TeachersReport {
    pub out: PathBuf,
    pub teachers: usize,
    /// `i/N`.
    pub shard: String,
    /// The teachers of the shard, in order (those finished so far when stopped).
    pub rows: Vec<TeacherRow>,
    /// Teachers trained by this call.
    pub trained: usize,
    pub stopped: bool,
    pub mean_accuracy: Option<f64>,
    pub min_accuracy: Option<f64>,
    pub max_accuracy: Option<f64>,
}

impl TeachersReport {
    fn new(
        out: &Path,
        teachers: usize,
        shard: Shard,
        rows: Vec<TeacherRow>,
        stopped: bool,
    ) -> Self {
        let acc: Vec<f64> = rows.iter().map(|r| r.test_accuracy).collect();
        let n = acc.len() as f64;
        TeachersReport {
            out: out.to_path_buf(),
            teachers,
            shard: format!("{}/{}", shard.index, shard.count),
            trained: rows.iter().filter(|r| r.trained).count(),
            stopped,
            mean_accuracy: (!acc.is_empty()).then(|| acc.iter().sum::<f64>() / n),
            min_accuracy: acc.iter().copied().reduce(f64::min),
            max_accuracy: acc.iter().copied().reduce(f64::max),
            rows,
        }
    }
}

/// Progress of [`train_teachers`]; every method has a default that does nothing / goes on.
pub trait TeachersObserver {
    /// The shard's teachers: `todo` to train (or finish), `done` already finished.
    fn plan(&mut self, _todo: &[usize], _done: usize) {}
    /// Teacher `k` starts (or resumes after `resumed` epochs).
    fn teacher_start(&mut self, _k: usize, _resumed: usize, _epochs: usize) {}
    fn epoch_start(&mut self, _k: usize, _epoch: usize, _steps: u64) {}
    fn step(&mut self) {}
    /// Teacher `row.teacher` is finished: `Break` stops here (the next call goes on).
    fn teacher_end(&mut self, _row: &TeacherRow) -> ControlFlow<()> {
        ControlFlow::Continue(())
    }
}

/// An observer that does nothing.
pub struct Quiet;
impl TeachersObserver for Quiet {}

/// A teacher's run, told to the ensemble's observer.
struct Teacher<'a> {
    obs: &'a mut dyn TeachersObserver,
    k: usize,
}

impl train::Observer for Teacher<'_> {
    fn started(&mut self, run: &Started) {
        self.obs
            .teacher_start(self.k, run.resumed.len(), run.config.epochs);
    }
    fn epoch_start(&mut self, epoch: usize, steps: u64) {
        self.obs.epoch_start(self.k, epoch, steps);
    }
    fn step(&mut self, _stats: &StepStats) {
        self.obs.step();
    }
    fn epoch_end(&mut self, _rec: &EpochRecord) -> ControlFlow<()> {
        ControlFlow::Continue(())
    }
}

fn row(k: usize, root: &Path, meta: &Metadata, trained: bool) -> TeacherRow {
    TeacherRow {
        teacher: k,
        dir: teacher_dir(root, k).root().to_path_buf(),
        train_examples: meta.train_examples,
        test_accuracy: meta.test_accuracy.unwrap_or(f64::NAN),
        trained,
    }
}

/// Train the teachers of `shard` of the ensemble `manifest` describes into `root`: the
/// manifest is written first (an existing one must be the same, else an error names the
/// setting that differs); the training split is read once and shared.
pub fn train_teachers(
    root: &Path,
    manifest: &Manifest,
    shard: Shard,
    device: Device,
    obs: &mut dyn TeachersObserver,
) -> Result<TeachersReport> {
    let n = manifest.teachers;
    if n == 0 {
        return Err(Error::field("teachers", "must be at least 1"));
    }
    train::validate(&manifest.teacher_config(0))?;
    if manifest.test_examples == Some(0) {
        return Err(Error::field("test_examples", "must be at least 1"));
    }
    if manifest.template.dp.is_some() {
        return Err(Error::field(
            "dp",
            "PATE teachers are trained without DP-SGD",
        ));
    }
    let splits = Splits::load(manifest.dataset, &manifest.template.data_dir)?;
    let pool = manifest.template.pool(splits.train.len());
    if n > pool {
        return Err(Error::field(
            "teachers",
            format!(
                "{n} teachers but only {pool} training examples: every teacher needs at least one"
            ),
        ));
    }
    if let Some(saved) = Manifest::read(root)? {
        if let Some((field, asked, was)) = manifest.differs(&saved) {
            return Err(Error::field(
                &field,
                format!(
                    "{asked}, but the ensemble in {} was started with {was} ({}): its teachers all train alike; use the same settings or another folder",
                    root.display(),
                    manifest_path(root).display()
                ),
            ));
        }
    } else {
        crate::files::ensure_writable_dir(root, "out")?;
        crate::files::write_json(&manifest_path(root), manifest)?;
    }
    let mine: Vec<usize> = (0..n).filter(|k| k % shard.count == shard.index).collect();
    let mut todo = vec![];
    for &k in &mine {
        match teacher_status(root, manifest, k) {
            Ok(_) => {}
            Err(Status::Foreign(e)) => return Err(e),
            Err(_) => todo.push(k),
        }
    }
    obs.plan(&todo, mine.len() - todo.len());
    let mut rows = vec![];
    for &k in &mine {
        if !todo.contains(&k) {
            let meta = teacher_dir(root, k).read_metadata()?;
            rows.push(row(k, root, &meta, false));
            continue;
        }
        let run = Run {
            resume: Resume::IfSame,
            chart: false,
            keep_state: false,
            test_examples: manifest.test_examples,
            ..Run::new(manifest.teacher_config(k), teacher_dir(root, k), device)
        };
        let meta = match run.train_on(&splits, &mut Teacher { obs, k })? {
            Outcome::Finished(m) => m,
            Outcome::Stopped { .. } => {
                return Ok(TeachersReport::new(root, n, shard, rows, true));
            }
        };
        let r = row(k, root, &meta, true);
        let flow = obs.teacher_end(&r);
        rows.push(r);
        if flow.is_break() && k != *mine.last().unwrap_or(&k) {
            return Ok(TeachersReport::new(root, n, shard, rows, true));
        }
    }
    Ok(TeachersReport::new(root, n, shard, rows, false))
}

/// Why a teacher is not usable.
enum Status {
    Missing(Error),
    Foreign(Error),
}

/// Teacher k of the ensemble in `root`: its metadata when it is finished with the ensemble's
/// configuration.
fn teacher_status(
    root: &Path,
    manifest: &Manifest,
    k: usize,
) -> std::result::Result<Metadata, Status> {
    let dir = teacher_dir(root, k);
    let path = dir.root();
    let n = manifest.teachers;
    let missing = |what: String| {
        Status::Missing(Error::bad_file(
            path,
            format!(
                "{what} (train it with fool pate teachers --out {} and the ensemble's settings; in a sharded run, shard i/N with i = {k} mod N trains it)",
                root.display()
            ),
        ))
    };
    let meta = match dir.metadata() {
        Ok(Some(m)) => m,
        Ok(None) => {
            return Err(match dir.state() {
                Some(s) => missing(format!(
                    "unfinished ({} of {} epochs)",
                    s.history.len(),
                    s.config.epochs
                )),
                None => missing("missing".into()),
            })
        }
        Err(e) => return Err(Status::Foreign(e)),
    };
    let want = manifest.teacher_config(k);
    if meta.config != want {
        let a = serde_json::to_value(&meta.config).unwrap_or_default();
        let b = serde_json::to_value(&want).unwrap_or_default();
        let (field, was, is) = first_difference(&a, &b, &[])
            .unwrap_or_else(|| ("config".into(), String::new(), String::new()));
        return Err(Status::Foreign(Error::bad_file(
            path,
            format!(
                "a foreign teacher: its {} is {was}, but teacher {k} of this ensemble ({} teachers) has {is} (copied from another ensemble?)",
                field.replace('_', " "),
                n
            ),
        )));
    }
    if meta.epochs_done < want.epochs {
        return Err(missing(format!(
            "unfinished ({} of {} epochs)",
            meta.epochs_done, want.epochs
        )));
    }
    for f in [dir.model_path(), dir.members_path()] {
        if !f.is_file() {
            return Err(missing(format!(
                "incomplete: no {}",
                f.file_name().unwrap_or_default().to_string_lossy()
            )));
        }
    }
    Ok(meta)
}

/// Check that the ensemble in `root` is complete: its manifest, and every teacher 0..N
/// finished with the ensemble's configuration (after merging shards trained elsewhere by
/// copying their teacher folders together). The first missing, unfinished or foreign teacher
/// is an error naming its folder.
pub fn check(root: &Path) -> Result<(Manifest, TeachersReport)> {
    let manifest = Manifest::open(root)?;
    let mut rows = vec![];
    for k in 0..manifest.teachers {
        match teacher_status(root, &manifest, k) {
            Ok(meta) => rows.push(row(k, root, &meta, false)),
            Err(Status::Missing(e) | Status::Foreign(e)) => return Err(e),
        }
    }
    let report = TeachersReport::new(root, manifest.teachers, Shard::ALL, rows, false);
    Ok((manifest, report))
}
