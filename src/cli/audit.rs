//! `fool audit`: membership-inference audits of a trained model, from saved outputs
//! (`--train-logits …`) or by running a model on its data set (`--model … --dataset …`).
use super::{print_json, progress_bar, OutputArgs};
use anyhow::{bail, Result};
use clap::Args;
use fool::audit::{self, AttackKind, AuditOptions, AuditReport, OutputKind, Outputs, SliceSpec};
use fool::datasets::{self, DatasetName, Split};
use fool::lira::{self, LiraObserver, LiraOptions, LiraOutcome};
use fool::Error;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Args, Debug)]
#[command(
    long_about = "Membership-inference audit: how well can an attacker tell the examples a model \
        was trained on (members) from held-out ones (non-members)?\n\n\
        Either give saved model outputs (--train-logits, --train-labels, --test-logits, \
        --test-labels; .npy) or a model and its data set (--model runs/X/model.pt --dataset \
        mnist). Attacks: threshold on the loss, the confidence and the modified entropy, and a \
        logistic regression on the sorted probabilities plus the loss (k-fold cross-validated on \
        a balanced subset, which its metrics are computed on). \
        Reports AUC, attacker advantage (max TPR − FPR), TPR at FPR ≤ 0.1% and ≤ 1% (the \
        largest TPR among the ROC points with FPR at most that), per slice.\n\n\
        LiRA (Carlini et al. 2022, --lira-shadows N): for a target trained with `fool train \
        --half SEED`, trains N shadow models with the target's settings on other random halves \
        of the same pool (the first --limit training examples), in-process and resumable, then \
        scores every pool example by a likelihood ratio of the target's logit-scaled confidence \
        under Gaussians fitted to the shadows that had it IN and OUT (lira-online) or OUT only \
        (lira-offline, one-sided). Members are the target's members.npy, non-members the rest \
        of the pool (not the test split)."
)]
pub struct AuditArgs {
    /// Members' logits (n, C), float32/float64 .npy: outputs on examples the model was trained on
    #[arg(long, value_name = "NPY")]
    train_logits: Option<PathBuf>,
    /// Members' true labels (n,), integer .npy
    #[arg(long, value_name = "NPY")]
    train_labels: Option<PathBuf>,
    /// Non-members' logits (m, C): outputs on held-out examples
    #[arg(long, value_name = "NPY")]
    test_logits: Option<PathBuf>,
    /// Non-members' true labels (m,)
    #[arg(long, value_name = "NPY")]
    test_labels: Option<PathBuf>,
    /// The --train-logits/--test-logits arrays hold probabilities, not logits
    #[arg(long)]
    probabilities: bool,
    /// TorchScript model to audit on a data set, e.g. runs/X/model.pt from `fool train`
    /// (takes (N,3,H,W) pixels in [0,1])
    #[arg(long, value_name = "PATH")]
    model: Option<PathBuf>,
    /// mnist or cifar10 [default: the data set in the metadata.json beside the model]
    #[arg(long)]
    dataset: Option<String>,
    /// Folder with the data set files [default: assets/mnist or assets/cifar10]
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Members: the first N training examples [default: the indices in the members.npy beside
    /// the model, else train_examples from its metadata.json]; non-members: the test split
    #[arg(long, value_name = "N")]
    members: Option<usize>,
    /// Use at most N members and N non-members (a random subset chosen with --seed) [default: all]
    #[arg(long, value_name = "N")]
    max_examples: Option<usize>,
    /// Images per forward pass
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..))]
    batch: u64,
    /// auto, cpu, cuda or cuda:N
    #[arg(long, default_value = "auto")]
    device: String,
    /// Comma-separated: threshold-loss, threshold-confidence, threshold-entropy,
    /// logistic-regression (lr), threshold (the three), all
    #[arg(long, default_value = "all")]
    attacks: String,
    /// Comma-separated slicings besides `all` (always run): class (one slice per true
    /// class), correctness (correctly / incorrectly classified)
    #[arg(long, default_value = "all")]
    slices: String,
    /// Cross-validation folds of the logistic-regression attack
    #[arg(long, default_value_t = 5)]
    folds: usize,
    /// Seed for --max-examples subsets and the logistic-regression attack's balancing and folds
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Also write audit.json, audit.csv and roc.png/roc.svg into this folder
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// LiRA: train N shadow models like the --model target (which must come from `fool train
    /// --half SEED`) and run lira-offline and lira-online on its pool
    #[arg(long, value_name = "N")]
    lira_shadows: Option<usize>,
    /// Folder of the shadow models, reused and resumed across runs [default: lira-shadows
    /// beside the model]
    #[arg(long, value_name = "DIR")]
    shadow_dir: Option<PathBuf>,
    /// Epochs of each shadow model [default: the target's]
    #[arg(long, value_name = "E")]
    lira_epochs: Option<usize>,
    /// σ of LiRA's Gaussian fits: global (one for all examples, the paper's fixed variance),
    /// per-example, or auto (global below 64 shadows)
    #[arg(long, default_value = "auto")]
    lira_variance: String,
    /// LiRA also queries the horizontally flipped images (scores averaged over both)
    #[arg(long)]
    lira_flip: bool,
    #[command(flatten)]
    output: OutputArgs,
}

/// `train_examples` and `dataset` from the metadata.json beside a model, if there is one.
fn metadata_beside(model: &Path) -> Result<Option<(Option<usize>, Option<String>)>> {
    let p = model
        .parent()
        .unwrap_or(Path::new("."))
        .join("metadata.json");
    if !p.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&p).map_err(|e| Error::io(&p, e))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::bad_file(&p, format!("not valid JSON: {e}")))?;
    Ok(Some((
        v.get("train_examples")
            .and_then(|n| n.as_u64())
            .map(|n| n as usize),
        v.get("dataset").and_then(|d| d.as_str()).map(String::from),
    )))
}

/// Members and non-members from a model run on its data set, and a description.
fn from_model(a: &AuditArgs, model: &Path, hidden: bool) -> Result<(Outputs, Outputs, String)> {
    let meta = metadata_beside(model)?;
    let meta_dataset = meta.as_ref().and_then(|m| m.1.clone());
    let dataset: DatasetName = match (&a.dataset, &meta_dataset) {
        (Some(d), Some(m)) => {
            let d: DatasetName = d.parse()?;
            let m: DatasetName = m.parse()?;
            if d != m {
                bail!(
                    "--dataset: {d}, but the metadata.json beside {} says the model was trained on {m}",
                    model.display()
                );
            }
            d
        }
        (Some(d), None) => d.parse()?,
        (None, Some(m)) => m.parse()?,
        (None, None) => bail!(
            "--dataset: required with --model (mnist or cifar10; there is no metadata.json beside {})",
            model.display()
        ),
    };
    if a.max_examples == Some(0) {
        bail!("--max-examples: must be at least 1");
    }
    let members_npy = model.parent().unwrap_or(Path::new(".")).join("members.npy");
    // Members: --members N (the first N), else the indices `fool train` lists in
    // members.npy, else the first train_examples of metadata.json.
    let (members, members_what): (Vec<i64>, String) = if let Some(n) = a.members {
        (
            (0..n as i64).collect(),
            format!("the first {n} training examples"),
        )
    } else if members_npy.is_file() {
        let idx = audit::read_labels_npy(&members_npy)?;
        let what = format!(
            "the {} training examples listed in {}",
            idx.len(),
            members_npy.display()
        );
        (idx, what)
    } else if let Some(n) = meta.as_ref().and_then(|m| m.0) {
        (
            (0..n as i64).collect(),
            format!("the first {n} training examples (metadata.json)"),
        )
    } else {
        bail!(
            "--members: no metadata.json with train_examples (nor members.npy) beside {}; pass --members N (the model was trained on the first N training examples)",
            model.display()
        );
    };
    if members.is_empty() {
        bail!("--members: 0 members; need at least one training example");
    }
    let device = fool::device::parse_device(&a.device)?;
    let dir = a.data.clone().unwrap_or_else(|| dataset.default_dir());
    let train = datasets::load(dataset, &dir, Split::Train)?;
    let test = datasets::load(dataset, &dir, Split::Test)?;
    if let Some(&i) = members
        .iter()
        .find(|&&i| i < 0 || i as usize >= train.len())
    {
        let msg = format!(
            "member index {i} is outside the {dataset} training split, which has {} examples",
            train.len()
        );
        if a.members.is_some() {
            bail!("--members: {msg}");
        }
        return Err(Error::bad_file(&members_npy, msg).into());
    }
    let members: Vec<usize> = members.into_iter().map(|i| i as usize).collect();
    if !model.is_file() {
        return Err(
            Error::bad_file(model, "no such model file (expected a TorchScript .pt)").into(),
        );
    }
    let module = fool::model::load_torchscript(model, device)?;
    let max = a.max_examples.unwrap_or(usize::MAX);
    let idx_m: Vec<usize> = fool::rng::subsample(members.len(), max, a.seed)
        .into_iter()
        .map(|i| members[i])
        .collect();
    let idx_n = fool::rng::subsample(test.len(), max, a.seed);
    let pb = progress_bar((idx_m.len() + idx_n.len()) as u64, hidden);
    pb.set_message("running the model");
    let mut tick = |k: usize| pb.inc(k as u64);
    let batch = a.batch as usize;
    let m = audit::model_outputs(&module, model, &train, &idx_m, batch, device, &mut tick)?;
    let n = audit::model_outputs(&module, model, &test, &idx_n, batch, device, &mut tick)?;
    pb.finish_and_clear();
    let sub = |k: usize, of: usize| {
        if k < of {
            format!(" ({k} of them, seed {})", a.seed)
        } else {
            String::new()
        }
    };
    let what = format!(
        "{} on {dataset}: members = {members_what}{}, non-members = the {} test examples{}",
        model.display(),
        sub(idx_m.len(), members.len()),
        test.len(),
        sub(idx_n.len(), test.len())
    );
    Ok((m, n, what))
}

/// Members and non-members from .npy arrays.
fn from_arrays(a: &AuditArgs) -> Result<(Outputs, Outputs, String)> {
    let need = |v: &Option<PathBuf>, flag: &str| -> Result<PathBuf> {
        v.clone().ok_or_else(|| {
            anyhow::anyhow!(
                "{flag}: missing: give --train-logits, --train-labels, --test-logits and --test-labels (or --model and --dataset)"
            )
        })
    };
    let tl = need(&a.train_logits, "--train-logits")?;
    let ty = need(&a.train_labels, "--train-labels")?;
    let sl = need(&a.test_logits, "--test-logits")?;
    let sy = need(&a.test_labels, "--test-labels")?;
    if a.max_examples == Some(0) {
        bail!("--max-examples: must be at least 1");
    }
    let kind = if a.probabilities {
        OutputKind::Probabilities
    } else {
        OutputKind::Logits
    };
    let mut m = audit::read_outputs_npy(&tl, &ty, kind)?;
    let mut n = audit::read_outputs_npy(&sl, &sy, kind)?;
    if m.classes != n.classes {
        bail!(
            "{}: {} classes, but {} has {}; train and test outputs must come from the same model",
            sl.display(),
            n.classes,
            tl.display(),
            m.classes
        );
    }
    let what = format!(
        "members = {} ({} rows), non-members = {} ({} rows)",
        tl.display(),
        m.n,
        sl.display(),
        n.n
    );
    if let Some(max) = a.max_examples {
        m = m.select(&fool::rng::subsample(m.n, max, a.seed));
        n = n.select(&fool::rng::subsample(n.n, max, a.seed));
    }
    Ok((m, n, what))
}

/// The shadow-training bar (one tick per shadow epoch), then the scoring bar; and the test
/// hook `FOOL_LIRA_STOP_AFTER=K` (stop once K shadows are finished, as if interrupted) or
/// `K:E` (stop after epoch E of the shadow after those K).
struct LiraBar {
    pb: indicatif::ProgressBar,
    hidden: bool,
    shadows: usize,
    finished: usize,
    stop: Option<(usize, Option<usize>)>,
}

impl LiraBar {
    fn new(shadows: usize, hidden: bool) -> LiraBar {
        let stop = std::env::var("FOOL_LIRA_STOP_AFTER").ok().and_then(|v| {
            let mut it = v.split(':');
            let k = it.next()?.trim().parse().ok()?;
            let e = match it.next() {
                Some(e) => Some(e.trim().parse().ok()?),
                None => None,
            };
            Some((k, e))
        });
        LiraBar {
            pb: indicatif::ProgressBar::hidden(),
            hidden,
            shadows,
            finished: 0,
            stop,
        }
    }
}

impl LiraObserver for LiraBar {
    fn training(&mut self, total: usize, done: usize) {
        if done < total && !self.hidden {
            eprintln!(
                "fool: training {} shadow models ({} of {total} epochs already done)",
                self.shadows, done
            );
        }
        self.pb = progress_bar(total as u64, self.hidden);
        self.pb.set_position(done as u64);
        self.pb.set_message("shadow models");
    }
    fn shadow_start(&mut self, shadow: usize, epoch: usize, epochs: usize) {
        self.pb.set_message(format!(
            "shadow {}/{}, epoch {}/{epochs}",
            shadow + 1,
            self.shadows,
            epoch.min(epochs)
        ));
    }
    fn step(&mut self) {
        self.pb.tick();
    }
    fn epoch_end(&mut self, shadow: usize, epoch: usize) -> bool {
        self.pb.inc(1);
        if self.stop == Some((self.finished, Some(epoch))) {
            self.pb.finish_and_clear();
            eprintln!(
                "fool: stopping after epoch {epoch} of shadow {shadow} (FOOL_LIRA_STOP_AFTER)"
            );
            return false;
        }
        true
    }
    fn shadow_end(&mut self, _shadow: usize, trained: bool) -> bool {
        self.finished += 1;
        if trained && self.stop == Some((self.finished, None)) {
            self.pb.finish_and_clear();
            eprintln!(
                "fool: stopping after {} finished shadow models (FOOL_LIRA_STOP_AFTER)",
                self.finished
            );
            return false;
        }
        true
    }
    fn scoring(&mut self, models: usize) {
        self.pb.finish_and_clear();
        self.pb = progress_bar(models as u64, self.hidden);
        self.pb.set_message("running the models on the pool");
    }
    fn scored(&mut self) {
        self.pb.inc(1);
    }
}

/// The LiRA part of a run: the target and its options, checked before anything runs.
fn lira_setup(a: &AuditArgs, opts: &AuditOptions) -> Result<Option<(lira::Target, LiraOptions)>> {
    let explicit = a
        .attacks
        .split(',')
        .any(|p| p.trim().to_ascii_lowercase().starts_with("lira"));
    let Some(n) = a.lira_shadows else {
        if explicit {
            bail!(
                "--lira-shadows: required by --attacks {} (LiRA trains shadow models: give how many, e.g. --lira-shadows 16)",
                a.attacks
            );
        }
        if a.shadow_dir.is_some()
            || a.lira_epochs.is_some()
            || a.lira_flip
            || a.lira_variance != "auto"
        {
            bail!("--shadow-dir/--lira-epochs/--lira-variance/--lira-flip: only meaningful with --lira-shadows");
        }
        return Ok(None);
    };
    let Some(model) = &a.model else {
        bail!("--lira-shadows: needs --model (a target trained with `fool train --half SEED`)");
    };
    if a.members.is_some() {
        bail!(
            "--members: not used with --lira-shadows (LiRA's members are the target's members.npy)"
        );
    }
    let attacks: Vec<AttackKind> = opts
        .attacks
        .iter()
        .copied()
        .filter(|k| k.is_lira())
        .collect();
    if attacks.is_empty() {
        bail!(
            "--lira-shadows: --attacks {} has no LiRA attack (lira-offline, lira-online, lira)",
            a.attacks
        );
    }
    let variance: lira::Variance = a.lira_variance.parse()?;
    let target = lira::Target::load(model)?;
    if let Some(d) = &a.dataset {
        let d: DatasetName = d.parse()?;
        if d != target.config.dataset {
            bail!(
                "--dataset: {d}, but the metadata.json beside {} says the model was trained on {}",
                model.display(),
                target.config.dataset
            );
        }
    }
    let device = fool::device::parse_device(&a.device)?;
    let lo = LiraOptions {
        shadow_dir: a.shadow_dir.clone(),
        epochs: a.lira_epochs,
        variance,
        flip: a.lira_flip,
        attacks,
        slices: opts.slices,
        data_dir: a.data.clone(),
        max_examples: a.max_examples,
        seed: a.seed,
        batch: a.batch as usize,
        ..LiraOptions::new(n, device)
    };
    Ok(Some((target, lo)))
}

pub fn run(a: AuditArgs) -> Result<ExitCode> {
    let mut opts = AuditOptions {
        attacks: audit::parse_attacks(&a.attacks)?,
        slices: a.slices.parse::<SliceSpec>()?,
        folds: a.folds,
        seed: a.seed,
        ..AuditOptions::default()
    };
    if a.folds < 2 {
        bail!("--folds: {}: need at least 2", a.folds);
    }
    let arrays = [
        &a.train_logits,
        &a.train_labels,
        &a.test_logits,
        &a.test_labels,
    ]
    .iter()
    .any(|p| p.is_some());
    let hidden = a.output.quiet || a.output.json;
    if a.model.is_some() && arrays {
        bail!(
            "--model: give either --model (with --dataset) or the four --train-/--test- arrays, not both"
        );
    }
    let lira_run = lira_setup(&a, &opts)?;
    if lira_run.is_none() {
        opts.attacks.retain(|k| !k.is_lira());
    }
    let classic = opts.attacks.iter().any(|k| !k.is_lira());
    let mut whats = Vec::new();
    let mut report = AuditReport {
        results: Vec::new(),
        skipped: Vec::new(),
    };
    let t0 = std::time::Instant::now();
    if classic {
        let (members, nonmembers, what) = match &a.model {
            Some(model) => from_model(&a, model, hidden)?,
            None => {
                if a.dataset.is_some() || a.members.is_some() {
                    bail!("--dataset/--members: only meaningful with --model");
                }
                from_arrays(&a)?
            }
        };
        whats.push(what);
        if let Some(dir) = &a.out {
            fool::files::ensure_writable_dir(dir, "out")?;
        }
        report = audit::audit(&members, &nonmembers, &opts)?;
    } else if let Some(dir) = &a.out {
        fool::files::ensure_writable_dir(dir, "out")?;
    }
    if let Some((target, lo)) = &lira_run {
        let mut bar = LiraBar::new(lo.shadows, hidden);
        let r = match lira::run(target, lo, &mut bar)? {
            LiraOutcome::Stopped => return Ok(ExitCode::from(130)),
            LiraOutcome::Done(r) => r,
        };
        bar.pb.finish_and_clear();
        whats.push(format!(
            "LiRA on {}: {} shadow models in {} ({} σ); pool = the first {} {} training examples, members = {} of them (members.npy), non-members = {} others",
            target.model.display(),
            lo.shadows,
            r.shadow_dir.display(),
            if r.global_variance { "global" } else { "per-example" },
            r.pool,
            target.config.dataset,
            r.members,
            r.nonmembers
        ));
        report.results.extend(r.report.results);
        report.skipped.extend(r.report.skipped);
    }
    if let Some(dir) = &a.out {
        audit::write_outputs(dir, &report.results)?;
    }
    if a.output.json {
        print_json(&report.results)?;
    } else {
        for what in &whats {
            println!("membership inference audit of {what}");
        }
        print!("{}", audit::format_report(&report));
        if let Some(dir) = &a.out {
            println!(
                "wrote {} (audit.json, audit.csv, roc.png, roc.svg)",
                dir.display()
            );
        }
    }
    if !a.output.quiet && !a.output.json {
        eprintln!("fool: attacks took {:.1} s", t0.elapsed().as_secs_f64());
    }
    Ok(ExitCode::SUCCESS)
}
