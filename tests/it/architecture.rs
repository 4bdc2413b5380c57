//! The one-way stack of ARCHITECTURE.md, checked on the sources: no library module refers to
//! a module above it (`crate::NAME` in code, comments aside), and no library file is longer
//! than the size the architecture asks for.
use crate::common::root;

/// Top to bottom; a module may use only modules strictly below it. Modules on one line
/// (`bench`, `train`) are siblings and may not use each other.
const LAYERS: &[&[&str]] = &[
    &["report"],
    &["lira", "pate"],
    &["bench", "serve", "synth", "train"],
    &["detect"],
    &["defenses"],
    &["attacks"],
    &["audit"],
    &["privacy"],
    &["nets"],
    &["datasets"],
    &["model"],
    &["preprocess"],
    &["perturbation"],
    &["labels"],
    &["plot"],
    &["imageio"],
    &["npy"],
    &["files"],
    &["optim", "special"],
    &["rng"],
    &["device"],
    &["error"],
];

fn rank(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

fn rust_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn no_module_uses_one_above_it() {
    let src = root().join("src");
    let mut files = vec![];
    rust_files(&src, &mut files);
    let mut violations = vec![];
    let mut unknown = vec![];
    for f in &files {
        let rel = f.strip_prefix(&src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let module = first.trim_end_matches(".rs").to_string();
        if ["lib", "main", "cli"].contains(&module.as_str()) {
            continue;
        }
        let Some(own) = rank(&module) else {
            unknown.push(module);
            continue;
        };
        let text = std::fs::read_to_string(f).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            let mut rest = code;
            while let Some(i) = rest.find("crate::") {
                rest = &rest[i + 7..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if name == module {
                    continue;
                }
                match rank(&name) {
                    Some(r) if r <= own => violations.push(format!(
                        "{}:{}: {module} uses {name}, which is not below it",
                        rel.display(),
                        n + 1
                    )),
                    _ => {}
                }
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "modules missing from LAYERS: {unknown:?}"
    );
    assert!(
        violations.is_empty(),
        "upward imports:\n{}",
        violations.join("\n")
    );
}

#[test]
fn library_files_stay_small() {
    let mut files = vec![];
    rust_files(&root().join("src"), &mut files);
    let long: Vec<String> = files
        .iter()
        .filter(|f| !f.starts_with(root().join("src/cli")))
        .filter_map(|f| {
            let n = std::fs::read_to_string(f).unwrap().lines().count();
            (n > 460).then(|| format!("{} ({n} lines)", f.display()))
        })
        .collect();
    assert!(long.is_empty(), "library files over ~450 lines: {long:?}");
}
