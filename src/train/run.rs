//! [`Run::train`], the one way a model is trained into a run directory (by `fool train`, by
//! LiRA's shadow models): check the configuration, load the data, resume a saved state or
//! start afresh, train epoch by epoch saving the state after each (and a checkpoint every
//! `checkpoint_every` epochs), then write the members, the model and its metadata, the chart
//! and sample images. An [`Observer`] follows the progress and may stop the run after any
//! epoch, to be resumed later with the same result as an uninterrupted run.
use super::{
    chart, export, resolve_noise, validate, Data, EpochRecord, Metadata, PateRecord, Progress,
    RunDir, Splits, SyntheticRecord, TrainConfig, Trainer,
};
use crate::privacy::dpsgd::StepStats;
use crate::{Error, Result};
use std::ops::ControlFlow;
use tch::{Device, Kind, Tensor};

/// What a run is about to do, once its data is loaded and its state restored.
pub struct Started<'a> {
    /// The configuration, the noise multiplier resolved.
    pub config: &'a TrainConfig,
    pub train_examples: usize,
    pub test_examples: usize,
    pub device: Device,
    /// The epochs restored from a saved state (empty for a fresh run).
    pub resumed: &'a [EpochRecord],
}

/// Progress of a run; every method has a default that does nothing / goes on.
pub trait Observer {
    /// Training is about to start (or resume).
    fn started(&mut self, _run: &Started) {}
    /// Epoch `epoch` starts, with `steps` steps.
    fn epoch_start(&mut self, _epoch: usize, _steps: u64) {}
    /// One training step is done.
    fn step(&mut self, _stats: &StepStats) {}
    /// An epoch is done and its state saved: `Break` stops the run here (resumable).
    fn epoch_end(&mut self, _rec: &EpochRecord) -> ControlFlow<()> {
        ControlFlow::Continue(())
    }
}

/// An observer that does nothing.
pub struct Silent;
impl Observer for Silent {}

/// What to do with a state saved in the run directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// A saved state is an error: only a fresh run.
    Never,
    /// Continue from the saved state, which must have the same configuration; start afresh
    /// when there is none.
    Continue,
    /// Continue from a saved state with the same configuration, else start afresh; a run
    /// already finished with this configuration is not trained again (shadow models).
    IfSame,
}

/// How a run ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Every epoch is done; the model and its metadata are written.
    Finished(Box<Metadata>),
    /// The observer stopped it after this many epochs (all saved).
    Stopped { epochs_done: usize },
}

/// A training run into a run directory.
#[derive(Debug, Clone)]
pub struct Run {
    pub config: TrainConfig,
    pub dir: RunDir,
    pub device: Device,
    pub resume: Resume,
    /// Test images saved as PNG into `samples/` at the end (0: none).
    pub samples: usize,
    /// Draw `training.png` / `.svg` at the end.
    pub chart: bool,
    /// Keep `state/` once finished (resuming a finished run then only exports it again);
    /// without it the state is removed.
    pub keep_state: bool,
    /// Evaluate on the first N test examples only (default: all).
    pub test_examples: Option<usize>,
    /// A PATE student's privacy, recorded in its metadata (ε, δ and `pate`).
    pub pate: Option<PateRecord>,
}

impl Run {
    /// A fresh run of `config` into `dir` on `device`, with a chart, no sample images and the
    /// state kept.
    pub fn new(config: TrainConfig, dir: RunDir, device: Device) -> Run {
        Run {
            config,
            dir,
            device,
            resume: Resume::Never,
            samples: 0,
            chart: true,
            keep_state: true,
            test_examples: None,
            pate: None,
        }
    }

    /// Train: load the data set the configuration names, then [`Run::train_on`] it.
    pub fn train(&self, obs: &mut dyn Observer) -> Result<Outcome> {
        validate(&self.config)?;
        let splits = match &self.config.train_folder {
            None => Splits::load(self.config.dataset, &self.config.data_dir)?,
            Some(folder) => {
                Splits::with_folder(folder, self.config.dataset, &self.config.data_dir)?
            }
        };
        self.train_on(&splits, obs)
    }

    /// Train on data sets already in memory (shadow models share them).
    pub fn train_on(&self, splits: &Splits, obs: &mut dyn Observer) -> Result<Outcome> {
        let mut cfg = self.config.clone();
        validate(&cfg)?;
        let data = Data::new(splits, &cfg, self.test_examples);
        if data.train_len == 0 {
            let pool = cfg.pool(splits.train.len());
            return Err(match (cfg.partition, cfg.half) {
                (Some(p), _) => Error::field(
                    "teachers",
                    format!(
                        "{} teachers but only {pool} training example{}: every teacher needs at least one",
                        p.parts,
                        if pool == 1 { "" } else { "s" }
                    ),
                ),
                (None, Some(_)) => Error::field(
                    "half",
                    format!(
                        "a random half of {pool} training example{} is empty; a half needs a pool (limit) of at least 2 examples",
                        if pool == 1 { "" } else { "s" }
                    ),
                ),
                (None, None) => {
                    Error::bad_file(&cfg.data_dir, "the training split has no examples")
                }
            });
        }
        resolve_noise(&mut cfg, data.train_len)?;
        self.dir.create()?;
        let mut trainer = Trainer::new(cfg.clone(), self.device)?;
        let state = self.dir.state_dir();
        super::state::recover(&state);
        let state_found = state.exists();
        match self.resume {
            Resume::Never if state_found => {
                return Err(Error::field(
                    "resume",
                    format!(
                        "not asked for, but {} already holds a training run; resume it or choose another folder",
                        self.dir.root().display()
                    ),
                ))
            }
            Resume::Never => {}
            Resume::Continue => {
                if state_found {
                    trainer.load_state(&state)?;
                }
            }
            Resume::IfSame => match self.dir.progress(&cfg) {
                Progress::Finished => {
                    return Ok(Outcome::Finished(Box::new(self.dir.read_metadata()?)))
                }
                Progress::Partial(_) => trainer.load_state(&state)?,
                Progress::Fresh => {
                    if state_found {
                        std::fs::remove_dir_all(&state).map_err(|e| Error::io(&state, e))?;
                    }
                }
            },
        }
        obs.started(&Started {
            config: &cfg,
            train_examples: data.train_len,
            test_examples: data.test.len(),
            device: self.device,
            resumed: &trainer.history,
        });
        for epoch in trainer.history.len() + 1..=cfg.epochs {
            let rec = trainer.epoch(&data, epoch, obs)?;
            // The checkpoint first: if it cannot be written, the saved state is still the
            // previous epoch's, and a resumed run writes it.
            if cfg.checkpoint_every > 0 && epoch.is_multiple_of(cfg.checkpoint_every) {
                let meta = self.metadata(&trainer, &data);
                trainer.swap_average();
                let done = export::export(
                    &trainer.net,
                    &data.train,
                    &meta,
                    &self.dir.checkpoint_dir(epoch),
                );
                trainer.swap_average();
                done?;
            }
            trainer.save_state(&state)?;
            if obs.epoch_end(&rec).is_break() {
                return Ok(Outcome::Stopped { epochs_done: epoch });
            }
        }
        self.finish(&mut trainer, &data)
    }

    /// The metadata of the model as it is now, with the PATE record when there is one.
    fn metadata(&self, trainer: &Trainer, data: &Data) -> Metadata {
        let mut meta = trainer.metadata(data);
        if let Some(p) = &self.pate {
            meta.epsilon = Some(p.epsilon());
            meta.delta = Some(p.analysis.delta);
            meta.pate = Some(p.clone());
        }
        if let Some(folder) = &self.config.train_folder {
            meta.members = format!(
                "{} images of the labelled folder {}",
                data.train_len,
                folder.display()
            );
            if let Some(s) = synthetic_record(folder) {
                meta.members = format!(
                    "{}, a DP synthetic data set (ε = {}, δ = {:e}) made from {}; members.npy holds those private rows",
                    meta.members, s.epsilon, s.delta, s.private
                );
                meta.epsilon = Some(s.epsilon);
                meta.delta = Some(s.delta);
                meta.synthetic = Some(s);
            }
        }
        meta
    }

    /// Write the members, then the model with its metadata (metadata.json last: until it is
    /// there the run is not finished), the chart and the samples; drop the state unless kept.
    fn finish(&self, trainer: &mut Trainer, data: &Data) -> Result<Outcome> {
        let root = self.dir.root();
        let meta = self.metadata(trainer, data);
        let mp = self.dir.metadata_path();
        if mp.exists() {
            std::fs::remove_file(&mp).map_err(|e| Error::io(&mp, e))?;
        }
        // A student's members are the private data (the teachers' pool), not the public pool
        // items it trained on.
        // A model trained on synthetic data: its members are the private rows the data set
        // was made from.
        let members = match (&trainer.cfg.student, &meta.synthetic) {
            (Some(s), _) => Tensor::arange(s.private_rows as i64, (Kind::Int64, Device::Cpu)),
            (
                None,
                Some(SyntheticRecord {
                    private_rows: Some(r),
                    ..
                }),
            ) => Tensor::arange_start(r.start as i64, r.end as i64, (Kind::Int64, Device::Cpu)),
            _ => data.members.shallow_clone(),
        };
        self.dir.write_members(&members)?;
        // The exported model is the averaged one (with --ema).
        trainer.swap_average();
        export::export(&trainer.net, &data.train, &meta, root)?;
        if self.chart {
            chart::training(root, &meta)?;
        }
        if self.samples > 0 {
            export::save_samples(&data.test, self.samples, &self.dir.samples_dir())?;
        }
        if !self.keep_state {
            let state = self.dir.state_dir();
            std::fs::remove_dir_all(&state).map_err(|e| Error::io(&state, e))?;
        }
        Ok(Outcome::Finished(Box::new(meta)))
    }
}

/// The privacy record of a `fool synth` data set (its dataset.json), None for other folders.
fn synthetic_record(folder: &std::path::Path) -> Option<SyntheticRecord> {
    let v: serde_json::Value = crate::files::read_json(&folder.join("dataset.json")).ok()?;
    if !v["source"].as_str()?.starts_with("fool synth") {
        return None;
    }
    let rows = v["private_rows"]
        .as_array()
        .and_then(|a| Some(a.first()?.as_u64()? as usize..a.get(1)?.as_u64()? as usize));
    Some(SyntheticRecord {
        folder: folder.to_path_buf(),
        epsilon: v["epsilon"].as_f64()?,
        delta: v["delta"].as_f64()?,
        private: v["private"].as_str().unwrap_or("").to_string(),
        private_rows: rows,
    })
}
