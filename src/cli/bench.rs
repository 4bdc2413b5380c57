//! `fool bench DIR ...` and `fool bench merge OUT... --out DIR`.
use super::{print_json, ModelArgs, OutputArgs};
use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use fool::attacks::record::PreprocessInfo;
use fool::attacks::Norm;
use fool::bench::{self, BenchConfig, Row, Runner, Shard, SummaryRow, TargetMode};
use fool::files::ensure_writable_dir;
use fool::model::sha256_file;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    sub: Option<BenchSub>,
    /// Folder of images with labels.csv (file,index) or WordNet-id file names (with --wnids)
    #[arg(required = true)]
    dir: Option<PathBuf>,
    /// Attacks, comma-separated: fgsm, pgd, bim, sgd, mifgsm, cw, apgd, square
    ///
    /// Every attack but square also runs under --norm l2 (fgsm is then FGM, pgd is PGD-L2).
    /// fgsm: one signed-gradient step of size eps. pgd: Madry et al., random start, step
    /// 2.5·eps/steps, 20 steps. bim: pgd without random start. sgd: the tutorial's SGD with
    /// momentum (lr 0.01), 100 steps. mifgsm: momentum iterative FGSM, 10 steps. cw:
    /// Carlini–Wagner L2, 5 × 100 Adam steps (--steps per search), projected into the budget.
    /// apgd: APGD-CE, 100 iterations. square: Square Attack L∞, black box, 1000 queries
    /// (--steps sets the query budget).
    #[arg(long, value_delimiter = ',', default_value = "pgd")]
    attack: Vec<String>,
    /// Budgets in pixel space (0..1 scale), comma-separated: L∞ 0,1/255,2/255,4/255,8/255;
    /// L2 (--norm l2) e.g. 0,0.25,0.5,1,2
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "0,1/255,2/255,4/255,8/255"
    )]
    eps: Vec<String>,
    /// The norm --eps bounds: linf, or l2 (the L2 length of an image's whole change)
    #[arg(long, default_value = "linf")]
    norm: String,
    /// Defenses, comma-separated; each may compose with + (none,jpeg:75,bits:4,median:3)
    #[arg(long, value_delimiter = ',', default_value = "none")]
    defense: Vec<String>,
    /// Also attack each defended model (BPDA for non-differentiable, EOT for random defenses)
    #[arg(long)]
    adaptive: bool,
    /// EOT draws per gradient for random defenses (adaptive mode)
    #[arg(long, default_value_t = 10)]
    eot: usize,
    /// untargeted, random, least-likely, or a class (index or name)
    #[arg(long, default_value = "untargeted")]
    targets: String,
    /// Attack iterations (default: each attack's own)
    #[arg(long)]
    steps: Option<usize>,
    /// Run every iteration even after an image is fooled (throughput benchmarks)
    #[arg(long)]
    no_early_stop: bool,
    /// Images per batch
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Use at most N images
    #[arg(long)]
    limit: Option<usize>,
    /// Shuffle the images (with --seed) before --limit
    #[arg(long)]
    shuffle: bool,
    /// Run seed: every unit of work is seeded from it and its own key
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Run only the slice I of N (0-based), e.g. 0/4; default from SLURM_ARRAY_TASK_ID/COUNT or JOB_COMPLETION_INDEX + FOOL_SHARD_COUNT
    #[arg(long)]
    shard: Option<String>,
    /// Synset list for WordNet-id file names (one `nXXXXXXXX ...` per line, class order)
    #[arg(long)]
    wnids: Option<PathBuf>,
    /// Output directory (resumes if it holds an interrupted run with the same settings)
    #[arg(long, default_value = "outputs/bench")]
    out: PathBuf,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Subcommand, Debug)]
enum BenchSub {
    /// Combine shard outputs into one results.jsonl, summary and chart
    Merge(MergeArgs),
}

#[derive(Args, Debug)]
pub struct MergeArgs {
    /// Output directories of the shards
    #[arg(required = true)]
    dirs: Vec<PathBuf>,
    /// Where to write the merged results
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    output: OutputArgs,
}

fn parse_eps_list(list: &[String], norm: Norm) -> Result<Vec<f64>> {
    let mut out = Vec::new();
    for s in list {
        let v = if s.trim() == "0" {
            0.0
        } else if norm == Norm::L2 {
            parse_l2_eps(s).map_err(|e| anyhow::anyhow!("--eps: {e}"))?
        } else {
            super::attack::parse_eps(s).map_err(|e| anyhow::anyhow!("--eps: {e}"))?
        };
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out.sort_by(f64::total_cmp);
    Ok(out)
}

/// An L2 radius in pixel space: a positive number (or fraction) of at least one 8-bit step.
fn parse_l2_eps(s: &str) -> Result<f64, String> {
    let v = match s.split_once('/') {
        Some((a, b)) => match (a.trim().parse::<f64>(), b.trim().parse::<f64>()) {
            (Ok(a), Ok(b)) if b != 0.0 => a / b,
            _ => return Err(format!("'{s}': not a number or fraction")),
        },
        None => s
            .trim()
            .parse()
            .map_err(|_| format!("'{s}': not a number"))?,
    };
    if !(v.is_finite() && v > 0.0) {
        return Err(format!("'{s}': an L2 radius must be a positive number"));
    }
    if v * 255.0 + 1e-6 < 1.0 {
        return Err(format!(
            "'{s}' = {v}: smaller than one 8-bit step (1/255), no 8-bit change fits; use 0 for the clean baseline"
        ));
    }
    Ok(v)
}

pub fn run(a: BenchArgs) -> Result<ExitCode> {
    if let Some(BenchSub::Merge(m)) = a.sub {
        return merge(m);
    }
    let Some(dir) = a.dir.clone() else {
        bail!("no image folder given; usage: fool bench DIR --attack pgd --eps ... (see fool bench --help)");
    };
    if a.batch == 0 {
        bail!("--batch: must be at least 1");
    }
    let norm = Norm::parse(&a.norm)?;
    let eps = parse_eps_list(&a.eps, norm)?;
    for name in &a.attack {
        let attack = fool::attacks::registry::build(name, a.steps, !a.no_early_stop)?;
        if !attack.supports(norm) {
            bail!(
                "--attack {name}: not available under --norm {}; it implements L∞ only",
                norm.name()
            );
        }
    }
    let defense_list: Vec<String> = a.defense.iter().map(|d| d.trim().to_string()).collect();
    let defenses = bench::parse_defenses(&defense_list)?;
    let shard = match &a.shard {
        Some(s) => Shard::parse(s)?,
        None => Shard::from_env(|k| std::env::var(k).ok())?.unwrap_or(Shard::ALL),
    };
    let mut items = fool::datasets::image_folder(&dir, a.wnids.as_deref())?;
    if a.shuffle {
        fool::rng::SplitMix64::legacy(a.seed).shuffle_mod(&mut items);
    }
    if let Some(n) = a.limit {
        items.truncate(n);
    }
    ensure_writable_dir(&a.out, "out")?;
    let loaded = a.model.load(a.output.quiet)?;
    let m = &loaded.model;
    if let Some(bad) = items.iter().find(|i| i.label >= m.num_classes) {
        bail!(
            "{}: label {} is out of range for a {}-class model",
            bad.file,
            bad.label,
            m.num_classes
        );
    }
    let targets = match a.targets.as_str() {
        "untargeted" => TargetMode::Untargeted,
        "random" => TargetMode::Random,
        "least-likely" => TargetMode::LeastLikely,
        t => TargetMode::Fixed(loaded.labels.resolve(t)?),
    };
    let pre = &m.pre;
    let cfg = BenchConfig {
        model: loaded.model_path.display().to_string(),
        model_sha256: sha256_file(&loaded.model_path)?,
        dataset: dir.display().to_string(),
        files: items.iter().map(|i| i.file.clone()).collect(),
        attacks: a.attack.clone(),
        steps: a.steps,
        early_stop: !a.no_early_stop,
        eps,
        norm,
        defenses: defense_list,
        adaptive: a.adaptive,
        eot: a.eot,
        targets,
        batch: a.batch,
        seed: a.seed,
        preprocess: PreprocessInfo {
            size: pre.size,
            resize: pre.resize,
            resize_always: pre.resize_always,
            mean: pre.mean,
            std: pre.std,
        },
    };
    bench::check_or_save_config(&a.out, &cfg)?;
    let results = bench::results_path(&a.out);
    let mut rows = bench::load_results(&results)?;
    let mut skipped = bench::load_skipped(&a.out)?;
    let todo = bench::pending(&cfg, shard, &rows, &skipped);
    let quiet = a.output.quiet || a.output.json;
    if !quiet {
        let total = bench::units(&cfg)
            .into_iter()
            .filter(|u| shard.owns(u.batch))
            .count();
        eprintln!(
            "fool bench: {} images, {} units of work in shard {}/{} ({} done, {} to run) → {}",
            items.len(),
            total,
            shard.index,
            shard.count,
            total - todo.len(),
            todo.len(),
            a.out.display()
        );
    }
    let make =
        |name: &str, early_stop: bool| fool::attacks::registry::build(name, a.steps, early_stop);
    let runner = Runner {
        cfg: &cfg,
        model: m,
        defenses,
        make_attack: &make,
    };
    let mp = indicatif::MultiProgress::new();
    let overall = mp.add(super::progress_bar(todo.len() as u64, quiet));
    overall.set_style(
        indicatif::ProgressStyle::with_template(
            "overall  [{elapsed_precise}<{eta_precise}] {bar:30} {pos}/{len} units {msg}",
        )
        .expect("template"),
    );
    let step_bar = mp.add(super::progress_bar(0, quiet));
    let by_file: std::collections::HashMap<&str, &fool::datasets::Item> =
        items.iter().map(|i| (i.file.as_str(), i)).collect();
    let mut current: Option<(usize, bench::LoadedBatch)> = None;
    // Testing hook: stop after N units as an interruption would (exit code 130).
    let stop_after: Option<usize> = std::env::var("FOOL_BENCH_STOP_AFTER")
        .ok()
        .and_then(|v| v.parse().ok());
    for (done, unit) in todo.iter().enumerate() {
        if stop_after == Some(done) {
            overall.finish_and_clear();
            eprintln!("fool: interrupted after {done} units; run the same command again to resume");
            return Ok(ExitCode::from(130));
        }
        if current.as_ref().map(|(b, _)| *b) != Some(unit.batch) {
            let lo = unit.batch * cfg.batch;
            let hi = (lo + cfg.batch).min(cfg.files.len());
            let batch_items: Vec<fool::datasets::Item> = cfg.files[lo..hi]
                .iter()
                .filter(|f| !skipped.contains(*f))
                .map(|f| (*by_file[f.as_str()]).clone())
                .collect();
            let lb = bench::load_batch(m, &batch_items);
            for (it, e) in &lb.failed {
                if !a.output.quiet {
                    overall.suspend(|| eprintln!("fool: warning: skipping {}: {e}", it.file));
                }
                bench::record_skipped(&a.out, &it.file, e)?;
                skipped.insert(it.file.clone());
            }
            current = Some((unit.batch, lb));
        }
        let (_, lb) = current.as_ref().expect("batch loaded");
        overall.set_message(unit.setting());
        step_bar.reset();
        let mut on_step = |s: fool::attacks::StepInfo| {
            step_bar.set_length(s.steps as u64);
            step_bar.set_position(s.step as u64);
            step_bar.set_message(format!(
                "batch {} reached {}/{}",
                unit.batch,
                s.reached,
                lb.items.len()
            ));
        };
        let new_rows = runner.run_unit(unit, lb, &mut on_step)?;
        bench::append_rows(&results, &new_rows)?;
        rows.extend(new_rows);
        overall.inc(1);
    }
    step_bar.finish_and_clear();
    overall.finish_and_clear();
    let summary = bench::write_reports(&a.out, &cfg, &rows)?;
    report(&summary, &a.output, &a.out, skipped.len())
}

fn report(
    summary: &[SummaryRow],
    out: &OutputArgs,
    dir: &std::path::Path,
    skipped: usize,
) -> Result<ExitCode> {
    if out.json {
        print_json(&summary)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<8} {:>8} {:<16} {:<12} {:>5} {:>7} {:>22} {:>7}",
        "attack", "eps", "defense", "mode", "n", "clean", "success [95% CI]", "robust"
    );
    for s in summary {
        println!(
            "{:<8} {:>8} {:<16} {:<12} {:>5} {:>6.1}% {:>6.1}% [{:>5.1}, {:>5.1}] {:>6.1}%",
            s.attack,
            match s.norm {
                Norm::Linf => format!("{:.1}/255", s.eps * 255.0),
                Norm::L2 => format!("{:.3}", s.eps),
            },
            s.defense,
            s.mode,
            s.n,
            s.clean_accuracy * 100.0,
            s.success_rate * 100.0,
            s.ci_low * 100.0,
            s.ci_high * 100.0,
            s.robust_accuracy * 100.0
        );
    }
    println!("success rates are over the images each (defended) model classifies correctly when clean (n); clean and robust accuracy over all images");
    if skipped > 0 {
        println!(
            "skipped {skipped} unreadable image(s); see {}",
            dir.join("skipped.txt").display()
        );
    }
    println!(
        "wrote {0}/results.jsonl, {0}/summary.csv, {0}/summary.json, {0}/success_vs_eps.png, {0}/success_vs_eps.svg",
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn merge(m: MergeArgs) -> Result<ExitCode> {
    let mut cfg: Option<BenchConfig> = None;
    let mut rows: Vec<Row> = Vec::new();
    let mut skipped = std::collections::HashSet::new();
    for d in &m.dirs {
        let p = bench::config_path(d);
        let text = std::fs::read_to_string(&p).map_err(|e| fool::Error::io(&p, e))?;
        let c: BenchConfig = serde_json::from_str(&text)
            .map_err(|e| fool::Error::bad_file(&p, format!("not a fool bench config ({e})")))?;
        match &cfg {
            None => cfg = Some(c),
            Some(first) if *first != c => {
                bail!(
                    "{}: settings differ from {} (not shards of one run)",
                    p.display(),
                    m.dirs[0].display()
                )
            }
            _ => {}
        }
        rows.extend(bench::load_results(&bench::results_path(d))?);
        skipped.extend(bench::load_skipped(d)?);
    }
    let cfg = cfg.expect("at least one dir");
    ensure_writable_dir(&m.out, "out")?;
    let rows = bench::merge_rows(rows);
    let missing = bench::pending(&cfg, Shard::ALL, &rows, &skipped).len();
    bench::check_or_save_config(&m.out, &cfg)?;
    bench::write_rows(&bench::results_path(&m.out), &rows)?;
    if !skipped.is_empty() {
        let mut list: Vec<&String> = skipped.iter().collect();
        list.sort();
        let text: String = list.iter().map(|f| format!("{f}\tskipped\n")).collect();
        let p = m.out.join("skipped.txt");
        fool::files::write_atomic(&p, |f| {
            use std::io::Write;
            f.write_all(text.as_bytes())
                .map_err(|e| fool::Error::io(&p, e))
        })?;
    }
    let summary = bench::write_reports(&m.out, &cfg, &rows)?;
    if missing > 0 && !m.output.quiet {
        eprintln!("fool: warning: {missing} unit(s) of work are in no shard's results yet; the summary covers what is there");
    }
    report(&summary, &m.output, &m.out, skipped.len())
}
