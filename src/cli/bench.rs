//! `fool bench DIR ...` and `fool bench merge OUT... --out DIR`.
use super::{print_json, ModelArgs, OutputArgs};
use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use fool::attacks::{parse_eps_list, Norm};
use fool::bench::{self, Outcome, Report, Shard};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    sub: Option<BenchSub>,
    /// Folder of images with labels.csv (file,index) or WordNet-id file names (with --wnids);
    /// or a data set split and row range: mnist:test[0:1000], cifar10:test[0:500], mnist:train
    /// (read from --data, default assets/mnist or assets/cifar10)
    #[arg(required = true)]
    dir: Option<PathBuf>,
    /// The data set folder of a mnist:… or cifar10:… input [default: assets/NAME]
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Attacks, comma-separated: fgsm, pgd, bim, sgd, mifgsm, cw, apgd, apgd-dlr, apgd-t, fab-t,
    /// square, autoattack, autoattack-rand
    ///
    /// Every attack also runs under --norm l2 (fgsm is then FGM, pgd is PGD-L2, square its L2
    /// version).
    /// fgsm: one signed-gradient step of size eps. pgd: Madry et al., random start, step
    /// 2.5·eps/steps, 20 steps. bim: pgd without random start. sgd: the tutorial's SGD with
    /// momentum (lr 0.01), 100 steps. mifgsm: momentum iterative FGSM, 10 steps. cw:
    /// Carlini–Wagner L2, 5 × 100 Adam steps (--steps per search), projected into the budget.
    /// apgd: APGD-CE, 100 iterations. apgd-dlr: APGD on the DLR loss. apgd-t: targeted DLR
    /// toward each of the 9 next-ranked classes. fab-t: FAB-T, minimal-norm boundary attack
    /// toward the same 9 classes. square: Square Attack L∞, black box, 1000 queries (--steps
    /// sets the query budget). autoattack: AutoAttack standard (Croce & Hein 2020), the cascade
    /// APGD-CE, APGD-T, FAB-T, Square 5000 queries, each on the images still standing, logged
    /// per stage; autoattack-rand: APGD-CE and APGD-DLR with EOT (use --eot 20), for
    /// randomized defenses. apgd-t, fab-t and the autoattacks are untargeted.
    #[arg(long, value_delimiter = ',', default_value = "pgd")]
    attack: Vec<String>,
    /// Budgets in pixel space (0..1 scale), comma-separated: L∞ 0,1/255,2/255,4/255,8/255;
    /// L2 (--norm l2) e.g. 0,0.25,0.5,1,2
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "0,1/255,2/255,4/255,8/255"
    )]
    eps: Vec<String>,
    /// The norm --eps bounds: linf, or l2 (the L2 length of an image's whole change)
    #[arg(long, default_value = "linf")]
    norm: String,
    /// Defenses, comma-separated; each may compose with + (none,jpeg:75,bits:4,median:3)
    #[arg(long, value_delimiter = ',', default_value = "none")]
    defense: Vec<String>,
    /// Also attack each defended model (BPDA for non-differentiable, EOT for random defenses)
    #[arg(long)]
    adaptive: bool,
    /// EOT draws per gradient for random defenses (adaptive mode)
    #[arg(long, default_value_t = 10)]
    eot: usize,
    /// untargeted, random, least-likely, or a class (index or name)
    #[arg(long, default_value = "untargeted")]
    targets: String,
    /// Attack iterations (default: each attack's own)
    #[arg(long)]
    steps: Option<usize>,
    /// Run every iteration even after an image is fooled (throughput benchmarks)
    #[arg(long)]
    no_early_stop: bool,
    /// Images per batch
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Use at most N images
    #[arg(long)]
    limit: Option<usize>,
    /// Shuffle the images (with --seed) before --limit
    #[arg(long)]
    shuffle: bool,
    /// Run seed: every unit of work is seeded from it and its own key
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Run only the slice I of N (0-based), e.g. 0/4; default from SLURM_ARRAY_TASK_ID/COUNT or JOB_COMPLETION_INDEX + FOOL_SHARD_COUNT
    #[arg(long)]
    shard: Option<String>,
    /// Synset list for WordNet-id file names (one `nXXXXXXXX ...` per line, class order)
    #[arg(long)]
    wnids: Option<PathBuf>,
    /// A detector file (fool detect calibrate) for the bench's model: every image's clean and
    /// attacked versions are scored; the summary adds the detection rate of successful
    /// adversarial examples, the clean false-positive rate and the undetected success rate.
    /// With --adaptive, gradient attacks also minimise the detector's score (BPDA through the
    /// squeezers), the bare model included
    #[arg(long)]
    detector: Option<PathBuf>,
    /// Weight c of the detector's score in the adaptive attack's loss (loss + c·score)
    #[arg(long, default_value_t = 1.0)]
    detector_weight: f64,
    /// Keep the first N images, clean and attacked, in every setting as PNGs in OUT/examples/
    /// (the gallery of `fool report html`)
    #[arg(long, default_value_t = 0, value_name = "N")]
    keep_examples: usize,
    /// Output directory (resumes if it holds an interrupted run with the same settings)
    #[arg(long, default_value = "outputs/bench")]
    out: PathBuf,
    #[command(flatten)]
    mlflow: super::mlflow::MlflowArgs,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Subcommand, Debug)]
enum BenchSub {
    /// Combine shard outputs into one results.jsonl, summary and chart
    Merge(MergeArgs),
}

#[derive(Args, Debug)]
pub struct MergeArgs {
    /// Output directories of the shards
    #[arg(required = true)]
    dirs: Vec<PathBuf>,
    /// Where to write the merged results
    #[arg(long)]
    out: PathBuf,
    /// Merge even if units of work are in no directory (a shard missing, unfinished or still
    /// running) or in two; the summary counts each setting's missing images
    #[arg(long)]
    allow_partial: bool,
    #[command(flatten)]
    mlflow: super::mlflow::MlflowArgs,
    #[command(flatten)]
    output: OutputArgs,
}

pub fn run(a: BenchArgs) -> Result<ExitCode> {
    if let Some(BenchSub::Merge(m)) = a.sub {
        return merge(m);
    }
    let Some(dir) = a.dir.clone() else {
        bail!("no image folder given; usage: fool bench DIR --attack pgd --eps ... (see fool bench --help)");
    };
    let norm = Norm::parse(&a.norm)?;
    let shard = match &a.shard {
        Some(s) => Shard::parse(s)?,
        // Not UTF-8 is not a number either: read lossily, so such a value is refused, not unset.
        None => Shard::from_env(|k| std::env::var_os(k).map(|v| v.to_string_lossy().into_owned()))?
            .unwrap_or(Shard::ALL),
    };
    let plan = bench::Plan::new(bench::Settings {
        dataset: dir,
        data: a.data.clone(),
        wnids: a.wnids.clone(),
        limit: a.limit,
        shuffle: a.shuffle,
        attacks: a.attack.clone(),
        steps: a.steps,
        early_stop: !a.no_early_stop,
        eps: parse_eps_list(&a.eps, norm)?,
        norm,
        defenses: a.defense.clone(),
        adaptive: a.adaptive,
        eot: a.eot,
        targets: a.targets.clone(),
        batch: a.batch,
        seed: a.seed,
        shard,
        out: a.out.clone(),
        detector: a.detector.clone(),
        detector_weight: a.detector_weight,
        keep_examples: a.keep_examples,
    })
    .map_err(|e| match e {
        // The input is the positional DIR (a folder or a data set slice), not a --dataset flag.
        fool::Error::Invalid { field, msg } if field == "dataset" => fool::Error::Invalid {
            field: "DIR".into(),
            msg,
        },
        e => e,
    })?;
    let loaded = a.model.load(a.output.quiet)?;
    let mut bars = Bars::new(a.output.quiet || a.output.json, a.output.quiet);
    let outcome = bench::run(&plan, loaded.model_ref(), &mut bars)?;
    bars.finish();
    match outcome {
        Outcome::Finished(r) => report(&r, &a.output, &a.mlflow),
        Outcome::Stopped { units } => {
            eprintln!(
                "fool: interrupted after {units} units; run the same command again to resume"
            );
            Ok(ExitCode::from(130))
        }
    }
}

/// Progress on stderr: a header, then bars over the units of work and over the current
/// unit's attack steps, and warnings about unreadable images.
struct Bars {
    /// No header and no bars (--quiet or --json).
    quiet: bool,
    /// No warnings either (--quiet).
    silent: bool,
    /// (overall, steps), once the run has started.
    bars: Option<(indicatif::ProgressBar, indicatif::ProgressBar)>,
}

impl Bars {
    fn new(quiet: bool, silent: bool) -> Bars {
        Bars {
            quiet,
            silent,
            bars: None,
        }
    }

    fn finish(&self) {
        if let Some((overall, step)) = &self.bars {
            step.finish_and_clear();
            overall.finish_and_clear();
        }
    }
}

impl bench::Observer for Bars {
    fn started(&mut self, s: &bench::Start) {
        if !self.quiet {
            eprintln!(
                "fool bench: {} images, {} units of work in shard {}/{} ({} done, {} to run) → {}",
                s.images,
                s.units,
                s.shard.index,
                s.shard.count,
                s.done,
                s.to_run,
                s.out.display()
            );
        }
        let mp = indicatif::MultiProgress::new();
        let overall = mp.add(super::progress_bar(s.to_run as u64, self.quiet));
        overall.set_style(
            indicatif::ProgressStyle::with_template(
                "overall  [{elapsed_precise}<{eta_precise}] {bar:30} {pos}/{len} units {msg}",
            )
            .expect("template"),
        );
        let step = mp.add(super::progress_bar(0, self.quiet));
        self.bars = Some((overall, step));
    }

    fn skipped(&mut self, file: &str, err: &fool::Error) {
        if self.silent {
            return;
        }
        let warn = || eprintln!("fool: warning: skipping {file}: {err}");
        match &self.bars {
            Some((overall, _)) => overall.suspend(warn),
            None => warn(),
        }
    }

    fn unit_started(&mut self, unit: &bench::Unit) {
        if let Some((overall, step)) = &self.bars {
            overall.set_message(unit.setting());
            step.reset();
        }
    }

    fn step(&mut self, unit: &bench::Unit, images: usize, s: fool::attacks::StepInfo) {
        if let Some((_, step)) = &self.bars {
            step.set_length(s.steps as u64);
            step.set_position(s.step as u64);
            step.set_message(format!(
                "batch {} reached {}/{images}",
                unit.batch, s.reached
            ));
        }
    }

    fn unit_done(&mut self, _: &bench::Unit, _: usize) -> ControlFlow<()> {
        if let Some((overall, _)) = &self.bars {
            overall.inc(1);
        }
        ControlFlow::Continue(())
    }
}

fn report(r: &Report, out: &OutputArgs, mlflow: &super::mlflow::MlflowArgs) -> Result<ExitCode> {
    let (summary, dir, skipped) = (&r.summary, &r.out, r.skipped);
    if out.json {
        let logged = mlflow.upload(dir, out);
        print_json(&logged.attach(summary, "summary")?)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<15} {:>8} {:<16} {:<12} {:>5} {:>7} {:>22} {:>7}",
        "attack", "eps", "defense", "mode", "n", "clean", "success [95% CI]", "robust"
    );
    for s in summary {
        println!(
            "{:<15} {:>8} {:<16} {:<12} {:>5} {:>6.1}% {:>6.1}% [{:>5.1}, {:>5.1}] {:>6.1}%",
            s.attack,
            eps_label(s.norm, s.eps),
            s.defense,
            s.mode,
            s.n,
            s.clean_accuracy * 100.0,
            s.success_rate * 100.0,
            s.ci_low * 100.0,
            s.ci_high * 100.0,
            s.robust_accuracy * 100.0
        );
    }
    println!("success rates are over the images each (defended) model classifies correctly when clean (n); clean and robust accuracy over all images");
    if summary.iter().any(|s| s.detection.is_some()) {
        detection_table(summary);
    }
    for s in summary {
        cascade_log(s);
    }
    if skipped > 0 {
        println!(
            "skipped {skipped} unreadable image(s); see {}",
            dir.join("skipped.txt").display()
        );
    }
    println!(
        "wrote {0}/results.jsonl, {0}/summary.csv, {0}/summary.json, {0}/success_vs_eps.png, {0}/success_vs_eps.svg",
        dir.display()
    );
    mlflow.upload(dir, out).print();
    Ok(ExitCode::SUCCESS)
}

/// A cascade's log, as AutoAttack prints it: per stage the images it broke and the robust
/// accuracy after it, then the robust accuracy's interval and the sanity checks.
fn cascade_log(s: &bench::SummaryRow) {
    let Some(c) = &s.cascade else { return };
    println!();
    println!(
        "{} at eps {} ({}, {}), {} images:",
        s.attack,
        eps_label(s.norm, s.eps),
        s.defense,
        s.mode,
        s.n_images
    );
    for st in &c.stages {
        let what = if st.stage == "clean" {
            "initially misclassified".to_string()
        } else {
            format!("broken by {}", st.stage)
        };
        println!(
            "  {what:<30} {:>5}   robust accuracy {:>6.2}%",
            st.broken,
            st.robust_accuracy * 100.0
        );
    }
    println!(
        "  robust accuracy {:.2}% [95% CI {:.2}, {:.2}]; checks: max {} perturbation {} ≤ eps, values finite and in [0,1]",
        s.robust_accuracy * 100.0,
        c.robust_ci_low * 100.0,
        c.robust_ci_high * 100.0,
        s.norm.symbol(),
        eps_label(s.norm, c.max_perturbation)
    );
}

/// eps as the tables print it: k/255 for L∞, the L2 radius otherwise.
fn eps_label(norm: Norm, eps: f64) -> String {
    match norm {
        Norm::Linf => format!("{:.1}/255", eps * 255.0),
        Norm::L2 => format!("{eps:.3}"),
    }
}

/// The detector's view of each setting: how many successful adversarial examples it flags, how
/// many clean images it flags, and what success is left to the attacker.
fn detection_table(summary: &[bench::SummaryRow]) {
    println!();
    println!(
        "{:<8} {:>8} {:<16} {:<12} {:>5} {:>22} {:>22} {:>22}",
        "attack",
        "eps",
        "defense",
        "mode",
        "succ",
        "detected [95% CI]",
        "clean FPR [95% CI]",
        "undetected [95% CI]"
    );
    for s in summary {
        let Some(d) = &s.detection else { continue };
        let pct = |r: f64, lo: f64, hi: f64| {
            format!(
                "{:>5.1}% [{:>5.1}, {:>5.1}]",
                r * 100.0,
                lo * 100.0,
                hi * 100.0
            )
        };
        println!(
            "{:<8} {:>8} {:<16} {:<12} {:>5} {:>22} {:>22} {:>22}",
            s.attack,
            eps_label(s.norm, s.eps),
            s.defense,
            s.mode,
            s.successes,
            pct(d.detection_rate, d.detection_ci_low, d.detection_ci_high),
            pct(d.clean_fpr, d.clean_fpr_ci_low, d.clean_fpr_ci_high),
            pct(
                d.undetected_success_rate,
                d.undetected_ci_low,
                d.undetected_ci_high
            ),
        );
    }
    println!("detected: successful adversarial examples the detector flags (of succ); clean FPR: clean images flagged (of all); undetected: successes not flagged (of n)");
}

fn merge(m: MergeArgs) -> Result<ExitCode> {
    let merged = bench::merge(&m.dirs, &m.out, m.allow_partial)?;
    let code = report(&merged.report, &m.output, &m.mlflow)?;
    // A partial merge says so in its report (with --json, each summary row's `missing`).
    if merged.missing > 0 && !m.output.json {
        println!(
            "partial: {} unit(s) of work missing, in {} of {} batches ({}); the summary covers the rest (missing images per setting in summary.json)",
            merged.missing,
            merged.missing_batches.len(),
            merged.batches,
            bench::batch_list(&merged.missing_batches)
        );
    }
    Ok(code)
}
