//! Embed an rpath to libtorch's `lib` directory so the `fool` binary (and the test
//! binaries) run without `LD_LIBRARY_PATH`. The directory is found the same way
//! torch-sys finds it: `$LIBTORCH/lib`, else the `torch` package of the `python3`
//! first on PATH (`LIBTORCH_USE_PYTORCH=1`).
use std::path::PathBuf;
use std::process::Command;

fn libtorch_lib_dir() -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("LIBTORCH_LIB") {
        return Some(PathBuf::from(dir).join("lib"));
    }
    if let Ok(dir) = std::env::var("LIBTORCH") {
        return Some(PathBuf::from(dir).join("lib"));
    }
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string());
    let out = Command::new(python)
        .args([
            "-c",
            "import os, torch; print(os.path.join(os.path.dirname(torch.__file__), 'lib'))",
        ])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    Some(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=LIBTORCH_LIB");
    println!("cargo:rerun-if-env-changed=LIBTORCH_USE_PYTORCH");
    println!("cargo:rerun-if-changed=build.rs");
    if let Some(dir) = libtorch_lib_dir() {
        // Applies to every linked artifact of this package: the binary, tests, benches.
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
        println!("cargo:rustc-env=FOOL_LIBTORCH_LIB={}", dir.display());
    }
}
