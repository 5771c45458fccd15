//! Live progress as server-sent events: `GET /api/events` (every job, and
//! the swarm's services and nodes) and `GET /api/jobs/{name}/events` (one
//! job). Each `jobs` event carries every job's progress with its
//! throughput (files/s over the last [`RATE_WINDOW`]) and ETA; a `swarm`
//! event carries the swarm overview. Events are sent when something
//! changed, and a comment keeps the connection alive in between. Streams end
//! when the server shuts down.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::Method;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use futures::Stream;
use serde::Serialize;
use serde_json::json;
use skep_api::{BulkJob, FileCounts, PageCounts, Phase, ReplicaStatus};
use tokio::time::Instant;
use tracing::Instrument;

use super::error::ApiError;
use super::extract::Path;
use super::openapi::{Answer, Api, RouteDoc, path};
use super::{ApiState, bounded};

/// How often a stream reads the store.
pub const TICK: Duration = Duration::from_millis(1000);
/// How often the `swarm` event is refreshed.
pub const SWARM_EVERY: Duration = Duration::from_secs(3);
/// Throughput is measured over this much of the recent past.
pub const RATE_WINDOW: Duration = Duration::from_secs(15);

pub(super) fn routes(api: Api) -> Api {
    api.add(
        RouteDoc::new(
            Method::GET,
            "/api/events",
            "events",
            "Server-sent events: `jobs` (every job's progress, throughput and ETA) and `swarm` (services, nodes, health)",
        )
        .tag("events")
        .answer(Answer::EventStream)
        .errors(&[429, 503]),
        get(all_events),
    )
    .add(
        RouteDoc::new(
            Method::GET,
            "/api/jobs/{name}/events",
            "jobEvents",
            "Server-sent events: `jobs` with this job's progress, until it is deleted",
        )
        .tag("jobs")
        .param(path("name", "The job's metadata.name", super::jobs::name_schema()))
        .answer(Answer::EventStream)
        .errors(&[404, 429, 503]),
        get(job_events),
    )
}

/// One job's progress, as the dashboard shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    pub name: String,
    pub phase: Phase,
    pub pool: String,
    pub suspend: bool,
    pub deleting: bool,
    pub files: FileCounts,
    pub pages: PageCounts,
    pub replicas: ReplicaStatus,
    pub nodes_used: Vec<String>,
    /// Files finished per second over the rate window.
    pub files_per_second: f64,
    /// Pages finished per second over the rate window.
    pub pages_per_second: f64,
    /// Seconds until every page is done at the page rate (`None` when
    /// unknown).
    pub eta_seconds: Option<f64>,
    /// Failed files by reason.
    pub failures_by_reason: BTreeMap<String, u64>,
    pub start_time: Option<chrono::DateTime<chrono::Utc>>,
    pub completion_time: Option<chrono::DateTime<chrono::Utc>>,
}

/// Finished-file and finished-page samples per job, for the rates.
#[derive(Default)]
struct Rates {
    samples: HashMap<String, VecDeque<(Instant, u64, u64)>>,
    /// Failures by reason per job uid, recomputed only when the failed
    /// count changes (it costs an aggregate over the job's results).
    failures: HashMap<String, (u64, BTreeMap<String, u64>)>,
}

impl Rates {
    /// Files and pages finished per second over the rate window.
    fn rate(&mut self, uid: &str, files: u64, pages: u64, now: Instant) -> (f64, f64) {
        let q = self.samples.entry(uid.to_owned()).or_default();
        q.push_back((now, files, pages));
        while q.len() > 2 && q.front().is_some_and(|(t, _, _)| now.duration_since(*t) > RATE_WINDOW) {
            q.pop_front();
        }
        match (q.front(), q.back()) {
            (Some((t0, f0, p0)), Some((t1, f1, p1))) if t1 > t0 && f1 >= f0 && p1 >= p0 => {
                let secs = t1.duration_since(*t0).as_secs_f64();
                ((f1 - f0) as f64 / secs, (p1 - p0) as f64 / secs)
            }
            _ => (0.0, 0.0),
        }
    }

    async fn progress(
        &mut self,
        state: &ApiState,
        jobs: Vec<BulkJob>,
        now: Instant,
    ) -> Result<Vec<Progress>, ApiError> {
        let mut out = Vec::with_capacity(jobs.len());
        let live: std::collections::HashSet<String> = jobs.iter().map(|j| j.uid().to_owned()).collect();
        self.samples.retain(|k, _| live.contains(k));
        self.failures.retain(|k, _| live.contains(k));
        for job in jobs {
            let s = job.status();
            let uid = job.uid().to_owned();
            let (rate, page_rate) = if s.phase.is_finished() {
                (0.0, 0.0)
            } else {
                self.rate(&uid, s.files.finished(), s.pages.done, now)
            };
            // NB: pages, not files: one long document is most of a job's
            // work while it is one file.
            let remaining = s.pages.remaining();
            let eta = (page_rate > 0.0 && !s.phase.is_finished()).then(|| remaining as f64 / page_rate);
            let failures = match (&s.report, s.files.failed) {
                (Some(r), _) if s.phase.is_finished() => r.failures_by_reason.clone(),
                (_, 0) => BTreeMap::new(),
                (_, failed) => match self.failures.get(&uid) {
                    Some((n, by)) if *n == failed => by.clone(),
                    _ => {
                        let by = bounded("the store", state.store().summarize(&uid))
                            .await?
                            .failures_by_reason;
                        self.failures.insert(uid.clone(), (failed, by.clone()));
                        by
                    }
                },
            };
            out.push(Progress {
                name: job.metadata.name.clone(),
                phase: s.phase,
                pool: job.spec.scaling.pool.clone(),
                suspend: job.spec.suspend,
                deleting: job.is_deleting(),
                files: s.files,
                pages: s.pages,
                replicas: s.replicas,
                nodes_used: s.nodes_used.clone(),
                files_per_second: (rate * 100.0).round() / 100.0,
                pages_per_second: (page_rate * 100.0).round() / 100.0,
                eta_seconds: eta.map(|e| e.round()),
                failures_by_reason: failures,
                start_time: s.start_time,
                completion_time: s.completion_time,
            });
        }
        Ok(out)
    }
}

/// Default `--api-max-streams`.
pub const DEFAULT_MAX_STREAMS: usize = 256;
/// Default `--api-max-streams-per-token`.
pub const DEFAULT_MAX_STREAMS_PER_TOKEN: usize = 32;

/// One reading of every job's progress, shared by every stream.
#[derive(Debug)]
pub struct Snapshot {
    /// When the store was read.
    at: Instant,
    /// Changes only when the progress does.
    version: u64,
    progress: Result<Vec<Progress>, String>,
    /// The `jobs` (or `error`) event of every job, encoded once and shared
    /// by every stream (a clone is a reference count).
    encoded: Bytes,
}

/// The jobs feed: one producer reads the store once per [`TICK`] while
/// anyone listens, and every stream watches its latest reading (a stream
/// that falls behind skips to the newest; nothing piles up). Also the
/// count of open streams, capped globally and per token.
pub struct Feed {
    tx: tokio::sync::watch::Sender<Option<Arc<Snapshot>>>,
    /// Whether the producer runs; changed only under this lock, together
    /// with subscribing, so a new stream never misses a stopping producer.
    running: Mutex<bool>,
    streams: Mutex<(usize, HashMap<u64, usize>)>,
    max_streams: usize,
    max_per_token: usize,
}

impl Feed {
    pub fn new(max_streams: usize, max_per_token: usize) -> Self {
        Self {
            tx: tokio::sync::watch::channel(None).0,
            running: Mutex::new(false),
            streams: Mutex::new((0, HashMap::new())),
            max_streams: max_streams.max(1),
            max_per_token: max_per_token.max(1),
        }
    }

    /// Takes a stream slot for `token` (a key of the caller's token; `None`
    /// without auth), or says why not.
    fn open(self: &Arc<Self>, token: Option<u64>) -> Result<StreamSlot, ApiError> {
        let mut s = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        if s.0 >= self.max_streams {
            return Err(ApiError::TooMany(format!(
                "{} event streams are open, the most this server allows; close one or raise --api-max-streams",
                self.max_streams
            )));
        }
        if let Some(k) = token {
            let n = s.1.entry(k).or_default();
            if *n >= self.max_per_token {
                return Err(ApiError::TooMany(format!(
                    "this token has {} event streams open, the most allowed per token (--api-max-streams-per-token)",
                    self.max_per_token
                )));
            }
            *n += 1;
        }
        s.0 += 1;
        Ok(StreamSlot {
            feed: self.clone(),
            token,
        })
    }

    /// A receiver of the feed; starts the producer when none runs.
    fn subscribe(self: &Arc<Self>, state: &ApiState) -> tokio::sync::watch::Receiver<Option<Arc<Snapshot>>> {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let rx = self.tx.subscribe();
        if !*running {
            *running = true;
            let feed = self.clone();
            let state = state.clone();
            tokio::spawn(async move { feed.produce(state).await }.instrument(tracing::debug_span!("events_feed")));
        }
        rx
    }

    /// Reads the store every tick while anyone listens, until shutdown.
    async fn produce(self: Arc<Self>, state: ApiState) {
        let mut rates = Rates::default();
        loop {
            {
                let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
                if self.tx.receiver_count() == 0 || state.shutdown().is_cancelled() {
                    *running = false;
                    return;
                }
            }
            let now = Instant::now();
            let progress = match bounded("the store", state.store().list_jobs()).await {
                Ok(jobs) => rates.progress(&state, jobs, now).await,
                Err(e) => Err(e),
            };
            let progress = progress.map_err(|e| e.to_string());
            let previous = self.tx.borrow().clone();
            let snap = match previous {
                Some(p) if p.progress == progress => Snapshot {
                    at: now,
                    version: p.version,
                    progress,
                    encoded: p.encoded.clone(),
                },
                p => {
                    let encoded = match &progress {
                        Ok(all) => encode("jobs", all),
                        Err(e) => encode("error", &json!({"error": e})),
                    };
                    Snapshot {
                        at: now,
                        version: p.map_or(1, |p| p.version + 1),
                        progress,
                        encoded,
                    }
                }
            };
            self.tx.send_replace(Some(Arc::new(snap)));
            tokio::select! {
                _ = state.shutdown().cancelled() => {}
                _ = tokio::time::sleep(TICK) => {}
            }
        }
    }
}

/// An open stream's place in the count; given back when dropped.
struct StreamSlot {
    feed: Arc<Feed>,
    token: Option<u64>,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut s = self.feed.streams.lock().unwrap_or_else(|e| e.into_inner());
        s.0 = s.0.saturating_sub(1);
        if let Some(k) = self.token
            && let Some(n) = s.1.get_mut(&k)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                s.1.remove(&k);
            }
        }
    }
}

/// A key for the caller's token (the route's auth has accepted it).
fn token_key(headers: &axum::http::HeaderMap) -> Option<u64> {
    let d = super::auth::digest(super::bearer_header(headers)?.as_bytes());
    Some(u64::from_le_bytes(d[..8].try_into().ok()?))
}

/// One server-sent event, encoded: `event: NAME` and its JSON on one
/// `data:` line (compact JSON has no line breaks).
fn encode(name: &str, data: &impl Serialize) -> Bytes {
    let json = serde_json::to_string(data).unwrap_or_else(|_| "{\"error\":\"cannot encode\"}".to_owned());
    Bytes::from(format!("event: {name}\ndata: {json}\n\n"))
}

/// A comment that keeps an idle stream's connection alive.
const KEEP_ALIVE: &[u8] = b": keep-alive\n\n";
/// How often a stream with nothing to say sends [`KEEP_ALIVE`].
const KEEP_ALIVE_EVERY: Duration = Duration::from_secs(15);

/// The stream behind both routes: `only` narrows it to one job.
fn stream(state: ApiState, slot: StreamSlot, only: Option<String>, with_swarm: bool) -> Response {
    let mut feed = state.feed().subscribe(&state);
    let body = async_stream(move |tx| async move {
        let _slot = slot;
        let opened = Instant::now();
        let mut sent_version = 0u64;
        let mut last_jobs: Option<Vec<Progress>> = None;
        let mut last_swarm: Option<serde_json::Value> = None;
        let mut next_swarm = Instant::now();
        let mut last_sent = Instant::now();
        loop {
            let snap = feed.borrow_and_update().clone();
            if let Some(snap) = snap {
                let out = match (&only, &snap.progress) {
                    // Every job, or the store's error: the shared encoding,
                    // when it changed.
                    (None, _) | (Some(_), Err(_)) => (snap.version != sent_version).then(|| snap.encoded.clone()),
                    (Some(name), Ok(all)) => {
                        let p: Vec<Progress> = all.iter().filter(|p| &p.name == name).cloned().collect();
                        // NB: a reading older than this stream may predate
                        // the job: only a newer one can say it is gone.
                        if p.is_empty() && snap.at >= opened {
                            let _ = tx.send(encode("deleted", &json!({"name": name}))).await;
                            return;
                        }
                        if last_jobs.as_ref() == Some(&p) {
                            None
                        } else {
                            let e = encode("jobs", &p);
                            last_jobs = Some(p);
                            Some(e)
                        }
                    }
                };
                sent_version = snap.version;
                if let Some(bytes) = out {
                    if tx.send(bytes).await.is_err() {
                        return;
                    }
                    last_sent = Instant::now();
                }
            }
            let now = Instant::now();
            if with_swarm && now >= next_swarm {
                next_swarm = now + SWARM_EVERY;
                // NB: a little under the period, so this stream's own
                // cadence always finds the shared copy stale.
                let snap = state.swarm_overview(SWARM_EVERY - TICK / 2).await;
                if last_swarm.as_ref() != Some(&snap) {
                    if tx.send(encode("swarm", &snap)).await.is_err() {
                        return;
                    }
                    last_sent = Instant::now();
                    last_swarm = Some(snap);
                }
            }
            if last_sent.elapsed() >= KEEP_ALIVE_EVERY {
                if tx.send(Bytes::from_static(KEEP_ALIVE)).await.is_err() {
                    return;
                }
                last_sent = Instant::now();
            }
            let wake = if with_swarm {
                next_swarm.min(last_sent + KEEP_ALIVE_EVERY)
            } else {
                last_sent + KEEP_ALIVE_EVERY
            };
            tokio::select! {
                _ = state.shutdown().cancelled() => return,
                _ = tx.closed() => return,
                changed = feed.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    });
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        axum::body::Body::from_stream(body),
    )
        .into_response()
}

/// A body fed by `producer` through a small bounded channel: a slow client
/// holds its own producer back (it skips to the feed's newest reading)
/// instead of piling events up; the events themselves are shared.
fn async_stream<F, Fut>(producer: F) -> impl Stream<Item = Result<Bytes, Infallible>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Bytes>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    tokio::spawn(producer(tx).instrument(tracing::debug_span!("event_stream")));
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (Ok(e), rx)) })
}

async fn all_events(State(state): State<ApiState>, headers: axum::http::HeaderMap) -> Result<Response, ApiError> {
    let slot = state.feed().open(token_key(&headers))?;
    Ok(stream(state, slot, None, true))
}

async fn job_events(
    State(state): State<ApiState>,
    headers: axum::http::HeaderMap,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    super::jobs::get_job(&state, &name).await?;
    let slot = state.feed().open(token_key(&headers))?;
    Ok(stream(state, slot, Some(name), false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn rate_over_the_window() {
        let mut r = Rates::default();
        let t0 = Instant::now();
        assert_eq!(r.rate("a", 0, 0, t0), (0.0, 0.0), "one sample: no rate");
        assert_eq!(r.rate("a", 10, 20, t0 + Duration::from_secs(2)), (5.0, 10.0));
        assert_eq!(r.rate("a", 40, 200, t0 + Duration::from_secs(4)), (10.0, 50.0));
        // Old samples leave the window: only the recent pace counts.
        let later = t0 + RATE_WINDOW + Duration::from_secs(10);
        r.rate("a", 40, 200, later - Duration::from_secs(5));
        assert_eq!(r.rate("a", 40, 200, later), (0.0, 0.0), "stalled for the whole window");
    }
}
