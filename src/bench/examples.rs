//! `fool bench --keep-examples N`: the first N images of the run (in the order of
//! `bench.json`'s `files`), clean and attacked, kept as 8-bit PNGs for galleries (`fool report
//! html`). The attacked image is the one the rows judged (after the exact 8-bit projection):
//!
//! ```text
//! OUT/examples/labels.json                          the model's class names (a JSON list)
//! OUT/examples/clean/NNNNN.png                       image NNNNN of the run, as the model sees it
//! OUT/examples/ATTACK_epsEPS_DEFENSE/NNNNN.png       attacked in that setting (`none`: the bare
//!                                                    model, judged through every defense;
//!                                                    else the adaptive attack on DEFENSE)
//! ```
//!
//! The paths are the contract between `fool bench` and the report: both go through
//! [`clean_path`] and [`adv_path`]. Written atomically; a resumed run keeps what is there (units
//! done before `--keep-examples` was given have no example).
use super::plan::{eps_key, BenchConfig, Unit};
use crate::imageio::{save_png, tensor_to_rgb};
use crate::Result;
use std::path::{Path, PathBuf};
use tch::Tensor;

/// The folder of the examples.
pub fn dir(out: &Path) -> PathBuf {
    out.join("examples")
}

/// Image `index` of the run, clean.
pub fn clean_path(out: &Path, index: usize) -> PathBuf {
    dir(out).join("clean").join(format!("{index:05}.png"))
}

/// Image `index` of the run, attacked by `attack` at `eps`; `adaptive`: the defense an
/// adaptive attack targeted (`None`: the non-adaptive attack on the bare model).
pub fn adv_path(
    out: &Path,
    attack: &str,
    eps: f64,
    adaptive: Option<&str>,
    index: usize,
) -> PathBuf {
    let setting = format!(
        "{attack}_eps{}_{}",
        eps_key(eps),
        adaptive.unwrap_or("none")
    );
    let safe: String = setting
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    dir(out).join(safe).join(format!("{index:05}.png"))
}

/// The class names of the run's model, for the gallery's captions.
pub fn labels_path(out: &Path) -> PathBuf {
    dir(out).join("labels.json")
}

/// Write [`labels_path`] (when examples are kept).
pub fn save_labels(out: &Path, labels: &crate::labels::Labels, keep: usize) -> Result<()> {
    if keep == 0 {
        return Ok(());
    }
    let p = labels_path(out);
    mkdir(&p)?;
    crate::files::write_json(&p, labels.names())
}

/// Keep the clean and attacked images of `files` (the unit's batch, in order, with their
/// pixels `x` and attacked pixels `adv`) that are among the first `keep` of the run.
pub fn keep(
    out: &Path,
    cfg: &BenchConfig,
    unit: &Unit,
    files: &[&str],
    x: &Tensor,
    adv: &Tensor,
    keep: usize,
) -> Result<()> {
    if keep == 0 {
        return Ok(());
    }
    for (i, f) in files.iter().enumerate() {
        let Some(index) = cfg.files.iter().position(|g| g == f) else {
            continue;
        };
        if index >= keep {
            continue;
        }
        let clean = clean_path(out, index);
        if !clean.is_file() {
            mkdir(&clean)?;
            save_png(&tensor_to_rgb(&x.get(i as i64)), &clean)?;
        }
        let p = adv_path(out, &unit.attack, unit.eps, unit.adaptive.as_deref(), index);
        mkdir(&p)?;
        save_png(&tensor_to_rgb(&adv.get(i as i64)), &p)?;
    }
    Ok(())
}

fn mkdir(file: &Path) -> Result<()> {
    let d = file.parent().expect("a folder");
    std::fs::create_dir_all(d)
        .map_err(|e| crate::Error::bad_file(d, format!("cannot create it: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setting_folders_are_safe_names() {
        let p = adv_path(Path::new("o"), "pgd", 4.0 / 255.0, Some("jpeg:75"), 3);
        assert_eq!(
            p,
            Path::new("o/examples/pgd_eps0.01568627_jpeg-75/00003.png")
        );
        let p = adv_path(Path::new("o"), "pgd", 0.5, None, 12);
        assert_eq!(p, Path::new("o/examples/pgd_eps0.50000000_none/00012.png"));
    }
}
