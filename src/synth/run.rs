//! The Private Evolution loop (Lin et al. 2024, Algorithm 1, per class as the reference
//! implementation runs it), resumable after every iteration.
//!
//! Iteration 0: the initial population is RANDOM_API samples of each class. Iteration t = 1…T,
//! per class: embed each synthetic sample (averaged over `lookahead` variations of it at
//! degree t; its own embedding with lookahead 0), let every private sample of the class vote
//! for its nearest synthetic samples ([`super::vote`]), add N(0, σ²) to every bin, threshold
//! (max(h − H, 0)), draw the class's next parents in proportion (with replacement), and make
//! the next population by VARIATION_API of the parents at degree t. The output is the
//! population of iteration T.
//!
//! Privacy: the T noisy histograms (each iteration's classes together have L2 sensitivity 1)
//! are T adaptive Gaussian mechanisms, √T/σ-GDP ([`crate::privacy::accountant::gdp`]); σ is
//! calibrated so that the whole run spends the target ε at δ. The number of samples per
//! class follows the private class counts, taken as public by default (the reference
//! implementation does the same; the output says so) or released by one more Gaussian
//! mechanism with the same σ (`ClassCounts::Dp`, then T + 1 mechanisms).
//!
//! Every random choice comes from the run's seed, the iteration, the class and its purpose,
//! so an iteration re-run after a crash draws exactly the same noise: resuming never releases
//! a second, different histogram, and the privacy spent is that of the iterations finished.
use super::api::{Api, Population};
use super::config::{
    allocate, validate, ClassCounts, Event, IterationRecord, Privacy, Summary, SynthConfig,
};
use super::{fid, store, vote};
use crate::datasets::pool;
use crate::privacy::accountant::gdp;
use crate::rng::{fnv1a_parts, SplitMix64};
use crate::{Error, Result};
use serde_json::json;
use std::path::Path;
use std::time::Instant;
use tch::{Device, Tensor};

fn seed(cfg: &SynthConfig, parts: &[&str]) -> u64 {
    let mut all = vec![cfg.seed.to_string()];
    all.extend(parts.iter().map(|s| s.to_string()));
    fnv1a_parts(&all.iter().map(String::as_str).collect::<Vec<_>>())
}

/// Run (or resume) Private Evolution into `out`.
pub fn run(
    cfg: &SynthConfig,
    api: &mut dyn Api,
    out: &Path,
    resume: bool,
    device: Device,
    on: &mut dyn FnMut(Event),
) -> Result<Summary> {
    validate(cfg)?;
    store::recover(out)?;
    if !resume && store::data_dir(out).join("progress.json").exists() {
        return Err(Error::field(
            "out",
            format!(
                "{} already holds a synth run; continue it with --resume or choose another --out",
                out.display()
            ),
        ));
    }
    refuse_inside(out, &cfg.private)?;
    let ds = cfg.dataset;
    let classes = ds.num_classes();
    let private = pool::load(&cfg.private, ds, &cfg.data_dir).map_err(|e| match e {
        Error::Invalid { msg, .. } => Error::field("private", msg),
        e => e,
    })?;
    let labels = private.labels.clone().ok_or_else(|| {
        Error::field(
            "private",
            format!("'{}' has no labels (a labels.csv)", cfg.private),
        )
    })?;
    let n = labels.len();
    if n < 2 {
        return Err(Error::field("private", "needs at least 2 samples"));
    }
    let (delta, delta_rule) = match cfg.delta {
        Some(d) => (d, "given".to_string()),
        None => (
            1.0 / (n as f64 * (n as f64).ln()),
            format!("auto: 1/(n ln n), n = {n}"),
        ),
    };
    let mechanisms = cfg.iterations + usize::from(cfg.class_counts == ClassCounts::Dp);
    let noise = gdp::noise_for_epsilon(cfg.epsilon, mechanisms as u64, delta)?;
    let privacy = Privacy {
        epsilon: cfg.epsilon,
        delta,
        delta_rule,
        noise,
        mechanisms,
        mu: gdp::mu(noise, mechanisms as u64)?,
        private_samples: n,
        class_counts: cfg.class_counts,
    };
    let spent = |t: usize| -> Result<f64> {
        let m = t + usize::from(cfg.class_counts == ClassCounts::Dp);
        if m == 0 {
            return Ok(0.0);
        }
        gdp::epsilon_of(noise, m as u64, delta)
    };

    // Class counts, and the samples per class.
    let mut counts = vec![0f64; classes];
    for &l in &labels {
        counts[l] += 1.0;
    }
    if cfg.class_counts == ClassCounts::Dp {
        let mut rng = SplitMix64::new(seed(cfg, &["class-counts"]));
        vote::add_noise(&mut counts, noise, &mut rng);
    }
    let per_class = allocate(cfg.samples, &counts);

    // Private embeddings by class, and their statistics for the Fréchet distance.
    cfg.embedding.check_public(ds)?;
    let embedder = cfg.embedding.load(device)?;
    let private_emb =
        super::embed::private_embedding(cfg, &embedder, &private.data.images, out, device)?;
    let rows_of = |c: usize| -> Tensor {
        let r: Vec<i64> = (0..n)
            .filter(|&i| labels[i] == c)
            .map(|i| i as i64)
            .collect();
        Tensor::from_slice(&r).to_device(device)
    };
    let private_by_class: Vec<Tensor> = (0..classes)
        .map(|c| private_emb.index_select(0, &rows_of(c)))
        .collect();
    let private_stats = fid::Stats::of(&private_emb);
    drop(private_emb);
    let fd_of = |pops: &[Population]| -> Result<f64> {
        let all = Population::concat(pops);
        Ok(fid::frechet(
            &private_stats,
            &fid::Stats::of(&embedder.embed(&all.images, device)?),
        ))
    };

    let shape = [ds.channels(), ds.side(), ds.side()];
    let private_rows = match &private.items {
        pool::PoolItems::Rows { split, start, end } if split == "train" => Some([*start, *end]),
        _ => None,
    };
    let api_desc = api.describe();
    let summary_of = |records: &[IterationRecord]| Summary {
        config: cfg.clone(),
        privacy: privacy.clone(),
        api: api_desc.clone(),
        samples_per_class: per_class.clone(),
        iterations: records.to_vec(),
    };
    let dataset_json = |t: usize, eps: f64| {
        json!({"dataset": ds, "classes": private.data.classes, "source": "fool synth (Private Evolution)",
               "iteration": t, "of_iterations": cfg.iterations, "epsilon": eps, "delta": delta,
               "class_counts": cfg.class_counts, "fool_version": env!("CARGO_PKG_VERSION"),
               "private": cfg.private, "private_rows": private_rows})
    };

    // Resume from the last finished iteration (--resume was checked above).
    let mut records: Vec<IterationRecord> = vec![];
    let mut pops: Vec<Population> = vec![];
    if let Some(saved) = store::load(out, ds, &cfg.data_dir)? {
        let old: Summary = serde_json::from_value(saved.progress).map_err(|e| {
            Error::bad_file(&store::data_dir(out).join("progress.json"), e.to_string())
        })?;
        if &old.config != cfg {
            return Err(Error::field(
                "resume",
                format!("the run in {} was made with other settings ({}); use the same flags or another --out",
                    out.display(), serde_json::to_string(&old.config).unwrap_or_default()),
            ));
        }
        if old.api != api_desc {
            return Err(Error::field(
                "resume",
                "the API is not the one the run started with (other fonts or settings)",
            ));
        }
        records = old.iterations;
        pops = saved.populations;
    }
    on(Event::Started {
        privacy: &privacy,
        resumed_at: records.len().saturating_sub(1),
    });

    if pops.is_empty() {
        let t0 = Instant::now();
        for (c, &m) in per_class.iter().enumerate() {
            on(Event::Phase {
                iteration: 0,
                class: c,
                what: "random",
            });
            let p = api.random(c, m, seed(cfg, &["random", &c.to_string()]))?;
            p.check("RANDOM_API", m, shape)?;
            pops.push(p);
        }
        let gen = t0.elapsed().as_secs_f64();
        let rec = IterationRecord {
            iteration: 0,
            epsilon_spent: spent(0)?,
            frechet_distance: fd_of(&pops)?,
            seconds_generation: gen,
            seconds_embedding: 0.0,
            seconds_vote: 0.0,
            distinct_parents: 0,
            uniform_classes: vec![],
        };
        records.push(rec);
        finish_iteration(
            out,
            &pops,
            &dataset_json(0, records[0].epsilon_spent),
            &summary_of(&records),
        )?;
        on(Event::Iteration(&records[0]));
    }

    for t in records.len()..=cfg.iterations {
        let (mut gen, mut emb_s, mut vote_s) = (0.0, 0.0, 0.0);
        let mut next = Vec::with_capacity(classes);
        let mut distinct = 0;
        let mut uniform = vec![];
        for c in 0..classes {
            let ts = t.to_string();
            let cs = c.to_string();
            let pop = &pops[c];
            on(Event::Phase {
                iteration: t,
                class: c,
                what: "lookahead",
            });
            let emb = if cfg.lookahead == 0 {
                let s = Instant::now();
                let e = embedder.embed(&pop.images, device)?;
                emb_s += s.elapsed().as_secs_f64();
                e
            } else {
                let mut acc: Option<Tensor> = None;
                for j in 0..cfg.lookahead {
                    let s = Instant::now();
                    let v = api.variation(
                        c,
                        pop,
                        t,
                        seed(cfg, &["lookahead", &ts, &cs, &j.to_string()]),
                    )?;
                    v.check("VARIATION_API", pop.len(), shape)?;
                    gen += s.elapsed().as_secs_f64();
                    let s = Instant::now();
                    let e = embedder.embed(&v.images, device)?;
                    acc = Some(match acc {
                        None => e,
                        Some(a) => a + e,
                    });
                    emb_s += s.elapsed().as_secs_f64();
                }
                acc.expect("lookahead ≥ 1") / cfg.lookahead as f64
            };
            on(Event::Phase {
                iteration: t,
                class: c,
                what: "vote",
            });
            let s = Instant::now();
            let nn = vote::nearest(
                &private_by_class[c],
                &emb,
                cfg.neighbours.min(pop.len()),
                device,
            );
            let mut h = vote::histogram(&nn, pop.len());
            let mut rng = SplitMix64::new(seed(cfg, &["noise", &ts, &cs]));
            vote::add_noise(&mut h, noise, &mut rng);
            vote::threshold(&mut h, cfg.threshold);
            let mut rng = SplitMix64::new(seed(cfg, &["parents", &ts, &cs]));
            let (parents, fallback) = vote::draw(&h, per_class[c], &mut rng);
            vote_s += s.elapsed().as_secs_f64();
            if fallback {
                uniform.push(c);
            }
            let mut seen = parents.clone();
            seen.sort_unstable();
            seen.dedup();
            distinct += seen.len();
            on(Event::Phase {
                iteration: t,
                class: c,
                what: "variation",
            });
            let s = Instant::now();
            let child =
                api.variation(c, &pop.select(&parents), t, seed(cfg, &["next", &ts, &cs]))?;
            child.check("VARIATION_API", parents.len(), shape)?;
            gen += s.elapsed().as_secs_f64();
            next.push(child);
        }
        pops = next;
        let rec = IterationRecord {
            iteration: t,
            epsilon_spent: spent(t)?,
            frechet_distance: fd_of(&pops)?,
            seconds_generation: gen,
            seconds_embedding: emb_s,
            seconds_vote: vote_s,
            distinct_parents: distinct,
            uniform_classes: uniform,
        };
        records.push(rec);
        finish_iteration(
            out,
            &pops,
            &dataset_json(t, records[t].epsilon_spent),
            &summary_of(&records),
        )?;
        on(Event::Iteration(&records[t]));
    }
    // synth.json was written with the last iteration.
    Ok(summary_of(&records))
}

/// Refuse an output folder that holds the private data (`fool synth` rewrites OUT/data whole):
/// a private folder equal to OUT, inside it, or holding it.
fn refuse_inside(out: &Path, private: &str) -> Result<()> {
    let p = Path::new(private);
    if !p.is_dir() {
        return Ok(());
    }
    let (Ok(p), Ok(o)) = (p.canonicalize(), std::path::absolute(out)) else {
        return Ok(());
    };
    let o = o.canonicalize().unwrap_or(o);
    if p.starts_with(&o) || o.starts_with(&p) {
        return Err(Error::field(
            "out",
            format!(
                "{} and the private data {} overlap: fool synth rewrites OUT/data, so the output must be outside the input (and the input outside it)",
                out.display(),
                private
            ),
        ));
    }
    Ok(())
}

/// Commit one iteration: the data folder (atomically), its sample grid, and synth.json.
fn finish_iteration(
    out: &Path,
    pops: &[Population],
    dataset: &serde_json::Value,
    summary: &Summary,
) -> Result<()> {
    let progress = serde_json::to_value(summary).map_err(|e| Error::Internal {
        what: "progress.json".into(),
        msg: e.to_string(),
    })?;
    store::save(out, pops, dataset, &progress)?;
    let t = dataset["iteration"].as_u64().unwrap_or(0);
    let dir = out.join("iterations");
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let grid = store::grid(pops, 12, 2)?;
    crate::imageio::save_png(&grid, &dir.join(format!("iter-{t:02}.png")))?;
    crate::files::write_json(&out.join("synth.json"), summary)
}
