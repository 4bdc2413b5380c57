//! `fool predict IMAGE`: top-k classes, optionally through a defense.
use super::{print_json, ModelArgs, OutputArgs};
use anyhow::Result;
use clap::Args;
use fool::attacks::record::format_top;
use fool::defenses::{self, Defense};
use fool::imageio::load_rgb;
use fool::model::{ClassProb, Classifier};
use serde::Serialize;
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

#[derive(Serialize)]
struct PredictRecord {
    image: String,
    model: String,
    device: String,
    defense: String,
    /// Top-k through the defense (the plain prediction when `defense` is `none`).
    top: Vec<ClassProb>,
    /// Top-k without the defense, when a defense is given.
    #[serde(skip_serializing_if = "Option::is_none")]
    undefended_top: Option<Vec<ClassProb>>,
}

pub fn run(a: PredictArgs) -> Result<ExitCode> {
    let defense = defenses::parse(&a.defense)?;
    let loaded = a.model.load(a.out.quiet)?;
    let img = load_rgb(&a.image)?;
    let m = &loaded.model;
    let x = m.pre.pixels(&img, m.device).unsqueeze(0);
    let k = a.top as usize;
    let plain = Classifier::top_k(&m.probs(&x)?, k, &loaded.labels);
    let has_defense = !defense.0.is_empty();
    let top = if has_defense {
        Classifier::top_k(&m.probs(&defense.apply(&x)?)?, k, &loaded.labels)
    } else {
        plain.clone()
    };
    let record = PredictRecord {
        image: a.image.display().to_string(),
        model: loaded.model_path.display().to_string(),
        device: fool::device::device_name(m.device),
        defense: defense.name(),
        top,
        undefended_top: has_defense.then_some(plain),
    };
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
