//! `fool pate teachers | check | votes | student`: PATE's ensemble, votes and student.
use super::{print_json, progress_bar, OutputArgs};
use anyhow::Result;
use clap::{Args, Subcommand};
use fool::bench::Shard;
use fool::datasets::DatasetName;
use fool::pate::{
    self, Manifest, StudentJob, StudentOutcome, TeacherRow, TeachersReport, VotesJob,
};
use fool::privacy::dpsgd::StepStats;
use fool::train::{EpochRecord, Observer, TrainConfig};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct PateArgs {
    #[command(subcommand)]
    sub: PateSub,
}

#[derive(Subcommand, Debug)]
enum PateSub {
    /// Train N teachers on disjoint seeded parts of the training set (resumable, shardable)
    Teachers(TeachersArgs),
    /// Check that an ensemble (e.g. merged from shards) has every teacher, finished and its own
    Check(CheckArgs),
    /// The teachers' votes on a pool: OUT/votes.npy (Q, C counts) and votes.json
    Votes(VotesArgs),
    /// Train a student on the pool items a noisy aggregator labels, with its PATE ε
    Student(StudentArgs),
}

/// The training settings shared by teachers and students (as `fool train`'s).
#[derive(Args, Debug)]
struct TrainingArgs {
    /// Architecture (see fool train --help) [default: cnn for mnist, small-cnn:conv=3 for cifar10]
    #[arg(long)]
    arch: Option<String>,
    /// Passes over each model's training set
    #[arg(long, default_value_t = 10)]
    epochs: usize,
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Learning rate [default: 0.05 for sgd, 0.001 for adam]
    #[arg(long, allow_negative_numbers = true)]
    lr: Option<f64>,
    /// sgd (with --momentum) or adam
    #[arg(long, default_value = "sgd")]
    optimizer: String,
    #[arg(long, default_value_t = 0.9, allow_negative_numbers = true)]
    momentum: f64,
    /// Seed of the models (teacher k uses a seed drawn from it and k)
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// auto, cpu, cuda or cuda:N
    #[arg(long, default_value = "auto")]
    device: String,
}

impl TrainingArgs {
    fn config(
        &self,
        dataset: DatasetName,
        data: PathBuf,
        limit: Option<usize>,
    ) -> Result<TrainConfig> {
        let (arch, optimizer, lr) = super::train::model_choices(
            dataset,
            self.arch.as_deref(),
            &self.optimizer,
            self.momentum,
            self.lr,
        )?;
        Ok(TrainConfig {
            dataset,
            data_dir: data,
            arch,
            epochs: self.epochs,
            batch: self.batch,
            lr,
            optimizer,
            seed: self.seed,
            limit,
            half: None,
            dp: None,
            checkpoint_every: 0,
            audit_every: 0,
            audit_examples: 10_000,
            partition: None,
            student: None,
            train_folder: None,
            recipe: Default::default(),
        })
    }
}

#[derive(Args, Debug)]
struct TeachersArgs {
    /// mnist or cifar10
    #[arg(long)]
    dataset: String,
    /// Folder with the dataset files [default: assets/mnist or assets/cifar10]
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Number of teachers N: the (first --limit) training examples are split into N disjoint parts
    #[arg(long)]
    teachers: usize,
    /// Use the first N training examples only
    #[arg(long)]
    limit: Option<usize>,
    /// Evaluate each teacher (every epoch, and in the table) on the first N test examples
    /// only [default: all]: with small teachers, evaluation is most of the time
    #[arg(long, value_name = "N")]
    test_examples: Option<usize>,
    /// Seed of the partition into parts
    #[arg(long, default_value_t = 0)]
    partition_seed: u64,
    /// Train only teachers k with k mod N = I (0-based I/N, e.g. 0/4; default from
    /// SLURM_ARRAY_TASK_ID/COUNT or JOB_COMPLETION_INDEX + FOOL_SHARD_COUNT); merge shards by
    /// copying their teacher-NNNN folders into one OUT, then `fool pate check OUT`
    #[arg(long)]
    shard: Option<String>,
    /// Ensemble folder: pate.json and teacher-NNNN/ run folders (an existing one is resumed)
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    training: TrainingArgs,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Args, Debug)]
struct CheckArgs {
    /// Ensemble folder (from fool pate teachers --out)
    ensemble: PathBuf,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Args, Debug)]
struct VotesArgs {
    /// Ensemble folder (from fool pate teachers --out)
    ensemble: PathBuf,
    /// The public pool: DATASET:SPLIT[a:b] (Python slice, e.g. mnist:test[0:9000]) or a folder
    /// of images (labels.csv optional) of the teachers' size
    #[arg(long)]
    pool: String,
    /// The votes file [default: ENSEMBLE/votes.npy]; votes.json goes beside it
    #[arg(long)]
    out: Option<PathBuf>,
    /// Images per forward pass
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// auto, cpu, cuda or cuda:N
    #[arg(long, default_value = "auto")]
    device: String,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Args, Debug)]
struct StudentArgs {
    /// Ensemble folder with its votes (fool pate votes)
    ensemble: PathBuf,
    /// The votes [default: ENSEMBLE/votes.npy]
    #[arg(long)]
    votes: Option<PathBuf>,
    /// gnmax (--sigma), confident (--threshold --sigma1 --sigma) or laplace (--scale)
    #[arg(long)]
    aggregator: String,
    /// Confident-GNMax: answer when the noisy max count (noise σ1) reaches T
    #[arg(long, allow_negative_numbers = true)]
    threshold: Option<f64>,
    /// Confident-GNMax: the threshold's noise σ1
    #[arg(long, allow_negative_numbers = true)]
    sigma1: Option<f64>,
    /// GNMax noise σ on the counts
    #[arg(long, allow_negative_numbers = true)]
    sigma: Option<f64>,
    /// Laplace noisy max: the noise scale λ
    #[arg(long, allow_negative_numbers = true)]
    scale: Option<f64>,
    /// Queries: the first N rows of the votes
    #[arg(long)]
    queries: usize,
    #[arg(long, default_value_t = 1e-5, allow_negative_numbers = true)]
    delta: f64,
    /// Held-out test rows, e.g. mnist:test[9000:10000] [default: the rest of the test split
    /// beside the pool]
    #[arg(long)]
    test: Option<String>,
    /// Test images saved as PNG into OUT/samples
    #[arg(long, default_value_t = 10)]
    samples: usize,
    /// The student's run folder (rerunning the same command resumes it)
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    training: TrainingArgs,
    #[command(flatten)]
    mlflow: super::mlflow::MlflowArgs,
    #[command(flatten)]
    output: OutputArgs,
}

pub fn run(a: PateArgs) -> Result<ExitCode> {
    match a.sub {
        PateSub::Teachers(a) => teachers(a),
        PateSub::Check(a) => check(a),
        PateSub::Votes(a) => votes(a),
        PateSub::Student(a) => student(a),
    }
}

/// A bar over the shard's teachers, the current one's epoch in its message.
struct TeacherBar {
    pb: indicatif::ProgressBar,
    hidden: bool,
    k: usize,
    epochs: usize,
}

impl pate::TeachersObserver for TeacherBar {
    fn plan(&mut self, todo: &[usize], done: usize) {
        self.pb = progress_bar(todo.len() as u64, self.hidden);
        if !self.hidden {
            eprintln!(
                "fool pate: {} teachers to train, {done} already finished",
                todo.len()
            );
        }
    }
    fn teacher_start(&mut self, k: usize, _resumed: usize, epochs: usize) {
        (self.k, self.epochs) = (k, epochs);
    }
    fn epoch_start(&mut self, k: usize, epoch: usize, _steps: u64) {
        self.pb
            .set_message(format!("teacher {k}: epoch {epoch}/{}", self.epochs));
    }
    fn teacher_end(&mut self, _row: &TeacherRow) -> ControlFlow<()> {
        self.pb.inc(1);
        ControlFlow::Continue(())
    }
}

fn table(r: &TeachersReport) {
    println!(
        "{:>8} {:>9} {:>9}  trained now",
        "teacher", "examples", "test acc"
    );
    for row in &r.rows {
        println!(
            "{:>8} {:>9} {:>8.2}%  {}",
            row.teacher,
            row.train_examples,
            100.0 * row.test_accuracy,
            if row.trained { "yes" } else { "no" }
        );
    }
    if let (Some(mean), Some(lo), Some(hi)) = (r.mean_accuracy, r.min_accuracy, r.max_accuracy) {
        println!(
            "{} teachers: test accuracy mean {:.2}%, min {:.2}%, max {:.2}%",
            r.rows.len(),
            100.0 * mean,
            100.0 * lo,
            100.0 * hi
        );
    }
}

fn teachers(a: TeachersArgs) -> Result<ExitCode> {
    let dataset: DatasetName = a.dataset.parse()?;
    let data = a.data.clone().unwrap_or_else(|| dataset.default_dir());
    let template = a.training.config(dataset, data, a.limit)?;
    let shard = match &a.shard {
        Some(s) => Shard::parse(s)?,
        None => Shard::from_env(|k| std::env::var_os(k).map(|v| v.to_string_lossy().into_owned()))?
            .unwrap_or(Shard::ALL),
    };
    let device = fool::device::parse_device(&a.training.device)?;
    let manifest = Manifest {
        test_examples: a.test_examples,
        ..Manifest::new(template, a.teachers, a.partition_seed)
    };
    let quiet = a.output.quiet || a.output.json;
    let mut bar = TeacherBar {
        pb: indicatif::ProgressBar::hidden(),
        hidden: quiet,
        k: 0,
        epochs: 0,
    };
    let report = pate::train_teachers(&a.out, &manifest, shard, device, &mut bar)?;
    bar.pb.finish_and_clear();
    if a.output.json {
        print_json(&report)?;
    } else {
        table(&report);
        println!(
            "shard {}: {} teachers trained now, {} in {}",
            report.shard,
            report.trained,
            report.rows.len(),
            a.out.display()
        );
    }
    Ok(if report.stopped {
        ExitCode::from(130)
    } else {
        ExitCode::SUCCESS
    })
}

fn check(a: CheckArgs) -> Result<ExitCode> {
    let (_, report) = pate::check(&a.ensemble)?;
    if a.output.json {
        print_json(&report)?;
    } else {
        table(&report);
        println!(
            "{}: all {} teachers present and finished",
            a.ensemble.display(),
            report.teachers
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn votes(a: VotesArgs) -> Result<ExitCode> {
    let job = VotesJob {
        ensemble: a.ensemble.clone(),
        pool: a.pool.clone(),
        out: a.out.clone(),
        batch: a.batch,
        device: fool::device::parse_device(&a.device)?,
    };
    let quiet = a.output.quiet || a.output.json;
    let pb = progress_bar(0, quiet);
    let (votes, info, out) = pate::collect_votes(&job, &mut |k| {
        pb.set_message(format!("teacher {k}"));
        pb.inc(1);
    })?;
    pb.finish_and_clear();
    if a.output.json {
        print_json(&info)?;
    } else {
        println!(
            "{} teachers voted on {} items of {} ({:.1} s){}",
            votes.teachers(),
            votes.queries(),
            info.pool,
            info.seconds,
            info.plurality_accuracy
                .map(|p| format!("; plurality vote accuracy {:.2}%", 100.0 * p))
                .unwrap_or_default()
        );
        println!(
            "wrote {} ({} × {}) and {}",
            out.display(),
            votes.queries(),
            votes.classes(),
            pate::VotesInfo::path(&out).display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The student's progress: a bar per epoch and a line per epoch unless quiet.
struct StudentBar {
    pb: indicatif::ProgressBar,
    hidden: bool,
    epochs: usize,
}

impl Observer for StudentBar {
    fn started(&mut self, s: &fool::train::Started) {
        self.epochs = s.config.epochs;
        if !self.hidden {
            println!(
                "training the student ({}) on {} labelled pool items, testing on {} held-out examples",
                s.config.arch, s.train_examples, s.test_examples
            );
        }
    }
    fn epoch_start(&mut self, epoch: usize, steps: u64) {
        self.pb = progress_bar(steps, self.hidden);
        self.pb
            .set_message(format!("epoch {epoch}/{}", self.epochs));
    }
    fn step(&mut self, _s: &StepStats) {
        self.pb.inc(1);
    }
    fn epoch_end(&mut self, r: &EpochRecord) -> ControlFlow<()> {
        self.pb.finish_and_clear();
        if !self.hidden {
            println!(
                "epoch {}/{}: train loss {:.4} acc {:.2}%, test acc {:.2}% ({:.1} s)",
                r.epoch,
                self.epochs,
                r.train_loss,
                100.0 * r.train_accuracy,
                100.0 * r.test_accuracy,
                r.seconds
            );
        }
        ControlFlow::Continue(())
    }
}

fn student(a: StudentArgs) -> Result<ExitCode> {
    let aggregator =
        fool::privacy::pate::from_flags(&a.aggregator, a.threshold, a.sigma1, a.sigma, a.scale)?;
    let manifest = Manifest::open(&a.ensemble)?;
    let training = a
        .training
        .config(manifest.dataset, manifest.template.data_dir.clone(), None)?;
    let job = StudentJob {
        ensemble: a.ensemble.clone(),
        votes: a.votes.clone(),
        aggregator,
        queries: a.queries,
        delta: a.delta,
        seed: a.training.seed,
        test: a.test.clone(),
        training,
        out: a.out.clone(),
        device: fool::device::parse_device(&a.training.device)?,
        samples: a.samples,
    };
    let quiet = a.output.quiet || a.output.json;
    let mut bar = StudentBar {
        pb: indicatif::ProgressBar::hidden(),
        hidden: quiet,
        epochs: 0,
    };
    let (meta, report) = match pate::train_student(&job, &mut bar)? {
        StudentOutcome::Finished { metadata, report } => (metadata, report),
        StudentOutcome::Stopped => return Ok(ExitCode::from(130)),
    };
    if a.output.json {
        let logged = a.mlflow.upload(&a.out, &a.output);
        print_json(&logged.attach(&meta, "metadata")?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let r = &report.record;
    println!(
        "{}: {} of {} queries answered{}; student test accuracy {:.2}%",
        r.kind(),
        r.answered,
        r.queries,
        r.label_accuracy
            .map(|l| format!(" (labels {:.2}% correct)", 100.0 * l))
            .unwrap_or_default(),
        100.0 * meta.test_accuracy.unwrap_or(0.0)
    );
    println!(
        "ε = {:.3} at δ = {:e} (data-independent {:.3}, data-dependent {:.3}{})",
        report.epsilon,
        report.delta,
        r.epsilon_data_independent,
        r.epsilon_data_dependent,
        match r.epsilon_released {
            Some(_) => ", released with smooth-sensitivity noise",
            None => "; no smooth-sensitivity release: ε is the data-independent bound",
        }
    );
    println!(
        "wrote model.pt, metadata.json, members.npy (the teachers' private data), pate.json in {}",
        a.out.display()
    );
    a.mlflow.upload(&a.out, &a.output).print();
    Ok(ExitCode::SUCCESS)
}
