//! The fuzz corpus replayed (issue: hostile inputs): every file of `tests/fuzz/corpus/<target>/`
//! (the seeds and the inputs the fuzzer once found failing) and a fixed set of mutants of them
//! go through their parsers; each must return a value or a one-line error, without panicking,
//! within a time limit. The long-running fuzzer is `cargo run --release --example fuzz`.
#[path = "../fuzz/harness.rs"]
mod harness;

use std::time::{Duration, Instant};

/// Mutants replayed per target, besides the corpus (deterministic: seed [`SEED`]).
const MUTANTS: u64 = 500;
const SEED: u64 = 12;
/// Per-input time limit (the slowest corpus input takes well under a second in release).
const LIMIT: Duration = Duration::from_secs(20);

fn replay(name: &str) {
    let target = harness::target(name).expect("a fuzz target");
    let files = harness::corpus(name);
    assert!(
        files.len() >= 3,
        "{name}: the corpus {} has {} files",
        harness::corpus_dir(name).display(),
        files.len()
    );
    let corpus: Vec<&[u8]> = files.iter().map(|(_, b)| b.as_slice()).collect();
    let ws = tempfile::tempdir().unwrap();
    let start = Instant::now();
    let mut failures = Vec::new();
    let mut check = |what: String, input: &[u8]| {
        let v = target.run_timed(ws.path(), input, LIMIT);
        if !v.is_fine() {
            let head: Vec<String> = input.iter().take(32).map(|b| format!("{b:02x}")).collect();
            failures.push(format!("{what}: {v:?} (input starts {})", head.join("")));
        }
    };
    for (file, bytes) in &files {
        check(format!("corpus file {file}"), bytes);
    }
    for i in 0..MUTANTS {
        let (base, input) = harness::mutant(target, &corpus, SEED, i);
        check(
            format!("mutant {i} of {} (seed {SEED})", files[base].0),
            &input,
        );
    }
    assert!(
        failures.is_empty(),
        "{name}: {} failing inputs (reproduce with `cargo run --release --example fuzz -- \
         --target {name} --replay FILE`):\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!(
        "{name}: {} corpus files + {MUTANTS} mutants in {:.1} s",
        files.len(),
        start.elapsed().as_secs_f64()
    );
}

#[test]
fn fuzz_corpus_image() {
    replay("image");
}

#[test]
fn fuzz_corpus_npy() {
    replay("npy");
}

#[test]
fn fuzz_corpus_idx() {
    replay("idx");
}

#[test]
fn fuzz_corpus_cifar10() {
    replay("cifar10");
}

#[test]
fn fuzz_corpus_labels() {
    replay("labels");
}

#[test]
fn fuzz_corpus_labels_csv() {
    replay("labels-csv");
}

#[test]
fn fuzz_corpus_model_card() {
    replay("model-card");
}

#[test]
fn every_target_has_a_replay_test() {
    let names: Vec<_> = harness::TARGETS.iter().map(|t| t.name).collect();
    assert_eq!(
        names,
        [
            "image",
            "npy",
            "idx",
            "cifar10",
            "labels",
            "labels-csv",
            "model-card"
        ]
    );
}

#[test]
fn valid_image_seeds_decode() {
    // The image seeds are valid files except the huge declared sizes and the formats fool does
    // not decode: each must decode (a top-down BMP once did not).
    let target = harness::target("image").unwrap();
    let ws = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for (file, bytes) in harness::corpus("image") {
        if !file.starts_with("seed-") || file.contains("huge") || file.starts_with("seed-other") {
            continue;
        }
        let mut tally = harness::Tally::default();
        assert_eq!(
            target.run(ws.path(), &bytes, &mut tally),
            harness::Verdict::Fine
        );
        assert_eq!(tally.accepted, 1, "{file} was not decoded");
        checked += 1;
    }
    assert!(checked >= 30, "{checked} valid image seeds");
}
