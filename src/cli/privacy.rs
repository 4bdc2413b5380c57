//! `fool privacy epsilon|noise`: DP-SGD privacy accounting (Poisson-subsampled Gaussian
//! mechanism), as Opacus's RDP and PRV accountants do it.
use super::{print_json, OutputArgs};
use anyhow::Result;
use clap::{Args, Subcommand};
use fool::privacy::accountant::{self, AccountantKind};
use fool::Error;
use serde::Serialize;
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
struct Schedule {
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
    schedule: Schedule,
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
    schedule: Schedule,
    #[command(flatten)]
    out: OutputArgs,
}

#[derive(Serialize)]
struct Record {
    accountant: AccountantKind,
    epsilon: f64,
    delta: f64,
    noise: f64,
    sample_rate: f64,
    steps: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    target_epsilon: Option<f64>,
    /// RDP only: the order that gave ε.
    #[serde(skip_serializing_if = "Option::is_none")]
    best_order: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    epochs: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    n: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    batch: Option<u64>,
}

pub fn run(a: PrivacyArgs) -> Result<ExitCode> {
    let (rec, json) = match a.command {
        PrivacyCommand::Epsilon(e) => {
            let (q, steps) = e.schedule.rate_and_steps()?;
            accountant::check_noise(e.noise)?;
            let rec = account(&e.schedule, e.noise, q, steps, None)?;
            (rec, e.out.json)
        }
        PrivacyCommand::Noise(nz) => {
            let s = &nz.schedule;
            let (q, steps) = s.rate_and_steps()?;
            let noise =
                accountant::noise_for_epsilon(s.accountant, nz.target_epsilon, q, steps, s.delta)?;
            let rec = account(s, noise, q, steps, Some(nz.target_epsilon))?;
            (rec, nz.out.json)
        }
    };
    if json {
        print_json(&rec)?;
    } else {
        println!("{}", human(&rec));
    }
    Ok(ExitCode::SUCCESS)
}

impl Schedule {
    /// (q, steps) from --sample-rate or --n/--batch, and --steps or --epochs.
    fn rate_and_steps(&self) -> fool::Result<(f64, u64)> {
        let q = match (self.sample_rate, self.n, self.batch) {
            (Some(q), _, _) => q,
            (None, Some(n), Some(b)) => {
                if n == 0 {
                    return Err(Error::field("n", "must be at least 1"));
                }
                if b == 0 || b > n {
                    return Err(Error::field(
                        "batch",
                        format!("must be between 1 and --n ({n}), got {b}"),
                    ));
                }
                b as f64 / n as f64
            }
            _ => {
                return Err(Error::field(
                    "sample_rate",
                    "give --sample-rate, or --n and --batch",
                ))
            }
        };
        accountant::check_sample_rate(q)?;
        let steps = match (self.steps, self.epochs) {
            (Some(s), _) => s,
            (None, Some(e)) => {
                if !(e.is_finite() && e > 0.0) {
                    return Err(Error::field(
                        "epochs",
                        format!("must be a positive number, got {e}"),
                    ));
                }
                if q == 0.0 {
                    return Err(Error::field(
                        "sample_rate",
                        "is 0: an epoch never ends; give --steps instead of --epochs",
                    ));
                }
                // Opacus: steps = int(epochs / sample_rate).
                let s = (e / q).floor();
                if s > 1e12 {
                    return Err(Error::field(
                        "epochs",
                        format!("{e} epochs at q = {q} is {s:e} steps: too many"),
                    ));
                }
                s as u64
            }
            _ => return Err(Error::field("steps", "give --steps or --epochs")),
        };
        Ok((q, steps))
    }
}

fn account(
    s: &Schedule,
    noise: f64,
    q: f64,
    steps: u64,
    target_epsilon: Option<f64>,
) -> fool::Result<Record> {
    let (epsilon, best_order) = match s.accountant {
        AccountantKind::Rdp => accountant::rdp_epsilon(noise, q, steps, s.delta)?,
        AccountantKind::Prv => (
            accountant::epsilon(AccountantKind::Prv, noise, q, steps, s.delta)?,
            None,
        ),
    };
    Ok(Record {
        accountant: s.accountant,
        epsilon,
        delta: s.delta,
        noise,
        sample_rate: q,
        steps,
        target_epsilon,
        best_order,
        epochs: s.epochs,
        n: s.n,
        batch: s.batch,
    })
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

fn human(r: &Record) -> String {
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
