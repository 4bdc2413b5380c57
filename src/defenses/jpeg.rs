//! JPEG re-compression at a given quality, in memory (the tutorial's naive defense).
//! Not differentiable, not random.
use super::Defense;
use crate::imageio::{rgb_to_tensor, tensor_to_rgb};
use crate::{Error, Result};
use image::codecs::jpeg::JpegEncoder;
use tch::Tensor;

#[derive(Debug, Clone, Copy)]
pub struct Jpeg {
    pub quality: u8,
}

impl Jpeg {
    /// Encode and decode one 8-bit RGB image.
    pub fn roundtrip(&self, img: &image::RgbImage) -> Result<image::RgbImage> {
        let mut buf = Vec::new();
        JpegEncoder::new_with_quality(&mut buf, self.quality)
            .encode_image(img)
            .map_err(|e| Error::failed("jpeg defense", format!("encode: {e}")))?;
        let dec = image::load_from_memory_with_format(&buf, image::ImageFormat::Jpeg)
            .map_err(|e| Error::failed("jpeg defense", format!("decode: {e}")))?;
        Ok(dec.to_rgb8())
    }
}

impl Defense for Jpeg {
    fn name(&self) -> String {
        format!("jpeg:{}", self.quality)
    }

    fn apply(&self, x: &Tensor) -> Result<Tensor> {
        let n = x.size()[0];
        let mut out = Vec::with_capacity(n as usize);
        for i in 0..n {
            let img = tensor_to_rgb(&x.get(i).detach());
            out.push(rgb_to_tensor(&self.roundtrip(&img)?));
        }
        Ok(Tensor::stack(&out, 0).to_device(x.device()))
    }

    fn differentiable(&self) -> bool {
        false
    }

    fn random(&self) -> bool {
        false
    }
}
