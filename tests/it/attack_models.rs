//! The SGD attack on small TorchScript models made here (a tiny conv net and a ResNet-18
//! architecture with random weights): budget, range and quantized success, checked on the
//! images as saved to PNG and loaded again.

use fool::attacks::{project_quantized, verify_file, Attack, Budget, Goal, SgdAttack};
use fool::imageio::{save_png, tensor_to_rgb};
use fool::model::Classifier;
use fool::preprocess::Preprocess;
use tch::{Device, Kind, Tensor};

fn pre(size: u32) -> Preprocess {
    Preprocess {
        size,
        resize: size,
        ..Preprocess::default()
    }
}

/// A deterministic 8-bit test image (1,3,S,S).
fn image(size: i64) -> Tensor {
    let ramp = Tensor::arange(size * size * 3, (Kind::Float, Device::Cpu)).view([1, 3, size, size]);
    ((ramp * 37.0).remainder(256.0)).floor() / 255.0
}

fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

fn check_output(
    model: &Classifier,
    x0: &Tensor,
    out: &fool::attacks::AttackOutput,
    goal: &Goal,
    eps: f64,
) {
    let adv = &out.adv;
    // On the 8-bit grid, in range, within budget.
    let levels = adv * 255.0;
    assert!(
        max_abs(&levels, &levels.round()) < 1e-3,
        "not on the 8-bit grid"
    );
    assert!(adv.min().double_value(&[]) >= 0.0 && adv.max().double_value(&[]) <= 1.0);
    assert!(
        max_abs(adv, x0) <= eps + 1e-6,
        "L∞ {} > eps {eps}",
        max_abs(adv, x0)
    );
    // The saved PNG, loaded again, is what the attack claims.
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("adv.png");
    save_png(&tensor_to_rgb(adv), &png).unwrap();
    let v = verify_file(model, &png, x0, goal, Budget::linf(eps)).unwrap();
    assert_eq!(
        v.success, out.success[0],
        "attack's claim and the saved file disagree"
    );
    assert!(
        max_abs(&v.pixels, adv) < 1e-6,
        "PNG round trip changed the image"
    );
    assert!(v.linf <= eps + 1e-6);
}

#[test]
fn targeted_attack_on_tiny_model_succeeds_within_budget() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.pt");
    crate::common::tiny_model(&path, 10, 32, 1);
    let model = Classifier::load(&path, Device::Cpu, pre(32)).unwrap();
    assert_eq!(model.num_classes, 10);
    let x0 = image(32);
    let logits = tch::no_grad(|| model.logits(&x0)).unwrap();
    // The runner-up class: reachable for a random tiny model, but not without the attack.
    let target = logits.topk(2, -1, true, true).1.int64_value(&[0, 1]);
    let goal = Goal::Targeted(Tensor::from_slice(&[target]));
    let eps = 16.0 / 255.0;
    let attack = SgdAttack {
        steps: 300,
        lr: 0.5,
        ..SgdAttack::default()
    };
    let out = attack
        .run(&model, &x0, &goal, Budget::linf(eps), &mut |_| {})
        .unwrap();
    assert!(
        out.success[0],
        "tiny model not fooled (p target {})",
        out.class_prob[0]
    );
    assert!(out.steps < 300, "early stop did not happen");
    check_output(&model, &x0, &out, &goal, eps);
    let pred = tch::no_grad(|| model.logits(&out.adv))
        .unwrap()
        .argmax(-1, false)
        .int64_value(&[0]);
    assert_eq!(pred, target);
}

#[test]
fn untargeted_attack_and_tight_budgets_respect_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.pt");
    crate::common::tiny_model(&path, 10, 32, 2);
    let model = Classifier::load(&path, Device::Cpu, pre(32)).unwrap();
    let x0 = image(32);
    let orig = tch::no_grad(|| model.logits(&x0))
        .unwrap()
        .argmax(-1, false);
    let goal = Goal::Untargeted(orig.shallow_clone());
    for eps in [1.0 / 255.0, 3.0 / 255.0, 0.0314] {
        let attack = SgdAttack {
            steps: 20,
            lr: 0.05,
            random_start: true,
            ..SgdAttack::default()
        };
        let out = attack
            .run(&model, &x0, &goal, Budget::linf(eps), &mut |_| {})
            .unwrap();
        check_output(&model, &x0, &out, &goal, eps);
        if out.success[0] {
            let pred = tch::no_grad(|| model.logits(&out.adv))
                .unwrap()
                .argmax(-1, false);
            assert_ne!(pred.int64_value(&[0]), orig.int64_value(&[0]));
        }
    }
}

#[test]
fn unreachable_goal_reports_failure_and_keeps_best_image() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.pt");
    crate::common::tiny_model(&path, 10, 32, 3);
    let model = Classifier::load(&path, Device::Cpu, pre(32)).unwrap();
    let x0 = image(32);
    let orig = tch::no_grad(|| model.logits(&x0))
        .unwrap()
        .argmax(-1, false)
        .int64_value(&[0]);
    let goal = Goal::Targeted(Tensor::from_slice(&[(orig + 1) % 10]));
    // Zero steps: the image is only evaluated, never changed.
    let attack = SgdAttack {
        steps: 0,
        ..SgdAttack::default()
    };
    let eps = 8.0 / 255.0;
    let out = attack
        .run(&model, &x0, &goal, Budget::linf(eps), &mut |_| {})
        .unwrap();
    assert!(!out.success[0]);
    assert_eq!(out.steps, 0);
    assert!(max_abs(&out.adv, &x0) < 1e-6);
    check_output(&model, &x0, &out, &goal, eps);
}

#[test]
fn resnet18_architecture_loads_and_is_attacked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("resnet18.pt");
    crate::common::resnet18_model(&path, 1000, 64);
    let model = Classifier::load(&path, Device::Cpu, pre(64)).unwrap();
    assert_eq!(model.num_classes, 1000);
    let x0 = image(64);
    let logits = tch::no_grad(|| model.logits(&x0)).unwrap();
    let target = logits.topk(5, -1, true, true).1.int64_value(&[0, 4]);
    let goal = Goal::Targeted(Tensor::from_slice(&[target]));
    let eps = 10.0 / 255.0;
    let attack = SgdAttack {
        steps: 100,
        lr: 0.5,
        ..SgdAttack::default()
    };
    let out = attack
        .run(&model, &x0, &goal, Budget::linf(eps), &mut |_| {})
        .unwrap();
    assert!(
        out.success[0],
        "ResNet-18 not fooled (p target {})",
        out.class_prob[0]
    );
    check_output(&model, &x0, &out, &goal, eps);
}

#[test]
fn projection_is_idempotent_and_exact_on_grid() {
    let x0 = image(8);
    let x = &x0 + Tensor::randn([1, 3, 8, 8], (Kind::Float, Device::Cpu)) * 0.2;
    let b = Budget::linf(5.0 / 255.0);
    let p = project_quantized(&x0, &x, b);
    assert!(max_abs(&project_quantized(&x0, &p, b), &p) < 1e-7);
    assert!(max_abs(&p, &x0) <= 5.0 / 255.0 + 1e-6);
}

#[test]
fn without_early_stop_all_steps_run_and_confidence_grows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.pt");
    crate::common::tiny_model(&path, 10, 32, 1);
    let model = Classifier::load(&path, Device::Cpu, pre(32)).unwrap();
    let x0 = image(32);
    let logits = tch::no_grad(|| model.logits(&x0)).unwrap();
    let target = logits.topk(2, -1, true, true).1.int64_value(&[0, 1]);
    let goal = Goal::Targeted(Tensor::from_slice(&[target]));
    let eps = 16.0 / 255.0;
    let early = SgdAttack {
        steps: 300,
        lr: 0.5,
        ..SgdAttack::default()
    };
    let a = early
        .run(&model, &x0, &goal, Budget::linf(eps), &mut |_| {})
        .unwrap();
    let full = SgdAttack {
        early_stop: false,
        steps: a.steps + 30,
        ..early.clone()
    };
    let mut seen = 0;
    let b = full
        .run(&model, &x0, &goal, Budget::linf(eps), &mut |_| seen += 1)
        .unwrap();
    assert!(a.success[0] && b.success[0]);
    assert_eq!(b.steps, a.steps + 30);
    assert_eq!(seen, a.steps + 31, "one report per evaluation");
    assert!(
        b.class_prob[0] > a.class_prob[0],
        "{} vs {}",
        b.class_prob[0],
        a.class_prob[0]
    );
    check_output(&model, &x0, &b, &goal, eps);
}
