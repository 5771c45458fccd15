//! `--runtime external`: workers the controller does not start. They run
//! anywhere (a compose file on another host, systemd, another cluster) and
//! announce themselves with heartbeats ([`crate::controller::workers`]); a
//! pool's running replicas are its live workers, and the replicas the
//! controller would want are still computed and exported (job status,
//! `skep_pool_replicas_desired`) for an outside autoscaler to follow.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::{Capacity, PoolState, Result, Runtime};
use crate::controller::workers::Registry;

/// What the desired count is capped at: external workers are not limited
/// by anything the controller can see.
pub const DEFAULT_EXTERNAL_CAPACITY: u32 = 10_000;

#[derive(Debug)]
pub struct ExternalRuntime {
    registry: Registry,
    capacity: u32,
    desired: Mutex<HashMap<String, u32>>,
}

impl ExternalRuntime {
    pub fn new(registry: Registry) -> Self {
        Self {
            registry,
            capacity: DEFAULT_EXTERNAL_CAPACITY,
            desired: Mutex::new(HashMap::new()),
        }
    }

    fn now_ms() -> i64 {
        chrono::Utc::now().timestamp_millis()
    }
}

#[async_trait]
impl Runtime for ExternalRuntime {
    fn backend(&self) -> &'static str {
        "external"
    }

    /// A worker's slots come with its beats; this is the fallback when a
    /// pool has none.
    fn slots_per_replica(&self) -> u32 {
        1
    }

    async fn capacity(&self, pool: &str) -> Result<Capacity> {
        let live = self.registry.live(pool, Self::now_ms());
        Ok(Capacity {
            replicas: self.capacity,
            nodes: u32::try_from(live.nodes.len()).unwrap_or(u32::MAX).max(1),
        })
    }

    /// Records the count for [`Runtime::observe`]: nothing is started.
    async fn set_replicas(&self, pool: &str, replicas: u32) -> Result<()> {
        self.desired
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(pool.to_owned(), replicas);
        Ok(())
    }

    async fn observe(&self, pool: &str) -> Result<PoolState> {
        let desired = self
            .desired
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(pool)
            .copied()
            .unwrap_or(0);
        let live = self.registry.live(pool, Self::now_ms());
        Ok(PoolState {
            desired,
            running: live.workers,
            nodes: live.nodes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn running_replicas_are_the_live_workers() {
        let registry = Registry::new();
        let rt = ExternalRuntime::new(registry.clone());
        rt.set_replicas("p", 5).await.unwrap();
        assert_eq!(
            rt.observe("p").await.unwrap(),
            PoolState {
                desired: 5,
                running: 0,
                nodes: vec![]
            }
        );
        let now = chrono::Utc::now().timestamp_millis();
        for (id, node) in [("a", "h1"), ("b", "h2"), ("c", "h2")] {
            registry.record(skep_api::WorkerBeat::new(id, node, "p", 2, 10_000), now);
        }
        let state = rt.observe("p").await.unwrap();
        assert_eq!((state.desired, state.running), (5, 3));
        assert_eq!(state.nodes, ["h1", "h2"]);
        assert_eq!(rt.capacity("p").await.unwrap().nodes, 2);
        assert_eq!(rt.observe("q").await.unwrap().running, 0);
    }
}
