//! SGD with momentum and Adam over explicit gradients (the DP path produces its own noisy
//! gradients, so the optimizer never reads `.grad()`), with state that can be saved and
//! restored so a resumed run continues exactly.
use crate::{Error, Result};
use tch::Tensor;

/// Which optimizer, with PyTorch's semantics.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "name", rename_all = "lowercase")]
pub enum OptKind {
    /// `torch.optim.SGD(lr, momentum)`: buf = μ·buf + g; θ -= lr·buf.
    Sgd { momentum: f64 },
    /// `torch.optim.Adam(lr)` with β = (0.9, 0.999), ε = 1e-8, bias correction.
    Adam,
}

pub struct Optimizer {
    pub kind: OptKind,
    /// The rate of the next step (the schedule sets it before each step).
    pub lr: f64,
    /// Coupled L2 weight decay: each gradient becomes g + λθ before the update.
    pub weight_decay: f64,
    step: i64,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
}

impl Optimizer {
    pub fn new(kind: OptKind, lr: f64, params: &[&Tensor]) -> Optimizer {
        let zeros = || params.iter().map(|p| p.zeros_like().detach()).collect();
        Optimizer {
            kind,
            lr,
            weight_decay: 0.0,
            step: 0,
            m: zeros(),
            v: if matches!(kind, OptKind::Adam) {
                zeros()
            } else {
                vec![]
            },
        }
    }

    /// One update of `params` (in place) with `grads`.
    pub fn step(&mut self, params: &[&Tensor], grads: &[Tensor]) {
        self.step += 1;
        let decayed: Vec<Tensor>;
        let grads = if self.weight_decay > 0.0 {
            decayed = tch::no_grad(|| {
                grads
                    .iter()
                    .zip(params)
                    .map(|(g, p)| g + p.detach() * self.weight_decay)
                    .collect()
            });
            &decayed[..]
        } else {
            grads
        };
        tch::no_grad(|| match self.kind {
            OptKind::Sgd { momentum } => {
                for ((p, g), m) in params.iter().zip(grads).zip(&mut self.m) {
                    if momentum > 0.0 {
                        if self.step == 1 {
                            m.copy_(g);
                        } else {
                            let _ = m.g_mul_scalar_(momentum).g_add_(g);
                        }
                        let _ = p.shallow_clone().g_sub_(&(&*m * self.lr));
                    } else {
                        let _ = p.shallow_clone().g_sub_(&(g * self.lr));
                    }
                }
            }
            OptKind::Adam => {
                let t = self.step as i32;
                for (((p, g), m), v) in params.iter().zip(grads).zip(&mut self.m).zip(&mut self.v) {
                    let _ = p
                        .shallow_clone()
                        .g_sub_(&crate::optim::adam_step(m, v, g, t, self.lr));
                }
            }
        });
    }

    /// Named state tensors for a checkpoint.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![("optim.step".to_string(), Tensor::from(self.step))];
        for (i, m) in self.m.iter().enumerate() {
            out.push((format!("optim.m.{i}"), m.shallow_clone()));
        }
        for (i, v) in self.v.iter().enumerate() {
            out.push((format!("optim.v.{i}"), v.shallow_clone()));
        }
        out
    }

    /// Restore what [`Optimizer::state`] saved.
    pub fn load_state(&mut self, named: &std::collections::HashMap<String, Tensor>) -> Result<()> {
        let get = |k: &str| {
            named
                .get(k)
                .ok_or_else(|| Error::failed("checkpoint", format!("no '{k}'")))
        };
        self.step = get("optim.step")?.int64_value(&[]);
        tch::no_grad(|| -> Result<()> {
            for (i, m) in self.m.iter_mut().enumerate() {
                m.copy_(get(&format!("optim.m.{i}"))?);
            }
            for (i, v) in self.v.iter_mut().enumerate() {
                v.copy_(get(&format!("optim.v.{i}"))?);
            }
            Ok(())
        })
    }
}
