//! `fool privacy epsilon|noise`: DP-SGD privacy accounting (Poisson-subsampled Gaussian
//! mechanism), as Opacus's RDP and PRV accountants do it.
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
