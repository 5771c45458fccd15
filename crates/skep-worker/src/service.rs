//! `skep-worker run`: one worker process as a swarm service replica runs it.
//! It serves `/livez`, `/readyz` and `/metrics`, connects to the shared task
//! queue, runs [`worker::run`] until told to stop, and says by its result
//! whether it stopped cleanly.
//!
//! Guarantees:
//! - a broker that is not up yet is retried with backoff for the queue
//!   timeout; `/readyz` answers 503 meanwhile;
//! - the first stop request (see [`Shutdown`]) makes `/readyz` answer 503
//!   and drains the worker within its stop grace; the second returns
//!   [`ServiceError::Aborted`] at once (what the worker held goes back to
//!   the broker with the connection);
//! - a worker that has had no working task subscription for the queue
//!   timeout (broker gone, results unpublishable) drains and returns
//!   [`ServiceError::QueueLost`], so that its supervisor restarts it rather
//!   than it idling unseen;
//! - if the HTTP server dies the worker drains and the process fails.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use skep_queue::{QueueError, QueueUrl, TaskQueue};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, info_span, warn};

use crate::health::Health;
use crate::metrics::{Metrics, QueueOp};
use crate::shutdown::Shutdown;
use crate::worker::{self, WorkerConfig, WorkerObserver, WorkerReport};
use crate::{http, metrics};

pub const DEFAULT_LISTEN: &str = "0.0.0.0:9100";
pub const DEFAULT_SLOTS: usize = 1;
/// How long a worker goes without a task subscription, at start or later,
/// before it gives up.
pub const DEFAULT_QUEUE_TIMEOUT: Duration = Duration::from_secs(120);
/// Limit of one connection attempt (the backend has its own, shorter one).
const CONNECT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_BACKOFF_FIRST: Duration = Duration::from_millis(500);
const CONNECT_BACKOFF_MAX: Duration = Duration::from_secs(10);
/// How often the watchdog looks at the queue's health.
const WATCHDOG_EVERY: Duration = Duration::from_secs(1);

pub type Result<T, E = ServiceError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// `memory:` names a queue inside one process; a worker process cannot
    /// share it with the controller.
    #[error(
        "the memory: queue lives inside one process and cannot be shared with the controller; \
         give the broker's URL (amqp:// or amqps://)"
    )]
    MemoryQueue,
    /// The queue URL is malformed or cannot be used.
    #[error("{0}")]
    QueueUrl(#[source] QueueError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot set up metrics: {0}")]
    Metrics(#[source] prometheus::Error),
    /// The broker did not accept a connection within the queue timeout.
    #[error("the task queue {url} was not reachable within {after:?}: {source}")]
    QueueUnreachable {
        url: String,
        after: Duration,
        #[source]
        source: QueueError,
    },
    /// The worker went without a task subscription for the queue timeout.
    #[error("no working task subscription for {after:?} (broker unreachable?); exiting to be restarted")]
    QueueLost { after: Duration, report: WorkerReport },
    /// The HTTP server stopped.
    #[error("the http server stopped: {0}")]
    Http(String),
    /// A second stop request came before the worker had drained.
    #[error("stopped at a second signal; unfinished tasks go back to the queue")]
    Aborted,
}

impl ServiceError {
    /// The process exit code: 2 for a configuration the worker cannot run
    /// with, 130 for an abort, 1 for the rest.
    pub fn exit_code(&self) -> i32 {
        match self {
            ServiceError::MemoryQueue | ServiceError::QueueUrl(_) => 2,
            ServiceError::Aborted => 130,
            _ => 1,
        }
    }
}

/// Parses the queue URL a worker process is given, refusing `memory:`.
pub fn worker_queue_url(raw: &str) -> Result<QueueUrl> {
    let url = QueueUrl::parse(raw).map_err(ServiceError::QueueUrl)?;
    if url.backend() == "memory" {
        return Err(ServiceError::MemoryQueue);
    }
    Ok(url)
}

/// The queue URL of the deployments skep replaces, which configure workers
/// with `NSQLOOKUPD_ADDRESSES` (nsqlookupd HTTP addresses, comma-separated,
/// with or without `http://`) and `NSQD_ADDRESS` (one nsqd TCP address):
/// `nsqlookup://…` from the first when it is set, else `nsq://…`.
pub fn legacy_nsq_url(lookupd_addresses: Option<&str>, nsqd_address: Option<&str>) -> Option<String> {
    let hosts = |list: &str| -> Option<String> {
        let hosts: Vec<&str> = list
            .split(',')
            .map(|h| h.trim().trim_start_matches("http://").trim_end_matches('/'))
            .filter(|h| !h.is_empty())
            .collect();
        (!hosts.is_empty()).then(|| hosts.join(","))
    };
    if let Some(lookupds) = lookupd_addresses.and_then(hosts) {
        return Some(format!("nsqlookup://{lookupds}"));
    }
    nsqd_address.and_then(hosts).map(|nsqd| format!("nsq://{nsqd}"))
}

/// The worker's own host name, from the kernel.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// A worker id unique among live processes: host name, process id and a
/// random tag. In a container the host name is the container's id, but
/// containers on the host's network share the host's name, and each runs
/// its worker as process 1: the tag tells them apart.
pub fn default_worker_id() -> String {
    format!("{}-{}-{}", hostname(), std::process::id(), random_tag())
}

/// Six hex digits from the kernel's random source (the clock's nanoseconds
/// where it cannot be read).
fn random_tag() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 3];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if read.is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        bytes.copy_from_slice(&nanos.to_le_bytes()[..3]);
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Clone, Debug)]
pub struct ServiceConfig {
    pub queue: QueueUrl,
    /// Id, node, pool, slots, visibility timeout and stop grace. Its
    /// observer is replaced by the service's own.
    pub worker: WorkerConfig,
    pub listen: SocketAddr,
    /// See [`DEFAULT_QUEUE_TIMEOUT`].
    pub queue_timeout: Duration,
}

/// Counts files for the metrics and tracks the subscription for health.
#[derive(Debug)]
struct Observer {
    health: Arc<Health>,
    metrics: Metrics,
}

impl WorkerObserver for Observer {
    fn subscribed(&self) {
        self.health.set_subscribed(true);
    }

    fn unsubscribed(&self, error: Option<&QueueError>) {
        if error.is_some() {
            self.metrics.queue_error(QueueOp::Subscribe);
        }
        self.health.set_subscribed(false);
    }

    fn task_started(&self) {
        self.metrics.task_started();
    }

    fn task_ended(&self) {
        self.metrics.task_ended();
    }

    fn result_published(&self, result: &skep_api::ResultMessage) {
        self.metrics.record_result(result);
        self.health.set_publish_failing(false);
    }

    fn publish_failed(&self, _error: &QueueError) {
        self.metrics.queue_error(QueueOp::Publish);
        self.health.set_publish_failing(true);
    }

    fn file_fetched(&self, result: &'static str, bytes: u64, took: Duration) {
        self.metrics.file_fetched(result, bytes, took);
    }
}

/// Aborts a spawned task when dropped.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs the worker service until `shutdown` stops it (see the module docs).
/// Returns what the worker did when it stopped cleanly.
pub async fn run(cfg: ServiceConfig, shutdown: Shutdown) -> Result<WorkerReport> {
    let metrics = metrics::Metrics::new(cfg.worker.slots).map_err(ServiceError::Metrics)?;
    let health = Arc::new(Health::new(metrics.clone()));
    let listener = TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| ServiceError::Listen {
            addr: cfg.listen,
            source,
        })?;
    let listen = listener.local_addr().unwrap_or(cfg.listen);
    info!(%listen, "serving /livez, /readyz and /metrics");
    let router = http::router(health.clone(), metrics.clone());
    let mut server = AbortOnDrop(tokio::spawn(
        http::serve(listener, router).instrument(info_span!("http")),
    ));

    let queue = tokio::select! {
        q = connect(&cfg.queue, cfg.queue_timeout, &metrics) => q?,
        _ = shutdown.drained() => {
            info!("stopped before the task queue was reachable");
            return Ok(WorkerReport::default());
        }
        r = &mut server.0 => return Err(server_ended(r)),
    };

    let stop = CancellationToken::new();
    let mut worker_cfg = cfg.worker.clone();
    worker_cfg.observer = Arc::new(Observer {
        health: health.clone(),
        metrics: metrics.clone(),
    });
    let worker = worker::run(queue, worker_cfg, stop.clone());
    tokio::pin!(worker);
    let mut watchdog = tokio::time::interval(WATCHDOG_EVERY);
    watchdog.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut lost = None;
    let mut server_failed = None;
    let report = loop {
        tokio::select! {
            report = &mut worker => break report,
            _ = shutdown.drained(), if !stop.is_cancelled() => {
                info!(grace = ?cfg.worker.stop_grace, "draining");
                health.set_draining();
                stop.cancel();
            }
            _ = shutdown.aborted() => return Err(ServiceError::Aborted),
            _ = watchdog.tick(), if !stop.is_cancelled() => {
                if let Some(down) = health.queue_down_for().filter(|d| *d >= cfg.queue_timeout) {
                    error!(down_for = ?down, "no working task subscription for too long; draining and exiting");
                    lost = Some(down);
                    health.set_draining();
                    stop.cancel();
                }
            }
            r = &mut server.0, if server_failed.is_none() => {
                let e = server_ended(r);
                error!(error = %e, "draining and exiting");
                server_failed = Some(e);
                health.set_draining();
                stop.cancel();
            }
        }
    };
    info!(
        worker = %cfg.worker.id,
        succeeded = report.succeeded,
        failed = report.failed,
        handed_back = report.handed_back,
        "worker exiting"
    );
    if let Some(e) = server_failed {
        return Err(e);
    }
    if let Some(after) = lost {
        return Err(ServiceError::QueueLost { after, report });
    }
    Ok(report)
}

fn server_ended(r: std::result::Result<std::io::Result<()>, tokio::task::JoinError>) -> ServiceError {
    match r {
        Ok(Ok(())) => ServiceError::Http("it ended".to_owned()),
        Ok(Err(e)) => ServiceError::Http(e.to_string()),
        Err(e) => ServiceError::Http(e.to_string()),
    }
}

/// Connects to the queue, retrying with backoff while the broker is
/// unreachable, for `timeout` at most.
async fn connect(url: &QueueUrl, timeout: Duration, metrics: &Metrics) -> Result<Arc<dyn TaskQueue>> {
    let started = Instant::now();
    let mut backoff = CONNECT_BACKOFF_FIRST;
    loop {
        let attempt = match tokio::time::timeout(CONNECT_ATTEMPT_TIMEOUT, url.connect()).await {
            Ok(r) => r,
            Err(_) => Err(QueueError::Unavailable(format!(
                "connecting took longer than {CONNECT_ATTEMPT_TIMEOUT:?}"
            ))),
        };
        let error = match attempt {
            Ok(queue) => {
                info!(queue = %url, "connected to the task queue");
                return Ok(queue);
            }
            Err(e @ (QueueError::InvalidUrl(_) | QueueError::Invalid(_))) => {
                return Err(ServiceError::QueueUrl(e));
            }
            Err(e) => e,
        };
        metrics.queue_error(QueueOp::Connect);
        let waited = started.elapsed();
        if waited + backoff > timeout {
            return Err(ServiceError::QueueUnreachable {
                url: url.to_string(),
                after: waited,
                source: error,
            });
        }
        warn!(queue = %url, %error, retry_in = ?backoff, "cannot connect to the task queue; retrying");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(CONNECT_BACKOFF_MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_refuses_the_memory_queue_and_bad_urls() {
        assert!(matches!(worker_queue_url("memory:"), Err(ServiceError::MemoryQueue)));
        assert_eq!(ServiceError::MemoryQueue.exit_code(), 2);
        let bad = worker_queue_url("redis://h").expect_err("not a queue url");
        assert_eq!(bad.exit_code(), 2);
        let url = worker_queue_url("amqp://u:p@rabbit:5672/%2f").expect("amqp");
        assert_eq!(url.backend(), "amqp");
        assert_eq!(worker_queue_url("nsq://h:4150").map(|u| u.backend()).ok(), Some("nsq"));
    }

    #[test]
    fn the_nsq_variables_of_older_deployments_make_a_queue_url() {
        let url = |l: Option<&str>, n: Option<&str>| legacy_nsq_url(l, n);
        assert_eq!(
            url(Some("http://lookupd-a:4161/, lookupd-b:4161"), Some("nsqd:4150")).as_deref(),
            Some("nsqlookup://lookupd-a:4161,lookupd-b:4161")
        );
        assert_eq!(url(Some(" , "), Some("nsqd:4150")).as_deref(), Some("nsq://nsqd:4150"));
        assert_eq!(url(None, Some("10.0.0.5:4150")).as_deref(), Some("nsq://10.0.0.5:4150"));
        assert_eq!(url(None, Some("")), None);
        assert_eq!(url(None, None), None);
        for made in [url(Some("a:4161,b:4161"), None), url(None, Some("nsqd:4150"))] {
            let made = made.expect("a url");
            assert_eq!(worker_queue_url(&made).map(|u| u.backend()).ok(), Some("nsq"), "{made}");
        }
    }

    #[tokio::test]
    async fn an_unreachable_broker_is_retried_until_the_queue_timeout() {
        let metrics = Metrics::new(1).expect("metrics");
        // NB: a port nothing listens on: bound, then released.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let url = worker_queue_url(&format!("amqp://guest:guest@127.0.0.1:{port}/%2f")).expect("parses");
        let started = std::time::Instant::now();
        let err = connect(&url, Duration::from_secs(2), &metrics)
            .await
            .err()
            .expect("nothing listens");
        assert!(matches!(err, ServiceError::QueueUnreachable { .. }), "{err}");
        assert!(
            started.elapsed() >= Duration::from_millis(1000),
            "gave up after {:?}",
            started.elapsed()
        );
        assert_eq!(err.exit_code(), 1);
        let text = metrics.encode().expect("encode");
        let attempts: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("skep_worker_queue_errors_total{op=\"connect\"} "))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        assert!(attempts >= 2, "{text}");
    }
}
