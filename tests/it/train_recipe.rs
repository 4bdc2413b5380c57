//! `fool train`'s recipe: learning-rate schedules with warm-up, weight decay and parameter
//! averaging (EMA) — the rate each epoch ends at, the exported model being the average, and a
//! stopped run resuming to the same model.
use super::train::{dp_config, isolated, StopAfter};
use crate::common::asset;
use fool::datasets::{self, DatasetName, Split};
use fool::nets::Net;
use fool::train::{evaluate, Outcome, Recipe, Resume, Run, RunDir, Silent, TrainConfig};
use std::collections::HashMap;
use tch::{nn, CModule, Device, Kind, Reduction, Tensor};

/// `train::dp_config(2)` (MNIST CNN, DP σ 1.2, 1,000 examples) with a recipe.
fn config(recipe: Recipe) -> TrainConfig {
    TrainConfig {
        checkpoint_every: 0,
        recipe,
        ..dp_config(2)
    }
}

/// Mean cross-entropy of a TorchScript model (pixels in [0,1]) on the first `n` test images.
fn exported_loss(model: &std::path::Path, n: i64) -> f64 {
    let test = datasets::load(DatasetName::Mnist, &asset("mnist"), Split::Test).unwrap();
    let idx = Tensor::arange(n, (Kind::Int64, Device::Cpu));
    let x = test.pixels(&idx, Device::Cpu).repeat([1, 3, 1, 1]);
    let y = test.labels_at(&idx, Device::Cpu);
    let m = CModule::load(model).unwrap();
    let logits = tch::no_grad(|| m.forward_ts(&[x]).unwrap());
    logits
        .cross_entropy_loss::<Tensor>(&y, None, Reduction::Mean, -100, 0.0)
        .double_value(&[])
}

#[test]
fn schedule_weight_decay_and_ema_export_the_average_and_resume_identically() {
    isolated(
        "train_recipe::schedule_weight_decay_and_ema_export_the_average_and_resume_identically",
        || {
            let dir = tempfile::tempdir().unwrap();
            let recipe = Recipe {
                schedule: "step:1:0.5".parse().unwrap(),
                warmup: 3,
                weight_decay: 1e-3,
                ema: Some(0.9),
                augment: None,
                multiplicity: None,
                adversarial: None,
            };
            let run = |out: &str| Run {
                test_examples: Some(500),
                keep_state: true,
                ..Run::new(
                    config(recipe.clone()),
                    RunDir::new(dir.path().join(out)),
                    Device::Cpu,
                )
            };
            let meta = match run("whole").train(&mut Silent).unwrap() {
                Outcome::Finished(m) => m,
                o => panic!("{o:?}"),
            };
            // Epoch 1 ends at the base rate (after the 3 warm-up steps), epoch 2 at half of it.
            assert_eq!(meta.history[0].lr, Some(0.1));
            assert_eq!(meta.history[1].lr, Some(0.05));
            // The exported model is the average: its test loss is the one the run recorded
            // (evaluated with the averaged weights), and the live weights' loss differs.
            let root = dir.path().join("whole");
            let recorded = meta.history[1].test_loss;
            let exported = exported_loss(&root.join("model.pt"), 500);
            assert!(
                (exported - recorded).abs() < 1e-5 * recorded,
                "{exported} vs {recorded}"
            );
            let named: HashMap<String, Tensor> = Tensor::load_multi(root.join("state/tensors.pt"))
                .unwrap()
                .into_iter()
                .collect();
            assert!(named.contains_key("ema.updates") && named.contains_key("ema.0"));
            let vs = nn::VarStore::new(Device::Cpu);
            let net = Net::new(&vs, &"cnn".parse().unwrap(), 1, 28, 10).unwrap();
            tch::no_grad(|| {
                for (k, mut t) in vs.variables() {
                    t.copy_(&named[&format!("param.{k}")]);
                }
            });
            let test = datasets::load(DatasetName::Mnist, &asset("mnist"), Split::Test).unwrap();
            let (live, _) = evaluate(&net, &test, 500, Device::Cpu);
            assert!(
                (live - recorded).abs() > 1e-4,
                "live {live} = averaged {recorded}?"
            );

            // Stopped after epoch 1, resumed: the same averaged model and history.
            let parts = run("parts");
            assert!(matches!(
                parts.train(&mut StopAfter(1)).unwrap(),
                Outcome::Stopped { epochs_done: 1 }
            ));
            let resumed = Run {
                resume: Resume::Continue,
                ..parts.clone()
            };
            let got = match resumed.train(&mut Silent).unwrap() {
                Outcome::Finished(m) => m,
                o => panic!("{o:?}"),
            };
            assert_eq!(got.history[1].test_loss, meta.history[1].test_loss);
            assert_eq!(got.history[1].lr, meta.history[1].lr);
            let x = Tensor::rand([4, 3, 28, 28], (Kind::Float, Device::Cpu));
            let a = CModule::load(root.join("model.pt"))
                .unwrap()
                .forward_ts(&[x.shallow_clone()])
                .unwrap();
            let b = CModule::load(dir.path().join("parts/model.pt"))
                .unwrap()
                .forward_ts(&[x])
                .unwrap();
            assert!(a.equal(&b));
        },
    );
}

#[test]
fn recipe_flags_are_checked() {
    let tmp = tempfile::tempdir().unwrap();
    for (args, says) in [
        (vec!["--schedule", "step:5,2:0.1"], "schedule"),
        (vec!["--schedule", "linear"], "schedule"),
        (vec!["--ema", "1.5"], "ema"),
        (vec!["--weight-decay", "-1"], "weight_decay"),
        (vec!["--augment", "crop-flip"], "digits"),
        (vec!["--augment", "rotate"], "augment"),
        (vec!["--multiplicity", "4"], "needs --augment"),
        (
            vec!["--augment", "crop", "--multiplicity", "0"],
            "multiplicity",
        ),
    ] {
        refused(tmp.path(), &args, says);
    }
}

/// `fool train --dataset mnist --epochs 1 --limit 100 --out DIR/r ARGS` fails (exit 1) with
/// a message containing `says`, and writes no model.
pub(crate) fn refused(tmp: &std::path::Path, args: &[&str], says: &str) {
    let o = crate::common::fool()
        .args([
            "train",
            "--dataset",
            "mnist",
            "--epochs",
            "1",
            "--limit",
            "100",
            "--out",
        ])
        .arg(tmp.join("r"))
        .args(args)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        matches!(o.status.code(), Some(1) | Some(2)),
        "{args:?}: {err}"
    );
    assert!(err.contains(says), "{args:?}: {err}");
    assert!(!tmp.join("r").join("model.pt").exists(), "{args:?}");
}

/// Augmented DP training on CIFAR-10 (crops and flips drawn from the per-epoch seed): a run
/// stopped after epoch 1 and resumed ends with the same model as an uninterrupted one, and
/// differs from the unaugmented run; so does one with augmentation multiplicity 3, which also
/// differs from multiplicity 1 and keeps ε.
#[test]
fn augmented_training_resumes_identically() {
    isolated(
        "train_recipe::augmented_training_resumes_identically",
        || {
            let dir = tempfile::tempdir().unwrap();
            let cfg = |augment, multiplicity| TrainConfig {
                dataset: DatasetName::Cifar10,
                data_dir: asset("cifar10"),
                arch: "small-cnn:conv=2".parse().unwrap(),
                limit: Some(300),
                recipe: Recipe {
                    augment,
                    multiplicity,
                    ..Default::default()
                },
                ..config(Recipe::default())
            };
            let run = |out: &str, augment, k| Run {
                test_examples: Some(200),
                ..Run::new(
                    cfg(augment, k),
                    RunDir::new(dir.path().join(out)),
                    Device::Cpu,
                )
            };
            let aug = Some(fool::train::augment::Augment::CropFlip);
            let eps = |o: Outcome| match o {
                Outcome::Finished(m) => m.epsilon.expect("a DP run has ε"),
                Outcome::Stopped { .. } => panic!("not finished"),
            };
            let whole = eps(run("whole", aug, None).train(&mut Silent).unwrap());
            run("plain", None, None).train(&mut Silent).unwrap();
            for (name, k) in [("parts", None), ("mult-parts", Some(3))] {
                let parts = run(name, aug, k);
                parts.train(&mut StopAfter(1)).unwrap();
                Run {
                    resume: Resume::Continue,
                    ..parts
                }
                .train(&mut Silent)
                .unwrap();
            }
            let mult = eps(run("mult", aug, Some(3)).train(&mut Silent).unwrap());
            assert_eq!(mult, whole, "multiplicity must not change ε");
            let x = Tensor::rand([4, 3, 32, 32], (Kind::Float, Device::Cpu));
            let y = |name: &str| {
                let m = CModule::load(dir.path().join(name).join("model.pt")).unwrap();
                m.forward_ts(&[x.shallow_clone()]).unwrap()
            };
            assert!(y("whole").equal(&y("parts")), "resumed run differs");
            assert!(y("mult").equal(&y("mult-parts")), "resumed K=3 run differs");
            assert!(
                !y("mult").equal(&y("whole")),
                "multiplicity changed nothing"
            );
            assert!(
                !y("whole").equal(&y("plain")),
                "augmentation changed nothing"
            );
        },
    );
}
