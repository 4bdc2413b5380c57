//! The synthetic data set on disk, `OUT/data/`: one PNG per sample, `labels.csv` (file,index:
//! a `fool train --data` and `fool bench` input), `dataset.json` (what it is), `states.jsonl`
//! (each sample's API state, to continue from) and `progress.json` (the run's records up to
//! this population). The folder is replaced whole at the end of every iteration (written
//! beside it, then renamed): it always holds one finished iteration, never half of one.
use super::api::Population;
use crate::datasets::{self, DatasetName};
use crate::{Error, Result};
use image::{GrayImage, RgbImage};
use std::io::Write;
use std::path::{Path, PathBuf};
use tch::Tensor;

/// The population of one finished iteration, by class.
pub struct Saved {
    pub populations: Vec<Population>,
    pub progress: serde_json::Value,
}

pub fn data_dir(out: &Path) -> PathBuf {
    out.join("data")
}

fn tmp_dir(out: &Path) -> PathBuf {
    out.join(".data.tmp")
}

fn old_dir(out: &Path) -> PathBuf {
    out.join(".data.old")
}

/// Undo a swap that was cut short (the old folder renamed away, the new one not yet in
/// place) and drop a half-written new folder.
pub fn recover(out: &Path) -> Result<()> {
    let (data, old, tmp) = (data_dir(out), old_dir(out), tmp_dir(out));
    if !data.exists() && old.exists() {
        std::fs::rename(&old, &data).map_err(|e| Error::io(&old, e))?;
    }
    for d in [&old, &tmp] {
        if d.exists() {
            std::fs::remove_dir_all(d).map_err(|e| Error::io(d, e))?;
        }
    }
    Ok(())
}

/// The image of one sample (C = 1 grey or 3 RGB; uint8 (C, H, W)).
fn write_png(img: &Tensor, path: &Path) -> Result<()> {
    let s = img.size();
    let (c, h, w) = (s[0], s[1] as u32, s[2] as u32);
    let bytes = Vec::<u8>::try_from(img.permute([1, 2, 0]).contiguous().view([-1]))?;
    let res = if c == 1 {
        GrayImage::from_raw(w, h, bytes).map(|g| g.save(path))
    } else {
        RgbImage::from_raw(w, h, bytes).map(|g| g.save(path))
    };
    match res {
        Some(Ok(())) => Ok(()),
        Some(Err(e)) => Err(Error::failed(
            "synthetic image",
            format!("{}: {e}", path.display()),
        )),
        None => Err(Error::Internal {
            what: "synthetic image".into(),
            msg: "buffer size".into(),
        }),
    }
}

/// Write the populations (class k = `populations[k]`) as OUT/data, replacing the previous one.
pub fn save(
    out: &Path,
    populations: &[Population],
    dataset: &serde_json::Value,
    progress: &serde_json::Value,
) -> Result<()> {
    let tmp = tmp_dir(out);
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    }
    std::fs::create_dir_all(tmp.join("images")).map_err(|e| Error::io(&tmp, e))?;
    let mut labels = String::from("file,index\n");
    let mut states = Vec::new();
    let mut i = 0usize;
    for (class, p) in populations.iter().enumerate() {
        for (j, s) in p.states.iter().enumerate() {
            let file = format!("images/{i:06}.png");
            write_png(&p.images.get(j as i64), &tmp.join(&file))?;
            labels.push_str(&format!("{file},{class}\n"));
            serde_json::to_writer(&mut states, s).map_err(|e| Error::Internal {
                what: "states.jsonl".into(),
                msg: e.to_string(),
            })?;
            states.push(b'\n');
            i += 1;
        }
    }
    let write = |name: &str, bytes: &[u8]| -> Result<()> {
        let p = tmp.join(name);
        let mut f = std::fs::File::create(&p).map_err(|e| Error::io(&p, e))?;
        f.write_all(bytes).map_err(|e| Error::io(&p, e))?;
        f.sync_all().map_err(|e| Error::io(&p, e))
    };
    write("labels.csv", labels.as_bytes())?;
    write("states.jsonl", &states)?;
    let json = |v: &serde_json::Value| serde_json::to_vec_pretty(v).unwrap_or_default();
    write("dataset.json", &json(dataset))?;
    write("progress.json", &json(progress))?;
    let (data, old) = (data_dir(out), old_dir(out));
    if data.exists() {
        std::fs::rename(&data, &old).map_err(|e| Error::io(&data, e))?;
    }
    std::fs::rename(&tmp, &data).map_err(|e| Error::io(&tmp, e))?;
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
    }
    Ok(())
}

/// Read OUT/data back through the one folder reader ([`datasets::pool`]): the populations by
/// class and the progress saved with them; None when there is no data folder. (`files`: the
/// data set's own files, which a folder does not read.)
pub fn load(out: &Path, dataset: DatasetName, files: &Path) -> Result<Option<Saved>> {
    let data = data_dir(out);
    if !data.join("progress.json").exists() {
        return Ok(None);
    }
    let progress: serde_json::Value = crate::files::read_json(&data.join("progress.json"))?;
    let folder = datasets::pool::load(&data.to_string_lossy(), dataset, files)?;
    let labels = folder.labels.unwrap_or_default();
    let states_path = data.join("states.jsonl");
    let text = crate::files::read_regular_to_string(&states_path, "a states.jsonl file")?;
    let states: Vec<serde_json::Value> = text
        .lines()
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l)
                .map_err(|e| Error::bad_file(&states_path, format!("line {}: {e}", i + 1)))
        })
        .collect::<Result<_>>()?;
    if states.len() != labels.len() {
        return Err(Error::bad_file(
            &states_path,
            format!("{} states for {} images", states.len(), labels.len()),
        ));
    }
    // The files are named in the order they were written (class by class), which is the order
    // the reader sorts them in.
    let populations = (0..dataset.num_classes())
        .map(|c| {
            let rows: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == c).collect();
            let idx = Tensor::from_slice(&rows.iter().map(|&r| r as i64).collect::<Vec<_>>());
            Population {
                images: folder.data.images.index_select(0, &idx),
                states: rows.iter().map(|&r| states[r].clone()).collect(),
            }
        })
        .collect();
    Ok(Some(Saved {
        populations,
        progress,
    }))
}

/// A grid of up to `per_class` samples of each class (one row per class), scaled ×`zoom`.
pub fn grid(populations: &[Population], per_class: usize, zoom: u32) -> Result<RgbImage> {
    let first = populations
        .iter()
        .find(|p| !p.is_empty())
        .map(|p| p.images.size())
        .unwrap_or(vec![0, 1, 28, 28]);
    let (c, h, w) = (first[1], first[2] as u32, first[3] as u32);
    let rows = populations.len() as u32;
    let mut out = RgbImage::new(w * zoom * per_class as u32, h * zoom * rows);
    for (r, p) in populations.iter().enumerate() {
        for j in 0..per_class.min(p.len()) {
            let img = p.images.get(j as i64);
            let px = Vec::<u8>::try_from(img.permute([1, 2, 0]).contiguous().view([-1]))?;
            for y in 0..h {
                for x in 0..w {
                    let at = ((y * w + x) as i64 * c) as usize;
                    let rgb = if c == 1 {
                        [px[at]; 3]
                    } else {
                        [px[at], px[at + 1], px[at + 2]]
                    };
                    for zy in 0..zoom {
                        for zx in 0..zoom {
                            out.put_pixel(
                                (j as u32 * w + x) * zoom + zx,
                                (r as u32 * h + y) * zoom + zy,
                                image::Rgb(rgb),
                            );
                        }
                    }
                }
            }
        }
    }
    Ok(out)
}
