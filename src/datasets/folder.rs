//! Labelled image folders: a directory of images with a `labels.csv` (`file,index` columns
//! at least, as the ImageNet samples have), or images named by ImageNet WordNet id
//! (`n01440764_tench.JPEG`) together with a synset list (`wnids`, one `nXXXXXXXX ...` per
//! line in class order, the `LOC_synset_mapping.txt` format).
use crate::{Error, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// One labelled image.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// Path relative to the folder (the key used in results).
    pub file: String,
    pub path: PathBuf,
    pub label: usize,
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

/// List the labelled images of `dir`, sorted by file name.
pub fn image_folder(dir: &Path, wnids: Option<&Path>) -> Result<Vec<Item>> {
    if !dir.is_dir() {
        return Err(Error::bad_file(dir, "not a directory of images"));
    }
    let csv = dir.join("labels.csv");
    let mut items = if csv.exists() {
        from_labels_csv(dir, &csv)?
    } else if let Some(w) = wnids {
        from_wnid_names(dir, w)?
    } else {
        return Err(Error::bad_file(
            dir,
            "no labels.csv (columns file,index) in the folder; for files named by WordNet id give a synset list (wnids, one `nXXXXXXXX name` per line)",
        ));
    };
    items.sort_by(|a, b| a.file.cmp(&b.file));
    if items.is_empty() {
        return Err(Error::bad_file(dir, "no labelled images found"));
    }
    Ok(items)
}

fn from_labels_csv(dir: &Path, csv: &Path) -> Result<Vec<Item>> {
    let text = std::fs::read_to_string(csv).map_err(|e| Error::io(csv, e))?;
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header = csv_fields(lines.next().unwrap_or(""));
    let col = |name: &str| header.iter().position(|h| h.trim() == name);
    let (Some(fcol), Some(icol)) = (col("file"), col("index")) else {
        return Err(Error::bad_file(
            csv,
            "header must have the columns file and index",
        ));
    };
    let mut items = Vec::new();
    for (n, line) in lines.enumerate() {
        let f = csv_fields(line);
        let (Some(file), Some(index)) = (f.get(fcol), f.get(icol)) else {
            return Err(Error::bad_file(
                csv,
                format!("line {}: missing fields", n + 2),
            ));
        };
        let label = index.trim().parse::<usize>().map_err(|_| {
            Error::bad_file(
                csv,
                format!("line {}: index '{index}' is not a class number", n + 2),
            )
        })?;
        items.push(Item {
            file: file.clone(),
            path: dir.join(file),
            label,
        });
    }
    Ok(items)
}

fn from_wnid_names(dir: &Path, wnids: &Path) -> Result<Vec<Item>> {
    let text = std::fs::read_to_string(wnids).map_err(|e| Error::io(wnids, e))?;
    let index: HashMap<&str, usize> = text
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .enumerate()
        .map(|(i, w)| (w, i))
        .collect();
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
            items.push(Item {
                file: name.clone(),
                path: dir.join(&name),
                label,
            });
        }
    }
    Ok(items)
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
