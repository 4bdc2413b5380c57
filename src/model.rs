//! Loading a TorchScript image classifier and running it on pixel-space tensors.
//!
//! Any module that takes (N,3,H,W) normalized input and returns (N,C) logits works; the
//! shape of the output is checked once at load time with a probe forward pass.
use crate::error::first_line;
use crate::labels::Labels;
use crate::preprocess::Preprocess;
use crate::{Error, Result};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use tch::{CModule, Device, Kind, Tensor};

pub struct Classifier {
    module: CModule,
    pub device: Device,
    pub pre: Preprocess,
    pub num_classes: usize,
    pub path: PathBuf,
}

/// One entry of a top-k list.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct ClassProb {
    pub index: usize,
    pub label: String,
    pub prob: f64,
}

impl Classifier {
    /// Load `path` onto `device` in eval mode and check it maps (1,3,size,size) to (1,C).
    pub fn load(path: &Path, device: Device, pre: Preprocess) -> Result<Self> {
        pre.validate()?;
        let module = load_torchscript(path, device)?;
        // Attacks need gradients with respect to the input only: parameters that require
        // gradients make every backward pass compute weight gradients too (1.6× slower on
        // MobileNetV2 on CPU).
        for (_, p) in module
            .named_parameters()
            .map_err(|e| Error::Torch(first_line(&e.to_string())))?
        {
            let _ = p.set_requires_grad(false);
        }
        let mut c = Classifier {
            module,
            device,
            pre,
            num_classes: 0,
            path: path.to_path_buf(),
        };
        let s = c.pre.size as i64;
        let probe = Tensor::full([1, 3, s, s], 0.5, (Kind::Float, device));
        let out = tch::no_grad(|| c.forward_normalized(&c.pre.normalize(&probe))).map_err(|e| {
            Error::bad_file(
                path,
                format!("forward pass on a (1,3,{s},{s}) input failed: {e}"),
            )
        })?;
        let shape = out.size();
        if shape.len() != 2 || shape[0] != 1 || shape[1] < 2 {
            return Err(Error::bad_file(
                path,
                format!("model output has shape {shape:?}, expected (N, C) logits with C ≥ 2"),
            ));
        }
        c.num_classes = shape[1] as usize;
        Ok(c)
    }

    /// Check that `labels` has one entry per model output.
    pub fn check_labels(&self, labels: &Labels, labels_path: &Path) -> Result<()> {
        if labels.len() != self.num_classes {
            return Err(Error::bad_file(
                labels_path,
                format!(
                    "{} labels, but the model {} outputs {} classes",
                    labels.len(),
                    self.path.display(),
                    self.num_classes
                ),
            ));
        }
        Ok(())
    }

    fn forward_normalized(&self, x: &Tensor) -> Result<Tensor> {
        // Channels-last memory (NHWC strides, same NCHW shape): oneDNN's and cuDNN's fast
        // convolution layouts; 1.4× faster forward + backward for MobileNetV2 on CPU.
        let x = if x.dim() == 4 {
            x.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
        } else {
            x.shallow_clone()
        };
        let out = self
            .module
            .forward_ts(&[x])
            .map_err(|e| Error::Torch(first_line(&e.to_string())))?;
        Ok(out.to_kind(Kind::Float))
    }

    /// Logits for pixel-space input (N,3,H,W) in [0,1]; differentiable w.r.t. `x`.
    pub fn logits(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_normalized(&self.pre.normalize(x))
    }

    /// Softmax probabilities without building a graph.
    pub fn probs(&self, x: &Tensor) -> Result<Tensor> {
        tch::no_grad(|| Ok(self.logits(x)?.softmax(-1, Kind::Float)))
    }

    /// Top-k of the first row of `probs` (N,C).
    pub fn top_k(probs: &Tensor, k: usize, labels: &Labels) -> Vec<ClassProb> {
        let row = probs.get(0).to_device(Device::Cpu);
        let k = k.min(row.size()[0] as usize) as i64;
        let (values, indices) = row.topk(k, 0, true, true);
        let values = Vec::<f64>::try_from(values.to_kind(Kind::Double)).unwrap_or_default();
        let indices = Vec::<i64>::try_from(indices).unwrap_or_default();
        indices
            .into_iter()
            .zip(values)
            .map(|(i, p)| ClassProb {
                index: i as usize,
                label: labels.name(i as usize).to_string(),
                prob: p,
            })
            .collect()
    }
}

/// Load a TorchScript module from `path` onto `device`, in eval mode: the one loader of the
/// library (the attacked classifier, shadow and audited models). Errors name the file.
pub fn load_torchscript(path: &Path, device: Device) -> Result<CModule> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.is_dir() {
        return Err(Error::bad_file(
            path,
            "is a directory, expected a TorchScript model file",
        ));
    }
    let mut module = CModule::load_on_device(path, device).map_err(|e| {
        Error::bad_file(
            path,
            format!(
                "not a loadable TorchScript model ({})",
                first_line(&e.to_string())
            ),
        )
    })?;
    module.set_eval();
    Ok(module)
}

/// SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).map_err(|e| Error::io(path, e))?;
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}
