//! The real thing: one skep worker (the loop `skep-worker` and `skep run`
//! use) with one OCR slot per thread, fed task messages through a
//! [`MemoryQueue`], answering on the results topic.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use skep_api::{Outcome, RESULTS_TOPIC, ResultMessage, TaskMessage, WIRE_VERSION, task_topic};
use skep_queue::{MemoryQueue, SubscribeOptions, Subscription, TaskQueue};
use skep_worker::{WorkerConfig, worker};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info_span, warn};

use super::corpus::Page;
use super::{Error, Result, Round, Settings};
use crate::files::FileServer;
use crate::load::Meter;

const POOL: &str = "bench";
const JOB: &str = "bench";
const WARM_UP_JOB: &str = "bench-warm-up";
const RESULTS_CHANNEL: &str = "bench";
/// Per-file limit written into the tasks: long enough never to fire.
const TASK_TIMEOUT: Duration = Duration::from_secs(600);
/// How long to wait for the next result before calling the run stalled.
const PATIENCE: Duration = Duration::from_secs(900);
/// How long the worker may finish in-flight files after the run (none are
/// in flight by then).
const STOP_GRACE: Duration = Duration::from_secs(5);

/// How the worker reads the pages.
#[derive(Clone, Copy)]
pub enum Reader<'a> {
    /// From their paths.
    Path,
    /// Through the controller's file endpoint.
    Files(&'a FileServer),
    /// Through presigned GETs of an S3 server, by page path.
    Presigned(&'a HashMap<PathBuf, String>),
}

impl Reader<'_> {
    fn url(self, page: &Page) -> Option<String> {
        match self {
            Reader::Path => None,
            Reader::Files(s) => Some(s.url(&page.path)),
            Reader::Presigned(urls) => urls.get(&page.path).cloned(),
        }
    }
}

/// Starts a worker with `settings.threads` slots on a fresh queue, warms it
/// up with one task per slot (each slot starts its engine), then publishes
/// one task per page and times from that publish to the last result.
/// Unless `urls` is [`Reader::Path`], every page is read through a URL
/// (`--file-access url`) instead of its path.
pub async fn run(pages: &[Page], settings: &Settings, urls: Reader<'_>) -> Result<Round> {
    let queue = Arc::new(MemoryQueue::new());
    let opts = SubscribeOptions::new(RESULTS_CHANNEL, pages.len() + settings.threads, PATIENCE);
    let mut results = queue.subscribe(RESULTS_TOPIC, opts).await.map_err(Error::Queue)?;
    let mut cfg = WorkerConfig::new("bench-worker", skep_worker::node_name(), POOL, settings.threads);
    cfg.stop_grace = STOP_GRACE;
    if !matches!(urls, Reader::Path) {
        cfg.file_access = skep_worker::fetch::FileAccess::Url;
    }
    let shutdown = CancellationToken::new();
    let worker = tokio::spawn(
        worker::run(queue.clone(), cfg, shutdown.clone()).instrument(info_span!("bench_worker", pool = POOL)),
    );
    let round = drive(queue.as_ref(), results.as_mut(), pages, settings, urls).await;
    shutdown.cancel();
    let report = worker.await.map_err(|_| Error::Panicked("the skep worker"))?;
    if report.handed_back > 0 {
        warn!(
            handed_back = report.handed_back,
            "the worker stopped with tasks in flight"
        );
    }
    round
}

async fn drive(
    queue: &dyn TaskQueue,
    results: &mut dyn Subscription,
    pages: &[Page],
    settings: &Settings,
    urls: Reader<'_>,
) -> Result<Round> {
    let topic = task_topic(POOL);
    let warm_up: Vec<Bytes> = (0..settings.threads)
        .map(|t| task(WARM_UP_JOB, t, &pages[t % pages.len()], settings, urls))
        .collect();
    queue.publish(&topic, warm_up).await.map_err(Error::Queue)?;
    collect(results, WARM_UP_JOB, settings.threads).await?;

    let (started, meter) = (Instant::now(), Meter::start());
    let tasks: Vec<Bytes> = pages
        .iter()
        .enumerate()
        .map(|(i, p)| task(JOB, i, p, settings, urls))
        .collect();
    queue.publish(&topic, tasks).await.map_err(Error::Queue)?;
    let texts = collect(results, JOB, pages.len()).await?;
    Ok(Round {
        elapsed: started.elapsed(),
        texts,
        others: meter.others(),
    })
}

fn task(job: &str, index: usize, page: &Page, settings: &Settings, urls: Reader<'_>) -> Bytes {
    let msg = TaskMessage {
        v: WIRE_VERSION,
        job: job.to_owned(),
        job_uid: format!("{job}-uid"),
        index: index as u64,
        part: 0,
        pages: None,
        path: page.path.display().to_string(),
        url: urls.url(page),
        upload: None,
        size: None,
        etag: None,
        attempt: 1,
        max_attempts: 3,
        timeout_ms: TASK_TIMEOUT.as_millis() as u64,
        languages: settings.languages.split('+').map(str::to_owned).collect(),
        page_seg_mode: settings.psm,
        dpi: settings.dpi,
        pages_per_task: 8,
        pdf: skep_api::PdfMode::Auto,
        // NB: like the bare loop it is compared with: no orientation check.
        auto_rotate: false,
        artefacts: Vec::new(),
        staging: None,
    };
    Bytes::from(msg.encode())
}

/// Takes results of `job` until each of its `count` tasks has one; the text
/// of task `i` is at `i` (`None` when it failed). Duplicates are ignored.
async fn collect(results: &mut dyn Subscription, job: &str, count: usize) -> Result<Vec<Option<String>>> {
    let mut texts = vec![None; count];
    let mut seen = HashSet::new();
    while seen.len() < count {
        let delivery = tokio::time::timeout(PATIENCE, results.next())
            .await
            .map_err(|_| Error::Stalled { waited: PATIENCE })?
            .ok_or(Error::Stalled { waited: PATIENCE })?;
        let decoded = ResultMessage::decode(&delivery.body);
        if let Err(error) = delivery.ack().await {
            warn!(%error, "acking a result failed");
        }
        let result = match decoded {
            Ok(r) => r,
            Err(error) => {
                warn!(%error, "skipping an unreadable result");
                continue;
            }
        };
        let index = result.index as usize;
        if result.job != job || index >= count || !seen.insert(index) {
            continue;
        }
        texts[index] = match result.outcome {
            Outcome::Succeeded { text, .. } => Some(text),
            Outcome::Failed { reason, error } => {
                warn!(%reason, %error, index, "the worker could not read a page");
                None
            }
            Outcome::Split { pages } => {
                warn!(pages, index, "a page came back as a document to split");
                None
            }
        };
    }
    Ok(texts)
}
