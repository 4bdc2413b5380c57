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
        .take(crate::npy::NPY_HEAD_MAX)
        .read_to_end(&mut head)
        .map_err(|e| Error::io(path, e))?;
    crate::npy::check_npy_header(path, &head, file_len)?;
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
