//! What Private Evolution compares samples in: an embedding of the images by a *public*
//! function only.
//!
//! * `pixels` (the default): the images as vectors in [0, 1] (C·H·W dimensions);
//! * `network[:PATH]`: a TorchScript feature extractor (default `assets/embedding.pt`, the
//!   ImageNet classifier's penultimate features that set-up exports: 1280-d for MobileNetV2),
//!   fed the images as RGB (grey repeated), resized to `size`×`size` (bilinear) and normalized
//!   with ImageNet's mean and std. A network whose card says it was trained on the data set of
//!   the private data (`metadata.json` or `model.json` beside it naming it) is refused: votes in
//!   such an embedding would depend on the private data through the network, outside the
//!   accounting.
//!
//! The Fréchet distance of a population to the private data is measured in the same embedding
//! (labelled as such: it is not Inception's FID).
use crate::datasets::DatasetName;
use crate::{Error, Result};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// An embedding of 8-bit images.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Embedding {
    /// Pixels in [0, 1], flattened.
    Pixels,
    /// A public TorchScript feature extractor at `size`×`size` input.
    Network { path: PathBuf, size: i64 },
}

/// The network `network` without a path names.
pub const DEFAULT_NETWORK: &str = "assets/embedding.pt";

impl Embedding {
    /// `pixels`, `network` or `network:PATH`, with the network's input side.
    pub fn parse(s: &str, size: i64) -> Result<Embedding> {
        let s = s.trim();
        if s == "pixels" {
            return Ok(Embedding::Pixels);
        }
        let path = match s.strip_prefix("network") {
            Some("") => PathBuf::from(DEFAULT_NETWORK),
            Some(rest) if rest.starts_with(':') && rest.len() > 1 => PathBuf::from(&rest[1..]),
            _ => {
                return Err(Error::field(
                    "embedding",
                    format!("'{s}': expected pixels, network or network:PATH"),
                ))
            }
        };
        if !(32..=512).contains(&size) {
            return Err(Error::field(
                "embedding_size",
                format!("{size}: the network's input side must be in 32..=512"),
            ));
        }
        Ok(Embedding::Network { path, size })
    }

    /// Check that the embedding may be used with private data of `dataset`.
    pub fn check_public(&self, dataset: DatasetName) -> Result<()> {
        let Embedding::Network { path, .. } = self else {
            return Ok(());
        };
        crate::files::check_regular(path, "a TorchScript embedding network")?;
        let dir = path.parent().unwrap_or(Path::new("."));
        for card in ["metadata.json", "model.json"] {
            let p = dir.join(card);
            let Ok(v) = crate::files::read_json::<serde_json::Value>(&p) else {
                continue;
            };
            let trained = v
                .get("dataset")
                .or_else(|| v.get("trained_on"))
                .and_then(|d| d.as_str())
                .and_then(|d| d.parse::<DatasetName>().ok());
            if trained == Some(dataset) {
                return Err(Error::field(
                    "embedding",
                    format!(
                        "{}: its card ({}) says it was trained on {dataset}, the private data's data set; the embedding must be a public network (e.g. the ImageNet one, {DEFAULT_NETWORK}) or pixels",
                        path.display(),
                        p.display()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// What a loaded embedding runs.
    pub fn load(&self, device: Device) -> Result<Embedder> {
        Ok(match self {
            Embedding::Pixels => Embedder::Pixels,
            Embedding::Network { path, size } => Embedder::Network {
                module: crate::model::load_torchscript(path, device)?,
                size: *size,
                path: path.clone(),
            },
        })
    }
}

impl std::fmt::Display for Embedding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Embedding::Pixels => f.write_str("pixels"),
            Embedding::Network { path, size } => {
                write!(f, "network {} at {size}×{size}", path.display())
            }
        }
    }
}

/// A loaded embedding.
pub enum Embedder {
    Pixels,
    Network {
        module: tch::CModule,
        size: i64,
        path: PathBuf,
    },
}

/// Images per forward pass of a network.
const BATCH: i64 = 500;

impl Embedder {
    /// Embed uint8 images (N, C, H, W) on the CPU: (N, d) float on `device`.
    pub fn embed(&self, images: &Tensor, device: Device) -> Result<Tensor> {
        let n = images.size()[0];
        match self {
            Embedder::Pixels => {
                Ok(images.to_device(device).to_kind(Kind::Float).view([n, -1]) / 255.0)
            }
            Embedder::Network { module, size, path } => {
                let mean = Tensor::from_slice(&[0.485f32, 0.456, 0.406])
                    .view([1, 3, 1, 1])
                    .to_device(device);
                let std = Tensor::from_slice(&[0.229f32, 0.224, 0.225])
                    .view([1, 3, 1, 1])
                    .to_device(device);
                let mut out = vec![];
                let mut start = 0;
                while start < n {
                    let len = BATCH.min(n - start);
                    let x = images
                        .narrow(0, start, len)
                        .to_device(device)
                        .to_kind(Kind::Float)
                        / 255.0;
                    let x = if x.size()[1] == 1 {
                        x.repeat([1, 3, 1, 1])
                    } else {
                        x
                    };
                    let x = x.upsample_bilinear2d([*size, *size], false, None, None);
                    let x = (x - &mean) / &std;
                    let y = tch::no_grad(|| module.forward_ts(&[x])).map_err(|e| {
                        Error::bad_file(
                            path,
                            format!(
                                "the embedding network failed on (N,3,{size},{size}) input: {}",
                                crate::error::first_line(&e.to_string())
                            ),
                        )
                    })?;
                    let y = match y.dim() {
                        2 => y,
                        4 => y.mean_dim([2i64, 3].as_slice(), false, Kind::Float),
                        d => {
                            return Err(Error::bad_file(
                                path,
                                format!("the embedding network returned a {d}-d tensor; expected (N, d) features"),
                            ))
                        }
                    };
                    out.push(y.to_kind(Kind::Float));
                    start += len;
                }
                Ok(Tensor::cat(&out, 0))
            }
        }
    }
}

/// The private data's embedding, computed once: for a network it is cached in
/// OUT/private-embedding.npy with the key (private data, embedding, network file size and
/// modification time) in OUT/private-embedding.key, so a resumed run does not recompute it.
pub fn private_embedding(
    cfg: &super::SynthConfig,
    embedder: &Embedder,
    images: &Tensor,
    out: &Path,
    device: Device,
) -> Result<Tensor> {
    let Embedding::Network { path, .. } = &cfg.embedding else {
        return embedder.embed(images, device);
    };
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let key = format!(
        "{} | {} | {} bytes | {mtime}",
        cfg.private,
        cfg.embedding,
        meta.len()
    );
    let (npy, keyfile) = (
        out.join("private-embedding.npy"),
        out.join("private-embedding.key"),
    );
    if std::fs::read_to_string(&keyfile).ok().as_deref() == Some(key.as_str()) {
        if let Ok(t) = Tensor::read_npy(&npy) {
            if t.size().first() == images.size().first() {
                return Ok(t.to_device(device));
            }
        }
    }
    let e = embedder.embed(images, device)?;
    std::fs::create_dir_all(out).map_err(|err| Error::io(out, err))?;
    let tmp = out.join(".private-embedding.npy.tmp");
    e.to_device(Device::Cpu)
        .write_npy(&tmp)
        .map_err(|err| Error::failed("private embedding cache", err.to_string()))?;
    std::fs::rename(&tmp, &npy).map_err(|err| Error::io(&npy, err))?;
    crate::files::write_text(&keyfile, &key)?;
    Ok(e)
}
