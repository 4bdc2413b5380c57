//! Data augmentation for training (`--augment`): torchvision's `RandomCrop(side, padding=4)`
//! (zero padding of the 8-bit image, i.e. black, before normalization) and
//! `RandomHorizontalFlip()`, per example, drawn from torch's generator (re-seeded every epoch,
//! so a resumed run draws the same crops). Test images are never augmented.
use crate::{Error, Result};
use tch::{Device, Kind, Tensor};

/// What `--augment` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Augment {
    /// Random crop with 4 pixels of padding.
    Crop,
    /// Random crop with 4 pixels of padding and a random horizontal flip.
    CropFlip,
}

impl std::str::FromStr for Augment {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "crop" => Ok(Augment::Crop),
            "crop-flip" => Ok(Augment::CropFlip),
            o => Err(Error::field(
                "augment",
                format!("'{o}': expected crop or crop-flip"),
            )),
        }
    }
}

/// Padding of the random crop (torchvision's CIFAR-10 recipe).
pub const PAD: i64 = 4;

impl Augment {
    /// Augment a batch of pixel images in [0, 1], (B, C, H, W).
    pub fn apply(&self, x: &Tensor) -> Tensor {
        let s = x.size();
        let (b, h, w) = (s[0], s[2], s[3]);
        if b == 0 {
            return x.shallow_clone();
        }
        let padded = x.constant_pad_nd([PAD, PAD, PAD, PAD]);
        let c = s[1];
        let offs =
            Tensor::randint(2 * PAD + 1, [b, 2], (Kind::Int64, Device::Cpu)).to_device(x.device());
        // Every example's window at once: rows oy..oy+H, then columns ox..ox+W, by two gathers.
        let opts = (Kind::Int64, x.device());
        let rows = (offs.select(1, 0).unsqueeze(1) + Tensor::arange(h, opts).unsqueeze(0))
            .view([b, 1, h, 1])
            .expand([b, c, h, w + 2 * PAD], false);
        let cols = (offs.select(1, 1).unsqueeze(1) + Tensor::arange(w, opts).unsqueeze(0))
            .view([b, 1, 1, w])
            .expand([b, c, h, w], false);
        let y = padded.gather(2, &rows, false).gather(3, &cols, false);
        match self {
            Augment::Crop => y,
            Augment::CropFlip => {
                let flip = Tensor::rand([b], (Kind::Float, Device::Cpu))
                    .lt(0.5)
                    .view([b, 1, 1, 1])
                    .to_device(x.device());
                y.flip([3]).where_self(&flip, &y)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crops_are_windows_of_the_padded_image_and_flips_mirror_them() {
        tch::manual_seed(5);
        let x = Tensor::rand([64, 3, 8, 8], (Kind::Float, Device::Cpu));
        let y = Augment::CropFlip.apply(&x);
        assert_eq!(y.size(), [64, 3, 8, 8]);
        let padded = x.constant_pad_nd([PAD, PAD, PAD, PAD]);
        let (mut flipped, mut shifted) = (0, 0);
        for i in 0..64 {
            let yi = y.get(i);
            let mut found = false;
            for oy in 0..=2 * PAD {
                for ox in 0..=2 * PAD {
                    let win = padded.get(i).narrow(1, oy, 8).narrow(2, ox, 8);
                    if win.equal(&yi) {
                        found = true;
                    } else if win.flip([2]).equal(&yi) {
                        found = true;
                        flipped += 1;
                    }
                    if found {
                        shifted += usize::from(oy != PAD || ox != PAD);
                        break;
                    }
                }
                if found {
                    break;
                }
            }
            assert!(found, "example {i} is no crop of its padded image");
        }
        assert!((16..=48).contains(&flipped), "{flipped} of 64 flipped");
        assert!(shifted > 48, "{shifted} of 64 shifted");
        // Crop only: never mirrored (a crop of the padded image, as is).
        let z = Augment::Crop.apply(&x);
        assert_eq!(z.size(), [64, 3, 8, 8]);
    }
}
