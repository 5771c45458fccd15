//! Result ingest: results from every worker arrive on one topic; each batch
//! is written to the store in one transaction, then acked, then the jobs it
//! touched are reconciled. A crash between write and ack only redelivers
//! results that are already stored, and a duplicate result changes nothing
//! (results are keyed by job uid, file index and part).
//!
//! Before the write: a long text a worker staged is read back; a file read
//! whole whose result is first has its staged artefacts landed (see
//! `landing`), and a landing that fails fails the file. After the write,
//! the staged folders of results the store refused (duplicates, stale
//! attempts) are removed. A split file's ranges keep their folders until
//! the file is assembled (`assemble`).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use skep_api::{FailureReason, Outcome, PageRange, RESULTS_TOPIC, ResultMessage};
use skep_queue::{Delivery, SubscribeOptions, Subscription};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::backoff::delay_for;
use super::landing::{self, JobPaths, Staged};
use super::{Context, Key, Result};
use crate::store::{FileResult, TaskUpdate, Transition};

/// Results written per store transaction at most.
pub const INGEST_BATCH: usize = 512;
/// Results of a batch made ready at once (their outputs landed, an
/// object's original fetched): the landing tools use a core each.
const PREPARE_AT_ONCE: usize = 4;
/// How long a batch waits to fill once its first result is in.
const BATCH_LINGER: Duration = Duration::from_millis(10);
const CHANNEL: &str = "controller";

#[derive(Clone, Debug)]
struct JobInfo {
    name: String,
    max_attempts: u32,
    pages_per_task: u32,
    paths: JobPaths,
}

/// Job uid -> what ingest needs of the job; refreshed from the store on a
/// miss.
#[derive(Default)]
pub struct JobIndex(Mutex<HashMap<String, JobInfo>>);

impl JobIndex {
    fn get(&self, uid: &str) -> Option<JobInfo> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).get(uid).cloned()
    }

    async fn refresh(&self, ctx: &Context) -> Result<()> {
        let jobs = ctx.store_call(ctx.store.list_jobs()).await?;
        let map = jobs
            .into_iter()
            .map(|j| {
                (
                    j.uid().to_owned(),
                    JobInfo {
                        name: j.metadata.name.clone(),
                        max_attempts: j.spec.max_attempts,
                        pages_per_task: j.spec.pages_per_task,
                        paths: JobPaths::of(&j, &ctx.cfg.default_output_root),
                    },
                )
            })
            .collect();
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = map;
        Ok(())
    }
}

/// The store change one result asks for.
pub fn transition(
    result: &ResultMessage,
    max_attempts: u32,
    pages_per_task: u32,
    retry_base: Duration,
    now_ms: i64,
) -> Transition {
    let mut stored = FileResult {
        duration_ms: result.duration_ms,
        worker: Some(result.worker.id.clone()),
        node: Some(result.worker.node.clone()),
        finished_ms: now_ms,
        ..FileResult::default()
    };
    match &result.outcome {
        Outcome::Succeeded {
            text,
            confidence,
            pages,
            words,
            page_info,
            staged,
            text_staged: _,
        } => {
            stored.text = Some(text.clone());
            stored.confidence = Some(*confidence);
            stored.pages = *pages;
            stored.words = *words;
            stored.page_info = page_info.clone();
            stored.staged = staged.clone();
            Transition::Succeed { result: stored }
        }
        Outcome::Split { pages } if result.part == 0 && *pages > 0 => Transition::Split {
            pages: *pages,
            ranges: PageRange::split(*pages, pages_per_task),
        },
        Outcome::Split { .. } => failure(
            result,
            FailureReason::BadMessage,
            "a page range, or a file of no pages, answered that it needs splitting".to_owned(),
            max_attempts,
            retry_base,
            now_ms,
        ),
        Outcome::Failed { reason, error } => failure(result, *reason, error.clone(), max_attempts, retry_base, now_ms),
    }
}

/// A failed delivery: retried with backoff while attempts remain and the
/// reason allows, else failed for good.
fn failure(
    result: &ResultMessage,
    reason: FailureReason,
    error: String,
    max_attempts: u32,
    retry_base: Duration,
    now_ms: i64,
) -> Transition {
    let stored = FileResult {
        duration_ms: result.duration_ms,
        worker: Some(result.worker.id.clone()),
        node: Some(result.worker.node.clone()),
        finished_ms: now_ms,
        reason: Some(reason),
        error: Some(error),
        ..FileResult::default()
    };
    if reason.is_retryable() && result.attempt < max_attempts {
        let wait = delay_for(retry_base, Duration::from_secs(300), result.attempt.saturating_sub(1));
        Transition::Retry {
            attempt: result.attempt,
            not_before_ms: now_ms + wait.as_millis() as i64,
            result: stored,
        }
    } else {
        Transition::Fail {
            attempt: result.attempt,
            result: stored,
        }
    }
}

/// The metric labels of a result that changed a task: its outcome
/// (`succeeded`, `failed`, or `retried` for a retryable failure) and the
/// failure reason.
fn outcome_label(t: &Transition) -> (&'static str, Option<&'static str>) {
    let reason = |r: &FileResult| r.reason.map(|x| x.as_str());
    match t {
        Transition::Succeed { .. } => ("succeeded", None),
        Transition::Retry { result, .. } => ("retried", reason(result)),
        Transition::Fail { result, .. } => ("failed", reason(result)),
        Transition::Split { .. } => ("split", None),
        Transition::Assemble { succeeded: true, .. } => ("succeeded", None),
        Transition::Assemble { result, .. } => ("failed", reason(result)),
    }
}

/// Consumes results until `stop`.
pub async fn run(ctx: Arc<Context>, stop: CancellationToken) -> Result<()> {
    let mut sub: Option<Box<dyn Subscription>> = None;
    let mut failures = 0u32;
    loop {
        let s = match sub.as_mut() {
            Some(s) => s,
            None => {
                let opts = SubscribeOptions::new(CHANNEL, INGEST_BATCH * 2, Duration::from_secs(60));
                match ctx.queue_call(ctx.queue.subscribe(RESULTS_TOPIC, opts)).await {
                    Ok(s) => sub.insert(s),
                    Err(error) => {
                        let wait = delay_for(Duration::from_millis(200), Duration::from_secs(10), failures);
                        failures += 1;
                        warn!(%error, retry_in = ?wait, "cannot subscribe to results");
                        tokio::select! {
                            _ = stop.cancelled() => return Ok(()),
                            _ = tokio::time::sleep(wait) => continue,
                        }
                    }
                }
            }
        };
        let first = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            d = s.next() => d,
        };
        let Some(first) = first else {
            warn!("results subscription ended; subscribing again");
            sub = None;
            continue;
        };
        let mut batch = vec![first];
        let until = Instant::now() + BATCH_LINGER;
        while batch.len() < INGEST_BATCH {
            match tokio::time::timeout_at(until, s.next()).await {
                Ok(Some(d)) => batch.push(d),
                _ => break,
            }
        }
        match ingest(&ctx, batch).await {
            Ok(()) => failures = 0,
            Err(error) => {
                // The deliveries were dropped unsettled, so they come back.
                let wait = delay_for(Duration::from_millis(200), Duration::from_secs(10), failures);
                failures += 1;
                warn!(%error, retry_in = ?wait, "ingesting results failed");
                tokio::select! {
                    _ = stop.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

async fn ingest(ctx: &Context, deliveries: Vec<Delivery>) -> Result<()> {
    let now_ms = Utc::now().timestamp_millis();
    let mut prepared = Vec::with_capacity(deliveries.len());
    let mut touched = BTreeSet::new();
    let mut refreshed = false;
    let mut settle_only = Vec::new();
    for d in deliveries {
        let result = match ResultMessage::decode(&d.body) {
            Ok(r) => r,
            Err(error) => {
                warn!(%error, "dropping an unreadable result message");
                settle_only.push(d);
                continue;
            }
        };
        let mut info = ctx.jobs_by_uid.get(&result.job_uid);
        if info.is_none() && !refreshed {
            ctx.jobs_by_uid.refresh(ctx).await?;
            refreshed = true;
            info = ctx.jobs_by_uid.get(&result.job_uid);
        }
        let Some(info) = info else {
            debug!(job = %result.job, "result for a job that no longer exists");
            settle_only.push(d);
            continue;
        };
        touched.insert(info.name.clone());
        prepared.push((d, result, info));
    }
    let mut updates = Vec::with_capacity(prepared.len());
    let mut staged_of = Vec::with_capacity(prepared.len());
    let mut to_ack = Vec::with_capacity(prepared.len());
    let mut timed = Vec::with_capacity(prepared.len());
    // NB: a batch's results are made ready a few at a time (landing
    // outputs, fetching an object's original for its searchable PDF), in
    // order; a second result of the same task in the batch only after the
    // first is done, so their outputs never mix.
    let make_ready = |(d, result, info): (Delivery, ResultMessage, JobInfo)| async move {
        let transition = transition(
            &result,
            info.max_attempts,
            info.pages_per_task,
            ctx.cfg.retry_base,
            now_ms,
        );
        let transition = prepare(ctx, &result, &info, transition, now_ms).await?;
        Ok::<_, super::Error>((d, result, info, transition))
    };
    let mut seen = HashSet::with_capacity(prepared.len());
    let (firsts, repeats): (Vec<_>, Vec<_>) = prepared
        .into_iter()
        .partition(|(_, r, _)| seen.insert((r.job_uid.clone(), r.index, r.part)));
    // NB: every one runs to its end, even after one failed: a landing
    // left running would race the same result's next delivery.
    let mut made: Vec<Result<_>> = futures::stream::iter(firsts.into_iter().map(make_ready))
        .buffered(PREPARE_AT_ONCE)
        .collect()
        .await;
    for r in repeats {
        made.push(make_ready(r).await);
    }
    for m in made {
        let (d, result, info, transition) = m?;
        let staged = match &result.outcome {
            Outcome::Succeeded { staged, .. } => staged.clone(),
            _ => None,
        };
        let split = matches!(transition, Transition::Split { .. });
        timed.push((result.job_uid.clone(), result.duration_ms, split));
        updates.push(TaskUpdate {
            job_uid: result.job_uid.clone(),
            index: result.index,
            part: result.part,
            transition,
        });
        staged_of.push(staged.map(|s| (info.paths.clone(), s, result.part)));
        to_ack.push(d);
    }
    if !updates.is_empty() {
        // NB: files are counted when they end: a range's result, or a
        // file found to need splitting, is not a file's outcome (a split
        // file is counted when it is assembled).
        let kinds: Vec<Option<(&'static str, Option<&'static str>)>> = updates
            .iter()
            .map(|u| {
                (u.part == 0 && !matches!(u.transition, Transition::Split { .. })).then(|| outcome_label(&u.transition))
            })
            .collect();
        let landed: Vec<bool> = updates
            .iter()
            .map(|u| matches!(u.transition, Transition::Succeed { .. }) && u.part == 0)
            .collect();
        let applied = ctx.store_call(ctx.store.apply_updates(updates)).await?;
        for ((outcome, reason), _) in kinds
            .iter()
            .zip(&applied)
            .filter(|(_, a)| **a)
            .filter_map(|(k, a)| Some((*k)?).map(|k| (k, a)))
        {
            ctx.cfg.metrics.record_result(outcome, reason);
        }
        let heard = std::time::Instant::now();
        for ((uid, ms, split), _) in timed.iter().zip(&applied).filter(|(_, a)| **a) {
            ctx.paces.observe(uid, *ms, heard);
            if *split {
                ctx.paces.split_applied(uid, heard);
            }
        }
        let ignored = applied.iter().filter(|a| !**a).count();
        if ignored > 0 {
            debug!(ignored, "duplicate or stale results ignored");
        }
        // A whole file's folder was landed (or its result refused); a
        // range's stays for assembly unless the store refused it.
        let discard: Vec<(JobPaths, String)> = staged_of
            .into_iter()
            .zip(applied.iter().zip(&landed))
            .filter_map(|(s, (applied, landed))| {
                let (paths, name, part) = s?;
                (!applied || *landed || part == 0).then_some((paths, name))
            })
            .collect();
        if !discard.is_empty() {
            let _ = tokio::task::spawn_blocking(move || {
                for (paths, name) in discard {
                    landing::discard(&paths, &name);
                }
            })
            .await;
        }
    }
    for d in to_ack.into_iter().chain(settle_only) {
        if let Err(error) = d.ack().await {
            warn!(%error, "acking a stored result failed (it will come back and be ignored)");
        }
    }
    for name in touched {
        ctx.trigger(Key::Job(name)).await;
    }
    Ok(())
}

/// Finishes a transition before it is written: reads a staged text back,
/// and lands a whole file's artefacts when its result is the first. A
/// staged text that cannot be read, or a landing that fails, turns the
/// success into a failure.
async fn prepare(
    ctx: &Context,
    result: &ResultMessage,
    info: &JobInfo,
    transition: Transition,
    now_ms: i64,
) -> Result<Transition> {
    let Transition::Succeed { result: mut stored } = transition else {
        return Ok(transition);
    };
    let Outcome::Succeeded { text_staged, .. } = &result.outcome else {
        return Ok(Transition::Succeed { result: stored });
    };
    let Some(name) = stored.staged.clone() else {
        return Ok(Transition::Succeed { result: stored });
    };
    let fail = |reason: FailureReason, error: String| {
        failure(result, reason, error, info.max_attempts, ctx.cfg.retry_base, now_ms)
    };
    if *text_staged {
        let (paths, n) = (info.paths.clone(), name.clone());
        match tokio::task::spawn_blocking(move || landing::read_staged_text(&paths, &n)).await {
            Ok(Ok(text)) => stored.text = Some(text),
            Ok(Err(e)) => return Ok(fail(e.reason, e.message)),
            Err(e) => return Ok(fail(FailureReason::Engine, e.to_string())),
        }
    }
    if result.part != 0 || info.paths.artefacts.is_empty() {
        return Ok(Transition::Succeed { result: stored });
    }
    // NB: only the first result of a file lands; a duplicate's folder is
    // removed after the store refuses it.
    let Some(task) = ctx
        .store_call(ctx.store.get_task(&result.job_uid, result.index))
        .await?
    else {
        return Ok(Transition::Succeed { result: stored });
    };
    if task.state.is_terminal() || task.state == crate::store::TaskState::Split {
        return Ok(Transition::Succeed { result: stored });
    }
    let (paths, copy) =
        match landing::source_copy(&ctx.cfg.objects, &info.paths, &task.path, task.version.as_ref()).await {
            Ok(p) => p,
            Err(e) => {
                return Ok(fail(
                    e.reason,
                    format!("the outputs could not be written: {}", e.message),
                ));
            }
        };
    let staged = [Staged { name, pages: None }];
    let pages = stored.pages;
    let rel = task.path.clone();
    let turned = landing::turned_pages(&stored.page_info);
    let landed = tokio::task::spawn_blocking(move || {
        let landed = landing::land(&paths, &rel, &staged, &turned, landing::deadline_for(pages));
        drop(copy);
        landed
    })
    .await;
    match landed {
        Ok(Ok(())) => Ok(Transition::Succeed { result: stored }),
        Ok(Err(e)) => {
            warn!(job = %info.name, index = result.index, error = %e, "landing the file's outputs failed");
            Ok(fail(
                e.reason,
                format!("the outputs could not be written: {}", e.message),
            ))
        }
        Err(e) => Ok(fail(FailureReason::Engine, e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skep_api::{FailureReason, WIRE_VERSION, WorkerRef};

    fn result(outcome: Outcome, attempt: u32) -> ResultMessage {
        ResultMessage {
            v: WIRE_VERSION,
            job: "j".into(),
            job_uid: "u".into(),
            index: 3,
            part: 0,
            attempt,
            outcome,
            duration_ms: 7,
            worker: WorkerRef {
                id: "w".into(),
                node: "n".into(),
            },
        }
    }

    fn failed(reason: FailureReason) -> Outcome {
        Outcome::Failed {
            reason,
            error: "x".into(),
        }
    }

    #[test]
    fn retryable_failures_retry_with_backoff_until_attempts_run_out() {
        let base = Duration::from_secs(2);
        match transition(&result(failed(FailureReason::Timeout), 1), 3, 8, base, 1_000) {
            Transition::Retry {
                attempt, not_before_ms, ..
            } => assert_eq!((attempt, not_before_ms), (1, 3_000)),
            t => panic!("{t:?}"),
        }
        match transition(&result(failed(FailureReason::Timeout), 2), 3, 8, base, 1_000) {
            Transition::Retry { not_before_ms, .. } => assert_eq!(not_before_ms, 5_000, "doubles"),
            t => panic!("{t:?}"),
        }
        assert!(matches!(
            transition(&result(failed(FailureReason::Timeout), 3), 3, 8, base, 0),
            Transition::Fail { attempt: 3, .. }
        ));
    }

    #[test]
    fn permanent_failures_fail_at_once() {
        for r in [FailureReason::Corrupt, FailureReason::Empty, FailureReason::Unsupported] {
            assert!(matches!(
                transition(&result(failed(r), 1), 3, 8, Duration::from_secs(1), 0),
                Transition::Fail { attempt: 1, .. }
            ));
        }
    }

    #[test]
    fn a_split_becomes_ranges_of_the_jobs_size() {
        match transition(
            &result(Outcome::Split { pages: 20 }, 1),
            3,
            8,
            Duration::from_secs(1),
            0,
        ) {
            Transition::Split { pages, ranges } => {
                assert_eq!(pages, 20);
                assert_eq!(ranges.len(), 3);
                assert_eq!(ranges[2], PageRange { first: 17, last: 20 });
            }
            t => panic!("{t:?}"),
        }
        let mut range = result(Outcome::Split { pages: 20 }, 1);
        range.part = 2;
        assert!(
            matches!(
                transition(&range, 3, 8, Duration::from_secs(1), 0),
                Transition::Fail {
                    result: FileResult {
                        reason: Some(FailureReason::BadMessage),
                        ..
                    },
                    ..
                }
            ),
            "a range cannot split again"
        );
    }

    #[test]
    fn success_keeps_the_text() {
        let ok = Outcome::Succeeded {
            text: "hello".into(),
            confidence: 88.0,
            pages: 2,
            words: 1,
            page_info: Vec::new(),
            staged: None,
            text_staged: false,
        };
        match transition(&result(ok, 1), 3, 8, Duration::from_secs(1), 9) {
            Transition::Succeed { result } => {
                assert_eq!(result.text.as_deref(), Some("hello"));
                assert_eq!((result.pages, result.finished_ms), (2, 9));
                assert_eq!(result.node.as_deref(), Some("n"));
            }
            t => panic!("{t:?}"),
        }
    }
}
