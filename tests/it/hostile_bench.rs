//! Hostile inputs and faults in `fool bench` and image folders (issue 12: no crash, no hang, no
//! lost file): concurrent runs into one --out, results without their bench.json, incomplete or
//! mixed shard sets, hostile labels.csv files, FIFOs, scheduler variables that are not
//! numbers, models that fail on one image or return too few rows. Each case: the exit code,
//! one line naming the thing at fault, and the files left behind.
use crate::common::{fool, tiny_model, trace};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;
use tch::{Device, Kind, Tensor};

/// A folder of `n` 32×32 images (`img00.png`…) with a labels.csv of `labels` (cycled).
fn image_folder(dir: &Path, n: u32, labels: &[usize]) -> PathBuf {
    let images = dir.join("images");
    std::fs::create_dir_all(&images).unwrap();
    let mut csv = String::from("file,index\n");
    for i in 0..n {
        let img = image::RgbImage::from_fn(32, 32, |x, y| {
            let v = (x * 7 + y * 13 + i * 31) as u8;
            image::Rgb([v, v.wrapping_mul(3), v.wrapping_add(i as u8 * 20)])
        });
        let name = format!("img{i:02}.png");
        img.save(images.join(&name)).unwrap();
        csv.push_str(&format!("{name},{}\n", labels[i as usize % labels.len()]));
    }
    std::fs::write(images.join("labels.csv"), csv).unwrap();
    images
}

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    model: PathBuf,
    images: PathBuf,
}

/// The tiny 10-class model and 10 images.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let model = root.join("tiny.pt");
    tiny_model(&model, 10, 32, 11);
    let images = image_folder(&root, 10, &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    Fixture {
        _dir: dir,
        root,
        model,
        images,
    }
}

/// The arguments of `fool bench IMAGES --model MODEL` with a quick configuration (`attack`,
/// two budgets, batch 3: 10 images make 4 batches), `--out OUT` and `extra`.
fn bench_args(
    images: &Path,
    model: &Path,
    out: &Path,
    attack: &str,
    extra: &[&str],
) -> Vec<OsString> {
    let mut a: Vec<OsString> = vec![
        "bench".into(),
        images.into(),
        "--model".into(),
        model.into(),
    ];
    a.extend(
        [
            "--size",
            "32",
            "--resize",
            "32",
            "--quiet",
            "--batch",
            "3",
            "--attack",
            attack,
            "--eps",
            "0,8/255",
            "--defense",
            "none",
        ]
        .map(OsString::from),
    );
    if !extra.contains(&"--seed") {
        a.extend(["--seed".into(), "1".into()]);
    }
    a.extend(["--out".into(), out.into()]);
    a.extend(extra.iter().map(OsString::from));
    a
}

/// `fool bench` with [`bench_args`] (fgsm).
fn bench(images: &Path, model: &Path, out: &Path, extra: &[&str]) -> assert_cmd::Command {
    let mut c = fool();
    c.args(bench_args(images, model, out, "fgsm", extra));
    c.timeout(Duration::from_secs(120));
    c
}

fn output(c: &mut assert_cmd::Command) -> Output {
    c.output().expect("run fool")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Expect exit 1 with one `fool: error:` line, no control characters, containing every needle.
fn refused(c: &mut assert_cmd::Command, needles: &[&str]) -> String {
    let o = output(c);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{c:?}: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
    assert!(err.starts_with("fool: error: "), "{err}");
    assert!(
        !err.trim_end().chars().any(|c| c.is_control()),
        "control characters: {err:?}"
    );
    for n in needles {
        assert!(err.contains(n), "stderr lacks {n:?}: {err}");
    }
    err
}

fn succeeds(c: &mut assert_cmd::Command) -> Output {
    let o = output(c);
    assert!(o.status.success(), "{c:?} failed: {}", stderr(&o));
    o
}

fn lines(p: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    v.sort();
    v
}

fn summary(out: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap()
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo");
}

/// The plan of [`bench`]'s run through the library (it takes the output directory's lock).
fn plan(f: &Fixture, out: &Path) -> fool::Result<fool::bench::Plan> {
    fool::bench::Plan::new(fool::bench::Settings {
        dataset: f.images.clone(),
        data: None,
        wnids: None,
        limit: None,
        shuffle: false,
        attacks: vec!["fgsm".into()],
        steps: None,
        early_stop: true,
        eps: vec![0.0, 8.0 / 255.0],
        norm: fool::attacks::Norm::Linf,
        defenses: vec!["none".into()],
        adaptive: false,
        eot: 10,
        targets: "untargeted".into(),
        batch: 3,
        seed: 1,
        shard: fool::bench::Shard::ALL,
        out: out.to_path_buf(),
        detector: None,
        detector_weight: 10.0,
        keep_examples: 0,
    })
}

#[test]
fn a_second_run_into_one_out_is_refused_and_a_dead_runs_lock_blocks_nothing() {
    let f = fixture();
    let out = f.root.join("run");
    // Held by this process (through the library): the CLI is refused at once, naming it.
    let held = plan(&f, &out).unwrap();
    let me = format!("PID {} on", std::process::id());
    refused(
        &mut bench(&f.images, &f.model, &out, &[]),
        &["--out", "in use by another fool bench", &me, "bench.lock"],
    );
    assert!(!out.join("results.jsonl").exists());
    // A merge into it, or from it, is refused too (unless partial results are asked for).
    refused(
        fool()
            .args(["bench", "merge"])
            .arg(&out)
            .arg("--out")
            .arg(f.root.join("merged")),
        &["still running", &me],
    );
    drop(held);
    assert!(!out.join("bench.lock").exists(), "lock file left behind");

    // A lock file left by a run that died holds no lock: the next run goes ahead.
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("bench.lock"), "999999 on elsewhere\n").unwrap();
    succeeds(&mut bench(&f.images, &f.model, &out, &[]));
    assert_eq!(lines(&out.join("results.jsonl")).len(), 20);
    assert!(!out.join("bench.lock").exists());

    // Two real processes: a long run, then a second into the same folder while it runs.
    let slow = f.root.join("slow");
    let slow_args = bench_args(&f.images, &f.model, &slow, "pgd", &["--steps", "100000"]);
    let mut first = std::process::Command::new(assert_cmd::cargo::cargo_bin("fool"))
        .current_dir(crate::common::root())
        .args(&slow_args)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = format!("PID {} on", first.id());
    let start = std::time::Instant::now();
    let written = format!("{} on", first.id());
    while !std::fs::read_to_string(slow.join("bench.lock")).is_ok_and(|t| t.starts_with(&written)) {
        assert!(first.try_wait().unwrap().is_none(), "the first run ended");
        assert!(start.elapsed().as_secs() < 60, "no lock after a minute");
        std::thread::sleep(Duration::from_millis(20));
    }
    let err = refused(
        fool().args(&slow_args).timeout(Duration::from_secs(120)),
        &["--out", "in use by another fool bench", &pid],
    );
    assert!(first.try_wait().unwrap().is_none(), "{err}");
    first.kill().unwrap(); // SIGKILL: no clean-up runs
    first.wait().unwrap();
    assert!(
        slow.join("bench.lock").exists(),
        "the killed run's lock file"
    );
    // …and its lock went with it.
    drop(plan(&f, &slow).expect("the dead run's lock blocks"));
}

#[test]
fn results_are_only_adopted_with_their_bench_json() {
    let f = fixture();
    let out = f.root.join("run");
    succeeds(&mut bench(&f.images, &f.model, &out, &[]));
    let rows = lines(&out.join("results.jsonl"));
    std::fs::remove_file(out.join("bench.json")).unwrap();
    // Another seed into the folder: the old rows are not adopted, and not touched.
    refused(
        &mut bench(&f.images, &f.model, &out, &["--seed", "2"]),
        &["results.jsonl", "bench.json", "is missing"],
    );
    assert_eq!(lines(&out.join("results.jsonl")), rows);
    assert!(!out.join("bench.json").exists());
    // An empty results.jsonl is no results: the run starts afresh.
    std::fs::write(out.join("results.jsonl"), "").unwrap();
    succeeds(&mut bench(&f.images, &f.model, &out, &["--seed", "2"]));
    assert_eq!(lines(&out.join("results.jsonl")).len(), 20);
    // A row that is not of the run in bench.json is refused, not counted.
    let mut text = std::fs::read_to_string(out.join("results.jsonl")).unwrap();
    text.push_str(&rows[0].replace("img00.png", "zz.png"));
    text.push('\n');
    std::fs::write(out.join("results.jsonl"), &text).unwrap();
    refused(
        &mut bench(&f.images, &f.model, &out, &["--seed", "2"]),
        &["results.jsonl", "row 21", "zz.png", "not one of its images"],
    );
    assert_eq!(
        std::fs::read_to_string(out.join("results.jsonl")).unwrap(),
        text
    );
}

#[test]
fn merge_refuses_incomplete_or_mixed_shard_sets() {
    let f = fixture();
    let run = |name: &str, extra: &[&str]| {
        let d = f.root.join(name);
        succeeds(&mut bench(&f.images, &f.model, &d, extra));
        d
    };
    let s0 = run("s0", &["--shard", "0/2"]);
    let s1 = run("s1", &["--shard", "1/2"]);
    let other = run("other", &["--shard", "1/2", "--seed", "2"]);
    let merged = f.root.join("merged");
    let merge = |dirs: &[&PathBuf], extra: &[&str]| {
        let mut c = fool();
        c.args(["bench", "merge"])
            .args(dirs)
            .arg("--out")
            .arg(&merged);
        c.args(extra).timeout(Duration::from_secs(120));
        c
    };
    // A missing shard (-q hides nothing): batches 1 and 3 of 4 are in no directory.
    refused(
        &mut merge(&[&s0], &["-q"]),
        &["--allow-partial", "4 of 8 units", "2 of 4 batches: 1, 3"],
    );
    // The same shard twice, by the same path or in a copy.
    refused(&mut merge(&[&s0, &s1, &s0], &[]), &["given twice"]);
    let copy = f.root.join("s0-copy");
    std::fs::create_dir(&copy).unwrap();
    for file in ["bench.json", "results.jsonl"] {
        std::fs::copy(s0.join(file), copy.join(file)).unwrap();
    }
    refused(
        &mut merge(&[&s0, &s1, &copy], &[]),
        &["s0-copy", "also in", "the same shard twice"],
    );
    // Shards of another seed.
    refused(
        &mut merge(&[&s0, &other], &[]),
        &[
            "other/bench.json",
            "settings differ",
            "seed",
            "not shards of one run",
        ],
    );
    assert!(!merged.exists(), "a refused merge wrote its output folder");

    // Partial on purpose: merged, and the report says what is missing.
    let o = succeeds(&mut merge(&[&s0], &["--allow-partial"]));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("partial: 4 unit(s) of work missing, in 2 of 4 batches (1, 3)"),
        "{text}"
    );
    for row in summary(&merged).as_array().unwrap() {
        // Batches 1 and 3 hold 3 + 1 of the 10 images.
        assert_eq!((&row["n_images"], &row["missing"]), (&6.into(), &4.into()));
    }
    let o = succeeds(&mut merge(&[&s0], &["--allow-partial", "--json"]));
    let printed: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(printed
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["missing"] == 4));

    // The whole set: no `missing` anywhere.
    std::fs::remove_dir_all(&merged).unwrap();
    let o = succeeds(&mut merge(&[&s0, &s1], &[]));
    assert!(!String::from_utf8_lossy(&o.stdout).contains("partial"));
    assert!(summary(&merged)
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r.get("missing").is_none() && r["n_images"] == 10));
}

#[test]
fn hostile_labels_csv_files_are_refused() {
    let f = fixture();
    let out = f.root.join("run");
    let csv = f.images.join("labels.csv");
    let original = std::fs::read_to_string(&csv).unwrap();
    for (extra, needles) in [
        // The same row twice would be counted twice.
        (
            "img00.png,0\n",
            vec![
                "labels.csv",
                "line 12",
                "img00.png is listed again",
                "line 2",
            ],
        ),
        // One file under two labels (spelled differently).
        (
            "./img03.png,7\n",
            vec!["labels.csv", "line 12", "listed again", "line 5"],
        ),
        (
            "../tiny.pt,1\n",
            vec!["labels.csv", "line 12", "outside the folder"],
        ),
        (
            "/etc/passwd,1\n",
            vec!["labels.csv", "line 12", "outside the folder"],
        ),
        (
            "\"a\u{1b}[31m.png\",1\n",
            vec!["labels.csv", "line 12", "control characters"],
        ),
    ] {
        std::fs::write(&csv, format!("{original}{extra}")).unwrap();
        refused(&mut bench(&f.images, &f.model, &out, &[]), &needles);
        assert!(!out.join("bench.json").exists());
    }
    // --wnids beside a labels.csv is not silently ignored.
    std::fs::write(&csv, &original).unwrap();
    let wnids = f.root.join("wnids.txt");
    std::fs::write(&wnids, "n01440764 tench\n").unwrap();
    refused(
        bench(&f.images, &f.model, &out, &[])
            .arg("--wnids")
            .arg(&wnids),
        &["--wnids", "has a labels.csv", "leave it out"],
    );
    // A byte-order mark before the header (spreadsheet exports) is no column name.
    std::fs::write(&csv, format!("\u{feff}{original}")).unwrap();
    let o = succeeds(&mut bench(&f.images, &f.model, &out, &["--json"]));
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(s.as_array().unwrap().iter().all(|r| r["n_images"] == 10));
    // labels.csv, or a synset list, that is a FIFO: refused, never opened for reading.
    std::fs::remove_file(&csv).unwrap();
    mkfifo(&csv);
    refused(
        &mut bench(&f.images, &f.model, &f.root.join("fifo"), &[]),
        &["labels.csv", "not a regular file"],
    );
    std::fs::remove_file(&csv).unwrap();
    mkfifo(&wnids.with_extension("fifo"));
    refused(
        bench(&f.images, &f.model, &f.root.join("fifo"), &[])
            .arg("--wnids")
            .arg(wnids.with_extension("fifo")),
        &["wnids.fifo", "not a regular file"],
    );
}

#[test]
fn fifos_in_the_folder_are_skipped_and_a_folder_of_unreadable_images_fails() {
    let f = fixture();
    // A FIFO listed as an image is reported unreadable (not read, no hang) and skipped.
    mkfifo(&f.images.join("pipe.png"));
    let mut csv = std::fs::read_to_string(f.images.join("labels.csv")).unwrap();
    csv.push_str("pipe.png,1\n");
    std::fs::write(f.images.join("labels.csv"), &csv).unwrap();
    let out = f.root.join("run");
    succeeds(&mut bench(&f.images, &f.model, &out, &[]));
    let skipped = std::fs::read_to_string(out.join("skipped.txt")).unwrap();
    assert!(
        skipped.starts_with("pipe.png\t") && skipped.contains("not a regular file"),
        "{skipped}"
    );
    assert!(summary(&out)
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["n_images"] == 10));

    // Every image unreadable: nothing was measured, which is an error, not an empty summary.
    let bad = f.root.join("bad");
    std::fs::create_dir(&bad).unwrap();
    let mut csv = String::from("file,index\n");
    for i in 0..4 {
        std::fs::write(bad.join(format!("x{i}.png")), "not a png").unwrap();
        csv.push_str(&format!("x{i}.png,0\n"));
    }
    mkfifo(&bad.join("x4.png"));
    csv.push_str("x4.png,0\n");
    std::fs::write(bad.join("labels.csv"), csv).unwrap();
    let out = f.root.join("bad-run");
    refused(
        &mut bench(&bad, &f.model, &out, &[]),
        &["bad", "none of the 5 images could be read", "skipped.txt"],
    );
    assert!(!out.join("summary.json").exists() && !out.join("results.jsonl").exists());
    assert_eq!(lines(&out.join("skipped.txt")).len(), 5);
}

#[test]
fn shard_variables_that_are_not_numbers_are_errors() {
    let f = fixture();
    let out = f.root.join("run");
    for (vars, needle) in [
        (
            vec![
                ("SLURM_ARRAY_TASK_ID", "x"),
                ("SLURM_ARRAY_TASK_COUNT", "2"),
            ],
            "SLURM_ARRAY_TASK_ID='x' is not a whole number",
        ),
        (
            vec![
                ("SLURM_ARRAY_TASK_ID", "1"),
                ("SLURM_ARRAY_TASK_COUNT", "two"),
            ],
            "SLURM_ARRAY_TASK_COUNT='two'",
        ),
        (
            vec![
                ("SLURM_ARRAY_TASK_ID", "1"),
                ("SLURM_ARRAY_TASK_COUNT", "2"),
                ("SLURM_ARRAY_TASK_MIN", "-1"),
            ],
            "SLURM_ARRAY_TASK_MIN='-1'",
        ),
        (
            vec![("SLURM_ARRAY_TASK_ID", "1")],
            "SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not",
        ),
        (
            vec![
                ("SLURM_ARRAY_TASK_ID", "0"),
                ("SLURM_ARRAY_TASK_COUNT", "2"),
                ("SLURM_ARRAY_TASK_MIN", "1"),
            ],
            "below SLURM_ARRAY_TASK_MIN=1",
        ),
        (
            vec![
                ("JOB_COMPLETION_INDEX", "1\u{1b}"),
                ("FOOL_SHARD_COUNT", "2"),
            ],
            "JOB_COMPLETION_INDEX='1\\u{1b}'",
        ),
        (
            vec![("JOB_COMPLETION_INDEX", "1"), ("FOOL_SHARD_COUNT", "two")],
            "FOOL_SHARD_COUNT='two'",
        ),
        (
            vec![("JOB_COMPLETION_INDEX", "2"), ("FOOL_SHARD_COUNT", "2")],
            "give shard 2/2",
        ),
    ] {
        let mut c = bench(&f.images, &f.model, &out, &[]);
        for (k, v) in &vars {
            c.env(k, v);
        }
        refused(&mut c, &["--shard", needle]);
        assert!(!out.exists(), "{vars:?}: output written");
    }
    // Through the library: empty means unset; an explicit --shard needs no variable.
    use fool::bench::Shard;
    assert_eq!(
        Shard::from_env(env(&[("SLURM_ARRAY_TASK_ID", " ")])).unwrap(),
        None
    );
    assert_eq!(
        Shard::from_env(env(&[
            ("SLURM_ARRAY_TASK_ID", "3"),
            ("SLURM_ARRAY_TASK_MIN", "2"),
            ("SLURM_ARRAY_TASK_COUNT", "2")
        ]))
        .unwrap(),
        Some(Shard { index: 1, count: 2 })
    );
    succeeds(bench(&f.images, &f.model, &out, &["--shard", "0/1"]).env("SLURM_ARRAY_TASK_ID", "x"));
}

/// A scheduler's environment of `vars`.
fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
    move |k| {
        vars.iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    }
}

/// A 3-class model: channel means through a fixed table indexed by the image's brightness,
/// which is out of range for a nearly white image (libtorch raises an index error).
fn fails_on_white(path: &Path) {
    trace(path, 32, |x| {
        let linear = x
            .mean_dim([2i64, 3].as_slice(), false, Kind::Float)
            .matmul(&Tensor::eye(3, (Kind::Float, Device::Cpu)));
        let bright = x.mean_dim([1i64, 2, 3].as_slice(), false, Kind::Float);
        let idx = (bright + 2.0).floor().clamp_min(0.0).to_kind(Kind::Int64);
        linear + Tensor::zeros([4, 3], (Kind::Float, Device::Cpu)).index_select(0, &idx)
    });
}

#[test]
fn bench_errors_name_the_image_or_model_at_fault() {
    let dir = tempfile::tempdir().unwrap();
    let images = image_folder(dir.path(), 5, &[0, 1, 2]);
    let model = dir.path().join("white.pt");
    fails_on_white(&model);
    // Without the white image the model runs.
    succeeds(&mut bench(&images, &model, &dir.path().join("ok"), &[]));
    image::RgbImage::from_pixel(32, 32, image::Rgb([255, 255, 255]))
        .save(images.join("white.png"))
        .unwrap();
    let mut csv = std::fs::read_to_string(images.join("labels.csv")).unwrap();
    csv.push_str("white.png,1\n");
    std::fs::write(images.join("labels.csv"), csv).unwrap();
    let out = dir.path().join("run");
    refused(
        &mut bench(&images, &model, &out, &[]),
        &[
            "white.png",
            "the model failed on this image",
            "index out of range",
        ],
    );
    assert!(!out.join("summary.json").exists());

    // A model that passes the load-time probe (batches of 1 and 2) but returns two rows for
    // a batch of 3: refused before any row is read, naming the model.
    let short = dir.path().join("short.pt");
    trace(&short, 32, |x| {
        x.mean_dim([2i64, 3].as_slice(), false, Kind::Float)
            .matmul(&Tensor::eye(3, (Kind::Float, Device::Cpu)))
            .slice(0, 0, 2, 1)
    });
    let out = dir.path().join("short");
    refused(
        &mut bench(&images, &short, &out, &[]),
        &[
            "short.pt",
            "a batch of 3 images",
            "[2, 3]",
            "expected [3, 3]",
        ],
    );
    assert!(!out.join("results.jsonl").exists());
}
