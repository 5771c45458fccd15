//! Two-phase deletion.
//!
//! Guarantee: if apply ever started (the controller put its finalizer on the
//! job), cleanup must succeed before the document is gone. Cleanup stops
//! dispatch (a deleting job is never dispatched), scales the job's pool
//! back without it, and purges the job's tasks; only then is the finalizer
//! removed, which removes the document. A failed step returns an error and
//! the whole cleanup runs again after backoff; every step is idempotent.

use skep_api::BulkJob;
use tracing::info;

use super::{Action, Context, Result, scaling};

pub async fn cleanup(ctx: &Context, job: &BulkJob) -> Result<Action> {
    if !job.has_finalizer() {
        return Ok(Action::await_change());
    }
    scaling::reconcile_pool(ctx, &job.spec.scaling.pool, true).await?;
    let purged = ctx.store_call(ctx.store.delete_tasks(job.uid())).await?;
    ctx.paces.forget(job.uid());
    // Artefacts staged for files that never landed go too; landed outputs
    // stay, as on a finished job. Never in a folder the controller may not
    // touch.
    if super::reconcile::paths_allowed(ctx, job).await?.is_ok() {
        let paths = super::landing::JobPaths::of(job, &ctx.cfg.default_output_root);
        let _ = tokio::task::spawn_blocking(move || super::landing::remove_staging(&paths)).await;
    }
    // A job deleted before its outputs went up: their working folder too.
    if !job.is_finished() {
        super::output::remove_object_work(ctx, job).await;
    }
    ctx.store_call(ctx.store.remove_finalizer(job.name(), job.uid()))
        .await?;
    info!(job = job.name(), purged, "job cleaned up and deleted");
    Ok(Action::await_change())
}
