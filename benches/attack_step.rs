//! One step of the single-image SGD attack on CPU: forward (through the straight-through
//! 8-bit quantization) + backward to the perturbation + SGD-momentum update and projection.
//!
//! Cases (all batch 1, CPU):
//! - `tiny_conv_32/...`: a small conv net traced here with `CModule::create_by_tracing` on
//!   a synthetic 32×32 image; needs no assets.
//! - `mobilenet_v2_224/...`: `assets/model.pt` (ImageNet MobileNetV2 TorchScript) on
//!   `assets/dog.png` at 224, target class 1 (goldfish), eps 10/255, lr 0.01, momentum 0.9
//!   — the defaults of `fool dog.png --target goldfish`. Skipped with a message when the
//!   assets are missing (run `bash scripts/setup/setup.sh`).
//!
//! Per model:
//! - `sgd_step`: one step, replicating the body of `SgdAttack::run`'s loop with the same
//!   tensor ops (quantized forward, goal/best-so-far bookkeeping with its scalar reads,
//!   backward, momentum update, L∞ and range projection); the state carries over between
//!   iterations as in a real attack.
//! - `sgd_run_steps1`: the library call `SgdAttack { steps: 1, early_stop: false, .. }.run`,
//!   i.e. one step plus the evaluation of the final point and the attack's set-up and
//!   tear-down: 2 forwards and 1 backward, plus 1 more backward where the library also
//!   differentiates the final evaluation (it does since `grad_eval`).
//! - `forward_no_grad` (MobileNetV2 only): a plain inference forward, for scale.
//!
//! And `project_quantized_32x224/{linf,l2}`: the projection of a batch of 32 ImageNet-sized
//! iterates onto the 8-bit images within the budget (4/255 L∞, radius 0.5 L2), which every
//! gradient attack runs once per step; the L2 one searches for the largest scale that fits
//! after rounding.
//!
//! After each case the bench prints how much of the machine's CPU other processes used while
//! it ran: libtorch's OpenMP threads slow down many times when the cores are shared, so a
//! case run next to a build or a test suite is not a measurement of fool.
//!
//! Run: `cargo bench --bench attack_step` (libtorch threads: `OMP_NUM_THREADS`, default =
//! physical cores). Sample sizes are kept small; the full run takes about two minutes on 2 cores.
use criterion::Criterion;
use fool::attacks::{project_quantized, Attack, Budget, Goal, SgdAttack};
use fool::model::Classifier;
use fool::preprocess::Preprocess;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tch::{nn, nn::Module, Device, Kind, Tensor};

const LR: f64 = 0.01;
const MOMENTUM: f64 = 0.9;
const EPS: f64 = 10.0 / 255.0;
const TARGET: i64 = 1; // goldfish

/// State of a running attack on one batch, as `SgdAttack::run` keeps it.
struct StepState {
    x0: Tensor,
    r: Tensor,
    velocity: Tensor,
    best_adv: Tensor,
    best_success: Tensor,
    best_score: Tensor,
}

impl StepState {
    fn new(x0: &Tensor) -> Self {
        let x0 = x0.detach();
        let n = x0.size()[0];
        StepState {
            r: x0.zeros_like(),
            velocity: x0.zeros_like(),
            best_adv: x0.copy(),
            best_success: Tensor::zeros([n], (Kind::Bool, x0.device())),
            best_score: Tensor::full([n], f64::NEG_INFINITY, (Kind::Float, x0.device())),
            x0,
        }
    }

    /// One attack step with the same tensor operations as the loop body of `SgdAttack::run`
    /// (targeted goal, no early stop). Returns the mean loss so the work cannot be optimized away.
    fn step(&mut self, model: &Classifier, goal: &Goal, budget: Budget) -> f64 {
        let x0 = &self.x0;
        let r_var = self.r.detach().set_requires_grad(true);
        let x = (x0 + &r_var).clamp(0.0, 1.0);
        let xq = project_quantized(x0, &x, budget);
        let x_ste = &x + (&xq - &x).detach();
        let logits = model.logits(&x_ste).expect("forward");
        let reached = goal.reached(&logits);
        let score = goal.class_prob(&logits).detach();
        // BestSoFar::update
        let better = reached
            .logical_and(&self.best_success.logical_not())
            .logical_or(
                &reached
                    .eq_tensor(&self.best_success)
                    .logical_and(&score.gt_tensor(&self.best_score)),
            );
        let mask4 = better.view([-1, 1, 1, 1]);
        self.best_adv = xq.detach().where_self(&mask4, &self.best_adv);
        self.best_success = reached.where_self(&better, &self.best_success);
        self.best_score = score.where_self(&better, &self.best_score);
        let loss = goal.loss(&logits);
        // The scalar reads the progress display gets every step.
        let _n_reached = self.best_success.sum(Kind::Int64).int64_value(&[]);
        let mean_loss = loss.mean(Kind::Float).double_value(&[]);
        let _mean_prob = score.mean(Kind::Float).double_value(&[]);
        let grad = Tensor::run_backward(&[loss.sum(Kind::Float)], &[&r_var], false, false)
            .pop()
            .expect("one gradient");
        // Without early stop every image keeps moving: r -= lr * velocity.
        self.velocity = &self.velocity * MOMENTUM + &grad;
        let step_size = Tensor::from(LR).to_device(self.r.device());
        let r = &self.r - &self.velocity * &step_size;
        let r = r.clamp(-budget.eps, budget.eps);
        self.r = (x0 + &r).clamp(0.0, 1.0) - x0;
        mean_loss
    }
}

/// CPU seconds the whole machine spent busy (/proc/stat), if readable.
fn machine_busy_s() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let v: Vec<f64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    if v.len() < 7 {
        return None;
    }
    // user nice system idle iowait irq softirq steal
    let busy = v[0] + v[1] + v[2] + v[5] + v[6] + v.get(7).copied().unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some(busy / hz)
}

/// CPU seconds used by this process.
fn own_cpu_s() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 * 1e-6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

/// Run `f` and report the share of the machine's CPUs other processes used meanwhile.
fn with_load_report(id: &str, f: impl FnOnce()) {
    let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let (t0, b0, o0) = (std::time::Instant::now(), machine_busy_s(), own_cpu_s());
    f();
    let wall = t0.elapsed().as_secs_f64();
    if wall < 0.5 {
        return; // filtered out (or `--test`): nothing was measured
    }
    if let (Some(b0), Some(b1)) = (b0, machine_busy_s()) {
        let foreign = ((b1 - b0) - (own_cpu_s() - o0)).max(0.0) / (wall * ncpu);
        let verdict = if foreign > 0.05 {
            "  WARNING: machine not quiet, this case's times are not reliable"
        } else {
            ""
        };
        eprintln!(
            "{id}: other processes used {:.0}% of the {ncpu} CPUs meanwhile{verdict}",
            foreign * 100.0
        );
    }
}

fn bench_model(c: &mut Criterion, name: &str, model: &Classifier, x0: &Tensor, forward: bool) {
    let goal = Goal::Targeted(Tensor::from_slice(&[TARGET]).to_device(model.device));
    let budget = Budget::linf(EPS);
    let mut g = c.benchmark_group(name);
    g.sample_size(20)
        .warm_up_time(Duration::from_secs(3))
        .measurement_time(Duration::from_secs(10));

    let mut state = StepState::new(x0);
    with_load_report(&format!("{name}/sgd_step"), || {
        g.bench_function("sgd_step", |b| {
            b.iter(|| black_box(state.step(model, &goal, budget)))
        });
    });

    let attack = SgdAttack {
        steps: 1,
        lr: LR,
        momentum: MOMENTUM,
        random_start: false,
        early_stop: false,
    };
    with_load_report(&format!("{name}/sgd_run_steps1"), || {
        g.bench_function("sgd_run_steps1", |b| {
            b.iter(|| {
                let out = attack
                    .run(model, x0, &goal, budget, &mut |_| {})
                    .expect("attack");
                black_box(out.adv)
            })
        });
    });

    if forward {
        with_load_report(&format!("{name}/forward_no_grad"), || {
            g.bench_function("forward_no_grad", |b| {
                b.iter(|| black_box(model.probs(x0).expect("forward")))
            });
        });
    }
    g.finish();
}

/// A small conv classifier (3→16→32 channels, 10 classes), traced to TorchScript and saved
/// to `path`, so that it goes through the same `Classifier::load` as a real model.
fn tiny_model(path: &Path) -> tch::Result<()> {
    tch::manual_seed(0);
    let mut vs = nn::VarStore::new(Device::Cpu);
    let root = vs.root();
    let cfg = nn::ConvConfig {
        padding: 1,
        ..Default::default()
    };
    let net = nn::seq()
        .add(nn::conv2d(&root / "c1", 3, 16, 3, cfg))
        .add_fn(|x| x.relu())
        .add(nn::conv2d(
            &root / "c2",
            16,
            32,
            3,
            nn::ConvConfig { stride: 2, ..cfg },
        ))
        .add_fn(|x| x.relu().adaptive_avg_pool2d([1, 1]).flatten(1, -1))
        .add(nn::linear(&root / "fc", 32, 10, Default::default()));
    vs.freeze();
    let mut closure = |inputs: &[Tensor]| vec![net.forward(&inputs[0])];
    let m = tch::CModule::create_by_tracing(
        "TinyConv",
        "forward",
        &[Tensor::zeros([1, 3, 32, 32], (Kind::Float, Device::Cpu))],
        &mut closure,
    )?;
    m.save(path)
}

fn bench_tiny(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("tiny.pt");
    tiny_model(&path).expect("trace the tiny model");
    let pre = Preprocess {
        size: 32,
        resize: 32,
        ..Preprocess::default()
    };
    let model = Classifier::load(&path, Device::Cpu, pre).expect("load the tiny model");
    tch::manual_seed(1);
    // A synthetic image on the 8-bit grid.
    let x0 = (Tensor::rand([1, 3, 32, 32], (Kind::Float, Device::Cpu)) * 255.0).round() / 255.0;
    bench_model(c, "tiny_conv_32", &model, &x0, false);
}

fn bench_mobilenet(c: &mut Criterion) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let model_path = root.join("assets/model.pt");
    let dog = root.join("assets/dog.png");
    if !model_path.exists() || !dog.exists() {
        eprintln!(
            "attack_step: skipping the MobileNetV2 benchmark: {} or {} is missing \
             (run `bash scripts/setup/setup.sh` to get the assets)",
            model_path.display(),
            dog.display()
        );
        return;
    }
    let pre = Preprocess::default();
    let model = Classifier::load(&model_path, Device::Cpu, pre).expect("load assets/model.pt");
    let img = fool::imageio::load_rgb(&dog).expect("load assets/dog.png");
    let x0 = model.pre.pixels(&img, model.device).unsqueeze(0);
    assert_eq!(x0.size(), [1, 3, 224, 224], "dog image is not 224x224");
    bench_model(c, "mobilenet_v2_224", &model, &x0, true);
}

fn bench_projection(c: &mut Criterion) {
    tch::manual_seed(2);
    let opts = (Kind::Float, Device::Cpu);
    let x0 = (Tensor::rand([32, 3, 224, 224], opts) * 255.0).round() / 255.0;
    let x = (&x0 + Tensor::randn([32, 3, 224, 224], opts) * 0.01).clamp(0.0, 1.0);
    let mut g = c.benchmark_group("project_quantized_32x224");
    g.sample_size(10).warm_up_time(Duration::from_secs(1));
    for (name, budget) in [("linf", Budget::linf(4.0 / 255.0)), ("l2", Budget::l2(0.5))] {
        with_load_report(name, || {
            g.bench_function(name, |b| {
                b.iter(|| black_box(project_quantized(&x0, &x, budget)))
            });
        });
    }
    g.finish();
}

fn main() {
    eprintln!(
        "attack_step: CPU, libtorch intra-op threads = {} (set OMP_NUM_THREADS to change)",
        tch::get_num_threads()
    );
    let mut c = Criterion::default().configure_from_args();
    bench_tiny(&mut c);
    bench_mobilenet(&mut c);
    bench_projection(&mut c);
    c.final_summary();
}
