//! `.npy` arrays read safely: the header is checked against the file before the reader
//! trusts it with memory ([`check_npy_header`]), float and integer arrays of any dtype numpy
//! writes are read as f64 / i64 with their shape, and errors name the file and what it held.
use crate::{Error, Result};
use ndarray::ArrayD;
use ndarray_npy::{ReadNpyError, ReadNpyExt};
use std::path::Path;

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

/// Describe why a `.npy` file could not be read as the element type tried last, on one line
/// without control characters (a malformed header's parse error spans lines and quotes the
/// file's bytes).
fn problem(e: &ReadNpyError) -> String {
    let text = match e {
        ReadNpyError::WrongDescriptor(d) => format!("its dtype is {d}"),
        other => other.to_string(),
    };
    crate::error::message_line(&text)
}

/// The bytes of the `.npy` file `path` (a regular file: a FIFO or device is refused), whose
/// header must not declare more elements than its data holds: the reader allocates what the
/// header declares before reading, and a 100-byte file can declare 10¹² elements.
fn read_bytes(path: &Path, what: &str) -> Result<Vec<u8>> {
    let bytes = crate::files::open_regular(path, what).and_then(|mut f| {
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut f, &mut b).map_err(|e| Error::io(path, e))?;
        Ok(b)
    })?;
    check_npy_header(path, &bytes, bytes.len() as u64)?;
    Ok(bytes)
}

/// Read a float32 or float64 `.npy` array (any shape) as f64, with its shape.
pub fn read_float(path: &Path) -> Result<(Vec<f64>, Vec<usize>)> {
    let bytes = read_bytes(path, "a .npy array")?;
    let fail = |e: &ReadNpyError| {
        Error::bad_file(
            path,
            format!(
                "expected a float32 or float64 array in .npy format ({})",
                problem(e)
            ),
        )
    };
    match ArrayD::<f32>::read_npy(&bytes[..]) {
        Ok(a) => Ok((a.iter().map(|&v| v as f64).collect(), a.shape().to_vec())),
        Err(ReadNpyError::WrongDescriptor(_)) => match ArrayD::<f64>::read_npy(&bytes[..]) {
            Ok(a) => Ok((a.iter().copied().collect(), a.shape().to_vec())),
            Err(e) => Err(fail(&e)),
        },
        Err(e) => Err(fail(&e)),
    }
}

/// Read an integer `.npy` array (int8/16/32/64, uint8/16/32/64; any shape) as i64, with its
/// shape; `what` says what the integers are ("of integer labels", "of vote counts").
pub fn read_int(path: &Path, what: &str) -> Result<(Vec<i64>, Vec<usize>)> {
    let bytes = read_bytes(path, "a .npy array of integers")?;
    /// Values (None: does not fit in i64) and shape, or why not.
    type Attempt = std::result::Result<(Vec<Option<i64>>, Vec<usize>), ReadNpyError>;
    fn try_read<T: ndarray_npy::ReadableElement + Copy>(
        bytes: &[u8],
        conv: fn(T) -> Option<i64>,
    ) -> Attempt {
        let a = ArrayD::<T>::read_npy(bytes)?;
        Ok((a.iter().map(|&v| conv(v)).collect(), a.shape().to_vec()))
    }
    let attempts: [fn(&[u8]) -> Attempt; 8] = [
        |b| try_read::<i64>(b, Some),
        |b| try_read::<i32>(b, |v| Some(v as i64)),
        |b| try_read::<u8>(b, |v| Some(v as i64)),
        |b| try_read::<i16>(b, |v| Some(v as i64)),
        |b| try_read::<i8>(b, |v| Some(v as i64)),
        |b| try_read::<u16>(b, |v| Some(v as i64)),
        |b| try_read::<u32>(b, |v| Some(v as i64)),
        |b| try_read::<u64>(b, |v| i64::try_from(v).ok()),
    ];
    let mut last = None;
    for attempt in attempts {
        match attempt(&bytes) {
            Ok((values, shape)) => {
                let values = values
                    .into_iter()
                    .map(|v| v.ok_or_else(|| Error::bad_file(path, "a value too large for int64")))
                    .collect::<Result<_>>()?;
                return Ok((values, shape));
            }
            Err(ReadNpyError::WrongDescriptor(d)) => last = Some(ReadNpyError::WrongDescriptor(d)),
            Err(e) => {
                last = Some(e);
                break;
            }
        }
    }
    Err(Error::bad_file(
        path,
        format!(
            "expected an integer array (int64, int32, uint8, …) {what} in .npy format ({})",
            last.as_ref().map(problem).unwrap_or_default()
        ),
    ))
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
