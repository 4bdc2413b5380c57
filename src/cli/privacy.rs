//! `fool privacy epsilon|noise`: DP-SGD privacy accounting (Poisson-subsampled Gaussian
//! mechanism), as Opacus's RDP and PRV accountants do it; `fool privacy pate`: PATE's
//! data-dependent analysis of a vote matrix.
use super::{print_json, OutputArgs};
use anyhow::Result;
use clap::{Args, Subcommand};
use fool::privacy::accountant::{AccountantKind, Length, Sampling, Schedule, Spent};
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct PrivacyArgs {
    #[command(subcommand)]
    command: PrivacyCommand,
}

#[derive(Subcommand, Debug)]
enum PrivacyCommand {
    /// ε spent by DP-SGD with a given noise multiplier, e.g.
    /// `fool privacy epsilon --n 60000 --batch 256 --noise 1.1 --epochs 60 --delta 1e-5`
    Epsilon(EpsilonArgs),
    /// Smallest noise multiplier that keeps ε within a budget, e.g.
    /// `fool privacy noise --n 60000 --batch 256 --epochs 60 --target-epsilon 3 --delta 1e-5`
    Noise(NoiseArgs),
    /// PATE's privacy analysis of a vote matrix (as TF Privacy's pate_2018 script, plus the
    /// private release of the data-dependent ε), e.g. `fool privacy pate --votes votes.npy
    /// --sigma 40 --threshold 200 --sigma1 150 --queries 640 --delta 1e-5`
    Pate(PateArgs),
}

/// `fool privacy pate`.
#[derive(Args, Debug)]
#[command(allow_negative_numbers = true)]
pub struct PateArgs {
    /// The teachers' votes: a (queries, classes) .npy array of counts, every row summing to
    /// the number of teachers (the reference's --counts_file; `fool pate votes` writes one)
    #[arg(long, value_name = "FILE")]
    votes: std::path::PathBuf,
    /// gnmax, confident or laplace [default: confident with --threshold, laplace with
    /// --scale, else gnmax]
    #[arg(long)]
    aggregator: Option<String>,
    /// σ of GNMax's Gaussian noise on the vote counts (σ2 of Confident-GNMax)
    #[arg(long)]
    sigma: Option<f64>,
    /// Confident-GNMax: answer only when the largest count plus N(0, σ1²) reaches T
    #[arg(long, value_name = "T")]
    threshold: Option<f64>,
    /// Confident-GNMax: σ1 of the threshold's noise
    #[arg(long)]
    sigma1: Option<f64>,
    /// LNMax: the Laplace noise's scale λ (the 2017 paper's 1/γ)
    #[arg(long, value_name = "λ")]
    scale: Option<f64>,
    /// Analyse the first N queries (rows) [default: all]
    #[arg(long, value_name = "N")]
    queries: Option<usize>,
    /// δ of the (ε, δ) guarantee
    #[arg(long)]
    delta: f64,
    /// Seed of the noisy release of the data-dependent ε
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[command(flatten)]
    out: OutputArgs,
}

/// Sampling rate, number of steps, δ and the accountant.
#[derive(Args, Debug)]
struct ScheduleArgs {
    /// Training set size; with --batch, the sampling rate is q = batch/n
    #[arg(
        long,
        value_name = "N",
        required_unless_present = "sample_rate",
        conflicts_with = "sample_rate",
        requires = "batch"
    )]
    n: Option<u64>,
    /// Expected (Poisson) batch size, with --n
    #[arg(long, value_name = "B", requires = "n")]
    batch: Option<u64>,
    /// Poisson sampling rate q, instead of --n and --batch
    #[arg(long, value_name = "Q")]
    sample_rate: Option<f64>,
    /// Training length in epochs: steps = floor(epochs / q), the convention of Opacus's
    /// get_noise_multiplier and make_private_with_epsilon (an epoch is 1/q steps)
    #[arg(
        long,
        value_name = "E",
        required_unless_present = "steps",
        conflicts_with = "steps"
    )]
    epochs: Option<f64>,
    /// Number of DP-SGD steps, instead of --epochs
    #[arg(long, value_name = "S")]
    steps: Option<u64>,
    /// δ of the (ε, δ) guarantee (usually below 1/n)
    #[arg(long)]
    delta: f64,
    /// rdp (Rényi DP, Opacus's default) or prv (numerical composition, tighter; ε is its
    /// upper bound with eps_error 0.01)
    #[arg(long, value_name = "rdp|prv", default_value = "rdp", value_parser = parse_kind)]
    accountant: AccountantKind,
}

fn parse_kind(s: &str) -> Result<AccountantKind, String> {
    s.parse::<AccountantKind>()
        .map_err(|_| format!("'{s}': expected rdp or prv"))
}

#[derive(Args, Debug)]
#[command(allow_negative_numbers = true)]
pub struct EpsilonArgs {
    /// Noise multiplier σ (noise std / clipping norm)
    #[arg(long)]
    noise: f64,
    #[command(flatten)]
    schedule: ScheduleArgs,
    #[command(flatten)]
    out: OutputArgs,
}

#[derive(Args, Debug)]
#[command(allow_negative_numbers = true)]
pub struct NoiseArgs {
    /// The ε budget to stay within
    #[arg(long, value_name = "EPS")]
    target_epsilon: f64,
    #[command(flatten)]
    schedule: ScheduleArgs,
    #[command(flatten)]
    out: OutputArgs,
}

pub fn run(a: PrivacyArgs) -> Result<ExitCode> {
    let (spent, json) = match a.command {
        PrivacyCommand::Pate(p) => return pate(p),
        PrivacyCommand::Epsilon(e) => (e.schedule.schedule()?.epsilon(e.noise)?, e.out.json),
        PrivacyCommand::Noise(n) => (
            n.schedule.schedule()?.calibrate(n.target_epsilon)?,
            n.out.json,
        ),
    };
    if json {
        print_json(&spent)?;
    } else {
        println!("{}", human(&spent));
    }
    Ok(ExitCode::SUCCESS)
}

fn pate(a: PateArgs) -> Result<ExitCode> {
    use fool::privacy::pate::{analyse, Settings, Votes};
    let name = a
        .aggregator
        .as_deref()
        .unwrap_or(if a.threshold.is_some() || a.sigma1.is_some() {
            "confident"
        } else if a.scale.is_some() {
            "laplace"
        } else {
            "gnmax"
        });
    let aggregator =
        fool::privacy::pate::from_flags(name, a.threshold, a.sigma1, a.sigma, a.scale)?;
    let votes = Votes::read(&a.votes)?;
    let settings = Settings {
        aggregator,
        delta: a.delta,
        queries: a.queries,
        seed: a.seed,
    };
    let r = analyse(&votes, &settings)?;
    if a.out.json {
        print_json(&r)?;
    } else {
        print!("{}", pate_human(&r));
    }
    Ok(ExitCode::SUCCESS)
}

fn pate_human(r: &fool::privacy::pate::Analysis) -> String {
    use fool::privacy::pate::Aggregator;
    use std::fmt::Write;
    let agg = match r.aggregator {
        Aggregator::Gnmax { sigma } => format!("GNMax, σ = {sigma}"),
        Aggregator::Confident {
            threshold,
            sigma1,
            sigma,
        } => format!("Confident-GNMax, T = {threshold}, σ1 = {sigma1}, σ2 = {sigma}"),
        Aggregator::Laplace { scale } => format!("LNMax, Laplace scale λ = {scale}"),
    };
    let mut s = String::new();
    let _ = writeln!(
        s,
        "PATE analysis: {} queries to {} teachers ({} classes), {agg}, δ = {:e}",
        r.queries, r.teachers, r.classes, r.delta
    );
    let _ = writeln!(s, "  answered (expected)     {:.1}", r.answered);
    let _ = writeln!(
        s,
        "  ε data-independent      {}  (order {}; tighter conversion {})",
        sig(r.epsilon_data_independent, 5),
        sig(r.order_data_independent, 5),
        sig(r.epsilon_data_independent_tight, 5)
    );
    let _ = writeln!(
        s,
        "  ε data-dependent        {}  (order {}; tighter conversion {}) — depends on the votes: not private to publish as is",
        sig(r.epsilon_data_dependent, 5),
        sig(r.order, 5),
        sig(r.epsilon_data_dependent_tight, 5)
    );
    match &r.smooth_sensitivity {
        Some(ss) => {
            let _ = writeln!(
                s,
                "  smooth sensitivity      SS = {} at β = {}, σ_ss = {}: noise std {}",
                sig(ss.ss, 4),
                sig(ss.beta, 4),
                sig(ss.sigma_ss, 4),
                sig(ss.noise_std, 4)
            );
            let _ = writeln!(
                s,
                "  ε total                 {}  (data-dependent ε + {} for releasing it)",
                sig(ss.epsilon_total, 5),
                sig(ss.release_cost, 4)
            );
            let _ = writeln!(
                s,
                "  ε released              {}  (ε total + noise, seed {}): the number to publish",
                sig(ss.epsilon_released, 5),
                ss.seed
            );
        }
        None if matches!(r.aggregator, Aggregator::Laplace { .. }) => {
            let _ = writeln!(
                s,
                "  no smooth-sensitivity analysis for LNMax: publish the data-independent ε"
            );
        }
        None if !r.conditions_hold => {
            let _ = writeln!(
                s,
                "  the sufficient conditions (C5, C6) of the smooth-sensitivity analysis fail at order {}: \
                 the data-dependent ε cannot be released privately; publish the data-independent ε",
                sig(r.order, 5)
            );
        }
        None => {
            let _ = writeln!(
                s,
                "  the data-independent bounds are the tighter ones at order {} whatever the votes: nothing data-dependent to release",
                sig(r.order, 5)
            );
        }
    }
    s
}

impl ScheduleArgs {
    /// The library's schedule; clap has already required one of each pair of flags.
    fn schedule(&self) -> Result<Schedule> {
        let sampling = match (self.sample_rate, self.n, self.batch) {
            (Some(q), _, _) => Sampling::Rate(q),
            (None, Some(n), Some(batch)) => Sampling::Batches { n, batch },
            _ => anyhow::bail!("--sample-rate: give --sample-rate, or --n and --batch"),
        };
        let length = match (self.steps, self.epochs) {
            (Some(s), _) => Length::Steps(s),
            (None, Some(e)) => Length::Epochs(e),
            _ => anyhow::bail!("--steps: give --steps or --epochs"),
        };
        Ok(Schedule {
            sampling,
            length,
            delta: self.delta,
            accountant: self.accountant,
        })
    }
}

/// `x` with `digits` significant digits, trailing zeros dropped.
fn sig(x: f64, digits: i32) -> String {
    if x == 0.0 || !x.is_finite() {
        return x.to_string();
    }
    let decimals = (digits - 1 - x.abs().log10().floor() as i32).max(0) as usize;
    let s = format!("{x:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

fn human(r: &Spent) -> String {
    let name = match r.accountant {
        AccountantKind::Rdp => "RDP",
        AccountantKind::Prv => "PRV",
    };
    let order = r
        .best_order
        .map(|o| format!(", best order {o}"))
        .unwrap_or_default();
    let epochs = r
        .epochs
        .map(|e| format!(" ({e} epochs)"))
        .unwrap_or_default();
    match r.target_epsilon {
        None => format!(
            "ε = {} (δ = {:e}) after {} steps{epochs}, σ = {}, q = {}, {name} accountant{order}",
            sig(r.epsilon, 4),
            r.delta,
            r.steps,
            r.noise,
            sig(r.sample_rate, 4),
        ),
        Some(t) => format!(
            "σ = {} is the smallest noise multiplier with ε ≤ {t} (δ = {:e}) after {} steps{epochs}, \
             q = {}: ε = {:.5}, {name} accountant{order}",
            sig(r.noise, 6),
            r.delta,
            r.steps,
            sig(r.sample_rate, 4),
            r.epsilon,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::sig;

    #[test]
    fn significant_digits() {
        assert_eq!(sig(256.0 / 60000.0, 4), "0.004267");
        assert_eq!(sig(2.596_56, 4), "2.597");
        assert_eq!(sig(1e-4, 4), "0.0001");
        assert_eq!(sig(12.0, 4), "12");
        assert_eq!(sig(0.0, 4), "0");
    }
}
