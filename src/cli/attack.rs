//! `fool IMAGE --target CLASS` / `fool attack`: the single-image attack. The run counts as a
//! success only when the saved 8-bit PNG, loaded again, meets the goal within the budget.
use super::{print_json, progress_bar, ModelArgs, OutputArgs, EXIT_NOT_FOOLED};
use anyhow::Result;
use clap::Args;
use fool::attacks::image::{attack_image, ImageAttack};
use fool::attacks::parse_eps;
use fool::attacks::record::{format_top, AttackRecord};
use fool::attacks::SgdAttack;
use fool::files::ensure_writable_dir;
use fool::imageio::load_rgb;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

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

pub fn run(a: AttackArgs) -> Result<ExitCode> {
    let Some(image) = a.image.clone() else {
        // A usage error (exit 2, with clap's usage line), like any missing argument.
        use clap::CommandFactory;
        super::Cli::command()
            .error(
                clap::error::ErrorKind::MissingRequiredArgument,
                "no image given: fool IMAGE --target CLASS",
            )
            .exit();
    };
    let (margs, oargs) = (&a.model, &a.output);
    let started = Instant::now();
    // Validate everything cheap before loading the model.
    let pixels = load_rgb(&image)?;
    ensure_writable_dir(&a.out, "out")?;
    let loaded = margs.load(oargs.quiet)?;
    let target = a.target.as_deref().filter(|_| !a.untargeted);
    let job = ImageAttack {
        image: &image,
        pixels: &pixels,
        target,
        eps: a.eps,
        attack: SgdAttack {
            steps: a.steps,
            lr: a.lr,
            momentum: a.momentum,
            random_start: a.random_start,
            early_stop: !a.no_early_stop,
        },
        seed: a.seed,
        out: &a.out,
        started,
    };
    let pb = progress_bar(a.steps as u64, oargs.quiet || oargs.json);
    let goal_word = if target.is_some() {
        "target"
    } else {
        "true class"
    };
    let record = attack_image(&job, loaded.model_ref(), &mut |s| {
        pb.set_position(s.step as u64);
        pb.set_message(format!(
            "loss {:.4}  p({goal_word}) {:.3}",
            s.loss, s.class_prob
        ));
    })?;
    pb.finish_and_clear();
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
