//! A model's outputs on labelled examples, checked ([`Outputs`]), and where they come from:
//! `.npy` files ([`read_outputs_npy`]) or a TorchScript model run on rows of a data set
//! ([`model_logits`], [`model_outputs`]).
use crate::datasets::{Feed, TensorDataset};
use crate::{Error, Result};
use std::fmt;
use std::path::{Path, PathBuf};
use tch::{CModule, Device, Kind, Tensor};

/// Where model outputs came from, to name it in errors.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    File(PathBuf),
    /// A setting or argument name (`members`, `member_logits`).
    Arg(String),
}

impl Source {
    pub(crate) fn error(&self, msg: impl Into<String>) -> Error {
        match self {
            Source::File(p) => Error::bad_file(p, msg),
            Source::Arg(a) => Error::field(a, msg),
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::File(p) => write!(f, "{}", p.display()),
            Source::Arg(a) => f.write_str(a),
        }
    }
}

/// Whether output rows are logits or probabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    Logits,
    Probabilities,
}

/// A model's outputs on a set of labelled examples, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Outputs {
    /// n × classes, row-major.
    pub values: Vec<f64>,
    pub n: usize,
    pub classes: usize,
    pub labels: Vec<usize>,
    pub kind: OutputKind,
    pub source: Source,
}

impl Outputs {
    /// Check and wrap outputs of shape `shape` (must be (n, C), C ≥ 2) with labels.
    /// `source` names the outputs in errors, `labels_source` the labels.
    pub fn new(
        values: Vec<f64>,
        shape: &[usize],
        labels: &[i64],
        kind: OutputKind,
        source: Source,
        labels_source: Source,
    ) -> Result<Outputs> {
        let what = match kind {
            OutputKind::Logits => "logits",
            OutputKind::Probabilities => "probabilities",
        };
        let &[n, classes] = shape else {
            return Err(source.error(format!(
                "expected a 2-D array of {what} with shape (n, C), got shape {shape:?}"
            )));
        };
        if n == 0 {
            return Err(source.error(format!("no examples: {what} of shape {shape:?}")));
        }
        if classes < 2 {
            return Err(source.error(format!(
                "expected {what} of shape (n, C) with C ≥ 2 classes, got shape {shape:?}"
            )));
        }
        if labels.len() != n {
            return Err(labels_source.error(format!(
                "{} labels, but {source} has {n} rows of {what}; expected one label per row",
                labels.len()
            )));
        }
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(source.error(format!(
                "{what} contain NaN or infinite values (row {}, column {})",
                i / classes,
                i % classes
            )));
        }
        if kind == OutputKind::Probabilities {
            for (i, row) in values.chunks(classes).enumerate() {
                let sum: f64 = row.iter().sum();
                if row.iter().any(|p| !(0.0..=1.0).contains(p)) || (sum - 1.0).abs() > 1e-3 {
                    return Err(source.error(format!(
                        "row {i} is not a probability vector (values in [0, 1] summing to 1; its sum is {sum}); are these logits?"
                    )));
                }
            }
        }
        let mut checked = Vec::with_capacity(n);
        for (i, &l) in labels.iter().enumerate() {
            if l < 0 || l as u64 >= classes as u64 {
                return Err(labels_source.error(format!(
                    "label {l} at row {i} is out of range for {classes} classes (expected 0..={})",
                    classes - 1
                )));
            }
            checked.push(l as usize);
        }
        Ok(Outputs {
            values,
            n,
            classes,
            labels: checked,
            kind,
            source,
        })
    }

    /// From an (n, C) float tensor and an (n,) integer tensor (any device and kind).
    pub fn from_tensors(
        outputs: &Tensor,
        labels: &Tensor,
        kind: OutputKind,
        name: &str,
    ) -> Result<Outputs> {
        let source = Source::Arg(name.to_string());
        let labels_source = Source::Arg(format!("{name} labels"));
        if labels.dim() != 1 {
            return Err(labels_source.error(format!(
                "expected a 1-D tensor of labels, got shape {:?}",
                labels.size()
            )));
        }
        if labels.is_floating_point() {
            return Err(
                labels_source.error(format!("expected integer labels, got {:?}", labels.kind()))
            );
        }
        let shape: Vec<usize> = outputs.size().iter().map(|&d| d.max(0) as usize).collect();
        let values = Vec::<f64>::try_from(
            outputs
                .to_device(Device::Cpu)
                .to_kind(Kind::Double)
                .contiguous()
                .view([-1]),
        )?;
        let labels = Vec::<i64>::try_from(labels.to_device(Device::Cpu).to_kind(Kind::Int64))?;
        Outputs::new(values, &shape, &labels, kind, source, labels_source)
    }

    /// The output row of example `i`.
    pub fn row(&self, i: usize) -> &[f64] {
        &self.values[i * self.classes..(i + 1) * self.classes]
    }

    /// The examples at `idx` (in that order).
    pub fn select(&self, idx: &[usize]) -> Outputs {
        let mut values = Vec::with_capacity(idx.len() * self.classes);
        for &i in idx {
            values.extend_from_slice(self.row(i));
        }
        Outputs {
            values,
            n: idx.len(),
            classes: self.classes,
            labels: idx.iter().map(|&i| self.labels[i]).collect(),
            kind: self.kind,
            source: self.source.clone(),
        }
    }
}

pub use crate::npy::read_float as read_float_npy;

/// Read a 1-D integer `.npy` array (int8/16/32/64, uint8/16/32/64) as i64.
pub fn read_labels_npy(path: &Path) -> Result<Vec<i64>> {
    let (values, shape) = crate::npy::read_int(path, "of integer labels")?;
    if shape.len() != 1 {
        return Err(Error::bad_file(
            path,
            format!("expected a 1-D array of integer labels, got shape {shape:?}"),
        ));
    }
    Ok(values)
}

/// Read outputs (logits or probabilities, (n, C) float32/float64) and labels ((n,)
/// integers) from `.npy` files.
pub fn read_outputs_npy(outputs: &Path, labels: &Path, kind: OutputKind) -> Result<Outputs> {
    let (values, shape) = read_float_npy(outputs)?;
    let labels_v = read_labels_npy(labels)?;
    Outputs::new(
        values,
        &shape,
        &labels_v,
        kind,
        Source::File(outputs.to_path_buf()),
        Source::File(labels.to_path_buf()),
    )
}

/// A TorchScript model (taking (N,3,H,W) pixels in [0,1], returning (N, C) logits) and how
/// to run it.
pub struct ModelRun<'a> {
    pub module: &'a CModule,
    /// Its file, to name it in errors.
    pub path: &'a Path,
    /// Images per forward pass.
    pub batch: usize,
    pub device: Device,
}

/// The logits of a model on rows `idx` of `ds` (single-channel images repeated to 3
/// channels), n × C row-major with C = the data set's class count, one vector per query: the
/// images, then with `flip` the horizontally flipped images. `on_batch` is called with the
/// number of examples after each batch.
pub fn model_logits(
    run: &ModelRun,
    ds: &TensorDataset,
    idx: &[usize],
    flip: bool,
    on_batch: &mut dyn FnMut(usize),
) -> Result<Vec<Vec<f64>>> {
    let classes = ds.name.num_classes();
    let queries = if flip { 2 } else { 1 };
    let mut values = vec![Vec::with_capacity(idx.len() * classes); queries];
    for b in ds.batches(idx, run.batch, run.device, Feed::Rgb) {
        for (k, v) in values.iter_mut().enumerate() {
            let x = if k == 0 {
                b.images.shallow_clone()
            } else {
                b.images.flip([3])
            };
            let out = tch::no_grad(|| run.module.forward_ts(&[x])).map_err(|e| {
                Error::bad_file(
                    run.path,
                    format!(
                        "forward pass on {} images of shape (3, {s}, {s}) failed: {}",
                        ds.name,
                        crate::error::first_line(&e.to_string()),
                        s = ds.name.side()
                    ),
                )
            })?;
            let shape = out.size();
            if shape.len() != 2 || shape[0] != b.len() as i64 {
                return Err(Error::bad_file(
                    run.path,
                    format!(
                        "model output has shape {shape:?} for {} images, expected (N, C) logits",
                        b.len()
                    ),
                ));
            }
            if shape[1] != classes as i64 {
                return Err(Error::bad_file(
                    run.path,
                    format!(
                        "model outputs {} classes, but {} has {classes}",
                        shape[1], ds.name
                    ),
                ));
            }
            v.extend(Vec::<f64>::try_from(
                out.to_device(Device::Cpu)
                    .to_kind(Kind::Double)
                    .contiguous()
                    .view([-1]),
            )?);
        }
        on_batch(b.len());
    }
    Ok(values)
}

/// [`model_logits`] of the images (no flip) as checked [`Outputs`] with the rows' labels.
pub fn model_outputs(
    run: &ModelRun,
    ds: &TensorDataset,
    idx: &[usize],
    on_batch: &mut dyn FnMut(usize),
) -> Result<Outputs> {
    let values = model_logits(run, ds, idx, false, on_batch)?.remove(0);
    let labels = ds.labels_of(idx)?;
    let source = Source::File(run.path.to_path_buf());
    Outputs::new(
        values,
        &[idx.len(), ds.name.num_classes()],
        &labels,
        OutputKind::Logits,
        source.clone(),
        source,
    )
}
