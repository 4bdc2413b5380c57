//! One DP-SGD step and its non-private counterpart on the CPU, for the architectures
//! `fool train` builds, on synthetic inputs of the right shape (no assets needed).
//!
//! Per architecture (`cnn` on 1×28×28 MNIST-shaped inputs, batch 256; `small-cnn:conv=2` on
//! 3×32×32 CIFAR-shaped inputs, batch 256; `resnet18` (GroupNorm) on 3×32×32, batch 32):
//! - `plain_step`: what the trainer's non-private step computes before the optimizer — train
//!   forward, per-example cross-entropy, backward of the mean loss to the parameters;
//! - `forward_tape_backprop`: the first half of the DP step — the forward that records each
//!   layer's input and output and the backward of the summed loss to those outputs;
//! - `clipped_sum`: the whole per-example part of the DP step
//!   (`privacy::grad_sample::clipped_sum`: the above, per-layer norms, clip factors and the
//!   clipped sum), i.e. everything but the noise and the update.
//!
//! The ratio `clipped_sum / plain_step` is the DP overhead of the step itself; `scripts/compare/
//! bench_dp.py` measures it end to end (with the data loading, noise and update) against Opacus.
//!
//! Run: `cargo bench --bench dp_step` (libtorch threads: `OMP_NUM_THREADS`, default = physical
//! cores). With the allocator as the CLI sets it (`fool::device::tune_cpu_allocator`).
use criterion::Criterion;
use fool::nets::{Arch, Net, Pass, Tape};
use fool::privacy::grad_sample::clipped_sum;
use std::hint::black_box;
use std::time::Duration;
use tch::{nn, Device, Kind, Reduction, Tensor};

fn case(c: &mut Criterion, arch: &str, channels: i64, side: i64, batch: i64) {
    tch::manual_seed(0);
    let vs = nn::VarStore::new(Device::Cpu);
    let arch_parsed: Arch = arch.parse().expect("arch");
    let net = Net::new(&vs, &arch_parsed, channels, side, 10).expect("net");
    let x = Tensor::randn([batch, channels, side, side], (Kind::Float, Device::Cpu));
    let y = Tensor::randint(10, [batch], (Kind::Int64, Device::Cpu));
    let params: Vec<Tensor> = net
        .params()
        .into_iter()
        .map(|p| p.shallow_clone())
        .collect();
    let mut g = c.benchmark_group(format!("{arch}_b{batch}"));
    g.sample_size(20).measurement_time(Duration::from_secs(6));
    g.bench_function("plain_step", |b| {
        b.iter(|| {
            let logits = net.forward(&x, &mut Pass::train());
            let losses = logits.cross_entropy_loss::<Tensor>(&y, None, Reduction::None, -100, 0.0);
            let grads = Tensor::run_backward(&[losses.mean(Kind::Float)], &params, false, false);
            black_box(grads);
        })
    });
    g.bench_function("forward_tape_backprop", |b| {
        b.iter(|| {
            let mut tape = Tape::default();
            let logits = net.forward(
                &x,
                &mut Pass {
                    train: true,
                    tape: Some(&mut tape),
                },
            );
            let losses = logits.cross_entropy_loss::<Tensor>(&y, None, Reduction::None, -100, 0.0);
            let outputs: Vec<&Tensor> = tape.records.iter().map(|r| &r.output).collect();
            let grads = Tensor::run_backward(&[losses.sum(Kind::Float)], &outputs, false, false);
            black_box(grads);
        })
    });
    g.bench_function("clipped_sum", |b| {
        b.iter(|| black_box(clipped_sum(&net, &x, &y, 1.0).expect("clipped sum")))
    });
    g.finish();
}

fn main() {
    fool::device::tune_cpu_allocator();
    eprintln!(
        "dp_step: CPU, libtorch intra-op threads = {} (set OMP_NUM_THREADS to change)",
        tch::get_num_threads()
    );
    let mut c = Criterion::default().without_plots().configure_from_args();
    case(&mut c, "cnn", 1, 28, 256);
    case(&mut c, "small-cnn:conv=2", 3, 32, 256);
    case(&mut c, "resnet18", 3, 32, 32);
    c.final_summary();
}
