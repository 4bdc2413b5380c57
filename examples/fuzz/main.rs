//! The long-running fuzzer for fool's file parsers (the targets and the mutator are in
//! `tests/fuzz/harness.rs`, shared with the CI replay test `tests/it/fuzz_replay.rs`).
//!
//! ```text
//! cargo run --release --example fuzz -- --target image --seconds 600 --seed 1
//! cargo run --release --example fuzz -- --target all --seconds 60      # each target in turn
//! cargo run --release --example fuzz -- --target npy --replay FILE...  # run saved inputs
//! cargo run --release --example fuzz -- --write-corpus                 # (re)write the seeds
//! ```
//!
//! A supervisor process runs each target in a child process (this program with `--child`),
//! single-threaded, under an address-space limit (`--mem-mib` above what it maps at start).
//! The child catches panics and saves the input; before each input it writes it to
//! `current.bin` in its work folder, so when the child dies (an abort, a failed allocation, a
//! stack overflow) or its watchdog stops it (an input running over `--timeout` seconds: a
//! hang) the supervisor saves that input, and starts a new child after it. Findings go to
//! `tests/fuzz/crashes/<target>/<kind>-<hash>.bin` with a `.txt` saying what happened.
#[path = "../../tests/fuzz/harness.rs"]
mod harness;
mod seeds;

use clap::Parser;
use harness::{Tally, Target, Verdict, TARGETS};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(about = "Fuzz fool's file parsers (see tests/fuzz/harness.rs)")]
struct Args {
    /// Targets, comma-separated, or `all`.
    #[arg(long, default_value = "all")]
    target: String,
    /// Seconds of fuzzing for each target.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Run seed (mutant i of a target under a seed is always the same input).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// An input running longer than this many seconds is a hang.
    #[arg(long, default_value_t = 10)]
    timeout: u64,
    /// Address space the child may map beyond what it maps at start, in MiB.
    #[arg(long, default_value_t = 4096)]
    mem_mib: u64,
    /// Where findings are saved.
    #[arg(long, default_value = "tests/fuzz/crashes")]
    crashes: PathBuf,
    /// Run these files through the target and print the verdicts.
    #[arg(long, num_args = 1..)]
    replay: Vec<PathBuf>,
    /// Write the generated seeds into tests/fuzz/corpus/<target>/.
    #[arg(long)]
    write_corpus: bool,
    #[arg(long, hide = true)]
    child: bool,
    /// First mutant index (child).
    #[arg(long, hide = true, default_value_t = 0)]
    start: u64,
    /// The child's work folder.
    #[arg(long, hide = true)]
    work: Option<PathBuf>,
}

fn main() {
    let args = Args::parse();
    if args.write_corpus {
        return write_corpus();
    }
    let targets: Vec<&'static Target> = if args.target == "all" {
        TARGETS.iter().collect()
    } else {
        args.target
            .split(',')
            .map(|n| {
                harness::target(n.trim()).unwrap_or_else(|| {
                    let names: Vec<_> = TARGETS.iter().map(|t| t.name).collect();
                    eprintln!("fuzz: no target {n:?}; targets: {}", names.join(", "));
                    std::process::exit(2)
                })
            })
            .collect()
    };
    if !args.replay.is_empty() {
        return replay(&targets, &args.replay);
    }
    if args.child {
        return child(targets[0], &args);
    }
    let mut rows = Vec::new();
    for t in targets {
        rows.push(supervise(t, &args));
    }
    println!("\n{}", Summary::header());
    for r in &rows {
        println!("{}", r.line());
    }
}

fn write_corpus() {
    let mut total = 0;
    for (target, name, bytes) in seeds::all() {
        let dir = harness::corpus_dir(target);
        std::fs::create_dir_all(&dir).expect("create the corpus folder");
        std::fs::write(dir.join(&name), &bytes).expect("write a seed");
        total += bytes.len();
    }
    println!("wrote {} seeds, {total} bytes", seeds::all().len());
}

fn replay(targets: &[&'static Target], files: &[PathBuf]) {
    let ws = tempfile::tempdir().expect("a work folder");
    let mut bad = 0;
    for t in targets {
        for f in files {
            let bytes = std::fs::read(f).expect("read an input");
            let start = Instant::now();
            // In this thread, without a time limit: this is for reproducing findings.
            let mut tally = Tally::default();
            let v = t.run(ws.path(), &bytes, &mut tally);
            bad += usize::from(!v.is_fine());
            println!(
                "{}: {}: {v:?}, {} parser calls accepted it ({:.3} s)",
                t.name,
                f.display(),
                tally.calls_accepted,
                start.elapsed().as_secs_f64()
            );
        }
    }
    std::process::exit(i32::from(bad > 0));
}

/// Exit code of a child stopped by its watchdog.
const HANG_EXIT: i32 = 75;

/// Totals of one target's run.
#[derive(Default)]
struct Summary {
    target: &'static str,
    seconds: f64,
    /// CPU seconds of the child processes (the machine may be shared).
    cpu: f64,
    execs: u64,
    accepted: u64,
    panics: u64,
    bad: u64,
    hangs: u64,
    deaths: u64,
    saved: Vec<String>,
}

impl Summary {
    fn header() -> String {
        format!(
            "{:<11} {:>8} {:>8} {:>10} {:>8} {:>9} {:>6} {:>5} {:>5} {:>6}",
            "target",
            "seconds",
            "cpu s",
            "execs",
            "exec/s",
            "accepted",
            "panics",
            "bad",
            "hangs",
            "deaths"
        )
    }
    fn line(&self) -> String {
        format!(
            "{:<11} {:>8.0} {:>8.0} {:>10} {:>8.0} {:>8.1}% {:>6} {:>5} {:>5} {:>6}",
            self.target,
            self.seconds,
            self.cpu,
            self.execs,
            self.execs as f64 / self.seconds.max(1e-9),
            100.0 * self.accepted as f64 / self.execs.max(1) as f64,
            self.panics,
            self.bad,
            self.hangs,
            self.deaths
        )
    }
}

/// Run `target` for `args.seconds` in child processes, restarting after each death.
fn supervise(target: &'static Target, args: &Args) -> Summary {
    let start = Instant::now();
    let deadline = start + Duration::from_secs(args.seconds);
    let work = tempfile::tempdir().expect("a work folder");
    let mut s = Summary {
        target: target.name,
        ..Summary::default()
    };
    let mut next = 0u64;
    let mut restarts = 0;
    let cpu0 = children_cpu();
    eprintln!(
        "fuzz {}: {} s, seed {}",
        target.name, args.seconds, args.seed
    );
    while Instant::now() < deadline && restarts < 200 {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .as_secs()
            .max(1);
        let stderr_path = work.path().join("stderr.log");
        let _ = std::fs::remove_file(work.path().join("progress"));
        let mut child = std::process::Command::new(std::env::current_exe().expect("own path"))
            .args(["--child", "--target", target.name])
            .args([
                "--seconds",
                &left.to_string(),
                "--seed",
                &args.seed.to_string(),
            ])
            .args(["--timeout", &args.timeout.to_string()])
            .args([
                "--mem-mib",
                &args.mem_mib.to_string(),
                "--start",
                &next.to_string(),
            ])
            .arg("--crashes")
            .arg(&args.crashes)
            .arg("--work")
            .arg(work.path())
            .env("OMP_NUM_THREADS", "1")
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(&stderr_path).expect("a stderr log"))
            .spawn()
            .expect("start a fuzz child");
        let mut done = None;
        for line in std::io::BufReader::new(child.stdout.take().expect("piped")).lines() {
            let line = line.unwrap_or_default();
            if let Some(rest) = line.strip_prefix("DONE ") {
                done = Some(rest.to_string());
            } else if let Some(rest) = line.strip_prefix("FOUND ") {
                eprintln!("fuzz {}: {rest}", target.name);
                s.saved.push(rest.to_string());
            } else {
                eprintln!("fuzz {}: {line}", target.name);
            }
        }
        let status = child.wait().expect("wait for the fuzz child");
        // Counts the child reported: `execs accepted panics bad`.
        let counts = |text: &str| -> Vec<u64> {
            text.split_whitespace()
                .filter_map(|w| w.split_once('=').and_then(|(_, v)| v.parse().ok()))
                .collect()
        };
        let progress = std::fs::read_to_string(work.path().join("progress")).unwrap_or_default();
        let c = counts(done.as_deref().unwrap_or(&progress));
        if c.len() == 4 {
            s.execs += c[0];
            s.accepted += c[1];
            s.panics += c[2];
            s.bad += c[3];
        }
        if status.success() && done.is_some() {
            break;
        }
        // The child died on an input, or was stopped on one: save it, go on after it.
        restarts += 1;
        let current = std::fs::read(work.path().join("current.bin")).unwrap_or_default();
        if current.len() < 8 {
            eprintln!(
                "fuzz {}: the child failed before its first input: {status}",
                target.name
            );
            break;
        }
        let i = u64::from_le_bytes(current[..8].try_into().expect("8 bytes"));
        let input = &current[8..];
        // The progress file is written every 1000 inputs: count the ones after it.
        s.execs += (i + 1).saturating_sub(next + c.first().copied().unwrap_or(0));
        let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
        // The first line says what happened ("memory allocation of N bytes failed"); a
        // backtrace may follow.
        let tail: String = stderr
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .to_string();
        // With RUST_BACKTRACE set, the first two frames outside the standard library tell one
        // bug from another.
        let frames: Vec<&str> = stderr
            .lines()
            .map(str::trim)
            .filter_map(|l| l.split_once(": ").map(|(_, f)| f))
            .filter(|f| {
                f.contains("::")
                    && ![
                        "std::",
                        "core::",
                        "alloc::",
                        "__rustc",
                        "<alloc::",
                        "<u8 as alloc",
                    ]
                    .iter()
                    .any(|p| f.starts_with(p))
            })
            .take(2)
            .collect();
        let tail = if frames.is_empty() {
            tail
        } else {
            format!("{tail} in {}", frames.join(" < "))
        };
        let kind = if status.code() == Some(HANG_EXIT) {
            s.hangs += 1;
            "hang"
        } else {
            s.deaths += 1;
            "death"
        };
        let what = format!(
            "{kind} on mutant {i} (seed {}): {status}; stderr: {tail}",
            args.seed
        );
        if let Some(f) = save(&args.crashes, target.name, kind, &tail, input, &what) {
            eprintln!("fuzz {}: {what} -> {}", target.name, f.display());
            s.saved.push(f.display().to_string());
        }
        next = i + 1;
    }
    s.seconds = start.elapsed().as_secs_f64();
    s.cpu = children_cpu() - cpu0;
    eprintln!("{}", s.line());
    s
}

/// Save a finding as `<crashes>/<target>/<kind>-<key hash>-<input hash>.bin` (+ `.txt`
/// saying what happened); `None` if that input was saved before, or 3 inputs with the same
/// `key` (the message without digits and paths: one bug) were.
fn save(
    crashes: &Path,
    target: &str,
    kind: &str,
    key: &str,
    input: &[u8],
    what: &str,
) -> Option<PathBuf> {
    let dir = crashes.join(target);
    std::fs::create_dir_all(&dir).ok()?;
    let key: String = key
        .split(['/', '\''])
        .next()
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_ascii_digit())
        .collect();
    let prefix = format!("{kind}-{:08x}-", fool::rng::fnv1a(key.bytes()) as u32);
    let same = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    n.starts_with(&prefix) && n.ends_with(".bin")
                })
                .count()
        })
        .unwrap_or(0);
    let hash = fool::rng::fnv1a(input.iter().copied());
    let path = dir.join(format!("{prefix}{:08x}.bin", hash as u32));
    if same >= 3 || path.exists() {
        return None;
    }
    std::fs::write(&path, input).ok()?;
    std::fs::write(path.with_extension("txt"), format!("{what}\n")).ok()?;
    Some(path)
}

/// CPU seconds (user + system) of the child processes waited for so far.
fn children_cpu() -> f64 {
    // SAFETY: getrusage fills the zeroed struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe {
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut u);
    }
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

/// Milliseconds since the child started at which the current input started; 0 when idle.
static BUSY_SINCE: AtomicU64 = AtomicU64::new(0);

/// Limit the address space to what is mapped now plus `mib`.
fn limit_memory(mib: u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let mapped_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmSize:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let bytes = (mapped_kib * 1024).saturating_add(mib << 20);
    let lim = libc::rlimit {
        rlim_cur: bytes as libc::rlim_t,
        rlim_max: bytes as libc::rlim_t,
    };
    // SAFETY: setrlimit with a valid, initialized struct.
    unsafe {
        libc::setrlimit(libc::RLIMIT_AS, &lim);
    }
}

/// The child: fuzz one target until the deadline, saving panics and bad errors itself.
fn child(target: &'static Target, args: &Args) {
    tch::set_num_threads(1);
    let work = args.work.clone().expect("--work");
    let corpus_files = harness::corpus(target.name);
    if corpus_files.is_empty() {
        eprintln!(
            "fuzz: no corpus in {}",
            harness::corpus_dir(target.name).display()
        );
        std::process::exit(2);
    }
    let corpus: Vec<&[u8]> = corpus_files.iter().map(|(_, b)| b.as_slice()).collect();
    let ws = work.join("ws");
    std::fs::create_dir_all(&ws).expect("a workspace");
    // Panics are caught and reported per input; the hook only keeps them quiet. (imageio
    // catches mozjpeg's unwinding itself: those are not findings.)
    std::panic::set_hook(Box::new(|_| {}));
    let started = Instant::now();
    let timeout_ms = args.timeout * 1000;
    std::thread::spawn(move || loop {
        std::thread::sleep(Duration::from_millis(100));
        let busy = BUSY_SINCE.load(Ordering::Relaxed);
        let now = started.elapsed().as_millis() as u64 + 1;
        if busy != 0 && now.saturating_sub(busy) > timeout_ms {
            let _ = std::io::stdout().flush();
            std::process::exit(HANG_EXIT);
        }
    });
    limit_memory(args.mem_mib);
    let deadline = started + Duration::from_secs(args.seconds);
    let mut tally = Tally::default();
    let (mut execs, mut panics, mut bad) = (0u64, 0u64, 0u64);
    let current = work.join("current.bin");
    let progress = work.join("progress");
    let mut i = args.start;
    let report = |execs, accepted, panics, bad| {
        format!("execs={execs} accepted={accepted} panics={panics} bad={bad}")
    };
    while Instant::now() < deadline {
        // The corpus itself first, then mutants.
        let input = if (i as usize) < corpus.len() {
            corpus[i as usize].to_vec()
        } else {
            harness::mutant(target, &corpus, args.seed, i).1
        };
        let mut record = i.to_le_bytes().to_vec();
        record.extend_from_slice(&input);
        std::fs::write(&current, &record).expect("write current.bin");
        BUSY_SINCE.store(started.elapsed().as_millis() as u64 + 1, Ordering::Relaxed);
        let verdict = target.run(&ws, &input, &mut tally);
        BUSY_SINCE.store(0, Ordering::Relaxed);
        execs += 1;
        let msg = match &verdict {
            Verdict::Panic(m) => {
                panics += 1;
                Some(m.clone())
            }
            Verdict::Bad(m) => {
                bad += 1;
                Some(m.clone())
            }
            _ => None,
        };
        if let Some(m) = msg {
            let what = format!("{} on mutant {i} (seed {}): {m}", verdict.kind(), args.seed);
            if let Some(f) = save(
                &args.crashes,
                target.name,
                verdict.kind(),
                &m,
                &input,
                &what,
            ) {
                println!("FOUND {what} -> {}", f.display());
            }
        }
        if execs % 1000 == 0 || verdict != Verdict::Fine {
            let _ = std::fs::write(&progress, report(execs, tally.accepted, panics, bad));
        }
        if execs % 20_000 == 0 {
            println!(
                "{execs} inputs, {:.0}/s",
                execs as f64 / started.elapsed().as_secs_f64()
            );
        }
        i += 1;
    }
    println!("DONE {}", report(execs, tally.accepted, panics, bad));
}
