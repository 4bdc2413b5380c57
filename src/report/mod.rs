//! Reports across runs, the top of the stack: they read what the commands below wrote (training
//! metadata, audits, bench summaries) and draw them side by side.
pub mod privacy;
pub mod robustness;
