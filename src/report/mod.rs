//! Reports across runs, the top of the stack: they read what the commands below wrote (training
//! metadata, audits, bench summaries, model reports) and draw them side by side, or log them to
//! MLflow.
pub mod classification;
pub mod html;
pub mod mlflow;
pub mod model;
pub mod privacy;
pub mod robustness;
