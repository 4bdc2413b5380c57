//! `fool bench`: attack success rate versus epsilon over a labelled image folder, for every
//! attack × budget × defense × mode (non-adaptive, adaptive), resumable and shardable.
//!
//! The work is cut into *units*: one batch of images × one attack × one eps × one mode
//! (× one defense in adaptive mode; a non-adaptive unit attacks the bare model once and
//! judges the result through every defense). Each unit is seeded from the run seed and its
//! own key, so it computes the same rows whatever ran before it, on whichever shard. A unit's
//! rows are appended to `results.jsonl` in one write and flushed; a resumed run skips units
//! whose rows are all there, so the summary of an interrupted-and-resumed run, or of merged
//! shards, equals that of one uninterrupted run.
//!
//! Layout: [`plan`] (settings, configuration, units, shards, seeds), [`store`] (the output
//! directory's files), [`lock`] (one run per output directory), [`runner`] (one unit of work),
//! [`driver`] ([`run`], [`merge`] and the [`Observer`] that follows them), [`stats`] (the
//! summary) and [`chart`].
pub mod chart;
pub mod driver;
pub mod examples;
pub mod lock;
pub mod plan;
pub mod runner;
pub mod stats;
pub mod store;

pub use driver::{batch_list, merge, run, Merged, Observer, Outcome, Report, Start};
pub use plan::{
    adaptive_defenses, eps_key, pending, units, BenchConfig, DetectorConfig, Plan, Settings, Shard,
    Unit,
};
pub use runner::{load_batch, LoadedBatch, Runner};
pub use stats::{summarize, wilson, SummaryRow};
pub use store::{
    append_rows, check_or_save_config, config_path, load_results, load_skipped, merge_rows,
    read_config, record_skipped, results_path, write_reports, write_rows, Row,
};
