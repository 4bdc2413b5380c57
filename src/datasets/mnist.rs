//! MNIST from the four canonical IDX files (`train-images-idx3-ubyte.gz`,
//! `train-labels-idx1-ubyte.gz`, `t10k-images-idx3-ubyte.gz`, `t10k-labels-idx1-ubyte.gz`),
//! gzip-compressed or already decompressed (the same names without `.gz`).
//!
//! IDX: a big-endian header (magic 2051 = 0x803 for images, then count, rows, columns;
//! magic 2049 = 0x801 for labels, then count) followed by the uint8 data. Every field and
//! the exact file length are checked; the data goes into the tensor with one copy.
use super::{check_dir, missing, read_file, DatasetName, Split};
use crate::{Error, Result};
use std::io::Read;
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

/// IDX magic number of an image file (unsigned bytes, 3 dimensions).
pub const IMAGES_MAGIC: u32 = 2051;
/// IDX magic number of a label file (unsigned bytes, 1 dimension).
pub const LABELS_MAGIC: u32 = 2049;
/// Image side in pixels.
pub const SIDE: usize = 28;

const EXPECTED: &str = "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, \
t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz (or the same without .gz)";

/// The (images, labels) file stems of a split.
fn stems(split: Split) -> (&'static str, &'static str) {
    match split {
        Split::Train => ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
        Split::Test => ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
    }
}

/// `DIR/STEM.gz`, or `DIR/STEM` when only the decompressed file is there.
fn locate(dir: &Path, stem: &str) -> PathBuf {
    let gz = dir.join(format!("{stem}.gz"));
    let raw = dir.join(stem);
    if !gz.exists() && raw.exists() {
        raw
    } else {
        gz
    }
}

/// The most bytes an IDX file (compressed or not) may hold: MNIST's training images are
/// 47 MB; anything far larger is not an MNIST file (or a decompression bomb).
pub const MAX_IDX_BYTES: u64 = 1 << 30;

/// The bytes of an IDX file, decompressed when its name ends in `.gz`.
pub fn read_idx_bytes(path: &Path, dir: &Path) -> Result<Vec<u8>> {
    let data = read_file(path, dir, DatasetName::Mnist, EXPECTED, MAX_IDX_BYTES)?;
    if path.extension().is_some_and(|e| e == "gz") {
        gunzip(path, &data)
    } else {
        Ok(data)
    }
}

/// Decompress a whole gzip file held in memory.
pub fn gunzip(path: &Path, data: &[u8]) -> Result<Vec<u8>> {
    if !data.starts_with(&[0x1f, 0x8b]) {
        return Err(Error::bad_file(
            path,
            "corrupt gzip: not a gzip file (no 1f 8b signature)",
        ));
    }
    // The trailer's ISIZE (size mod 2^32) sizes the buffer; capped in case it is garbage.
    let hint = data
        .get(data.len().saturating_sub(4)..)
        .and_then(|t| <[u8; 4]>::try_from(t).ok())
        .map_or(0, |t| u32::from_le_bytes(t) as usize)
        .min(1 << 28);
    let mut out = Vec::with_capacity(hint);
    flate2::read::GzDecoder::new(data)
        .take(MAX_IDX_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|e| {
            Error::bad_file(
                path,
                format!(
                    "corrupt gzip: {}",
                    crate::error::message_line(&e.to_string())
                ),
            )
        })?;
    if out.len() as u64 > MAX_IDX_BYTES {
        return Err(Error::bad_file(
            path,
            format!("decompresses to more than {MAX_IDX_BYTES} bytes: not an MNIST file"),
        ));
    }
    Ok(out)
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Check an IDX header (magic and the length of the rest); return the dimensions.
fn idx_header(
    path: &Path,
    bytes: &[u8],
    magic: u32,
    what: &str,
    ndim: usize,
) -> Result<Vec<usize>> {
    let header = 4 + 4 * ndim;
    // A short file with a wrong magic is reported as the wrong file, not as truncated.
    let magic_ok = bytes.len() < 4 || be_u32(bytes, 0) == magic;
    if bytes.len() < header && magic_ok {
        return Err(Error::bad_file(
            path,
            format!(
                "truncated: {} bytes, expected at least {header} (the IDX {what} header)",
                bytes.len()
            ),
        ));
    }
    let found = be_u32(bytes, 0);
    if found != magic {
        let hint = match found {
            IMAGES_MAGIC => "; this looks like an image file",
            LABELS_MAGIC => "; this looks like a label file",
            _ => "",
        };
        return Err(Error::bad_file(
            path,
            format!("wrong IDX magic 0x{found:08x}, expected {magic} ({what}){hint}"),
        ));
    }
    let dims: Vec<usize> = (0..ndim)
        .map(|i| be_u32(bytes, 4 + 4 * i) as usize)
        .collect();
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .and_then(|n| n.checked_add(header));
    let shape = dims
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("×");
    match expected {
        Some(m) if m == bytes.len() => Ok(dims),
        Some(m) if bytes.len() < m => Err(Error::bad_file(
            path,
            format!(
                "truncated: {} bytes, expected {m} ({header}-byte header + {shape} {what})",
                bytes.len()
            ),
        )),
        Some(m) => Err(Error::bad_file(
            path,
            format!(
                "{} bytes, expected {m} ({header}-byte header + {shape} {what}): trailing data",
                bytes.len()
            ),
        )),
        None => Err(Error::bad_file(
            path,
            format!("IDX dimensions {shape} are impossibly large"),
        )),
    }
}

/// Parse an IDX image file: (count, the pixel bytes). Images must be 28×28.
pub fn parse_images<'a>(path: &Path, bytes: &'a [u8]) -> Result<(usize, &'a [u8])> {
    let dims = idx_header(path, bytes, IMAGES_MAGIC, "images", 3)?;
    if dims[1] != SIDE || dims[2] != SIDE {
        return Err(Error::bad_file(
            path,
            format!("images are {}×{}, expected {SIDE}×{SIDE}", dims[1], dims[2]),
        ));
    }
    Ok((dims[0], &bytes[16..]))
}

/// Parse an IDX label file: the labels, each checked to be in 0..10.
pub fn parse_labels<'a>(path: &Path, bytes: &'a [u8]) -> Result<&'a [u8]> {
    idx_header(path, bytes, LABELS_MAGIC, "labels", 1)?;
    let labels = &bytes[8..];
    if let Some(i) = labels.iter().position(|&l| l >= 10) {
        return Err(Error::bad_file(
            path,
            format!(
                "label {} of item {i} is out of range, expected 0..=9",
                labels[i]
            ),
        ));
    }
    Ok(labels)
}

/// Read one split: images (N,1,28,28) uint8, labels (N,) int64, class names "0".."9".
pub fn read(dir: &Path, split: Split) -> Result<(Tensor, Tensor, Vec<String>)> {
    check_dir(dir, DatasetName::Mnist, EXPECTED)?;
    let (img_stem, lab_stem) = stems(split);
    let (img_path, lab_path) = (locate(dir, img_stem), locate(dir, lab_stem));
    // Check that both files are there before spending time on decompression.
    for p in [&img_path, &lab_path] {
        if !p.exists() {
            return Err(missing(p, dir, DatasetName::Mnist, EXPECTED));
        }
    }
    let lab_bytes = read_idx_bytes(&lab_path, dir)?;
    let labels = parse_labels(&lab_path, &lab_bytes)?;
    let img_bytes = read_idx_bytes(&img_path, dir)?;
    let (n, pixels) = parse_images(&img_path, &img_bytes)?;
    if n == 0 {
        return Err(Error::bad_file(
            &img_path,
            "holds no images (its count is 0)",
        ));
    }
    if n != labels.len() {
        return Err(Error::bad_file(
            &img_path,
            format!(
                "{n} images but {} has {} labels; expected the same count",
                lab_path.display(),
                labels.len()
            ),
        ));
    }
    let side = SIDE as i64;
    let images = Tensor::from_slice(pixels).view([n as i64, 1, side, side]);
    let labels = Tensor::from_slice(labels).to_kind(Kind::Int64);
    let classes = (0..10).map(|d| d.to_string()).collect();
    Ok((images, labels, classes))
}
