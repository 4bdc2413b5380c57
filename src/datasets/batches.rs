//! The one batched loop over rows of a [`TensorDataset`]: evaluation of a training network,
//! audits and LiRA all run a model on chosen rows of a split, a batch at a time, with the
//! images prepared the way that model takes them ([`Feed`]).
use super::TensorDataset;
use tch::{Device, Tensor};

/// How a batch's images are prepared for a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed {
    /// Normalized per channel with the data set's mean and std, in its own channels (the
    /// networks `nets` builds and `train` trains).
    Normalized,
    /// Pixels in [0,1] with three channels, a grey image repeated to RGB (what an exported
    /// TorchScript model takes).
    Rgb,
}

/// One batch of rows.
pub struct Batch {
    /// Position of its first row in the rows iterated over.
    pub start: usize,
    /// Its rows of the data set: int64 on the CPU.
    pub index: Tensor,
    /// Their images, prepared as asked, on the device.
    pub images: Tensor,
}

impl Batch {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.index.size()[0] as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The batches of [`TensorDataset::batches`].
pub struct Batches<'a> {
    ds: &'a TensorDataset,
    rows: &'a [usize],
    size: usize,
    device: Device,
    feed: Feed,
    at: usize,
}

impl Iterator for Batches<'_> {
    type Item = Batch;
    fn next(&mut self) -> Option<Batch> {
        if self.at >= self.rows.len() {
            return None;
        }
        let start = self.at;
        let end = (start + self.size).min(self.rows.len());
        self.at = end;
        let ids: Vec<i64> = self.rows[start..end].iter().map(|&i| i as i64).collect();
        let index = Tensor::from_slice(&ids);
        let images = match self.feed {
            Feed::Normalized => self.ds.normalized(&index, self.device),
            Feed::Rgb => {
                let x = self.ds.pixels(&index, self.device);
                if x.size()[1] == 1 {
                    x.expand([-1, 3, -1, -1], false)
                } else {
                    x
                }
            }
        };
        Some(Batch {
            start,
            index,
            images,
        })
    }
}

impl TensorDataset {
    /// The rows `rows` (each in `0..len()`) in batches of `size` (at least 1), in order, with
    /// their images prepared as `feed` says on `device`.
    pub fn batches<'a>(
        &'a self,
        rows: &'a [usize],
        size: usize,
        device: Device,
        feed: Feed,
    ) -> Batches<'a> {
        Batches {
            ds: self,
            rows,
            size: size.max(1),
            device,
            feed,
            at: 0,
        }
    }

    /// The same data set sharing its tensors, limited to its first `rows` rows when given.
    pub fn head(&self, rows: Option<usize>) -> TensorDataset {
        let (images, labels) = match rows {
            Some(k) if k < self.len() => (
                self.images.narrow(0, 0, k as i64),
                self.labels.narrow(0, 0, k as i64),
            ),
            _ => (self.images.shallow_clone(), self.labels.shallow_clone()),
        };
        TensorDataset {
            name: self.name,
            split: self.split,
            images,
            labels,
            classes: self.classes.clone(),
        }
    }

    /// Labels of rows `rows` (each in `0..len()`).
    pub fn labels_of(&self, rows: &[usize]) -> crate::Result<Vec<i64>> {
        let ids: Vec<i64> = rows.iter().map(|&i| i as i64).collect();
        Ok(Vec::<i64>::try_from(
            self.labels_at(&Tensor::from_slice(&ids), Device::Cpu),
        )?)
    }
}
