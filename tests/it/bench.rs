//! `fool bench` on a tiny traced model and a synthetic labelled folder: results, summary,
//! chart, resume after interruption, shards + merge, unreadable files, bad input.

use crate::common::{asset, fool, ok, ok_json};
use assert_cmd::cargo::CommandCargoExt;
use fool::attacks::image::ModelRef;
use fool::attacks::Norm;
use fool::bench;
use fool::labels::Labels;
use fool::model::Classifier;
use fool::preprocess::Preprocess;
use std::ffi::OsString;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use tch::Device;

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    model: PathBuf,
    images: PathBuf,
}

/// 10 random 32×32 images labelled with the tiny model's own prediction, except two
/// labelled wrong, plus labels.csv.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let model = root.join("tiny.pt");
    crate::common::tiny_model(&model, 10, 32, 11);
    let images = root.join("images");
    std::fs::create_dir(&images).unwrap();
    let pre = Preprocess {
        size: 32,
        resize: 32,
        ..Preprocess::default()
    };
    let m = Classifier::load(&model, Device::Cpu, pre).unwrap();
    let mut csv = String::from("file,index\n");
    for i in 0..10u32 {
        let img = image::RgbImage::from_fn(32, 32, |x, y| {
            let v = (x * 7 + y * 13 + i * 31) as u8;
            image::Rgb([v, v.wrapping_mul(3), v.wrapping_add(i as u8 * 20)])
        });
        let name = format!("img{i:02}.png");
        img.save(images.join(&name)).unwrap();
        let x = m.pre.pixels(&img, Device::Cpu).unsqueeze(0);
        let pred = tch::no_grad(|| m.logits(&x))
            .unwrap()
            .argmax(-1, false)
            .int64_value(&[0]);
        let label = if i < 8 { pred } else { (pred + 1) % 10 };
        csv.push_str(&format!("{name},{label}\n"));
    }
    std::fs::write(images.join("labels.csv"), csv).unwrap();
    Fixture {
        _dir: dir,
        root,
        model,
        images,
    }
}

const EPS: &str = "0,2/255,8/255";

fn bench_cmd(f: &Fixture, out: &Path, extra: &[&str]) -> assert_cmd::Command {
    bench_cmd_eps(f, out, EPS, extra)
}

/// `fool bench` on the fixture: sgd, 3 defenses (2 adaptive), the given eps list.
fn bench_cmd_eps(f: &Fixture, out: &Path, eps: &str, extra: &[&str]) -> assert_cmd::Command {
    let mut c = fool();
    c.args(bench_args(f, out, eps, extra));
    c
}

/// The arguments of [`bench_cmd_eps`] (5 steps unless `extra` sets them).
fn bench_args(f: &Fixture, out: &Path, eps: &str, extra: &[&str]) -> Vec<OsString> {
    let mut a: Vec<OsString> = vec!["bench".into(), f.images.clone().into()];
    a.extend(["--model".into(), f.model.clone().into()]);
    a.extend(
        [
            "--size",
            "32",
            "--resize",
            "32",
            "--quiet",
            "--batch",
            "3",
            "--seed",
            "3",
            "--attack",
            "sgd",
            "--eps",
            eps,
            "--defense",
            "none,jpeg:75,bits:4",
            "--adaptive",
        ]
        .map(OsString::from),
    );
    if !extra.contains(&"--steps") {
        a.extend(["--steps".into(), "5".into()]);
    }
    a.extend(["--out".into(), out.as_os_str().to_owned()]);
    a.extend(extra.iter().map(OsString::from));
    a
}

/// [`bench_cmd`]'s run through the library: `fool::bench::run` with `observer`, on one
/// libtorch thread (as the CLI runs it with `OMP_NUM_THREADS=1`, so the rows are identical).
fn bench_lib(f: &Fixture, out: &Path, observer: &mut dyn bench::Observer) -> bench::Outcome {
    tch::set_num_threads(1);
    let plan = bench::Plan::new(bench::Settings {
        dataset: f.images.clone(),
        data: None,
        wnids: None,
        limit: None,
        shuffle: false,
        attacks: vec!["sgd".into()],
        steps: Some(5),
        early_stop: true,
        eps: fool::attacks::parse_eps_list(
            &EPS.split(',').map(String::from).collect::<Vec<_>>(),
            Norm::Linf,
        )
        .unwrap(),
        norm: Norm::Linf,
        defenses: ["none", "jpeg:75", "bits:4"].map(String::from).to_vec(),
        adaptive: true,
        eot: 10,
        targets: "untargeted".into(),
        batch: 3,
        seed: 3,
        shard: bench::Shard::ALL,
        out: out.to_path_buf(),
        detector: None,
        detector_weight: 10.0,
        keep_examples: 0,
    })
    .unwrap();
    let pre = Preprocess {
        size: 32,
        resize: 32,
        ..Preprocess::default()
    };
    let device = fool::device::parse_device("auto").unwrap();
    let model = Classifier::load(&f.model, device, pre).unwrap();
    let labels = Labels::numbered(model.num_classes);
    let m = ModelRef {
        model: &model,
        labels: &labels,
        path: &f.model,
        labels_path: None,
    };
    bench::run(&plan, m, observer).unwrap()
}

/// Stops a library run after `n` units of work, as an interruption would.
struct StopAfter(usize);

impl bench::Observer for StopAfter {
    fn unit_done(&mut self, _: &bench::Unit, done: usize) -> ControlFlow<()> {
        if done >= self.0 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }
}

/// `fool bench` on the fixture with `--json`, batch 5 and the given settings; must succeed.
/// Returns the summary it printed.
fn bench_json(f: &Fixture, out: &Path, args: &[&str]) -> serde_json::Value {
    ok_json(
        fool()
            .arg("bench")
            .arg(&f.images)
            .arg("--model")
            .arg(&f.model)
            .args([
                "--size", "32", "--resize", "32", "--quiet", "--json", "--batch", "5",
            ])
            .args(args)
            .arg("--out")
            .arg(out),
    )
}

fn summary(out: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap()
}

fn sorted_lines(p: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    v.sort();
    v
}

#[test]
fn sweep_writes_results_summary_and_chart() {
    let f = fixture();
    let out = f.root.join("run");
    let s = ok_json(&mut bench_cmd(&f, &out, &["--json"]));
    let rows = s.as_array().unwrap();
    // 3 eps × (3 defenses non-adaptive + 2 adaptive)
    assert_eq!(rows.len(), 15);
    for r in rows {
        for k in [
            "attack",
            "eps",
            "defense",
            "mode",
            "n",
            "success_rate",
            "ci_low",
            "ci_high",
            "clean_accuracy",
            "robust_accuracy",
        ] {
            assert!(!r[k].is_null(), "missing {k}");
        }
        assert!(r["ci_low"].as_f64().unwrap() <= r["success_rate"].as_f64().unwrap());
        assert!(r["success_rate"].as_f64().unwrap() <= r["ci_high"].as_f64().unwrap());
        assert_eq!(r["n_images"], 10);
    }
    let none0 = rows
        .iter()
        .find(|r| r["defense"] == "none" && r["eps"] == 0.0)
        .unwrap();
    assert_eq!(none0["clean_accuracy"], 0.8);
    assert_eq!(none0["n"], 8);
    assert_eq!(
        none0["success_rate"], 0.0,
        "eps 0 cannot change an 8-bit image"
    );
    assert_eq!(none0["robust_accuracy"], 0.8);
    // results.jsonl: one line per image × setting, within budget.
    let lines = sorted_lines(&out.join("results.jsonl"));
    assert_eq!(lines.len(), 150);
    for l in &lines {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert!(
            v["linf"].as_f64().unwrap() <= v["eps"].as_f64().unwrap() + 1e-9,
            "{l}"
        );
        let success = v["adv_pred"] != v["label"];
        assert_eq!(v["success"].as_bool().unwrap(), success, "{l}");
    }
    let csv = std::fs::read_to_string(out.join("summary.csv")).unwrap();
    assert!(csv.starts_with("attack,eps,norm,defense,mode,n,"));
    assert_eq!(csv.lines().count(), 16);
    for chart in ["success_vs_eps.png", "success_vs_eps.svg"] {
        assert!(
            std::fs::metadata(out.join(chart)).unwrap().len() > 1000,
            "{chart}"
        );
    }
    assert!(image::open(out.join("success_vs_eps.png")).unwrap().width() >= 640);
}

#[test]
fn interrupted_run_resumes_to_the_same_summary() {
    let f = fixture();
    let whole = f.root.join("whole");
    ok(bench_cmd(&f, &whole, &[]).env("OMP_NUM_THREADS", "1"));

    // Stopped by its observer after 7 units, then after 3 more: the rows of 10 units are there.
    let part = f.root.join("part");
    let stopped = |o: bench::Outcome| match o {
        bench::Outcome::Stopped { units } => units,
        bench::Outcome::Finished(_) => panic!("the run was not stopped"),
    };
    assert_eq!(stopped(bench_lib(&f, &part, &mut StopAfter(7))), 7);
    let after7 = sorted_lines(&part.join("results.jsonl")).len();
    assert!(after7 > 0 && after7 < 150);
    assert!(!part.join("summary.json").exists());
    assert_eq!(stopped(bench_lib(&f, &part, &mut StopAfter(3))), 3);
    let partial = sorted_lines(&part.join("results.jsonl"));
    assert!(partial.len() > after7 && partial.len() < 150);
    // A kill in the middle of a write leaves a torn line: it must be dropped, not kept.
    let mut text = std::fs::read_to_string(part.join("results.jsonl")).unwrap();
    text.push_str("{\"file\":\"img0");
    std::fs::write(part.join("results.jsonl"), text).unwrap();

    // The CLI resumes the library's run (same configuration) and finishes it.
    ok(bench_cmd(&f, &part, &[]).env("OMP_NUM_THREADS", "1"));
    assert_eq!(
        sorted_lines(&part.join("results.jsonl")),
        sorted_lines(&whole.join("results.jsonl"))
    );
    assert_eq!(summary(&part), summary(&whole));
    // Running again does nothing and changes nothing.
    match bench_lib(&f, &part, &mut StopAfter(1)) {
        bench::Outcome::Finished(r) => assert_eq!(r.summary.len(), 15),
        bench::Outcome::Stopped { .. } => panic!("a finished run ran a unit again"),
    }
    ok(&mut bench_cmd(&f, &part, &[]));
    assert_eq!(sorted_lines(&part.join("results.jsonl")).len(), 150);
    assert_eq!(summary(&part), summary(&whole));
}

#[test]
fn killed_process_resumes_to_the_same_results() {
    let f = fixture();
    // Enough steps that the run lasts long after its first unit's rows are written.
    let slow = ["--steps", "60", "--no-early-stop"];
    let whole = f.root.join("whole");
    ok(bench_cmd(&f, &whole, &slow).env("OMP_NUM_THREADS", "1"));

    let part = f.root.join("part");
    let results = part.join("results.jsonl");
    let mut child = std::process::Command::cargo_bin("fool")
        .unwrap()
        .current_dir(crate::common::root())
        .args(bench_args(&f, &part, EPS, &slow))
        .env("OMP_NUM_THREADS", "1")
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while std::fs::read_to_string(&results).map_or(true, |t| !t.contains('\n')) {
        assert!(
            child.try_wait().unwrap().is_none(),
            "fool bench ended before it could be killed"
        );
        assert!(start.elapsed().as_secs() < 120, "no rows after 2 minutes");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(9), "not killed: {status:?}");
    let partial = sorted_lines(&results).len();
    assert!(partial > 0 && partial < 150, "{partial} rows");
    assert!(!part.join("summary.json").exists());

    ok(bench_cmd(&f, &part, &slow).env("OMP_NUM_THREADS", "1"));
    assert_eq!(
        sorted_lines(&results),
        sorted_lines(&whole.join("results.jsonl"))
    );
    assert_eq!(summary(&part), summary(&whole));
}

#[test]
fn shards_merge_into_the_single_machine_summary() {
    let f = fixture();
    let whole = f.root.join("whole");
    ok(&mut bench_cmd(&f, &whole, &[]));
    let s0 = f.root.join("s0");
    let s1 = f.root.join("s1");
    ok(&mut bench_cmd(&f, &s0, &["--shard", "0/2"]));
    // The second shard takes its index from a Slurm job array's environment.
    ok(bench_cmd(&f, &s1, &[])
        .env("SLURM_ARRAY_TASK_ID", "2")
        .env("SLURM_ARRAY_TASK_MIN", "1")
        .env("SLURM_ARRAY_TASK_COUNT", "2"));
    let n0 = sorted_lines(&s0.join("results.jsonl")).len();
    let n1 = sorted_lines(&s1.join("results.jsonl")).len();
    assert!(n0 > 0 && n1 > 0 && n0 + n1 == 150, "{n0} + {n1}");
    let merged = f.root.join("merged");
    ok(fool()
        .args(["bench", "merge", "--quiet"])
        .arg(&s0)
        .arg(&s1)
        .arg("--out")
        .arg(&merged));
    assert_eq!(summary(&merged), summary(&whole));
    assert_eq!(
        sorted_lines(&merged.join("results.jsonl")),
        sorted_lines(&whole.join("results.jsonl"))
    );
    assert!(merged.join("success_vs_eps.png").exists());
}

#[test]
fn unreadable_images_are_skipped_and_counted() {
    let f = fixture();
    std::fs::write(f.images.join("img03.png"), "not a png").unwrap();
    let out = f.root.join("run");
    let o = bench_cmd(&f, &out, &["--no-such-flag"]).output().unwrap();
    // Unknown flag: a usage error, and nothing written.
    assert_eq!(o.status.code(), Some(2));
    ok(&mut bench_cmd(&f, &out, &[]));
    let s = summary(&out);
    assert!(s.as_array().unwrap().iter().all(|r| r["n_images"] == 9));
    let skipped = std::fs::read_to_string(out.join("skipped.txt")).unwrap();
    assert!(skipped.starts_with("img03.png\t"), "{skipped}");
    ok(bench_cmd(&f, &out, &[]).arg("--json"));
}

#[test]
fn bad_bench_input() {
    let f = fixture();
    let out = f.root.join("run");
    let fails = |c: &mut assert_cmd::Command, needle: &str| {
        let o = c.output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(err.contains(needle), "{needle:?} not in {err}");
        assert!(!err.contains("panicked"));
    };
    fails(
        fool()
            .args(["bench"])
            .arg(f.root.join("nope"))
            .args(["--out"])
            .arg(&out),
        "not a directory",
    );
    let empty = f.root.join("empty");
    std::fs::create_dir(&empty).unwrap();
    fails(
        fool().args(["bench"]).arg(&empty).args(["--out"]).arg(&out),
        "labels.csv",
    );
    fails(
        &mut bench_cmd(&f, &out, &["--attack", "nosuch"]),
        "unknown attack 'nosuch'",
    );
    fails(&mut bench_cmd(&f, &out, &["--shard", "2/2"]), "--shard");
    fails(
        &mut bench_cmd(&f, &out, &["--defense", "none,blurry"]),
        "--defense",
    );
    // A run with other settings in the same --out is refused, the old results kept.
    assert!(bench_cmd_eps(&f, &out, "2/255", &[])
        .output()
        .unwrap()
        .status
        .success());
    fails(&mut bench_cmd_eps(&f, &out, "4/255", &[]), "other settings");
    assert_eq!(sorted_lines(&out.join("results.jsonl")).len(), 10 * 5);
}

#[test]
fn every_attack_runs_through_the_cli_within_budget() {
    let f = fixture();
    let out = f.root.join("all");
    let s = bench_json(
        &f,
        &out,
        &[
            "--steps",
            "3",
            "--limit",
            "5",
            "--attack",
            "fgsm,pgd,bim,sgd,mifgsm,cw,apgd,square",
            "--eps",
            "16/255",
            "--defense",
            "none,noise:0.02",
            "--adaptive",
            "--eot",
            "2",
            "--targets",
            "random",
        ],
    );
    assert_eq!(s.as_array().unwrap().len(), 8 * 3);
    for l in sorted_lines(&out.join("results.jsonl")) {
        let v: serde_json::Value = serde_json::from_str(&l).unwrap();
        assert!(v["linf"].as_f64().unwrap() <= 16.0 / 255.0 + 1e-9, "{l}");
        let target = v["target"].as_u64().unwrap();
        assert_ne!(
            target,
            v["label"].as_u64().unwrap(),
            "random target equals the label: {l}"
        );
        assert_eq!(
            v["success"].as_bool().unwrap(),
            v["adv_pred"].as_u64().unwrap() == target,
            "{l}"
        );
        if v["attack"] == "square" {
            let q = v["queries"].as_u64().unwrap();
            assert!(
                (1..=3).contains(&q),
                "square queries {q} with --steps 3: {l}"
            );
        }
    }
}

#[test]
fn l2_sweep_keeps_every_image_within_its_l2_radius() {
    let f = fixture();
    let out = f.root.join("l2");
    let s = bench_json(
        &f,
        &out,
        &[
            "--steps",
            "10",
            "--attack",
            "fgsm,pgd,apgd",
            "--norm",
            "l2",
            "--eps",
            "0,0.5,2",
            "--defense",
            "none,bits:4",
            "--adaptive",
        ],
    );
    let rows = s.as_array().unwrap();
    // 3 attacks × 3 radii × (2 non-adaptive + 1 adaptive).
    assert_eq!(rows.len(), 3 * 3 * 3);
    assert!(rows.iter().all(|r| r["norm"] == "l2"));
    let pgd_at = |eps: f64| {
        rows.iter()
            .find(|r| {
                r["attack"] == "pgd"
                    && r["defense"] == "none"
                    && (r["eps"].as_f64().unwrap() - eps).abs() < 1e-9
            })
            .unwrap()["success_rate"]
            .as_f64()
            .unwrap()
    };
    assert_eq!(pgd_at(0.0), 0.0);
    assert!(pgd_at(2.0) >= pgd_at(0.5) && pgd_at(2.0) >= 0.75, "{s}");
    let mut moved_beyond_linf = false;
    for l in sorted_lines(&out.join("results.jsonl")) {
        let v: serde_json::Value = serde_json::from_str(&l).unwrap();
        let (eps, l2, linf) = (
            v["eps"].as_f64().unwrap(),
            v["l2"].as_f64().unwrap(),
            v["linf"].as_f64().unwrap(),
        );
        assert_eq!(v["norm"], "l2", "{l}");
        assert!(l2 <= eps + 1e-9, "L2 {l2} > {eps}: {l}");
        // An L2 budget lets single values move further than eps/√values would.
        moved_beyond_linf |= linf > 8.0 / 255.0;
    }
    assert!(moved_beyond_linf);
    let csv = std::fs::read_to_string(out.join("summary.csv")).unwrap();
    assert!(csv.starts_with("attack,eps,norm,defense,mode,"));
    assert!(csv
        .lines()
        .nth(1)
        .unwrap()
        .starts_with("fgsm,0.000000,l2,none,"));
}

#[test]
fn bad_norm_input() {
    let f = fixture();
    let out = f.root.join("bad");
    for (extra, needle) in [
        (vec!["--norm", "l3"], "--norm: 'l3': expected linf or l2"),
        (
            vec!["--norm", "l2", "--eps", "0.001"],
            "smaller than one 8-bit step",
        ),
        (vec!["--norm", "l2", "--eps=-1"], "positive"),
    ] {
        let o = bench_cmd(&f, &out, &extra).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(err.contains(needle), "{needle:?} not in {err}");
        assert!(!out.join("results.jsonl").exists());
    }
}

#[test]
fn early_stop_only_where_the_attacked_model_is_the_judge() {
    let f = fixture();
    let queries = |out: &Path, mode: &str| -> Vec<u64> {
        sorted_lines(&out.join("results.jsonl"))
            .iter()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|v| v["mode"] == mode && v["eps"].as_f64().unwrap() > 0.0)
            .map(|v| v["queries"].as_u64().unwrap())
            .collect()
    };
    let args = |defense: &'static str| {
        vec![
            "--attack",
            "pgd",
            "--steps",
            "8",
            "--eps",
            "0,16/255",
            "--defense",
            defense,
            "--adaptive",
            "--eot",
            "2",
        ]
    };
    // Judged on the bare model only: fooled images stop early.
    let bare = f.root.join("bare");
    bench_json(&f, &bare, &args("none"));
    let q = queries(&bare, "non-adaptive");
    assert!(
        q.iter().any(|&v| v < 9) && q.iter().all(|&v| v <= 9),
        "{q:?}"
    );
    // Judged through defenses too: the bare-model attack runs all its steps; the adaptive
    // attack on a deterministic defense stops early, on a random one it does not.
    let def = f.root.join("def");
    bench_json(&f, &def, &args("none,bits:4"));
    let q = queries(&def, "non-adaptive");
    assert!(!q.is_empty() && q.iter().all(|&v| v == 9), "{q:?}");
    let q = queries(&def, "adaptive");
    assert!(q.iter().any(|&v| v < 9), "{q:?}");
    let rnd = f.root.join("rnd");
    bench_json(&f, &rnd, &args("noise:0.02"));
    let q = queries(&rnd, "adaptive");
    assert!(!q.is_empty() && q.iter().all(|&v| v == 9 * 2), "{q:?}");
}

/// `fool bench mnist:test[a:b]`: the rows of the test split, named SPLIT/ROW and labelled from
/// the data set, attacked with AutoAttack (its cascade in the summary, never weaker than PGD);
/// a model of another input size, a bad split, targets for an untargeted cascade and a synset
/// list beside a data set are refused with one line.
#[test]
fn bench_reads_a_data_set_slice_and_logs_the_autoattack_cascade() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m28.pt");
    crate::common::tiny_model(&model, 10, 28, 3);
    let mnist = crate::common::asset("mnist");
    let out = dir.path().join("aa");
    let bench = |spec: &str, out: &Path, extra: &[&str]| {
        let mut c = fool();
        c.args(["bench", spec, "--model"])
            .arg(&model)
            .args(["--size", "28", "--resize", "28", "--data"])
            .arg(&mnist)
            .args(["--out"])
            .arg(out)
            .args(extra);
        c
    };
    let args = [
        "--attack",
        "autoattack,pgd",
        "--eps",
        "0.02",
        "--steps",
        "5",
        "--batch",
        "3",
        "--json",
    ];
    let summary = ok_json(&mut bench("mnist:test[4:10]", &out, &args));
    let rows = summary.as_array().unwrap();
    let aa = rows.iter().find(|r| r["attack"] == "autoattack").unwrap();
    let pgd = rows.iter().find(|r| r["attack"] == "pgd").unwrap();
    assert_eq!(aa["n_images"], 6);
    let robust = |r: &serde_json::Value| r["robust_accuracy"].as_f64().unwrap();
    assert!(robust(aa) <= robust(pgd), "{aa} vs {pgd}");
    let stages: Vec<&str> = aa["cascade"]["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["stage"].as_str().unwrap())
        .collect();
    assert_eq!(stages, ["clean", "apgd-ce", "apgd-t", "fab-t", "square"]);
    let last = aa["cascade"]["stages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["robust_accuracy"], aa["robust_accuracy"]);
    assert!(pgd["cascade"].is_null());
    let test = fool::datasets::load(
        fool::datasets::DatasetName::Mnist,
        &mnist,
        fool::datasets::Split::Test,
    )
    .unwrap();
    let labels = Vec::<i64>::try_from(&test.labels).unwrap();
    let text = std::fs::read_to_string(out.join("results.jsonl")).unwrap();
    let mut seen = 0;
    for line in text.lines() {
        let r: serde_json::Value = serde_json::from_str(line).unwrap();
        let file = r["file"].as_str().unwrap();
        let row: usize = file.strip_prefix("test/").unwrap().parse().unwrap();
        assert!((4..10).contains(&row), "{file}");
        assert_eq!(r["label"].as_i64().unwrap(), labels[row]);
        if r["attack"] == "autoattack" {
            assert_eq!(
                r["success"].as_bool().unwrap(),
                r["broken_by"].is_string(),
                "{r}"
            );
            seen += 1;
        }
    }
    assert_eq!(seen, 6);
    for (spec, extra, says) in [
        ("mnist:valid[0:4]", vec![], "unknown split 'valid'"),
        (
            "mnist:test[0:20000]",
            vec![],
            "outside the split's 10000 rows",
        ),
        (
            "mnist:test[0:4]",
            vec!["--attack", "autoattack", "--targets", "random"],
            "untargeted",
        ),
        (
            "mnist:test[0:4]",
            vec!["--wnids", "x.txt"],
            "labelled already",
        ),
    ] {
        let o = bench(spec, &dir.path().join("bad"), &extra)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success() && err.contains(says),
            "{spec} {extra:?}: {err}"
        );
    }
    let mut c = fool();
    c.args(["bench", "cifar10:test[0:4]", "--model"])
        .arg(&model)
        .args(["--size", "28", "--resize", "28", "--out"])
        .arg(dir.path().join("bad2"));
    let o = c.output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("32×32"), "{err}");
}

/// A bad data set slice as bench input is named as the positional input it is, not as a flag.
#[test]
fn a_bad_slice_input_is_named_as_the_input() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let o = fool()
        .args(["bench", "mnist:test[5:2]", "--model"])
        .arg(asset("model.pt"))
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("DIR: 'mnist:test[5:2]'") && err.contains("empty"),
        "{err}"
    );
    assert!(!err.contains("--dataset"), "{err}");
    assert!(!out.exists(), "nothing written");
}
