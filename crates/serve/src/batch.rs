//! The bounded queue and the one model worker: requests wait in a queue of at most `queue`
//! jobs (a full queue is refused at once, never blocks), the worker takes the first job, waits at
//! most `max_delay` for more, and runs up to `max_batch` images in one forward pass (a job larger
//! than that runs in chunks). Jobs whose caller has gone (timed out) are dropped unrun.
use crate::metrics::Metrics;
use crate::model::{ModelInfo, Predictor, Verdict};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// One request's images on their way to the model.
pub struct Job {
    /// `n` images of (3, S, S) pixels.
    pub x: Vec<f32>,
    pub n: usize,
    pub enqueued: Instant,
    pub reply: oneshot::Sender<Result<Done, String>>,
}

/// A job's answer with its timing.
pub struct Done {
    pub verdicts: Vec<Verdict>,
    /// Seconds in the queue before its batch started.
    pub queued: f64,
    /// Seconds of the forward pass(es) of its batch.
    pub compute: f64,
    /// Images in the batch it ran in.
    pub batch: usize,
}

/// Why a job was not queued.
#[derive(Debug, PartialEq)]
pub enum Refused {
    Full,
    Closed,
}

/// The sending side; dropping every clone stops the worker once the queue is drained.
#[derive(Clone)]
pub struct Queue {
    tx: SyncSender<Job>,
    metrics: Arc<Metrics>,
}

impl Queue {
    pub fn submit(&self, job: Job) -> Result<(), Refused> {
        match self.tx.try_send(job) {
            Ok(()) => {
                self.metrics.queue_depth.inc();
                Ok(())
            }
            Err(TrySendError::Full(_)) => Err(Refused::Full),
            Err(TrySendError::Disconnected(_)) => Err(Refused::Closed),
        }
    }
}

/// Batching limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_batch: usize,
    pub max_delay: Duration,
    pub queue: usize,
}

/// What the worker reports once its model is loaded: the model and the seconds it took, or why
/// it could not be loaded.
pub type Loaded = mpsc::Receiver<Result<(ModelInfo, f64), String>>;

/// Start the worker thread: it builds the predictor with `factory`, reports the model's info
/// (or the error) on the returned channel, then serves the queue until every `Queue` is dropped.
pub fn start(
    factory: crate::model::Factory,
    limits: Limits,
    metrics: Arc<Metrics>,
) -> (Queue, std::thread::JoinHandle<()>, Loaded) {
    let (tx, rx) = mpsc::sync_channel::<Job>(limits.queue.max(1));
    let (ready_tx, ready_rx) = mpsc::channel();
    let m = metrics.clone();
    let handle = std::thread::Builder::new()
        .name("fool-model".into())
        .spawn(move || {
            let t0 = Instant::now();
            let (mut predictor, info) = match factory() {
                Ok(p) => p,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            let _ = ready_tx.send(Ok((info, t0.elapsed().as_secs_f64())));
            worker(&mut *predictor, rx, limits, &m);
        })
        .expect("spawning the model worker thread");
    (Queue { tx, metrics }, handle, ready_rx)
}

fn worker(predictor: &mut dyn Predictor, rx: mpsc::Receiver<Job>, limits: Limits, m: &Metrics) {
    let max_batch = limits.max_batch.max(1);
    while let Ok(first) = rx.recv() {
        m.queue_depth.dec();
        let mut jobs = vec![first];
        let mut images = jobs[0].n;
        let deadline = Instant::now() + limits.max_delay;
        // Until the batch is full or the delay is over; past the deadline `recv_timeout` still
        // takes what is already waiting.
        while images < max_batch {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(j) = rx.recv_timeout(left) else { break };
            m.queue_depth.dec();
            images += j.n;
            jobs.push(j);
        }
        run_batch(predictor, jobs, max_batch, m);
    }
}

/// Run the jobs' images together (in chunks of `max_batch`) and answer each job.
fn run_batch(predictor: &mut dyn Predictor, jobs: Vec<Job>, max_batch: usize, m: &Metrics) {
    let started = Instant::now();
    let jobs: Vec<Job> = jobs.into_iter().filter(|j| !j.reply.is_closed()).collect();
    if jobs.is_empty() {
        return;
    }
    let n: usize = jobs.iter().map(|j| j.n).sum();
    let per = jobs[0].x.len() / jobs[0].n.max(1);
    let mut x = Vec::with_capacity(n * per);
    for j in &jobs {
        x.extend_from_slice(&j.x);
    }
    let mut verdicts = Vec::with_capacity(n);
    let mut failure = None;
    let t = Instant::now();
    for chunk in x.chunks(max_batch * per) {
        let len = chunk.len() / per;
        m.batch_size.observe(len as f64);
        match predictor.predict(chunk, len) {
            Ok(v) if v.len() == len => verdicts.extend(v),
            Ok(v) => {
                failure = Some(format!(
                    "the model returned {} verdicts for {len} images",
                    v.len()
                ));
                break;
            }
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    let compute = t.elapsed().as_secs_f64();
    m.compute_seconds.observe(compute);
    let mut rest = verdicts.into_iter();
    for j in jobs {
        let queued = started.duration_since(j.enqueued).as_secs_f64();
        m.queue_seconds.observe(queued);
        let answer = match &failure {
            Some(e) => Err(e.clone()),
            None => Ok(Done {
                verdicts: rest.by_ref().take(j.n).collect(),
                queued,
                compute,
                batch: n,
            }),
        };
        let _ = j.reply.send(answer);
    }
}
