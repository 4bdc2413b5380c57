//! Input-transformation defenses: shapes, ranges and devices, what each one does to simple
//! images, their differentiable/random flags, gradients (own or BPDA through `Defended`),
//! seeded reproducibility, and the `--defense` spec parser.

use fool::attacks::Victim;
use fool::defenses::{self, classify_through, Blur, Defended, Defense, Median, Noise, ResizePad};
use fool::model::Classifier;
use fool::preprocess::Preprocess;
use std::sync::{Mutex, MutexGuard};
use tch::{Device, Kind, Tensor};

/// libtorch's RNG is global and tests run on parallel threads: every test here that draws
/// random numbers (or seeds) holds this lock.
static RNG: Mutex<()> = Mutex::new(());

fn rng() -> MutexGuard<'static, ()> {
    RNG.lock().unwrap_or_else(|e| e.into_inner())
}

fn cpu() -> (Kind, Device) {
    (Kind::Float, Device::Cpu)
}

fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

fn values(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.to_device(Device::Cpu).to_kind(Kind::Float).flatten(0, -1)).unwrap()
}

fn one(spec: &str) -> Box<dyn Defense> {
    Box::new(defenses::parse(spec).unwrap_or_else(|e| panic!("{spec}: {e}")))
}

/// Total variation (sum of absolute neighbour differences) of a batch.
fn total_variation(x: &Tensor) -> f64 {
    let s = x.size();
    let dh = x.narrow(2, 1, s[2] - 1) - x.narrow(2, 0, s[2] - 1);
    let dw = x.narrow(3, 1, s[3] - 1) - x.narrow(3, 0, s[3] - 1);
    dh.abs().sum(Kind::Double).double_value(&[]) + dw.abs().sum(Kind::Double).double_value(&[])
}

const ALL: [&str; 10] = [
    "bits:1",
    "bits:5",
    "median:3",
    "median:5",
    "blur:0.5",
    "blur:1.5",
    "noise:0.05",
    "resize-pad",
    "resize-pad:0.3",
    "jpeg:75+median:3+bits:5+blur:1+noise:0.03+resize-pad",
];

fn check_output(spec: &str, x: &Tensor, y: &Tensor) {
    assert_eq!(y.size(), x.size(), "{spec}: shape");
    assert_eq!(y.kind(), Kind::Float, "{spec}: dtype");
    assert_eq!(y.device(), x.device(), "{spec}: device");
    let (lo, hi) = (y.min().double_value(&[]), y.max().double_value(&[]));
    assert!(lo >= 0.0 && hi <= 1.0, "{spec}: range [{lo}, {hi}]");
}

#[test]
fn outputs_keep_shape_dtype_device_and_range() {
    let _g = rng();
    tch::manual_seed(1);
    let x = Tensor::rand([2, 3, 24, 20], cpu());
    for spec in ALL.iter().chain(&["jpeg:50"]) {
        check_output(spec, &x, &one(spec).apply(&x).unwrap());
    }
    // Float64 input comes back float32; out-of-range input comes back in range.
    let x64 = (&x * 1.4 - 0.2).to_kind(Kind::Double);
    for spec in ALL.iter().filter(|s| !s.starts_with("jpeg")) {
        let y = one(spec).apply(&x64).unwrap();
        assert_eq!(y.kind(), Kind::Float, "{spec}");
    }
    for spec in ["bits:4", "noise:0.1", "resize-pad"] {
        let y = one(spec).apply(&x64).unwrap();
        assert!(
            y.min().double_value(&[]) >= 0.0 && y.max().double_value(&[]) <= 1.0,
            "{spec}"
        );
    }
    // An empty batch is fine.
    let empty = Tensor::zeros([0, 3, 16, 16], cpu());
    for spec in ALL.iter().filter(|s| !s.starts_with("jpeg")) {
        assert_eq!(
            one(spec).apply(&empty).unwrap().size(),
            [0, 3, 16, 16],
            "{spec}"
        );
    }
    // On a GPU when there is one (JPEG encodes on the CPU but returns to the input's device).
    if tch::Cuda::is_available() {
        let xc = x.to_device(Device::Cuda(0));
        for spec in ALL {
            let y = one(spec).apply(&xc).unwrap();
            check_output(spec, &xc, &y);
        }
        for spec in ["bits:5", "median:3", "median:5", "blur:1.5"] {
            let d = one(spec);
            let (a, b) = (
                d.apply(&x).unwrap(),
                d.apply(&xc).unwrap().to_device(Device::Cpu),
            );
            assert!(
                max_abs(&a, &b) < 1e-5,
                "{spec}: CPU and CUDA disagree by {}",
                max_abs(&a, &b)
            );
        }
    }
}

#[test]
fn too_small_images_are_errors_not_panics() {
    let x = Tensor::zeros([1, 3, 2, 2], cpu());
    for spec in ["median:5", "blur:1"] {
        let e = one(spec)
            .apply(&x)
            .err()
            .unwrap_or_else(|| panic!("{spec} accepted 2×2"));
        assert!(
            e.to_string().contains(&spec[..spec.find(':').unwrap()]),
            "{e}"
        );
    }
    assert!(one("median:3")
        .apply(&Tensor::zeros([3, 2, 2], cpu()))
        .is_err());
}

#[test]
fn bits_quantize_to_at_most_2n_levels_and_are_idempotent() {
    let _g = rng();
    tch::manual_seed(2);
    let x = Tensor::rand([2, 3, 32, 32], cpu());
    for n in 1..=8u32 {
        let d = one(&format!("bits:{n}"));
        let y = d.apply(&x).unwrap();
        let levels = f64::from((1u32 << n) - 1);
        let k = &y * levels;
        assert!(max_abs(&k, &k.round()) < 1e-4, "bits:{n}: off the grid");
        let mut v: Vec<i64> = values(&k).iter().map(|f| f.round() as i64).collect();
        v.sort_unstable();
        v.dedup();
        assert!(v.len() <= 1 << n, "bits:{n}: {} levels", v.len());
        assert!(
            v.len() >= (1 << n).min(2),
            "bits:{n}: only {} levels",
            v.len()
        );
        assert!(
            max_abs(&d.apply(&y).unwrap(), &y) == 0.0,
            "bits:{n} not idempotent"
        );
        // Rounding moves each value by at most half a level.
        assert!(max_abs(&y, &x) <= 0.5 / levels + 1e-6, "bits:{n}");
    }
    // 8 bits leave an 8-bit image as it is.
    let x8 = (&x * 255.0).round() / 255.0;
    assert!(max_abs(&one("bits:8").apply(&x8).unwrap(), &x8) < 1e-6);
}

#[test]
fn median_removes_salt_and_pepper_and_keeps_constants() {
    let c = 0.4;
    let x = Tensor::full([2, 3, 16, 16], c, cpu());
    // Isolated outliers, including a corner and an edge pixel.
    for (n, ch, i, j, v) in [
        (0, 0, 0, 0, 1.0),
        (0, 1, 5, 5, 0.0),
        (0, 2, 9, 12, 1.0),
        (1, 0, 15, 7, 0.0),
        (1, 1, 3, 11, 1.0),
        (1, 2, 12, 2, 0.0),
    ] {
        let _ = x.get(n).get(ch).get(i).get(j).fill_(v);
    }
    let constant = Tensor::full([2, 3, 16, 16], c, cpu());
    for k in [3, 5] {
        let d = Median { size: k };
        assert!(
            max_abs(&d.apply(&x).unwrap(), &constant) < 1e-7,
            "median:{k} left an outlier"
        );
        assert!(
            max_abs(&d.apply(&constant).unwrap(), &constant) == 0.0,
            "median:{k}"
        );
    }
}

/// The median filter against a plain loop with reflect padding (`dcb|abcd|cba`).
#[test]
fn median_matches_a_reference_with_reflect_padding() {
    let _g = rng();
    tch::manual_seed(3);
    let (h, w) = (6i64, 7i64);
    let x = Tensor::rand([1, 1, h, w], cpu());
    let v = values(&x);
    let reflect = |i: i64, n: i64| {
        if i < 0 {
            -i
        } else if i >= n {
            2 * (n - 1) - i
        } else {
            i
        }
    };
    for k in [3i64, 5] {
        let got = values(&Median { size: k }.apply(&x).unwrap());
        let r = k / 2;
        for i in 0..h {
            for j in 0..w {
                let mut win: Vec<f32> = Vec::new();
                for di in -r..=r {
                    for dj in -r..=r {
                        win.push(v[(reflect(i + di, h) * w + reflect(j + dj, w)) as usize]);
                    }
                }
                win.sort_by(|a, b| a.partial_cmp(b).unwrap());
                let want = win[win.len() / 2];
                assert_eq!(got[(i * w + j) as usize], want, "median:{k} at ({i},{j})");
            }
        }
    }
}

#[test]
fn blur_keeps_constants_and_mean_and_smooths_noise() {
    let _g = rng();
    tch::manual_seed(4);
    assert_eq!(Blur { sigma: 1.0 }.kernel_1d().size(), [7]);
    assert_eq!(Blur { sigma: 0.5 }.kernel_1d().size(), [5]);
    assert_eq!(Blur { sigma: 1.5 }.kernel_1d().size(), [11]);
    let k = Blur { sigma: 1.5 }.kernel_1d();
    assert!((k.sum(Kind::Double).double_value(&[]) - 1.0).abs() < 1e-6);
    let constant = Tensor::full([1, 3, 20, 20], 0.3, cpu());
    let noisy = (Tensor::full([2, 3, 32, 32], 0.5, cpu())
        + Tensor::randn([2, 3, 32, 32], cpu()) * 0.1)
        .clamp(0.0, 1.0);
    for sigma in [0.5, 1.0, 2.0] {
        let d = Blur { sigma };
        assert!(
            max_abs(&d.apply(&constant).unwrap(), &constant) < 1e-6,
            "blur:{sigma}"
        );
        let y = d.apply(&noisy).unwrap();
        let (m0, m1) = (
            noisy.mean(Kind::Double).double_value(&[]),
            y.mean(Kind::Double).double_value(&[]),
        );
        assert!((m0 - m1).abs() < 2e-3, "blur:{sigma}: mean {m0} → {m1}");
        let (t0, t1) = (total_variation(&noisy), total_variation(&y));
        assert!(t1 < 0.6 * t0, "blur:{sigma}: TV {t0} → {t1}");
    }
}

#[test]
fn noise_has_the_requested_std_and_is_reproducible_with_a_seed() {
    let _g = rng();
    let grey = Tensor::full([2, 3, 64, 64], 0.5, cpu());
    for sigma in [0.03, 0.1] {
        let d = Noise { sigma };
        let y = d.apply(&grey).unwrap();
        let e = &y - &grey;
        let std = e.std(true).double_value(&[]);
        assert!(
            (std - sigma).abs() <= 0.1 * sigma,
            "noise:{sigma}: std {std}"
        );
        assert!(e.mean(Kind::Double).double_value(&[]).abs() < sigma / 10.0);
    }
    let d = Noise { sigma: 0.05 };
    let (a, b) = (d.apply(&grey).unwrap(), d.apply(&grey).unwrap());
    assert!(max_abs(&a, &b) > 0.0, "two draws are equal");
    tch::manual_seed(11);
    let a = d.apply(&grey).unwrap();
    tch::manual_seed(11);
    let b = d.apply(&grey).unwrap();
    assert!(max_abs(&a, &b) == 0.0, "same seed, different noise");
}

#[test]
fn resize_pad_is_random_reproducible_and_keeps_the_size() {
    let _g = rng();
    tch::manual_seed(5);
    let x = Tensor::rand([8, 3, 32, 32], cpu());
    let d = ResizePad {
        ratio: 0.3,
        ..ResizePad::default()
    };
    let a = d.apply(&x).unwrap();
    let b = d.apply(&x).unwrap();
    assert_eq!(a.size(), [8, 3, 32, 32]);
    assert!(max_abs(&a, &b) > 0.0, "two calls are equal");
    tch::manual_seed(12);
    let a = d.apply(&x).unwrap();
    tch::manual_seed(12);
    let b = d.apply(&x).unwrap();
    assert!(max_abs(&a, &b) == 0.0, "same seed, different output");

    // A constant image stays that constant, with a mid-grey border whose area is S² − s²
    // for some s in [round(S·(1−R)), S]; the draws differ from image to image.
    let c = Tensor::full([16, 3, 40, 40], 0.2, cpu());
    let y = ResizePad::default().apply(&c).unwrap();
    let mut borders = Vec::new();
    for i in 0..16 {
        let img = y.get(i);
        let is_c = img.eq(0.2).logical_or(&(&img - 0.2).abs().lt(1e-6));
        let is_grey = img.eq(0.5);
        assert!(
            is_c.logical_or(&is_grey).all().int64_value(&[]) == 1,
            "image {i}: stray values"
        );
        let grey = is_grey.sum(Kind::Int64).int64_value(&[]) / 3;
        let s = ((1600 - grey) as f64).sqrt().round() as i64;
        assert_eq!(
            s * s,
            1600 - grey,
            "image {i}: border of {grey} pixels is not S² − s²"
        );
        assert!((36..=40).contains(&s), "image {i}: s = {s}");
        borders.push(grey);
    }
    borders.sort_unstable();
    borders.dedup();
    assert!(
        borders.len() > 1,
        "every image got the same draw: {borders:?}"
    );
}

#[test]
fn flags_say_which_need_bpda_and_eot() {
    for (spec, diff, random) in [
        ("none", true, false),
        ("jpeg:75", false, false),
        ("bits:4", false, false),
        ("median:3", false, false),
        ("blur:1", true, false),
        ("noise:0.03", true, true),
        ("resize-pad", true, true),
        ("resize-pad:0.2", true, true),
        ("blur:1+noise:0.03", true, true),
        ("bits:4+resize-pad", false, true),
    ] {
        let d = defenses::parse(spec).unwrap();
        assert_eq!(d.differentiable(), diff, "{spec} differentiable");
        assert_eq!(d.random(), random, "{spec} random");
    }
}

#[test]
fn gradients_flow_through_the_differentiable_ones() {
    let _g = rng();
    tch::manual_seed(6);
    let x0 = Tensor::rand([2, 3, 24, 24], cpu()) * 0.8 + 0.1;
    for spec in [
        "blur:1",
        "noise:0.03",
        "resize-pad:0.3",
        "blur:0.7+noise:0.02+resize-pad",
    ] {
        let d = one(spec);
        assert!(d.differentiable());
        let x = x0.detach().set_requires_grad(true);
        let w = Tensor::rand([2, 3, 24, 24], cpu()); // a non-constant weighting
        (d.apply(&x).unwrap() * w).sum(Kind::Float).backward();
        let g = x.grad();
        assert!(
            g.abs().sum(Kind::Double).double_value(&[]) > 0.0,
            "{spec}: zero gradient"
        );
    }
}

fn tiny(dir: &tempfile::TempDir) -> Classifier {
    let path = dir.path().join("tiny.pt");
    crate::common::tiny_model(&path, 10, 32, 7);
    let pre = Preprocess {
        size: 32,
        resize: 32,
        ..Preprocess::default()
    };
    Classifier::load(&path, Device::Cpu, pre).unwrap()
}

#[test]
fn bpda_gives_gradients_through_bits_and_median() {
    let _g = rng();
    let dir = tempfile::tempdir().unwrap();
    let model = tiny(&dir);
    tch::manual_seed(8);
    let x0 = Tensor::rand([2, 3, 32, 32], cpu());
    for spec in ["bits:3", "median:3", "jpeg:75+median:3+bits:5"] {
        let d = one(spec);
        // On its own, the defense passes no gradient (or none worth having).
        if spec.starts_with("bits") {
            let x = x0.detach().set_requires_grad(true);
            d.apply(&x).unwrap().sum(Kind::Float).backward();
            assert_eq!(x.grad().abs().sum(Kind::Double).double_value(&[]), 0.0);
        }
        let victim = Defended {
            model: &model,
            defense: d.as_ref(),
            eot: 4,
        };
        assert_eq!(victim.eot_samples(), 1);
        let x = x0.detach().set_requires_grad(true);
        let logits = victim.logits(&x).unwrap();
        logits.get(0).get(3).backward();
        let g = x.grad();
        assert!(
            g.abs().sum(Kind::Double).double_value(&[]) > 0.0,
            "{spec}: zero BPDA gradient"
        );
        // Straight-through: the gradient is the model's gradient at defense(x).
        let y = d.apply(&x0).unwrap().set_requires_grad(true);
        model.logits(&y).unwrap().get(0).get(3).backward();
        assert!(
            max_abs(&g, &y.grad()) < 1e-6,
            "{spec}: BPDA is not the identity"
        );
        // And the forward pass is the model on the defended image.
        let direct = tch::no_grad(|| model.logits(&d.apply(&x0).unwrap())).unwrap();
        assert!(max_abs(&logits.detach(), &direct) < 1e-5);
    }
    let random = one("noise:0.03");
    let victim = Defended {
        model: &model,
        defense: random.as_ref(),
        eot: 4,
    };
    assert_eq!(victim.eot_samples(), 4);
}

#[test]
fn classify_through_judges_the_defended_image_without_a_graph() {
    let _g = rng();
    let dir = tempfile::tempdir().unwrap();
    let model = tiny(&dir);
    tch::manual_seed(9);
    let x = Tensor::rand([3, 3, 32, 32], cpu()).set_requires_grad(true);
    let d = one("median:3+bits:4");
    let l = classify_through(&model, d.as_ref(), &x).unwrap();
    assert_eq!(l.size(), [3, 10]);
    assert!(!l.requires_grad());
    let direct = tch::no_grad(|| model.logits(&d.apply(&x).unwrap())).unwrap();
    assert!(max_abs(&l, &direct) < 1e-6);
    let none = defenses::parse("none").unwrap();
    let plain = tch::no_grad(|| model.logits(&x)).unwrap();
    assert!(max_abs(&classify_through(&model, &none, &x).unwrap(), &plain) < 1e-6);
    // Random defenses follow the seed.
    let r = one("noise:0.05+resize-pad");
    tch::manual_seed(10);
    let a = classify_through(&model, r.as_ref(), &x).unwrap();
    tch::manual_seed(10);
    let b = classify_through(&model, r.as_ref(), &x).unwrap();
    assert!(max_abs(&a, &b) == 0.0);
}

#[test]
fn parse_accepts_chains_and_rejects_bad_parts() {
    let c = defenses::parse("jpeg:75+median:3+bits:5").unwrap();
    assert_eq!(c.name(), "jpeg:75+median:3+bits:5");
    assert_eq!(c.0.len(), 3);
    let c = defenses::parse(" Blur:1.5 + noise:0.03 + resize-pad ").unwrap();
    assert_eq!(c.name(), "blur:1.5+noise:0.03+resize-pad:0.1");
    assert_eq!(
        defenses::parse("resize-pad:0.25").unwrap().name(),
        "resize-pad:0.25"
    );
    for bad in [
        "median:4",
        "median:1",
        "median",
        "bits:0",
        "bits:9",
        "bits",
        "blur:-1",
        "blur:0",
        "blur:nan",
        "noise:x",
        "noise:0",
        "resize-pad:1.5",
        "resize-pad:0",
        "resize-pad:",
        "jpeg:75+median:4",
        "jpeg:75+",
        "sharpen:3",
    ] {
        let e = defenses::parse(bad)
            .err()
            .unwrap_or_else(|| panic!("accepted {bad}"))
            .to_string();
        assert!(e.starts_with("defense: "), "{bad}: {e}");
        let part = bad.rsplit('+').next().unwrap();
        assert!(
            e.contains(&format!("'{part}'")),
            "{bad}: error does not name the part: {e}"
        );
    }
    let e = defenses::parse("median:4").err().unwrap().to_string();
    assert!(e.contains("median:K") && e.contains("odd"), "{e}");
    let e = defenses::parse("sharpen:3").err().unwrap().to_string();
    for form in [
        "jpeg:Q",
        "bits:N",
        "median:K",
        "blur:SIGMA",
        "noise:SIGMA",
        "resize-pad",
    ] {
        assert!(e.contains(form), "unknown-defense error lacks {form}: {e}");
    }
}
