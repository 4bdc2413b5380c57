//! Class labels (`{"0": "tench, Tinca tinca", ...}` or a JSON list) and turning a user's
//! `--target` into a class index: an index, an exact label, one of a label's comma-separated
//! names, a whole word, or a unique substring — all case-insensitive.
use crate::{Error, Result};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Clone)]
pub struct Labels {
    names: Vec<String>,
}

impl Labels {
    pub fn new(names: Vec<String>) -> Self {
        Labels { names }
    }

    /// The names, in class order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Numbered labels `class 0`, `class 1`, … for models without a label file.
    pub fn numbered(n: usize) -> Self {
        Labels::new((0..n).map(|i| format!("class {i}")).collect())
    }

    pub fn load(path: &Path) -> Result<Self> {
        let text = crate::files::read_regular_to_string(path, "a JSON labels file")?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::bad_file(path, format!("not valid JSON: {e}")))?;
        let names = match value {
            serde_json::Value::Array(items) => items
                .into_iter()
                .enumerate()
                .map(|(i, v)| match v {
                    serde_json::Value::String(s) => Ok(s),
                    _ => Err(Error::bad_file(path, format!("entry {i} is not a string"))),
                })
                .collect::<Result<Vec<_>>>()?,
            serde_json::Value::Object(map) => {
                let mut by_index = BTreeMap::new();
                for (k, v) in map {
                    let i: usize = k.parse().map_err(|_| {
                        Error::bad_file(path, format!("key '{}' is not a class index", shown(&k)))
                    })?;
                    let s = v.as_str().ok_or_else(|| {
                        Error::bad_file(path, format!("label of class {i} is not a string"))
                    })?;
                    by_index.insert(i, s.to_string());
                }
                let n = by_index.len();
                if by_index.keys().copied().ne(0..n) {
                    return Err(Error::bad_file(
                        path,
                        format!(
                            "class indices must be 0..{} without gaps",
                            n.saturating_sub(1)
                        ),
                    ));
                }
                by_index.into_values().collect()
            }
            _ => {
                return Err(Error::bad_file(
                    path,
                    "expected a JSON object {\"0\": \"label\", ...} or a list of labels",
                ))
            }
        };
        if names.is_empty() {
            return Err(Error::bad_file(path, "no labels"));
        }
        Ok(Labels { names })
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    pub fn name(&self, i: usize) -> &str {
        self.names.get(i).map(String::as_str).unwrap_or("?")
    }

    /// The first comma-separated name: `goldfish` for `goldfish, Carassius auratus`.
    pub fn short(&self, i: usize) -> &str {
        self.name(i).split(',').next().unwrap_or("").trim()
    }

    /// Resolve a `--target` value to a class index.
    pub fn resolve(&self, spec: &str) -> Result<usize> {
        let spec_t = spec.trim();
        if spec_t.is_empty() {
            return Err(Error::field("target", "empty target"));
        }
        if let Ok(i) = spec_t.parse::<i64>() {
            if i >= 0 && (i as usize) < self.len() {
                return Ok(i as usize);
            }
            return Err(Error::field(
                "target",
                format!("class index {i} is out of range 0..{}", self.len() - 1),
            ));
        }
        let q = spec_t.to_lowercase();
        let lower: Vec<String> = self.names.iter().map(|n| n.to_lowercase()).collect();
        let stages: [&dyn Fn(&str) -> bool; 4] = [
            &|l: &str| l == q,
            &|l: &str| l.split(',').any(|part| part.trim() == q),
            &|l: &str| {
                l.split(|c: char| !c.is_alphanumeric() && c != '\'' && c != '-')
                    .any(|w| w == q)
            },
            &|l: &str| l.contains(&q),
        ];
        for stage in stages {
            let hits: Vec<usize> = (0..self.len()).filter(|&i| stage(&lower[i])).collect();
            match hits.len() {
                0 => continue,
                1 => return Ok(hits[0]),
                n => {
                    let list: Vec<String> = hits
                        .iter()
                        .take(8)
                        .map(|&i| format!("{i} '{}'", shown(self.short(i))))
                        .collect();
                    let more = if n > 8 {
                        format!(", … ({n} in all)")
                    } else {
                        String::new()
                    };
                    return Err(Error::field(
                        "target",
                        format!(
                            "'{}' is ambiguous: {}{more}; give an index or a longer name",
                            shown(spec_t),
                            list.join(", ")
                        ),
                    ));
                }
            }
        }
        let mut scored: Vec<(usize, usize)> = (0..self.len())
            .map(|i| {
                let best = lower[i]
                    .split(',')
                    .map(|p| edit_distance(p.trim(), &q))
                    .min()
                    .unwrap_or(usize::MAX);
                (best, i)
            })
            .collect();
        scored.sort();
        let close: Vec<String> = scored
            .iter()
            .take(5)
            .map(|&(_, i)| format!("{i} '{}'", shown(self.short(i))))
            .collect();
        Err(Error::field(
            "target",
            format!(
                "no class matches '{}'; closest: {}",
                shown(spec_t),
                close.join(", ")
            ),
        ))
    }
}

/// `s` for an error message: control characters escaped (`\u{1b}`), so that a label file
/// cannot break the one-line error or send escape sequences to the terminal (found by the
/// fuzzer: `tests/fuzz/corpus/labels/crash-*`).
fn shown(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Levenshtein distance over chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + (ca != *cb) as usize)
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> Labels {
        Labels::new(
            [
                "tench, Tinca tinca",
                "goldfish, Carassius auratus",
                "tabby, tabby cat",
                "tiger cat",
                "Persian cat",
                "great white shark, white shark, man-eater",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        )
    }

    #[test]
    fn resolves_index_label_name_word_substring() {
        let l = labels();
        assert_eq!(l.resolve("1").unwrap(), 1);
        assert_eq!(l.resolve("Goldfish, Carassius auratus").unwrap(), 1);
        assert_eq!(l.resolve("GOLDFISH").unwrap(), 1);
        assert_eq!(l.resolve("tabby").unwrap(), 2);
        assert_eq!(l.resolve("man-eater").unwrap(), 5);
        assert_eq!(l.resolve("tinca").unwrap(), 0);
        assert_eq!(l.resolve("carass").unwrap(), 1);
    }

    #[test]
    fn errors_escape_control_characters_of_the_label_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("labels.json");
        std::fs::write(&p, r#"{"\n2": "x"}"#).unwrap();
        let e = Labels::load(&p).unwrap_err().to_string();
        assert!(e.contains(r"key '\n2' is not a class index"), "{e}");
        let l = Labels::new(vec![
            "tig\u{1b}[31m cat".into(),
            "wild\ncat".into(),
            "dog".into(),
        ]);
        for spec in ["cat", "zebra"] {
            let e = l.resolve(spec).unwrap_err().to_string();
            assert!(!e.chars().any(char::is_control), "{e:?}");
            assert!(e.contains(r"tig\u{1b}[31m cat"), "{e}");
        }
    }

    #[test]
    fn ambiguous_and_unknown_targets_list_candidates() {
        let l = labels();
        let e = l.resolve("cat").unwrap_err().to_string();
        assert!(
            e.contains("ambiguous") && e.contains("tiger cat") && e.contains("Persian cat"),
            "{e}"
        );
        let e = l.resolve("goldfsh").unwrap_err().to_string();
        assert!(
            e.contains("no class matches") && e.contains("1 'goldfish'"),
            "{e}"
        );
        assert!(l.resolve("6").is_err());
        assert!(l.resolve("-1").is_err());
    }
}
