//! `fool train`: train on MNIST / CIFAR-10, with or without DP-SGD.
use super::{print_json, progress_bar, OutputArgs};
use anyhow::{bail, Result};
use clap::Args;
use fool::datasets::DatasetName;
use fool::nets::Arch;
use fool::privacy::accountant::AccountantKind;
use fool::privacy::dpsgd::StepStats;
use fool::train::optim::OptKind;
use fool::train::{
    DpConfig, EpochRecord, Observer, Outcome, Recipe, Resume, Run, RunDir, Started, TrainConfig,
};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::process::ExitCode;

/// σ when --dp comes without --noise or --target-epsilon (Abadi et al. 2016's and the
/// TF-Privacy/Opacus tutorials' MNIST value).
const DEFAULT_NOISE: f64 = 1.1;

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// mnist or cifar10 [default: the dataset.json of a --data image folder, e.g. `fool
    /// synth`'s data set]
    #[arg(long)]
    dataset: Option<String>,
    /// Folder with the dataset files [default: assets/mnist or assets/cifar10]; or a labelled
    /// image folder (labels.csv with file,index; 28×28 grey for mnist, 32×32 RGB for cifar10,
    /// e.g. `fool synth`'s OUT/data) to train on instead of the training split, evaluated on
    /// the real test split from --test-data
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// With an image folder as --data: the folder with the dataset files whose test split the
    /// run evaluates on [default: assets/mnist or assets/cifar10]
    #[arg(long, value_name = "DIR")]
    test_data: Option<PathBuf>,
    /// cnn (TF-Privacy MNIST CNN), small-cnn:conv=2|3 (membership-inference tutorial), wong-cnn
    /// (Wong et al. 2020's MNIST CNN for adversarial training),
    /// cifar-cnn (Papernot et al. 2021's CIFAR-10 CNN, tanh), resnet18 (GroupNorm;
    /// resnet18:norm=batch without --dp); options: act=relu|tanh, norm=group (cnn, cifar-cnn),
    /// ws=true (weight standardization: cifar-cnn, resnet18) [default: cnn for mnist
    /// (cnn:act=tanh with --dp), small-cnn:conv=3 for cifar10]
    #[arg(long)]
    arch: Option<String>,
    /// Passes over the training set (with --dp: ⌊n/batch⌋ Poisson-sampled steps each)
    #[arg(long, default_value_t = 10)]
    epochs: usize,
    /// Batch size; with --dp the expected batch size (sampling rate q = batch / n)
    #[arg(long, default_value_t = 256)]
    batch: usize,
    /// Learning rate [default: 0.05 for sgd (1.0 for mnist with --dp), 0.001 for adam]
    #[arg(long, allow_negative_numbers = true)]
    lr: Option<f64>,
    /// sgd (with --momentum) or adam
    #[arg(long, default_value = "sgd")]
    optimizer: String,
    /// SGD momentum [default: 0.9 (0 for mnist with --dp)]
    #[arg(long, allow_negative_numbers = true)]
    momentum: Option<f64>,
    /// Learning-rate schedule: constant, cosine (to 0 at the last step), cyclic (Wong et al.'s
    /// one cycle: up to the rate at 2/5 of the run, down to 0) or step:E1,E2:GAMMA
    /// (×GAMMA after each milestone epoch), as PyTorch's schedulers
    #[arg(long, default_value = "constant")]
    schedule: String,
    /// Linear learning-rate warm-up over the first N steps
    #[arg(long, default_value_t = 0, value_name = "N")]
    warmup: u64,
    /// Weight decay λ (coupled L2, as PyTorch's SGD/Adam: g + λθ)
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    weight_decay: f64,
    /// Average the weights with this EMA decay (e.g. 0.999); evaluation, audits and the
    /// exported model use the average (free for privacy) [default: no averaging]
    #[arg(long, allow_negative_numbers = true)]
    ema: Option<f64>,
    /// Augment the training images: crop (random 4-pixel-padded crop) or crop-flip (and a
    /// random horizontal flip; cifar10 only) [default: none]
    #[arg(long)]
    augment: Option<String>,
    /// Augmentation multiplicity: K augmented copies of every example per step (De et al. 2022;
    /// with --dp their gradients are averaged before clipping, so ε is unchanged); needs
    /// --augment [default: 1]
    #[arg(long, value_name = "K")]
    multiplicity: Option<usize>,
    /// Adversarial training: pgd (Madry et al. 2018: PGD from a random start on every batch),
    /// fgsm-rs (Wong et al. 2020: one 1.25·eps step from a random start) or trades (Zhang et
    /// al. 2019: CE + β·KL to a twin that maximizes the KL, see --beta); the attacks of
    /// `fool bench`, L∞; pgd and fgsm-rs work with --dp [default: none]
    #[arg(long, value_name = "KIND")]
    adversarial: Option<String>,
    /// L∞ radius of the training attack in pixel scale, e.g. 0.3 (mnist) or 8/255 (cifar10)
    #[arg(long, value_name = "EPS", requires = "adversarial")]
    adv_eps: Option<String>,
    /// Steps of the training attack [default: 7 for pgd, 1 for fgsm-rs, 10 for trades]
    #[arg(long, value_name = "N", requires = "adversarial")]
    adv_steps: Option<usize>,
    /// Step size of the training attack [default: 2.5·eps/steps for pgd and trades, 1.25·eps
    /// for fgsm-rs]
    #[arg(long, value_name = "EPS", requires = "adversarial")]
    adv_step_size: Option<String>,
    /// Ramp the training eps up linearly over the first N epochs (eps·e/N in epoch e); large
    /// budgets such as MNIST's 0.3 otherwise stall PGD training at one class [default: 0]
    #[arg(long, value_name = "N", default_value_t = 0, requires = "adversarial")]
    adv_warmup: usize,
    /// TRADES' weight β of the KL term (--adversarial trades) [default: 6]
    #[arg(long, requires = "adversarial", allow_negative_numbers = true)]
    beta: Option<f64>,
    /// Test images the per-epoch PGD-20 robust accuracy is measured on
    #[arg(
        long,
        value_name = "N",
        default_value_t = 500,
        requires = "adversarial"
    )]
    adv_eval: usize,
    /// Train on the first N training examples only
    #[arg(long)]
    limit: Option<usize>,
    /// Train on a random half of the (first --limit) training examples, chosen by this seed
    /// (shadow models for LiRA); the indices are written to OUT/members.npy
    #[arg(long, value_name = "SEED")]
    half: Option<u64>,
    /// Seed for initialisation, batches and noise
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Train with DP-SGD (per-example clipping + Gaussian noise, Poisson sampling)
    #[arg(long)]
    dp: bool,
    /// Per-example gradient clipping norm C (with --dp)
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    clip: f64,
    /// Noise multiplier σ (with --dp; or give --target-epsilon) [default: 1.1]
    #[arg(long, allow_negative_numbers = true)]
    noise: Option<f64>,
    /// Calibrate σ so that the whole run spends this ε (with --dp)
    #[arg(long, allow_negative_numbers = true)]
    target_epsilon: Option<f64>,
    /// δ of the (ε, δ) guarantee (with --dp)
    #[arg(long, default_value_t = 1e-5, allow_negative_numbers = true)]
    delta: f64,
    /// rdp (Mironov et al.) or prv (Gopi et al., tighter)
    #[arg(long, default_value = "rdp")]
    accountant: String,
    /// Largest chunk of a logical batch pushed through the network at once (memory bound)
    #[arg(long, default_value_t = 512)]
    max_physical_batch: usize,
    /// Also keep a loadable model every K epochs in OUT/checkpoints/epoch-NNN (0: none)
    #[arg(long, default_value_t = 0)]
    checkpoint_every: usize,
    /// Run the membership-inference audit (threshold + logistic regression, members vs test
    /// split) every K epochs and at the end, stored per epoch in metadata.json (0: never)
    #[arg(long, default_value_t = 0)]
    audit_every: usize,
    /// Members and non-members per --audit-every audit (each at most N)
    #[arg(long, default_value_t = 10_000)]
    audit_examples: usize,
    /// Continue the run in --out from its last finished epoch
    #[arg(long)]
    resume: bool,
    /// Output folder: model.pt, model.json, labels.json, metadata.json, training.png/svg
    #[arg(long)]
    out: PathBuf,
    /// Test images saved as PNG into OUT/samples (to attack with `fool`)
    #[arg(long, default_value_t = 10)]
    samples: usize,
    /// auto, cpu, cuda or cuda:N
    #[arg(long, default_value = "auto")]
    device: String,
    #[command(flatten)]
    mlflow: super::mlflow::MlflowArgs,
    #[command(flatten)]
    output: OutputArgs,
}

/// The architecture (default per data set), optimizer and learning rate (default per
/// optimizer) the training flags ask for (`fool train`, `fool pate teachers|student`).
pub(crate) fn model_choices(
    dataset: DatasetName,
    arch: Option<&str>,
    optimizer: &str,
    momentum: f64,
    lr: Option<f64>,
) -> Result<(Arch, OptKind, f64)> {
    let arch: Arch = match arch {
        Some(s) => s.parse()?,
        None => match dataset {
            DatasetName::Mnist => "cnn".parse()?,
            DatasetName::Cifar10 => "small-cnn:conv=3".parse()?,
        },
    };
    let optimizer = match optimizer {
        "sgd" => OptKind::Sgd { momentum },
        "adam" => OptKind::Adam,
        o => bail!("--optimizer: unknown optimizer '{o}' (expected sgd or adam)"),
    };
    let lr = lr.unwrap_or(match optimizer {
        OptKind::Sgd { .. } => 0.05,
        OptKind::Adam => 0.001,
    });
    Ok((arch, optimizer, lr))
}

/// `--adversarial` and its `--adv-*` settings.
fn adversarial(a: &TrainArgs) -> Result<Option<fool::train::adversarial::Adversarial>> {
    use fool::train::adversarial::{AdvKind, Adversarial};
    let Some(kind) = a.adversarial.as_deref() else {
        return Ok(None);
    };
    let kind: AdvKind = kind.parse()?;
    let eps = |flag: &str, v: &str| {
        fool::attacks::parse_eps(v).map_err(|e| anyhow::anyhow!("--{flag}: {e}"))
    };
    let Some(e) = a.adv_eps.as_deref() else {
        bail!("--adv-eps: required with --adversarial (e.g. 0.3 for mnist, 8/255 for cifar10)");
    };
    Ok(Some(Adversarial {
        kind,
        eps: eps("adv-eps", e)?,
        steps: a.adv_steps.unwrap_or(match kind {
            AdvKind::Pgd => 7,
            AdvKind::FgsmRs => 1,
            AdvKind::Trades => 10,
        }),
        step_size: a
            .adv_step_size
            .as_deref()
            .map(|v| eps("adv-step-size", v))
            .transpose()?,
        eval_examples: a.adv_eval,
        beta: a.beta,
        warmup_epochs: a.adv_warmup,
    }))
}

fn config(a: &TrainArgs) -> Result<TrainConfig> {
    let folder = a
        .data
        .as_ref()
        .filter(|d| d.join("labels.csv").exists())
        .cloned();
    let dataset: DatasetName = match (&a.dataset, &folder) {
        (Some(d), _) => d.parse()?,
        (None, Some(f)) => fool::datasets::pool::folder_dataset(f)?.ok_or_else(|| {
            anyhow::anyhow!(
                "--dataset: {} has no dataset.json naming its data set; give --dataset mnist|cifar10",
                f.display()
            )
        })?,
        (None, None) => bail!("--dataset: required (mnist or cifar10)"),
    };
    if a.test_data.is_some() && folder.is_none() {
        bail!("--test-data: only with an image folder (with a labels.csv) as --data");
    }
    // DP defaults for MNIST, the best one-epoch settings found (BENCHMARKS.md "Issue 17"):
    // the tanh CNN (Papernot et al. 2021), plain SGD at rate 1.0.
    let dp_mnist = a.dp && dataset == DatasetName::Mnist;
    let arch = a.arch.as_deref().or(dp_mnist.then_some("cnn:act=tanh"));
    let momentum = a.momentum.unwrap_or(if dp_mnist { 0.0 } else { 0.9 });
    let lr = a.lr.or((dp_mnist && a.optimizer == "sgd").then_some(1.0));
    let (arch, optimizer, lr) = model_choices(dataset, arch, &a.optimizer, momentum, lr)?;
    if !a.dp && (a.noise.is_some() || a.target_epsilon.is_some()) {
        bail!("--noise/--target-epsilon: only meaningful with --dp");
    }
    let dp = if a.dp {
        if a.noise.is_some() && a.target_epsilon.is_some() {
            bail!("--dp: give one of --noise SIGMA or --target-epsilon EPS, not both");
        }
        Some(DpConfig {
            clip: a.clip,
            noise: match a.target_epsilon {
                Some(_) => 0.0,
                None => a.noise.unwrap_or(DEFAULT_NOISE),
            },
            delta: a.delta,
            target_epsilon: a.target_epsilon,
            accountant: a.accountant.parse::<AccountantKind>()?,
            max_physical_batch: a.max_physical_batch,
        })
    } else {
        None
    };
    Ok(TrainConfig {
        dataset,
        data_dir: match &folder {
            Some(_) => a.test_data.clone(),
            None => a.data.clone(),
        }
        .unwrap_or_else(|| dataset.default_dir()),
        train_folder: folder,
        recipe: Recipe {
            schedule: a.schedule.parse()?,
            warmup: a.warmup,
            weight_decay: a.weight_decay,
            ema: a.ema,
            augment: a.augment.as_deref().map(str::parse).transpose()?,
            multiplicity: a.multiplicity.filter(|&k| k != 1),
            adversarial: adversarial(a)?,
        },
        arch,
        epochs: a.epochs,
        batch: a.batch,
        lr,
        optimizer,
        seed: a.seed,
        limit: a.limit,
        half: a.half,
        dp,
        checkpoint_every: a.checkpoint_every,
        audit_every: a.audit_every,
        audit_examples: a.audit_examples,
        partition: None,
        student: None,
    })
}

/// Progress bar per epoch: running loss/accuracy, ε at the end of the previous epoch; the
/// heading and the epoch lines unless quiet.
struct Bars {
    pb: indicatif::ProgressBar,
    hidden: bool,
    epochs: usize,
    epoch: usize,
    running: StepStats,
    eps: Option<f64>,
    lines: bool,
    /// --resume was given (a note when there was nothing to resume).
    resume: bool,
    out: PathBuf,
    quiet: bool,
}

impl Observer for Bars {
    fn started(&mut self, s: &Started) {
        let cfg = s.config;
        self.epochs = cfg.epochs;
        self.eps = s.resumed.last().and_then(|r| r.epsilon);
        if self.resume && s.resumed.is_empty() && !self.quiet {
            eprintln!(
                "fool: note: nothing to resume in {}; starting a new run",
                self.out.display()
            );
        }
        if !self.lines {
            return;
        }
        let dp = match &cfg.dp {
            Some(d) => format!(
                "DP-SGD: clip {}, σ = {:.4}{}, q = {:.6}, δ = {:e}, {} accountant",
                d.clip,
                d.noise,
                d.target_epsilon
                    .map(|t| format!(" (calibrated for ε = {t})"))
                    .unwrap_or_default(),
                cfg.batch as f64 / s.train_examples as f64,
                d.delta,
                d.accountant
            ),
            None => "not private".into(),
        };
        println!(
            "training {} on {} ({} examples, {} test) for {} epochs on {}; {dp}",
            cfg.arch,
            cfg.dataset,
            s.train_examples,
            s.test_examples,
            cfg.epochs,
            fool::device::device_name(s.device)
        );
        for r in s.resumed {
            println!("{} (resumed)", epoch_line(r, cfg.epochs));
        }
    }
    fn epoch_start(&mut self, epoch: usize, steps: u64) {
        self.pb = progress_bar(steps, self.hidden);
        self.epoch = epoch;
        self.running = StepStats::default();
    }
    fn step(&mut self, s: &StepStats) {
        self.running.add(s);
        let n = self.running.examples.max(1) as f64;
        let eps = self.eps.map(|e| format!(", ε {e:.2}")).unwrap_or_default();
        self.pb.set_message(format!(
            "epoch {}/{}: loss {:.3}, acc {:.1}%{eps}",
            self.epoch,
            self.epochs,
            self.running.loss_sum / n,
            100.0 * self.running.correct as f64 / n
        ));
        self.pb.inc(1);
    }
    fn epoch_end(&mut self, r: &EpochRecord) -> ControlFlow<()> {
        self.pb.finish_and_clear();
        self.eps = r.epsilon;
        if self.lines {
            println!("{}", epoch_line(r, self.epochs));
            for a in r.audit.iter().flatten() {
                println!(
                    "  membership audit {:21} AUC {:.3}, advantage {:.3}, TPR@0.1%FPR {:.4}",
                    a.attack.to_string(),
                    a.auc,
                    a.advantage,
                    a.tpr_at_fpr_0_001
                );
            }
        }
        ControlFlow::Continue(())
    }
}

fn epoch_line(r: &EpochRecord, epochs: usize) -> String {
    let eps = r
        .epsilon
        .map(|e| format!(", ε = {e:.3}"))
        .unwrap_or_default();
    format!(
        "epoch {}/{epochs}: train loss {:.4} acc {:.2}%, test loss {:.4} acc {:.2}%{eps} ({:.1} s)",
        r.epoch,
        r.train_loss,
        100.0 * r.train_accuracy,
        r.test_loss,
        100.0 * r.test_accuracy,
        r.seconds
    )
}

pub fn run(a: TrainArgs) -> Result<ExitCode> {
    let config = config(&a)?;
    let device = fool::device::parse_device(&a.device)?;
    let run = Run {
        resume: if a.resume {
            Resume::Continue
        } else {
            Resume::Never
        },
        samples: a.samples,
        ..Run::new(config, RunDir::new(&a.out), device)
    };
    let quiet = a.output.quiet || a.output.json;
    let mut bars = Bars {
        pb: indicatif::ProgressBar::hidden(),
        hidden: quiet,
        epochs: 0,
        epoch: 0,
        running: StepStats::default(),
        eps: None,
        lines: !quiet,
        resume: a.resume,
        out: a.out.clone(),
        quiet: a.output.quiet,
    };
    let meta = match run.train(&mut bars)? {
        Outcome::Finished(meta) => meta,
        Outcome::Stopped { .. } => return Ok(ExitCode::from(130)),
    };
    if a.output.json {
        let logged = a.mlflow.upload(&a.out, &a.output);
        print_json(&logged.attach(&meta, "metadata")?)?;
    } else {
        let model = run.dir.model_path();
        println!(
            "test accuracy {:.2}%{}",
            100.0 * meta.test_accuracy.unwrap_or(0.0),
            match (meta.epsilon, meta.delta) {
                (Some(e), Some(d)) => format!(", ε = {e:.3} at δ = {d:e} ({} steps)", meta.steps),
                _ => ", not private (ε = ∞)".into(),
            }
        );
        println!(
            "model: {} (attack it: fool IMAGE --model {} --target CLASS)",
            model.display(),
            model.display()
        );
        println!(
            "wrote metadata.json, members.npy, training.png/svg{} in {}",
            if a.samples > 0 { ", samples/" } else { "" },
            a.out.display()
        );
        a.mlflow.upload(&a.out, &a.output).print();
    }
    Ok(ExitCode::SUCCESS)
}
