//! Argument definitions and dispatch. Exit codes: 0 success, 1 error, 2 usage error,
//! 3 attack finished without reaching its goal.
use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use fool::labels::Labels;
use fool::model::Classifier;
use fool::preprocess::Preprocess;
use fool::Error;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

mod apply;
mod attack;
mod audit;
mod bench;
mod detect;
mod mlflow;
mod pate;
mod predict;
mod privacy;
mod report;
mod report_html;
mod report_mlflow;
mod serve;
mod synth;
mod train;

pub const EXIT_ERROR: u8 = 1;
pub const EXIT_NOT_FOOLED: u8 = 3;

#[derive(Parser, Debug)]
#[command(
    name = "fool",
    version,
    about = "How easily can your image classifier be fooled?",
    long_about = "How easily can your image classifier be fooled?\n\n\
        `fool IMAGE --target CLASS` runs a targeted attack (same as `fool attack`).\n\n\
        Exit codes: 0 success, 1 error (bad input, unreadable file, …), 2 usage error, \
        3 the attack finished without reaching its goal.\n\n\
        Environment: FOOL_MALLOC=default keeps glibc malloc's defaults (fool otherwise raises its \
        mmap and trim thresholds to 1 GiB at start-up: faster CPU attacks, ~15% more peak memory).",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    attack: attack::AttackArgs,
    /// Refuse images with more pixels (width × height) than this, before decoding them (a
    /// small file can declare a huge image)
    #[arg(long, global = true, value_name = "N", default_value_t = fool::imageio::DEFAULT_MAX_PIXELS)]
    max_image_pixels: u64,
    /// Memory an image decoder may allocate for one image, in MiB
    #[arg(long, global = true, value_name = "MIB", default_value_t = fool::imageio::DEFAULT_MAX_MIB)]
    max_image_mib: u64,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Classify an image: top-k classes with probabilities, optionally through a defense.
    Predict(predict::PredictArgs),
    /// Attack an image (the default command: `fool IMAGE --target CLASS`).
    Attack(attack::AttackArgs),
    /// Add a saved perturbation (.npy, normalized input space) to an image and classify it.
    Apply(apply::ApplyArgs),
    /// Attack success rate versus eps over a labelled image folder, with and without defenses.
    Bench(bench::BenchArgs),
    /// Adversarial-input detection: calibrate feature squeezing on clean images, score images.
    Detect(detect::DetectArgs),
    /// Train a classifier on MNIST or CIFAR-10, optionally with DP-SGD, and export it.
    Train(train::TrainArgs),
    /// Differentially private synthetic images by Private Evolution (an offline digit
    /// simulator or any generator over HTTP), to train on instead of the private data.
    Synth(synth::SynthArgs),
    /// Reports over several runs: `fool report privacy RUN... --out DIR`.
    Report(report::ReportArgs),
    /// DP-SGD privacy accounting: ε for a noise multiplier, or the noise for an ε budget.
    Privacy(privacy::PrivacyArgs),
    /// Membership-inference audit: can an attacker tell training examples from held-out ones?
    Audit(audit::AuditArgs),
    /// PATE: train a teacher ensemble, collect its votes on a pool, train a private student.
    Pate(pate::PateArgs),
    /// Serve the classifier over HTTP (Open Inference Protocol / KServe v2, TorchServe- and
    /// MLflow-style endpoints), with dynamic batching, Prometheus metrics and adversarial-input flags.
    Serve(serve::ServeArgs),
    /// Load-test an HTTP endpoint (fool serve's or another's): throughput, latency percentiles,
    /// and a check that every request got exactly its own answer.
    Loadtest(serve::LoadtestArgs),
    /// Attack a served model through its HTTP API with the Square attack (black box), and see
    /// whether the server's detectors notice.
    Probe(serve::ProbeArgs),
}

pub fn run(cli: Cli) -> Result<ExitCode> {
    fool::imageio::set_decode_limits(cli.max_image_pixels, cli.max_image_mib);
    match cli.command {
        Some(Command::Predict(a)) => predict::run(a),
        Some(Command::Attack(a)) => attack::run(a),
        Some(Command::Apply(a)) => apply::run(a),
        Some(Command::Bench(a)) => bench::run(a),
        Some(Command::Detect(a)) => detect::run(a),
        Some(Command::Train(a)) => train::run(a),
        Some(Command::Synth(a)) => synth::run(a),
        Some(Command::Report(a)) => report::run(a),
        Some(Command::Privacy(a)) => privacy::run(a),
        Some(Command::Audit(a)) => audit::run(a),
        Some(Command::Pate(a)) => pate::run(a),
        Some(Command::Serve(a)) => serve::run(a),
        Some(Command::Loadtest(a)) => serve::loadtest(a),
        Some(Command::Probe(a)) => serve::probe(a),
        None => attack::run(cli.attack),
    }
}

/// Model, labels, preprocessing and device: shared by every command.
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// TorchScript classifier: (N,3,H,W) normalized input → (N,C) logits [default: assets/model.pt]
    #[arg(long, value_name = "PATH")]
    model: Option<PathBuf>,
    /// Labels as JSON, {"0": "label", ...} or a list [default: assets/imagenet_labels.json]
    #[arg(long, value_name = "PATH")]
    labels: Option<PathBuf>,
    /// Model input size (square crop side) [default: 224, or the model's model.json]
    #[arg(long)]
    size: Option<u32>,
    /// Resize the shorter side to this before the center crop (torchvision Resize); the
    /// tutorial used 224 [default: 256, or the model's model.json]
    #[arg(long)]
    resize: Option<u32>,
    /// Resize and crop even images that are already SIZE×SIZE (by default they are used as they are)
    #[arg(long)]
    resize_always: bool,
    /// Normalization mean, three comma-separated numbers [default: 0.485,0.456,0.406 (ImageNet), or the model's model.json]
    #[arg(long, value_name = "R,G,B", value_parser = parse_triple)]
    mean: Option<[f64; 3]>,
    /// Normalization std, three comma-separated numbers [default: 0.229,0.224,0.225, or the model's model.json]
    #[arg(long, value_name = "R,G,B", value_parser = parse_triple)]
    std: Option<[f64; 3]>,
    /// auto, cpu, cuda or cuda:N
    #[arg(long, default_value = "auto")]
    device: String,
}

/// Output switches shared by every command.
#[derive(Args, Debug, Clone)]
pub struct OutputArgs {
    /// Print a JSON record on stdout instead of the human-readable report
    #[arg(long)]
    json: bool,
    /// No progress bars and no notes on stderr
    #[arg(long, short)]
    quiet: bool,
}

fn parse_triple(s: &str) -> Result<[f64; 3], String> {
    let v: Vec<f64> = s
        .split(',')
        .map(|p| p.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("'{s}': expected three comma-separated numbers"))?;
    v.try_into()
        .map_err(|_| format!("'{s}': expected exactly three comma-separated numbers"))
}

/// A default asset: `assets/NAME` in the current directory, else next to the project the
/// binary was built in (`target/release/fool` → `assets/`).
fn default_asset(name: &str) -> PathBuf {
    let local = Path::new("assets").join(name);
    if local.exists() {
        return local;
    }
    if let Ok(exe) = std::env::current_exe() {
        if let Some(root) = exe.parent().and_then(Path::parent).and_then(Path::parent) {
            let p = root.join("assets").join(name);
            if p.exists() {
                return p;
            }
        }
    }
    local
}

pub struct Loaded {
    pub model: Classifier,
    pub labels: Labels,
    pub model_path: PathBuf,
    pub labels_path: Option<PathBuf>,
}

impl Loaded {
    /// The model as the library's file-level functions take it.
    pub fn model_ref(&self) -> fool::attacks::image::ModelRef<'_> {
        fool::attacks::image::ModelRef {
            model: &self.model,
            labels: &self.labels,
            path: &self.model_path,
            labels_path: self.labels_path.as_deref(),
        }
    }
}

impl ModelArgs {
    /// The model file: --model, else assets/model.pt.
    fn model_path(&self) -> PathBuf {
        self.model
            .clone()
            .unwrap_or_else(|| default_asset("model.pt"))
    }

    /// What the flags say about the model: file, device, preprocessing, labels.
    fn spec(&self) -> Result<fool::model::ModelSpec> {
        Ok(fool::model::ModelSpec {
            path: self.model_path(),
            device: fool::device::parse_device(&self.device)?,
            size: self.size,
            resize: self.resize,
            mean: self.mean,
            std: self.std,
            resize_always: self.resize_always,
            labels: self.labels.clone(),
            default_labels: default_asset("imagenet_labels.json"),
        })
    }

    /// Preprocessing: flags first, then the `model.json` beside the model (written by
    /// `fool train`), then the ImageNet defaults.
    pub fn preprocess(&self) -> Result<Preprocess> {
        Ok(self.spec()?.preprocess()?)
    }

    /// Load the model on the chosen device and its labels (checked against the output size).
    pub fn load(&self, quiet: bool) -> Result<Loaded> {
        let spec = self.spec()?;
        if self.model.is_none() && !spec.path.exists() {
            return Err(Error::bad_file(
                &spec.path,
                "default model not found; run scripts/setup/setup.sh or pass --model PATH",
            )
            .into());
        }
        let loaded = spec.load()?;
        if loaded.numbered_labels && !quiet {
            eprintln!(
                "fool: note: no labels for a {}-class model; using class numbers (pass --labels)",
                loaded.model.num_classes
            );
        }
        Ok(Loaded {
            model: loaded.model,
            labels: loaded.labels,
            model_path: spec.path,
            labels_path: loaded.labels_path,
        })
    }
}

/// The flag that sets each library field named in errors ([`fool::Error::Invalid`]): the
/// library names settings by field, the CLI by flag. Fields not listed are printed as they are.
const FIELD_FLAGS: &[(&str, &str)] = &[
    ("accountant", "--accountant"),
    ("aggregator", "--aggregator"),
    ("allow_partial", "--allow-partial"),
    ("arch", "--arch"),
    ("attack", "--attack"),
    ("attacks", "--attacks"),
    ("audit_examples", "--audit-examples"),
    ("batch", "--batch"),
    ("beta", "--beta"),
    ("clip", "--clip"),
    ("concurrency", "--concurrency"),
    ("data_dir", "--data"),
    ("dataset", "--dataset"),
    ("examples", "--examples"),
    ("experiment", "--experiment"),
    ("defense", "--defense"),
    ("delta", "--delta"),
    ("detector", "--detector"),
    ("detector_weight", "--detector-weight"),
    ("device", "--device"),
    ("drift_reference", "--drift-reference"),
    ("drift_window", "--drift-window"),
    ("epochs", "--epochs"),
    ("eps", "--eps"),
    ("folds", "--folds"),
    ("fpr", "--fpr"),
    ("half", "--half"),
    ("host", "--host"),
    ("limit", "--limit"),
    ("lira_epochs", "--lira-epochs"),
    ("lira_shadows", "--lira-shadows"),
    ("lira_variance", "--lira-variance"),
    ("log", "--log"),
    ("lr", "--lr"),
    ("max_batch", "--max-batch"),
    ("max_batch_request", "--max-batch-request"),
    ("max_body_mib", "--max-body-mib"),
    ("max_delay_ms", "--max-delay-ms"),
    ("max_examples", "--max-examples"),
    ("max_image_mib", "--max-image-mib"),
    ("max_image_pixels", "--max-image-pixels"),
    ("max_physical_batch", "--max-physical-batch"),
    ("mean", "--mean"),
    ("members", "--members"),
    ("mlflow", "--mlflow"),
    ("momentum", "--momentum"),
    ("n", "--n"),
    ("name", "--name"),
    ("new_run", "--new-run"),
    ("noise", "--noise"),
    ("norm", "--norm"),
    ("optimizer", "--optimizer"),
    ("out", "--out"),
    ("output", "--output"),
    ("partition_seed", "--partition-seed"),
    ("pool", "--pool"),
    ("port", "--port"),
    ("queries", "--queries"),
    ("queue", "--queue"),
    ("reject_flagged", "--reject-flagged"),
    ("requests", "--requests"),
    ("resize", "--resize"),
    ("resume", "--resume"),
    ("sample_rate", "--sample-rate"),
    ("scale", "--scale"),
    ("seed", "--seed"),
    ("shadow_dir", "--shadow-dir"),
    ("shard", "--shard"),
    ("sigma", "--sigma"),
    ("sigma1", "--sigma1"),
    ("size", "--size"),
    ("slices", "--slices"),
    ("squeezers", "--squeezers"),
    ("stateful", "--stateful"),
    ("stateful_k", "--stateful-k"),
    ("stateful_memory", "--stateful-memory"),
    ("stateful_threshold", "--stateful-threshold"),
    ("std", "--std"),
    ("steps", "--steps"),
    ("target", "--target"),
    ("target_epsilon", "--target-epsilon"),
    ("targets", "--targets"),
    ("teachers", "--teachers"),
    ("test", "--test"),
    ("test_examples", "--test-examples"),
    ("threshold", "--threshold"),
    ("threads", "--threads"),
    ("timeout_ms", "--timeout-ms"),
    ("token_file", "--token-file"),
    ("top_k", "--top-k"),
    ("votes", "--votes"),
    ("wnids", "--wnids"),
];

/// The flag for a library field (itself when no flag sets it).
pub fn flag_for(field: &str) -> &str {
    FIELD_FLAGS
        .iter()
        .find(|(f, _)| *f == field)
        .map_or(field, |(_, flag)| flag)
}

/// An error as one line: the context chain joined with ": ", library fields named by their
/// flags.
pub fn describe(e: &anyhow::Error) -> String {
    e.chain()
        .map(|c| match c.downcast_ref::<Error>() {
            Some(Error::Invalid { field, msg }) => format!("{}: {msg}", flag_for(field)),
            Some(Error::TooLarge { path, field, msg }) => format!(
                "{}: {msg} (raise the limit with {})",
                path.display(),
                flag_for(field)
            ),
            _ => c.to_string(),
        })
        .collect::<Vec<_>>()
        .join(": ")
}

/// A progress bar on stderr, hidden with --quiet/--json or when stderr is not a terminal.
pub fn progress_bar(len: u64, hidden: bool) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if hidden || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let pb = indicatif::ProgressBar::new(len);
    pb.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}",
        )
        .expect("valid template"),
    );
    pb
}

/// Print a serializable value as pretty JSON on stdout.
pub fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    println!(
        "{}",
        serde_json::to_string_pretty(v).context("serializing JSON")?
    );
    Ok(())
}
