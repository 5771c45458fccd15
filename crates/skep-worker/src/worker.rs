//! The worker loop: take a task from the pool's topic, read the file,
//! publish the result, then ack. The same loop runs in a `skep-worker`
//! container and inside `skep run` (one per local replica).
//!
//! Guarantees:
//! - a delivery is acked only after its result was published, so a worker
//!   that dies at any point loses nothing (the queue hands the task out
//!   again);
//! - a delivery is touched while its file is being read, so a long file is
//!   not handed to a second worker;
//! - a task delivered more than `maxAttempts` times is answered with
//!   `attemptsExceeded` without reading it again (a file that kills workers
//!   cannot kill them for ever);
//! - on shutdown the worker stops taking tasks, finishes those in flight
//!   within the grace period and hands back the rest.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use skep_api::{
    FailureReason, Outcome, RESULTS_TOPIC, ResultMessage, TaskMessage, WIRE_VERSION, WireError, WorkerRef, task_topic,
};
use skep_queue::{Delivery, QueueError, SubscribeOptions, Subscription, TaskQueue};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::document::{ReadOutput, ReadRequest};
use crate::engine::{DEFAULT_MAX_FILE_BYTES, EngineConfig};
use crate::fetch::{self, Fetcher, FileAccess, Source};
use crate::slot::OcrSlot;
use crate::staging::StagingTarget;

/// Channel name the workers of a pool share.
pub const WORKER_CHANNEL: &str = "workers";
pub const DEFAULT_VISIBILITY_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(25);

/// Hooks the worker loop calls as it goes, for metrics and health checks.
/// Called from the loop and its tasks: implementations must return at once
/// (no blocking, no I/O).
pub trait WorkerObserver: Send + Sync + std::fmt::Debug {
    /// Subscribed to the pool's task topic: the worker takes tasks.
    fn subscribed(&self) {}
    /// The subscription could not be made (`Some(error)`) or ended (`None`:
    /// the broker connection was lost or the queue deleted). The loop
    /// subscribes again with backoff.
    fn unsubscribed(&self, _error: Option<&QueueError>) {}
    /// A delivery was taken and is being worked on.
    fn task_started(&self) {}
    /// A delivery taken earlier is no longer worked on: settled, handed
    /// back, or its task aborted at the end of the stop grace. Exactly once
    /// per [`WorkerObserver::task_started`].
    fn task_ended(&self) {}
    /// A result was published: its file is answered.
    fn result_published(&self, _result: &ResultMessage) {}
    /// Publishing a result failed; the loop retries.
    fn publish_failed(&self, _error: &QueueError) {}
    /// A task's file was fetched through its URL (`result` is one of
    /// [`crate::fetch::FETCH_RESULTS`]; `bytes` 0 unless it is `ok`).
    fn file_fetched(&self, _result: &'static str, _bytes: u64, _took: Duration) {}
}

/// The observer that ignores everything: the default.
#[derive(Debug, Default)]
pub struct NoObserver;

impl WorkerObserver for NoObserver {}

#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Unique per worker process (or local replica).
    pub id: String,
    /// Host the worker runs on, reported in results (`status.nodesUsed`).
    pub node: String,
    pub pool: String,
    /// Files read at once; one Tesseract thread each. Threads = cores is
    /// right: more add memory (~55 MiB each) and no speed.
    pub slots: usize,
    /// A delivery not touched for this long is handed out again.
    pub visibility_timeout: Duration,
    pub max_file_bytes: u64,
    /// How long in-flight files may run on after shutdown begins.
    pub stop_grace: Duration,
    /// Told of subscriptions and files as they happen; [`NoObserver`] by
    /// default.
    pub observer: Arc<dyn WorkerObserver>,
    /// Whether a task's file is read from its path or its URL.
    pub file_access: FileAccess,
    /// Where files fetched through URLs are kept while they are read.
    pub fetch_dir: PathBuf,
    /// Roots trusted for `https://` file URLs beside the system's.
    pub fetch_roots: Vec<reqwest::Certificate>,
    /// How often the worker publishes its heartbeat on
    /// [`skep_api::WORKERS_TOPIC`]; `None`: never.
    pub beat_interval: Option<Duration>,
}

impl WorkerConfig {
    pub fn new(id: impl Into<String>, node: impl Into<String>, pool: impl Into<String>, slots: usize) -> Self {
        Self {
            id: id.into(),
            node: node.into(),
            pool: pool.into(),
            slots: slots.max(1),
            visibility_timeout: DEFAULT_VISIBILITY_TIMEOUT,
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            stop_grace: DEFAULT_STOP_GRACE,
            observer: Arc::new(NoObserver),
            file_access: FileAccess::Auto,
            fetch_dir: std::env::temp_dir().join("skep-fetch"),
            fetch_roots: Vec::new(),
            beat_interval: Some(Duration::from_millis(skep_api::BEAT_INTERVAL_MS)),
        }
    }
}

/// What one worker did, for its exit log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkerReport {
    pub succeeded: u64,
    pub failed: u64,
    /// Deliveries handed back unfinished at shutdown.
    pub handed_back: u64,
}

#[derive(Default)]
struct Counters {
    succeeded: AtomicU64,
    failed: AtomicU64,
    in_flight: AtomicU64,
}

struct Ctx {
    queue: Arc<dyn TaskQueue>,
    cfg: WorkerConfig,
    fetcher: Fetcher,
    counters: Counters,
    /// Cancelled when the worker must stop retrying a result publish.
    hard_stop: CancellationToken,
    /// Set once a failed heartbeat was logged as a warning.
    beat_warned: std::sync::atomic::AtomicBool,
}

/// Runs until `shutdown` is cancelled, then drains (see the module docs).
pub async fn run(queue: Arc<dyn TaskQueue>, cfg: WorkerConfig, shutdown: CancellationToken) -> WorkerReport {
    // NB: the roots were parsed when the configuration was made; the
    // client builds from them or the TLS stack itself is broken.
    let fetcher = Fetcher::new(&cfg.fetch_dir, cfg.max_file_bytes, &cfg.fetch_roots).expect("an HTTP client");
    let ctx = Arc::new(Ctx {
        queue,
        fetcher,
        cfg,
        counters: Counters::default(),
        hard_stop: CancellationToken::new(),
        beat_warned: std::sync::atomic::AtomicBool::new(false),
    });
    let slots = ctx.cfg.slots;
    let (free_tx, mut free_rx) = mpsc::channel::<OcrSlot>(slots);
    for i in 0..slots {
        let _ = free_tx.try_send(OcrSlot::new(format!("{}-{i}", ctx.cfg.id)));
    }
    // NB: aborted when dropped: a worker future dropped mid-run (aborted
    // by its owner) stops beating too.
    let beats = ctx.cfg.beat_interval.map(|every| {
        let (ctx, stop) = (ctx.clone(), shutdown.clone());
        AbortOnDrop(tokio::spawn(async move {
            // NB: a tick per interval whatever a publish took, so a slow
            // broker does not stretch the period into looking stale.
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = ticks.tick() => beat(&ctx, every, false).await,
                }
            }
        }))
    });
    let mut tasks = JoinSet::new();
    let mut sub: Option<Box<dyn Subscription>> = None;
    let mut backoff = Duration::from_millis(100);
    info!(worker = %ctx.cfg.id, pool = %ctx.cfg.pool, slots, "worker started");

    'outer: loop {
        let slot = tokio::select! {
            _ = shutdown.cancelled() => break,
            s = free_rx.recv() => match s { Some(s) => s, None => break },
        };
        let delivery = loop {
            while let Some(done) = tasks.try_join_next() {
                if let Err(e) = done {
                    warn!(error = %e, "a task of the worker ended abnormally");
                }
            }
            let current = match sub.as_mut() {
                Some(s) => s,
                None => {
                    let opts = SubscribeOptions::new(WORKER_CHANNEL, slots, ctx.cfg.visibility_timeout);
                    match ctx.queue.subscribe(&task_topic(&ctx.cfg.pool), opts).await {
                        Ok(s) => {
                            backoff = Duration::from_millis(100);
                            ctx.cfg.observer.subscribed();
                            sub.insert(s)
                        }
                        Err(error) => {
                            warn!(%error, retry_in = ?backoff, "cannot subscribe to the task queue");
                            ctx.cfg.observer.unsubscribed(Some(&error));
                            tokio::select! {
                                _ = shutdown.cancelled() => break 'outer,
                                _ = tokio::time::sleep(backoff) => {}
                            }
                            backoff = (backoff * 2).min(Duration::from_secs(10));
                            continue;
                        }
                    }
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => break 'outer,
                d = current.next() => match d {
                    Some(d) => break d,
                    None => {
                        warn!("task subscription ended; subscribing again");
                        ctx.cfg.observer.unsubscribed(None);
                        sub = None;
                    }
                },
            }
        };
        let ctx = ctx.clone();
        let free_tx = free_tx.clone();
        let span = info_span!("task", worker = %ctx.cfg.id, delivery = %delivery.id);
        ctx.cfg.observer.task_started();
        let ended = TaskEnded(ctx.cfg.observer.clone());
        let counted = InFlight::start(ctx.clone());
        tasks.spawn(
            async move {
                let _ended = ended;
                let _counted = counted;
                let mut slot = slot;
                process(&ctx, delivery, &mut slot).await;
                let _ = free_tx.send(slot).await;
            }
            .instrument(span),
        );
    }

    // Stop receiving before draining, so nothing new arrives.
    drop(sub);
    // NB: the last beat goes now, before the drain: this worker takes no
    // new task, so the controller stops counting its slots at once. The
    // beat loop is stopped first, so no regular beat can follow it.
    if let Some(mut beats) = beats {
        beats.0.abort();
        let _ = (&mut beats.0).await;
        if let Some(every) = ctx.cfg.beat_interval {
            beat(&ctx, every, true).await;
        }
    }
    let in_flight = tasks.len() as u64;
    let grace = ctx.cfg.stop_grace;
    let drained = tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} })
        .await
        .is_ok();
    let mut handed_back = 0;
    if !drained {
        handed_back = tasks.len() as u64;
        warn!(handed_back, ?grace, "grace period over; handing unfinished tasks back");
        ctx.hard_stop.cancel();
        // NB: aborting drops each task's Delivery unsettled, which requeues it.
        tasks.shutdown().await;
    }
    let report = WorkerReport {
        succeeded: ctx.counters.succeeded.load(Ordering::Relaxed),
        failed: ctx.counters.failed.load(Ordering::Relaxed),
        handed_back,
    };
    info!(worker = %ctx.cfg.id, in_flight_at_stop = in_flight, ?report, "worker stopped");
    report
}

/// Publishes one heartbeat; a failure is only logged (the next one may
/// pass, and a worker is not stopped by a missed beat).
async fn beat(ctx: &Ctx, every: Duration, leaving: bool) {
    let slots = u32::try_from(ctx.cfg.slots).unwrap_or(u32::MAX);
    let beat = skep_api::WorkerBeat {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        succeeded: ctx.counters.succeeded.load(Ordering::Relaxed),
        failed: ctx.counters.failed.load(Ordering::Relaxed),
        in_flight: u32::try_from(ctx.counters.in_flight.load(Ordering::Relaxed)).unwrap_or(u32::MAX),
        leaving,
        sent_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64),
        ..skep_api::WorkerBeat::new(
            &ctx.cfg.id,
            &ctx.cfg.node,
            &ctx.cfg.pool,
            slots,
            every.as_millis() as u64,
        )
    };
    let body = Bytes::from(beat.encode());
    let limit = every.min(BEAT_PUBLISH_TIMEOUT);
    match tokio::time::timeout(limit, ctx.queue.publish(skep_api::WORKERS_TOPIC, vec![body])).await {
        Ok(Ok(())) => {}
        // NB: the first failure is a warning (a broker refusing the beats
        // queue hides this worker from the controller's window and list),
        // later ones are quiet.
        Ok(Err(error)) if !ctx.beat_warned.swap(true, Ordering::Relaxed) => {
            warn!(%error, "a heartbeat was not published; the controller will not count this worker's slots")
        }
        Ok(Err(error)) => debug!(%error, "a heartbeat was not published"),
        Err(_) => debug!("a heartbeat was not published in time"),
    }
}

/// Longest wait for one heartbeat's publish.
const BEAT_PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);

/// Aborts a spawned task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Counts a task as being read while it lives, however it ends (aborted
/// at the end of the stop grace included).
struct InFlight(Arc<Ctx>);

impl InFlight {
    fn start(ctx: Arc<Ctx>) -> Self {
        ctx.counters.in_flight.fetch_add(1, Ordering::Relaxed);
        Self(ctx)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.counters.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Tells the observer a task ended when dropped, however the task ends.
struct TaskEnded(Arc<dyn WorkerObserver>);

impl Drop for TaskEnded {
    fn drop(&mut self) {
        self.0.task_ended();
    }
}

async fn process(ctx: &Ctx, delivery: Delivery, slot: &mut OcrSlot) {
    let task = match TaskMessage::decode(&delivery.body) {
        Ok(t) => t,
        Err(WireError::Version { found }) => {
            answer_other_version(ctx, delivery, found).await;
            return;
        }
        Err(error) => {
            // Nothing identifies the file, so no result can be sent; the
            // controller re-dispatches it when its lease runs out.
            warn!(%error, "dropping an unreadable task message");
            let _ = delivery.ack().await;
            return;
        }
    };
    let started = Instant::now();
    let exhausted = delivery.attempts > task.max_attempts;
    let outcome = if exhausted {
        Err(crate::OcrError::new(
            FailureReason::AttemptsExceeded,
            format!(
                "delivered {} times without a result (maxAttempts {}): a worker died or timed out on it each time",
                delivery.attempts, task.max_attempts
            ),
        ))
    } else {
        let read = read_file(ctx, &task, slot);
        keep_alive(&delivery, ctx.cfg.visibility_timeout, read).await
    };
    let duration_ms = started.elapsed().as_millis() as u64;
    let outcome = match outcome {
        Ok(ReadOutput::Split { pages }) => {
            debug!(job = %task.job, index = task.index, pages, "file to split into ranges");
            Outcome::Split { pages }
        }
        Ok(ReadOutput::Read(r)) => {
            ctx.counters.succeeded.fetch_add(1, Ordering::Relaxed);
            debug!(job = %task.job, index = task.index, part = task.part, pages = r.pages, duration_ms, "read");
            Outcome::Succeeded {
                text: r.text,
                confidence: r.confidence,
                pages: r.pages,
                words: r.words,
                page_info: r.page_info,
                staged: r.staged,
                text_staged: r.text_staged,
            }
        }
        Err(e) => {
            ctx.counters.failed.fetch_add(1, Ordering::Relaxed);
            // NB: a reason worth retrying (unreadable, timeout, engine)
            // often means this worker's surroundings are wrong (a controller
            // it cannot reach, a full disk): say so where operators look.
            if e.reason.is_retryable() {
                warn!(job = %task.job, index = task.index, part = task.part, reason = %e.reason, error = %e.message, "failed");
            } else {
                info!(job = %task.job, index = task.index, part = task.part, reason = %e.reason, error = %e.message, "failed");
            }
            Outcome::Failed {
                reason: e.reason,
                error: e.message,
            }
        }
    };
    let result = ResultMessage {
        v: WIRE_VERSION,
        job: task.job,
        job_uid: task.job_uid,
        index: task.index,
        part: task.part,
        attempt: task.attempt,
        outcome,
        duration_ms,
        worker: WorkerRef {
            id: ctx.cfg.id.clone(),
            node: ctx.cfg.node.clone(),
        },
    };
    settle(ctx, delivery, result, exhausted).await;
}

/// Reads the task's file from its path, or fetches it through its URL
/// first (see [`crate::fetch`]); a fetched copy is deleted afterwards.
async fn read_file(ctx: &Ctx, task: &TaskMessage, slot: &mut OcrSlot) -> Result<ReadOutput, crate::OcrError> {
    let timeout = Duration::from_millis(task.timeout_ms.max(1));
    let mut request = read_request(ctx, task);
    let fetched = match fetch::source(ctx.cfg.file_access, task)? {
        Source::Path(_) => None,
        Source::Url(url) => {
            let started = Instant::now();
            let original = std::path::Path::new(&task.path);
            match ctx.fetcher.fetch(url, original, fetch::Expect::of(task), timeout).await {
                Ok(f) => {
                    ctx.cfg.observer.file_fetched("ok", f.bytes, started.elapsed());
                    debug!(job = %task.job, index = task.index, bytes = f.bytes, tries = f.tries, "fetched");
                    Some(f)
                }
                Err(e) => {
                    ctx.cfg.observer.file_fetched(e.result, 0, started.elapsed());
                    return Err(e.error);
                }
            }
        }
    };
    // NB: a worker that cannot see the job's staging folder stages into a
    // folder of its own, removed when this ends however it ends (a task
    // aborted at the end of the stop grace included), then uploads.
    // NB: only with a staging folder in the task (`stage_remotely` checks).
    let local_root = if fetch::stage_remotely(ctx.cfg.file_access, task) {
        let made = std::fs::create_dir_all(&ctx.cfg.fetch_dir).and_then(|()| {
            tempfile::Builder::new()
                .prefix("skep-stage-")
                .tempdir_in(&ctx.cfg.fetch_dir)
        });
        Some(made.map_err(|e| {
            crate::OcrError::new(
                FailureReason::Unreadable,
                format!(
                    "cannot make a staging folder in {}: {}",
                    ctx.cfg.fetch_dir.display(),
                    e.kind()
                ),
            )
        })?)
    } else {
        None
    };
    if let (Some(root), Some(target)) = (&local_root, request.staging.as_mut()) {
        target.root = root.path().to_path_buf();
    }
    let local_staging = local_root
        .as_ref()
        .and(request.staging.as_ref().map(StagingTarget::dir));
    if let Some(f) = &fetched {
        request.path = f.path.clone();
    }
    let read = slot.read(request, timeout).await;
    // NB: messages name the file as the job knows it, not the copy.
    let read = read.map_err(|mut e| {
        if let Some(f) = &fetched {
            e.message = e.message.replace(&*f.path.to_string_lossy(), &task.path);
        }
        e
    });
    let Some(local) = local_staging else {
        return read;
    };
    let uploaded = match (&read, task.upload.as_deref()) {
        (Ok(ReadOutput::Read(r)), Some(upload)) => match &r.staged {
            Some(name) => ctx.fetcher.upload(upload, name, &local, timeout).await.map(Some),
            None => Ok(None),
        },
        _ => Ok(None),
    };
    drop(local_root);
    match uploaded {
        Ok(Some(bytes)) => {
            debug!(job = %task.job, index = task.index, bytes, "staged files uploaded");
            read
        }
        Ok(None) => read,
        Err(e) => Err(e),
    }
}

/// What the slot reads for `task`.
fn read_request(ctx: &Ctx, task: &TaskMessage) -> ReadRequest {
    let config = EngineConfig {
        languages: task.languages.join("+"),
        page_seg_mode: task.page_seg_mode,
        dpi: task.dpi,
        pdf: task.pdf,
        auto_rotate: task.auto_rotate,
    };
    let mut request = ReadRequest::whole_file(std::path::Path::new(&task.path), config, ctx.cfg.max_file_bytes);
    request.pages = task.pages;
    request.pages_per_task = task.pages_per_task.max(1);
    request.artefacts = task.artefacts.clone();
    request.staging = task.staging.as_ref().map(|root| StagingTarget {
        root: PathBuf::from(root),
        name: staging_name(&ctx.cfg.id, task),
    });
    request
}

/// A staging folder name unique to this delivery: the task, the attempt,
/// the worker, and a per-process counter with the time (two deliveries of
/// one attempt to one worker still differ).
fn staging_name(worker: &str, task: &TaskMessage) -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let worker: String = worker
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' })
        .take(64)
        .collect();
    format!("{}-{}-{}-{worker}-{seq}-{nanos:x}", task.index, task.part, task.attempt)
}

/// Publishes the result, then acks (or dead-letters an exhausted task);
/// hands the delivery back when the result could not be published.
async fn settle(ctx: &Ctx, delivery: Delivery, result: ResultMessage, exhausted: bool) {
    let body = Bytes::from(result.encode());
    let published = keep_alive(&delivery, ctx.cfg.visibility_timeout, publish_result(ctx, body)).await;
    if published {
        ctx.cfg.observer.result_published(&result);
    }
    if published && exhausted {
        // The controller has its answer; the task itself goes where an
        // operator can look at what kept killing workers.
        if let Err(error) = delivery.dead_letter().await {
            warn!(%error, "dead-lettering an exhausted task failed");
        }
    } else if published {
        if let Err(error) = delivery.ack().await {
            // The result is out; a redelivery only produces a duplicate,
            // which the controller ignores.
            warn!(%error, "ack failed after the result was published");
        }
    } else {
        let _ = delivery.requeue(Duration::ZERO).await;
    }
}

/// A task message of another wire version: fail its file with a clear
/// error (when the message says which file) instead of guessing at it.
async fn answer_other_version(ctx: &Ctx, delivery: Delivery, found: u16) {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        job: String,
        job_uid: String,
        index: u64,
        #[serde(default)]
        part: u32,
        #[serde(default)]
        attempt: u32,
    }
    let Ok(p) = serde_json::from_slice::<Probe>(&delivery.body) else {
        warn!(found, "dropping a task message of another wire version");
        let _ = delivery.ack().await;
        return;
    };
    let hint = if found < WIRE_VERSION {
        "the controller is older than this worker: upgrade it (see the README's upgrade notes)"
    } else {
        "this worker is older than the controller: upgrade the worker image"
    };
    warn!(found, reads = WIRE_VERSION, job = %p.job, "task message of another wire version");
    let result = ResultMessage {
        v: WIRE_VERSION,
        job: p.job,
        job_uid: p.job_uid,
        index: p.index,
        part: p.part,
        attempt: p.attempt,
        outcome: Outcome::Failed {
            reason: FailureReason::BadMessage,
            error: format!("task message version {found}, this worker reads version {WIRE_VERSION}: {hint}"),
        },
        duration_ms: 0,
        worker: WorkerRef {
            id: ctx.cfg.id.clone(),
            node: ctx.cfg.node.clone(),
        },
    };
    settle(ctx, delivery, result, false).await;
}

/// Publishes a result, retrying until it is accepted or the worker is
/// stopped hard. Returns whether it was published.
async fn publish_result(ctx: &Ctx, body: Bytes) -> bool {
    let mut backoff = Duration::from_millis(50);
    loop {
        match ctx.queue.publish(RESULTS_TOPIC, vec![body.clone()]).await {
            Ok(()) => return true,
            Err(error) => {
                warn!(%error, retry_in = ?backoff, "publishing a result failed");
                ctx.cfg.observer.publish_failed(&error);
                tokio::select! {
                    _ = ctx.hard_stop.cancelled() => return false,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Runs `work`, touching the delivery every third of its visibility timeout.
async fn keep_alive<T>(delivery: &Delivery, visibility: Duration, work: impl Future<Output = T>) -> T {
    let every = (visibility / 3).max(Duration::from_millis(100));
    tokio::pin!(work);
    loop {
        tokio::select! {
            out = &mut work => return out,
            _ = tokio::time::sleep(every) => {
                if let Err(error) = delivery.touch().await {
                    warn!(%error, "touch failed");
                }
            }
        }
    }
}
