//! `--device auto|cpu|cuda[:N]`, and making sure libtorch's CUDA backend is really loaded.
//!
//! The linker drops `libtorch_cuda.so` from the binary because no symbol of it is referenced,
//! and libtorch then reports CUDA as unavailable even on a GPU machine. We `dlopen` it (found
//! through the binary's rpath or `LD_LIBRARY_PATH`) before asking libtorch about CUDA.
use crate::{Error, Result};
use std::sync::Once;
use tch::Device;

static LOAD_CUDA: Once = Once::new();

/// Load `libtorch_cuda.so` into the process if it can be found. Harmless when it cannot.
pub fn load_cuda_backend() {
    LOAD_CUDA.call_once(|| {
        let mut candidates = vec!["libtorch_cuda.so".to_string()];
        if let Some(dir) = option_env!("FOOL_LIBTORCH_LIB") {
            candidates.push(format!("{dir}/libtorch_cuda.so"));
        }
        for name in candidates {
            let Ok(c) = std::ffi::CString::new(name) else {
                continue;
            };
            // SAFETY: dlopen with a valid NUL-terminated path; the handle is kept for the
            // life of the process on purpose.
            let handle = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
            if !handle.is_null() {
                break;
            }
        }
    });
}

/// Make glibc's malloc keep large CPU buffers for reuse instead of mapping and unmapping them.
///
/// libtorch's CPU tensors come from `malloc`. A buffer above glibc's mmap threshold (dynamic, at
/// most 32 MiB; one activation of MobileNetV2 for a batch of 32 is ~50 MiB) gets fresh pages
/// from the kernel and is unmapped when freed, so every attack step pays page faults for its
/// activations: kernel time was 65% of user time in the 1000-image sweep, and serving such
/// buffers from the heap (thresholds of 1 GiB) made a PGD run 1.5× faster (BENCHMARKS.md) at
/// ~15% more peak memory. Applied once at start-up by the CLI; left alone when the user set
/// glibc's own variables (`MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_`, `GLIBC_TUNABLES`)
/// or `FOOL_MALLOC=default`. Returns whether the settings were applied (glibc Linux only).
pub fn tune_cpu_allocator() -> bool {
    let user_set = [
        "MALLOC_MMAP_THRESHOLD_",
        "MALLOC_TRIM_THRESHOLD_",
        "GLIBC_TUNABLES",
    ]
    .iter()
    .any(|v| std::env::var_os(v).is_some());
    if user_set || std::env::var("FOOL_MALLOC").is_ok_and(|v| v == "default") {
        return false;
    }
    set_malloc_thresholds(1 << 30)
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_malloc_thresholds(bytes: libc::c_int) -> bool {
    // SAFETY: mallopt only changes allocator parameters; it is called before other threads
    // allocate (start of main) and returns 1 on success.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, bytes) == 1
            && libc::mallopt(libc::M_TRIM_THRESHOLD, bytes) == 1
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_malloc_thresholds(_bytes: i32) -> bool {
    false
}

/// Whether a CUDA device is usable (after loading the CUDA backend).
pub fn cuda_available() -> bool {
    load_cuda_backend();
    tch::Cuda::is_available()
}

/// Parse a `--device` value.
pub fn parse_device(spec: &str) -> Result<Device> {
    let spec = spec.trim().to_ascii_lowercase();
    match spec.as_str() {
        "cpu" => Ok(Device::Cpu),
        "auto" => Ok(if cuda_available() {
            Device::Cuda(0)
        } else {
            Device::Cpu
        }),
        s if s == "cuda" || s.starts_with("cuda:") => {
            let index = match s.strip_prefix("cuda:") {
                None => 0,
                Some(n) => n.parse::<usize>().map_err(|_| {
                    Error::field(
                        "device",
                        format!("'{spec}': expected cuda:N with N a number"),
                    )
                })?,
            };
            if !cuda_available() {
                return Err(Error::field(
                    "device",
                    format!("'{spec}': CUDA is not available on this machine (no GPU, or libtorch_cuda.so not found)"),
                ));
            }
            let count = tch::Cuda::device_count() as usize;
            if index >= count {
                return Err(Error::field(
                    "device",
                    format!("'{spec}': only {count} CUDA device(s) present"),
                ));
            }
            Ok(Device::Cuda(index))
        }
        _ => Err(Error::field(
            "device",
            format!("'{spec}': expected auto, cpu, cuda or cuda:N"),
        )),
    }
}

/// A short name for reports: `cpu`, `cuda:0`.
pub fn device_name(d: Device) -> String {
    match d {
        Device::Cpu => "cpu".into(),
        Device::Cuda(i) => format!("cuda:{i}"),
        other => format!("{other:?}").to_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn glibc_accepts_the_malloc_thresholds() {
        assert!(super::set_malloc_thresholds(1 << 30));
    }
}
