//! Labelled image folders: a directory of images with a `labels.csv` (`file,index` columns
//! at least, as the ImageNet samples have), or images named by ImageNet WordNet id
//! (`n01440764_tench.JPEG`) together with a synset list (`wnids`, one `nXXXXXXXX ...` per
//! line in class order, the `LOC_synset_mapping.txt` format).
use crate::model::Classifier;
use crate::{Error, Result};
use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use tch::{Kind, Tensor};

/// One labelled image.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// Path relative to the folder (the key used in results).
    pub file: String,
    pub path: PathBuf,
    pub label: usize,
    /// The row of a data set split the image is (`mnist:test[a:b]` inputs; `None` for files).
    pub row: Option<usize>,
}

/// Parse a CSV line with optional double-quoted fields (quotes doubled inside).
fn csv_fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}

const IMAGE_EXTS: [&str; 9] = [
    "png", "jpg", "jpeg", "bmp", "gif", "tif", "tiff", "webp", "ppm",
];

/// List the labelled images of `dir`, sorted by file name. A `labels.csv` gives the labels;
/// a synset list (`wnids`) is only for folders without one, and is refused beside one rather
/// than silently ignored.
pub fn image_folder(dir: &Path, wnids: Option<&Path>) -> Result<Vec<Item>> {
    if !dir.is_dir() {
        return Err(Error::bad_file(dir, "not a directory of images"));
    }
    let csv = dir.join("labels.csv");
    let has_csv = csv.symlink_metadata().is_ok();
    let mut items = match (has_csv, wnids) {
        (true, Some(_)) => {
            return Err(Error::field(
                "wnids",
                format!(
                    "{} has a labels.csv, which labels its images; a synset list is only for folders of WordNet-id file names without one (leave it out)",
                    dir.display()
                ),
            ))
        }
        (true, None) => from_labels_csv(dir, &csv)?,
        (false, Some(w)) => from_wnid_names(dir, w)?,
        (false, None) => {
            return Err(Error::bad_file(
                dir,
                "no labels.csv (columns file,index) in the folder; for files named by WordNet id give a synset list (wnids, one `nXXXXXXXX name` per line)",
            ))
        }
    };
    items.sort_by(|a, b| a.file.cmp(&b.file));
    if items.is_empty() {
        return Err(Error::bad_file(dir, "no labelled images found"));
    }
    Ok(items)
}

/// A file name of labels.csv as a path inside the folder, without `.` parts (the key that
/// finds a file listed twice): absolute paths, `..` and control characters are refused.
fn inside(file: &str) -> std::result::Result<PathBuf, String> {
    if file.chars().any(char::is_control) {
        return Err(format!(
            "file name '{}' has control characters",
            file.escape_debug()
        ));
    }
    let mut rel = PathBuf::new();
    for c in Path::new(file).components() {
        match c {
            Component::Normal(part) => rel.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(format!(
                    "file '{file}' is outside the folder (an absolute path or ..); list files relative to it"
                ))
            }
        }
    }
    if rel.as_os_str().is_empty() {
        return Err("empty file name".into());
    }
    Ok(rel)
}

fn from_labels_csv(dir: &Path, csv: &Path) -> Result<Vec<Item>> {
    let text = crate::files::read_regular_to_string(csv, "a labels.csv file")?;
    // Spreadsheet programs save UTF-8 CSV with a byte-order mark before the header.
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    // Line numbers as an editor shows them (blank lines counted, skipped).
    let mut lines = (1..)
        .zip(text.lines())
        .filter(|(_, l)| !l.trim().is_empty());
    let header = csv_fields(lines.next().map_or("", |(_, l)| l));
    let col = |name: &str| header.iter().position(|h| h.trim() == name);
    let (Some(fcol), Some(icol)) = (col("file"), col("index")) else {
        return Err(Error::bad_file(
            csv,
            "header must have the columns file and index",
        ));
    };
    let mut items = Vec::new();
    // Each file once: a file listed twice would be counted twice, or under two labels.
    let mut seen: HashMap<PathBuf, usize> = HashMap::new();
    for (n, line) in lines {
        let f = csv_fields(line);
        let (Some(file), Some(index)) = (f.get(fcol), f.get(icol)) else {
            return Err(Error::bad_file(csv, format!("line {n}: missing fields")));
        };
        let label = index.trim().parse::<usize>().map_err(|_| {
            Error::bad_file(
                csv,
                format!(
                    "line {n}: index '{}' is not a class number",
                    index.escape_debug()
                ),
            )
        })?;
        let rel = inside(file).map_err(|m| Error::bad_file(csv, format!("line {n}: {m}")))?;
        if let Some(first) = seen.insert(rel, n) {
            return Err(Error::bad_file(
                csv,
                format!("line {n}: {file} is listed again (first on line {first}); list each image once, with one label"),
            ));
        }
        items.push(Item {
            file: file.clone(),
            path: dir.join(file),
            label,
            row: None,
        });
    }
    Ok(items)
}

fn from_wnid_names(dir: &Path, wnids: &Path) -> Result<Vec<Item>> {
    let text = crate::files::read_regular_to_string(wnids, "a synset list")?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut index: HashMap<&str, usize> = HashMap::new();
    let synsets = (1..)
        .zip(text.lines())
        .filter_map(|(n, l)| Some((n, l.split_whitespace().next()?)));
    for (class, (n, wnid)) in synsets.enumerate() {
        if index.insert(wnid, class).is_some() {
            return Err(Error::bad_file(
                wnids,
                format!(
                    "line {n}: {} is listed again; each synset once, in class order",
                    wnid.escape_debug()
                ),
            ));
        }
    }
    let mut items = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let ext = Path::new(&name)
            .extension()
            .map(|e| e.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        if !IMAGE_EXTS.contains(&ext.as_str()) {
            continue;
        }
        let wnid: String = name.chars().take(9).collect();
        if let Some(&label) = index.get(wnid.as_str()) {
            if name.chars().any(char::is_control) {
                return Err(Error::bad_file(
                    dir,
                    format!(
                        "image file name '{}' has control characters; rename it",
                        name.escape_debug()
                    ),
                ));
            }
            items.push(Item {
                file: name.clone(),
                path: entry.path(),
                label,
                row: None,
            });
        }
    }
    Ok(items)
}

/// The images of one batch, loaded and preprocessed. Unreadable files are returned as
/// errors for the caller to report and skip.
pub struct LoadedBatch {
    pub items: Vec<Item>,
    /// Their pixels (N,3,S,S) in [0,1] on the model's device, preprocessed for it.
    pub x: Tensor,
    pub labels: Vec<usize>,
    pub failed: Vec<(Item, Error)>,
}

/// Load and preprocess the images `items` for `model` (the benchmark's and the detector
/// calibration's one loader).
pub fn load_batch(model: &Classifier, items: &[Item]) -> LoadedBatch {
    let mut ok = Vec::new();
    let mut xs = Vec::new();
    let mut failed = Vec::new();
    for it in items {
        match crate::imageio::load_rgb(&it.path) {
            Ok(img) => {
                xs.push(model.pre.pixels(&img, tch::Device::Cpu));
                ok.push(it.clone());
            }
            Err(e) => failed.push((it.clone(), e)),
        }
    }
    let x = if xs.is_empty() {
        Tensor::zeros([0], (Kind::Float, model.device))
    } else {
        Tensor::stack(&xs, 0).to_device(model.device)
    };
    LoadedBatch {
        labels: ok.iter().map(|i| i.label).collect(),
        items: ok,
        x,
        failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_with_quotes_and_apostrophes() {
        assert_eq!(
            csv_fields(r#"7,n01,"cock's ""comb"", red.JPEG",label"#),
            vec!["7", "n01", "cock's \"comb\", red.JPEG", "label"]
        );
    }

    #[test]
    fn folder_from_labels_csv_and_wnids() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("labels.csv"),
            "index,wnid,file,label\n1,n1,b.png,x\n0,n0,a.png,y\n",
        )
        .unwrap();
        let items = image_folder(d.path(), None).unwrap();
        assert_eq!(
            items
                .iter()
                .map(|i| (i.file.as_str(), i.label))
                .collect::<Vec<_>>(),
            vec![("a.png", 0), ("b.png", 1)]
        );
        std::fs::remove_file(d.path().join("labels.csv")).unwrap();
        assert!(image_folder(d.path(), None)
            .unwrap_err()
            .to_string()
            .contains("synset list (wnids"));
        std::fs::write(d.path().join("n00000002_x.JPEG"), "").unwrap();
        std::fs::write(d.path().join("n00000001_y.png"), "").unwrap();
        std::fs::write(d.path().join("notes.txt"), "").unwrap();
        let w = d.path().join("wnids.txt");
        std::fs::write(&w, "n00000001 first\nn00000002 second\n").unwrap();
        let items = image_folder(d.path(), Some(&w)).unwrap();
        assert_eq!(
            items.iter().map(|i| i.label).collect::<Vec<_>>(),
            vec![0, 1]
        );
    }
}
