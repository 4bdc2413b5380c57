//! `fool apply IMAGE --perturbation r.npy`: add a saved perturbation and classify the result.
use super::{print_json, ModelArgs, OutputArgs};
use anyhow::Result;
use clap::Args;
use fool::attacks::image::{apply_perturbation, ApplyPerturbation};
use fool::attacks::record::format_top;
use fool::files::ensure_writable_dir;
use fool::files::refuse_overwrite;
use fool::imageio::load_rgb;
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

pub fn run(a: ApplyArgs) -> Result<ExitCode> {
    let pixels = load_rgb(&a.image)?;
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
    let field = if a.output.is_some() { "output" } else { "out" };
    let dir = output
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    ensure_writable_dir(dir, field)?;
    refuse_overwrite(&output, &[&a.image, &a.perturbation], field)?;
    let loaded = a.model.load(a.out_args.quiet)?;
    let job = ApplyPerturbation {
        image: &a.image,
        pixels: &pixels,
        perturbation: &a.perturbation,
        r: &r,
        output: &output,
        output_field: field,
    };
    let record = apply_perturbation(&job, loaded.model_ref())?;
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
