//! What Private Evolution compares samples in: an embedding of the images by a *public*
//! function only. `pixels` (the default): the images as vectors in [0, 1]. The Fréchet
//! distance of a population to the private data is measured in the same embedding (labelled
//! as such: it is not Inception's FID).
use crate::{Error, Result};
use tch::{Device, Kind, Tensor};

/// An embedding of 8-bit images.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Embedding {
    /// Pixels in [0, 1], flattened (C·H·W dimensions).
    Pixels,
}

impl std::str::FromStr for Embedding {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "pixels" => Ok(Embedding::Pixels),
            o => Err(Error::field("embedding", format!("'{o}': expected pixels"))),
        }
    }
}

impl std::fmt::Display for Embedding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("pixels")
    }
}

impl Embedding {
    /// Embed uint8 images (N, C, H, W) on the CPU: (N, d) float on `device`.
    pub fn embed(&self, images: &Tensor, device: Device) -> Result<Tensor> {
        match self {
            Embedding::Pixels => {
                let n = images.size()[0];
                Ok(images.to_device(device).to_kind(Kind::Float).view([n, -1]) / 255.0)
            }
        }
    }
}
