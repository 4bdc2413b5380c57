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

/// What `python -c code` prints, trimmed (the `PYTHON` interpreter, else `python3`).
fn python_prints(code: &str) -> Option<String> {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string());
    let out = Command::new(python).args(["-c", code]).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Whether libtorch comes from a directory named by the environment rather than from Python.
fn libtorch_from_env() -> Option<PathBuf> {
    ["LIBTORCH_LIB", "LIBTORCH"]
        .iter()
        .find_map(|v| std::env::var(v).ok())
        .map(PathBuf::from)
}

fn libtorch_lib_dir() -> Option<PathBuf> {
    if let Some(dir) = libtorch_from_env() {
        return Some(dir.join("lib"));
    }
    python_prints("import os, torch; print(os.path.join(os.path.dirname(torch.__file__), 'lib'))")
        .map(PathBuf::from)
}

/// libtorch's include directory and C++11-ABI flag, from the same place as its `lib`.
fn libtorch_include(lib: &std::path::Path) -> (PathBuf, String) {
    let root = lib.parent().map(PathBuf::from).unwrap_or_default();
    let abi = std::env::var("LIBTORCH_CXX11_ABI").ok().or_else(|| {
        if libtorch_from_env().is_some() {
            return None;
        }
        python_prints("import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))")
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
