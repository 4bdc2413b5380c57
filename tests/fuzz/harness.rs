//! Fuzz targets for the parsers fool feeds untrusted files to, and the seeded mutator that
//! feeds them. One file, included with `#[path]` by the corpus replay test
//! (`tests/it/fuzz_replay.rs`, run in CI) and by the long-running fuzzer (`examples/fuzz/`), so
//! both run the same targets on the same mutants.
//!
//! Why a home-made mutator and not `cargo fuzz`: cargo-fuzz needs a nightly toolchain and
//! libFuzzer's sanitizer builds, and every target here links libtorch (through `fool`), which
//! does not take kindly to them; CI runs stable. `proptest`/`arbitrary` generate structured
//! values, not corrupt files. So this is a blind (not coverage-guided) mutation fuzzer with no
//! new dependency: [`fool::rng::SplitMix64`] for determinism, byte-level edits biased towards
//! headers (huge widths, heights, counts), per-format dictionaries, and two fix-ups that carry
//! mutants past checksums (PNG chunk CRCs are recomputed; gzip files are mutated inside and
//! compressed again). Its reach comes from the seeds (`tests/fuzz/corpus/`, written by
//! `cargo run --release --example fuzz -- --write-corpus`).
//!
//! A target fails on a panic, an error message that is not one line free of control
//! characters (it goes to the user's terminal as is), or an input that takes too long.
#![allow(dead_code)] // each includer uses a different part

use fool::datasets::{self, DatasetName, Split};
use fool::rng::{fnv1a, SplitMix64};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The perturbation side the `.npy` target asks for (the seeds are (1, 3, 4, 4)).
pub const NPY_SIDE: u32 = 4;
/// Mutants are cut to this length.
pub const MAX_LEN: usize = 1 << 20;

/// One fuzz target: a parser (or a few sharing an input format) and its dictionary.
pub struct Target {
    pub name: &'static str,
    pub about: &'static str,
    run: fn(&Path, &[u8], &mut Tally) -> Result<(), String>,
    dict: &'static [&'static [u8]],
}

/// Every target, in the order the fuzzer runs them.
pub const TARGETS: &[Target] = &[
    Target {
        name: "image",
        about: "imageio::load_rgb: PNG, JPEG (mozjpeg and image-crate paths), BMP, GIF, TIFF, WebP, PNM",
        run: image,
        dict: IMAGE_DICT,
    },
    Target {
        name: "npy",
        about: "perturbation::load, audit::outputs::{read_float_npy, read_labels_npy, read_outputs_npy}",
        run: npy,
        dict: NPY_DICT,
    },
    Target {
        name: "idx",
        about: "MNIST IDX images and labels, raw or gzip (datasets::load)",
        run: idx,
        dict: &[],
    },
    Target {
        name: "cifar10",
        about: "CIFAR-10 binary batch and batches.meta.txt (datasets::load)",
        run: cifar10,
        dict: &[b"\n", b"\r\n", b"\0", b"\xff", b"airplane\n"],
    },
    Target {
        name: "labels",
        about: "labels::Labels::load and --target resolution against the loaded labels",
        run: labels,
        dict: JSON_DICT,
    },
    Target {
        name: "labels-csv",
        about: "datasets::image_folder: labels.csv, and the wnids synset list",
        run: labels_csv,
        dict: CSV_DICT,
    },
    Target {
        name: "model-card",
        about: "model::ModelCard::beside (model.json) and the preprocessing it sets",
        run: model_card,
        dict: JSON_DICT,
    },
];

/// The target named `name`.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

const IMAGE_DICT: &[&[u8]] = &[
    b"IHDR",
    b"IDAT",
    b"IEND",
    b"PLTE",
    b"tRNS",
    b"acTL",
    b"fcTL",
    b"iCCP",
    b"\xff\xd8",
    b"\xff\xc0",
    b"\xff\xc2",
    b"\xff\xc4",
    b"\xff\xda",
    b"\xff\xdd",
    b"\xff\xd9",
    b"\xff\xee",
    b"Adobe",
    b"BM",
    b"GIF89a",
    b"NETSCAPE2.0",
    b"\x21\xf9\x04",
    b"II*\0",
    b"MM\0*",
    b"RIFF",
    b"WEBPVP8L",
    b"VP8X",
    b"ANIM",
    b"ALPH",
    b"P6\n",
    b"65535",
    b"\n255\n",
    b"ENDHDR\n",
    b"TUPLTYPE RGB_ALPHA\n",
];
const NPY_DICT: &[&[u8]] = &[
    b"\x93NUMPY",
    b"'descr': '<f4'",
    b"'descr': '>f8'",
    b"<i8",
    b"|u1",
    b"<u8",
    b"|b1",
    b"<U3",
    b"|O",
    b"<c8",
    b"<f2",
    b"[('a', '<f4')]",
    b"'fortran_order': True",
    b"'shape': (",
    b"(1, 3, 4, 4)",
    b"(4294967296, 4294967296)",
    b"()",
    b"(0,)",
    b",)",
    b"}",
    b"\n",
];
const JSON_DICT: &[&[u8]] = &[
    b"\"",
    b"\\u0000",
    b"\\u001b[31m",
    b"\\n",
    b"\\ud800",
    b"[",
    b"]",
    b"{",
    b"}",
    b",",
    b":",
    b"null",
    b"true",
    b"-1",
    b"1e309",
    b"-0",
    b"4294967296",
    b"18446744073709551616",
    b"NaN",
    b"\"0\"",
    b"\"size\"",
    b"\"std\": [0, 0, 0]",
    b"\xff",
];
const CSV_DICT: &[&[u8]] = &[
    b"\"",
    b"\"\"",
    b",",
    b"\n",
    b"\r\n",
    b"\r",
    b"\t",
    b"\x1b[31m",
    b"\0",
    b"file",
    b"index",
    b"-1",
    b"18446744073709551616",
    b"../",
    b"/etc/passwd",
    b"\xef\xbb\xbf",
    b"\xff",
];

/// What runs saw.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    /// Parser calls that accepted their input.
    pub calls_accepted: u64,
    /// Inputs at least one parser accepted.
    pub accepted: u64,
}

/// A parser's result judged: its value, `None` for an error that is one clean line, or the
/// violation.
fn judge<T>(what: &str, r: fool::Result<T>, tally: &mut Tally) -> Result<Option<T>, String> {
    match r {
        Ok(v) => {
            tally.calls_accepted += 1;
            Ok(Some(v))
        }
        Err(e) => {
            let msg = e.to_string();
            if std::env::var_os("FUZZ_TRACE").is_some() {
                eprintln!("  {what}: {msg}");
            }
            if msg.trim().is_empty() || msg.chars().any(char::is_control) {
                Err(format!(
                    "{what}: the error is not one line free of control characters: {msg:?}"
                ))
            } else {
                Ok(None)
            }
        }
    }
}

fn put(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).expect("write a fuzz input");
    p
}

/// An empty folder `ws/name` (emptied if it was there).
fn fresh_dir(ws: &Path, name: &str) -> PathBuf {
    let d = ws.join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create a fuzz folder");
    d
}

fn image(ws: &Path, input: &[u8], t: &mut Tally) -> Result<(), String> {
    let p = put(ws, "input", input);
    if let Some(img) = judge("load_rgb", fool::imageio::load_rgb(&p), t)? {
        let (w, h) = img.dimensions();
        let (max_pixels, _) = fool::imageio::decode_limits();
        if w == 0 || h == 0 || u64::from(w) * u64::from(h) > max_pixels {
            return Err(format!("load_rgb accepted a {w}×{h} image"));
        }
    }
    Ok(())
}

/// `.npy` int64 labels [0, 1], for `read_outputs_npy` beside the fuzzed outputs.
pub fn labels_npy_01() -> Vec<u8> {
    let mut data = Vec::new();
    for v in [0i64, 1] {
        data.extend_from_slice(&v.to_le_bytes());
    }
    npy_bytes(b"<i8", false, "(2,)", &data)
}

/// A version 1.0 `.npy` file: magic, header dict padded to 64 bytes, data.
pub fn npy_bytes(descr: &[u8], fortran: bool, shape: &str, data: &[u8]) -> Vec<u8> {
    let mut header = format!(
        "{{'descr': '{}', 'fortran_order': {}, 'shape': {shape}, }}",
        String::from_utf8_lossy(descr),
        if fortran { "True" } else { "False" }
    )
    .into_bytes();
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(b' ');
    }
    header.push(b'\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(data);
    out
}

fn npy(ws: &Path, input: &[u8], t: &mut Tally) -> Result<(), String> {
    use fool::audit::outputs::{self, OutputKind};
    let p = put(ws, "input.npy", input);
    if let Some(r) = judge(
        "perturbation::load",
        fool::perturbation::load(&p, NPY_SIDE),
        t,
    )? {
        let side = i64::from(NPY_SIDE);
        if r.size() != [1, 3, side, side] {
            return Err(format!("perturbation::load returned shape {:?}", r.size()));
        }
    }
    if let Some((values, shape)) = judge("read_float_npy", outputs::read_float_npy(&p), t)? {
        if values.len() != shape.iter().product::<usize>() {
            return Err(format!(
                "read_float_npy: {} values for shape {shape:?}",
                values.len()
            ));
        }
    }
    judge("read_labels_npy", outputs::read_labels_npy(&p), t)?;
    let labels = put(ws, "labels01.npy", &labels_npy_01());
    for kind in [OutputKind::Logits, OutputKind::Probabilities] {
        judge(
            "read_outputs_npy",
            outputs::read_outputs_npy(&p, &labels, kind),
            t,
        )?;
    }
    Ok(())
}

/// A big-endian IDX file: magic, dimensions, data.
pub fn idx_bytes(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = magic.to_be_bytes().to_vec();
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

/// Two 28×28 MNIST-like images (a gradient), as an IDX file.
pub fn idx_images_2() -> Vec<u8> {
    let px: Vec<u8> = (0..2 * 28 * 28).map(|i| (i * 7 % 256) as u8).collect();
    idx_bytes(2051, &[2, 28, 28], &px)
}

/// Labels 3 and 7, as an IDX file.
pub fn idx_labels_2() -> Vec<u8> {
    idx_bytes(2049, &[2], &[3, 7])
}

fn idx(ws: &Path, input: &[u8], t: &mut Tally) -> Result<(), String> {
    let ext = if input.starts_with(&[0x1f, 0x8b]) {
        ".gz"
    } else {
        ""
    };
    // The input as the image file, then as the label file, beside a valid other half.
    for (as_images, other) in [(true, idx_labels_2()), (false, idx_images_2())] {
        let d = fresh_dir(ws, "mnist");
        let (mine, theirs) = if as_images {
            ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
        } else {
            ("t10k-labels-idx1-ubyte", "t10k-images-idx3-ubyte")
        };
        put(&d, &format!("{mine}{ext}"), input);
        put(&d, theirs, &other);
        if let Some(ds) = judge(
            "datasets::load(mnist)",
            datasets::load(DatasetName::Mnist, &d, Split::Test),
            t,
        )? {
            let n = ds.len() as i64;
            if ds.images.size() != [n, 1, 28, 28] || ds.labels.size() != [n] {
                return Err(format!(
                    "mnist: images {:?}, labels {:?}",
                    ds.images.size(),
                    ds.labels.size()
                ));
            }
        }
    }
    Ok(())
}

/// One CIFAR-10 record: label 4, then 3072 pixel bytes.
pub fn cifar_record(label: u8) -> Vec<u8> {
    let mut r = vec![label];
    r.extend((0..3072).map(|i| (i * 13 % 256) as u8));
    r
}

fn cifar10(ws: &Path, input: &[u8], t: &mut Tally) -> Result<(), String> {
    // The input as the test batch, then as batches.meta.txt beside a valid one-record batch.
    for as_batch in [true, false] {
        let d = fresh_dir(ws, "cifar10");
        if as_batch {
            put(&d, "test_batch.bin", input);
        } else {
            put(&d, "test_batch.bin", &cifar_record(4));
            put(&d, "batches.meta.txt", input);
        }
        if let Some(ds) = judge(
            "datasets::load(cifar10)",
            datasets::load(DatasetName::Cifar10, &d, Split::Test),
            t,
        )? {
            let n = ds.len() as i64;
            if ds.images.size() != [n, 3, 32, 32] || ds.classes.len() != 10 {
                return Err(format!(
                    "cifar10: images {:?}, {} classes",
                    ds.images.size(),
                    ds.classes.len()
                ));
            }
        }
    }
    Ok(())
}

fn labels(ws: &Path, input: &[u8], t: &mut Tally) -> Result<(), String> {
    let p = put(ws, "labels.json", input);
    if let Some(l) = judge("Labels::load", fool::labels::Labels::load(&p), t)? {
        for spec in [
            "0",
            "1",
            "cat",
            "tench",
            "goldfsh",
            "-1",
            "99999999999999999999",
            "a,b",
        ] {
            judge("Labels::resolve", l.resolve(spec), t)?;
        }
        for i in 0..l.len().min(4) {
            let _ = (l.name(i), l.short(i));
        }
    }
    Ok(())
}

fn labels_csv(ws: &Path, input: &[u8], t: &mut Tally) -> Result<(), String> {
    let d = fresh_dir(ws, "folder");
    put(&d, "labels.csv", input);
    put(&d, "a.png", b"");
    judge(
        "image_folder(labels.csv)",
        datasets::image_folder(&d, None),
        t,
    )?;
    // The same bytes as a synset list, for a folder of files named by WordNet id.
    let d = fresh_dir(ws, "folder");
    put(&d, "n00000001_a.png", b"");
    put(&d, "n00000002_b.JPEG", b"");
    let wnids = put(ws, "wnids.txt", input);
    judge(
        "image_folder(wnids)",
        datasets::image_folder(&d, Some(&wnids)),
        t,
    )?;
    Ok(())
}

fn model_card(ws: &Path, input: &[u8], t: &mut Tally) -> Result<(), String> {
    let d = fresh_dir(ws, "model");
    put(&d, "model.json", input);
    let model = d.join("model.pt");
    if let Some(Some(_card)) = judge(
        "ModelCard::beside",
        fool::model::ModelCard::beside(&model),
        t,
    )? {
        let spec = fool::model::ModelSpec {
            path: model,
            device: tch::Device::Cpu,
            size: None,
            resize: None,
            mean: None,
            std: None,
            resize_always: false,
            labels: None,
            default_labels: d.join("no-labels.json"),
        };
        if let Some(pre) = judge("ModelSpec::preprocess", spec.preprocess(), t)? {
            judge("Preprocess::validate", pre.validate(), t)?;
        }
    }
    Ok(())
}

/// How one input fared.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Every parser returned (a value or a clean error).
    Fine,
    /// A parser panicked: the message.
    Panic(String),
    /// A parser's result broke the contract (an error on several lines, a wrong shape).
    Bad(String),
    /// The input took longer than the limit.
    Hang,
}

impl Verdict {
    pub fn is_fine(&self) -> bool {
        *self == Verdict::Fine
    }
    /// The kind of finding, for file names: `panic`, `bad`, `hang`.
    pub fn kind(&self) -> &'static str {
        match self {
            Verdict::Fine => "fine",
            Verdict::Panic(_) => "panic",
            Verdict::Bad(_) => "bad",
            Verdict::Hang => "hang",
        }
    }
}

/// The text of a panic payload.
pub fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(a non-text panic payload)".into())
}

impl Target {
    /// Run the target on `input` in this thread (workspace folder `ws`), catching panics.
    pub fn run(&self, ws: &Path, input: &[u8], tally: &mut Tally) -> Verdict {
        let before = tally.calls_accepted;
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            (self.run)(ws, input, tally)
        }));
        tally.accepted += u64::from(tally.calls_accepted > before);
        match result {
            Ok(Ok(())) => Verdict::Fine,
            Ok(Err(msg)) => Verdict::Bad(msg),
            Err(payload) => Verdict::Panic(panic_text(&*payload)),
        }
    }

    /// [`Target::run`] in a worker thread, giving up after `limit` (the worker is then left
    /// behind: fine for a test that fails, see the fuzzer for a clean restart).
    pub fn run_timed(&'static self, ws: &Path, input: &[u8], limit: Duration) -> Verdict {
        let (tx, rx) = std::sync::mpsc::channel();
        let (ws, input) = (ws.to_path_buf(), input.to_vec());
        std::thread::spawn(move || {
            let v = self.run(&ws, &input, &mut Tally::default());
            let _ = tx.send(v);
        });
        rx.recv_timeout(limit).unwrap_or(Verdict::Hang)
    }
}

/// The corpus folder of a target.
pub fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz/corpus")
        .join(target)
}

/// The corpus of a target: (file name, bytes), sorted by name.
pub fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(corpus_dir(target))
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .map(|e| {
                    let bytes = std::fs::read(e.path()).expect("read a corpus file");
                    (e.file_name().to_string_lossy().into_owned(), bytes)
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// The seed of mutant `i` of `target` under the run seed `seed` (each mutant is drawn from
/// its own stream, so any one can be made again alone).
pub fn mutant_seed(target: &str, seed: u64, i: u64) -> u64 {
    fnv1a(
        target
            .bytes()
            .chain(seed.to_le_bytes())
            .chain(i.to_le_bytes()),
    )
}

/// Mutant `i` of a target's corpus under `seed`: (index of the corpus file it came from, bytes).
pub fn mutant(target: &Target, corpus: &[&[u8]], seed: u64, i: u64) -> (usize, Vec<u8>) {
    let mut m = Mutator::new(mutant_seed(target.name, seed, i), target.dict);
    let base = m.below(corpus.len());
    (base, m.mutate(corpus[base], corpus))
}

/// Byte-level mutations, deterministic for a seed.
pub struct Mutator {
    rng: SplitMix64,
    dict: &'static [&'static [u8]],
}

const INTERESTING: [u64; 22] = [
    0,
    1,
    2,
    3,
    4,
    10,
    16,
    28,
    32,
    0x7f,
    0x80,
    0xff,
    0x100,
    3072,
    10_000,
    0x7fff,
    0x8000,
    0xffff,
    0x1_0000,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
];
const NUMBERS: [&str; 14] = [
    "0",
    "1",
    "-1",
    "2",
    "3",
    "255",
    "65535",
    "65536",
    "4294967295",
    "4294967296",
    "9223372036854775808",
    "100000000000000000000",
    "1e309",
    "0.5",
];

impl Mutator {
    pub fn new(seed: u64, dict: &'static [&'static [u8]]) -> Self {
        Mutator {
            rng: SplitMix64::new(seed),
            dict,
        }
    }

    /// Uniform in 0..n; 0 when n is 0.
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            self.rng.below(n as u64) as usize
        }
    }

    fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    /// An offset into `len` bytes, half the time within the first 64 (the headers).
    fn offset(&mut self, len: usize) -> usize {
        if self.one_in(2) {
            self.below(len.min(64))
        } else {
            self.below(len)
        }
    }

    /// A mutant of `base`: 1, 2, 4 or 8 stacked edits; gzip files are edited inside half the
    /// time and compressed again; PNG chunk CRCs are recomputed three times in four.
    pub fn mutate(&mut self, base: &[u8], others: &[&[u8]]) -> Vec<u8> {
        if base.starts_with(&[0x1f, 0x8b]) && self.one_in(2) {
            if let Some(inner) = gunzip(base) {
                let inner = self.edits(&inner, others);
                return gzip(&inner);
            }
        }
        let mut v = self.edits(base, others);
        if v.starts_with(PNG_SIGNATURE) && !self.one_in(4) {
            fix_png_crcs(&mut v);
        }
        v
    }

    fn edits(&mut self, base: &[u8], others: &[&[u8]]) -> Vec<u8> {
        let mut v = base.to_vec();
        for _ in 0..1 << self.below(4) {
            self.edit(&mut v, others);
        }
        v.truncate(MAX_LEN);
        v
    }

    fn edit(&mut self, v: &mut Vec<u8>, others: &[&[u8]]) {
        let len = v.len();
        match self.below(13) {
            0 if len > 0 => {
                let i = self.offset(len);
                v[i] ^= 1 << self.below(8);
            }
            1 if len > 0 => {
                let i = self.offset(len);
                v[i] = self.rng.next_u64() as u8;
            }
            2 if len > 0 => {
                let i = self.offset(len);
                v[i] = INTERESTING[self.below(12)] as u8;
            }
            3 | 4 if len >= 2 => {
                // A header field set to an interesting value: 2 or 4 bytes, either byte order.
                let width = if self.one_in(2) { 2 } else { 4 };
                let width = width.min(len);
                let i = self.offset(len - width + 1);
                let mut x = INTERESTING[self.below(INTERESTING.len())];
                if self.one_in(4) {
                    x = x.wrapping_sub(1);
                }
                let bytes = if self.one_in(2) {
                    x.to_be_bytes()[8 - width..].to_vec()
                } else {
                    x.to_le_bytes()[..width].to_vec()
                };
                v[i..i + width].copy_from_slice(&bytes);
            }
            5 if len > 0 => {
                let i = self.offset(len);
                let delta = 1 + self.below(16) as u8;
                v[i] = if self.one_in(2) {
                    v[i].wrapping_add(delta)
                } else {
                    v[i].wrapping_sub(delta)
                };
            }
            6 if len > 0 => {
                // Truncate: often just the last bytes, sometimes deep.
                let cut = if self.one_in(2) {
                    len - 1 - self.below(len.min(16))
                } else {
                    self.below(len)
                };
                v.truncate(cut);
            }
            7 if len > 1 => {
                let i = self.below(len);
                let n = 1 + self.below((len - i).min(256));
                v.drain(i..i + n);
            }
            8 if len > 0 => {
                // Duplicate a chunk somewhere (repeated chunks, frames, records).
                let i = self.below(len);
                let n = 1 + self.below((len - i).min(1024));
                let chunk = v[i..i + n].to_vec();
                let at = self.below(len + 1);
                v.splice(at..at, chunk);
            }
            9 => {
                let at = self.below(len + 1);
                let n = 1 + self.below(32);
                let bytes: Vec<u8> = if self.one_in(2) {
                    vec![self.rng.next_u64() as u8; n]
                } else {
                    (0..n).map(|_| self.rng.next_u64() as u8).collect()
                };
                v.splice(at..at, bytes);
            }
            10 if !self.dict.is_empty() => {
                let token = self.dict[self.below(self.dict.len())];
                let at = self.below(len + 1);
                if self.one_in(2) {
                    v.splice(at..at, token.iter().copied());
                } else {
                    let end = (at + token.len()).min(len);
                    v.splice(at..end, token.iter().copied());
                }
            }
            11 if !others.is_empty() => {
                // Splice: this file's head, another's tail.
                let other = others[self.below(others.len())];
                let at = self.below(len + 1);
                let from = self.below(other.len() + 1);
                v.truncate(at);
                v.extend_from_slice(&other[from..]);
            }
            12 => self.edit_number(v),
            _ => {
                if len > 0 {
                    let i = self.below(len);
                    v[i] ^= 0xff;
                }
            }
        }
    }

    /// Replace a run of ASCII digits (a size, a count, a shape in a text header) with an
    /// interesting number.
    fn edit_number(&mut self, v: &mut Vec<u8>) {
        let runs: Vec<(usize, usize)> = {
            let mut runs = Vec::new();
            let mut i = 0;
            while i < v.len() && runs.len() < 256 {
                if v[i].is_ascii_digit() {
                    let start = i;
                    while i < v.len() && v[i].is_ascii_digit() {
                        i += 1;
                    }
                    runs.push((start, i));
                } else {
                    i += 1;
                }
            }
            runs
        };
        if runs.is_empty() {
            return;
        }
        let (a, b) = runs[self.below(runs.len())];
        let n = NUMBERS[self.below(NUMBERS.len())];
        v.splice(a..b, n.bytes());
    }
}

pub const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

/// Recompute the CRC of every whole chunk of a PNG file.
pub fn fix_png_crcs(v: &mut [u8]) {
    let mut i = PNG_SIGNATURE.len();
    while i + 8 <= v.len() {
        let n = u32::from_be_bytes([v[i], v[i + 1], v[i + 2], v[i + 3]]) as usize;
        let end = match (i + 8).checked_add(n) {
            Some(e) if e + 4 <= v.len() => e,
            _ => break,
        };
        let mut crc = flate2::Crc::new();
        crc.update(&v[i + 4..end]);
        v[end..end + 4].copy_from_slice(&crc.sum().to_be_bytes());
        i = end + 4;
    }
}

/// Decompress a gzip file (at most 16 MiB out); `None` if it is not one.
pub fn gunzip(data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .take(16 << 20)
        .read_to_end(&mut out)
        .ok()?;
    Some(out)
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).expect("gzip into memory");
    e.finish().expect("gzip into memory")
}
