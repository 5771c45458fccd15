//! How many workers a job wants and what a pool is scaled to.
//!
//! The rule: `demand = ceil(remaining / filesPerWorker)` clamped to
//! `[minReplicas, maxReplicas]` (0 when nothing remains); a pool runs the
//! sum of its active jobs' demands, capped by its capacity; with no active
//! job it goes back to `scaleBackTo` of the job that finished last. Going
//! down waits out a cooldown after the last change, so a pool does not
//! flap; going up never waits.

use std::time::Duration;

use skep_api::{BulkJob, ScalingSpec};
use tokio::time::Instant;
use tracing::info;

use super::{Action, Context, Result};

/// Replicas one job asks for.
pub fn job_demand(remaining: u64, s: &ScalingSpec) -> u32 {
    if remaining == 0 {
        return 0;
    }
    let per = u64::from(s.files_per_worker.max(1));
    let want = remaining.div_ceil(per).min(u64::from(u32::MAX)) as u32;
    want.clamp(s.min_replicas, s.max_replicas.max(s.min_replicas))
}

/// Replicas for a pool: summed demands capped by capacity.
pub fn pool_target(demands: impl IntoIterator<Item = u32>, capacity: u32) -> u32 {
    demands.into_iter().fold(0u32, u32::saturating_add).min(capacity)
}

/// A job counts toward its pool's demand while it wants workers.
pub fn is_active(job: &BulkJob) -> bool {
    !job.is_deleting() && !job.is_finished() && !job.spec.suspend && job.status().replicas.desired > 0
}

/// Where a pool goes when no job needs it: `scaleBackTo` of the job on it
/// that finished last (0 without one).
pub fn scale_back_target<'a>(jobs: impl IntoIterator<Item = &'a BulkJob>) -> u32 {
    jobs.into_iter()
        .filter(|j| !j.is_deleting())
        .filter_map(|j| {
            j.status
                .as_ref()
                .and_then(|s| s.completion_time)
                .map(|t| (t, j.spec.scaling.scale_back_to))
        })
        .max_by_key(|(t, _)| *t)
        .map_or(0, |(_, n)| n)
}

/// What the cooldown allows now: `wanted`, or (for a decrease inside the
/// cooldown) the current count and how long to wait.
pub fn apply_cooldown(
    current: u32,
    wanted: u32,
    since_change: Duration,
    cooldown: Duration,
) -> (u32, Option<Duration>) {
    if wanted < current && since_change < cooldown {
        (current, Some(cooldown - since_change))
    } else {
        (wanted, None)
    }
}

/// Converges one pool. `immediate` skips the cooldown (job cleanup).
pub async fn reconcile_pool(ctx: &Context, pool: &str, immediate: bool) -> Result<Action> {
    let jobs = ctx.jobs.pool(pool);
    let demands: Vec<u32> = jobs
        .iter()
        .filter(|j| is_active(j))
        .map(|j| j.status().replicas.desired)
        .collect();
    let observed = ctx.runtime_call(ctx.runtime.observe(pool)).await?;
    let wanted = if demands.is_empty() {
        scale_back_target(&jobs)
    } else {
        let capacity = ctx.runtime_call(ctx.runtime.capacity(pool)).await?.replicas;
        pool_target(demands.iter().copied(), capacity)
    };
    let now = Instant::now();
    let since = ctx.since_pool_change(pool, now);
    let cooldown = if immediate {
        Duration::ZERO
    } else {
        ctx.cfg.scale_down_cooldown
    };
    let (target, wait) = apply_cooldown(observed.desired, wanted, since, cooldown);
    ctx.cfg.metrics.set_replicas(pool, target, observed.running);
    if target != observed.desired {
        ctx.runtime_call(ctx.runtime.set_replicas(pool, target)).await?;
        ctx.note_pool_change(pool, now);
        info!(
            pool,
            from = observed.desired,
            to = target,
            active_jobs = demands.len(),
            "pool scaled"
        );
    }
    Ok(match wait {
        Some(w) => Action::requeue(w),
        None => Action::await_change(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use skep_api::BulkJobSpec;

    fn scaling(min: u32, max: u32) -> ScalingSpec {
        ScalingSpec {
            min_replicas: min,
            max_replicas: max,
            ..ScalingSpec::default()
        }
    }

    #[test]
    fn the_seeds_cases() {
        let s = ScalingSpec::default();
        assert_eq!(job_demand(100, &s), 1);
        assert_eq!(job_demand(500, &s), 5);
        assert_eq!(job_demand(1000, &s), 10);
        assert_eq!(job_demand(5000, &s), 10, "capped at maxReplicas 10");
        assert_eq!(job_demand(101, &s), 2, "rounds up");
    }

    #[test]
    fn min_and_max_clamp() {
        assert_eq!(job_demand(1, &scaling(3, 10)), 3);
        assert_eq!(job_demand(10_000, &scaling(0, 4)), 4);
        assert_eq!(job_demand(0, &scaling(3, 10)), 0, "no work, no demand");
        assert_eq!(job_demand(1, &scaling(0, 10)), 1);
    }

    #[test]
    fn capacity_caps_the_pool() {
        assert_eq!(pool_target([5, 5], 16), 10, "demands add up");
        assert_eq!(pool_target([10, 10], 16), 16, "capped by capacity");
        assert_eq!(pool_target([10], 2), 2, "two cores, two replicas");
        assert_eq!(pool_target([], 8), 0);
        assert_eq!(pool_target([u32::MAX, 5], 8), 8, "no overflow");
    }

    #[test]
    fn cooldown_holds_only_decreases() {
        let cd = Duration::from_secs(30);
        assert_eq!(apply_cooldown(2, 5, Duration::ZERO, cd), (5, None), "up at once");
        assert_eq!(
            apply_cooldown(5, 2, Duration::from_secs(10), cd),
            (5, Some(Duration::from_secs(20)))
        );
        assert_eq!(apply_cooldown(5, 2, Duration::from_secs(31), cd), (2, None));
        assert_eq!(apply_cooldown(5, 0, Duration::ZERO, Duration::ZERO), (0, None));
    }

    #[test]
    fn scale_back_uses_the_job_that_finished_last() {
        let mut a = BulkJob::new("a", BulkJobSpec::for_path("/x"));
        a.spec.scaling.scale_back_to = 1;
        let mut b = a.clone();
        b.spec.scaling.scale_back_to = 3;
        let t = chrono::Utc::now();
        a.status = Some(skep_api::BulkJobStatus {
            completion_time: Some(t),
            ..Default::default()
        });
        b.status = Some(skep_api::BulkJobStatus {
            completion_time: Some(t - chrono::Duration::seconds(5)),
            ..Default::default()
        });
        assert_eq!(scale_back_target([&a, &b]), 1);
        assert_eq!(scale_back_target(std::iter::empty()), 0);
    }
}
