//! Data sets as benchmark inputs: `mnist:test[0:1000]`, `cifar10:train[500:600]`, `mnist:test`
//! (the whole split). The images are read from the local data set files (see [`super::load`])
//! and handed to the model as pixels in [0,1] — grey MNIST images as three equal channels, the
//! input of `fool train`'s exported models — so robust models are evaluated on their own test
//! sets without exporting images.
use super::pool::PoolSpec;
use super::{load, DatasetName, Item, LoadedBatch, Split, TensorDataset};
use crate::model::Classifier;
use crate::{Error, Result};
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

/// A split of a data set and a slice of its rows (Python's slice ends, as [`PoolSpec`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetSpec {
    pub text: String,
    pub name: DatasetName,
    pub split: Split,
    pub start: Option<i64>,
    pub end: Option<i64>,
}

/// An error of the pool parser, renamed to the benchmark's `dataset` setting.
fn renamed(e: Error) -> Error {
    match e {
        Error::Invalid { msg, .. } => Error::field("dataset", msg),
        other => other,
    }
}

impl DatasetSpec {
    /// `NAME:SPLIT[A:B]` (the slice optional, either end may be left out, negative ends count
    /// from the end), parsed by [`PoolSpec::parse`]. `None` when `s` does not start with a known
    /// data set name and a colon (it is then a folder).
    pub fn parse(s: &str) -> Option<Result<DatasetSpec>> {
        let (name, _) = s.trim().split_once(':')?;
        name.parse::<DatasetName>().ok()?;
        Some(match PoolSpec::parse(s).map_err(renamed) {
            Ok(PoolSpec::Slice {
                dataset,
                split,
                start,
                end,
            }) => Ok(DatasetSpec {
                text: s.to_string(),
                name: dataset,
                split,
                start,
                end,
            }),
            Ok(PoolSpec::Folder(_)) => Err(Error::field(
                "dataset",
                format!("'{s}' is not a data set slice"),
            )),
            Err(e) => Err(e),
        })
    }

    /// Load the split from `dir` (default `assets/NAME`) and list the slice's images, named
    /// `SPLIT/ROW` (e.g. `test/00042`), labelled from the data set.
    pub fn load(&self, dir: Option<&Path>) -> Result<(TensorDataset, Vec<Item>)> {
        let dir = dir
            .map(Path::to_path_buf)
            .unwrap_or_else(|| self.name.default_dir());
        let ds = load(self.name, &dir, self.split)?;
        let rows = PoolSpec::rows(&self.text, self.start, self.end, ds.len()).map_err(renamed)?;
        let labels = Vec::<i64>::try_from(&ds.labels).unwrap_or_default();
        let items = rows
            .map(|i| Item {
                file: format!("{}/{i:05}", self.split),
                path: PathBuf::new(),
                label: labels[i] as usize,
                row: Some(i),
            })
            .collect();
        Ok((ds, items))
    }
}

/// Check that `model` can classify `ds`'s images: as many classes, and an input size (its card's)
/// equal to the images' side.
pub fn check_model(ds: &TensorDataset, model: &Classifier, model_path: &Path) -> Result<()> {
    let side = ds.name.side() as u32;
    if model.num_classes != ds.name.num_classes() {
        return Err(Error::bad_file(
            model_path,
            format!(
                "the model has {} classes, {} has {}",
                model.num_classes,
                ds.name,
                ds.name.num_classes()
            ),
        ));
    }
    if model.pre.size != side {
        return Err(Error::bad_file(
            model_path,
            format!(
                "the model takes {0}×{0} images (its card or --size), {1} images are {side}×{side}",
                model.pre.size, ds.name
            ),
        ));
    }
    Ok(())
}

/// The images `items` (rows of `ds`, from [`DatasetSpec::load`]) as a batch for `model`:
/// pixels in [0,1], three channels, on the model's device.
pub fn load_rows(ds: &TensorDataset, model: &Classifier, items: &[Item]) -> LoadedBatch {
    let rows: Vec<i64> = items
        .iter()
        .filter_map(|i| i.row)
        .map(|r| r as i64)
        .collect();
    let x = if rows.is_empty() {
        Tensor::zeros([0], (Kind::Float, model.device))
    } else {
        let px = ds.pixels(&Tensor::from_slice(&rows), model.device);
        if px.size()[1] == 1 {
            px.repeat([1, 3, 1, 1])
        } else {
            px
        }
    };
    let ok: Vec<Item> = items.iter().filter(|i| i.row.is_some()).cloned().collect();
    LoadedBatch {
        labels: ok.iter().map(|i| i.label).collect(),
        items: ok,
        x,
        failed: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_or_say_what_is_wrong() {
        let s = DatasetSpec::parse("mnist:test[10:20]").unwrap().unwrap();
        assert_eq!(
            (s.name, s.split, s.start, s.end),
            (DatasetName::Mnist, Split::Test, Some(10), Some(20))
        );
        let s = DatasetSpec::parse("cifar10:train").unwrap().unwrap();
        assert_eq!((s.split, s.start, s.end), (Split::Train, None, None));
        assert!(DatasetSpec::parse("assets/samples").is_none());
        assert!(DatasetSpec::parse("C:stuff").is_none());
        for (bad, says) in [
            ("mnist:valid[0:10]", "unknown split 'valid'"),
            ("mnist:test[a:5]", "'a' is not a whole number"),
            ("mnist:test[0:5", "expected DATASET:SPLIT[a:b]"),
            ("mnist:test[5]", "a slice is [a:b]"),
        ] {
            let e = DatasetSpec::parse(bad).unwrap().unwrap_err().to_string();
            assert!(e.starts_with("dataset: "), "{bad}: {e}");
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
