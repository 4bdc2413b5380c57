//! A data set given on the command line (PATE's public pool, Private Evolution's private data, a
//! synthetic training set): a slice of a data set's
//! split (`mnist:test[0:9000]`, Python slice syntax, both ends optional, negative ends
//! counted from the end; out-of-range ends are an error, not clamped) or a folder of images
//! (labelled by a `labels.csv` or not), converted to what the teachers take (grey 28×28 for
//! MNIST, RGB 32×32 for CIFAR-10; other sizes are refused).
use super::{self as datasets, DatasetName, Split, TensorDataset};
use crate::{Error, Result};
use std::ops::Range;
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

/// A pool as the user writes it.
#[derive(Debug, Clone, PartialEq)]
pub enum PoolSpec {
    /// `DATASET:SPLIT[a:b]`.
    Slice {
        dataset: DatasetName,
        split: Split,
        start: Option<i64>,
        end: Option<i64>,
    },
    /// A folder of images.
    Folder(PathBuf),
}

/// Which items a pool holds.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PoolItems {
    /// Rows `start..end` of a split.
    Rows {
        split: String,
        start: usize,
        end: usize,
    },
    /// Image files, relative to the folder, in order.
    Files(Vec<String>),
}

/// A pool in memory.
pub struct Pool {
    pub spec: String,
    /// Its images (as the data set stores them, uint8) and labels (0 when unlabelled).
    pub data: TensorDataset,
    pub items: PoolItems,
    /// The true labels, when the pool has them.
    pub labels: Option<Vec<usize>>,
}

impl Pool {
    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The rows of the test split this pool is, when it is a slice of it.
    pub fn test_rows(&self) -> Option<Range<usize>> {
        match &self.items {
            PoolItems::Rows { split, start, end } if split == "test" => Some(*start..*end),
            _ => None,
        }
    }
}

fn bad(spec: &str, msg: impl std::fmt::Display) -> Error {
    Error::field("pool", format!("'{spec}': {msg}"))
}

const EXPECTED: &str =
    "expected DATASET:SPLIT[a:b] (e.g. mnist:test[0:9000]) or a folder of images";

impl PoolSpec {
    /// Parse `DATASET:SPLIT[a:b]`, or a path to an existing folder.
    pub fn parse(s: &str) -> Result<PoolSpec> {
        let t = s.trim();
        if let Some((ds, rest)) = t.split_once(':') {
            if let Ok(dataset) = ds.parse::<DatasetName>() {
                let (split, slice) = match rest.split_once('[') {
                    Some((sp, sl)) => (
                        sp,
                        Some(sl.strip_suffix(']').ok_or_else(|| bad(s, EXPECTED))?),
                    ),
                    None => (rest, None),
                };
                let split = match split.trim() {
                    "train" => Split::Train,
                    "test" => Split::Test,
                    o => return Err(bad(s, format!("unknown split '{o}' (train or test)"))),
                };
                let (start, end) = match slice {
                    None => (None, None),
                    Some(sl) => {
                        let (a, b) = sl.split_once(':').ok_or_else(|| {
                            bad(s, "a slice is [a:b] (either end may be left out)")
                        })?;
                        let end = |x: &str| -> Result<Option<i64>> {
                            let x = x.trim();
                            if x.is_empty() {
                                return Ok(None);
                            }
                            x.parse::<i64>()
                                .map(Some)
                                .map_err(|_| bad(s, format!("'{x}' is not a whole number")))
                        };
                        (end(a)?, end(b)?)
                    }
                };
                return Ok(PoolSpec::Slice {
                    dataset,
                    split,
                    start,
                    end,
                });
            }
        }
        let p = PathBuf::from(t);
        if p.is_dir() {
            return Ok(PoolSpec::Folder(p));
        }
        Err(bad(s, format!("not a folder, and {EXPECTED}")))
    }

    /// The rows `a..b` of a split of `len` rows (Python's negative ends; out of range or
    /// empty is an error).
    pub fn rows(
        spec: &str,
        start: Option<i64>,
        end: Option<i64>,
        len: usize,
    ) -> Result<Range<usize>> {
        let n = len as i64;
        let at = |v: Option<i64>, default: i64| -> Result<usize> {
            let v = v.unwrap_or(default);
            let r = if v < 0 { n + v } else { v };
            if !(0..=n).contains(&r) {
                return Err(bad(spec, format!("{v} is outside the split's {len} rows")));
            }
            Ok(r as usize)
        };
        let (a, b) = (at(start, 0)?, at(end, n)?);
        if a >= b {
            return Err(bad(spec, format!("the slice [{a}:{b}] is empty")));
        }
        Ok(a..b)
    }
}

/// Load the pool `spec` for teachers trained on `dataset` (its files in `data_dir`). Errors in
/// the spec name the field `pool` (rename them for another flag).
pub fn load(spec: &str, dataset: DatasetName, data_dir: &Path) -> Result<Pool> {
    match PoolSpec::parse(spec)? {
        PoolSpec::Slice {
            dataset: d,
            split,
            start,
            end,
        } => {
            if d != dataset {
                return Err(bad(
                    spec,
                    format!("the teachers were trained on {dataset}, not {d}"),
                ));
            }
            let ds = datasets::load(dataset, data_dir, split)?;
            let rows = PoolSpec::rows(spec, start, end, ds.len())?;
            let (a, len) = (rows.start as i64, rows.len() as i64);
            let labels = Vec::<i64>::try_from(ds.labels.narrow(0, a, len))?;
            let data = TensorDataset {
                name: dataset,
                split,
                images: ds.images.narrow(0, a, len),
                labels: ds.labels.narrow(0, a, len),
                classes: ds.classes.clone(),
            };
            Ok(Pool {
                spec: spec.to_string(),
                data,
                items: PoolItems::Rows {
                    split: split.to_string(),
                    start: rows.start,
                    end: rows.end,
                },
                labels: Some(labels.into_iter().map(|l| l as usize).collect()),
            })
        }
        PoolSpec::Folder(dir) => load_folder(spec, &dir, dataset),
    }
}

/// A folder pool: labelled by `labels.csv` when it has one, else every image file, sorted.
fn load_folder(spec: &str, dir: &Path, dataset: DatasetName) -> Result<Pool> {
    let (files, labels): (Vec<(String, PathBuf)>, Option<Vec<usize>>) =
        if dir.join("labels.csv").exists() {
            let items = datasets::image_folder(dir, None)?;
            let classes = dataset.num_classes();
            if let Some(i) = items.iter().find(|i| i.label >= classes) {
                return Err(Error::bad_file(
                    &dir.join("labels.csv"),
                    format!(
                        "{}: label {} is not one of the {classes} {dataset} classes",
                        i.file, i.label
                    ),
                ));
            }
            (
                items
                    .iter()
                    .map(|i| (i.file.clone(), i.path.clone()))
                    .collect(),
                Some(items.iter().map(|i| i.label).collect()),
            )
        } else {
            let mut v = vec![];
            for e in std::fs::read_dir(dir)
                .map_err(|e| Error::io(dir, e))?
                .flatten()
            {
                let name = e.file_name().to_string_lossy().to_string();
                let ext = Path::new(&name)
                    .extension()
                    .map(|x| x.to_string_lossy().to_lowercase())
                    .unwrap_or_default();
                if [
                    "png", "jpg", "jpeg", "bmp", "gif", "tif", "tiff", "webp", "ppm",
                ]
                .contains(&ext.as_str())
                {
                    v.push((name, e.path()));
                }
            }
            v.sort();
            (v, None)
        };
    if files.is_empty() {
        return Err(Error::bad_file(dir, "no images in the pool folder"));
    }
    let side = dataset.side() as u32;
    let c = dataset.channels();
    let mut bytes = Vec::with_capacity(files.len() * (side * side) as usize * c as usize);
    for (_, path) in &files {
        let img = crate::imageio::load_rgb(path)?;
        if img.dimensions() != (side, side) {
            return Err(Error::bad_file(
                path,
                format!(
                    "the image is {}×{}, but the {dataset} teachers take {side}×{side} images (resize the pool first)",
                    img.width(),
                    img.height()
                ),
            ));
        }
        if c == 1 {
            // Grey, as the exported models see it: the mean of the three channels.
            bytes.extend(img.pixels().map(|p| {
                ((u16::from(p[0]) + u16::from(p[1]) + u16::from(p[2])) as f64 / 3.0).round() as u8
            }));
        } else {
            for ch in 0..3 {
                bytes.extend(img.pixels().map(|p| p[ch]));
            }
        }
    }
    let n = files.len() as i64;
    let images = Tensor::from_slice(&bytes).view([n, c, side as i64, side as i64]);
    let lab: Vec<i64> = match &labels {
        Some(l) => l.iter().map(|&x| x as i64).collect(),
        None => vec![0; files.len()],
    };
    let classes = (0..dataset.num_classes()).map(|d| d.to_string()).collect();
    Ok(Pool {
        spec: spec.to_string(),
        data: TensorDataset {
            name: dataset,
            split: Split::Test,
            images: images.to_kind(Kind::Uint8),
            labels: Tensor::from_slice(&lab),
            classes,
        },
        items: PoolItems::Files(files.into_iter().map(|(f, _)| f).collect()),
        labels,
    })
}

/// The data set an image folder says it holds: `dataset.json` beside its `labels.csv`
/// (`{"dataset": "mnist", ...}`, as `fool synth` writes it); None without that file.
pub fn folder_dataset(dir: &Path) -> Result<Option<DatasetName>> {
    let p = dir.join("dataset.json");
    if !p.exists() {
        return Ok(None);
    }
    let text = crate::files::read_regular_to_string(&p, "a dataset.json file")?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| Error::bad_file(&p, format!("not JSON: {e}")))?;
    let name = v
        .get("dataset")
        .and_then(|d| d.as_str())
        .ok_or_else(|| Error::bad_file(&p, "no \"dataset\" field (mnist or cifar10)"))?;
    name.parse::<DatasetName>()
        .map(Some)
        .map_err(|e| Error::bad_file(&p, e.to_string()))
}
