//! `fool synth`: differentially private synthetic images by Private Evolution.
pub mod api;
pub mod config;
pub mod digits;
pub mod embed;
pub mod fid;
pub mod fonts;
pub mod http;
pub mod run;
pub mod store;
pub mod vote;

pub use api::{Api, Population};
pub use config::{ClassCounts, Event, IterationRecord, Privacy, Summary, SynthConfig};
pub use run::run;
