//! Hostile inputs and faults in training, audits and the data set readers (issue 12, "no
//! crash, no hang, no lost file"): a full disk while saving, a run that diverges, settings
//! that leave nothing to train on, malformed data set files and `.npy` arrays, FIFOs. Each:
//! exit 1 with one clear line naming the file or flag, no panic or abort, no hang, nothing
//! partial left behind, and the last good state kept.
use crate::common::{asset, fool, trace};
use crate::train::isolated;
use fool::datasets::{self, DatasetName, Split};
use fool::train::optim::OptKind;
use fool::train::{Outcome, Resume, Run, RunDir, Silent, TrainConfig};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;
use tch::Device;

/// Run `cmd` with a time limit (a hang fails the test).
fn output(cmd: &mut assert_cmd::Command) -> Output {
    cmd.timeout(Duration::from_secs(300))
        .output()
        .expect("run fool")
}

/// Expect exit 1 with one `fool: error:` line, free of control characters, containing every
/// needle; returns the line.
fn refused(out: &Output, needles: &[&str]) -> String {
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "exit status: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
    assert!(err.starts_with("fool: error: "), "{err}");
    assert!(
        !err.trim_end().chars().any(char::is_control),
        "control characters: {err:?}"
    );
    for n in needles {
        assert!(err.contains(n), "stderr lacks {n:?}: {err}");
    }
    err
}

/// `fool train` on the first `limit` MNIST examples, 50 a batch, no samples, quiet.
fn train_args(out: &Path, limit: usize, epochs: usize) -> Vec<String> {
    format!("train --dataset mnist --limit {limit} --epochs {epochs} --batch 50 --samples 0 -q")
        .split(' ')
        .map(String::from)
        .chain(["--out".into(), out.display().to_string()])
        .collect()
}

/// Temp files a failed save must not leave behind, anywhere under `dir`.
fn leftovers(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().to_string();
        if name.starts_with(".state-") || name.starts_with(".fool-tmp-") || name.starts_with("tmp-")
        {
            found.push(p.clone());
        }
        if p.is_dir() {
            found.extend(leftovers(&p));
        }
    }
    found
}

/// The epochs recorded in `run/state/state.json`.
fn state_epochs(run: &Path) -> usize {
    let text = std::fs::read_to_string(run.join("state/state.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["history"].as_array().unwrap().len()
}

/// A `std::process::Command` for fool whose files may not grow past `bytes` (RLIMIT_FSIZE,
/// with SIGXFSZ ignored so that a write past it fails with EFBIG instead of killing): a disk
/// that fills up for this process only, no root needed.
fn fool_with_file_limit(bytes: u64) -> assert_cmd::Command {
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("fool"));
    cmd.current_dir(crate::common::root());
    unsafe {
        cmd.pre_exec(move || limit_file_size(bytes).map(drop));
    }
    assert_cmd::Command::from_std(cmd)
}

/// Limit the size of files this process writes to `bytes` (see [`fool_with_file_limit`]);
/// returns the limit before.
fn limit_file_size(bytes: u64) -> std::io::Result<libc::rlimit> {
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        if libc::getrlimit(libc::RLIMIT_FSIZE, &mut old) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let lim = libc::rlimit {
            rlim_cur: (bytes as libc::rlim_t).min(old.rlim_max),
            rlim_max: old.rlim_max,
        };
        if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(old)
}

/// A tmpfs of `kib` KiB mounted on `dir`, unmounted on drop; None where mounting is not
/// allowed (not root).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, kib: u64) -> Option<Tmpfs> {
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs"])
            .arg(dir)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(dir.to_path_buf()))
    }

    fn resize(&self, kib: u64) {
        let s = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={kib}k")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(s.success(), "remount");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_stops_training_with_one_line_and_keeps_the_last_state() {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk");
    std::fs::create_dir(&disk).unwrap();
    // A real full disk: a 1 MiB tmpfs filled by a checkpoint (the TorchScript export) and the
    // state (tensors.pt) after every epoch.
    let Some(mount) = Tmpfs::mount(&disk, 1024) else {
        // CI runs as root and can mount: there the test must run, never skip.
        assert!(
            std::env::var_os("CI").is_none(),
            "cannot mount a tmpfs in CI: the full-disk test would not run"
        );
        eprintln!(
            "note: not allowed to mount a tmpfs here; the file-size-limit tests cover saving"
        );
        return;
    };
    let out = disk.join("run");
    let mut args = train_args(&out, 200, 12);
    args.extend(["--checkpoint-every".into(), "1".into()]);
    let o = output(fool().args(&args));
    let err = refused(&o, &[&out.display().to_string(), "No space left on device"]);
    assert!(leftovers(&out).is_empty(), "{:?}", leftovers(&out));
    let done = state_epochs(&out);
    assert!(done >= 1, "{err}: no state kept");
    assert!(!out.join("metadata.json").exists(), "a finished run?");
    // With room again, the run resumes from the state kept and finishes.
    mount.resize(65536);
    args.push("--resume".into());
    let o = output(fool().args(&args));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metadata.json")).unwrap()).unwrap();
    assert_eq!(meta["epochs_done"], 12);
    assert!(leftovers(&out).is_empty(), "{:?}", leftovers(&out));
    drop(mount);
}

#[test]
fn a_failed_state_save_is_one_line_and_leaves_no_temp_files() {
    // Files may not grow past 64 KiB: the state of epoch 1 (tensors.pt, ~200 KiB) cannot be
    // written. (Without the fix libtorch's archive writer ended in `std::terminate`.)
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let o = output(fool_with_file_limit(64 << 10).args(train_args(&out, 200, 2)));
    let state = out.join("state").join("tensors.pt");
    refused(&o, &[&state.display().to_string(), "File too large"]);
    assert!(leftovers(&out).is_empty(), "{:?}", leftovers(&out));
    assert!(!out.join("state").exists());
    assert!(!out.join("model.pt").exists());
}

fn small_config(epochs: usize) -> TrainConfig {
    TrainConfig {
        dataset: DatasetName::Mnist,
        data_dir: asset("mnist"),
        arch: "cnn".parse().unwrap(),
        epochs,
        batch: 50,
        lr: 0.1,
        optimizer: OptKind::Sgd { momentum: 0.9 },
        seed: 0,
        limit: Some(200),
        half: None,
        dp: None,
        checkpoint_every: 0,
        audit_every: 0,
        audit_examples: 10_000,
        partition: None,
        student: None,
        train_folder: None,
        recipe: Default::default(),
    }
}

#[test]
fn a_state_that_cannot_be_saved_keeps_the_previous_one() {
    isolated(
        "hostile_train::a_state_that_cannot_be_saved_keeps_the_previous_one",
        || {
            let dir = tempfile::tempdir().unwrap();
            let root = dir.path().join("run");
            let run = |resume| Run {
                resume,
                ..Run::new(small_config(2), RunDir::new(&root), Device::Cpu)
            };
            // Epoch 1 saved, then stopped.
            let o = run(Resume::Never)
                .train(&mut crate::train::StopAfter(1))
                .unwrap();
            assert!(matches!(o, Outcome::Stopped { epochs_done: 1 }), "{o:?}");
            let tensors = root.join("state/tensors.pt");
            let before = std::fs::read(&tensors).unwrap();
            // Epoch 2 cannot be saved: one error naming the file, the state of epoch 1 stays.
            let old = limit_file_size(64 << 10).unwrap();
            let e = run(Resume::Continue).train(&mut Silent).unwrap_err();
            assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_FSIZE, &old) }, 0);
            let msg = e.to_string();
            assert!(
                msg.contains(&tensors.display().to_string()) && msg.contains("File too large"),
                "{msg}"
            );
            assert_eq!(state_epochs(&root), 1);
            assert_eq!(std::fs::read(&tensors).unwrap(), before);
            assert!(leftovers(&root).is_empty(), "{:?}", leftovers(&root));
            // …and resumes from it.
            let o = run(Resume::Continue).train(&mut Silent).unwrap();
            assert!(matches!(o, Outcome::Finished(m) if m.epochs_done == 2));
        },
    );
}

#[test]
fn a_diverging_run_stops_with_the_epoch_and_keeps_the_last_good_state() {
    let dir = tempfile::tempdir().unwrap();
    // A fresh run with a huge learning rate: no NaN model is exported.
    let out = dir.path().join("huge");
    let mut args = train_args(&out, 200, 2);
    args.extend(["--lr".into(), "1e10".into()]);
    let err = refused(
        &output(fool().args(&args)),
        &["training: epoch 1", "not finite"],
    );
    assert!(err.contains("learning rate"), "{err}");
    for f in ["model.pt", "metadata.json", "state"] {
        assert!(!out.join(f).exists(), "{f} written");
    }

    // One good epoch; then (its state set to go on with a huge learning rate) epoch 2
    // diverges: the model and state of epoch 1 stay as they were.
    let out = dir.path().join("good");
    let o = output(fool().args(train_args(&out, 200, 1)));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let sp = out.join("state/state.json");
    let mut state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&sp).unwrap()).unwrap();
    state["config"]["epochs"] = 2.into();
    state["config"]["lr"] = 1e10.into();
    std::fs::write(&sp, serde_json::to_vec_pretty(&state).unwrap()).unwrap();
    let files = [
        "model.pt",
        "metadata.json",
        "state/tensors.pt",
        "state/state.json",
    ];
    let before: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(out.join(f)).unwrap())
        .collect();
    let mut args = train_args(&out, 200, 2);
    args.extend(["--lr", "1e10", "--resume"].map(String::from));
    let err = refused(
        &output(fool().args(&args)),
        &["training: epoch 2", "not finite"],
    );
    assert!(
        err.contains("the state saved after epoch 1 is kept"),
        "{err}"
    );
    for (f, b) in files.iter().zip(&before) {
        assert!(std::fs::read(out.join(f)).unwrap() == *b, "{f} changed");
    }
    assert!(leftovers(&out).is_empty(), "{:?}", leftovers(&out));
}

#[test]
fn settings_without_meaning_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let cases: &[(usize, &[&str], &[&str])] = &[
        (200, &["--lr=-0.01"], &["--lr", "-0.01", "positive"]),
        (200, &["--lr", "-0.01"], &["--lr", "-0.01", "positive"]),
        (200, &["--lr", "nan"], &["--lr", "NaN"]),
        (200, &["--lr", "inf"], &["--lr", "inf"]),
        (200, &["--momentum", "nan"], &["--momentum", "NaN"]),
        (200, &["--momentum", "1"], &["--momentum"]),
        (
            1,
            &["--half", "1"],
            &["--half", "1 training example", "empty"],
        ),
    ];
    for (limit, extra, needles) in cases {
        let mut a = train_args(&out, *limit, 1);
        a.extend(extra.iter().map(|s| s.to_string()));
        refused(&output(fool().args(&a)), needles);
        assert!(!out.join("model.pt").exists(), "{extra:?}");
    }
}

/// `.npy` bytes: the header dict `dict` (padded as numpy pads it), then `data`.
fn npy(dict: &str, data: &[u8]) -> Vec<u8> {
    let mut h = dict.as_bytes().to_vec();
    while !(10 + h.len() + 1).is_multiple_of(64) {
        h.push(b' ');
    }
    h.push(b'\n');
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    b.extend((h.len() as u16).to_le_bytes());
    b.extend(h);
    b.extend(data);
    b
}

fn f32_npy(rows: usize, cols: usize, value: impl Fn(usize) -> f32) -> Vec<u8> {
    let data: Vec<u8> = (0..rows * cols)
        .flat_map(|i| value(i).to_le_bytes())
        .collect();
    npy(
        &format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {cols}), }}"),
        &data,
    )
}

fn i64_npy(values: &[i64]) -> Vec<u8> {
    let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    npy(
        &format!(
            "{{'descr': '<i8', 'fortran_order': False, 'shape': ({},), }}",
            values.len()
        ),
        &data,
    )
}

/// Four audit arrays in `dir`: 100 members and 100 non-members, 10 classes.
fn audit_arrays(dir: &Path) -> [PathBuf; 4] {
    let names = ["tl.npy", "ty.npy", "vl.npy", "vy.npy"];
    let paths = names.map(|n| dir.join(n));
    let labels: Vec<i64> = (0..100).map(|i| i % 10).collect();
    std::fs::write(&paths[0], f32_npy(100, 10, |i| (i % 7) as f32)).unwrap();
    std::fs::write(&paths[1], i64_npy(&labels)).unwrap();
    std::fs::write(&paths[2], f32_npy(100, 10, |i| (i % 5) as f32)).unwrap();
    std::fs::write(&paths[3], i64_npy(&labels)).unwrap();
    paths
}

fn audit_cmd(p: &[PathBuf; 4]) -> assert_cmd::Command {
    let mut c = fool();
    c.args(["audit", "-q", "--train-logits"])
        .arg(&p[0])
        .arg("--train-labels")
        .arg(&p[1])
        .arg("--test-logits")
        .arg(&p[2])
        .arg("--test-labels")
        .arg(&p[3]);
    c
}

#[test]
fn audit_arrays_that_cannot_be_audited_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = audit_arrays(dir.path());
    // The arrays are good.
    let o = output(audit_cmd(&p).args(["--folds", "100"]));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // More folds than members.
    refused(
        &output(audit_cmd(&p).args(["--folds", "1000"])),
        &[
            "--folds",
            "1000 folds",
            "100 members and 100 non-members",
            "at most 100",
        ],
    );
    // A malformed header with raw control bytes: one line, none of them.
    let tl = &p[0];
    let name = tl.display().to_string();
    let mut bad = npy(
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }",
        &[0; 24],
    );
    bad[20..26].copy_from_slice(b"\x07\x1b[31m");
    std::fs::write(tl, &bad).unwrap();
    refused(&output(&mut audit_cmd(&p)), &[&name, ".npy"]);
    // A header declaring far more data than the file holds (10¹² floats): refused before
    // anything is allocated.
    std::fs::write(
        tl,
        npy(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (100000000000, 10), }",
            &[0; 40],
        ),
    )
    .unwrap();
    refused(
        &output(&mut audit_cmd(&p)),
        &[&name, "truncated", "(100000000000, 10)"],
    );
    // Non-finite logits.
    for v in [f32::NAN, f32::INFINITY] {
        std::fs::write(tl, f32_npy(100, 10, |i| if i == 57 { v } else { 1.0 })).unwrap();
        refused(
            &output(&mut audit_cmd(&p)),
            &[&name, "NaN or infinite", "row 5, column 7"],
        );
    }
    // Finite logits so far apart that the loss overflows (float64 ±1e308).
    let mut data = Vec::new();
    for i in 0..1000 {
        let v: f64 = match i % 10 {
            0 => -1e308,
            1 => 1e308,
            _ => 0.0,
        };
        data.extend(v.to_le_bytes());
    }
    let labels: Vec<i64> = vec![0; 100];
    std::fs::write(
        tl,
        npy(
            "{'descr': '<f8', 'fortran_order': False, 'shape': (100, 10), }",
            &data,
        ),
    )
    .unwrap();
    std::fs::write(&p[1], i64_npy(&labels)).unwrap();
    refused(&output(&mut audit_cmd(&p)), &[&name, "row 0", "not finite"]);
}

#[test]
fn a_model_with_non_finite_outputs_is_refused_by_the_audit() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("nan.pt");
    trace(&model, 28, |x| x.flatten(1, -1).narrow(1, 0, 10) * f64::NAN);
    let o = output(
        fool()
            .args([
                "audit",
                "-q",
                "--dataset",
                "mnist",
                "--members",
                "20",
                "--max-examples",
                "20",
            ])
            .arg("--model")
            .arg(&model),
    );
    refused(&o, &[&model.display().to_string(), "NaN or infinite"]);
}

/// A MNIST folder in `dir` with the given test image and label files (uncompressed).
fn mnist_test_split(dir: &Path, images: &[u8], labels: &[u8]) -> String {
    std::fs::write(dir.join("t10k-images-idx3-ubyte"), images).unwrap();
    std::fs::write(dir.join("t10k-labels-idx1-ubyte"), labels).unwrap();
    datasets::load(DatasetName::Mnist, dir, Split::Test)
        .map(|_| String::new())
        .unwrap_or_else(|e| e.to_string())
}

fn idx(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut b = magic.to_be_bytes().to_vec();
    for d in dims {
        b.extend(d.to_be_bytes());
    }
    b.extend(data);
    b
}

#[test]
fn data_set_files_with_more_or_fewer_records_than_they_say_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    // CIFAR-10: one record more than a batch holds.
    let test = dir.join("test_batch.bin");
    std::fs::write(&test, vec![0u8; 10_001 * 3073]).unwrap();
    let e = datasets::load(DatasetName::Cifar10, dir, Split::Test)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("test_batch.bin") && e.contains("10001 records, expected at most 10000"),
        "{e}"
    );
    // …and through `fool train`, the file named on one line.
    for i in 1..=5 {
        std::fs::write(dir.join(format!("data_batch_{i}.bin")), vec![0u8; 3073]).unwrap();
    }
    std::fs::write(dir.join("data_batch_1.bin"), vec![0u8; 10_001 * 3073]).unwrap();
    let o = output(
        fool()
            .args([
                "train",
                "--dataset",
                "cifar10",
                "--epochs",
                "1",
                "-q",
                "--data",
            ])
            .arg(dir)
            .arg("--out")
            .arg(dir.join("run")),
    );
    refused(&o, &["data_batch_1.bin", "10001 records"]);

    // MNIST: counts in the header that the data does not match, and an empty split.
    let m = tempfile::tempdir().unwrap();
    let px = vec![0u8; 3 * 784];
    let lab3 = idx(2049, &[3], &[1, 2, 3]);
    let e = mnist_test_split(m.path(), &idx(2051, &[2, 28, 28], &px), &lab3);
    assert!(
        e.contains("t10k-images-idx3-ubyte") && e.contains("trailing data"),
        "{e}"
    );
    let e = mnist_test_split(m.path(), &idx(2051, &[4, 28, 28], &px), &lab3);
    assert!(
        e.contains("t10k-images-idx3-ubyte") && e.contains("truncated"),
        "{e}"
    );
    let e = mnist_test_split(
        m.path(),
        &idx(2051, &[3, 28, 28], &px),
        &idx(2049, &[4], &[1, 2, 3]),
    );
    assert!(
        e.contains("t10k-labels-idx1-ubyte") && e.contains("truncated"),
        "{e}"
    );
    let e = mnist_test_split(
        m.path(),
        &idx(2051, &[3, 28, 28], &px),
        &idx(2049, &[2], &[1, 2]),
    );
    assert!(e.contains("3 images but") && e.contains("2 labels"), "{e}");
    let e = mnist_test_split(
        m.path(),
        &idx(2051, &[0, 28, 28], &[]),
        &idx(2049, &[0], &[]),
    );
    assert!(
        e.contains("t10k-images-idx3-ubyte") && e.contains("no images"),
        "{e}"
    );
    assert_eq!(
        mnist_test_split(m.path(), &idx(2051, &[3, 28, 28], &px), &lab3),
        ""
    );
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo");
}

#[test]
fn fifos_given_as_data_arrays_models_or_run_files_are_refused_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let fifo_msg = "not a regular file";
    // A data set file.
    let data = d.join("mnist");
    std::fs::create_dir(&data).unwrap();
    for f in [
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
    ] {
        std::os::unix::fs::symlink(asset("mnist").join(f), data.join(f)).unwrap();
    }
    mkfifo(&data.join("t10k-labels-idx1-ubyte.gz"));
    let o = output(
        fool()
            .args([
                "train",
                "--dataset",
                "mnist",
                "--epochs",
                "1",
                "-q",
                "--data",
            ])
            .arg(&data)
            .arg("--out")
            .arg(d.join("run0")),
    );
    refused(&o, &["t10k-labels-idx1-ubyte.gz", fifo_msg]);
    // An audit array.
    let p = audit_arrays(d);
    std::fs::remove_file(&p[3]).unwrap();
    mkfifo(&p[3]);
    refused(&output(&mut audit_cmd(&p)), &["vy.npy", fifo_msg]);
    // A model to audit.
    let model = d.join("model.pt");
    mkfifo(&model);
    let o = output(
        fool()
            .args([
                "audit",
                "-q",
                "--dataset",
                "mnist",
                "--members",
                "10",
                "--model",
            ])
            .arg(&model),
    );
    refused(&o, &["model.pt", fifo_msg]);

    // A run's members.npy and its state.
    let out = d.join("run");
    let o = output(fool().args(train_args(&out, 100, 1)));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::remove_file(out.join("members.npy")).unwrap();
    mkfifo(&out.join("members.npy"));
    let o = output(
        fool()
            .args(["audit", "-q", "--max-examples", "20", "--model"])
            .arg(out.join("model.pt")),
    );
    refused(&o, &["members.npy", fifo_msg]);
    std::fs::remove_file(out.join("state/state.json")).unwrap();
    mkfifo(&out.join("state/state.json"));
    let mut args = train_args(&out, 100, 1);
    args.push("--resume".into());
    refused(&output(fool().args(&args)), &["state.json", fifo_msg]);
}
