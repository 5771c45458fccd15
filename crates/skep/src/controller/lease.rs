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

/// Waits until `holder` holds the lease; `false` if `shutdown` came first.
pub async fn acquire(
    store: &dyn Store,
    holder: &str,
    ttl: Duration,
    shutdown: &CancellationToken,
    on_wait: impl Fn(&LeaseState),
) -> Result<bool> {
    let ttl_ms = ttl.as_millis() as i64;
    loop {
        let state = store.acquire_lease(LEASE_NAME, holder, now_ms(), ttl_ms).await?;
        if state.holder == holder {
            return Ok(true);
        }
        on_wait(&state);
        let left = Duration::from_millis((state.expires_ms - now_ms()).clamp(100, ttl_ms.max(100)) as u64);
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(false),
            _ = tokio::time::sleep(left.min(ttl / 3).max(Duration::from_millis(100))) => {}
        }
    }
}

/// Renews the lease until `stop`; an error when it is lost.
pub async fn hold(ctx: Arc<Context>, stop: CancellationToken) -> Result<()> {
    let ttl = ctx.cfg.lease_ttl;
    let mut renewed_at = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = tokio::time::sleep(ttl / 3) => {}
        }
        let res = ctx
            .store_call(
                ctx.store
                    .acquire_lease(LEASE_NAME, &ctx.cfg.holder, now_ms(), ttl.as_millis() as i64),
            )
            .await;
        match res {
            Ok(state) if state.holder == ctx.cfg.holder => renewed_at = tokio::time::Instant::now(),
            Ok(state) => return Err(Error::LeaseLost(state.holder)),
            Err(error) => {
                warn!(%error, "renewing the controller lease failed");
                if renewed_at.elapsed() >= ttl {
                    return Err(Error::LeaseLost(
                        "(unknown: the store was unreachable for the whole lease)".into(),
                    ));
                }
            }
        }
    }
}
