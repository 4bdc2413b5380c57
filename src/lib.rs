//! `fool`: how easily can an image classifier be fooled, and how much does it leak?
//!
//! A one-way stack (see ARCHITECTURE.md): no module imports one listed above it. Data flows
//! load → preprocess → attack / defend / train → measure → report.
//!
//! - top: [`report`] (cross-run reports), [`lira`] (shadow-model membership inference),
//!   [`pate`] (PATE teachers, votes and students);
//! - commands' engines: [`bench`] (attack sweeps), [`train`] (training runs and their run
//!   directory), [`serve`] (the model side of `fool serve`; the HTTP side is the `fool_serve`
//!   crate in `crates/serve`);
//! - detection: [`detect`] (adversarial-input detectors, calibrated on clean images);
//! - measures and mechanisms: [`audit`] (membership-inference metrics), [`privacy`] (DP-SGD and
//!   its accountants), [`defenses`], [`attacks`] (the attack registry);
//! - models and data: [`nets`], [`model`], [`datasets`], [`preprocess`], [`labels`],
//!   [`perturbation`], [`plot`], [`imageio`];
//! - foundations: [`npy`], [`files`], [`optim`], [`special`], [`rng`], [`device`], [`error`].
pub mod report;

pub mod lira;
pub mod pate;

pub mod bench;
pub mod serve;
pub mod synth;
pub mod train;

pub mod detect;

pub mod attacks;
pub mod audit;
pub mod defenses;
pub mod privacy;

pub mod datasets;
pub mod imageio;
pub mod labels;
pub mod model;
pub mod nets;
pub mod perturbation;
pub mod preprocess;

pub mod device;
pub mod error;
pub mod files;
pub mod npy;
pub mod optim;
pub mod plot;
pub mod rng;
pub mod special;

pub use error::{Error, Result};
