//! `fool`: how easily can an image classifier be fooled?
//!
//! Data flows one way: load ([`imageio`], [`model`]) → preprocess ([`preprocess`]) →
//! attack / defend ([`attacks`], [`defenses`]) → measure → report ([`report`]).
pub mod attacks;
pub mod audit;
pub mod bench;
pub mod datasets;
pub mod defenses;
pub mod device;
pub mod error;
pub mod imageio;
pub mod labels;
pub mod model;
pub mod nets;
pub mod perturbation;
pub mod plot;
pub mod preprocess;
pub mod privacy;
pub mod report;
pub mod train;

pub use error::{Error, Result};
