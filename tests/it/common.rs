//! Helpers shared by the integration tests: paths to the prepared assets (which must exist:
//! `bash scripts/setup/setup.sh` makes them; a missing asset fails the test, it never skips), and
//! tiny TorchScript classifiers traced from Rust closures.
#![allow(dead_code)]
use std::path::{Path, PathBuf};
use tch::nn::{self, Module};
use tch::{CModule, Device, Kind, Tensor};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `assets/NAME`, which must exist.
pub fn asset(name: &str) -> PathBuf {
    let p = root().join("assets").join(name);
    assert!(
        p.exists(),
        "{} is missing: run `bash scripts/setup/setup.sh` first (it links ../shared into assets/)",
        p.display()
    );
    p
}

pub fn fool() -> assert_cmd::Command {
    let mut c = assert_cmd::Command::cargo_bin("fool").expect("fool binary");
    c.current_dir(root());
    c
}

/// libtorch's RNG is global and tests run on parallel threads: hold this while seeding and
/// initializing a model so its weights do not depend on what other tests draw meanwhile.
static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A small conv net (normalized (N,3,S,S) → (N,classes) logits) traced to TorchScript.
pub fn tiny_model(path: &Path, classes: i64, size: i64, seed: i64) {
    let _guard = RNG.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(seed);
    let mut vs = nn::VarStore::new(Device::Cpu);
    let p = vs.root();
    let conv1 = nn::conv2d(
        &p / "c1",
        3,
        8,
        3,
        nn::ConvConfig {
            padding: 1,
            ..Default::default()
        },
    );
    let conv2 = nn::conv2d(
        &p / "c2",
        8,
        16,
        3,
        nn::ConvConfig {
            stride: 2,
            padding: 1,
            ..Default::default()
        },
    );
    let fc = nn::linear(&p / "fc", 16, classes, Default::default());
    let net = move |x: &Tensor| {
        let h = x.apply(&conv1).relu().apply(&conv2).relu();
        h.adaptive_avg_pool2d([1, 1]).flatten(1, -1).apply(&fc)
    };
    vs.freeze(); // traced weights become constants, which must not require grad
    trace(path, size, net);
}

/// A ResNet-18 (torchvision's architecture: 7×7 stem, four stages of two basic blocks, global
/// average pool, linear head; random weights, BatchNorm in eval mode) traced to TorchScript. Built
/// here rather than with `tch::vision::resnet`, whose flatten records the tracing batch size as a
/// constant (the traced module would only take batches of one).
pub fn resnet18_model(path: &Path, classes: i64, size: i64) {
    let _guard = RNG.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(18);
    let mut vs = nn::VarStore::new(Device::Cpu);
    let p = vs.root();
    let conv = |p: nn::Path, i, o, k, stride, padding| {
        nn::conv2d(
            p,
            i,
            o,
            k,
            nn::ConvConfig {
                stride,
                padding,
                bias: false,
                ..Default::default()
            },
        )
    };
    let bn = |p: nn::Path, c| nn::batch_norm2d(p, c, Default::default());
    let block = |p: nn::Path, i: i64, o: i64, stride: i64| {
        let c1 = conv(&p / "conv1", i, o, 3, stride, 1);
        let b1 = bn(&p / "bn1", o);
        let c2 = conv(&p / "conv2", o, o, 3, 1, 1);
        let b2 = bn(&p / "bn2", o);
        let down = (stride != 1 || i != o)
            .then(|| (conv(&p / "down", i, o, 1, stride, 0), bn(&p / "down_bn", o)));
        nn::func_t(move |x, t| {
            let y = x
                .apply(&c1)
                .apply_t(&b1, t)
                .relu()
                .apply(&c2)
                .apply_t(&b2, t);
            let skip = match &down {
                Some((c, b)) => x.apply(c).apply_t(b, t),
                None => x.shallow_clone(),
            };
            (y + skip).relu()
        })
    };
    let stem = conv(&p / "conv1", 3, 64, 7, 2, 3);
    let stem_bn = bn(&p / "bn1", 64);
    let mut stages = nn::seq_t();
    for (i, (c_in, c_out, stride)) in [(64, 64, 1), (64, 128, 2), (128, 256, 2), (256, 512, 2)]
        .into_iter()
        .enumerate()
    {
        stages = stages
            .add(block(&p / format!("layer{i}a"), c_in, c_out, stride))
            .add(block(&p / format!("layer{i}b"), c_out, c_out, 1));
    }
    let fc = nn::linear(&p / "fc", 512, classes, Default::default());
    vs.freeze();
    trace(path, size, move |x| {
        x.apply(&stem)
            .apply_t(&stem_bn, false)
            .relu()
            .max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false)
            .apply_t(&stages, false)
            .adaptive_avg_pool2d([1, 1])
            .flatten(1, -1)
            .apply(&fc)
    });
}

/// A module whose output is not (N,C): it returns the input's spatial map (N,1,S,S).
pub fn bad_shape_model(path: &Path, size: i64) {
    trace(path, size, |x| x.mean_dim(1, true, Kind::Float));
}

pub fn trace(path: &Path, size: i64, f: impl Fn(&Tensor) -> Tensor) {
    let input = Tensor::zeros([1, 3, size, size], (Kind::Float, Device::Cpu));
    let m = tch::no_grad(|| {
        CModule::create_by_tracing("Model", "forward", &[input], &mut |xs| vec![f(&xs[0])])
    })
    .expect("trace");
    m.save(path).expect("save traced model");
}

/// Unused-import guard for `Module` (used through `apply`).
fn _uses(_: &dyn Module) {}

/// Run a command that must succeed; on failure the panic shows its stderr.
pub fn ok(cmd: &mut assert_cmd::Command) -> std::process::Output {
    let out = cmd.output().expect("run fool");
    assert!(
        out.status.success(),
        "{:?} failed:\n{}",
        cmd,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Run a `--json` command that must succeed, and parse its stdout.
pub fn ok_json(cmd: &mut assert_cmd::Command) -> serde_json::Value {
    json(&ok(cmd))
}

/// Parse stdout of a `--json` run.
pub fn json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}
