//! Parameter averaging: an exponential moving average of the weights (`--ema D`), the
//! "EMA" of De et al. 2022 for DP-SGD. It is post-processing of the trained weights, so it
//! costs no privacy. The decay is warmed up as TensorFlow's `ExponentialMovingAverage` with
//! `num_updates` does, d_t = min(D, (1 + t)/(10 + t)), so early averages are not dominated by
//! the initialisation. Evaluation, membership audits, checkpoints and the exported model use
//! the averaged weights; training continues from the live ones. Only trainable parameters
//! are averaged (BatchNorm's running statistics, where an architecture has them, stay live).
use crate::{Error, Result};
use std::collections::HashMap;
use tch::Tensor;

pub struct Ema {
    pub decay: f64,
    pub updates: i64,
    shadow: Vec<Tensor>,
}

impl Ema {
    pub fn new(decay: f64, params: &[&Tensor]) -> Ema {
        Ema {
            decay,
            updates: 0,
            shadow: params.iter().map(|p| p.detach().copy()).collect(),
        }
    }

    /// Fold the current parameters into the average.
    pub fn update(&mut self, params: &[&Tensor]) {
        let t = self.updates as f64;
        let d = self.decay.min((1.0 + t) / (10.0 + t));
        self.updates += 1;
        tch::no_grad(|| {
            for (s, p) in self.shadow.iter_mut().zip(params) {
                let _ = s.g_mul_scalar_(d).g_add_(&(p.detach() * (1.0 - d)));
            }
        });
    }

    /// Exchange the averaged and the live parameters in place (twice restores them).
    pub fn swap(&mut self, params: &[&Tensor]) {
        tch::no_grad(|| {
            for (s, p) in self.shadow.iter_mut().zip(params) {
                let live = p.detach().copy();
                p.shallow_clone().copy_(s);
                s.copy_(&live);
            }
        });
    }

    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut v = vec![("ema.updates".to_string(), Tensor::from(self.updates))];
        for (i, s) in self.shadow.iter().enumerate() {
            v.push((format!("ema.{i}"), s.shallow_clone()));
        }
        v
    }

    pub fn load_state(&mut self, named: &HashMap<String, Tensor>) -> Result<()> {
        let get = |k: &str| {
            named
                .get(k)
                .ok_or_else(|| Error::failed("checkpoint", format!("no '{k}'")))
        };
        self.updates = get("ema.updates")?.int64_value(&[]);
        tch::no_grad(|| -> Result<()> {
            for (i, s) in self.shadow.iter_mut().enumerate() {
                s.copy_(get(&format!("ema.{i}"))?);
            }
            Ok(())
        })
    }
}
