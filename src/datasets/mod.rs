//! Data sets.
//!
//! * [`image_folder`]: labelled folders of image files (the ImageNet samples), read lazily
//!   file by file by the benchmark;
//! * [`load`]: MNIST and CIFAR-10 from their canonical distribution files, read whole into
//!   one uint8 tensor for training and privacy audits (`fool train --dataset mnist|cifar10
//!   --data DIR`);
//! * [`DatasetSpec`]: a split and range of those (`mnist:test[0:1000]`) as benchmark inputs.
//!
//! The pixel tensors stay uint8 on the CPU (47 MB for MNIST train, 154 MB for CIFAR-10
//! train); [`TensorDataset::pixels`] and [`TensorDataset::normalized`] convert only the
//! rows of a batch, on the device that will use them; [`TensorDataset::batches`] is the one
//! loop over chosen rows in batches.
use crate::{Error, Result};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use tch::{Device, Kind, Tensor};

mod batches;
pub mod cifar10;
mod folder;
pub mod mnist;
pub mod pool;
pub mod spec;

pub use batches::{Batch, Batches, Feed};
pub use folder::{image_folder, load_batch, Item, LoadedBatch};
pub use spec::DatasetSpec;

/// The data sets [`load`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DatasetName {
    Mnist,
    Cifar10,
}

/// The names accepted by `--dataset`.
pub const DATASET_CHOICES: &str = "mnist, cifar10";

impl FromStr for DatasetName {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "mnist" => Ok(DatasetName::Mnist),
            "cifar10" | "cifar-10" | "cifar_10" => Ok(DatasetName::Cifar10),
            _ => Err(Error::field(
                "dataset",
                format!("unknown data set '{s}'; choose one of: {DATASET_CHOICES}"),
            )),
        }
    }
}

impl fmt::Display for DatasetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DatasetName::Mnist => "mnist",
            DatasetName::Cifar10 => "cifar10",
        })
    }
}

impl DatasetName {
    /// Per-channel mean of the training pixels (in [0,1]), the standard normalization
    /// constants: MNIST 0.1307; CIFAR-10 (0.4914, 0.4822, 0.4465).
    pub fn mean(&self) -> Vec<f64> {
        match self {
            DatasetName::Mnist => vec![0.1307],
            DatasetName::Cifar10 => vec![0.4914, 0.4822, 0.4465],
        }
    }

    /// Per-channel standard deviation of the training pixels: MNIST 0.3081; CIFAR-10
    /// (0.2470, 0.2435, 0.2616).
    ///
    /// For CIFAR-10 these are the true standard deviations over all 50,000 × 1024 pixels
    /// of each channel (as torchvision's and most recent references compute them), not the
    /// widely copied (0.2023, 0.1994, 0.2010), which is the mean of the per-image
    /// standard deviations and leaves normalized data with a std of about 1.2.
    pub fn std(&self) -> Vec<f64> {
        match self {
            DatasetName::Mnist => vec![0.3081],
            DatasetName::Cifar10 => vec![0.2470, 0.2435, 0.2616],
        }
    }

    /// Colour channels: 1 (MNIST) or 3 (CIFAR-10).
    pub fn channels(&self) -> i64 {
        match self {
            DatasetName::Mnist => 1,
            DatasetName::Cifar10 => 3,
        }
    }

    /// Image side in pixels (images are square): 28 or 32.
    pub fn side(&self) -> i64 {
        match self {
            DatasetName::Mnist => 28,
            DatasetName::Cifar10 => 32,
        }
    }

    /// Number of classes: 10 for both.
    pub fn num_classes(&self) -> usize {
        10
    }

    /// Where `scripts/setup/setup.sh` puts the files: `assets/mnist`, `assets/cifar10`
    /// (relative to the working directory).
    pub fn default_dir(&self) -> PathBuf {
        PathBuf::from("assets").join(self.to_string())
    }
}

/// Which part of a data set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Test,
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Split::Train => "train",
            Split::Test => "test",
        })
    }
}

/// A whole data set split in memory.
#[derive(Debug)]
pub struct TensorDataset {
    pub name: DatasetName,
    pub split: Split,
    /// (N, C, H, W) uint8 on the CPU: MNIST (N,1,28,28), CIFAR-10 (N,3,32,32).
    pub images: Tensor,
    /// (N,) int64 on the CPU, each in 0..10.
    pub labels: Tensor,
    /// Class names in label order: MNIST "0".."9"; CIFAR-10 from `batches.meta.txt`.
    pub classes: Vec<String>,
}

impl TensorDataset {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.size().first().copied().unwrap_or(0).max(0) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Float images in [0,1], (n,C,H,W), for the given row indices (an int64 tensor, on
    /// any device; each must be in `0..len()`), on `device`. Only the selected uint8 rows
    /// travel to the device.
    pub fn pixels(&self, idx: &Tensor, device: Device) -> Tensor {
        self.images
            .index_select(0, &cpu_index(idx))
            .to_device(device)
            .to_kind(Kind::Float)
            / 255.0
    }

    /// Normalized float images, `(pixels - mean) / std` per channel with
    /// [`DatasetName::mean`] and [`DatasetName::std`], on `device`.
    pub fn normalized(&self, idx: &Tensor, device: Device) -> Tensor {
        self.normalize(&self.pixels(idx, device))
    }

    /// `(pixels - mean) / std` per channel, for pixel images on any device.
    pub fn normalize(&self, pixels: &Tensor) -> Tensor {
        let c = self.name.channels();
        let device = pixels.device();
        let stat = |v: Vec<f64>| {
            let v: Vec<f32> = v.into_iter().map(|x| x as f32).collect();
            Tensor::from_slice(&v).view([1, c, 1, 1]).to_device(device)
        };
        (pixels - stat(self.name.mean())) / stat(self.name.std())
    }

    /// Labels (int64) of the given rows, on `device`.
    pub fn labels_at(&self, idx: &Tensor, device: Device) -> Tensor {
        self.labels
            .index_select(0, &cpu_index(idx))
            .to_device(device)
    }
}

/// Row indices as int64 on the CPU, where the images and labels live.
fn cpu_index(idx: &Tensor) -> Tensor {
    idx.to_device(Device::Cpu).to_kind(Kind::Int64)
}

/// Read one split of `name` from `dir`: MNIST's four IDX files (`.gz`, or already
/// decompressed), CIFAR-10's binary batches.
pub fn load(name: DatasetName, dir: &Path, split: Split) -> Result<TensorDataset> {
    let (images, labels, classes) = match name {
        DatasetName::Mnist => mnist::read(dir, split)?,
        DatasetName::Cifar10 => cifar10::read(dir, split)?,
    };
    Ok(TensorDataset {
        name,
        split,
        images,
        labels,
        classes,
    })
}

/// The error for a missing data directory or file: names what the data folder must hold.
pub(crate) fn missing(path: &Path, dir: &Path, name: DatasetName, expected: &str) -> Error {
    let what = if path == dir {
        "no such directory"
    } else {
        "missing"
    };
    Error::bad_file(
        path,
        format!(
            "{what}; the data folder must be a directory holding the {} files {expected} (here it is {}; scripts/setup/setup.sh puts them in {})",
            match name {
                DatasetName::Mnist => "MNIST",
                DatasetName::Cifar10 => "CIFAR-10",
            },
            dir.display(),
            name.default_dir().display()
        ),
    )
}

/// Read a whole regular file (a FIFO or device is refused, not read) of at most `max` bytes,
/// turning a missing file into [`missing`]'s message.
pub(crate) fn read_file(
    path: &Path,
    dir: &Path,
    name: DatasetName,
    expected: &str,
    max: u64,
) -> Result<Vec<u8>> {
    let not_found = |e: std::io::Error| {
        if e.kind() == std::io::ErrorKind::NotFound {
            missing(path, dir, name, expected)
        } else {
            Error::io(path, e)
        }
    };
    let meta = std::fs::metadata(path).map_err(not_found)?;
    crate::files::check_regular(path, "a data set file")?;
    if meta.len() > max {
        return Err(Error::bad_file(
            path,
            format!(
                "{} bytes, far more than a {name} file holds (at most {max} bytes read)",
                meta.len()
            ),
        ));
    }
    std::fs::read(path).map_err(not_found)
}

/// Check that `dir` is a directory (the first thing both readers do).
pub(crate) fn check_dir(dir: &Path, name: DatasetName, expected: &str) -> Result<()> {
    if dir.is_dir() {
        Ok(())
    } else {
        Err(missing(dir, dir, name, expected))
    }
}
