//! Loading a TorchScript image classifier and running it on pixel-space tensors.
//!
//! Any module that takes (N,3,H,W) normalized input and returns (N,C) logits works; the
//! shape of the output is checked once at load time with a probe forward pass.
use crate::error::{first_line, torch_cause};
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
    /// Load `path` onto `device` in eval mode and probe it (see [`Classifier::probe`]).
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
        c.num_classes = c.probe()?;
        Ok(c)
    }

    /// What every command needs of a classifier, checked once at load time: for batches of
    /// N = 1 and N = 2 images, floating-point logits of shape (N, C) with C ≥ 2, finite, and
    /// (N = 2) a gradient with respect to the input (attacks follow it; a model that detaches
    /// its input or returns integers would otherwise fail deep inside libtorch). Returns C.
    fn probe(&self) -> Result<usize> {
        let s = self.pre.size as i64;
        let path = &self.path;
        let fail = |n: i64, msg: String| {
            Error::bad_file(
                path,
                format!("refused: on a ({n},3,{s},{s}) input the model {msg}"),
            )
        };
        let mut classes = 0;
        for n in [1i64, 2] {
            // Two different images, so a model that mixes the batch or ignores its size shows.
            let x = Tensor::linspace(0.25, 0.75, n, (Kind::Float, self.device))
                .view([n, 1, 1, 1])
                .expand([n, 3, s, s], false)
                .contiguous()
                .set_requires_grad(n == 2);
            let out = self
                .raw_forward(&self.pre.normalize(&x))
                .map_err(|e| fail(n, format!("failed: {e}")))?;
            let shape = out.size();
            if shape.len() != 2 || shape[0] != n || shape[1] < 2 {
                return Err(fail(
                    n,
                    format!("returned shape {shape:?}, expected ({n}, C) logits with C ≥ 2"),
                ));
            }
            if !out.is_floating_point() {
                return Err(fail(
                    n,
                    format!(
                        "returned {:?} values, expected floating-point logits",
                        out.kind()
                    ),
                ));
            }
            let finite = out.isfinite().all().int64_value(&[]) != 0;
            if !finite {
                return Err(fail(n, "returned NaN or infinite logits".into()));
            }
            if n == 2 {
                if !out.requires_grad() {
                    return Err(fail(
                        n,
                        "returned logits with no gradient path to the input (attacks need one)"
                            .into(),
                    ));
                }
                let g = Tensor::f_run_backward(
                    &[out.to_kind(Kind::Float).sum(Kind::Float)],
                    &[&x],
                    false,
                    true,
                )
                .map_err(|e| {
                    fail(
                        n,
                        format!(
                            "has no usable input gradient: {}",
                            first_line(&e.to_string())
                        ),
                    )
                })?;
                let ok = g
                    .first()
                    .is_some_and(|g| g.defined() && g.isfinite().all().int64_value(&[]) != 0);
                if !ok {
                    return Err(fail(
                        n,
                        "gave a missing or non-finite input gradient".into(),
                    ));
                }
            }
            classes = shape[1] as usize;
        }
        Ok(classes)
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
        Ok(self.raw_forward(x)?.to_kind(Kind::Float))
    }

    /// The module's output as it is (any dtype) for normalized input.
    fn raw_forward(&self, x: &Tensor) -> Result<Tensor> {
        // Channels-last memory (NHWC strides, same NCHW shape): oneDNN's and cuDNN's fast
        // convolution layouts; 1.4× faster forward + backward for MobileNetV2 on CPU.
        let x = if x.dim() == 4 {
            x.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
        } else {
            x.shallow_clone()
        };
        self.module
            .forward_ts(&[x])
            .map_err(|e| Error::Torch(torch_cause(&e.to_string())))
    }

    /// Logits for pixel-space input (N,3,H,W) in [0,1]; differentiable w.r.t. `x`.
    pub fn logits(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_normalized(&self.pre.normalize(x))
    }

    /// Softmax probabilities without building a graph.
    /// Logits without a graph, for numbers a user reads: non-finite logits are an error (they
    /// would print as NaN probabilities).
    pub fn finite_logits(&self, x: &Tensor) -> Result<Tensor> {
        let logits = tch::no_grad(|| self.logits(x))?;
        if logits.isfinite().all().int64_value(&[]) == 0 {
            return Err(Error::bad_file(
                &self.path,
                "the model returned NaN or infinite logits for this input",
            ));
        }
        Ok(logits)
    }

    /// Softmax probabilities without building a graph (see [`Classifier::finite_logits`]).
    pub fn probs(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.finite_logits(x)?.softmax(-1, Kind::Float))
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
    crate::files::check_regular(path, "a TorchScript model file")?;
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

/// `model.json`: how `fool` should preprocess images for a model.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModelCard {
    pub format: String,
    pub size: u32,
    pub resize: u32,
    pub mean: [f64; 3],
    pub std: [f64; 3],
    /// Labels file, relative to the card.
    pub labels: String,
    pub input: String,
}

impl ModelCard {
    /// The card beside a model file: `model.pt` → `model.json`, if there is one.
    pub fn beside(model: &Path) -> Result<Option<ModelCard>> {
        let p = model.with_extension("json");
        if !p.is_file() {
            return Ok(None);
        }
        let text = crate::files::read_regular_to_string(&p, "a fool model card (JSON)")?;
        let card: ModelCard = serde_json::from_str(&text)
            .map_err(|e| Error::bad_file(&p, format!("not a fool model card: {e}")))?;
        Ok(Some(card))
    }
}

/// Where a command's classifier comes from: the model file, preprocessing given explicitly
/// (each `None` falls back to the model card beside the model, then to the ImageNet
/// defaults), and the labels (explicit, else the card's, else `default_labels` when it has one
/// name per class, else class numbers).
#[derive(Debug, Clone)]
pub struct ModelSpec {
    pub path: PathBuf,
    pub device: Device,
    pub size: Option<u32>,
    pub resize: Option<u32>,
    pub mean: Option<[f64; 3]>,
    pub std: Option<[f64; 3]>,
    pub resize_always: bool,
    pub labels: Option<PathBuf>,
    pub default_labels: PathBuf,
}

/// A loaded classifier with its labels.
pub struct Loaded {
    pub model: Classifier,
    pub labels: Labels,
    /// No labels file fits the model: the labels are class numbers.
    pub numbered_labels: bool,
    /// The file the labels came from.
    pub labels_path: Option<PathBuf>,
}

impl ModelSpec {
    /// The preprocessing: explicit settings, then the card, then the defaults.
    pub fn preprocess(&self) -> Result<Preprocess> {
        let card = ModelCard::beside(&self.path)?;
        Ok(self.preprocess_with(card.as_ref()))
    }

    fn preprocess_with(&self, card: Option<&ModelCard>) -> Preprocess {
        let d = Preprocess::default();
        Preprocess {
            size: self.size.or(card.map(|c| c.size)).unwrap_or(d.size),
            resize: self.resize.or(card.map(|c| c.resize)).unwrap_or(d.resize),
            mean: self.mean.or(card.map(|c| c.mean)).unwrap_or(d.mean),
            std: self.std.or(card.map(|c| c.std)).unwrap_or(d.std),
            resize_always: self.resize_always,
        }
    }

    /// Load and probe the model, then its labels (checked against its number of classes).
    pub fn load(&self) -> Result<Loaded> {
        let card = ModelCard::beside(&self.path)?;
        let model = Classifier::load(&self.path, self.device, self.preprocess_with(card.as_ref()))?;
        let card_labels = card.and_then(|c| {
            let p = self.path.parent().unwrap_or(Path::new(".")).join(c.labels);
            p.is_file().then_some(p)
        });
        if let Some(p) = self.labels.as_ref().or(card_labels.as_ref()) {
            let labels = Labels::load(p)?;
            model.check_labels(&labels, p)?;
            return Ok(Loaded {
                model,
                labels,
                numbered_labels: false,
                labels_path: Some(p.clone()),
            });
        }
        let (labels, labels_path) = match Labels::load(&self.default_labels) {
            Ok(l) if l.len() == model.num_classes => (l, Some(self.default_labels.clone())),
            _ => (Labels::numbered(model.num_classes), None),
        };
        Ok(Loaded {
            model,
            labels,
            numbered_labels: labels_path.is_none(),
            labels_path,
        })
    }
}

/// SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).map_err(|e| Error::io(path, e))?;
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}
