//! One active controller at a time: a lease document in the store, renewed
//! every third of its time to live. A controller that cannot renew before
//! its lease runs out stops (another may have taken over); a standby takes
//! over once the lease expires.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::{Context, Error, Result};
use crate::store::{LeaseState, Store};

pub const LEASE_NAME: &str = "controller";

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// How long a store failure while waiting for the lease is waited out.
const RETRY_AFTER_ERROR: Duration = Duration::from_secs(2);

/// Waits until `holder` holds the lease and returns it (its generation is
/// the term's fencing token); `None` if `shutdown` came first.
/// A store that fails or hangs is retried (each call bounded by a third of
/// the lease): a controller waits out a store outage instead of ending.
pub async fn acquire(
    store: &dyn Store,
    holder: &str,
    ttl: Duration,
    shutdown: &CancellationToken,
    on_wait: impl Fn(&LeaseState),
) -> Result<Option<LeaseState>> {
    let ttl_ms = ttl.as_millis() as i64;
    loop {
        let call = tokio::time::timeout(
            renew_timeout(ttl),
            store.acquire_lease(LEASE_NAME, holder, now_ms(), ttl_ms),
        );
        let pause = match tokio::select! {
            _ = shutdown.cancelled() => return Ok(None),
            r = call => r,
        } {
            Ok(Ok(state)) if state.holder == holder => return Ok(Some(state)),
            Ok(Ok(state)) => {
                on_wait(&state);
                let left = Duration::from_millis((state.expires_ms - now_ms()).clamp(100, ttl_ms.max(100)) as u64);
                left.min(ttl / 3).max(Duration::from_millis(100))
            }
            Ok(Err(error)) => {
                warn!(%error, "cannot read the controller lease; standing by and retrying");
                RETRY_AFTER_ERROR
            }
            Err(_) => {
                warn!("the store did not answer the lease call in time; standing by and retrying");
                RETRY_AFTER_ERROR
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(None),
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

/// One renewal call may take this long at most: a third of the lease.
pub fn renew_timeout(ttl: Duration) -> Duration {
    ttl / 3
}

/// How long after the start of its last successful renewal a leader
/// still acts: two thirds of the lease (client-go's renew deadline of 10 s
/// for a 15 s lease). The lease itself runs until the start of that renewal
/// plus the whole TTL, so a leader always stops before another can take
/// over, whatever the store does meanwhile (clocks agreeing).
pub fn leading_for(ttl: Duration) -> Duration {
    ttl * 2 / 3
}

/// Renews the lease until `stop`; an error as soon as this process can no
/// longer be sure it holds the lease (lost to another, not renewed within
/// [`leading_for`], or a write refused by the store's fence).
pub async fn hold(ctx: Arc<Context>, generation: u64, stop: CancellationToken) -> Result<()> {
    let ttl = ctx.cfg.lease_ttl;
    let holder = ctx.cfg.holder.clone();
    let store = ctx.store.clone();
    let renewals = keep(
        move || {
            let store = store.clone();
            let holder = holder.clone();
            async move {
                store
                    .acquire_lease(LEASE_NAME, &holder, now_ms(), ttl.as_millis() as i64)
                    .await
            }
        },
        &ctx.cfg.holder,
        generation,
        ttl,
        stop,
    );
    tokio::select! {
        r = renewals => r,
        by = ctx.deposed() => Err(Error::LeaseLost(by)),
    }
}

/// The renewal loop behind [`hold`]: `renew` asks the store for the lease.
pub async fn keep<F, Fut>(
    mut renew: F,
    holder: &str,
    generation: u64,
    ttl: Duration,
    stop: CancellationToken,
) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = std::result::Result<LeaseState, crate::store::StoreError>>,
{
    // NB: the lease was taken just before this runs.
    let mut lead_until = tokio::time::Instant::now() + leading_for(ttl);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = tokio::time::sleep(ttl / 3) => {}
        }
        let sent = tokio::time::Instant::now();
        // NB: never past the point where leading ends: a renewal that
        // answers later cannot be trusted to have come in time.
        let deadline = (sent + renew_timeout(ttl)).min(lead_until);
        let res = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            r = tokio::time::timeout_at(deadline, renew()) => r,
        };
        match res {
            // NB: the same holder at another generation held it, lost it
            // and took it again in between: this term is over all the same.
            Ok(Ok(state)) if state.holder == holder && state.generation == generation => {
                lead_until = sent + leading_for(ttl)
            }
            Ok(Ok(state)) => return Err(Error::LeaseLost(state.holder)),
            Ok(Err(error)) => warn!(%error, "renewing the controller lease failed"),
            Err(_) => warn!("renewing the controller lease did not answer in time"),
        }
        if tokio::time::Instant::now() >= lead_until {
            return Err(Error::LeaseLost(
                "(unknown: the lease could not be renewed in time; stepping down before it can expire)".into(),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test(start_paused = true)]
    async fn a_leader_whose_store_hangs_steps_down_before_the_lease_runs_out() {
        let ttl = Duration::from_secs(15);
        let calls = Arc::new(AtomicU32::new(0));
        let c = calls.clone();
        let started = tokio::time::Instant::now();
        let renew = move || {
            let n = c.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    Ok(LeaseState {
                        holder: "me".into(),
                        expires_ms: 0,
                        generation: 1,
                    })
                } else {
                    // The store hangs from the second renewal on.
                    std::future::pending().await
                }
            }
        };
        let err = keep(renew, "me", 1, ttl, CancellationToken::new()).await.unwrap_err();
        assert!(matches!(err, Error::LeaseLost(_)), "{err}");
        let stepped_down = started.elapsed();
        // Last good renewal started at ttl/3 (5 s): the lease runs to 20 s
        // at the store; the leader must be gone before then.
        assert!(stepped_down < ttl / 3 + ttl, "stepped down at {stepped_down:?}");
        assert!(
            stepped_down <= ttl / 3 + leading_for(ttl),
            "stepped down at {stepped_down:?}"
        );
        assert!(
            stepped_down >= ttl / 3 + ttl / 3,
            "gave up before a whole renewal period: {stepped_down:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn failing_renewals_step_down_and_a_lost_lease_at_once() {
        let ttl = Duration::from_secs(15);
        let started = tokio::time::Instant::now();
        let err = keep(
            || async { Err(crate::store::StoreError::Backend("down".into())) },
            "me",
            1,
            ttl,
            CancellationToken::new(),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, Error::LeaseLost(_)));
        assert!(started.elapsed() <= leading_for(ttl), "{:?}", started.elapsed());

        let err = keep(
            || async {
                Ok(LeaseState {
                    holder: "other".into(),
                    expires_ms: 0,
                    generation: 2,
                })
            },
            "me",
            1,
            ttl,
            CancellationToken::new(),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, Error::LeaseLost(h) if h == "other"));

        // Taken again by the same holder after another's term: not this term.
        let err = keep(
            || async {
                Ok(LeaseState {
                    holder: "me".into(),
                    expires_ms: 0,
                    generation: 3,
                })
            },
            "me",
            1,
            ttl,
            CancellationToken::new(),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, Error::LeaseLost(h) if h == "me"));
    }
}
