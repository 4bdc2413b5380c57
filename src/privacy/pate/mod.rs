//! PATE, Private Aggregation of Teacher Ensembles (Papernot et al. 2017, 2018): the teachers'
//! vote matrix ([`votes`]), the noisy aggregators that label a student's queries
//! ([`aggregate`]), and the privacy analysis of those answers: per-query RDP ([`rdp`]), its
//! smooth sensitivity ([`smooth`]) and the whole analysis with its private release
//! ([`analysis`]).
pub mod aggregate;
pub mod analysis;
pub mod rdp;
pub mod smooth;
pub mod votes;

pub use aggregate::{aggregate, from_flags, Aggregator};
pub use analysis::{analyse, Analysis, Settings, SmoothRelease};
pub use votes::Votes;
