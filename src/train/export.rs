//! A trained model as the rest of fool loads it: `model.pt` (TorchScript), `model.json` (how
//! to feed it: size and normalization, read by `fool --model`), `labels.json` and
//! `metadata.json`, plus a few test images as PNG to attack.
//!
//! The exported module takes (N,3,H,W) *pixels* in [0,1] (so its `model.json` says mean 0,
//! std 1) and does the dataset normalization itself; a single-channel network averages the
//! three channels first, so a grey PNG (R = G = B) gives exactly the training input.
use super::Metadata;
use crate::datasets::{Feed, TensorDataset};
use crate::files::{write_atomic, write_json};
use crate::imageio::{save_png, tensor_to_rgb};
use crate::model::ModelCard;
use crate::nets::{Net, Pass};
use crate::{Error, Result};
use std::io::Write;
use std::path::Path;
use tch::{CModule, Kind, Tensor};

/// Trace `net` (with the normalization in front) into a TorchScript module saved at `path`
/// (atomically: on failure, a full disk, the error names `path` and nothing is left).
///
/// The parameters become constants of the traced graph, sharing storage with the live
/// parameters: they must not require grad while tracing *and saving* (a constant saved with
/// requires_grad cannot be loaded again), so both happen with the parameters frozen.
pub fn trace_to_file(net: &Net, mean: &[f64], std: &[f64], path: &Path) -> Result<()> {
    let bytes = trace_to_bytes(net, mean, std)?;
    write_atomic(path, |f| {
        f.write_all(&bytes).map_err(|e| Error::io(path, e))
    })
}

/// [`trace_to_file`]'s TorchScript archive, in memory.
fn trace_to_bytes(net: &Net, mean: &[f64], std: &[f64]) -> Result<Vec<u8>> {
    let params = net.params();
    let device = params[0].device();
    for p in &params {
        let _ = p.set_requires_grad(false);
    }
    let c = net.in_channels;
    let mean_t = Tensor::from_slice(mean)
        .to_kind(Kind::Float)
        .view([1, c, 1, 1])
        .to_device(device);
    let std_t = Tensor::from_slice(std)
        .to_kind(Kind::Float)
        .view([1, c, 1, 1])
        .to_device(device);
    let mut f = |inputs: &[Tensor]| {
        let x = &inputs[0];
        let x = if c == 1 {
            x.mean_dim(1, true, Kind::Float)
        } else {
            x.shallow_clone()
        };
        let x = (x - &mean_t) / &std_t;
        vec![net.forward(&x, &mut Pass::eval())]
    };
    let example = Tensor::zeros([1, 3, net.side, net.side], (Kind::Float, device));
    let saved =
        tch::no_grad(|| CModule::create_by_tracing("FoolNet", "forward", &[example], &mut f))
            .map_err(|e| Error::Torch(crate::error::first_line(&e.to_string())))
            .and_then(|m| save_in_memory(&m));
    for p in &params {
        let _ = p.set_requires_grad(true);
    }
    saved
}

/// The bytes of `module` saved as TorchScript. libtorch only saves modules to a named file,
/// and a write error inside its archive writer ends in `std::terminate`, not in an error; so
/// it writes into an anonymous in-memory file (`memfd`), which a full disk cannot fail, and
/// the bytes go to disk from Rust. (The archive's root folder is named after the file, here
/// its descriptor number; any name without a dot loads.)
#[cfg(target_os = "linux")]
fn save_in_memory(module: &CModule) -> Result<Vec<u8>> {
    use std::io::{Read, Seek};
    use std::os::fd::{AsRawFd, FromRawFd};
    let fd = unsafe { libc::memfd_create(c"fool-model".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(Error::failed(
            "TorchScript export",
            format!("no in-memory file: {}", std::io::Error::last_os_error()),
        ));
    }
    // SAFETY: `fd` was just created and is owned by nobody else.
    let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
    module
        .save(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .map_err(|e| Error::Torch(crate::error::first_line(&e.to_string())))?;
    let mut bytes = Vec::new();
    file.rewind()
        .and_then(|_| file.read_to_end(&mut bytes))
        .map_err(|e| Error::failed("TorchScript export", e.to_string()))?;
    Ok(bytes)
}

/// Elsewhere: a temp file in the system's temp folder.
#[cfg(not(target_os = "linux"))]
fn save_in_memory(module: &CModule) -> Result<Vec<u8>> {
    let dir = tempfile::tempdir().map_err(|e| Error::io(&std::env::temp_dir(), e))?;
    let path = dir.path().join("model.pt");
    module
        .save(&path)
        .map_err(|e| Error::Torch(crate::error::first_line(&e.to_string())))?;
    std::fs::read(&path).map_err(|e| Error::io(&path, e))
}

/// Write model.pt, model.json, labels.json and metadata.json into `dir` (each atomically).
pub fn export(net: &Net, ds: &TensorDataset, meta: &Metadata, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    trace_to_file(net, &ds.name.mean(), &ds.name.std(), &dir.join("model.pt"))?;
    let side = net.side as u32;
    write_json(
        &dir.join("model.json"),
        &ModelCard {
            format: "fool-model/1".into(),
            size: side,
            resize: side,
            mean: [0.0; 3],
            std: [1.0; 3],
            labels: "labels.json".into(),
            input: format!(
                "(N,3,{side},{side}) pixels in [0,1]; the module normalizes ({} mean {:?}, std {:?}){}",
                ds.name,
                ds.name.mean(),
                ds.name.std(),
                if net.in_channels == 1 { " after averaging the channels to grey" } else { "" }
            ),
        },
    )?;
    write_json(&dir.join("labels.json"), &ds.classes)?;
    write_json(&dir.join("metadata.json"), meta)?;
    Ok(())
}

/// Save the first `n` images of `ds` as PNGs named `NNNNN-CLASS.png` into `dir`, with a
/// `labels.csv` (`file,index`).
pub fn save_samples(ds: &TensorDataset, n: usize, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let rows: Vec<usize> = (0..n.min(ds.len())).collect();
    let labels = ds.labels_of(&rows)?;
    let mut csv = String::from("file,index\n");
    for b in ds.batches(&rows, 256, tch::Device::Cpu, Feed::Rgb) {
        for k in 0..b.len() {
            let i = b.start + k;
            let label = labels[i] as usize;
            let name = ds
                .classes
                .get(label)
                .cloned()
                .unwrap_or_else(|| label.to_string());
            let file = format!("{i:05}-{name}.png");
            save_png(&tensor_to_rgb(&b.images.get(k as i64)), &dir.join(&file))?;
            csv.push_str(&format!("{file},{label}\n"));
        }
    }
    // labels.csv makes the folder a `fool bench` dataset.
    let lp = dir.join("labels.csv");
    crate::files::write_text(&lp, &csv)
}
