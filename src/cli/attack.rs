//! `fool IMAGE --target CLASS` / `fool attack`: the single-image attack. The run counts as a
//! success only when the saved 8-bit PNG, loaded again, meets the goal within the budget.
use super::{print_json, progress_bar, refuse_overwrite, ModelArgs, OutputArgs, EXIT_NOT_FOOLED};
use anyhow::{bail, Result};
use clap::Args;
use fool::attacks::record::{
    format_top, short_caption, side_by_side, AttackRecord, Prediction, PreprocessInfo, TargetInfo,
};
use fool::attacks::{verify_file, Attack, Budget, Goal, SgdAttack};
use fool::files::{ensure_writable_dir, write_atomic};
use fool::imageio::{load_rgb, save_png, tensor_to_rgb};
use fool::model::{sha256_file, Classifier};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;
use tch::Tensor;

#[derive(Args, Debug)]
pub struct AttackArgs {
    /// Image to attack
    image: Option<PathBuf>,
    /// Target class: index (1), exact label, or a unique word/substring (goldfish, tabby)
    #[arg(
        long,
        short,
        required_unless_present = "untargeted",
        conflicts_with = "untargeted"
    )]
    target: Option<String>,
    /// Untargeted: any class but the original prediction
    #[arg(long)]
    untargeted: bool,
    /// L∞ budget in pixel space (0..1], e.g. 8/255 or 0.0314
    #[arg(long, default_value = "10/255", value_parser = parse_eps)]
    eps: f64,
    /// Maximum optimization steps (the attack stops early once the saved image is fooled)
    #[arg(long, default_value_t = 300)]
    steps: usize,
    /// SGD learning rate (pixel space)
    #[arg(long, default_value_t = 0.01)]
    lr: f64,
    /// SGD momentum
    #[arg(long, default_value_t = 0.9)]
    momentum: f64,
    /// Start from a random point of the budget ball (uses --seed)
    #[arg(long)]
    random_start: bool,
    /// Run all --steps even after the goal is reached (for benchmarks)
    #[arg(long)]
    no_early_stop: bool,
    /// Random seed
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output directory
    #[arg(long, default_value = "outputs")]
    out: PathBuf,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    output: OutputArgs,
}

/// `8/255`, `0.0314`: a number in (0, 1], at least one 8-bit step.
pub fn parse_eps(s: &str) -> Result<f64, String> {
    let v = match s.split_once('/') {
        Some((a, b)) => {
            let (a, b): (f64, f64) = (
                a.trim()
                    .parse()
                    .map_err(|_| format!("'{s}': not a number"))?,
                b.trim()
                    .parse()
                    .map_err(|_| format!("'{s}': not a number"))?,
            );
            if b == 0.0 {
                return Err(format!("'{s}': division by zero"));
            }
            a / b
        }
        None => s
            .trim()
            .parse()
            .map_err(|_| format!("'{s}': not a number"))?,
    };
    if !(v > 0.0 && v <= 1.0) {
        return Err(format!(
            "'{s}' = {v}: must be in (0, 1] (pixel space, e.g. 8/255)"
        ));
    }
    if v * 255.0 + 1e-6 < 1.0 {
        return Err(format!(
            "'{s}' = {v:.5}: below one 8-bit step (1/255 ≈ 0.00392); a saved 8-bit image cannot change within it"
        ));
    }
    Ok(v)
}

/// File-name-safe short label: `goldfish`, `great_white_shark`.
fn slug(s: &str) -> String {
    let s: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    let s = s
        .split('_')
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("_");
    if s.is_empty() {
        "target".into()
    } else {
        s
    }
}

pub fn run(a: AttackArgs) -> Result<ExitCode> {
    let Some(image) = a.image.clone() else {
        bail!("no image given; usage: fool IMAGE --target CLASS (see fool --help)");
    };
    let (margs, oargs) = (&a.model, &a.output);
    let start = Instant::now();
    tch::manual_seed(a.seed as i64);

    // Validate everything cheap before loading the model.
    let img = load_rgb(&image)?;
    ensure_writable_dir(&a.out, "out")?;
    let loaded = margs.load(oargs.quiet)?;
    let (m, labels) = (&loaded.model, &loaded.labels);
    let x0 = m.pre.pixels(&img, m.device).unsqueeze(0);
    let probs0 = m.probs(&x0)?;
    let original_top = Classifier::top_k(&probs0, 5, labels);
    let (goal, target, tag) = match &a.target {
        Some(t) if !a.untargeted => {
            let idx = labels.resolve(t)?;
            let goal = Goal::Targeted(Tensor::from_slice(&[idx as i64]).to_device(m.device));
            (
                goal,
                Some(TargetInfo {
                    index: idx,
                    label: labels.name(idx).into(),
                }),
                slug(labels.short(idx)),
            )
        }
        _ => {
            let orig = original_top[0].index as i64;
            (
                Goal::Untargeted(Tensor::from_slice(&[orig]).to_device(m.device)),
                None,
                "untargeted".into(),
            )
        }
    };
    let stem = slug(
        image
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("image"),
    );
    let base = a.out.join(format!("{stem}_{tag}"));
    let png_path = base.with_extension("png");
    let npy_path = base.with_extension("npy");
    let json_path = base.with_extension("json");
    let sbs_path = a.out.join(format!("{stem}_{tag}_side_by_side.png"));
    for p in [&png_path, &npy_path, &json_path, &sbs_path] {
        refuse_overwrite(p, &[&image, &loaded.model_path])?;
    }

    let budget = Budget::linf(a.eps);
    let attack = SgdAttack {
        steps: a.steps,
        lr: a.lr,
        momentum: a.momentum,
        random_start: a.random_start,
        early_stop: !a.no_early_stop,
    };
    let pb = progress_bar(a.steps as u64, oargs.quiet || oargs.json);
    let goal_word = if goal.is_targeted() {
        "target"
    } else {
        "true class"
    };
    let out = attack.run(m, &x0, &goal, budget, &mut |s| {
        pb.set_position(s.step as u64);
        pb.set_message(format!(
            "loss {:.4}  p({goal_word}) {:.3}",
            s.loss, s.class_prob
        ));
    })?;
    pb.finish_and_clear();

    // Save, then judge the file as saved.
    let adv_img = tensor_to_rgb(&out.adv);
    save_png(&adv_img, &png_path)?;
    let v = verify_file(m, &png_path, &x0, &goal, budget)?;
    let r = m.pre.delta_to_normalized(&(&v.pixels - &x0));
    fool::perturbation::save(&r, &npy_path)?;
    let adversarial_top = Classifier::top_k(&v.probs, 5, labels);
    let orig_img = tensor_to_rgb(&x0);
    let sbs = side_by_side(
        &orig_img,
        &adv_img,
        a.eps,
        [
            ("original", short_caption(&original_top[0])),
            (
                "perturbation",
                format!("x{:.0} (eps {:.0}/255)", 0.5 / a.eps, a.eps * 255.0),
            ),
            ("adversarial", short_caption(&adversarial_top[0])),
        ],
    );
    save_png(&sbs, &sbs_path)?;

    let pre = &m.pre;
    let record = AttackRecord {
        fool_version: env!("CARGO_PKG_VERSION").into(),
        model: loaded.model_path.display().to_string(),
        model_sha256: sha256_file(&loaded.model_path)?,
        image: image.display().to_string(),
        preprocess: PreprocessInfo {
            size: pre.size,
            resize: pre.resize,
            resize_always: pre.resize_always,
            mean: pre.mean,
            std: pre.std,
        },
        attack: attack.name(),
        target,
        untargeted: !goal.is_targeted(),
        eps: a.eps,
        eps_levels: budget.levels() as u32,
        steps: a.steps,
        steps_run: out.steps,
        lr: a.lr,
        momentum: a.momentum,
        seed: a.seed,
        device: fool::device::device_name(m.device),
        success: v.success,
        goal_class_prob: v.class_prob,
        original: Prediction { top: original_top },
        adversarial: Prediction {
            top: adversarial_top,
        },
        linf: v.linf,
        l2: v.l2,
        linf_levels: (v.linf * 255.0).round() as u32,
        adversarial_image: png_path.display().to_string(),
        perturbation: npy_path.display().to_string(),
        side_by_side: sbs_path.display().to_string(),
        record: json_path.display().to_string(),
        elapsed_s: start.elapsed().as_secs_f64(),
    };
    let text = serde_json::to_string_pretty(&record)?;
    write_atomic(&json_path, |f| {
        use std::io::Write;
        f.write_all(text.as_bytes())
            .map_err(|e| fool::Error::io(&json_path, e))
    })?;
    if oargs.json {
        print_json(&record)?;
    } else {
        print_human(&record);
    }
    Ok(if record.success {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_NOT_FOOLED)
    })
}

fn print_human(r: &AttackRecord) {
    let o = &r.original.top[0];
    let n = &r.adversarial.top[0];
    println!("original:    {} ({:.2}%)", o.label, o.prob * 100.0);
    println!("adversarial: {} ({:.2}%)", n.label, n.prob * 100.0);
    let goal = match &r.target {
        Some(t) => format!("target {} '{}'", t.index, t.label),
        None => "untargeted".into(),
    };
    let dist = format!(
        "L∞ {}/255 ({:.4}) within eps {:.4}, L2 {:.3}",
        r.linf_levels, r.linf, r.eps, r.l2
    );
    if r.success {
        println!(
            "success: the saved PNG is classified as {} — {goal}; {dist}",
            short_label(&n.label)
        );
    } else {
        let what = if r.target.is_some() {
            "target"
        } else {
            "original class"
        };
        println!(
            "not fooled: {goal} not reached after {} steps (best p({what}) {:.4}); {dist}",
            r.steps_run, r.goal_class_prob
        );
    }
    println!("top-5 before:\n{}", format_top(&r.original.top));
    println!("top-5 after:\n{}", format_top(&r.adversarial.top));
    println!(
        "{} steps, {:.1} s on {}; wrote {}, {}, {}, {}",
        r.steps_run,
        r.elapsed_s,
        r.device,
        r.adversarial_image,
        r.perturbation,
        r.side_by_side,
        r.record
    );
}

fn short_label(l: &str) -> &str {
    l.split(',').next().unwrap_or(l).trim()
}
