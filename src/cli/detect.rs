//! `fool detect calibrate DIR` (a feature-squeezing detector calibrated on clean images, written
//! as a detector file) and `fool detect score IMAGE... --detector FILE`.
use super::{print_json, progress_bar, ModelArgs, OutputArgs};
use anyhow::Result;
use clap::{Args, Subcommand};
use fool::detect::{self, DetectorFile, FeatureSqueezing};
use fool::files::{ensure_writable_dir, refuse_overwrite};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct DetectArgs {
    #[command(subcommand)]
    sub: DetectSub,
}

#[derive(Subcommand, Debug)]
enum DetectSub {
    /// Calibrate feature squeezing on clean images: the threshold at a false-positive rate
    Calibrate(CalibrateArgs),
    /// Score images with a calibrated detector: each image's score and whether it is flagged
    Score(ScoreArgs),
}

#[derive(Args, Debug)]
pub struct CalibrateArgs {
    /// Folder of clean images with labels.csv (file,index) or WordNet-id file names (with
    /// --wnids), as `fool bench` reads it
    dir: PathBuf,
    /// Squeezers, comma-separated fool defenses, each may compose with + (bits:N, median:K,
    /// jpeg:Q, blur:SIGMA); random ones (noise, resize-pad) are refused
    #[arg(long, value_delimiter = ',', default_value = "bits:5,median:3,jpeg:75")]
    squeezers: Vec<String>,
    /// Largest fraction of clean images flagged, in [0, 1)
    #[arg(long, default_value_t = 0.05)]
    fpr: f64,
    /// The detector file to write
    #[arg(long, default_value = "outputs/detector.json")]
    out: PathBuf,
    /// Use the first N images (in file-name order)
    #[arg(long)]
    limit: Option<usize>,
    /// Images per batch
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Synset list for WordNet-id file names (one `nXXXXXXXX ...` per line, class order)
    #[arg(long)]
    wnids: Option<PathBuf>,
    /// Also calibrate stateful detection (for `fool serve --stateful`): the threshold on the mean
    /// distance to the K nearest other images, at the same --fpr
    #[arg(long, value_name = "K")]
    stateful_k: Option<usize>,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Args, Debug)]
pub struct ScoreArgs {
    /// Image files to score
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// A detector file written by `fool detect calibrate`
    #[arg(long)]
    detector: PathBuf,
    /// Images per batch
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// (--model defaults to the model the detector was calibrated for, when that file exists)
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    output: OutputArgs,
}

pub fn run(a: DetectArgs) -> Result<ExitCode> {
    match a.sub {
        DetectSub::Calibrate(c) => calibrate(c),
        DetectSub::Score(s) => score(s),
    }
}

/// Progress over the calibration images on stderr, and warnings about unreadable ones.
struct Progress {
    bar: indicatif::ProgressBar,
    silent: bool,
}

impl detect::Observer for Progress {
    fn progress(&mut self, done: usize, total: usize) {
        self.bar.set_length(total as u64);
        self.bar.set_position(done as u64);
    }
    fn skipped(&mut self, file: &str, err: &fool::Error) {
        if !self.silent {
            self.bar
                .suspend(|| eprintln!("fool: warning: skipping {file}: {err}"));
        }
    }
}

fn calibrate(a: CalibrateArgs) -> Result<ExitCode> {
    // Everything cheap is checked before the model is loaded or anything is written.
    detect::check_fpr(a.fpr)?;
    FeatureSqueezing::new(&a.squeezers)?;
    if a.batch == 0 {
        return Err(fool::Error::field("batch", "must be at least 1").into());
    }
    let mut items = fool::datasets::image_folder(&a.dir, a.wnids.as_deref())?;
    if let Some(k) = a.limit {
        if k == 0 {
            return Err(fool::Error::field("limit", "must be at least 1").into());
        }
        items.truncate(k);
    }
    if let Some(k) = a.stateful_k {
        if k == 0 || k >= items.len() {
            return Err(fool::Error::field(
                "stateful_k",
                format!(
                    "must be at least 1 and below the number of calibration images ({})",
                    items.len()
                ),
            )
            .into());
        }
    }
    let loaded = a.model.load(a.output.quiet)?;
    let inputs: Vec<&Path> = std::iter::once(loaded.model_path.as_path())
        .chain(loaded.labels_path.as_deref())
        .collect();
    refuse_overwrite(&a.out, &inputs, "out")?;
    if let Some(dir) = a.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        ensure_writable_dir(dir, "out")?;
    }
    let mut progress = Progress {
        bar: progress_bar(items.len() as u64, a.output.quiet || a.output.json),
        silent: a.output.quiet,
    };
    let file = detect::calibrate(
        &loaded.model,
        &a.dir,
        &items,
        &detect::CalibrationSettings {
            squeezers: &a.squeezers,
            fpr: a.fpr,
            batch: a.batch,
            stateful_k: a.stateful_k,
        },
        &mut progress,
    )?;
    progress.bar.finish_and_clear();
    file.save(&a.out)?;
    if a.output.json {
        #[derive(serde::Serialize)]
        struct Out<'a> {
            out: String,
            #[serde(flatten)]
            file: &'a DetectorFile,
        }
        print_json(&Out {
            out: a.out.display().to_string(),
            file: &file,
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    let flagged = (file.achieved_fpr * file.n as f64).round() as usize;
    println!(
        "feature squeezing [{}] calibrated on {} clean images of {}",
        file.squeezers.join(", "),
        file.n,
        file.images
    );
    println!(
        "threshold   {:.6}  (fpr {} asked, {:.4} achieved: {flagged} of {} clean images flagged)",
        file.threshold, file.fpr, file.achieved_fpr, file.n
    );
    let q = &file.quantiles;
    println!(
        "scores      p50 {:.6}  p90 {:.6}  p95 {:.6}  p99 {:.6}  max {:.6}",
        q.p50, q.p90, q.p95, q.p99, q.max
    );
    let means: Vec<String> = file
        .per_squeezer
        .iter()
        .map(|s| format!("{} {:.6}", s.squeezer, s.mean))
        .collect();
    println!("mean L1     {}", means.join("  "));
    if let Some(st) = &file.stateful {
        println!(
            "stateful    k {}  threshold {:.6} (RMS pixel distance; {:.4} of clean images below it)",
            st.k, st.threshold, st.achieved_fpr
        );
    }
    if !file.skipped.is_empty() {
        println!("skipped {} unreadable image(s)", file.skipped.len());
    }
    println!("wrote {}", a.out.display());
    Ok(ExitCode::SUCCESS)
}

fn score(a: ScoreArgs) -> Result<ExitCode> {
    let file = detect::load(&a.detector)?;
    let detector = file.detector()?;
    let mut margs = a.model.clone();
    if margs.model.is_none() && Path::new(&file.model.path).is_file() {
        margs.model = Some(PathBuf::from(&file.model.path));
    }
    let loaded = margs.load(a.output.quiet)?;
    file.check_model(&a.detector, &loaded.model)?;
    let scores = detect::score_files(&detector, &loaded.model, &a.images, a.batch)?;
    if a.output.json {
        #[derive(serde::Serialize)]
        struct Out<'a> {
            detector: String,
            squeezers: &'a [String],
            threshold: f64,
            images: &'a [detect::ImageScore],
        }
        print_json(&Out {
            detector: a.detector.display().to_string(),
            squeezers: &file.squeezers,
            threshold: file.threshold,
            images: &scores,
        })?;
    } else {
        for s in &scores {
            println!(
                "{}  score {:.6}  {}",
                s.image,
                s.score,
                if s.flagged { "FLAGGED" } else { "clean" }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
