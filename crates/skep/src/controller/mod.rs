//! The reconciling controller, with kube-runtime's semantics built on tokio:
//! store watch events, result arrivals and a periodic resync trigger a
//! scheduler that runs `reconcile(key) -> Result<Action>` per job or pool,
//! never twice at once for one key, with per-key exponential backoff on
//! errors. Reconcile is level-triggered: it reads the store, the queue and
//! the runtime and moves the world one step toward the spec, so running it
//! twice, or again after a crash at any line, is safe.

mod assemble;
pub mod backoff;
mod cache;
mod dispatch;
mod finalizer;
mod ingest;
pub mod landing;
mod lease;
pub mod output;
pub mod pace;
mod reconcile;
pub(crate) mod safe_fs;
pub mod scaling;
pub mod scan;
pub mod scheduler;
pub mod workers;

/// Batch sizes of the controller's store calls (benchmarks use the same).
pub use dispatch::MAX_BATCH as DISPATCH_BATCH;
pub use ingest::INGEST_BATCH;

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use skep_queue::{QueueError, TaskQueue};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use crate::metrics::Metrics;
use crate::runtime::{Runtime, RuntimeError, RuntimeEvent};
use crate::store::{Store, StoreError};
use backoff::Backoff;
use scheduler::Trigger;

pub use lease::LEASE_NAME;

/// Defaults, named so that flags and docs can refer to them.
pub const DEFAULT_RESYNC: Duration = Duration::from_secs(30);
pub const DEFAULT_RUNNING_REQUEUE: Duration = Duration::from_secs(2);
pub const DEFAULT_CONCURRENCY: usize = 4;
pub const DEFAULT_WINDOW_FACTOR: u32 = 2;
pub const DEFAULT_SCALE_DOWN_COOLDOWN: Duration = Duration::from_secs(30);
pub const DEFAULT_RETRY_BASE: Duration = Duration::from_secs(2);
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(15);
/// Every call to the store, the queue or the runtime gives up after this.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Debug)]
pub struct ControllerConfig {
    /// Every job and pool is reconciled at least this often.
    pub resync: Duration,
    /// A running job is reconciled again after this, results or not.
    pub running_requeue: Duration,
    /// Keys reconciled at once.
    pub concurrency: usize,
    /// Dispatch keeps at least `replicas x slots x window_factor` tasks of
    /// a pool in its queue; more for fast tasks ([`pace`]).
    pub window_factor: u32,
    /// A pool is not scaled down within this long of its last change.
    pub scale_down_cooldown: Duration,
    /// First wait before a retryable failed file is tried again (doubles).
    pub retry_base: Duration,
    pub lease_ttl: Duration,
    /// Who this controller is, in the lease.
    pub holder: String,
    /// Output folder root for jobs that name none: `<root>/<job name>`.
    pub default_output_root: PathBuf,
    /// Where the controller's metrics go (shared with its HTTP server).
    pub metrics: Metrics,
    /// Which folders jobs may read and write (`--allow-path`).
    pub paths: crate::paths::PathPolicy,
    /// With a queue that does not survive its process: mark the tasks an
    /// earlier process dispatched as pending again when the lease is
    /// taken. Not when the same process leads again (its queue still
    /// holds them).
    pub redispatch_lost_tasks: bool,
    /// Signs a URL per task of a folder source for workers with no mount
    /// of it (`--file-url-base`); `None`: tasks carry the path only.
    pub file_urls: Option<crate::files::FileUrls>,
    /// Object storage for `s3://` sources (`--s3-*`); none by default.
    pub objects: crate::objects::ObjectStores,
    /// The workers heard from (their heartbeats), shared with the HTTP
    /// server's `/api/workers`.
    pub workers: workers::Registry,
    /// A scan writes how many files it has found so far at most this often
    /// ([`scan::ScanProgress`]).
    pub scan_progress_every: Duration,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            resync: DEFAULT_RESYNC,
            running_requeue: DEFAULT_RUNNING_REQUEUE,
            concurrency: DEFAULT_CONCURRENCY,
            window_factor: DEFAULT_WINDOW_FACTOR,
            scale_down_cooldown: DEFAULT_SCALE_DOWN_COOLDOWN,
            retry_base: DEFAULT_RETRY_BASE,
            lease_ttl: DEFAULT_LEASE_TTL,
            holder: default_holder(),
            default_output_root: PathBuf::from("skep-output"),
            metrics: Metrics::new(),
            paths: crate::paths::PathPolicy::Any,
            redispatch_lost_tasks: true,
            file_urls: None,
            objects: crate::objects::ObjectStores::none(),
            workers: workers::Registry::new(),
            scan_progress_every: scan::SCAN_PROGRESS_EVERY,
        }
    }
}

/// `host:pid:random`, unique per controller process.
pub fn default_holder() -> String {
    format!(
        "{}:{}:{}",
        skep_worker::node_name(),
        std::process::id(),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

/// What is reconciled.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Key {
    Job(String),
    Pool(String),
}

/// What reconcile wants next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Action {
    requeue_after: Option<Duration>,
}

impl Action {
    pub fn requeue(after: Duration) -> Self {
        Self {
            requeue_after: Some(after),
        }
    }

    /// Run again on the next change (or the periodic resync).
    pub fn await_change() -> Self {
        Self { requeue_after: None }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// Reading the source folder failed part-way.
    #[error("scanning {path}: {message}")]
    Scan { path: String, message: String },
    #[error("writing outputs to {path}: {source}")]
    Output {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// Uploading a finished job's outputs to object storage failed.
    #[error("uploading outputs to {url}: {message}")]
    Upload { url: String, message: String },
    #[error("lost the controller lease to {0}")]
    LeaseLost(String),
    #[error("{0} call timed out after {CALL_TIMEOUT:?}")]
    Timeout(&'static str),
    #[error("a background task of the controller ended: {0}")]
    TaskEnded(String),
}

impl Error {
    /// A bounded label for metrics and logs.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Store(e) => e.metric_label(),
            Error::Queue(e) => e.metric_label(),
            Error::Runtime(e) => e.metric_label(),
            Error::Scan { .. } => "scan",
            Error::Output { .. } => "output",
            Error::Upload { .. } => "upload",
            Error::LeaseLost(_) => "lease_lost",
            Error::Timeout(_) => "timeout",
            Error::TaskEnded(_) => "task_ended",
        }
    }
}

/// What every reconcile shares.
pub struct Context {
    pub store: Arc<dyn Store>,
    pub queue: Arc<dyn TaskQueue>,
    pub runtime: Arc<dyn Runtime>,
    pub cfg: ControllerConfig,
    trigger: Trigger<Key>,
    backoffs: Mutex<HashMap<Key, Backoff>>,
    pool_changes: Mutex<HashMap<String, Instant>>,
    jobs_by_uid: ingest::JobIndex,
    /// Every job as last read or written, for what a reconcile needs of
    /// the others.
    jobs: cache::JobCache,
    /// Each job's task times, which size its dispatch window.
    paces: pace::Paces,
    /// Cancelled when the store refused a write by its fence; who holds
    /// the lease now, as the store said.
    deposed: CancellationToken,
    deposed_by: Mutex<String>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Context {
    /// Runs a backend call with [`CALL_TIMEOUT`], timed into
    /// `skep_backend_call_duration_seconds{backend=what}`.
    async fn bounded<T, E>(&self, what: &'static str, fut: impl Future<Output = Result<T, E>>) -> Result<T>
    where
        Error: From<E>,
    {
        let started = std::time::Instant::now();
        let (outcome, res) = match tokio::time::timeout(CALL_TIMEOUT, fut).await {
            Ok(Ok(v)) => ("ok", Ok(v)),
            Ok(Err(e)) => match Error::from(e) {
                Error::Store(StoreError::Fenced { holder, .. }) => {
                    *lock(&self.deposed_by) = holder.clone();
                    self.deposed.cancel();
                    ("fenced", Err(Error::LeaseLost(holder)))
                }
                e => ("error", Err(e)),
            },
            Err(_) => ("timeout", Err(Error::Timeout(what))),
        };
        self.cfg.metrics.observe_call(what, outcome, started.elapsed());
        res
    }

    pub(crate) async fn store_call<T>(&self, fut: impl Future<Output = Result<T, StoreError>>) -> Result<T> {
        self.bounded("store", fut).await
    }

    pub(crate) async fn queue_call<T>(&self, fut: impl Future<Output = Result<T, QueueError>>) -> Result<T> {
        self.bounded("queue", fut).await
    }

    pub(crate) async fn runtime_call<T>(&self, fut: impl Future<Output = Result<T, RuntimeError>>) -> Result<T> {
        self.bounded("runtime", fut).await
    }

    /// Resolves once the store has refused a write of this term (another
    /// controller leads now), with who holds the lease.
    async fn deposed(&self) -> String {
        self.deposed.cancelled().await;
        lock(&self.deposed_by).clone()
    }

    pub(crate) async fn trigger(&self, key: Key) {
        self.trigger.now(key).await;
    }

    fn since_pool_change(&self, pool: &str, now: Instant) -> Duration {
        lock(&self.pool_changes)
            .get(pool)
            .map_or(Duration::MAX, |t| now.saturating_duration_since(*t))
    }

    fn note_pool_change(&self, pool: &str, now: Instant) {
        lock(&self.pool_changes).insert(pool.to_owned(), now);
    }

    /// The error policy: back off exponentially per key.
    fn error_policy(&self, key: &Key, error: &Error) -> Duration {
        let mut map = lock(&self.backoffs);
        let b = map
            .entry(key.clone())
            .or_insert_with(|| Backoff::new(Duration::from_millis(500), Duration::from_secs(300)));
        let delay = b.next_delay();
        warn!(?key, %error, kind = error.metric_label(), failures = b.failures(), retry_in = ?delay, "reconcile failed");
        delay
    }

    fn reset_backoff(&self, key: &Key) {
        lock(&self.backoffs).remove(key);
    }
}

/// A running controller. Dropping it does not stop it; cancel the token
/// given to [`Controller::start`] and await [`Controller::wait`].
pub struct Controller {
    tasks: JoinSet<Result<()>>,
    stop: CancellationToken,
    ctx: Arc<Context>,
}

impl Controller {
    /// Takes the controller lease (waiting while another controller holds
    /// it; `on_wait` hears about each wait), then starts reconciling.
    pub async fn start(
        store: Arc<dyn Store>,
        queue: Arc<dyn TaskQueue>,
        runtime: Arc<dyn Runtime>,
        cfg: ControllerConfig,
        shutdown: CancellationToken,
        on_wait: impl Fn(&crate::store::LeaseState),
    ) -> Result<Option<Self>> {
        let Some(lease) = lease::acquire(store.as_ref(), &cfg.holder, cfg.lease_ttl, &shutdown, on_wait).await? else {
            return Ok(None);
        };
        info!(holder = %cfg.holder, generation = lease.generation, store = store.backend(), queue = queue.backend(), runtime = runtime.backend(), "controller lease taken");
        // NB: every write of this term carries its fencing token.
        let store = store.fenced(crate::store::Fence::of(LEASE_NAME, &lease));
        if !queue.is_durable() && cfg.redispatch_lost_tasks {
            let n = tokio::time::timeout(CALL_TIMEOUT, store.reset_dispatched())
                .await
                .map_err(|_| Error::Timeout("store"))??;
            if n > 0 {
                info!(
                    tasks = n,
                    "re-dispatching tasks that were in the non-durable queue of an earlier process"
                );
            }
        }
        let stop = shutdown.child_token();
        let (trigger, sched) = scheduler::scheduler::<Key>(cfg.concurrency);
        let ctx = Arc::new(Context {
            store,
            queue,
            runtime,
            cfg,
            trigger,
            backoffs: Mutex::new(HashMap::new()),
            pool_changes: Mutex::new(HashMap::new()),
            jobs_by_uid: ingest::JobIndex::default(),
            jobs: cache::JobCache::default(),
            paces: pace::Paces::default(),
            deposed: CancellationToken::new(),
            deposed_by: Mutex::new(String::new()),
        });
        // NB: the job cache is filled before anything reconciles: a pool
        // reconciled from a partial cache would see too little demand.
        let mark = ctx.jobs.mark();
        let jobs = tokio::time::timeout(CALL_TIMEOUT, ctx.store.list_jobs())
            .await
            .map_err(|_| Error::Timeout("store"))??;
        ctx.jobs.replace(mark, jobs);
        ctx.cfg.metrics.set_leader(true);
        let mut tasks = JoinSet::new();
        tasks.spawn(lease::hold(ctx.clone(), lease.generation, stop.clone()).instrument(info_span!("lease")));
        tasks.spawn(sample(ctx.clone(), stop.clone()).instrument(info_span!("sample")));
        tasks.spawn(watch(ctx.clone(), stop.clone()).instrument(info_span!("watch")));
        tasks.spawn(ingest::run(ctx.clone(), stop.clone()).instrument(info_span!("ingest")));
        tasks.spawn(resync(ctx.clone(), stop.clone()).instrument(info_span!("resync")));
        tasks.spawn(
            workers::listen(ctx.queue.clone(), ctx.cfg.workers.clone(), stop.clone()).instrument(info_span!("workers")),
        );
        if let Some(events) = ctx.runtime.events() {
            tasks.spawn(runtime_events(ctx.clone(), events, stop.clone()).instrument(info_span!("runtime_events")));
        }
        let work_ctx = ctx.clone();
        let sched_stop = stop.clone();
        tasks.spawn(
            async move {
                sched
                    .run(
                        move |key: Key| {
                            let ctx = work_ctx.clone();
                            let span = info_span!("reconcile", ?key);
                            async move { run_one(&ctx, key).await }.instrument(span)
                        },
                        sched_stop,
                    )
                    .await;
                Ok(())
            }
            .instrument(info_span!("scheduler")),
        );
        Ok(Some(Self { tasks, stop, ctx }))
    }

    pub fn context(&self) -> &Arc<Context> {
        &self.ctx
    }

    /// Runs until shutdown. A background task that ends early (lease lost,
    /// a panic) stops the whole controller with its error.
    pub async fn wait(mut self) -> Result<()> {
        let mut first_error = None;
        while let Some(done) = self.tasks.join_next().await {
            let err = match done {
                Ok(Ok(())) if self.stop.is_cancelled() => None,
                Ok(Ok(())) => Some(Error::TaskEnded("a task returned before shutdown".into())),
                Ok(Err(e)) => Some(e),
                Err(e) => Some(Error::TaskEnded(e.to_string())),
            };
            if let Some(e) = err {
                self.stop.cancel();
                if matches!(e, Error::LeaseLost(_)) {
                    // NB: no longer sure to lead: nothing more may be
                    // written, not even by a reconcile half done (as a
                    // crash would leave it, which the design survives).
                    self.tasks.abort_all();
                    self.ctx.cfg.metrics.set_leader(false);
                }
                if first_error.is_none() {
                    warn!(error = %e, "controller stopping");
                    first_error = Some(e);
                }
            }
        }
        self.ctx.cfg.metrics.set_leader(false);
        if !matches!(first_error, Some(Error::LeaseLost(_))) {
            let release = self.ctx.store.release_lease(LEASE_NAME, &self.ctx.cfg.holder);
            let _ = tokio::time::timeout(lease::renew_timeout(self.ctx.cfg.lease_ttl), release).await;
        }
        first_error.map_or(Ok(()), Err)
    }
}

async fn run_one(ctx: &Context, key: Key) -> Option<Duration> {
    let started = std::time::Instant::now();
    let (kind, res) = match &key {
        Key::Job(name) => ("job", reconcile::reconcile_job(ctx, name).await),
        Key::Pool(pool) => ("pool", scaling::reconcile_pool(ctx, pool, false).await),
    };
    let error = res.as_ref().err().map(Error::metric_label);
    ctx.cfg.metrics.observe_reconcile(kind, started.elapsed(), error);
    match res {
        Ok(action) => {
            ctx.reset_backoff(&key);
            // NB: always a fallback requeue, as in kube-runtime.
            Some(action.requeue_after.unwrap_or(ctx.cfg.resync))
        }
        Err(e) => Some(ctx.error_policy(&key, &e)),
    }
}

async fn watch(ctx: Arc<Context>, stop: CancellationToken) -> Result<()> {
    use futures::StreamExt;
    let mut events = ctx.store.watch();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            ev = events.next() => match ev {
                Some(crate::store::WatchEvent::Changed(name)) => ctx.trigger(Key::Job(name)).await,
                None => return Err(Error::TaskEnded("the store watch ended".into())),
            }
        }
    }
}

/// Runtime changes (a node drained, a service scaled by hand, a replica
/// gone) reconcile the pools they touch at once. As with the resync, only
/// pools some job names are reconciled: a service no job uses is left
/// alone.
async fn runtime_events(
    ctx: Arc<Context>,
    mut events: futures::stream::BoxStream<'static, RuntimeEvent>,
    stop: CancellationToken,
) -> Result<()> {
    use futures::{FutureExt, StreamExt};
    /// Events read at once, so that a burst costs one store read.
    const BATCH: usize = 64;
    loop {
        let first = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            ev = events.next() => ev.ok_or_else(|| Error::TaskEnded("the runtime's event stream ended".into()))?,
        };
        let mut batch = vec![first];
        while batch.len() < BATCH
            && let Some(Some(ev)) = events.next().now_or_never()
        {
            batch.push(ev);
        }
        let in_use = ctx.jobs.pools();
        let everything = batch
            .iter()
            .any(|e| matches!(e, RuntimeEvent::Nodes | RuntimeEvent::Resync));
        for pool in in_use {
            if everything || batch.contains(&RuntimeEvent::Pool(pool.clone())) {
                ctx.trigger(Key::Pool(pool)).await;
            }
        }
    }
}

/// How often the job and queue gauges are refreshed.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// Refreshes the gauges that describe the jobs and the queues (jobs by
/// phase, files of unfinished jobs, queue depth per pool) every
/// [`SAMPLE_EVERY`], from the job cache (a listing every few seconds cost
/// as much as the jobs are many). A failed queue read leaves its last
/// values.
async fn sample(ctx: Arc<Context>, stop: CancellationToken) -> Result<()> {
    loop {
        let jobs = ctx.jobs.all();
        ctx.cfg.metrics.set_jobs(&jobs);
        let pools = ctx.jobs.pools();
        for pool in &pools {
            match ctx.queue_call(ctx.queue.depth(&skep_api::task_topic(pool))).await {
                Ok(depth) => ctx.cfg.metrics.set_queue(pool, &depth),
                Err(error) => tracing::debug!(pool, %error, "queue depth unknown"),
            }
        }
        ctx.cfg.metrics.retain_pools(&pools);
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = tokio::time::sleep(SAMPLE_EVERY) => {}
        }
    }
}

/// Every `resync`, every job and pool is reconciled, whatever happened.
async fn resync(ctx: Arc<Context>, stop: CancellationToken) -> Result<()> {
    loop {
        let mark = ctx.jobs.mark();
        match ctx.store_call(ctx.store.list_jobs()).await {
            Ok(jobs) => {
                ctx.jobs.replace(mark, jobs.clone());
                let mut pools = std::collections::BTreeSet::new();
                for j in jobs {
                    pools.insert(j.spec.scaling.pool.clone());
                    ctx.trigger(Key::Job(j.metadata.name)).await;
                }
                for p in pools {
                    ctx.trigger(Key::Pool(p)).await;
                }
            }
            Err(error) => warn!(%error, "resync could not list jobs"),
        }
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = tokio::time::sleep(ctx.cfg.resync) => {}
        }
    }
}
