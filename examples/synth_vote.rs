//! Time Private Evolution's nearest-neighbour vote (`fool::synth::vote`) on embeddings from
//! two .npy files, for `scripts/compare/bench_vote.py` (which runs the reference's backend on
//! the same arrays and prints the ratio).
//!
//! Usage: synth_vote PRIVATE.npy SYNTHETIC.npy K REPEATS OUT_IDS.npy
//! Prints one JSON line: the seconds of each repeat (load excluded) and the ids' shape.
use fool::synth::vote;
use std::time::Instant;
use tch::{Device, Tensor};

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() != 6 {
        eprintln!("usage: synth_vote PRIVATE.npy SYNTHETIC.npy K REPEATS OUT_IDS.npy");
        std::process::exit(2);
    }
    let p = Tensor::read_npy(&a[1]).expect("private .npy");
    let s = Tensor::read_npy(&a[2]).expect("synthetic .npy");
    let k: usize = a[3].parse().expect("K");
    let reps: usize = a[4].parse().expect("REPEATS");
    let mut secs = vec![];
    let mut ids = None;
    for _ in 0..reps {
        let t = Instant::now();
        let nn = vote::nearest(&p, &s, k, Device::Cpu);
        let h = vote::histogram(&nn, s.size()[0] as usize);
        secs.push(t.elapsed().as_secs_f64());
        assert!(h.iter().sum::<f64>() > 0.0);
        ids = Some(nn);
    }
    let ids = ids.expect("at least one repeat");
    ids.write_npy(&a[5]).expect("write ids");
    println!(
        "{}",
        serde_json::json!({"seconds": secs, "ids_shape": ids.size(), "threads": tch::get_num_threads()})
    );
}
