//! `fool apply IMAGE --perturbation r.npy`: add a saved perturbation and classify the result.
use super::{print_json, refuse_overwrite, ModelArgs, OutputArgs};
use anyhow::Result;
use clap::Args;
use fool::attacks::record::format_top;
use fool::files::ensure_writable_dir;
use fool::imageio::{load_rgb, quantize, save_png, tensor_to_rgb};
use fool::model::{ClassProb, Classifier};
use serde::Serialize;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct ApplyArgs {
    /// Image to perturb
    image: PathBuf,
    /// Perturbation: float32 .npy of shape (1,3,SIZE,SIZE) in the model's normalized input space
    #[arg(long, short, value_name = "NPY")]
    perturbation: PathBuf,
    /// Where to save the perturbed PNG [default: OUT/<image>_applied.png]
    #[arg(long, short = 'o', value_name = "PNG")]
    output: Option<PathBuf>,
    /// Output directory for the default output name
    #[arg(long, default_value = "outputs")]
    out: PathBuf,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    out_args: OutputArgs,
}

#[derive(Serialize)]
struct ApplyRecord {
    image: String,
    perturbation: String,
    output: String,
    original: Vec<ClassProb>,
    perturbed: Vec<ClassProb>,
    /// Distance between the saved image and the preprocessed original, pixel space 0..1.
    linf: f64,
    l2: f64,
}

pub fn run(a: ApplyArgs) -> Result<ExitCode> {
    let img = load_rgb(&a.image)?;
    let r = fool::perturbation::load(&a.perturbation, a.model.preprocess()?.size)?;
    let output = match &a.output {
        Some(p) => p.clone(),
        None => {
            let stem = a
                .image
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("image");
            a.out.join(format!("{stem}_applied.png"))
        }
    };
    let dir = output
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    ensure_writable_dir(dir, if a.output.is_some() { "output" } else { "out" })?;
    refuse_overwrite(&output, &[&a.image, &a.perturbation])?;
    let loaded = a.model.load(a.out_args.quiet)?;
    let m = &loaded.model;
    let x0 = m.pre.pixels(&img, m.device).unsqueeze(0);
    let x = quantize(&(&x0 + m.pre.delta_to_pixels(&r.to_device(m.device))));
    save_png(&tensor_to_rgb(&x), &output)?;
    // Classify the file as saved.
    let saved = m.pre.pixels(&load_rgb(&output)?, m.device).unsqueeze(0);
    let (linf, l2) = fool::attacks::distances(&saved, &x0);
    let record = ApplyRecord {
        image: a.image.display().to_string(),
        perturbation: a.perturbation.display().to_string(),
        output: output.display().to_string(),
        original: Classifier::top_k(&m.probs(&x0)?, 5, &loaded.labels),
        perturbed: Classifier::top_k(&m.probs(&saved)?, 5, &loaded.labels),
        linf: linf[0],
        l2: l2[0],
    };
    if a.out_args.json {
        print_json(&record)?;
    } else {
        println!(
            "original:  {} ({:.2}%)",
            record.original[0].label,
            record.original[0].prob * 100.0
        );
        println!(
            "perturbed: {} ({:.2}%)",
            record.perturbed[0].label,
            record.perturbed[0].prob * 100.0
        );
        println!(
            "L∞ {:.4} ({:.0}/255), L2 {:.3}; wrote {}",
            record.linf,
            record.linf * 255.0,
            record.l2,
            record.output
        );
        println!("top-5 perturbed:\n{}", format_top(&record.perturbed));
    }
    Ok(ExitCode::SUCCESS)
}
