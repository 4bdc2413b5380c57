//! fool's integration tests, one binary (one link of libtorch): a module per area.
mod common;

mod accountant;
mod architecture;
mod attack_models;
mod attacks_batch;
mod audit;
mod bad_input;
mod bench;
mod cli;
mod cli_privacy;
mod datasets;
mod defenses;
mod detect;
mod detect_bench;
mod fuzz_replay;
mod grad_sample;
mod hostile;
mod hostile_bench;
mod hostile_train;
mod lira;
mod pate;
mod pate_analysis_cli;
mod pate_reference;
mod preprocess_vs_torchvision;
mod report;
mod train;
