//! `fool report html DIR... --out report.html` and `fool report model --model M --dataset
//! cifar10:test --out DIR`.
use super::{print_json, progress_bar, ModelArgs, OutputArgs};
use anyhow::Result;
use clap::Args;
use fool::report::html;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct HtmlArgs {
    /// Folders to show: fool bench outputs, fool train runs, fool audit --out folders, fool
    /// report model outputs (each recognised by its files)
    #[arg(required = true)]
    dirs: Vec<PathBuf>,
    /// The HTML file to write
    #[arg(long)]
    out: PathBuf,
    /// Title of the page
    #[arg(long, default_value = "fool report")]
    title: String,
    /// Gallery cards per bench run at most (spread over its settings; the images kept by
    /// fool bench --keep-examples)
    #[arg(long, default_value_t = 48)]
    gallery_max: usize,
    /// Misclassified images per model report at most
    #[arg(long, default_value_t = 120)]
    misclassified_max: usize,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Args, Debug)]
pub struct ModelReportArgs {
    /// The data set slice to evaluate on, e.g. cifar10:test or mnist:test[0:1000]
    #[arg(long)]
    dataset: String,
    /// The data set files [default: assets/NAME]
    #[arg(long)]
    data: Option<PathBuf>,
    /// Output folder (model_report.json, classification_report.txt, confusion.csv,
    /// misclassified/, report.html)
    #[arg(long)]
    out: PathBuf,
    /// Misclassified images kept as PNG at most
    #[arg(long, default_value_t = 200)]
    keep: usize,
    /// Images per batch
    #[arg(long, default_value_t = 256)]
    batch: usize,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    output: OutputArgs,
}

pub fn html(a: HtmlArgs) -> Result<ExitCode> {
    let pb = progress_bar(a.dirs.len() as u64, a.output.quiet || a.output.json);
    let opts = html::Options {
        title: a.title.clone(),
        gallery_max: a.gallery_max,
        misclassified_max: a.misclassified_max,
    };
    let built = html::build(&a.dirs, &a.out, &opts, &mut |done, _| {
        pb.set_position(done as u64)
    })?;
    pb.finish_and_clear();
    if a.output.json {
        print_json(&built)?;
        return Ok(ExitCode::SUCCESS);
    }
    if !a.output.quiet {
        for n in &built.notes {
            eprintln!("note: {n}");
        }
    }
    println!(
        "wrote {} ({:.1} MB): {} folders, {} charts, {} gallery images",
        built.out.display(),
        built.bytes as f64 / 1e6,
        built.runs.len(),
        built.charts,
        built.gallery_cards
    );
    Ok(ExitCode::SUCCESS)
}

pub fn model(a: ModelReportArgs) -> Result<ExitCode> {
    let quiet = a.output.quiet || a.output.json;
    let loaded = a.model.load(quiet)?;
    let pb = progress_bar(0, quiet);
    let report = fool::report::model::generate(
        &loaded.model,
        &loaded.model_path,
        &loaded.labels,
        &a.dataset,
        a.data.as_deref(),
        a.batch,
        a.keep,
        &a.out,
        &mut |done, total| {
            pb.set_length(total as u64);
            pb.set_position(done as u64);
        },
    )?;
    pb.finish_and_clear();
    let page = a.out.join("report.html");
    let built = html::build(
        std::slice::from_ref(&a.out),
        &page,
        &html::Options::default(),
        &mut |_, _| {},
    )?;
    if a.output.json {
        print_json(&serde_json::json!({"report": report, "html": built.out}))?;
        return Ok(ExitCode::SUCCESS);
    }
    print!(
        "{}",
        fool::report::classification::text(&report.classification)
    );
    println!(
        "{} misclassified of {}; wrote model_report.json, classification_report.txt, confusion.csv, misclassified/ and {} in {}",
        report.misclassified.len(),
        report.n,
        page.file_name().unwrap().to_string_lossy(),
        a.out.display()
    );
    Ok(ExitCode::SUCCESS)
}
