//! `fool audit`: membership-inference audits of a trained model, from saved outputs
//! (`--train-logits …`) or by running a model on its data set (`--model … --dataset …`).
use super::{print_json, progress_bar, OutputArgs};
use anyhow::{bail, Result};
use clap::Args;
use fool::audit::{self, AuditOptions, OutputKind, SliceSpec};
use fool::datasets::DatasetName;
use fool::lira::{
    AuditJob, AuditObserver, Examples, JobOutcome, LiraObserver, LiraSettings, ModelSource,
};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
#[command(
    long_about = "Membership-inference audit: how well can an attacker tell the examples a model \
        was trained on (members) from held-out ones (non-members)?\n\n\
        Either give saved model outputs (--train-logits, --train-labels, --test-logits, \
        --test-labels; .npy) or a model and its data set (--model runs/X/model.pt --dataset \
        mnist). Attacks: threshold on the loss, the confidence and the modified entropy, and a \
        logistic regression on the sorted probabilities plus the loss (k-fold cross-validated on \
        a balanced subset, which its metrics are computed on). \
        Reports AUC, attacker advantage (max TPR − FPR), TPR at FPR ≤ 0.1% and ≤ 1% (the \
        largest TPR among the ROC points with FPR at most that), per slice.\n\n\
        LiRA (Carlini et al. 2022, --lira-shadows N): for a target trained with `fool train \
        --half SEED`, trains N shadow models with the target's settings on other random halves \
        of the same pool (the first --limit training examples), in-process and resumable, then \
        scores every pool example by a likelihood ratio of the target's logit-scaled confidence \
        under Gaussians fitted to the shadows that had it IN and OUT (lira-online) or OUT only \
        (lira-offline, one-sided). Members are the target's members.npy, non-members the rest \
        of the pool (not the test split)."
)]
pub struct AuditArgs {
    /// Members' logits (n, C), float32/float64 .npy: outputs on examples the model was trained on
    #[arg(long, value_name = "NPY")]
    train_logits: Option<PathBuf>,
    /// Members' true labels (n,), integer .npy
    #[arg(long, value_name = "NPY")]
    train_labels: Option<PathBuf>,
    /// Non-members' logits (m, C): outputs on held-out examples
    #[arg(long, value_name = "NPY")]
    test_logits: Option<PathBuf>,
    /// Non-members' true labels (m,)
    #[arg(long, value_name = "NPY")]
    test_labels: Option<PathBuf>,
    /// The --train-logits/--test-logits arrays hold probabilities, not logits
    #[arg(long)]
    probabilities: bool,
    /// TorchScript model to audit on a data set, e.g. runs/X/model.pt from `fool train`
    /// (takes (N,3,H,W) pixels in [0,1])
    #[arg(long, value_name = "PATH")]
    model: Option<PathBuf>,
    /// mnist or cifar10 [default: the data set in the metadata.json beside the model]
    #[arg(long)]
    dataset: Option<String>,
    /// Folder with the data set files [default: assets/mnist or assets/cifar10]
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Members: the first N training examples [default: the indices in the members.npy beside
    /// the model, else train_examples from its metadata.json]; non-members: the test split
    #[arg(long, value_name = "N")]
    members: Option<usize>,
    /// Use at most N members and N non-members (a random subset chosen with --seed) [default: all]
    #[arg(long, value_name = "N")]
    max_examples: Option<usize>,
    /// Images per forward pass
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..))]
    batch: u64,
    /// auto, cpu, cuda or cuda:N
    #[arg(long, default_value = "auto")]
    device: String,
    /// Comma-separated: threshold-loss, threshold-confidence, threshold-entropy,
    /// logistic-regression (lr), threshold (the three), all
    #[arg(long, default_value = "all")]
    attacks: String,
    /// Comma-separated slicings besides `all` (always run): class (one slice per true
    /// class), correctness (correctly / incorrectly classified)
    #[arg(long, default_value = "all")]
    slices: String,
    /// Cross-validation folds of the logistic-regression attack
    #[arg(long, default_value_t = 5)]
    folds: usize,
    /// Seed for --max-examples subsets and the logistic-regression attack's balancing and folds
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Also write audit.json, audit.csv and roc.png/roc.svg into this folder
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// LiRA: train N shadow models like the --model target (which must come from `fool train
    /// --half SEED`) and run lira-offline and lira-online on its pool
    #[arg(long, value_name = "N")]
    lira_shadows: Option<usize>,
    /// Folder of the shadow models, reused and resumed across runs [default: lira-shadows
    /// beside the model]
    #[arg(long, value_name = "DIR")]
    shadow_dir: Option<PathBuf>,
    /// Epochs of each shadow model [default: the target's]
    #[arg(long, value_name = "E")]
    lira_epochs: Option<usize>,
    /// σ of LiRA's Gaussian fits: global (one for all examples, the paper's fixed variance),
    /// per-example, or auto (global below 64 shadows)
    #[arg(long, default_value = "auto")]
    lira_variance: String,
    /// LiRA also queries the horizontally flipped images (scores averaged over both)
    #[arg(long)]
    lira_flip: bool,
    #[command(flatten)]
    mlflow: super::mlflow::MlflowArgs,
    #[command(flatten)]
    output: OutputArgs,
}

/// The model-running bar, the shadow-training bar (one tick per shadow epoch), then the
/// scoring bar.
struct Bars {
    pb: indicatif::ProgressBar,
    hidden: bool,
    shadows: usize,
}

impl LiraObserver for Bars {
    fn training(&mut self, total: usize, done: usize) {
        if done < total && !self.hidden {
            eprintln!(
                "fool: training {} shadow models ({} of {total} epochs already done)",
                self.shadows, done
            );
        }
        self.pb = progress_bar(total as u64, self.hidden);
        self.pb.set_position(done as u64);
        self.pb.set_message("shadow models");
    }
    fn shadow_start(&mut self, shadow: usize, epoch: usize, epochs: usize) {
        self.pb.set_message(format!(
            "shadow {}/{}, epoch {}/{epochs}",
            shadow + 1,
            self.shadows,
            epoch.min(epochs)
        ));
    }
    fn step(&mut self) {
        self.pb.tick();
    }
    fn epoch_end(&mut self, _shadow: usize, _epoch: usize) -> ControlFlow<()> {
        self.pb.inc(1);
        ControlFlow::Continue(())
    }
    fn scoring(&mut self, models: usize) {
        self.pb.finish_and_clear();
        self.pb = progress_bar(models as u64, self.hidden);
        self.pb.set_message("running the models on the pool");
    }
    fn scored(&mut self) {
        self.pb.inc(1);
    }
}

impl AuditObserver for Bars {
    fn running(&mut self, examples: usize) {
        self.pb = progress_bar(examples as u64, self.hidden);
        self.pb.set_message("running the model");
    }
    fn ran(&mut self, examples: usize) {
        self.pb.inc(examples as u64);
    }
    fn ran_all(&mut self) {
        self.pb.finish_and_clear();
    }
}

/// The LiRA settings, checked against the other flags.
fn lira_settings(a: &AuditArgs) -> Result<Option<LiraSettings>> {
    let explicit = a
        .attacks
        .split(',')
        .any(|p| p.trim().to_ascii_lowercase().starts_with("lira"));
    let Some(shadows) = a.lira_shadows else {
        if explicit {
            bail!(
                "--lira-shadows: required by --attacks {} (LiRA trains shadow models: give how many, e.g. --lira-shadows 16)",
                a.attacks
            );
        }
        if a.shadow_dir.is_some()
            || a.lira_epochs.is_some()
            || a.lira_flip
            || a.lira_variance != "auto"
        {
            bail!("--shadow-dir/--lira-epochs/--lira-variance/--lira-flip: only meaningful with --lira-shadows");
        }
        return Ok(None);
    };
    if a.model.is_none() {
        bail!("--lira-shadows: needs --model (a target trained with `fool train --half SEED`)");
    }
    Ok(Some(LiraSettings {
        shadows,
        shadow_dir: a.shadow_dir.clone(),
        epochs: a.lira_epochs,
        variance: a.lira_variance.parse()?,
        flip: a.lira_flip,
    }))
}

/// Where the members and non-members come from.
fn examples(a: &AuditArgs, lira: Option<LiraSettings>) -> Result<Examples> {
    let Some(model) = &a.model else {
        if a.dataset.is_some() || a.members.is_some() {
            bail!("--dataset/--members: only meaningful with --model");
        }
        let need = |v: &Option<PathBuf>, flag: &str| -> Result<PathBuf> {
            v.clone().ok_or_else(|| {
                anyhow::anyhow!(
                    "{flag}: missing: give --train-logits, --train-labels, --test-logits and --test-labels (or --model and --dataset)"
                )
            })
        };
        return Ok(Examples::Arrays {
            member_outputs: need(&a.train_logits, "--train-logits")?,
            member_labels: need(&a.train_labels, "--train-labels")?,
            nonmember_outputs: need(&a.test_logits, "--test-logits")?,
            nonmember_labels: need(&a.test_labels, "--test-labels")?,
            kind: if a.probabilities {
                OutputKind::Probabilities
            } else {
                OutputKind::Logits
            },
        });
    };
    Ok(Examples::Model(ModelSource {
        model: model.clone(),
        dataset: a
            .dataset
            .as_deref()
            .map(str::parse::<DatasetName>)
            .transpose()?,
        data_dir: a.data.clone(),
        members: a.members,
        batch: a.batch as usize,
        device: fool::device::parse_device(&a.device)?,
        lira,
    }))
}

pub fn run(a: AuditArgs) -> Result<ExitCode> {
    let options = AuditOptions {
        attacks: audit::parse_attacks(&a.attacks)?,
        slices: a.slices.parse::<SliceSpec>()?,
        folds: a.folds,
        seed: a.seed,
        ..AuditOptions::default()
    };
    let arrays = [
        &a.train_logits,
        &a.train_labels,
        &a.test_logits,
        &a.test_labels,
    ]
    .iter()
    .any(|p| p.is_some());
    if a.model.is_some() && arrays {
        bail!(
            "--model: give either --model (with --dataset) or the four --train-/--test- arrays, not both"
        );
    }
    a.mlflow.needs_folder(a.out.as_deref(), "--out")?;
    let lira = lira_settings(&a)?;
    let shadows = lira.as_ref().map_or(0, |l| l.shadows);
    let job = AuditJob {
        examples: examples(&a, lira)?,
        options,
        max_examples: a.max_examples,
        out: a.out.clone(),
    };
    let mut bars = Bars {
        pb: indicatif::ProgressBar::hidden(),
        hidden: a.output.quiet || a.output.json,
        shadows,
    };
    let t0 = std::time::Instant::now();
    let outcome = fool::lira::run_audit(&job, &mut bars)?;
    bars.pb.finish_and_clear();
    let (report, audited) = match outcome {
        JobOutcome::Stopped => return Ok(ExitCode::from(130)),
        JobOutcome::Done { report, audited } => (report, audited),
    };
    let logged = a.mlflow.upload_to(a.out.as_deref(), &a.output);
    if a.output.json {
        print_json(&logged.attach(&report.results, "results")?)?;
    } else {
        for what in &audited {
            println!("membership inference audit of {what}");
        }
        print!("{}", audit::format_report(&report));
        if let Some(dir) = &a.out {
            println!(
                "wrote {} (audit.json, audit.csv, roc.png, roc.svg)",
                dir.display()
            );
            logged.print();
        }
    }
    if !a.output.quiet && !a.output.json {
        eprintln!("fool: attacks took {:.1} s", t0.elapsed().as_secs_f64());
    }
    Ok(ExitCode::SUCCESS)
}
