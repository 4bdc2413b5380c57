//! `fool synth`: a differentially private synthetic data set by Private Evolution.
use super::{print_json, progress_bar, OutputArgs};
use anyhow::{bail, Result};
use clap::Args;
use fool::datasets::DatasetName;
use fool::synth::http::HttpOptions;
use fool::synth::{ClassCounts, Event, SynthConfig};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct SynthArgs {
    /// The private data: mnist:train, cifar10:train, a slice (mnist:train[0:10000]) or a
    /// labelled image folder (with --dataset)
    #[arg(long)]
    private: String,
    /// mnist or cifar10 [default: the data set of --private]
    #[arg(long)]
    dataset: Option<String>,
    /// Folder with the dataset files [default: assets/mnist or assets/cifar10]
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// The generator: digits (an offline digit renderer: fonts, size, stroke, rotation,
    /// position), digits:SETTINGS.json (its ranges and schedule), or http://HOST:PORT[/PATH] (a
    /// generator speaking fool's JSON protocol, see the README)
    #[arg(long, default_value = "digits")]
    api: String,
    /// The privacy budget ε of the whole run
    #[arg(long, allow_negative_numbers = true)]
    epsilon: f64,
    /// δ, or auto = 1/(n ln n) for n private samples
    #[arg(long, default_value = "auto", allow_negative_numbers = true)]
    delta: String,
    /// Synthetic samples (split over classes as the class counts are)
    #[arg(long, default_value_t = 60_000)]
    samples: usize,
    /// Private Evolution iterations T (noisy histograms)
    #[arg(long, default_value_t = 4)]
    iterations: usize,
    /// Variations whose embeddings are averaged for each synthetic sample's vote (0: its own)
    #[arg(long, default_value_t = 8)]
    lookahead: usize,
    /// Threshold H subtracted from every noisy count (max(h − H, 0))
    #[arg(long, default_value_t = 2.0, allow_negative_numbers = true)]
    threshold: f64,
    /// Nearest synthetic samples each private sample votes for (each vote weighs 1/√k)
    #[arg(long, default_value_t = 1)]
    neighbours: usize,
    /// What samples are compared in: pixels, or network[:PATH] (a public TorchScript feature
    /// extractor; default assets/embedding.pt, the ImageNet MobileNetV2's penultimate
    /// features, exported by set-up)
    #[arg(long, default_value = "pixels")]
    embedding: String,
    /// Input side of the embedding network (images are resized to it)
    #[arg(long, default_value_t = 64)]
    embedding_size: i64,
    /// public (the private class counts are taken as public, as the reference
    /// implementation does) or dp (released with Gaussian noise: one more mechanism)
    #[arg(long, default_value = "public")]
    class_counts: String,
    /// Images per request to an HTTP generator
    #[arg(long, default_value_t = 1000)]
    api_batch: usize,
    /// Seconds to wait for one answer of an HTTP generator
    #[arg(long, default_value_t = 120.0)]
    api_timeout: f64,
    /// Retries of a failed request to an HTTP generator
    #[arg(long, default_value_t = 3)]
    api_retries: u32,
    /// Variation degree per iteration sent to an HTTP generator (comma-separated; the last
    /// repeats) [default: none sent, the generator's own schedule]
    #[arg(long, value_delimiter = ',', allow_negative_numbers = true)]
    variation_degrees: Vec<f64>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Continue the run in --out from its last finished iteration
    #[arg(long)]
    resume: bool,
    /// Output folder: data/ (images, labels.csv), iterations/, synth.json
    #[arg(long)]
    out: PathBuf,
    /// auto, cpu, cuda or cuda:N
    #[arg(long, default_value = "auto")]
    device: String,
    #[command(flatten)]
    output: OutputArgs,
}

fn dataset_of(a: &SynthArgs) -> Result<DatasetName> {
    if let Some(d) = &a.dataset {
        return Ok(d.parse()?);
    }
    if let Some((d, _)) = a.private.split_once(':') {
        if let Ok(d) = d.parse::<DatasetName>() {
            return Ok(d);
        }
    }
    bail!("--dataset: give mnist or cifar10 for a folder of private images")
}

pub fn run(a: SynthArgs) -> Result<ExitCode> {
    let dataset = dataset_of(&a)?;
    let delta = match a.delta.trim() {
        "auto" => None,
        d => Some(
            d.parse::<f64>()
                .map_err(|_| anyhow::anyhow!("--delta: '{d}' is not a number (or auto)"))?,
        ),
    };
    let class_counts = match a.class_counts.as_str() {
        "public" => ClassCounts::Public,
        "dp" => ClassCounts::Dp,
        o => bail!("--class-counts: '{o}' (expected public or dp)"),
    };
    let cfg = SynthConfig {
        private: a.private.clone(),
        dataset,
        data_dir: a.data.clone().unwrap_or_else(|| dataset.default_dir()),
        api: a.api.clone(),
        epsilon: a.epsilon,
        delta,
        samples: a.samples,
        iterations: a.iterations,
        lookahead: a.lookahead,
        threshold: a.threshold,
        neighbours: a.neighbours,
        embedding: fool::synth::embed::Embedding::parse(&a.embedding, a.embedding_size)?,
        class_counts,
        seed: a.seed,
    };
    fool::synth::config::validate(&cfg)?;
    let device = fool::device::parse_device(&a.device)?;
    let http = HttpOptions {
        batch: a.api_batch,
        timeout: a.api_timeout,
        retries: a.api_retries,
        degrees: a.variation_degrees.clone(),
        shape: [dataset.channels(), dataset.side(), dataset.side()],
    };
    let mut api = fool::synth::api::build(&a.api, &http)?;
    let quiet = a.output.quiet || a.output.json;
    let classes = dataset.num_classes() as u64;
    let pb = progress_bar((a.iterations as u64 + 1) * classes, quiet);
    let embedding_name = cfg.embedding.to_string();
    let mut on = |e: Event| match e {
        Event::Started {
            privacy,
            resumed_at,
        } => {
            if !quiet {
                eprintln!(
                    "fool synth: {} private samples; ε = {} at δ = {:.3e} ({}); σ = {:.4} over {} Gaussian mechanisms (μ = {:.4}); class counts {}",
                    privacy.private_samples, privacy.epsilon, privacy.delta, privacy.delta_rule,
                    privacy.noise, privacy.mechanisms, privacy.mu,
                    match privacy.class_counts { ClassCounts::Public => "taken as public (not accounted)", ClassCounts::Dp => "released with noise (accounted)" }
                );
                if resumed_at > 0 {
                    eprintln!("fool synth: resuming after iteration {resumed_at}");
                }
            }
            pb.set_position(if resumed_at > 0 {
                (resumed_at as u64 + 1) * classes
            } else {
                0
            });
        }
        Event::Phase {
            iteration,
            class,
            what,
        } => {
            pb.set_position(iteration as u64 * classes + class as u64);
            pb.set_message(format!("iteration {iteration}, class {class}: {what}"));
        }
        Event::Iteration(r) => {
            pb.set_position((r.iteration as u64 + 1) * classes);
            if !quiet {
                pb.suspend(|| {
                    eprintln!(
                        "iteration {}: ε spent {:.3}, Fréchet distance ({}) {:.2}, {} distinct parents, {:.1} s generation, {:.1} s embedding, {:.1} s vote{}",
                        r.iteration, r.epsilon_spent, embedding_name, r.frechet_distance, r.distinct_parents,
                        r.seconds_generation, r.seconds_embedding, r.seconds_vote,
                        if r.uniform_classes.is_empty() { String::new() } else { format!(" (classes {:?}: every count under the threshold, parents drawn uniformly)", r.uniform_classes) }
                    )
                });
            }
        }
    };
    let summary = fool::synth::run(&cfg, api.as_mut(), &a.out, a.resume, device, &mut on)?;
    pb.finish_and_clear();
    if a.output.json {
        print_json(&serde_json::json!({
            "out": a.out, "data": a.out.join("data"), "summary": summary,
        }))?;
    } else {
        let last = summary.iterations.last();
        println!(
            "synthetic data set: {} ({} images; ε = {:.3}, δ = {:.3e}); Fréchet distance to the private data ({}) {:.2} → {:.2}",
            a.out.join("data").display(),
            summary.samples_per_class.iter().sum::<usize>(),
            last.map_or(0.0, |r| r.epsilon_spent),
            summary.privacy.delta,
            cfg.embedding,
            summary.iterations.first().map_or(0.0, |r| r.frechet_distance),
            last.map_or(0.0, |r| r.frechet_distance),
        );
        println!(
            "train on it: fool train --data {} --out RUN (evaluated on the real {} test split)",
            a.out.join("data").display(),
            dataset
        );
    }
    Ok(ExitCode::SUCCESS)
}
