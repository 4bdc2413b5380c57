//! Perturbations as `.npy` files: float32, shape (1,3,H,W), in the model's *normalized*
//! input space — the convention of the tutorial's `adversarial_r.npy`.
use crate::files::write_atomic;
use crate::{Error, Result};
use ndarray::Array4;
use ndarray_npy::{ReadNpyExt, WriteNpyExt};
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// Save `r` (1,3,H,W) as float32 `.npy`, atomically.
pub fn save(r: &Tensor, path: &Path) -> Result<()> {
    write_atomic(path, |f| write(r, path, f))
}

/// Write `r` (1,3,H,W) as float32 `.npy` into `f` (the file that will become `path`).
pub fn write(r: &Tensor, path: &Path, f: &mut std::fs::File) -> Result<()> {
    let shape: Vec<usize> = r.size().iter().map(|&d| d as usize).collect();
    let data = Vec::<f32>::try_from(
        r.to_kind(Kind::Float)
            .to_device(Device::Cpu)
            .contiguous()
            .view([-1]),
    )
    .map_err(|e| Error::internal("perturbation tensor", e))?;
    let arr = Array4::from_shape_vec((shape[0], shape[1], shape[2], shape[3]), data)
        .map_err(|e| Error::internal("perturbation shape", e))?;
    arr.write_npy(std::io::BufWriter::new(f))
        .map_err(|e| Error::bad_file(path, format!("cannot write .npy: {e}")))
}

/// Load a perturbation and check it is float32 with shape (1,3,size,size).
pub fn load(path: &Path, size: u32) -> Result<Tensor> {
    use std::io::Read;
    let mut f = crate::files::open_regular(path, "a .npy perturbation")?;
    let expected = format!("a float32 array of shape (1, 3, {size}, {size})");
    let file_len = f.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut head = Vec::new();
    (&mut f)
        .take(NPY_HEAD_MAX)
        .read_to_end(&mut head)
        .map_err(|e| Error::io(path, e))?;
    check_npy_header(path, &head, file_len)?;
    let arr = Array4::<f32>::read_npy(std::io::BufReader::new(head.as_slice().chain(f))).map_err(
        |e| {
            // The header parser's errors span lines and quote the file's bytes.
            let e = crate::error::message_line(&e.to_string());
            Error::bad_file(path, format!("expected {expected} in .npy format: {e}"))
        },
    )?;
    let shape = arr.shape().to_vec();
    if shape != [1, 3, size as usize, size as usize] {
        return Err(Error::bad_file(
            path,
            format!("expected {expected}, got shape {shape:?}"),
        ));
    }
    if arr.iter().any(|v| !v.is_finite()) {
        return Err(Error::bad_file(
            path,
            "perturbation contains NaN or infinite values",
        ));
    }
    let data: Vec<f32> = arr.iter().copied().collect();
    Ok(Tensor::from_slice(&data).view([1, 3, size as i64, size as i64]))
}

/// The most of a `.npy` file [`check_npy_header`] reads: numpy's headers are far shorter.
pub const NPY_HEAD_MAX: u64 = 1 << 20;

/// Refuse a `.npy` file whose header the reader would trust with memory: `ndarray-npy`
/// allocates the header length a version 2/3 file declares (up to 4 GiB) and then the array its
/// shape declares, before reading either, so a 50-byte file could make the process abort on a
/// failed allocation (found by the fuzzer, `tests/fuzz/corpus/npy/crash-*`). `head` is the
/// start of the file (at least [`NPY_HEAD_MAX`] bytes of it, or all), `file_len` its length.
/// The header must fit in the file, and the shape (`'shape': (d, ...)`, decimal sizes) must not
/// declare more elements than there are bytes of data. A file that is not `.npy` at all passes:
/// the reader says what is wrong with it.
pub fn check_npy_header(path: &Path, head: &[u8], file_len: u64) -> Result<()> {
    if !head.starts_with(b"\x93NUMPY") || head.len() < 12 {
        return Ok(());
    }
    let (start, len) = match head[6] {
        1 => (10, u64::from(u16::from_le_bytes([head[8], head[9]]))),
        2 | 3 => (
            12,
            u64::from(u32::from_le_bytes([head[8], head[9], head[10], head[11]])),
        ),
        _ => return Ok(()),
    };
    let end = start + len;
    if end > file_len {
        return Err(Error::bad_file(
            path,
            format!(
                "truncated: its .npy header is {len} bytes long but the file has {file_len} bytes"
            ),
        ));
    }
    let Some(header) = head.get(start as usize..end as usize) else {
        return Err(Error::bad_file(
            path,
            format!("unsupported .npy header: {len} bytes long"),
        ));
    };
    let data = file_len - end;
    let header = String::from_utf8_lossy(header);
    let mut shapes = 0;
    for key in ["'shape'", "\"shape\""] {
        for (at, _) in header.match_indices(key) {
            let Some(rest) = header[at + key.len()..].trim_start().strip_prefix(':') else {
                continue;
            };
            shapes += 1;
            let dims = rest
                .trim_start()
                .strip_prefix('(')
                .and_then(|r| r.split_once(')'))
                .map(|(dims, _)| dims)
                .unwrap_or("?");
            let mut elements = Some(1u64);
            for d in dims.split(',').map(str::trim).filter(|d| !d.is_empty()) {
                elements = d.parse::<u64>().ok().and_then(|d| elements?.checked_mul(d));
            }
            let dims = crate::error::message_line(dims.trim());
            match elements {
                Some(n) if n <= data => {}
                Some(_) => {
                    return Err(Error::bad_file(
                        path,
                        format!("truncated: its .npy header declares shape ({dims}) but only {data} bytes of data follow"),
                    ))
                }
                None => {
                    return Err(Error::bad_file(
                        path,
                        format!("unsupported .npy header: shape ({dims}) is not a tuple of sizes that fits the file"),
                    ))
                }
            }
        }
    }
    if shapes == 0 {
        return Err(Error::bad_file(
            path,
            "unsupported .npy header: no 'shape' entry",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A version 1.0 `.npy` file with header `dict` and `data` bytes.
    fn npy(dict: &str, data: &[u8]) -> Vec<u8> {
        let mut h = dict.as_bytes().to_vec();
        while !(10 + h.len() + 1).is_multiple_of(64) {
            h.push(b' ');
        }
        h.push(b'\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(h.len() as u16).to_le_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(data);
        out
    }

    fn check(bytes: &[u8]) -> std::result::Result<(), String> {
        check_npy_header(Path::new("r.npy"), bytes, bytes.len() as u64).map_err(|e| e.to_string())
    }

    #[test]
    fn npy_headers_that_would_allocate_more_than_the_file_are_refused() {
        let ok = npy(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2), }",
            &[0; 8],
        );
        assert_eq!(check(&ok), Ok(()));
        assert_eq!(check(b"not npy at all"), Ok(()), "left to the reader");
        let huge = npy(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967295,), }",
            &[0; 8],
        );
        assert!(check(&huge)
            .unwrap_err()
            .contains("declares shape (4294967295,)"));
        let quoted = npy(
            "{'descr': '<f4', 'fortran_order': False, \"shape\": (10000000000,), }",
            &[],
        );
        assert!(check(&quoted).unwrap_err().contains("declares shape"));
        let odd = npy(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (0x10,), }",
            &[],
        );
        assert!(check(&odd).unwrap_err().contains("not a tuple of sizes"));
        let none = npy("{'descr': '<f4', 'fortran_order': False, }", &[]);
        assert!(check(&none).unwrap_err().contains("no 'shape'"));
        // A version 2.0 header length of almost 4 GiB in a 49-byte file.
        let mut long = ok.clone();
        long[6] = 2;
        long.splice(8..10, 0xfe00_0049u32.to_le_bytes());
        long.truncate(49);
        assert!(check(&long)
            .unwrap_err()
            .contains("header is 4261412937 bytes long"));
    }
}
