//! Every attack on a batch of four images and a tiny traced model: the returned images are on
//! the 8-bit grid, in range and within budget; the reported success is what the model says
//! about the returned images; untargeted and targeted (runner-up class) attacks succeed where
//! they should; queries are counted as the forward passes the victim really ran.

use fool::attacks::{
    Apgd, Attack, AttackOutput, Budget, CarliniWagner, Fgsm, Goal, MiFgsm, Norm, Pgd, SgdAttack,
    Square, Victim,
};
use fool::model::Classifier;
use fool::preprocess::Preprocess;
use std::cell::Cell;
use std::sync::{Mutex, MutexGuard};
use tch::{Device, Kind, Tensor};

/// libtorch's RNG is global and tests run on parallel threads: each test holds this while it
/// seeds, builds its model and attacks, so its random draws are its own and results repeat.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    let guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // Tiny models: one libtorch thread is fastest, and steadier on a busy machine.
    tch::set_num_threads(1);
    guard
}

const N: i64 = 4;
const SIZE: i64 = 32;
/// The tiny model the success thresholds were measured on (seed of its weights).
const MODEL: i64 = 1;

fn pre(size: u32) -> Preprocess {
    Preprocess {
        size,
        resize: size,
        ..Preprocess::default()
    }
}

/// Four deterministic 8-bit images (4,3,S,S), each a different pattern.
fn images() -> Tensor {
    let ramp = Tensor::arange(3 * SIZE * SIZE, (Kind::Float, Device::Cpu)).view([1, 3, SIZE, SIZE]);
    let imgs: Vec<Tensor> = [37.0, 53.0, 101.0, 7.0]
        .iter()
        .enumerate()
        .map(|(i, k)| ((&ramp * *k + 17.0 * i as f64).remainder(256.0)).floor() / 255.0)
        .collect();
    Tensor::cat(&imgs, 0)
}

fn tiny(seed: i64) -> (tempfile::TempDir, Classifier) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.pt");
    crate::common::tiny_model(&path, 10, SIZE, seed);
    let model = Classifier::load(&path, Device::Cpu, pre(SIZE as u32)).unwrap();
    (dir, model)
}

fn logits(model: &Classifier, x: &Tensor) -> Tensor {
    tch::no_grad(|| model.logits(x)).unwrap()
}

/// Untargeted goal (the model's own predictions) and targeted goal (each image's runner-up).
fn goals(model: &Classifier, x0: &Tensor) -> (Goal, Goal) {
    let top2 = logits(model, x0).topk(2, -1, true, true).1;
    (
        Goal::Untargeted(top2.select(1, 0)),
        Goal::Targeted(top2.select(1, 1)),
    )
}

fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

/// The conventions every attack follows, checked on its output (L∞ budget `eps`).
fn check_output(model: &Classifier, x0: &Tensor, out: &AttackOutput, goal: &Goal, eps: f64) {
    check_output_in(model, x0, out, goal, Budget::linf(eps))
}

/// Per-image L2 distances in whole 8-bit levels, exactly (integer sums of squares).
fn l2_levels(a: &Tensor, b: &Tensor) -> Vec<f64> {
    let d = ((a - b) * 255.0)
        .round()
        .to_kind(Kind::Int64)
        .flatten(1, -1);
    Vec::<i64>::try_from(d.square().sum_dim_intlist(&[1i64][..], false, Kind::Int64))
        .unwrap()
        .into_iter()
        .map(|v| (v as f64).sqrt())
        .collect()
}

/// The conventions every attack follows, checked on its output under any budget.
fn check_output_in(model: &Classifier, x0: &Tensor, out: &AttackOutput, goal: &Goal, b: Budget) {
    let eps = b.eps;
    let adv = &out.adv;
    assert_eq!(adv.size(), x0.size());
    let levels = adv * 255.0;
    assert!(
        max_abs(&levels, &levels.round()) < 1e-3,
        "not on the 8-bit grid"
    );
    assert!(
        adv.min().double_value(&[]) >= 0.0 && adv.max().double_value(&[]) <= 1.0,
        "out of range"
    );
    match b.norm {
        Norm::Linf => assert!(
            max_abs(adv, x0) <= eps + 1e-6,
            "L∞ {} > eps {eps}",
            max_abs(adv, x0)
        ),
        Norm::L2 => {
            for d in l2_levels(adv, x0) {
                assert!(d <= eps * 255.0 + 1e-9, "L2 {d}/255 > eps {eps}");
            }
        }
    }
    let l = logits(model, adv);
    let said = Vec::<bool>::try_from(goal.reached(&l)).unwrap();
    assert_eq!(
        out.success, said,
        "reported success differs from the model's verdict on adv"
    );
    let prob = Vec::<f64>::try_from(goal.class_prob(&l).to_kind(Kind::Double)).unwrap();
    assert_eq!(out.class_prob.len(), N as usize);
    for (a, b) in out.class_prob.iter().zip(&prob) {
        assert!((a - b).abs() < 1e-4, "class_prob {a} vs {b} on adv");
    }
    assert!(out.queries > 0);
}

fn successes(out: &AttackOutput) -> usize {
    out.success.iter().filter(|s| **s).count()
}

/// Runs `attack` untargeted and targeted at `eps` on the tiny model `MODEL` (seeding
/// libtorch's RNG first) and checks the conventions on both outputs.
fn run_both(attack: &dyn Attack, eps: f64) -> (AttackOutput, AttackOutput) {
    run_both_in(attack, Budget::linf(eps))
}

fn run_both_in(attack: &dyn Attack, budget: Budget) -> (AttackOutput, AttackOutput) {
    let _guard = serial();
    let (_dir, model) = tiny(MODEL);
    let x0 = images();
    let (untargeted, targeted) = goals(&model, &x0);
    tch::manual_seed(7);
    let mut reports = 0;
    let u = attack
        .run(&model, &x0, &untargeted, budget, &mut |_| reports += 1)
        .unwrap();
    assert!(reports > 0, "{}: no progress reported", attack.name());
    check_output_in(&model, &x0, &u, &untargeted, budget);
    let t = attack
        .run(&model, &x0, &targeted, budget, &mut |_| {})
        .unwrap();
    check_output_in(&model, &x0, &t, &targeted, budget);
    (u, t)
}

/// Both goals met for at least `min` of the 4 images.
fn assert_successes(name: &str, (u, t): &(AttackOutput, AttackOutput), min: usize) {
    assert!(successes(u) >= min, "{name} untargeted: {:?}", u.success);
    assert!(successes(t) >= min, "{name} targeted: {:?}", t.success);
}

/// A victim that counts the images it classifies, can pretend to be random (EOT draws) and can
/// refuse to build a graph (for black-box attacks).
struct Counting<'a> {
    model: &'a Classifier,
    images: Cell<usize>,
    eot: usize,
    forbid_grad: bool,
}

impl<'a> Counting<'a> {
    fn new(model: &'a Classifier) -> Self {
        Counting {
            model,
            images: Cell::new(0),
            eot: 1,
            forbid_grad: false,
        }
    }
}

/// Whether autograd is recording (false inside `tch::no_grad`).
fn grad_mode_enabled() -> bool {
    (Tensor::ones([1], (Kind::Float, Device::Cpu)).set_requires_grad(true) * 2.0).requires_grad()
}

impl Victim for Counting<'_> {
    fn logits(&self, x: &Tensor) -> fool::Result<Tensor> {
        if self.forbid_grad {
            assert!(
                !x.requires_grad() && !grad_mode_enabled(),
                "a black-box attack asked for a gradient"
            );
        }
        self.images.set(self.images.get() + x.size()[0] as usize);
        self.model.logits(x)
    }
    fn eot_samples(&self) -> usize {
        self.eot
    }
}

#[test]
fn fgsm_moves_every_pixel_by_eps_and_fools_the_tiny_model() {
    let eps = 16.0 / 255.0;
    let attack = Fgsm::default();
    assert_eq!(attack.name(), "fgsm");
    let out = run_both(&attack, eps);
    assert_successes("fgsm", &out, 3);
    let x0 = images();
    for o in [&out.0, &out.1] {
        assert_eq!((o.steps, o.queries), (1, 2));
        let d = ((&o.adv - &x0) * 255.0).round().abs();
        let clipped = o.adv.eq(0.0).logical_or(&o.adv.eq(1.0));
        let free = clipped.logical_not();
        let full = d
            .eq(16.0)
            .logical_and(&free)
            .sum(Kind::Int64)
            .int64_value(&[]);
        let partial = d
            .gt(0.0)
            .logical_and(&d.lt(16.0))
            .logical_and(&free)
            .sum(Kind::Int64)
            .int64_value(&[]);
        let n_free = free.sum(Kind::Int64).int64_value(&[]);
        assert_eq!(
            partial, 0,
            "a pixel moved by less than eps without hitting the range"
        );
        // Pixels that did not move at all have a zero gradient (dead ReLUs): few.
        assert!(
            full as f64 >= 0.9 * n_free as f64,
            "{full} of {n_free} unclipped pixels moved by eps"
        );
    }
}

#[test]
fn pgd_and_bim_fool_the_tiny_model_and_stop_early() {
    let eps = 16.0 / 255.0;
    let pgd = Pgd::default();
    assert_eq!(pgd.name(), "pgd");
    assert!((pgd.step_size(eps) - 2.5 * eps / 20.0).abs() < 1e-12);
    let out = run_both(&pgd, eps);
    assert_successes("pgd", &out, 3);
    assert!(
        out.0.steps < pgd.steps,
        "early stop did not happen: {}",
        out.0.steps
    );
    let bim = Pgd::bim(20, None);
    assert_eq!(bim.name(), "bim");
    let a = run_both(&bim, eps);
    assert_successes("bim", &a, 3);
    // No random start: BIM is deterministic whatever the seed.
    let b = run_both(&bim, eps);
    assert!(max_abs(&a.0.adv, &b.0.adv) == 0.0 && max_abs(&a.1.adv, &b.1.adv) == 0.0);
}

#[test]
fn pgd_success_never_drops_as_eps_grows() {
    let _guard = serial();
    for model_seed in [1, 2] {
        let (_dir, model) = tiny(model_seed);
        let x0 = images();
        let (untargeted, targeted) = goals(&model, &x0);
        for goal in [&untargeted, &targeted] {
            let mut last = 0;
            for levels in [1.0, 2.0, 4.0, 8.0, 16.0] {
                let eps = levels / 255.0;
                tch::manual_seed(11);
                let out = Pgd::default()
                    .run(&model, &x0, goal, Budget::linf(eps), &mut |_| {})
                    .unwrap();
                check_output(&model, &x0, &out, goal, eps);
                let s = successes(&out);
                assert!(
                    s >= last,
                    "model {model_seed}: {s} successes at {levels}/255 < {last} below"
                );
                last = s;
            }
            assert!(
                last >= 3,
                "model {model_seed}: only {last} successes at 16/255"
            );
        }
    }
}

#[test]
fn mifgsm_fools_the_tiny_model() {
    let attack = MiFgsm::default();
    assert_eq!(attack.name(), "mifgsm");
    let out = run_both(&attack, 16.0 / 255.0);
    assert_successes("mifgsm", &out, 3);
    let out = run_both(&attack, 8.0 / 255.0);
    assert_successes("mifgsm", &out, 3);
}

#[test]
fn apgd_fools_the_tiny_model_and_runs_all_restarts_without_early_stop() {
    let attack = Apgd::default();
    assert_eq!(attack.name(), "apgd");
    let out = run_both(&attack, 16.0 / 255.0);
    assert_successes("apgd", &out, 3);
    let out = run_both(&attack, 8.0 / 255.0);
    assert_successes("apgd", &out, 3);

    // All iterations of all restarts, one report and one gradient (EOT draws) each.
    let _guard = serial();
    let (_dir, model) = tiny(MODEL);
    let x0 = images();
    let (untargeted, _) = goals(&model, &x0);
    let full = Apgd {
        steps: 20,
        n_restarts: 2,
        early_stop: false,
        ..Apgd::default()
    };
    let victim = Counting {
        eot: 2,
        ..Counting::new(&model)
    };
    let mut reports = 0;
    tch::manual_seed(3);
    let out = full
        .run(
            &victim,
            &x0,
            &untargeted,
            Budget::linf(4.0 / 255.0),
            &mut |_| reports += 1,
        )
        .unwrap();
    check_output(&model, &x0, &out, &untargeted, 4.0 / 255.0);
    assert_eq!(out.steps, 40);
    assert_eq!(reports, 42);
    assert_eq!(out.queries, 42 * 2);
    assert_eq!(victim.images.get(), out.queries * N as usize);
}

#[test]
fn cw_fools_the_tiny_model_with_small_l2() {
    let attack = CarliniWagner::default();
    assert_eq!(attack.name(), "cw");
    let eps = 16.0 / 255.0;
    let out = run_both(&attack, eps);
    assert_successes("cw", &out, 3);
    let u = &out.0;
    // CW minimizes L2: its successful images are much closer than FGSM's corners of the box.
    let (fu, _) = run_both(&Fgsm::default(), eps);
    let x0 = images();
    let l2 = |adv: &Tensor| {
        Vec::<f64>::try_from(
            (adv - &x0)
                .square()
                .sum_dim_intlist([1i64, 2, 3].as_slice(), false, Kind::Double)
                .sqrt(),
        )
        .unwrap()
    };
    let (cw_l2, fgsm_l2) = (l2(&u.adv), l2(&fu.adv));
    for i in 0..N as usize {
        if u.success[i] {
            assert!(
                cw_l2[i] < 0.5 * fgsm_l2[i],
                "image {i}: CW L2 {} vs FGSM {}",
                cw_l2[i],
                fgsm_l2[i]
            );
        }
    }
}

#[test]
fn square_fools_the_tiny_model_within_its_query_budget_without_gradients() {
    let attack = Square::default();
    assert_eq!(attack.name(), "square");
    let eps = 16.0 / 255.0;
    let _guard = serial();
    let (_dir, model) = tiny(MODEL);
    let x0 = images();
    let (untargeted, targeted) = goals(&model, &x0);
    for goal in [&untargeted, &targeted] {
        let victim = Counting {
            forbid_grad: true,
            ..Counting::new(&model)
        };
        tch::manual_seed(5);
        let out = attack
            .run(&victim, &x0, goal, Budget::linf(eps), &mut |_| {})
            .unwrap();
        check_output(&model, &x0, &out, goal, eps);
        assert!(successes(&out) >= 3, "square: {:?}", out.success);
        assert!(out.queries <= attack.max_queries);
        let forwarded = victim.images.get();
        assert!(
            forwarded <= N as usize * out.queries,
            "{forwarded} images for {} queries",
            out.queries
        );
        // Images stop being queried once they succeed: fewer forward passes than N × max.
        assert!(forwarded < N as usize * out.queries);
    }
    // A small budget is spent exactly, and only the starting point is queried with one query.
    for max_queries in [1, 30] {
        let small = Square {
            max_queries,
            ..Square::default()
        };
        let victim = Counting {
            forbid_grad: true,
            ..Counting::new(&model)
        };
        tch::manual_seed(5);
        let out = small
            .run(
                &victim,
                &x0,
                &untargeted,
                Budget::linf(2.0 / 255.0),
                &mut |_| {},
            )
            .unwrap();
        check_output(&model, &x0, &out, &untargeted, 2.0 / 255.0);
        assert_eq!(out.queries, max_queries);
        assert!(victim.images.get() <= N as usize * max_queries);
        // The start is vertical stripes of ±eps (clipped by the range).
        if max_queries == 1 {
            let d = (&out.adv - &x0) * 255.0;
            let free = out.adv.gt(0.0).logical_and(&out.adv.lt(1.0));
            let off = d
                .abs()
                .round()
                .ne(2.0)
                .logical_and(&free)
                .sum(Kind::Int64)
                .int64_value(&[]);
            assert_eq!(off, 0, "start is not ±eps everywhere");
        }
    }
}

#[test]
fn gradient_attacks_count_eot_draws_as_queries() {
    let _guard = serial();
    let (_dir, model) = tiny(MODEL);
    let x0 = images();
    let (_, targeted) = goals(&model, &x0);
    let eps = 2.0 / 255.0;
    let attacks: Vec<Box<dyn Attack>> = vec![
        Box::new(Fgsm::default()),
        Box::new(Pgd {
            steps: 5,
            early_stop: false,
            ..Pgd::default()
        }),
        Box::new(MiFgsm {
            steps: 5,
            early_stop: false,
            ..MiFgsm::default()
        }),
        Box::new(CarliniWagner {
            search_steps: 2,
            steps: 5,
            ..CarliniWagner::default()
        }),
    ];
    for attack in &attacks {
        let victim = Counting {
            eot: 3,
            ..Counting::new(&model)
        };
        tch::manual_seed(1);
        let out = attack
            .run(&victim, &x0, &targeted, Budget::linf(eps), &mut |_| {})
            .unwrap();
        check_output(&model, &x0, &out, &targeted, eps);
        assert_eq!(
            victim.images.get(),
            out.queries * N as usize,
            "{}: queries {}",
            attack.name(),
            out.queries
        );
    }
}

#[test]
fn square_schedule_halves_p_at_the_papers_milestones() {
    use fool::attacks::square::p_selection;
    let p = |it| p_selection(0.05, it, Some(1000));
    // Iteration it of 1000 is it·10 of the reference's 10,000.
    assert_eq!(p(0), 0.05);
    assert_eq!(p(1), 0.05);
    assert_eq!(p(2), 0.025);
    assert_eq!(p(5), 0.025);
    assert_eq!(p(6), 0.0125);
    assert_eq!(p(20), 0.0125);
    assert_eq!(p(21), 0.05 / 8.0);
    assert_eq!(p(100), 0.05 / 16.0);
    assert_eq!(p(400), 0.05 / 64.0);
    assert_eq!(p(999), 0.05 / 512.0);
    // AutoAttack's schedule is not rescaled: iteration it is the reference's it.
    let aa = |it| p_selection(0.8, it, None);
    assert_eq!((aa(10), aa(11), aa(50), aa(51)), (0.8, 0.4, 0.4, 0.2));
    assert_eq!(
        (aa(4000), aa(4001), aa(4999)),
        (0.8 / 64.0, 0.8 / 128.0, 0.8 / 128.0)
    );
    assert_eq!(aa(20000), 0.8 / 512.0);
}

#[test]
fn every_gradient_attack_works_under_an_l2_budget() {
    // 32×32×3 values: an L2 radius of 1.0 is the L∞ box of 4.6/255 spread evenly.
    let budget = Budget::l2(1.0);
    let attacks: Vec<(Box<dyn Attack>, usize)> = vec![
        (Box::new(Fgsm::default()), 2),
        (Box::new(Pgd::default()), 3),
        (Box::new(Pgd::bim(20, None)), 3),
        (Box::new(MiFgsm::default()), 3),
        (Box::new(Apgd::default()), 3),
        (Box::new(SgdAttack::default()), 3),
        (Box::new(CarliniWagner::default()), 3),
    ];
    for (attack, min) in &attacks {
        assert!(attack.supports(Norm::L2));
        let out = run_both_in(attack.as_ref(), budget);
        if attack.name() == "fgsm" {
            // FGM: one step of L2 length eps along the gradient, kept by the 8-bit projection
            // to within a level (less only where the range clips it).
            for o in [&out.0, &out.1] {
                for d in l2_levels(&o.adv, &images()) {
                    assert!(
                        (255.0 - 1.0 - 60.0..=255.0).contains(&d),
                        "FGM length {d} levels"
                    );
                }
            }
        }
        assert_successes(&format!("{} L2", attack.name()), &out, *min);
        // The budget is used: a successful image moved, and not as a plain L∞ box corner.
        let x0 = images();
        for o in [&out.0, &out.1] {
            for (i, d) in l2_levels(&o.adv, &x0).iter().enumerate() {
                if o.success[i] {
                    assert!(*d > 0.0, "{}: success without a change", attack.name());
                }
            }
        }
    }
}

#[test]
fn pgd_l2_success_never_drops_as_the_radius_grows_and_beats_a_tight_linf_box() {
    let _guard = serial();
    let (_dir, model) = tiny(MODEL);
    let x0 = images();
    let (untargeted, targeted) = goals(&model, &x0);
    for goal in [&untargeted, &targeted] {
        let mut last = 0;
        for eps in [0.05, 0.1, 0.25, 0.5, 1.0, 2.0] {
            tch::manual_seed(11);
            let out = Pgd::default()
                .run(&model, &x0, goal, Budget::l2(eps), &mut |_| {})
                .unwrap();
            check_output_in(&model, &x0, &out, goal, Budget::l2(eps));
            let s = successes(&out);
            assert!(s >= last, "{s} successes at L2 {eps} < {last} below");
            last = s;
        }
        assert!(last >= 3, "only {last} successes at L2 2.0");
    }
    // Concentrating change where the gradient is: an L2 ball of radius r reaches further than
    // the L∞ box of the same L2 length (r/√d per value) — more successes at equal L2 size.
    let d = (3 * SIZE * SIZE) as f64;
    let r = 0.25;
    tch::manual_seed(11);
    let l2 = Pgd::default()
        .run(&model, &x0, &targeted, Budget::l2(r), &mut |_| {})
        .unwrap();
    let linf_eps = (r / d.sqrt() * 255.0).max(1.0).floor() / 255.0;
    tch::manual_seed(11);
    let linf = Pgd::default()
        .run(&model, &x0, &targeted, Budget::linf(linf_eps), &mut |_| {})
        .unwrap();
    assert!(
        successes(&l2) >= successes(&linf),
        "L2 {r}: {} vs L∞ {linf_eps}: {}",
        successes(&l2),
        successes(&linf)
    );
}

#[test]
fn square_l2_fools_the_tiny_model_within_its_l2_budget_without_gradients() {
    let _guard = serial();
    let (_dir, model) = tiny(MODEL);
    let x0 = images();
    let (untargeted, targeted) = goals(&model, &x0);
    let attack = Square {
        max_queries: 500,
        ..Square::default()
    };
    assert!(attack.supports(Norm::L2));
    let b = Budget::l2(3.0);
    for goal in [&untargeted, &targeted] {
        let victim = Counting {
            forbid_grad: true,
            ..Counting::new(&model)
        };
        tch::manual_seed(5);
        let out = attack.run(&victim, &x0, goal, b, &mut |_| {}).unwrap();
        // 8-bit images inside the L2 ball, judged as the model classifies them.
        check_output_in(&model, &x0, &out, goal, b);
        assert!(successes(&out) >= 2, "square L2: {:?}", out.success);
        assert!(out.queries <= attack.max_queries);
        let q = out.image_queries.as_ref().unwrap();
        assert!(
            q.iter().all(|&q| q >= 1 && q <= attack.max_queries),
            "{q:?}"
        );
        let forwarded = victim.images.get();
        assert!(forwarded <= N as usize * out.queries, "{forwarded} images");
    }
    // Seeded: the same images again.
    tch::manual_seed(5);
    let a = attack
        .run(&model, &x0, &untargeted, b, &mut |_| {})
        .unwrap();
    tch::manual_seed(5);
    let c = attack
        .run(&model, &x0, &untargeted, b, &mut |_| {})
        .unwrap();
    assert!(a.adv.equal(&c.adv));
}

#[test]
fn early_stop_drops_fooled_images_from_the_batch_and_finds_the_same_successes() {
    let _guard = serial();
    let (_dir, model) = tiny(MODEL);
    let x0 = images();
    let (untargeted, targeted) = goals(&model, &x0);
    let eps = 3.0 / 255.0;
    let attacks: Vec<(Box<dyn Attack>, Box<dyn Attack>)> = vec![
        (
            Box::new(Pgd::default()),
            Box::new(Pgd {
                early_stop: false,
                ..Pgd::default()
            }),
        ),
        (
            Box::new(MiFgsm::default()),
            Box::new(MiFgsm {
                early_stop: false,
                ..MiFgsm::default()
            }),
        ),
        (
            Box::new(SgdAttack::default()),
            Box::new(SgdAttack {
                early_stop: false,
                ..SgdAttack::default()
            }),
        ),
        (
            Box::new(Apgd {
                steps: 30,
                ..Apgd::default()
            }),
            Box::new(Apgd {
                steps: 30,
                early_stop: false,
                ..Apgd::default()
            }),
        ),
    ];
    for (fast, full) in &attacks {
        let mut compacted = 0;
        for goal in [&untargeted, &targeted] {
            let victim = Counting::new(&model);
            tch::manual_seed(9);
            let a = fast
                .run(&victim, &x0, goal, Budget::linf(eps), &mut |_| {})
                .unwrap();
            check_output(&model, &x0, &a, goal, eps);
            tch::manual_seed(9);
            let b = full
                .run(&model, &x0, goal, Budget::linf(eps), &mut |_| {})
                .unwrap();
            assert_eq!(a.success, b.success, "{}", fast.name());
            // Every forward pass is one image's query, and only open images were queried.
            let q = a.image_queries.clone().expect("per-image queries");
            assert_eq!(victim.images.get(), q.iter().sum::<usize>());
            assert_eq!(a.queries, *q.iter().max().unwrap());
            for (i, qi) in q.iter().enumerate() {
                assert!(*qi <= b.queries);
                if *qi < a.queries {
                    assert!(a.success[i], "{}: image {i} stopped unfooled", fast.name());
                    compacted += 1;
                }
            }
        }
        assert!(
            compacted > 0,
            "{}: no image ever left the batch early",
            fast.name()
        );
    }
}

/// AutoAttack's other attacks on the tiny model: APGD on the DLR loss (untargeted and
/// targeted), APGD-T and FAB-T (untargeted only: they pick their target classes themselves),
/// every output on the grid and within budget, success as the model judges it.
#[test]
fn dlr_apgd_t_and_fab_t_follow_the_conventions_and_fool_the_tiny_model() {
    use fool::attacks::{ApgdLoss, Fab};
    let dlr = Apgd {
        loss: ApgdLoss::Dlr,
        ..Apgd::default()
    };
    assert_eq!(dlr.name(), "apgd-dlr");
    assert_successes("apgd-dlr", &run_both(&dlr, 8.0 / 255.0), 3);
    let _guard = serial();
    let (_dir, model) = tiny(MODEL);
    let x0 = images();
    let (untargeted, targeted) = goals(&model, &x0);
    let apgd_t = Apgd {
        loss: ApgdLoss::DlrTargeted,
        target_classes: 3,
        steps: 30,
        ..Apgd::default()
    };
    let fab_t = Fab {
        target_classes: 3,
        steps: 30,
        ..Fab::default()
    };
    for attack in [&apgd_t as &dyn Attack, &fab_t] {
        assert!(attack.untargeted_only());
        for eps in [4.0 / 255.0, 8.0 / 255.0] {
            tch::manual_seed(2);
            let out = attack
                .run(&model, &x0, &untargeted, Budget::linf(eps), &mut |_| {})
                .unwrap();
            check_output(&model, &x0, &out, &untargeted, eps);
            if eps > 5.0 / 255.0 {
                assert!(successes(&out) >= 3, "{}: {:?}", attack.name(), out.success);
            }
        }
        let e = attack
            .run(&model, &x0, &targeted, Budget::linf(0.03), &mut |_| {})
            .err()
            .expect("a targeted goal is refused");
        assert!(e.to_string().contains("untargeted"), "{e}");
    }
    // FAB-T under L2 too: the hyperplane projection in the other norm.
    tch::manual_seed(2);
    let out = fab_t
        .run(&model, &x0, &untargeted, Budget::l2(1.0), &mut |_| {})
        .unwrap();
    check_output_in(&model, &x0, &out, &untargeted, Budget::l2(1.0));
    assert!(successes(&out) >= 2, "fab-t L2: {:?}", out.success);
}

/// AutoAttack is never weaker than PGD-20 at any eps, names for every broken image the stage
/// that broke it (and for no other), and each stage only attacks what the ones before left.
#[test]
fn autoattack_is_never_weaker_than_pgd_and_names_the_stage_of_every_break() {
    use fool::attacks::AutoAttack;
    let _guard = serial();
    let (_dir, model) = tiny(MODEL);
    let x0 = images();
    let (untargeted, targeted) = goals(&model, &x0);
    let aa = AutoAttack {
        steps: 20,
        square_queries: 200,
        ..AutoAttack::default()
    };
    assert_eq!(
        aa.stages(),
        ["clean", "apgd-ce", "apgd-t", "fab-t", "square"].map(String::from)
    );
    for levels in [1.0, 2.0, 3.0, 4.0] {
        let b = Budget::linf(levels / 255.0);
        tch::manual_seed(11);
        let pgd = Pgd::default()
            .run(&model, &x0, &untargeted, b, &mut |_| {})
            .unwrap();
        tch::manual_seed(11);
        let out = aa.run(&model, &x0, &untargeted, b, &mut |_| {}).unwrap();
        check_output(&model, &x0, &out, &untargeted, b.eps);
        assert!(
            successes(&out) >= successes(&pgd),
            "eps {levels}/255: autoattack {:?} vs pgd {:?}",
            out.success,
            pgd.success
        );
        let stages = out.broken_by.as_ref().expect("a cascade names its stages");
        for (s, k) in out.success.iter().zip(stages) {
            assert_eq!(*s, k.is_some(), "{:?} {:?}", out.success, stages);
            // The goal is the model's own prediction: nothing is misclassified when clean.
            assert_ne!(*k, Some(0));
        }
        let queries = out.image_queries.as_ref().unwrap();
        assert!(queries.iter().all(|&q| q >= 1));
    }
    let e = aa
        .run(&model, &x0, &targeted, Budget::linf(0.03), &mut |_| {})
        .err()
        .expect("targeted refused");
    assert!(e.to_string().contains("untargeted"), "{e}");
    // An image the model gets wrong is broken at stage 0 ("clean") without being attacked.
    let wrong = Goal::Untargeted((untargeted.classes() + 1).remainder(10));
    let out = aa
        .run(&model, &x0, &wrong, Budget::linf(1.0 / 255.0), &mut |_| {})
        .unwrap();
    assert_eq!(out.broken_by.unwrap(), vec![Some(0); N as usize]);
    assert_eq!(out.image_queries.unwrap(), vec![1; N as usize]);
}

/// Under L2 the cascade runs the same four attacks (Square's L2 version last) and is never
/// weaker than PGD-L2.
#[test]
fn autoattack_l2_runs_the_whole_cascade_and_is_never_weaker_than_pgd_l2() {
    use fool::attacks::AutoAttack;
    let _guard = serial();
    let (_dir, model) = tiny(MODEL);
    let x0 = images();
    let (untargeted, _) = goals(&model, &x0);
    let aa = AutoAttack {
        steps: 20,
        square_queries: 100,
        ..AutoAttack::default()
    };
    let names: Vec<String> = aa.cascade(Norm::L2).iter().map(|a| a.name()).collect();
    assert_eq!(
        names.last().map(String::as_str),
        Some("square"),
        "{names:?}"
    );
    assert!(aa.cascade(Norm::L2).iter().all(|a| a.supports(Norm::L2)));
    for r in [0.25, 0.5, 1.0] {
        let b = Budget::l2(r);
        tch::manual_seed(3);
        let pgd = Pgd::default()
            .run(&model, &x0, &untargeted, b, &mut |_| {})
            .unwrap();
        tch::manual_seed(3);
        let out = aa.run(&model, &x0, &untargeted, b, &mut |_| {}).unwrap();
        check_output_in(&model, &x0, &out, &untargeted, b);
        assert!(
            successes(&out) >= successes(&pgd),
            "L2 {r}: {:?} vs {:?}",
            out.success,
            pgd.success
        );
    }
}
