//! The controller's Prometheus metrics, all prefixed `skep_`. Labels are
//! closed sets or operator-chosen names of a handful of values (a phase, an
//! outcome, a failure reason, a pool, an error kind, a route template),
//! never a job name, a file path or an id, so the number of series stays
//! bounded.

use std::time::Duration;

use prometheus::core::Collector;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};
use skep_api::Phase;

/// Seconds buckets of store, queue and Docker calls and of reconciles.
const CALL_BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0];

const PHASES: [Phase; 5] = [
    Phase::Pending,
    Phase::Running,
    Phase::Suspended,
    Phase::Succeeded,
    Phase::Failed,
];

/// Every metric name the controller exports (the chart test checks the
/// dashboards and alert rules against the scraped text, this list names
/// what to expect).
pub const NAMES: &[&str] = &[
    "skep_jobs",
    "skep_job_files",
    "skep_files_processed_total",
    "skep_file_failures_total",
    "skep_queue_depth",
    "skep_queue_in_flight",
    "skep_pool_replicas_desired",
    "skep_pool_replicas_running",
    "skep_reconcile_duration_seconds",
    "skep_reconcile_errors_total",
    "skep_backend_call_duration_seconds",
    "skep_controller_leader",
    "skep_http_requests_total",
    "skep_http_request_duration_seconds",
    "skep_http_connections",
    "skep_http_connections_closed_total",
    "skep_files_served_total",
    "skep_file_bytes_served_total",
    "skep_staged_files_received_total",
    "skep_staged_bytes_received_total",
];

/// The results of an upload to the staging endpoint (`/files/staged`).
pub const STAGED_RESULTS: [&str; 8] = [
    "ok",
    "refused",
    "expired",
    "notAllowed",
    "badRequest",
    "tooLarge",
    "gone",
    "error",
];

/// The results of a request to the file endpoint (`/files`).
pub const FILE_RESULTS: [&str; 6] = ["ok", "refused", "expired", "notFound", "notAllowed", "error"];

/// One registry with every metric of a controller process. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Registry,
    jobs: IntGaugeVec,
    job_files: IntGaugeVec,
    files: IntCounterVec,
    failures: IntCounterVec,
    queue_depth: IntGaugeVec,
    queue_in_flight: IntGaugeVec,
    replicas_desired: IntGaugeVec,
    replicas_running: IntGaugeVec,
    reconcile_seconds: HistogramVec,
    reconcile_errors: IntCounterVec,
    call_seconds: HistogramVec,
    leader: IntGauge,
    http_requests: IntCounterVec,
    http_seconds: HistogramVec,
    http_connections: IntGauge,
    http_closed: IntCounterVec,
    files_served: IntCounterVec,
    file_bytes: prometheus::IntCounter,
    staged_received: IntCounterVec,
    staged_bytes: prometheus::IntCounter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn gauge_vec(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    IntGaugeVec::new(Opts::new(name, help), labels).unwrap_or_else(|e| panic!("metric {name}: {e}"))
}

fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).unwrap_or_else(|e| panic!("metric {name}: {e}"))
}

fn histogram_vec(name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    HistogramVec::new(HistogramOpts::new(name, help).buckets(CALL_BUCKETS.to_vec()), labels)
        .unwrap_or_else(|e| panic!("metric {name}: {e}"))
}

impl Metrics {
    /// A fresh registry. Panics only if the fixed names and labels above
    /// were malformed, which the unit test rules out.
    pub fn new() -> Self {
        let registry = Registry::new();
        let m = Self {
            jobs: gauge_vec("skep_jobs", "Jobs in the store, by phase.", &["phase"]),
            job_files: gauge_vec(
                "skep_job_files",
                "Files of unfinished jobs, by state (pending, dispatched, succeeded, failed).",
                &["state"],
            ),
            files: counter_vec(
                "skep_files_processed_total",
                "Results ingested that changed their file, by outcome (succeeded, failed for good, retried).",
                &["outcome"],
            ),
            failures: counter_vec(
                "skep_file_failures_total",
                "Failed results ingested, by reason.",
                &["reason"],
            ),
            queue_depth: gauge_vec(
                "skep_queue_depth",
                "Tasks waiting in a pool's queue (ready plus deferred).",
                &["pool"],
            ),
            queue_in_flight: gauge_vec(
                "skep_queue_in_flight",
                "Tasks of a pool delivered to workers and not yet acked.",
                &["pool"],
            ),
            replicas_desired: gauge_vec(
                "skep_pool_replicas_desired",
                "Worker replicas the controller asks of a pool.",
                &["pool"],
            ),
            replicas_running: gauge_vec(
                "skep_pool_replicas_running",
                "Worker replicas of a pool running.",
                &["pool"],
            ),
            reconcile_seconds: histogram_vec(
                "skep_reconcile_duration_seconds",
                "Time of one reconcile, by kind (job, pool).",
                &["kind"],
            ),
            reconcile_errors: counter_vec(
                "skep_reconcile_errors_total",
                "Failed reconciles, by kind (job, pool) and error kind.",
                &["kind", "error"],
            ),
            call_seconds: histogram_vec(
                "skep_backend_call_duration_seconds",
                "Time of the controller's calls to the store, queue and runtime, by backend and outcome (ok, error, timeout, fenced: a write refused because another controller holds the lease).",
                &["backend", "outcome"],
            ),
            leader: IntGauge::new(
                "skep_controller_leader",
                "1 while this process holds the controller lease.",
            )
            .unwrap_or_else(|e| panic!("metric skep_controller_leader: {e}")),
            http_requests: counter_vec(
                "skep_http_requests_total",
                "HTTP requests, by method, route template and status.",
                &["method", "route", "status"],
            ),
            http_seconds: histogram_vec(
                "skep_http_request_duration_seconds",
                "HTTP request time to the response head, by route template.",
                &["route"],
            ),
            http_connections: IntGauge::new("skep_http_connections", "Open HTTP connections.")
                .unwrap_or_else(|e| panic!("metric skep_http_connections: {e}")),
            http_closed: counter_vec(
                "skep_http_connections_closed_total",
                "HTTP connections closed by a limit: `refused` (over --http-max-connections), `idle` (no byte moved for --http-idle-timeout-seconds).",
                &["reason"],
            ),
            files_served: counter_vec(
                "skep_files_served_total",
                "Requests to the file endpoint (/files) by result: ok, refused (bad signature), expired, notFound, notAllowed (outside --allow-path, or a symlink a job does not follow), error.",
                &["result"],
            ),
            file_bytes: prometheus::IntCounter::new(
                "skep_file_bytes_served_total",
                "Bytes of files sent by the file endpoint.",
            )
            .unwrap_or_else(|e| panic!("metric skep_file_bytes_served_total: {e}")),
            staged_received: counter_vec(
                "skep_staged_files_received_total",
                "Staged files (artefacts, long texts) uploaded by workers with no mount of the output folder, by result: ok, refused (bad signature), expired, notAllowed, badRequest, tooLarge, gone (the job's staging folder is gone), error.",
                &["result"],
            ),
            staged_bytes: prometheus::IntCounter::new(
                "skep_staged_bytes_received_total",
                "Bytes of staged files received from workers.",
            )
            .unwrap_or_else(|e| panic!("metric skep_staged_bytes_received_total: {e}")),
            registry,
        };
        m.register_all();
        for r in STAGED_RESULTS {
            m.staged_received.with_label_values(&[r]);
        }
        for r in FILE_RESULTS {
            m.files_served.with_label_values(&[r]);
        }
        for r in ["refused", "idle"] {
            m.http_closed.with_label_values(&[r]);
        }
        for p in PHASES {
            m.jobs.with_label_values(&[p.as_str()]);
        }
        for s in ["pending", "dispatched", "succeeded", "failed"] {
            m.job_files.with_label_values(&[s]);
        }
        for o in ["succeeded", "failed", "retried"] {
            m.files.with_label_values(&[o]);
        }
        for k in ["job", "pool"] {
            m.reconcile_seconds.with_label_values(&[k]);
        }
        m
    }

    fn register_all(&self) {
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(self.jobs.clone()),
            Box::new(self.job_files.clone()),
            Box::new(self.files.clone()),
            Box::new(self.failures.clone()),
            Box::new(self.queue_depth.clone()),
            Box::new(self.queue_in_flight.clone()),
            Box::new(self.replicas_desired.clone()),
            Box::new(self.replicas_running.clone()),
            Box::new(self.reconcile_seconds.clone()),
            Box::new(self.reconcile_errors.clone()),
            Box::new(self.call_seconds.clone()),
            Box::new(self.leader.clone()),
            Box::new(self.http_requests.clone()),
            Box::new(self.http_seconds.clone()),
            Box::new(self.http_connections.clone()),
            Box::new(self.http_closed.clone()),
            Box::new(self.files_served.clone()),
            Box::new(self.file_bytes.clone()),
            Box::new(self.staged_received.clone()),
            Box::new(self.staged_bytes.clone()),
        ];
        for c in collectors {
            self.registry
                .register(c)
                .unwrap_or_else(|e| panic!("registering a controller metric: {e}"));
        }
    }

    /// Sets the job gauges from a full list of jobs.
    pub fn set_jobs(&self, jobs: &[skep_api::BulkJob]) {
        let mut by_phase = [0i64; PHASES.len()];
        let mut files = [0i64; 4];
        for j in jobs {
            let s = j.status();
            if let Some(i) = PHASES.iter().position(|p| *p == s.phase) {
                by_phase[i] += 1;
            }
            if !s.phase.is_finished() {
                for (slot, n) in
                    files
                        .iter_mut()
                        .zip([s.files.pending, s.files.dispatched, s.files.succeeded, s.files.failed])
                {
                    *slot += i64::try_from(n).unwrap_or(i64::MAX);
                }
            }
        }
        for (p, n) in PHASES.iter().zip(by_phase) {
            self.jobs.with_label_values(&[p.as_str()]).set(n);
        }
        for (s, n) in ["pending", "dispatched", "succeeded", "failed"].iter().zip(files) {
            self.job_files.with_label_values(&[s]).set(n);
        }
    }

    /// Counts an ingested result that changed its file: `outcome` is
    /// `succeeded`, `failed` (for good) or `retried`.
    pub fn record_result(&self, outcome: &str, reason: Option<&str>) {
        self.files.with_label_values(&[outcome]).inc();
        if let Some(r) = reason {
            self.failures.with_label_values(&[r]).inc();
        }
    }

    pub fn set_queue(&self, pool: &str, depth: &skep_queue::Depth) {
        let waiting = depth.ready + depth.deferred;
        self.queue_depth
            .with_label_values(&[pool])
            .set(i64::try_from(waiting).unwrap_or(i64::MAX));
        self.queue_in_flight
            .with_label_values(&[pool])
            .set(i64::try_from(depth.in_flight).unwrap_or(i64::MAX));
    }

    pub fn set_replicas(&self, pool: &str, desired: u32, running: u32) {
        self.replicas_desired.with_label_values(&[pool]).set(i64::from(desired));
        self.replicas_running.with_label_values(&[pool]).set(i64::from(running));
    }

    /// Drops the series of pools no job names any more.
    pub fn retain_pools(&self, pools: &std::collections::BTreeSet<String>) {
        for vec in [
            &self.queue_depth,
            &self.queue_in_flight,
            &self.replicas_desired,
            &self.replicas_running,
        ] {
            let known: Vec<String> = vec
                .collect()
                .iter()
                .flat_map(|mf| mf.get_metric().iter())
                .filter_map(|m| {
                    m.get_label()
                        .iter()
                        .find(|l| l.name() == "pool")
                        .map(|l| l.value().to_owned())
                })
                .collect();
            for pool in known.iter().filter(|p| !pools.contains(*p)) {
                let _ = vec.remove_label_values(&[pool]);
            }
        }
    }

    pub fn observe_reconcile(&self, kind: &str, took: Duration, error: Option<&str>) {
        self.reconcile_seconds
            .with_label_values(&[kind])
            .observe(took.as_secs_f64());
        if let Some(e) = error {
            self.reconcile_errors.with_label_values(&[kind, e]).inc();
        }
    }

    pub fn observe_call(&self, backend: &str, outcome: &str, took: Duration) {
        self.call_seconds
            .with_label_values(&[backend, outcome])
            .observe(took.as_secs_f64());
    }

    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    pub fn observe_http(&self, method: &str, route: &str, status: u16, took: Duration) {
        self.http_requests
            .with_label_values(&[method, route, &status.to_string()])
            .inc();
        self.http_seconds
            .with_label_values(&[route])
            .observe(took.as_secs_f64());
    }

    /// `delta` connections opened (1) or ended (-1).
    pub fn http_connections(&self, delta: i64) {
        self.http_connections.add(delta);
    }

    pub fn http_connection_refused(&self) {
        self.http_closed.with_label_values(&["refused"]).inc();
    }

    pub fn http_connection_timed_out(&self) {
        self.http_closed.with_label_values(&["idle"]).inc();
    }

    /// One request to the file endpoint ended with `result` (one of
    /// [`FILE_RESULTS`]).
    pub fn file_request(&self, result: &'static str) {
        self.files_served.with_label_values(&[result]).inc();
    }

    pub fn file_bytes_sent(&self, n: u64) {
        self.file_bytes.inc_by(n);
    }

    /// One upload of a staged file ended with `result` (one of
    /// [`STAGED_RESULTS`]) after `bytes` were written.
    pub fn staged_file_received(&self, result: &'static str, bytes: u64) {
        self.staged_received.with_label_values(&[result]).inc();
        self.staged_bytes.inc_by(bytes);
    }

    /// The `Content-Type` of [`Metrics::encode`]'s output.
    pub const CONTENT_TYPE: &'static str = prometheus::TEXT_FORMAT;

    /// Everything in the Prometheus text format.
    pub fn encode(&self) -> Result<String, prometheus::Error> {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf)?;
        String::from_utf8(buf).map_err(|e| prometheus::Error::Msg(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_is_exported_and_nothing_else() {
        let m = Metrics::new();
        m.record_result("failed", Some("corrupt"));
        m.set_queue("tesseract", &skep_queue::Depth::default());
        m.set_replicas("tesseract", 2, 1);
        m.observe_reconcile("job", Duration::from_millis(3), Some("store"));
        m.observe_call("store", "ok", Duration::from_millis(1));
        m.observe_http("GET", "/api/jobs", 200, Duration::from_millis(1));
        let text = m.encode().unwrap();
        let exported: std::collections::BTreeSet<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        let named: std::collections::BTreeSet<&str> = NAMES.iter().copied().collect();
        assert_eq!(exported, named);
        assert!(
            text.contains("skep_pool_replicas_desired{pool=\"tesseract\"} 2"),
            "{text}"
        );
        m.retain_pools(&Default::default());
        assert!(!m.encode().unwrap().contains("pool=\"tesseract\""));
    }
}
