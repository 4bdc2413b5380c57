//! Embed an rpath to libtorch's `lib` directory so the `fool` binary (and the test
//! binaries) run without `LD_LIBRARY_PATH`. The directory is found the same way
//! torch-sys finds it: `$LIBTORCH/lib`, else the `torch` package of the `python3`
//! first on PATH (`LIBTORCH_USE_PYTORCH=1`).
//!
//! Also compiles `src/privacy/conv_grad.cpp` (one libtorch call tch does not expose) against
//! libtorch's headers, with the flags torch-sys uses for its own C++ (C++17, the library's
//! `_GLIBCXX_USE_CXX11_ABI`).
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

/// libtorch's include directory and C++11-ABI flag, from the same place as its `lib`.
fn libtorch_include(lib: &std::path::Path) -> (PathBuf, String) {
    let root = lib.parent().map(PathBuf::from).unwrap_or_default();
    let abi = std::env::var("LIBTORCH_CXX11_ABI").ok().or_else(|| {
        if std::env::var("LIBTORCH").is_ok() {
            return None;
        }
        let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string());
        let out = Command::new(python)
            .args([
                "-c",
                "import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))",
            ])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    });
    (root.join("include"), abi.unwrap_or_else(|| "1".to_string()))
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
        println!("cargo:rerun-if-changed=src/privacy/conv_grad.cpp");
        let (include, abi) = libtorch_include(&dir);
        cc::Build::new()
            .cpp(true)
            .file("src/privacy/conv_grad.cpp")
            .include(&include)
            .include(include.join("torch/csrc/api/include"))
            .flag("-std=c++17")
            .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
            .flag("-DGLOG_USE_GLOG_EXPORT")
            .flag_if_supported("-Wno-unused-parameter")
            .warnings(false)
            .compile("fool_conv_grad");
    } else {
        panic!("libtorch not found: set LIBTORCH, or LIBTORCH_USE_PYTORCH=1 with torch in python3");
    }
}
