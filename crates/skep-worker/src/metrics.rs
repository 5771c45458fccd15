//! The worker's Prometheus metrics, all prefixed `skep_worker_`. Labels are
//! closed sets (an outcome, a [`FailureReason`], a queue operation), never a
//! file path, job name or id, so the number of series stays bounded.

use prometheus::{Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};
use skep_api::{FailureReason, Outcome, ResultMessage};

/// Bounds of `skep_worker_ocr_seconds`: a small page takes about a second,
/// a dense A4 page several, and the default per-file limit is 300 s.
const OCR_SECONDS_BUCKETS: [f64; 12] = [0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0];

/// Bounds of `skep_worker_fetch_seconds`: a scan of a few hundred KiB on a
/// LAN takes milliseconds; a large PDF over a slow link, seconds.
const FETCH_SECONDS_BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0];

/// Label values of `skep_worker_files_total{outcome}`: outcomes of a task (a file or a page range): read, failed, or found to
/// need splitting into ranges.
const OUTCOMES: [&str; 3] = ["succeeded", "failed", "split"];

/// A queue operation that failed, for `skep_worker_queue_errors_total{op}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueOp {
    Connect,
    Subscribe,
    Publish,
}

impl QueueOp {
    pub fn metric_label(self) -> &'static str {
        match self {
            QueueOp::Connect => "connect",
            QueueOp::Subscribe => "subscribe",
            QueueOp::Publish => "publish",
        }
    }
}

/// One registry with every metric of a worker process.
#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Registry,
    files: IntCounterVec,
    failures: IntCounterVec,
    ocr_seconds: Histogram,
    page_seconds: Histogram,
    pages: IntCounter,
    in_flight: IntGauge,
    ready: IntGauge,
    queue_errors: IntCounterVec,
    fetches: IntCounterVec,
    fetch_bytes: IntCounter,
    fetch_seconds: Histogram,
}

impl Metrics {
    /// The metrics of a worker with `slots` OCR slots.
    pub fn new(slots: usize) -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let files = IntCounterVec::new(
            Opts::new(
                "skep_worker_files_total",
                "Files answered (result published), by outcome.",
            ),
            &["outcome"],
        )?;
        let failures = IntCounterVec::new(
            Opts::new("skep_worker_failures_total", "Files answered as failed, by reason."),
            &["reason"],
        )?;
        let ocr_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "skep_worker_ocr_seconds",
                "Time spent reading one file, from taking its task to its result (excludes attemptsExceeded).",
            )
            .buckets(OCR_SECONDS_BUCKETS.to_vec()),
        )?;
        let page_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "skep_worker_page_seconds",
                "Time spent per page of a file read successfully (the file's time over its pages, once per page).",
            )
            .buckets(OCR_SECONDS_BUCKETS.to_vec()),
        )?;
        let pages = IntCounter::new("skep_worker_pages_total", "Pages of the files read successfully.")?;
        let in_flight = IntGauge::new("skep_worker_in_flight", "Tasks being worked on now.")?;
        // NB: set once here; the registry keeps it.
        let slots_gauge = IntGauge::new("skep_worker_slots", "OCR slots (files read at once).")?;
        let ready = IntGauge::new(
            "skep_worker_ready",
            "1 while subscribed to the task queue and not draining, else 0.",
        )?;
        let queue_errors = IntCounterVec::new(
            Opts::new(
                "skep_worker_queue_errors_total",
                "Failed task queue operations, by operation.",
            ),
            &["op"],
        )?;
        let fetches = IntCounterVec::new(
            Opts::new(
                "skep_worker_fetches_total",
                "Files fetched through their task's URL (no shared mount), by result: ok, notFound, changed (another version than listed), refused (expired or bad signature), tooLarge, timeout, error (after retries).",
            ),
            &["result"],
        )?;
        let fetch_bytes = IntCounter::new("skep_worker_fetch_bytes_total", "Bytes of files fetched through URLs.")?;
        let fetch_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "skep_worker_fetch_seconds",
                "Time to fetch one file through its URL, retries included.",
            )
            .buckets(FETCH_SECONDS_BUCKETS.to_vec()),
        )?;
        registry.register(Box::new(fetches.clone()))?;
        registry.register(Box::new(fetch_bytes.clone()))?;
        registry.register(Box::new(fetch_seconds.clone()))?;
        for r in crate::fetch::FETCH_RESULTS {
            fetches.with_label_values(&[r]);
        }
        registry.register(Box::new(files.clone()))?;
        registry.register(Box::new(failures.clone()))?;
        registry.register(Box::new(ocr_seconds.clone()))?;
        registry.register(Box::new(page_seconds.clone()))?;
        registry.register(Box::new(pages.clone()))?;
        registry.register(Box::new(in_flight.clone()))?;
        registry.register(Box::new(slots_gauge.clone()))?;
        registry.register(Box::new(ready.clone()))?;
        registry.register(Box::new(queue_errors.clone()))?;
        // NB: series that exist from the start read 0 rather than missing.
        for outcome in OUTCOMES {
            files.with_label_values(&[outcome]);
        }
        for op in [QueueOp::Connect, QueueOp::Subscribe, QueueOp::Publish] {
            queue_errors.with_label_values(&[op.metric_label()]);
        }
        slots_gauge.set(i64::try_from(slots).unwrap_or(i64::MAX));
        Ok(Self {
            registry,
            files,
            failures,
            ocr_seconds,
            page_seconds,
            pages,
            in_flight,
            ready,
            queue_errors,
            fetches,
            fetch_bytes,
            fetch_seconds,
        })
    }

    /// One fetch of a file through its URL ended with `result`.
    pub fn file_fetched(&self, result: &str, bytes: u64, took: std::time::Duration) {
        self.fetches.with_label_values(&[result]).inc();
        self.fetch_bytes.inc_by(bytes);
        self.fetch_seconds.observe(took.as_secs_f64());
    }

    /// Counts a published result.
    pub fn record_result(&self, result: &ResultMessage) {
        match &result.outcome {
            Outcome::Succeeded { pages, .. } => {
                self.files.with_label_values(&["succeeded"]).inc();
                self.pages.inc_by(u64::from(*pages));
                let seconds = result.duration_ms as f64 / 1000.0;
                self.ocr_seconds.observe(seconds);
                let per_page = seconds / f64::from((*pages).max(1));
                for _ in 0..*pages {
                    self.page_seconds.observe(per_page);
                }
            }
            Outcome::Split { .. } => {
                self.files.with_label_values(&["split"]).inc();
            }
            Outcome::Failed { reason, .. } => {
                self.files.with_label_values(&["failed"]).inc();
                self.failures.with_label_values(&[reason.as_str()]).inc();
                if *reason != FailureReason::AttemptsExceeded {
                    self.ocr_seconds.observe(result.duration_ms as f64 / 1000.0);
                }
            }
        }
    }

    pub fn task_started(&self) {
        self.in_flight.inc();
    }

    pub fn task_ended(&self) {
        self.in_flight.dec();
    }

    pub fn queue_error(&self, op: QueueOp) {
        self.queue_errors.with_label_values(&[op.metric_label()]).inc();
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.set(i64::from(ready));
    }

    /// Everything in the Prometheus text format.
    pub fn encode(&self) -> Result<String, prometheus::Error> {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf)?;
        String::from_utf8(buf).map_err(|e| prometheus::Error::Msg(e.to_string()))
    }

    /// The `Content-Type` of [`Metrics::encode`]'s output.
    pub fn content_type() -> &'static str {
        prometheus::TEXT_FORMAT
    }
}

#[cfg(test)]
mod tests {
    use skep_api::{WIRE_VERSION, WorkerRef};

    use super::*;

    fn result(outcome: Outcome, duration_ms: u64) -> ResultMessage {
        ResultMessage {
            v: WIRE_VERSION,
            job: "job".into(),
            job_uid: "uid".into(),
            index: 0,
            part: 0,
            attempt: 1,
            outcome,
            duration_ms,
            worker: WorkerRef {
                id: "w".into(),
                node: "n".into(),
            },
        }
    }

    #[test]
    fn results_are_counted_by_outcome_and_reason_only() {
        let m = Metrics::new(2).expect("metrics");
        m.record_result(&result(
            Outcome::Succeeded {
                text: "hello".into(),
                confidence: 90.0,
                pages: 3,
                words: 1,
                page_info: Vec::new(),
                staged: None,
                text_staged: false,
            },
            1500,
        ));
        m.record_result(&result(
            Outcome::Failed {
                reason: FailureReason::Corrupt,
                error: "bad /secret/path.png".into(),
            },
            10,
        ));
        m.record_result(&result(
            Outcome::Failed {
                reason: FailureReason::AttemptsExceeded,
                error: "x".into(),
            },
            0,
        ));
        m.task_started();
        m.set_ready(true);
        let text = m.encode().expect("encode");
        for line in [
            "skep_worker_files_total{outcome=\"succeeded\"} 1",
            "skep_worker_files_total{outcome=\"failed\"} 2",
            "skep_worker_failures_total{reason=\"corrupt\"} 1",
            "skep_worker_failures_total{reason=\"attemptsExceeded\"} 1",
            "skep_worker_pages_total 3",
            "skep_worker_ocr_seconds_count 2",
            "skep_worker_ocr_seconds_sum 1.51",
            "skep_worker_page_seconds_count 3",
            "skep_worker_page_seconds_sum 1.5",
            "skep_worker_in_flight 1",
            "skep_worker_slots 2",
            "skep_worker_ready 1",
            "skep_worker_queue_errors_total{op=\"publish\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "no line {line:?} in\n{text}");
        }
        for leaked in ["secret", "\"job\"", "\"uid\"", "\"w\"", "\"n\""] {
            assert!(!text.contains(leaked), "{leaked} in\n{text}");
        }
    }
}
