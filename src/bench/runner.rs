//! One unit of work: a loaded batch attacked with one attack at one eps (bare or behind one
//! defense), judged through the defenses, as result rows.
use super::plan::{seed_for, BenchConfig, Unit};
use super::store::Row;
use crate::attacks::goal::predictions;
use crate::attacks::{distances, project_quantized, registry, Budget, Goal, StepInfo, Victim};
use crate::defenses::{classify_through, Chain, Defended, Defense as _};
use crate::detect::{Detector as _, Evading, FeatureSqueezing};
use crate::model::Classifier;
use crate::{Error, Result};
use tch::Tensor;

pub use crate::datasets::{load_batch, LoadedBatch};

/// A batch named by its files ("images a.png … c.png (3)"), for errors.
pub fn batch_name(b: &LoadedBatch) -> String {
    let files: Vec<&str> = b.items.iter().map(|it| it.file.as_str()).collect();
    match files.as_slice() {
        [] => "an empty batch".into(),
        [one] => format!("image {one}"),
        [first, .., last] => format!("images {first} … {last} ({})", files.len()),
    }
}

/// Everything a unit needs.
pub struct Runner<'a> {
    pub cfg: &'a BenchConfig,
    pub model: &'a Classifier,
    /// The configured defenses by name.
    pub defenses: &'a [(String, Chain)],
    /// The run's detector (`cfg.detector`), when it has one.
    pub detector: Option<&'a FeatureSqueezing>,
}

impl Runner<'_> {
    fn defense(&self, name: &str) -> &Chain {
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
        let logits = classify_through(self.model, self.defense(defense), x)?;
        self.check_logits(&logits, x.size()[0])?;
        Ok(predictions(&logits))
    }

    /// Logits must be (N, C) for N images, C the classes the model was probed with: rows are
    /// read by index, and a model that returns fewer (one row whatever the batch) would
    /// otherwise be read out of bounds.
    fn check_logits(&self, logits: &Tensor, n: i64) -> Result<()> {
        let (shape, c) = (logits.size(), self.model.num_classes as i64);
        if shape != [n, c] {
            return Err(Error::failed(
                &self.cfg.model,
                format!("refused: on a batch of {n} images the model returned logits of shape {shape:?}, expected [{n}, {c}]"),
            ));
        }
        Ok(())
    }

    /// Check the model on a loaded batch before it is attacked: one forward pass must give
    /// (N, C) logits. When it fails, the image at fault is found (one forward pass per image)
    /// and named.
    pub fn check_batch(&self, b: &LoadedBatch) -> Result<()> {
        if b.items.is_empty() {
            return Ok(());
        }
        let err = match tch::no_grad(|| self.model.logits(&b.x)) {
            Ok(logits) => return self.check_logits(&logits, b.items.len() as i64),
            Err(e) => e,
        };
        for (i, it) in b.items.iter().enumerate() {
            if let Err(e) = tch::no_grad(|| self.model.logits(&b.x.narrow(0, i as i64, 1))) {
                return Err(Error::failed(
                    &it.path.display().to_string(),
                    format!("the model failed on this image: {e}"),
                ));
            }
        }
        Err(Error::failed(
            &batch_name(b),
            format!("the model failed on the batch: {err}"),
        ))
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

    /// The detector's scores of a batch's clean images (computed once per batch, not per
    /// unit); `None` without a detector.
    pub fn clean_scores(&self, b: &LoadedBatch) -> Result<Option<Vec<f64>>> {
        match self.detector {
            Some(d) if !b.items.is_empty() => Ok(Some(self.scores(d, &b.x)?)),
            _ => Ok(None),
        }
    }

    /// One detector score per image of `x`.
    fn scores(&self, d: &FeatureSqueezing, x: &Tensor) -> Result<Vec<f64>> {
        let s = d.score(self.model, x)?;
        if s.len() != x.size()[0] as usize || s.iter().any(|v| !v.is_finite()) {
            return Err(Error::failed(
                &self.cfg.model,
                "the detector's scores are not one finite number per image",
            ));
        }
        Ok(s)
    }

    /// Run one unit on a loaded batch; returns its rows and the attacked images (8-bit). `clean` holds the batch's
    /// [`Runner::clean_scores`] (computed here when `None` and the run has a detector).
    pub fn run_unit(
        &self,
        unit: &Unit,
        b: &LoadedBatch,
        clean: Option<&[f64]>,
        on_step: &mut dyn FnMut(StepInfo),
    ) -> Result<(Vec<Row>, Tensor)> {
        if b.items.is_empty() {
            return Ok((Vec::new(), b.x.shallow_clone()));
        }
        let files: Vec<&str> = b.items.iter().map(|it| it.file.as_str()).collect();
        let targets = self.cfg.targets.targets(
            &b.labels,
            &files,
            self.cfg.seed,
            self.model.num_classes,
            || tch::no_grad(|| self.model.logits(&b.x)),
        )?;
        let goal = Goal::new(targets.as_deref(), &b.labels, self.model.device);
        let budget = Budget::new(unit.eps, self.cfg.norm);
        let batch_key = unit.batch.to_string();
        tch::manual_seed(seed_for(self.cfg, &[&unit.key()]));
        let mut broken_by: Option<Vec<Option<String>>> = None;
        let (adv, queries) = if budget.is_empty() {
            // No 8-bit change fits in the budget: the attacked image is the clean one.
            (b.x.shallow_clone(), vec![0; b.items.len()])
        } else {
            let attack = registry::build(&unit.attack, self.cfg.steps, self.early_stop(unit))?;
            let out = match &unit.adaptive {
                None => attack.run(self.model, &b.x, &goal, budget, on_step)?,
                Some(d) => {
                    let victim = Defended {
                        model: self.model,
                        defense: self.defense(d),
                        eot: self.cfg.eot,
                    };
                    match (self.detector, &self.cfg.detector) {
                        (Some(detector), Some(dc)) => {
                            let evading = Evading {
                                inner: &victim,
                                model: self.model,
                                detector,
                                weight: dc.weight,
                                same_logits: self.defense(d).0.is_empty(),
                            };
                            attack.run(&evading as &dyn Victim, &b.x, &goal, budget, on_step)?
                        }
                        _ => attack.run(&victim as &dyn Victim, &b.x, &goal, budget, on_step)?,
                    }
                }
            };
            let stages = attack.stages();
            broken_by = out.broken_by.as_ref().map(|v| {
                v.iter()
                    .map(|s| s.and_then(|k| stages.get(k).cloned()))
                    .collect()
            });
            let q = out
                .image_queries
                .unwrap_or_else(|| vec![out.queries; b.items.len()]);
            (out.adv, q)
        };
        if adv.size() != b.x.size() {
            return Err(Error::internal(
                &unit.attack,
                format!(
                    "returned images of shape {:?} for {:?}",
                    adv.size(),
                    b.x.size()
                ),
            ));
        }
        let adv = project_quantized(&b.x, &adv, budget);
        let (linf, l2) = distances(&adv, &b.x);
        let n = b.items.len();
        let lens = [queries.len(), linf.len(), l2.len()];
        if lens.iter().any(|&l| l != n)
            || targets.as_ref().is_some_and(|t| t.len() != n)
            || broken_by.as_ref().is_some_and(|b| b.len() != n)
        {
            return Err(Error::internal(
                &unit.attack,
                format!("per-image results of lengths {lens:?} for {n} images"),
            ));
        }
        let computed;
        let clean_scores = match (clean, self.detector) {
            (Some(c), _) => Some(c),
            (None, Some(_)) => {
                computed = self.clean_scores(b)?;
                computed.as_deref()
            }
            (None, None) => None,
        };
        let adv_scores = match self.detector {
            Some(d) => Some(self.scores(d, &adv)?),
            None => None,
        };
        let flag = |s: f64| self.detector.map(|d| d.flag(s));
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
                    detector_score: adv_scores.as_ref().map(|s| s[i]),
                    flagged: adv_scores.as_ref().and_then(|s| flag(s[i])),
                    clean_score: clean_scores.map(|s| s[i]),
                    clean_flagged: clean_scores.and_then(|s| flag(s[i])),
                    broken_by: broken_by.as_ref().and_then(|b| b[i].clone()),
                });
            }
        }
        Ok((rows, adv))
    }
}
