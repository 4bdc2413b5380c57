//! LiRA's shadow models: their configurations (the target's, on other random halves of the
//! same pool), their run directories `DIR/shadow-NNN/`, their training through
//! [`Run::train_on`] (resumable: a finished shadow is reused, a partial one resumed), and the
//! φ of a model on the scored examples.
use super::score::logit_confidence;
use super::LiraObserver;
use crate::audit::{model_logits, ModelRun};
use crate::datasets::TensorDataset;
use crate::privacy::dpsgd::StepStats;
use crate::train::{
    self, EpochRecord, Outcome, Progress, Resume, Run, RunDir, Splits, Started, TrainConfig,
};
use crate::{Error, Result};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use tch::Device;

/// Shadow `i` trains on the half drawn with seed `HALF_BASE + i`.
pub const HALF_BASE: u64 = 1000;
/// Test examples a shadow evaluates itself on after each epoch.
const SHADOW_TEST_EXAMPLES: usize = 1000;

/// The configuration of shadow `i` (of a pool of `pool` examples): the target's, on the
/// half drawn with `HALF_BASE + i`, seed `seed + HALF_BASE + i`, `epochs` if given, no
/// checkpoints; DP noise recalibrated when the target gave a target ε and the epochs differ.
pub fn shadow_config(
    target: &TrainConfig,
    i: usize,
    epochs: Option<usize>,
    pool: usize,
) -> Result<TrainConfig> {
    let mut cfg = TrainConfig {
        half: Some(HALF_BASE + i as u64),
        seed: target.seed.wrapping_add(HALF_BASE + i as u64),
        epochs: epochs.unwrap_or(target.epochs),
        checkpoint_every: 0,
        ..target.clone()
    };
    train::validate(&cfg)?;
    train::resolve_noise(&mut cfg, pool / 2)?;
    Ok(cfg)
}

/// The run directory of shadow `i` under `root`.
pub fn shadow_dir(root: &Path, i: usize) -> RunDir {
    RunDir::new(root.join(format!("shadow-{i:03}")))
}

/// The shadow models of a LiRA run.
pub struct Shadows {
    pub root: PathBuf,
    pub configs: Vec<TrainConfig>,
}

/// A shadow's training progress, told to the LiRA observer.
struct ShadowProgress<'a> {
    obs: &'a mut dyn LiraObserver,
    shadow: usize,
}

impl train::Observer for ShadowProgress<'_> {
    fn started(&mut self, run: &Started) {
        self.obs
            .shadow_start(self.shadow, run.resumed.len() + 1, run.config.epochs);
    }
    fn step(&mut self, _stats: &StepStats) {
        self.obs.step();
    }
    fn epoch_end(&mut self, rec: &EpochRecord) -> ControlFlow<()> {
        self.obs.epoch_end(self.shadow, rec.epoch)
    }
}

impl Shadows {
    /// `n` shadows of the target configured by `target` under `root`.
    pub fn new(
        root: PathBuf,
        target: &TrainConfig,
        n: usize,
        epochs: Option<usize>,
        pool: usize,
    ) -> Result<Shadows> {
        let configs = (0..n)
            .map(|i| shadow_config(target, i, epochs, pool))
            .collect::<Result<_>>()?;
        Ok(Shadows { root, configs })
    }

    pub fn dir(&self, i: usize) -> RunDir {
        shadow_dir(&self.root, i)
    }

    /// Train the shadows that are not finished (resuming a partial one) on `splits`;
    /// `Break` when the observer stopped the training.
    pub fn train(
        &self,
        splits: &Splits,
        device: Device,
        obs: &mut dyn LiraObserver,
    ) -> Result<ControlFlow<()>> {
        let progress: Vec<Progress> = self
            .configs
            .iter()
            .enumerate()
            .map(|(i, c)| self.dir(i).progress(c))
            .collect();
        let total: usize = self.configs.iter().map(|c| c.epochs).sum();
        let done: usize = self
            .configs
            .iter()
            .zip(&progress)
            .map(|(c, p)| match p {
                Progress::Finished => c.epochs,
                Progress::Partial(k) => (*k).min(c.epochs),
                Progress::Fresh => 0,
            })
            .sum();
        obs.training(total, done);
        for (i, (c, p)) in self.configs.iter().zip(&progress).enumerate() {
            let trained = *p != Progress::Finished;
            if trained {
                let run = Run {
                    resume: Resume::IfSame,
                    chart: false,
                    keep_state: false,
                    test_examples: Some(SHADOW_TEST_EXAMPLES),
                    ..Run::new(c.clone(), self.dir(i), device)
                };
                let mut follow = ShadowProgress {
                    obs: &mut *obs,
                    shadow: i,
                };
                if let Outcome::Stopped { .. } = run.train_on(splits, &mut follow)? {
                    return Ok(ControlFlow::Break(()));
                }
            }
            if obs.shadow_end(i, trained).is_break() {
                return Ok(ControlFlow::Break(()));
            }
        }
        Ok(ControlFlow::Continue(()))
    }

    /// Which of the pool's `pool` examples shadow `i` was trained on (its members.npy).
    pub fn members(&self, i: usize, pool: usize) -> Result<Vec<bool>> {
        let dir = self.dir(i);
        let mp = dir.members_path();
        let members = dir
            .members()?
            .ok_or_else(|| Error::bad_file(&mp, "missing"))?;
        let mut inn = vec![false; pool];
        for m in members {
            match inn.get_mut(m) {
                Some(v) => *v = true,
                None => {
                    return Err(Error::bad_file(
                        &mp,
                        format!("member index {m} is outside the pool of {pool} examples"),
                    ))
                }
            }
        }
        Ok(inn)
    }
}

/// φ of a model on rows `idx` of `ds`, `[example * queries + query]` (queries: the image,
/// and its horizontal flip with `flip`), plus the predicted classes (of the image itself).
pub fn confidences(
    run: &ModelRun,
    ds: &TensorDataset,
    idx: &[usize],
    flip: bool,
) -> Result<(Vec<f64>, Vec<usize>)> {
    let classes = ds.name.num_classes();
    let logits = model_logits(run, ds, idx, flip, &mut |_| {})?;
    let labels = ds.labels_of(idx)?;
    let q = logits.len();
    let mut phi = vec![0.0; idx.len() * q];
    let mut predicted = Vec::with_capacity(idx.len());
    for (k, values) in logits.iter().enumerate() {
        for (e, row) in values.chunks(classes).enumerate() {
            if row.iter().any(|z| !z.is_finite()) {
                return Err(Error::bad_file(
                    run.path,
                    format!("non-finite logits for training example {}", idx[e]),
                ));
            }
            phi[e * q + k] = logit_confidence(row, labels[e] as usize);
            if k == 0 {
                let arg = (0..classes).fold(0, |b, j| if row[j] > row[b] { j } else { b });
                predicted.push(arg);
            }
        }
    }
    Ok((phi, predicted))
}
