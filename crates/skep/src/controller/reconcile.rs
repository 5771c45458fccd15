//! Reconciling one job: one step from what the store says toward what the
//! spec asks, safe to repeat and to interrupt anywhere.
//!
//! Pending -> (scan) -> Running -> (every file final) -> Succeeded, or
//! -> Failed (deadline, failure policy, no source folder). Suspended while
//! `spec.suspend`. A finished job is not restarted by a spec change: delete
//! it and apply it again.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use skep_api::{BulkJob, BulkJobStatus, ConditionStatus, FileCounts, Phase, RETRY_ANNOTATION, condition};
use tracing::info;

use super::{Action, Context, Error, Key, Result, assemble, dispatch, finalizer, landing, output, scaling, scan};

pub async fn reconcile_job(ctx: &Context, name: &str) -> Result<Action> {
    let Some(job) = ctx.store_call(ctx.store.get_job(name)).await? else {
        ctx.jobs.remove(name);
        return Ok(Action::await_change());
    };
    ctx.jobs.put(&job);
    if job.is_deleting() {
        return finalizer::cleanup(ctx, &job).await;
    }
    if !job.has_finalizer() {
        ctx.store_call(ctx.store.add_finalizer(name, job.uid())).await?;
    }
    let before = job.status();
    let mut status = before.clone();
    retry_if_asked(ctx, &job, &mut status).await?;
    let action = step(ctx, &job, &mut status, Utc::now()).await?;
    status.observed_generation = Some(job.generation());
    if status != before {
        ctx.store_call(ctx.store.update_status(name, job.uid(), &status))
            .await?;
        ctx.jobs.put_status(name, &status);
    }
    if status.replicas.desired != before.replicas.desired || status.phase != before.phase {
        ctx.trigger(Key::Pool(job.spec.scaling.pool.clone())).await;
    }
    if status.phase != before.phase {
        info!(job = name, from = %before.phase, to = %status.phase, "phase");
    }
    Ok(action)
}

async fn step(ctx: &Context, job: &BulkJob, status: &mut BulkJobStatus, now: DateTime<Utc>) -> Result<Action> {
    let spec = &job.spec;
    if status.phase.is_finished() {
        ctx.paces.forget(job.uid());
        status.replicas.desired = 0;
        return ttl(ctx, job, status, now).await;
    }
    let started = *status.start_time.get_or_insert(now);
    // NB: every time, not only before the scan, and before anything that
    // writes (the deadline's outputs too): a folder swapped for a symlink
    // mid-job, or a narrower allow list after a restart, is caught here.
    if let Err(refused) = paths_allowed(ctx, job).await? {
        return refuse(ctx, job, status, "PathNotAllowed", refused.0, now).await;
    }
    for (field, url) in [
        ("spec.source.url", &spec.source.url),
        ("spec.output.url", &spec.output.url),
    ] {
        if url.is_some() && !ctx.cfg.objects.configured() {
            let msg = format!("{field}: this controller has no object storage (start it with --s3-* keys)");
            return refuse(ctx, job, status, "NoObjectStorage", msg, now).await;
        }
    }
    if let Some(limit) = spec.active_deadline_seconds
        && (now - started).num_seconds() >= limit as i64
    {
        let msg = format!("the job ran longer than activeDeadlineSeconds ({limit})");
        return finish(ctx, job, status, Phase::Failed, "DeadlineExceeded", msg, now).await;
    }
    if !status.is_true(condition::SCANNED) {
        match scan::scan_job(ctx, job, &mut scan::ScanProgress::new(status)).await? {
            Ok(total) => {
                status.files.total = total;
                let msg = format!(
                    "{total} files under {}",
                    spec.source.url.as_deref().unwrap_or(&spec.source.path)
                );
                status.set_condition(condition::SCANNED, ConditionStatus::True, "Scanned", msg, now);
                info!(job = job.name(), total, "scanned");
                // NB: persist the scan before anything is dispatched, so a
                // crash from here on never rescans (and renumbers) files
                // that may already be in flight.
                return Ok(Action::requeue(Duration::ZERO));
            }
            Err(problem) => {
                status.set_condition(
                    condition::SCANNED,
                    ConditionStatus::False,
                    "SourceNotFound",
                    problem.0.clone(),
                    now,
                );
                return finish(ctx, job, status, Phase::Failed, "SourceNotFound", problem.0, now).await;
            }
        }
    }
    // NB: only where a file may be split: on MongoDB the query of split
    // files ready to assemble was a round trip of every reconcile.
    if ctx.paces.may_have_splits(job.uid()) {
        assemble::assemble_ready(ctx, job).await?;
    }
    // NB: a full count when it is cheap enough ([`pace`]); between two,
    // the status keeps the last count (moved by what was dispatched since)
    // and only the dispatched tasks are counted, for the window. A job
    // ends or fails only on a full count.
    let in_flight = if ctx.paces.count_due(job.uid(), Instant::now()) {
        let started = Instant::now();
        let mark = ctx.paces.splits_mark(job.uid());
        let counts = ctx.store_call(ctx.store.task_counts(job.uid())).await?;
        ctx.paces.counted(job.uid(), started.elapsed(), Instant::now());
        ctx.paces.split_counted(job.uid(), mark, counts.split, Instant::now());
        status.files = counts.files;
        status.pages = counts.pages;
        if let Some(msg) = failure_policy_exceeded(job, &counts.files) {
            return finish(ctx, job, status, Phase::Failed, "TooManyFailures", msg, now).await;
        }
        if counts.files.remaining() == 0 {
            let f = counts.files;
            let msg = format!("{} of {} files succeeded", f.succeeded, f.total);
            return finish(ctx, job, status, Phase::Succeeded, "AllFilesDone", msg, now).await;
        }
        counts.in_flight
    } else {
        ctx.store_call(ctx.store.count_in_flight(job.uid())).await?
    };
    let pool_state = ctx.runtime_call(ctx.runtime.observe(&spec.scaling.pool)).await?;
    status.replicas.running = pool_state.running;
    merge_nodes(&mut status.nodes_used, &pool_state.nodes);
    if spec.suspend {
        status.phase = Phase::Suspended;
        status.replicas.desired = 0;
        status.set_condition(
            condition::SUSPENDED,
            ConditionStatus::True,
            "Suspended",
            "spec.suspend is true",
            now,
        );
        return Ok(Action::await_change());
    }
    if status.condition(condition::SUSPENDED).is_some() {
        status.set_condition(condition::SUSPENDED, ConditionStatus::False, "Resumed", "", now);
    }
    status.phase = Phase::Running;
    // NB: work is counted in pages (a file not opened yet is one page), so
    // that one long document asks for as many workers as its pages need.
    let work = status.files.remaining().max(status.pages.remaining());
    status.replicas.desired = scaling::job_demand(work, &spec.scaling);
    let competing = ctx.jobs.competing_weight(&spec.scaling.pool, job.uid());
    let sent = dispatch::dispatch(ctx, job, in_flight, pool_state.running, competing).await?;
    if sent.exhausted > 0 {
        let counts = ctx.store_call(ctx.store.task_counts(job.uid())).await?;
        status.files = counts.files;
        status.pages = counts.pages;
    } else {
        // NB: no second count of every task (it cost as much as the
        // first): the files just sent move from pending to dispatched. A
        // file sent again after its lease ran out was counted dispatched
        // already; the next reconcile's count mends that.
        let moved = sent.files.min(status.files.pending);
        status.files.pending -= moved;
        status.files.dispatched += moved;
    }
    let f = status.files;
    let msg = format!("{} of {} files done, {} failed", f.finished(), f.total, f.failed);
    status.set_condition(
        condition::PROGRESSING,
        ConditionStatus::True,
        "FilesInProgress",
        msg,
        now,
    );
    Ok(Action::requeue(ctx.cfg.running_requeue))
}

/// A new value of the `skep.dev/retry` annotation puts the job's failed
/// files back to pending and, if the job had finished, runs it again. Safe
/// to repeat: the store call only touches failed files, and the value is
/// remembered in the status written after this reconcile.
async fn retry_if_asked(ctx: &Context, job: &BulkJob, status: &mut BulkJobStatus) -> Result<()> {
    let Some(asked) = job.metadata.annotations.get(RETRY_ANNOTATION) else {
        return Ok(());
    };
    if status.retried.as_ref() == Some(asked) {
        return Ok(());
    }
    let n = ctx.store_call(ctx.store.retry_failed(job.uid())).await?;
    info!(job = job.name(), files = n, "retrying failed files");
    status.retried = Some(asked.clone());
    if n > 0 && status.phase.is_finished() {
        status.phase = Phase::Running;
        status.completion_time = None;
        status.report = None;
        for c in [condition::COMPLETE, condition::FAILED, condition::FILES_FAILED] {
            status.clear_condition(c);
        }
    }
    Ok(())
}

/// A finished job with `ttlSecondsAfterFinished` is deleted that long after
/// it finished.
async fn ttl(ctx: &Context, job: &BulkJob, status: &BulkJobStatus, now: DateTime<Utc>) -> Result<Action> {
    let (Some(ttl), Some(done)) = (job.spec.ttl_seconds_after_finished, status.completion_time) else {
        return Ok(Action::await_change());
    };
    let expires = done + chrono::Duration::seconds(ttl as i64);
    if now >= expires {
        info!(job = job.name(), ttl, "ttl after finished passed; deleting");
        ctx.store_call(ctx.store.request_delete(job.name())).await?;
        return Ok(Action::await_change());
    }
    Ok(Action::requeue((expires - now).to_std().unwrap_or_default()))
}

fn failure_policy_exceeded(job: &BulkJob, c: &FileCounts) -> Option<String> {
    let p = &job.spec.failure_policy;
    if let Some(max) = p.max_failed_files
        && c.failed > max
    {
        return Some(format!(
            "{} files failed, more than failurePolicy.maxFailedFiles ({max})",
            c.failed
        ));
    }
    if let Some(ratio) = p.max_failed_ratio
        && c.total > 0
        && c.failed as f64 / c.total as f64 > ratio
    {
        return Some(format!(
            "{} of {} files failed, more than failurePolicy.maxFailedRatio ({ratio})",
            c.failed, c.total
        ));
    }
    None
}

fn merge_nodes(into: &mut Vec<String>, nodes: &[String]) {
    for n in nodes {
        // NB: bounded: the names come from the runtime, and with outside
        // workers from their heartbeats.
        if into.len() >= super::workers::MAX_NODES {
            break;
        }
        if !into.contains(n) {
            into.push(n.clone());
        }
    }
    into.sort();
}

/// Whether the job's folders are allowed (the filesystem is read on the
/// blocking pool).
pub(super) async fn paths_allowed(
    ctx: &Context,
    job: &BulkJob,
) -> Result<std::result::Result<(), crate::paths::PathRefused>> {
    let policy = ctx.cfg.paths.clone();
    if matches!(policy, crate::paths::PathPolicy::Any) {
        return Ok(Ok(()));
    }
    let job = job.clone();
    tokio::task::spawn_blocking(move || policy.check_job(&job))
        .await
        .map_err(|e| Error::TaskEnded(e.to_string()))
}

/// Fails the job without touching its folders: no outputs are written
/// (they may be where the controller must not write).
async fn refuse(
    ctx: &Context,
    job: &BulkJob,
    status: &mut BulkJobStatus,
    reason: &str,
    message: String,
    now: DateTime<Utc>,
) -> Result<Action> {
    tracing::warn!(job = job.name(), reason, %message, "job refused");
    output::remove_object_work(ctx, job).await;
    mark_finished(status, Phase::Failed, reason, message, now);
    Ok(Action::await_change())
}

/// The phase, time, replicas and conditions of a job that ended.
fn mark_finished(status: &mut BulkJobStatus, phase: Phase, reason: &str, message: String, now: DateTime<Utc>) {
    status.phase = phase;
    status.completion_time = Some(now);
    // NB: a finished job uses no workers; the pool's own count is the
    // runtime's business from here on.
    status.replicas.desired = 0;
    status.replicas.running = 0;
    status.set_condition(
        condition::PROGRESSING,
        ConditionStatus::False,
        reason,
        message.clone(),
        now,
    );
    if phase == Phase::Succeeded {
        status.set_condition(condition::COMPLETE, ConditionStatus::True, reason, message, now);
    } else {
        status.set_condition(condition::FAILED, ConditionStatus::True, reason, message, now);
    }
}

/// Writes the outputs and the final status. Safe to repeat: the phase only
/// changes once the outputs are written.
async fn finish(
    ctx: &Context,
    job: &BulkJob,
    status: &mut BulkJobStatus,
    phase: Phase,
    reason: &str,
    message: String,
    now: DateTime<Utc>,
) -> Result<Action> {
    let all = ctx.store_call(ctx.store.task_counts(job.uid())).await?;
    let counts = all.files;
    let summary = ctx.store_call(ctx.store.summarize(job.uid())).await?;
    let start = status.start_time.unwrap_or(now);
    let report = output::build_report(&counts, &summary, start, now);
    let dir = output::write_outputs(ctx, job, &report).await?;
    let paths = landing::JobPaths::of(job, &ctx.cfg.default_output_root);
    let _ = tokio::task::spawn_blocking(move || landing::remove_staging(&paths)).await;
    if let Some(url) = &job.spec.output.url
        && let Err(refused) = output::upload(ctx, url, &dir).await?
    {
        // NB: what was not uploaded stays in the working folder, named in
        // the message.
        let msg = format!("{refused}; the outputs not uploaded are kept in {}", dir.display());
        mark_finished(status, Phase::Failed, "OutputRefused", msg, now);
        return Ok(Action::await_change());
    }
    status.files = counts;
    status.pages = all.pages;
    merge_nodes(&mut status.nodes_used, &summary.nodes);
    status.report = Some(report);
    mark_finished(status, phase, reason, message, now);
    if counts.failed > 0 {
        let by = summary
            .failures_by_reason
            .iter()
            .map(|(r, n)| format!("{r}: {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        let msg = format!("{} of {} files failed ({by})", counts.failed, counts.total);
        status.set_condition(condition::FILES_FAILED, ConditionStatus::True, "FilesFailed", msg, now);
    }
    let output = job.spec.output.url.clone().unwrap_or_else(|| dir.display().to_string());
    info!(job = job.name(), %phase, reason, %output, "job finished");
    ttl(ctx, job, status, now).await
}
