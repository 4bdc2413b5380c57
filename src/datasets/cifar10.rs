//! CIFAR-10, binary version (the extracted `cifar-10-binary.tar.gz`): `data_batch_1.bin` …
//! `data_batch_5.bin` (train) and `test_batch.bin` (test), each 10,000 records of one label
//! byte and 3072 pixel bytes (1024 R, 1024 G, 1024 B, each plane row-major 32×32, which is
//! already the (C,H,W) layout); `batches.meta.txt` names the classes, one a line.
use super::{check_dir, read_file, DatasetName, Split};
use crate::{Error, Result};
use std::path::Path;
use tch::Tensor;

/// Image side in pixels.
pub const SIDE: usize = 32;
/// Pixel bytes of one image.
pub const PIXELS: usize = 3 * SIDE * SIDE;
/// Bytes of one record: the label, then the pixels.
pub const RECORD: usize = 1 + PIXELS;
/// Records in each batch file of the official distribution.
pub const PER_BATCH: usize = 10_000;

/// The class names, used when `batches.meta.txt` is absent.
pub const CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

const EXPECTED: &str = "data_batch_1.bin … data_batch_5.bin and test_batch.bin \
(the extracted cifar-10-binary.tar.gz, flat), with batches.meta.txt";

/// The batch files of a split.
pub fn batch_files(split: Split) -> Vec<String> {
    match split {
        Split::Train => (1..=5).map(|i| format!("data_batch_{i}.bin")).collect(),
        Split::Test => vec!["test_batch.bin".to_string()],
    }
}

/// Check one batch file's bytes: a whole number of records, labels in 0..10. Returns the
/// number of records.
pub fn check_batch(path: &Path, bytes: &[u8]) -> Result<usize> {
    if bytes.is_empty() || !bytes.len().is_multiple_of(RECORD) {
        let whole = bytes.len() / RECORD;
        let expected = if bytes.len() < PER_BATCH * RECORD {
            PER_BATCH * RECORD
        } else {
            whole * RECORD
        };
        let what = if bytes.len() < expected {
            "truncated"
        } else {
            "wrong length"
        };
        return Err(Error::bad_file(
            path,
            format!(
                "{what}: {} bytes, expected {expected} (a whole number of {RECORD}-byte records: \
                 1 label + {PIXELS} pixels; {PER_BATCH} records per batch)",
                bytes.len()
            ),
        ));
    }
    if bytes.len() / RECORD > PER_BATCH {
        return Err(Error::bad_file(
            path,
            format!(
                "{} records, expected at most {PER_BATCH} ({} bytes): a batch file holds {PER_BATCH} records",
                bytes.len() / RECORD,
                PER_BATCH * RECORD
            ),
        ));
    }
    if let Some(i) = bytes.iter().step_by(RECORD).position(|&l| l >= 10) {
        return Err(Error::bad_file(
            path,
            format!(
                "label {} of record {i} is out of range, expected 0..=9",
                bytes[i * RECORD]
            ),
        ));
    }
    Ok(bytes.len() / RECORD)
}

/// The class names of `batches.meta.txt` (non-empty lines), or [`CLASSES`] when the file
/// is absent.
pub fn class_names(dir: &Path) -> Result<Vec<String>> {
    let path = dir.join("batches.meta.txt");
    if !path.exists() {
        return Ok(CLASSES.iter().map(|c| c.to_string()).collect());
    }
    let text = crate::files::read_regular_to_string(&path, "a text file of class names")?;
    let names: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    if names.len() != CLASSES.len() {
        return Err(Error::bad_file(
            &path,
            format!(
                "{} class names, expected {} (one a line)",
                names.len(),
                CLASSES.len()
            ),
        ));
    }
    Ok(names)
}

/// Read one split: images (N,3,32,32) uint8, labels (N,) int64, the class names.
pub fn read(dir: &Path, split: Split) -> Result<(Tensor, Tensor, Vec<String>)> {
    check_dir(dir, DatasetName::Cifar10, EXPECTED)?;
    let files = batch_files(split);
    let paths: Vec<_> = files.iter().map(|f| dir.join(f)).collect();
    // All files must be there before the first is read.
    if let Some(p) = paths.iter().find(|p| !p.exists()) {
        return Err(super::missing(p, dir, DatasetName::Cifar10, EXPECTED));
    }
    let classes = class_names(dir)?;
    let mut pixels: Vec<u8> = Vec::with_capacity(paths.len() * PER_BATCH * PIXELS);
    let mut labels: Vec<i64> = Vec::with_capacity(paths.len() * PER_BATCH);
    for path in &paths {
        let bytes = read_file(
            path,
            dir,
            DatasetName::Cifar10,
            EXPECTED,
            2 * (PER_BATCH * RECORD) as u64,
        )?;
        check_batch(path, &bytes)?;
        for rec in bytes.chunks_exact(RECORD) {
            labels.push(i64::from(rec[0]));
            pixels.extend_from_slice(&rec[1..]);
        }
    }
    let n = labels.len() as i64;
    let side = SIDE as i64;
    let images = Tensor::from_slice(&pixels).view([n, 3, side, side]);
    drop(pixels);
    let labels = Tensor::from_slice(&labels);
    Ok((images, labels, classes))
}
