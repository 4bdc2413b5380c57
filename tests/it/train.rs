//! DP-SGD statistics, `fool train` end to end (ε from the accountant, export, bad input), and
//! resuming a run stopped through the library or killed.

use crate::common::{asset, fool, ok_json};
use fool::datasets::DatasetName;
use fool::nets::{Arch, Net};
use fool::privacy::accountant::{self, AccountantKind};
use fool::privacy::dpsgd::DpSgd;
use fool::privacy::grad_sample::clipped_sum;
use fool::train::optim::OptKind;
use fool::train::{
    DpConfig, EpochRecord, Observer, Outcome, Resume, Run, RunDir, Silent, TrainConfig,
};
use fool::Error;
use std::ops::ControlFlow;
use std::path::Path;
use tch::{nn, CModule, Device, Kind, Tensor};

/// libtorch's generator is global: the in-process tests take turns.
static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn mnist_cnn() -> (nn::VarStore, Net) {
    let vs = nn::VarStore::new(Device::Cpu);
    let net = Net::new(&vs, &"cnn".parse::<Arch>().unwrap(), 1, 28, 10).unwrap();
    (vs, net)
}

#[test]
fn noise_of_an_empty_poisson_batch_has_std_sigma_c_over_expected_batch() {
    let _g = RNG.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(3);
    let (_vs, net) = mnist_cnn();
    let dp = DpSgd {
        clip: 0.5,
        noise: 2.0,
        sample_rate: 0.01,
        dataset_len: 10_000,
        max_physical_batch: 64,
        multiplicity: 1,
    };
    let empty = Tensor::zeros([0], (Kind::Int64, Device::Cpu));
    let mut load =
        |_: &Tensor| -> fool::Result<(Tensor, Tensor)> { unreachable!("no examples to load") };
    let (grads, stats) = dp.noisy_grad(&net, &empty, &mut load).unwrap();
    assert_eq!(stats.examples, 0);
    let all = Tensor::cat(
        &grads.iter().map(|g| g.flatten(0, -1)).collect::<Vec<_>>(),
        0,
    );
    let n = all.size()[0] as f64;
    assert!(n > 20_000.0);
    let want = 2.0 * 0.5 / (0.01 * 10_000.0); // σ·C / (q·n)
    let std = all.std(true).double_value(&[]);
    let mean = all.mean(Kind::Double).double_value(&[]);
    assert!(
        (std / want - 1.0).abs() < 0.02,
        "noise std {std}, expected {want}"
    );
    assert!(mean.abs() < 4.0 * want / n.sqrt(), "noise mean {mean}");
}

#[test]
fn without_noise_the_step_is_the_clipped_sum_over_the_expected_batch_in_chunks() {
    let _g = RNG.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(4);
    let (_vs, net) = mnist_cnn();
    let x = Tensor::randn([150, 1, 28, 28], (Kind::Float, Device::Cpu));
    let y = Tensor::randint(10, [150], (Kind::Int64, Device::Cpu));
    let clip = 0.05; // small enough that most examples are clipped
    let dp = DpSgd {
        clip,
        noise: 0.0,
        sample_rate: 0.02,
        dataset_len: 5_000,
        max_physical_batch: 64,
        multiplicity: 1,
    };
    let idx = Tensor::arange(150, (Kind::Int64, Device::Cpu));
    let mut load = |i: &Tensor| Ok((x.index_select(0, i), y.index_select(0, i)));
    let (grads, stats) = dp.noisy_grad(&net, &idx, &mut load).unwrap();
    let whole = clipped_sum(&net, &x, &y, clip).unwrap();
    for (g, w) in grads.iter().zip(&whole.grads) {
        let want = w / 100.0; // expected batch q·n = 100
        let diff = (g - &want).abs().max().double_value(&[]);
        assert!(
            diff <= 1e-6 + 1e-4 * want.abs().max().double_value(&[]),
            "diff {diff}"
        );
    }
    assert_eq!(stats.examples, 150);
    let clipped = whole.norms.gt(clip).sum(Kind::Int64).int64_value(&[]);
    assert_eq!(stats.clipped, clipped);
    assert!(clipped > 100, "only {clipped} of 150 clipped");
    // Each clipped example contributes exactly norm C; the summed norm cannot exceed n·C.
    let total: f64 = whole
        .grads
        .iter()
        .map(|g| g.square().sum(Kind::Double).double_value(&[]))
        .sum();
    assert!(total.sqrt() <= 150.0 * clip * (1.0 + 1e-5));
}

#[test]
fn poisson_batches_have_binomial_sizes() {
    let _g = RNG.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(5);
    let dp = DpSgd {
        clip: 1.0,
        noise: 1.0,
        sample_rate: 0.01,
        dataset_len: 10_000,
        max_physical_batch: 64,
        multiplicity: 1,
    };
    let sizes: Vec<f64> = (0..2000)
        .map(|_| dp.poisson_batch().size()[0] as f64)
        .collect();
    let mean = sizes.iter().sum::<f64>() / sizes.len() as f64;
    let var = sizes.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / (sizes.len() - 1) as f64;
    // Binomial(10000, 0.01): mean 100, variance 99.
    assert!(
        (mean - 100.0).abs() < 4.0 * (99.0f64 / 2000.0).sqrt(),
        "mean {mean}"
    );
    assert!((var / 99.0 - 1.0).abs() < 0.15, "variance {var}");
    let b = dp.poisson_batch();
    let sorted = b.sort(0, false).0;
    assert!(b.equal(&sorted), "indices come sorted and unique");
    assert_eq!(dp.steps_per_epoch(), 100);
}

fn train_args(out: &Path) -> Vec<String> {
    [
        "train",
        "--dataset",
        "mnist",
        "--limit",
        "1000",
        "--epochs",
        "2",
        "--batch",
        "50",
        "--lr",
        "0.1",
        "--samples",
        "3",
        "--json",
        "--out",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([out.display().to_string()])
    .collect()
}

#[test]
fn dp_training_reports_the_accountants_epsilon_and_exports_a_loadable_model() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mut args = train_args(&out);
    args.extend(["--dp", "--noise", "1.0", "--clip", "1.0", "--delta", "1e-5"].map(String::from));
    // The non-DP model and optimizer (not --dp's MNIST defaults, tuned for full data).
    args.extend(["--arch", "cnn", "--momentum", "0.9"].map(String::from));
    let meta = ok_json(fool().args(&args));
    // q = 50/1000, ⌊1/q⌋ = 20 steps per epoch, 2 epochs.
    assert_eq!(meta["steps"], 40);
    assert_eq!(meta["sample_rate"], 0.05);
    let want = accountant::epsilon(AccountantKind::Rdp, 1.0, 0.05, 40, 1e-5).unwrap();
    let eps = meta["epsilon"].as_f64().unwrap();
    assert!((eps - want).abs() <= 1e-9 * want, "{eps} vs {want}");
    let e1 = meta["history"][0]["epsilon"].as_f64().unwrap();
    let want1 = accountant::epsilon(AccountantKind::Rdp, 1.0, 0.05, 20, 1e-5).unwrap();
    assert!((e1 - want1).abs() <= 1e-9 * want1 && e1 < eps);
    assert_eq!(meta["delta"], 1e-5);
    let acc = meta["test_accuracy"].as_f64().unwrap();
    assert!(acc > 0.3 && acc <= 1.0, "DP test accuracy {acc}");
    // metadata.json on disk says the same.
    let disk: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metadata.json")).unwrap()).unwrap();
    assert_eq!(disk["epsilon"], meta["epsilon"]);
    for f in [
        "model.pt",
        "model.json",
        "labels.json",
        "training.png",
        "training.svg",
        "samples/00000-7.png",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    // The exported model classifies its own test sample through `fool predict` (model.json
    // gives 28×28 and no normalization; labels.json the digit names).
    let pj = ok_json(
        fool()
            .args(["predict", "--json", "--model"])
            .arg(out.join("model.pt"))
            .arg(out.join("samples/00002-1.png")),
    );
    let top = &pj["top"][0];
    assert_eq!(
        top["label"].as_str().unwrap(),
        top["index"].as_u64().unwrap().to_string()
    );
    // …and gives the same probabilities as running the TorchScript module on the PNG pixels.
    let m = CModule::load(out.join("model.pt")).unwrap();
    let img = fool::imageio::load_rgb(&out.join("samples/00002-1.png")).unwrap();
    let x = fool::imageio::rgb_to_tensor(&img).unsqueeze(0);
    let probs = m.forward_ts(&[x]).unwrap().softmax(1, Kind::Float);
    let k = top["index"].as_i64().unwrap();
    let direct = probs.double_value(&[0, k]);
    assert!((direct - top["prob"].as_f64().unwrap()).abs() < 1e-5);
}

#[test]
fn plain_training_learns_mnist() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mut args = train_args(&out);
    args[4] = "3000".into();
    args[10] = "0.02".into(); // --lr
    let meta = ok_json(fool().args(&args));
    assert!(meta["epsilon"].is_null());
    let acc = meta["test_accuracy"].as_f64().unwrap();
    assert!(
        acc > 0.85,
        "non-private test accuracy {acc} after 2 epochs on 3000 examples"
    );
    assert_eq!(meta["history"].as_array().unwrap().len(), 2);
}

/// Run `body` alone in a child process of this test binary (the test `test`, its path in
/// the binary, run with `--exact`): libtorch's generator is global, so training in-process
/// must not share it with tests on other threads, whose draws would change its batches and
/// noise. The child runs single-threaded (`OMP_NUM_THREADS=1`), as the CLI runs the tests
/// compare with.
pub(crate) fn isolated(test: &str, body: impl FnOnce()) {
    const CHILD: &str = "FOOL_IT_ISOLATED_CHILD";
    if std::env::var_os(CHILD).is_some() {
        return body();
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--test-threads", "1", "--nocapture"])
        .env(CHILD, "1")
        .env("OMP_NUM_THREADS", "1")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{test} failed in its process:\n{text}"
    );
    assert!(text.contains("1 passed"), "{test} did not run:\n{text}");
}

/// The test configuration of `train_args` with DP (σ 1.2) and a checkpoint every epoch, as
/// a library configuration.
pub(crate) fn dp_config(epochs: usize) -> TrainConfig {
    TrainConfig {
        dataset: DatasetName::Mnist,
        data_dir: asset("mnist"),
        arch: "cnn".parse().unwrap(),
        epochs,
        batch: 50,
        lr: 0.1,
        optimizer: OptKind::Sgd { momentum: 0.9 },
        seed: 0,
        limit: Some(1000),
        half: None,
        dp: Some(DpConfig {
            clip: 1.0,
            noise: 1.2,
            delta: 1e-5,
            target_epsilon: None,
            accountant: AccountantKind::Rdp,
            max_physical_batch: 512,
        }),
        checkpoint_every: 1,
        audit_every: 0,
        audit_examples: 10_000,
        partition: None,
        student: None,
        train_folder: None,
        recipe: Default::default(),
    }
}

/// Stops a run once epoch `.0` is saved.
pub(crate) struct StopAfter(pub usize);

impl Observer for StopAfter {
    fn epoch_end(&mut self, rec: &EpochRecord) -> ControlFlow<()> {
        if rec.epoch == self.0 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }
}

fn strip_times(mut v: serde_json::Value) -> serde_json::Value {
    for r in v["history"].as_array_mut().unwrap() {
        for k in ["seconds", "train_seconds", "examples_per_second"] {
            r.as_object_mut().unwrap().remove(k);
        }
    }
    v
}

/// The models in `a` and `b` compute the same outputs, bit for bit.
fn same_models(a: &Path, b: &Path) {
    let x = Tensor::rand([4, 3, 28, 28], (Kind::Float, Device::Cpu));
    let m1 = CModule::load(a).unwrap();
    let m2 = CModule::load(b).unwrap();
    let y1 = m1.forward_ts(&[x.shallow_clone()]).unwrap();
    let y2 = m2.forward_ts(&[x]).unwrap();
    assert!(y1.equal(&y2), "{} and {} differ", a.display(), b.display());
}

#[test]
fn interrupted_training_resumes_to_the_same_model_and_epsilon() {
    isolated(
        "train::interrupted_training_resumes_to_the_same_model_and_epsilon",
        || {
            let dir = tempfile::tempdir().unwrap();
            let run =
                |out: &str| Run::new(dp_config(2), RunDir::new(dir.path().join(out)), Device::Cpu);
            let finished = |o: Outcome| match o {
                Outcome::Finished(meta) => strip_times(serde_json::to_value(&meta).unwrap()),
                Outcome::Stopped { .. } => panic!("stopped"),
            };
            let want = finished(run("whole").train(&mut Silent).unwrap());

            // Stopped by the observer once epoch 1 is saved.
            let parts = run("parts");
            let o = parts.train(&mut StopAfter(1)).unwrap();
            assert!(matches!(o, Outcome::Stopped { epochs_done: 1 }), "{o:?}");
            let root = parts.dir.root();
            assert!(root.join("checkpoints/epoch-001/model.pt").is_file());
            assert!(root.join("state/state.json").is_file());
            assert!(
                !root.join("model.pt").exists(),
                "no final model before the run finished"
            );
            // A fresh run refuses to clobber it.
            match parts.train(&mut Silent) {
                Err(Error::Invalid { field, .. }) => assert_eq!(field, "resume"),
                other => panic!("expected a resume error, got {other:?}"),
            }
            let resumed = Run {
                resume: Resume::Continue,
                ..parts.clone()
            };
            let got = finished(resumed.train(&mut Silent).unwrap());
            assert_eq!(got["history"], want["history"]);
            assert_eq!(got["epsilon"], want["epsilon"]);
            same_models(&dir.path().join("whole/model.pt"), &root.join("model.pt"));
            // The epoch-1 checkpoint is a loadable model with its own metadata.
            let ck = RunDir::new(root.join("checkpoints/epoch-001"))
                .read_metadata()
                .unwrap();
            assert_eq!(ck.epochs_done, 1);
            assert_eq!(
                serde_json::to_value(ck.epsilon).unwrap(),
                want["history"][0]["epsilon"]
            );
            // metadata.json on disk is the metadata returned.
            let disk =
                strip_times(serde_json::to_value(parts.dir.read_metadata().unwrap()).unwrap());
            assert_eq!(disk, got);
        },
    );
}

#[test]
fn a_killed_training_process_resumes_to_the_same_model() {
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole");
    let parts = dir.path().join("parts");
    let dp = ["--dp", "--noise", "1.2"].map(String::from);
    let mut a = train_args(&whole);
    a[6] = "3".into(); // --epochs
    a.extend(dp.clone());
    let want = strip_times(ok_json(fool().args(&a).env("OMP_NUM_THREADS", "1")));

    // SIGKILL once the state of an epoch is saved.
    let mut b = train_args(&parts);
    b[6] = "3".into();
    b.extend(dp);
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("fool"))
        .args(&b)
        .current_dir(crate::common::root())
        .env("OMP_NUM_THREADS", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let state = parts.join("state/state.json");
    let t0 = std::time::Instant::now();
    while !state.is_file() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "fool train ended before saving a state"
        );
        assert!(t0.elapsed().as_secs() < 300, "no state after 5 minutes");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        !parts.join("model.pt").exists(),
        "killed before the run finished"
    );
    // Same command without --resume refuses to clobber the run.
    let o = fool().args(&b).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--resume"));
    b.push("--resume".into());
    let got = strip_times(ok_json(fool().args(&b).env("OMP_NUM_THREADS", "1")));
    assert_eq!(got["history"], want["history"]);
    assert_eq!(got["epsilon"], want["epsilon"]);
    same_models(&whole.join("model.pt"), &parts.join("model.pt"));
}

#[test]
fn target_epsilon_calibrates_the_noise() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mut a = train_args(&out);
    a[6] = "1".into(); // one epoch
    a.extend(["--dp", "--target-epsilon", "2.0"].map(String::from));
    let meta = ok_json(fool().args(&a));
    let eps = meta["epsilon"].as_f64().unwrap();
    assert!(eps <= 2.0 && eps > 1.98, "ε {eps} for target 2");
    let sigma = meta["noise"].as_f64().unwrap();
    let again = accountant::epsilon(AccountantKind::Rdp, sigma, 0.05, 20, 1e-5).unwrap();
    assert!((again - eps).abs() < 1e-9);
}

/// `--dp` alone: σ = 1.1 and, for MNIST, the tanh CNN with plain SGD at rate 1.0 (stated in
/// `--help`); every flag still overrides its default.
#[test]
fn dp_alone_takes_the_stated_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    // train_args without its --lr (indices 9 and 10), one epoch.
    let args = |out: &Path| {
        let mut a = train_args(out);
        a.drain(9..11);
        a[6] = "1".into();
        a
    };
    let mut a = args(&out);
    assert!(!a.contains(&"--lr".to_string()));
    a.push("--dp".into());
    let meta = ok_json(fool().args(&a));
    assert_eq!(meta["noise"].as_f64(), Some(1.1));
    assert_eq!(meta["arch"].as_str(), Some("cnn:act=tanh"));
    let state = std::fs::read_to_string(out.join("metadata.json")).unwrap();
    let md: serde_json::Value = serde_json::from_str(&state).unwrap();
    let cfg = &md["config"];
    assert_eq!(cfg["lr"].as_f64(), Some(1.0), "{cfg}");
    assert_eq!(cfg["optimizer"]["name"].as_str(), Some("sgd"), "{cfg}");
    assert_eq!(cfg["optimizer"]["momentum"].as_f64(), Some(0.0), "{cfg}");
    let help = fool().args(["train", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for says in [
        "[default: 1.1]",
        "1.0 for mnist with --dp",
        "0 for mnist with --dp",
    ] {
        assert!(help.contains(says), "--help lacks {says}");
    }
    // Explicit flags win.
    let out2 = dir.path().join("run2");
    let mut b = args(&out2);
    b.extend(["--dp", "--arch", "cnn", "--lr", "0.1", "--noise", "2"].map(String::from));
    let meta = ok_json(fool().args(&b));
    assert_eq!(meta["noise"].as_f64(), Some(2.0));
    assert_eq!(meta["arch"].as_str(), Some("cnn:act=relu"));
}

#[test]
fn bad_training_input_is_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--arch", "resnet18:norm=batch", "--dp", "--noise", "1"],
            "BatchNorm",
        ),
        (
            vec!["--dp", "--noise", "1", "--target-epsilon", "2"],
            "not both",
        ),
        (vec!["--noise", "1"], "--dp"),
        (vec!["--dp", "--noise", "1", "--delta", "2"], "--delta"),
        (vec!["--arch", "small-cnn:conv=9"], "--arch"),
        (vec!["--optimizer", "rmsprop"], "--optimizer"),
        (
            vec!["--audit-every", "1", "--audit-examples", "0"],
            "--audit-examples",
        ),
        (
            vec!["--dp", "--noise", "1", "--max-physical-batch", "0"],
            "--max-physical-batch",
        ),
        (vec!["--data", "/nonexistent/mnist"], "/nonexistent/mnist"),
    ];
    for (extra, needle) in cases {
        let mut a = train_args(&out);
        a.extend(extra.iter().map(|s| s.to_string()));
        let o = fool().args(&a).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{extra:?}: {err}");
        assert!(err.contains(needle), "{extra:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{extra:?}: {err}");
        assert!(!out.join("model.pt").exists());
    }
    // A DP batch larger than the training set.
    let mut a = train_args(&out);
    a[8] = "5000".into();
    a.extend(["--dp", "--noise", "1"].map(String::from));
    let o = fool().args(&a).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--batch"));
    let o = fool()
        .args(["train", "--dataset", "imagenet", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--dataset"));
}

#[test]
fn half_trains_on_a_seeded_random_half_and_records_the_members() {
    use ndarray_npy::ReadNpyExt;
    let dir = tempfile::tempdir().unwrap();
    let read = |p: &Path| -> Vec<i64> {
        ndarray::Array1::<i64>::read_npy(std::fs::File::open(p).unwrap())
            .unwrap()
            .to_vec()
    };
    let mut sets = vec![];
    for (name, seed) in [("a", "1"), ("b", "1"), ("c", "2")] {
        let out = dir.path().join(name);
        let meta = ok_json(
            fool()
                .args("train --dataset mnist --limit 400 --epochs 1 --batch 50".split(' '))
                .args(["--samples", "0", "--json", "--half", seed, "--out"])
                .arg(&out),
        );
        assert_eq!(meta["train_examples"], 200);
        assert!(meta["members"].as_str().unwrap().contains("random half"));
        let m = read(&out.join("members.npy"));
        assert_eq!(m.len(), 200);
        assert!(
            m.windows(2).all(|w| w[0] < w[1]) && m[199] < 400,
            "sorted, unique, in range"
        );
        sets.push(m);
    }
    assert_eq!(sets[0], sets[1], "same seed, same half");
    assert_ne!(sets[0], sets[2], "another seed, another half");
}
