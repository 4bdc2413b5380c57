//! `fool predict IMAGE`: top-k classes, optionally through a defense.
use super::{print_json, ModelArgs, OutputArgs};
use anyhow::Result;
use clap::Args;
use fool::attacks::record::format_top;
use fool::defenses;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct PredictArgs {
    /// Image file (PNG, JPEG, BMP, GIF, TIFF, WebP, PNM)
    image: PathBuf,
    /// How many classes to show
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    top: u32,
    /// Classify through a defense first: jpeg:Q (re-encode as JPEG quality Q in memory), bits:N,
    /// median:K, blur:SIGMA, noise:SIGMA, resize-pad[:R]; compose with + (jpeg:75+median:3)
    #[arg(long, default_value = "none")]
    defense: String,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    out: OutputArgs,
}

pub fn run(a: PredictArgs) -> Result<ExitCode> {
    let defense = defenses::parse(&a.defense)?;
    let loaded = a.model.load(a.out.quiet)?;
    let record = defenses::predict_image(loaded.model_ref(), &a.image, &defense, a.top as usize)?;
    if a.out.json {
        print_json(&record)?;
    } else {
        println!("{}", record.image);
        if let Some(plain) = &record.undefended_top {
            println!("without defense:\n{}", format_top(plain));
            println!("with {}:\n{}", record.defense, format_top(&record.top));
        } else {
            println!("{}", format_top(&record.top));
        }
    }
    Ok(ExitCode::SUCCESS)
}
