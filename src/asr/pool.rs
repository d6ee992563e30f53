//! The bounded ASR worker pool: a fixed number of OS threads, each owning one whisper decoding
//! state over the shared model, fed through a bounded queue. Async callers await a result
//! without ever blocking a tokio worker; when every worker is busy and the queue is full,
//! `transcribe` waits for room (backpressure) rather than growing memory.
//!
//! Cancellation is by generation: a caller that no longer wants a result (a barge-in made the
//! turn stale) simply drops the future; the worker finishes the job and its answer is discarded.

use crate::asr::whisper::{AsrError, Transcript, Whisper};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{Notify, mpsc, oneshot};

struct Job {
    audio: Vec<f32>,
    prompt: Option<Arc<str>>,
    /// A caller's pieces heard together ([`crate::asr::whisper::Transcriber::transcribe_as`]).
    joined: bool,
    reply: oneshot::Sender<Result<Transcript, AsrError>>,
    /// The caller stopped waiting (a waiter on the blocking pool keeps the reply open).
    abandoned: Arc<AtomicBool>,
}

/// Marks a job abandoned when its caller's future is dropped.
struct Abandon(Arc<AtomicBool>);

impl Drop for Abandon {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[derive(Clone)]
pub struct AsrPool {
    tx: mpsc::Sender<Job>,
    workers: usize,
    /// How many workers have finished their warm-up decode.
    warmed: Arc<(AtomicUsize, Notify)>,
    /// Results are awaited on tokio's blocking pool (see [`AsrPool::on_virtual_clock`]).
    wait_blocking: bool,
}

impl AsrPool {
    /// Workers sized for the machine: one per core. A decode alone takes `asr.threads` cores;
    /// decodes side by side take one each (see `cpu`), so calls that finish speaking together
    /// are transcribed together instead of queueing.
    pub fn default_workers() -> usize {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    }

    /// Starts `workers` threads (each creates its own decoding state) with room for `queue`
    /// waiting utterances.
    pub fn start(model: &Whisper, workers: usize, queue: usize) -> Result<AsrPool, AsrError> {
        let (tx, rx) = mpsc::channel::<Job>(queue.max(1));
        let rx = Arc::new(Mutex::new(rx));
        let warmed = Arc::new((AtomicUsize::new(0), Notify::new()));
        for i in 0..workers.max(1) {
            let mut t = model.transcriber()?;
            let rx = rx.clone();
            let warm = warmed.clone();
            std::thread::Builder::new()
                .name(format!("asr-{i}"))
                .spawn(move || {
                    // Warm-up: a state's first decode allocates whisper's buffers and takes
                    // several times longer than the next; the first caller should not pay it.
                    let tone: Vec<f32> = (0..16_000)
                        .map(|i| {
                            let t = i as f32 / 16_000.0;
                            0.1 * (t * 2.0 * std::f32::consts::PI * 220.0).sin()
                                * (t * 2.0 * std::f32::consts::PI * 4.0).sin().abs()
                        })
                        .collect();
                    let _ = t.transcribe(&tone, None);
                    warm.0.fetch_add(1, Ordering::SeqCst);
                    warm.1.notify_waiters();
                    loop {
                        // Only the waiting worker holds the lock; it is released before decoding.
                        let job = {
                            let mut guard = rx.lock().unwrap_or_else(|p| p.into_inner());
                            guard.blocking_recv()
                        };
                        let Some(job) = job else { break };
                        let gone = |job: &Job| {
                            job.reply.is_closed() || job.abandoned.load(Ordering::SeqCst)
                        };
                        // Nobody waits for it any more (the turn was cancelled): skip the work.
                        if gone(&job) {
                            crate::metrics::count(
                                crate::metrics::ASR_JOBS,
                                &[("outcome", "skipped")],
                                1.0,
                            );
                            continue;
                        }
                        let result = t.transcribe_as(&job.audio, job.prompt.as_deref(), job.joined);
                        // The caller may have gone while it ran (a turn that went on): the
                        // work was wasted, which is worth knowing on a busy line.
                        let outcome = if gone(&job) {
                            tracing::debug!(
                                audio_ms = job.audio.len() as u64 * 1000 / 16_000,
                                "a transcription finished after its turn moved on: discarded"
                            );
                            "discarded"
                        } else {
                            "delivered"
                        };
                        crate::metrics::count(
                            crate::metrics::ASR_JOBS,
                            &[("outcome", outcome)],
                            1.0,
                        );
                        let _ = job.reply.send(result);
                    }
                })
                .map_err(|e| AsrError::Decode(format!("cannot start ASR worker: {e}")))?;
        }
        Ok(AsrPool {
            tx,
            workers: workers.max(1),
            warmed,
            wait_blocking: false,
        })
    }

    /// For runs on tokio's paused clock (the virtual-clock call tests): each caller waits for its
    /// result on the blocking pool, which holds the clock still while whisper works, as it is for
    /// espeak-ng and SQLite. Costs a blocking thread per waiting transcription; not for serving.
    pub fn on_virtual_clock(mut self) -> AsrPool {
        self.wait_blocking = true;
        self
    }

    /// Whether this pool serves calls on a virtual clock (see [`AsrPool::on_virtual_clock`]).
    pub fn is_on_virtual_clock(&self) -> bool {
        self.wait_blocking
    }

    /// Resolves once every worker has finished its warm-up decode (the first caller then pays
    /// no warm-up, and no worker is still decoding when a short-lived process exits).
    pub async fn warmed(&self) {
        loop {
            let notified = self.warmed.1.notified();
            if self.warmed.0.load(Ordering::SeqCst) >= self.workers {
                return;
            }
            notified.await;
        }
    }

    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Transcribes one utterance on a worker, with whisper's initial `prompt` if given;
    /// `joined`: a caller's pieces heard together ([`crate::asr::whisper::Transcriber::transcribe_as`]).
    pub async fn transcribe(
        &self,
        audio: Vec<f32>,
        prompt: Option<Arc<str>>,
        joined: bool,
    ) -> Result<Transcript, AsrError> {
        let _queued = Queued::new();
        let (reply, rx) = oneshot::channel();
        let abandoned = Arc::new(AtomicBool::new(false));
        self.tx
            .send(Job {
                audio,
                prompt,
                joined,
                reply,
                abandoned: abandoned.clone(),
            })
            .await
            .map_err(|_| AsrError::PoolClosed)?;
        if !self.wait_blocking {
            return rx.await.map_err(|_| AsrError::PoolClosed)?;
        }
        let _abandon = Abandon(abandoned);
        match tokio::task::spawn_blocking(move || rx.blocking_recv()).await {
            Ok(Ok(result)) => result,
            _ => Err(AsrError::PoolClosed),
        }
    }
}

/// One transcription in `switchboard_asr_queue_depth` from the request until its result (or
/// until the caller stops waiting).
struct Queued;

impl Queued {
    fn new() -> Queued {
        crate::metrics::gauge_add(crate::metrics::ASR_QUEUE, &[], 1.0);
        Queued
    }
}

impl Drop for Queued {
    fn drop(&mut self) {
        crate::metrics::gauge_add(crate::metrics::ASR_QUEUE, &[], -1.0);
    }
}
