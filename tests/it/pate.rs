//! `fool pate teachers | check | votes | student` end to end: disjoint seeded partitions,
//! resumable and sharded ensembles with clear errors for missing and foreign teachers, votes
//! equal to the teachers' own predictions, and a student that is a normal run whose audit
//! measures the private data against held-out rows.
use crate::common::{asset, fool, ok, ok_json};
use fool::datasets::{self, DatasetName, Split};
use fool::pate::{self, Manifest, TeacherRow, TeachersObserver};
use fool::privacy::pate::{Aggregator, Votes};
use fool::train::{partition_part, Partition};
use std::ops::ControlFlow;
use std::path::Path;
use tch::{CModule, Device, Kind, Tensor};

fn read_i64(p: &Path) -> Vec<i64> {
    use ndarray_npy::ReadNpyExt;
    ndarray::Array1::<i64>::read_npy(std::fs::File::open(p).unwrap())
        .unwrap()
        .to_vec()
}

/// `fool pate teachers` on the first 400 MNIST examples, 1 epoch, plus `extra`.
fn teachers(out: &Path, n: &str, extra: &[&str]) -> std::process::Output {
    fool()
        .args(["pate", "teachers", "--dataset", "mnist", "--teachers", n])
        .args("--limit 400 --epochs 1 --batch 10 --optimizer adam --lr 0.003 --json".split(' '))
        .args(extra)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap()
}

fn teachers_ok(out: &Path, n: &str, extra: &[&str]) -> serde_json::Value {
    let o = teachers(out, n, extra);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    crate::common::json(&o)
}

/// A failed command: exit 1 and one line on stderr, which is returned.
fn fails(cmd: &mut assert_cmd::Command) -> String {
    let o = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(1), "{cmd:?}: {err}");
    assert_eq!(err.trim().lines().count(), 1, "{cmd:?}: {err}");
    err
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn partitions_are_disjoint_cover_the_pool_and_are_seeded() {
    for (pool, parts) in [(103, 4), (400, 4), (10, 10), (1000, 250)] {
        let mut all = vec![];
        let mut sizes = vec![];
        for index in 0..parts {
            let p = partition_part(
                pool,
                &Partition {
                    seed: 5,
                    index,
                    parts,
                },
            );
            assert!(p.windows(2).all(|w| w[0] < w[1]), "sorted, unique");
            sizes.push(p.len());
            all.extend(p);
        }
        all.sort_unstable();
        assert_eq!(all, (0..pool).collect::<Vec<_>>(), "disjoint and covering");
        let (lo, hi) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
        assert!(hi - lo <= 1, "{sizes:?}");
    }
    let part = |seed, index| {
        partition_part(
            400,
            &Partition {
                seed,
                index,
                parts: 4,
            },
        )
    };
    assert_eq!(part(1, 2), part(1, 2));
    assert_ne!(part(1, 2), part(2, 2));
    assert_ne!(
        part(1, 2),
        (200..300).collect::<Vec<_>>(),
        "shuffled, not blocks"
    );
    assert!(partition_part(
        3,
        &Partition {
            seed: 0,
            index: 3,
            parts: 4
        }
    )
    .is_empty());
}

#[test]
fn teachers_train_resume_shard_and_check() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    let r = teachers_ok(&a, "4", &[]);
    assert_eq!(r["rows"].as_array().unwrap().len(), 4);
    assert_eq!(r["trained"], 4);
    // Disjoint parts of the first 400 rows, one per teacher.
    let mut members = vec![];
    for k in 0..4 {
        let m = read_i64(&a.join(format!("teacher-{k:04}/members.npy")));
        assert_eq!(m.len(), 100);
        members.extend(m);
    }
    members.sort_unstable();
    assert_eq!(members, (0..400).collect::<Vec<i64>>());
    // Nothing left to train; a deleted teacher is trained again, alone.
    assert_eq!(teachers_ok(&a, "4", &[])["trained"], 0);
    std::fs::remove_dir_all(a.join("teacher-0002")).unwrap();
    let again = teachers_ok(&a, "4", &[]);
    assert_eq!(again["trained"], 1);
    assert_eq!(again["rows"][2]["trained"], true);
    assert_eq!(again["rows"][1]["trained"], false);
    // Another setting in the same folder names the setting.
    let err = fails(
        fool()
            .args(
                "pate teachers --dataset mnist --teachers 4 --limit 400 --epochs 1 --batch 10"
                    .split(' '),
            )
            .args(["--optimizer", "adam", "--lr", "0.01", "--out"])
            .arg(&a),
    );
    assert!(err.contains("--lr") && err.contains("0.003"), "{err}");
    // Two shards in two folders, merged by copying: the same teachers as one run.
    let (s0, s1) = (dir.path().join("s0"), dir.path().join("s1"));
    let r0 = teachers_ok(&s0, "4", &["--shard", "0/2"]);
    let r1 = teachers_ok(&s1, "4", &["--shard", "1/2"]);
    let idx = |r: &serde_json::Value| -> Vec<u64> {
        r["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["teacher"].as_u64().unwrap())
            .collect()
    };
    assert_eq!((idx(&r0), idx(&r1)), (vec![0, 2], vec![1, 3]));
    let err = fails(fool().args(["pate", "check"]).arg(&s0));
    assert!(
        err.contains("teacher-0001: missing") && err.contains("shard i/N with i = 1 mod N"),
        "{err}"
    );
    for k in [1, 3] {
        let t = format!("teacher-{k:04}");
        copy_dir(&s1.join(&t), &s0.join(&t));
    }
    let checked = ok_json(fool().args(["pate", "check", "--json"]).arg(&s0));
    assert_eq!(checked["rows"].as_array().unwrap().len(), 4);
    for k in 0..4 {
        assert_eq!(
            checked["rows"][k]["test_accuracy"],
            again["rows"][k]["test_accuracy"]
        );
    }
    // A teacher of an ensemble with another partition seed is foreign.
    let f = dir.path().join("f");
    teachers_ok(&f, "4", &["--partition-seed", "7", "--shard", "0/4"]);
    std::fs::remove_dir_all(s0.join("teacher-0000")).unwrap();
    copy_dir(&f.join("teacher-0000"), &s0.join("teacher-0000"));
    let err = fails(fool().args(["pate", "check"]).arg(&s0));
    assert!(
        err.contains("teacher-0000") && err.contains("foreign"),
        "{err}"
    );
    assert!(err.contains("partition seed is 7"), "{err}");
    // More teachers than examples: nothing written.
    let many = dir.path().join("many");
    let o = teachers(&many, "500", &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err.contains("--teachers: 500 teachers but only 400 training examples"),
        "{err}"
    );
    assert!(!many.join("pate.json").exists());
    // Teachers evaluated on the first N test examples: recorded in the manifest, checked on a
    // rerun; 0 is refused.
    let small = dir.path().join("small");
    let r = teachers_ok(&small, "2", &["--test-examples", "50"]);
    for row in r["rows"].as_array().unwrap() {
        let meta: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(Path::new(row["dir"].as_str().unwrap()).join("metadata.json"))
                .unwrap(),
        )
        .unwrap();
        assert_eq!(meta["test_examples"], 50);
        let acc = row["test_accuracy"].as_f64().unwrap();
        assert_eq!(
            (acc * 50.0).round(),
            acc * 50.0,
            "accuracy over 50 images: {acc}"
        );
    }
    let err = String::from_utf8_lossy(&teachers(&small, "2", &["--test-examples", "60"]).stderr)
        .to_string();
    assert!(
        err.contains("--test-examples") || err.contains("test_examples"),
        "{err}"
    );
    let err = String::from_utf8_lossy(
        &teachers(&dir.path().join("zero"), "2", &["--test-examples", "0"]).stderr,
    )
    .to_string();
    assert!(err.contains("--test-examples: must be at least 1"), "{err}");
}

/// Stops the ensemble after teacher `after`.
struct StopAfter(usize);
impl TeachersObserver for StopAfter {
    fn teacher_end(&mut self, row: &TeacherRow) -> ControlFlow<()> {
        if row.teacher == self.0 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }
}

#[test]
fn an_interrupted_ensemble_trains_only_the_missing_teachers() {
    let dir = tempfile::tempdir().unwrap();
    let template = fool::train::TrainConfig {
        dataset: DatasetName::Mnist,
        data_dir: asset("mnist"),
        arch: "cnn".parse().unwrap(),
        epochs: 1,
        batch: 20,
        lr: 0.003,
        optimizer: fool::train::optim::OptKind::Adam,
        seed: 0,
        limit: Some(300),
        half: None,
        dp: None,
        checkpoint_every: 0,
        audit_every: 0,
        audit_examples: 10_000,
        partition: None,
        student: None,
        train_folder: None,
        recipe: Default::default(),
    };
    let m = Manifest::new(template, 3, 1);
    let shard = fool::bench::Shard::ALL;
    let r = pate::train_teachers(dir.path(), &m, shard, Device::Cpu, &mut StopAfter(1)).unwrap();
    assert!(r.stopped);
    assert_eq!((r.rows.len(), r.trained), (2, 2));
    assert!(!dir.path().join("teacher-0002").exists());
    assert!(pate::check(dir.path())
        .unwrap_err()
        .to_string()
        .contains("teacher-0002: missing"));
    let r = pate::train_teachers(dir.path(), &m, shard, Device::Cpu, &mut pate::Quiet).unwrap();
    assert!(!r.stopped);
    let trained: Vec<bool> = r.rows.iter().map(|x| x.trained).collect();
    assert_eq!(trained, vec![false, false, true]);
    assert_eq!(pate::check(dir.path()).unwrap().1.rows.len(), 3);
}

/// The counts of the teachers' own predictions on test rows `rows`, and each one's accuracy.
fn own_votes(ensemble: &Path, rows: std::ops::Range<i64>) -> (Vec<i64>, Vec<f64>) {
    let test = datasets::load(DatasetName::Mnist, &asset("mnist"), Split::Test).unwrap();
    let idx = Tensor::arange_start(rows.start, rows.end, (Kind::Int64, Device::Cpu));
    let x = test
        .pixels(&idx, Device::Cpu)
        .expand([-1, 3, -1, -1], false);
    let y = test.labels_at(&idx, Device::Cpu);
    let n = (rows.end - rows.start) as usize;
    let mut counts = vec![0i64; n * 10];
    let mut acc = vec![];
    for k in 0..4 {
        let m = CModule::load(ensemble.join(format!("teacher-{k:04}/model.pt"))).unwrap();
        let p = tch::no_grad(|| m.forward_ts(&[&x]).unwrap()).argmax(1, false);
        acc.push(p.eq_tensor(&y).sum(Kind::Int64).int64_value(&[]) as f64 / n as f64);
        for (i, c) in Vec::<i64>::try_from(p).unwrap().into_iter().enumerate() {
            counts[i * 10 + c as usize] += 1;
        }
    }
    (counts, acc)
}

#[test]
fn votes_and_a_student_that_audits_on_the_private_data() {
    use ndarray_npy::ReadNpyExt;
    let dir = tempfile::tempdir().unwrap();
    let e = dir.path().join("e");
    teachers_ok(&e, "4", &[]);
    // Votes on 50 test images: the teachers' own predictions, counted.
    let v50 = e.join("votes50.npy");
    let info = ok_json(
        fool()
            .args([
                "pate",
                "votes",
                "--pool",
                "mnist:test[:50]",
                "--json",
                "--out",
            ])
            .arg(&v50)
            .arg(&e),
    );
    let arr = ndarray::Array2::<i64>::read_npy(std::fs::File::open(&v50).unwrap()).unwrap();
    assert_eq!(arr.dim(), (50, 10));
    assert!(arr.rows().into_iter().all(|r| r.sum() == 4));
    let (counts, acc) = own_votes(&e, 0..50);
    assert_eq!(arr.iter().copied().collect::<Vec<i64>>(), counts);
    assert_eq!(info["items"]["rows"]["end"], 50);
    assert_eq!(info["labels"].as_array().unwrap().len(), 50);
    for (k, a) in acc.iter().enumerate() {
        assert!((info["agreement"][k].as_f64().unwrap() - a).abs() < 1e-12);
    }
    // A folder pool: the same images as PNGs give the same votes.
    let test = datasets::load(DatasetName::Mnist, &asset("mnist"), Split::Test).unwrap();
    let folder = dir.path().join("pool");
    fool::train::export::save_samples(&test, 5, &folder).unwrap();
    let vf = e.join("votes-folder.npy");
    ok(fool()
        .args(["pate", "votes", "-q", "--pool"])
        .arg(&folder)
        .arg("--out")
        .arg(&vf)
        .arg(&e));
    let got = Votes::read(&vf).unwrap();
    assert_eq!(
        got.rows().flatten().map(|&c| c as i64).collect::<Vec<_>>(),
        counts[..50].to_vec()
    );
    // Bad pools: one line naming --pool (or the file), nothing written.
    let bad = e.join("bad.npy");
    let big = dir.path().join("big");
    std::fs::create_dir_all(&big).unwrap();
    image::RgbImage::new(32, 32)
        .save(big.join("big.png"))
        .unwrap();
    for (pool, needle) in [
        ("mnist:test[0:20000]", "--pool"),
        ("cifar10:test[0:10]", "trained on mnist"),
        ("mnist:valid[0:10]", "unknown split"),
        ("mnist:test[5:5]", "empty"),
        ("mnist:train[0:100]", "overlaps the teachers"),
        ("no-such-pool", "--pool"),
        (big.to_str().unwrap(), "28×28"),
    ] {
        let err = fails(
            fool()
                .args(["pate", "votes", "--pool", pool, "--out"])
                .arg(&bad)
                .arg(&e),
        );
        assert!(err.contains(needle), "{pool}: {err}");
        assert!(!bad.exists());
    }
    // The outputs never replace an input: a teacher's members.npy, or the manifest (through the
    // .json written beside `--out OUT/pate.npy`); an earlier votes pair may be replaced.
    let members = e.join("teacher-0000").join("members.npy");
    let manifest = std::fs::read(e.join("pate.json")).unwrap();
    let before = std::fs::read(&members).unwrap();
    for out in [members.clone(), e.join("pate.npy")] {
        let err = fails(
            fool()
                .args(["pate", "votes", "--pool", "mnist:test[:5]", "--out"])
                .arg(&out)
                .arg(&e),
        );
        assert!(
            err.contains("--out") && err.contains("not a votes file"),
            "{err}"
        );
    }
    assert_eq!(std::fs::read(&members).unwrap(), before);
    assert_eq!(std::fs::read(e.join("pate.json")).unwrap(), manifest);
    ok(fool()
        .args(["pate", "votes", "-q", "--pool", "mnist:test[:5]", "--out"])
        .arg(&v50)
        .arg(&e));
    assert_eq!(Votes::read(&v50).unwrap().queries(), 5);
    // The student: Confident-GNMax on the first 300 of 9000 queries.
    ok(fool()
        .args(["pate", "votes", "-q", "--pool", "mnist:test[0:9000]"])
        .arg(&e));
    let s = dir.path().join("student");
    let student = |out: &Path, extra: &[&str]| {
        let mut c = fool();
        c.args(["pate", "student"]).arg(&e);
        c.args(
            "--aggregator confident --threshold 3 --sigma1 1 --sigma 1 --queries 300".split(' '),
        );
        c.args(["--epochs", "1", "--json", "--out"])
            .arg(out)
            .args(extra);
        c
    };
    let meta = ok_json(&mut student(&s, &[]));
    let votes = Votes::read(&e.join("votes.npy"))
        .unwrap()
        .head(300)
        .unwrap();
    let agg = Aggregator::Confident {
        threshold: 3.0,
        sigma1: 1.0,
        sigma: 1.0,
    };
    let answered = pate::student::answered(&votes, &agg, 0).unwrap().len();
    assert!(answered > 0 && answered < 300, "{answered} answered");
    assert_eq!(meta["train_examples"], answered);
    assert_eq!(meta["pate"]["answered"], answered);
    assert_eq!(meta["test_examples"], 1000);
    assert_eq!(meta["nonmembers"]["start"], 9000);
    let eps = meta["epsilon"].as_f64().unwrap();
    assert!(eps.is_finite() && eps > 0.0, "{eps}");
    let p = &meta["pate"];
    let want = p["epsilon_released"]
        .as_f64()
        .or(p["epsilon_data_independent"].as_f64());
    assert_eq!(Some(eps), want);
    assert!(p["epsilon_data_dependent"].as_f64().unwrap().is_finite());
    assert_eq!(meta["delta"], 1e-5);
    for f in ["model.pt", "model.json", "labels.json", "pate.json"] {
        assert!(s.join(f).is_file(), "{f}");
    }
    assert_eq!(
        read_i64(&s.join("members.npy")),
        (0..400).collect::<Vec<i64>>()
    );
    // The same command again finds it finished; another one refuses the folder.
    assert_eq!(ok_json(&mut student(&s, &[]))["history"], meta["history"]);
    let err = fails(&mut student(&s, &["--lr", "0.5"]));
    assert!(err.contains("--out") && err.contains("lr"), "{err}");
    // The audit: the private rows against the held-out rows.
    let audit = ok(fool().args(["audit", "--model"]).arg(s.join("model.pt")));
    let text = String::from_utf8_lossy(&audit.stdout);
    assert!(
        text.contains("members = the 400 training examples"),
        "{text}"
    );
    assert!(
        text.contains("non-members = the 1000 held-out test examples [9000:10000]"),
        "{text}"
    );
    let rows = ok_json(
        fool()
            .args(["audit", "--json", "--model"])
            .arg(s.join("model.pt")),
    );
    assert_eq!(rows[0]["n_members"], 400);
    assert_eq!(rows[0]["n_nonmembers"], 1000);
    // The privacy report shows it as a PATE run with its ε.
    let rep = ok_json(
        fool()
            .args(["report", "privacy", "--json", "--out"])
            .arg(dir.path().join("report"))
            .arg(&s),
    );
    assert_eq!(rep[0]["kind"], "PATE (confident, 300 q)");
    assert_eq!(rep[0]["epsilon"].as_f64(), Some(eps));
    assert_eq!(
        rep[0]["epsilon_data_dependent"],
        p["epsilon_data_dependent"]
    );
    // Bad student settings: one line each, nothing written.
    let none = dir.path().join("none");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "confident",
                "--threshold",
                "3",
                "--sigma",
                "1",
                "--queries",
                "5",
            ],
            "--sigma1",
        ),
        (
            vec![
                "confident",
                "--sigma1",
                "3",
                "--sigma",
                "1",
                "--queries",
                "5",
            ],
            "--threshold",
        ),
        (vec!["gnmax", "--queries", "5"], "--sigma"),
        (vec!["gnmax", "--sigma", "0", "--queries", "5"], "--sigma"),
        (
            vec!["gnmax", "--sigma", "1", "--queries", "9001"],
            "--queries",
        ),
        (
            vec!["gnmax", "--sigma", "1", "--queries", "5", "--delta", "1"],
            "--delta",
        ),
        (
            vec![
                "gnmax",
                "--sigma",
                "1",
                "--queries",
                "5",
                "--votes",
                vf.to_str().unwrap(),
            ],
            "--test",
        ),
    ];
    for (args, needle) in cases {
        let mut c = fool();
        c.args(["pate", "student"])
            .arg(&e)
            .args(["--epochs", "1", "--aggregator"]);
        let err = fails(c.args(&args).arg("--out").arg(&none));
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!none.exists(), "{args:?}");
    }
    // The student's folder is the ensemble's or inside it: refused before anything is written.
    let manifest = std::fs::read(e.join("pate.json")).unwrap();
    for out in [e.clone(), e.join("student"), e.join("teacher-0000")] {
        let mut c = fool();
        c.args(["pate", "student"]).arg(&e).args([
            "--epochs",
            "1",
            "--aggregator",
            "gnmax",
            "--sigma",
            "1",
            "--queries",
            "5",
            "--out",
        ]);
        let err = fails(c.arg(&out));
        assert!(
            err.contains("--out") && err.contains("inside it"),
            "{}: {err}",
            out.display()
        );
    }
    assert_eq!(std::fs::read(e.join("pate.json")).unwrap(), manifest);
    assert!(!e.join("student").exists());
}
