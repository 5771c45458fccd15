//! Windowed dispatch: a pool's queue holds about `slots x k` tasks (files,
//! or page ranges of split files) at a time, the slots being those of its
//! running replicas, or of the workers beating on it when those are more;
//! shared among the pool's running jobs by weight, not whole jobs. `k` is
//! a time of work per slot ([`pace`](super::pace)): a few seconds of the
//! job's tasks as its results have timed them, at least `window_factor`.
//! Memory stays flat for million-file jobs, suspend and delete take effect
//! within a window, and jobs share workers fairly.
//!
//! A task is leased in the store before it is published; if publishing
//! fails the lease is undone. If the process dies between the two, the
//! lease runs out and the task is dispatched again, so nothing is lost; a
//! duplicate delivery only produces a duplicate result, which is ignored.
//!
//! A lease covers a window of the floor's size ([`lease_ms`]). While a
//! job's results keep coming, its leases are renewed (at most every
//! [`renew_every`]): a deep window of fast files that turn slow is not
//! sent twice while its workers are still working through it. A task lost
//! in transit is sent again one lease after the job's results stop, that
//! is once the rest of its window is done.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use skep_api::{BulkJob, ObjectUrl, TaskMessage, WIRE_VERSION, task_topic};
use tracing::{debug, warn};

use super::landing::JobPaths;
use super::{Context, Result};
use crate::store::LeaseRequest;

/// Most tasks published in one reconcile of one job.
pub const MAX_BATCH: u64 = 2_000;

/// The weight of a job in its pool: its plan's weight, doubled for each
/// step of priority above 0 (halved below), times the replicas it asks for.
pub fn weight(job: &BulkJob) -> f64 {
    let prio = job.spec.priority.clamp(-8, 8);
    f64::from(job.spec.plan.weight()) * 2f64.powi(prio) * f64::from(job.status().replicas.desired.max(1))
}

/// This job's share of the pool's window; at least 1.
pub fn window(pool_window: u64, my_weight: f64, total_weight: f64) -> u64 {
    if total_weight <= 0.0 {
        return pool_window.max(1);
    }
    ((pool_window as f64 * my_weight / total_weight).ceil() as u64).max(1)
}

/// How long a dispatch stays leased before the task is sent again: the
/// worst case wait in a window plus the file's own time, plus slack.
pub fn lease_ms(job: &BulkJob, window_factor: u32) -> i64 {
    let per_file = job.spec.file_timeout_seconds as i64 * 1000;
    per_file * (i64::from(window_factor) + 2) + 60_000
}

/// The longest a task's URL lives for a deep window (unless its lease is longer).
pub const MAX_URL_LIFETIME_MS: i64 = 3_600_000;

/// How long a task's URL (`/files` or presigned) stays valid: as long as
/// the task can wait in its window (every task ahead of it on its slot
/// taking its whole timeout), but never past an hour unless the lease
/// itself is longer. A task reaching a worker later fails `unreadable`
/// and is sent again with a fresh URL.
pub fn url_lifetime_ms(job: &BulkJob, floor: u32, factor: u32) -> i64 {
    let lease = lease_ms(job, floor);
    lease_ms(job, factor).min(MAX_URL_LIFETIME_MS).max(lease)
}

/// How often a job's leases are renewed while its results come: a quarter
/// of a lease, at most a minute.
pub fn renew_every(lease_ms: i64) -> Duration {
    Duration::from_millis((lease_ms / 4).clamp(1_000, 60_000) as u64)
}

/// What one dispatch did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sent {
    /// Whole files (part 0) published; page ranges are not counted.
    pub files: u64,
    /// Tasks the lease failed as `attemptsExceeded` instead.
    pub exhausted: u64,
}

/// Leases and publishes up to this job's window, which it shares with the
/// pool's other running jobs (`competing`: their summed [`weight`]).
pub async fn dispatch(ctx: &Context, job: &BulkJob, in_flight: u64, running: u32, competing: f64) -> Result<Sent> {
    // NB: the slots of the workers beating on the pool, where they are more
    // than the runtime's replicas hold: workers started elsewhere (or with
    // more slots than the runtime assumes) get a window of their size.
    let replica_slots = u64::from(running.max(1)) * u64::from(ctx.runtime.slots_per_replica().max(1));
    let live = ctx
        .cfg
        .workers
        .live(&job.spec.scaling.pool, Utc::now().timestamp_millis());
    let factor = ctx.paces.factor(job.uid(), ctx.cfg.window_factor);
    let pool_window = replica_slots.max(live.slots) * u64::from(factor);
    let mine = weight(job);
    let total = mine + competing;
    let window = window(pool_window, mine, total);
    // NB: before the window is found full: a full window of tasks turned
    // slow is what renewals are for.
    let lease = lease_ms(job, ctx.cfg.window_factor);
    renew(ctx, job, lease).await?;
    if in_flight >= window {
        return Ok(Sent::default());
    }
    let want = (window - in_flight).min(MAX_BATCH);
    let leased = ctx
        .store_call(ctx.store.lease_tasks(LeaseRequest {
            job_uid: job.uid().to_owned(),
            limit: want as usize,
            now_ms: Utc::now().timestamp_millis(),
            lease_ms: lease,
            max_attempts: job.spec.max_attempts,
        }))
        .await?;
    let exhausted = leased.exhausted;
    if leased.tasks.is_empty() {
        return Ok(Sent {
            exhausted,
            ..Sent::default()
        });
    }
    let files = leased.tasks.iter().filter(|t| t.part == 0).count() as u64;
    let root = Path::new(&job.spec.source.path);
    let timeout_ms = job.spec.file_timeout_seconds * 1000;
    let paths = JobPaths::of(job, &ctx.cfg.default_output_root);
    let staging = paths.staging.to_string_lossy().into_owned();
    let output = paths.output.to_string_lossy().into_owned();
    let engine = &job.spec.engine;
    let expires = Utc::now().timestamp() + url_lifetime_ms(job, ctx.cfg.window_factor, factor) / 1000 + 60;
    let follow = job.spec.source.follow_symlinks;
    let objects = object_urls(ctx, job, &leased.tasks, expires).await;
    let messages: Vec<Bytes> = leased
        .tasks
        .iter()
        .zip(objects)
        .map(|(t, object)| {
            let (path, url) = match object {
                Some((path, url)) => (path, url),
                None => (
                    root.join(&t.path).to_string_lossy().into_owned(),
                    ctx.cfg
                        .file_urls
                        .as_ref()
                        .map(|f| f.url(&job.spec.source.path, &t.path, expires, follow)),
                ),
            };
            // NB: the prefix is how a worker names a delivery's folder
            // (`skep_worker::worker`): index, part, attempt.
            let upload = ctx.cfg.file_urls.as_ref().map(|f| {
                f.upload_url(
                    &output,
                    job.uid(),
                    &format!("{}-{}-{}-", t.index, t.part, t.attempts),
                    expires,
                )
            });
            Bytes::from(
                TaskMessage {
                    v: WIRE_VERSION,
                    job: job.name().to_owned(),
                    job_uid: job.uid().to_owned(),
                    index: t.index,
                    part: t.part,
                    pages: t.pages,
                    path,
                    url,
                    upload,
                    size: t.version.as_ref().map(|v| v.size),
                    etag: t.version.as_ref().and_then(|v| v.etag.clone()),
                    attempt: t.attempts,
                    max_attempts: job.spec.max_attempts,
                    timeout_ms,
                    languages: engine.languages.clone(),
                    page_seg_mode: engine.page_seg_mode,
                    dpi: engine.dpi,
                    pages_per_task: job.spec.pages_per_task,
                    pdf: engine.pdf,
                    auto_rotate: engine.auto_rotate,
                    artefacts: paths.artefacts.clone(),
                    staging: Some(staging.clone()),
                }
                .encode(),
            )
        })
        .collect();
    let n = messages.len() as u64;
    if let Err(e) = ctx
        .queue_call(ctx.queue.publish(&task_topic(&job.spec.scaling.pool), messages))
        .await
    {
        let keys: Vec<(u64, u32)> = leased.tasks.iter().map(|t| (t.index, t.part)).collect();
        ctx.store_call(ctx.store.unlease_tasks(job.uid(), &keys)).await?;
        return Err(e);
    }
    debug!(job = job.name(), n, window, "dispatched");
    Ok(Sent { files, exhausted })
}

/// Renews the job's leases when its results came since the last renewal
/// and that was [`renew_every`] ago.
async fn renew(ctx: &Context, job: &BulkJob, lease: i64) -> Result<()> {
    if !ctx
        .paces
        .renewal_due(job.uid(), renew_every(lease), std::time::Instant::now())
    {
        return Ok(());
    }
    let until = Utc::now().timestamp_millis() + lease;
    match ctx.store_call(ctx.store.renew_leases(job.uid(), until)).await {
        Ok(n) => {
            debug!(job = job.name(), n, "leases renewed");
            Ok(())
        }
        Err(e) => {
            ctx.paces.renewal_failed(job.uid());
            Err(e)
        }
    }
}

/// For a job reading object storage, each task's object (`s3://B/KEY`)
/// and a presigned GET of it until `expires` (Unix seconds); `None` per
/// task for a folder source. A URL that cannot be signed is left out: the
/// worker then fails that attempt as unreadable, with the path named.
async fn object_urls(
    ctx: &Context,
    job: &BulkJob,
    tasks: &[crate::store::TaskRecord],
    expires: i64,
) -> Vec<Option<(String, Option<String>)>> {
    let Some(url) = job.spec.source.url.as_deref().and_then(|u| ObjectUrl::parse(u).ok()) else {
        return vec![None; tasks.len()];
    };
    let valid_for = Duration::from_secs((expires - Utc::now().timestamp()).max(1) as u64);
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        let key = url.key(&t.path);
        let signed = match ctx.cfg.objects.presign_get(&url.bucket, &key, valid_for).await {
            Ok(s) => Some(s),
            Err(e) => {
                warn!(job = job.name(), error = %e, "cannot sign a URL for an object");
                None
            }
        };
        out.push(Some((format!("s3://{}/{key}", url.bucket), signed)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use skep_api::{BulkJobSpec, Plan};

    #[test]
    fn window_shares_by_weight() {
        assert_eq!(window(8, 1.0, 1.0), 8, "alone: the whole window");
        assert_eq!(window(8, 1.0, 2.0), 4);
        assert_eq!(window(8, 1.0, 100.0), 1, "never starved");
        assert_eq!(window(8, 1.0, 0.0), 8);
    }

    #[test]
    fn plan_and_priority_weigh_in() {
        let mut free = BulkJob::new("a", BulkJobSpec::for_path("/x"));
        free.spec.plan = Plan::Free;
        let mut premium = free.clone();
        premium.spec.plan = Plan::Premium;
        assert_eq!(weight(&premium) / weight(&free), 4.0);
        let mut urgent = free.clone();
        urgent.spec.priority = 2;
        assert_eq!(weight(&urgent) / weight(&free), 4.0);
    }

    #[test]
    fn urls_cover_the_window_within_an_hour() {
        let mut j = BulkJob::new("a", BulkJobSpec::for_path("/x"));
        j.spec.file_timeout_seconds = 10;
        assert_eq!(url_lifetime_ms(&j, 2, 2), lease_ms(&j, 2), "the floor: the lease");
        assert_eq!(
            url_lifetime_ms(&j, 2, 20),
            10_000 * 22 + 60_000,
            "a deeper window waits longer"
        );
        j.spec.file_timeout_seconds = 300;
        assert_eq!(url_lifetime_ms(&j, 2, 256), MAX_URL_LIFETIME_MS, "at most an hour");
        j.spec.file_timeout_seconds = 3_600;
        assert_eq!(
            url_lifetime_ms(&j, 2, 256),
            lease_ms(&j, 2),
            "never shorter than the lease"
        );
    }

    #[test]
    fn renewals_come_a_few_times_a_lease() {
        assert_eq!(renew_every(1_260_000), Duration::from_secs(60));
        assert_eq!(renew_every(100_000), Duration::from_secs(25));
        assert_eq!(renew_every(10), Duration::from_secs(1));
    }

    #[test]
    fn lease_covers_a_window_of_waiting() {
        let mut j = BulkJob::new("a", BulkJobSpec::for_path("/x"));
        j.spec.file_timeout_seconds = 10;
        assert_eq!(lease_ms(&j, 2), 10_000 * 4 + 60_000);
    }
}
