//! The `Runtime` seam: where worker replicas run. Docker Swarm in
//! production (a service per pool); local worker tasks in this process for
//! `skep run`. The controller scales both the same way.

pub mod external;
mod local;
pub mod swarm;

use async_trait::async_trait;
use futures::stream::BoxStream;

pub use external::ExternalRuntime;
pub use local::LocalRuntime;
pub use swarm::SwarmRuntime;

pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The orchestrator could not be reached or refused the call.
    #[error("runtime unavailable: {0}")]
    Unavailable(String),
    /// Someone else changed the service between read and write.
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("pool {0:?} is not known to the runtime")]
    UnknownPool(String),
}

impl RuntimeError {
    pub fn metric_label(&self) -> &'static str {
        match self {
            RuntimeError::Unavailable(_) => "unavailable",
            RuntimeError::Conflict(_) => "conflict",
            RuntimeError::UnknownPool(_) => "unknown_pool",
        }
    }
}

/// How many replicas of a pool the runtime can usefully run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacity {
    pub replicas: u32,
    /// Ready, active nodes the pool may use.
    pub nodes: u32,
}

/// A pool as the runtime sees it now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PoolState {
    /// Replicas asked for.
    pub desired: u32,
    /// Replicas running. Local: a replica that was asked to stop counts
    /// until it has stopped. Swarm: only tasks that are running and meant to
    /// keep running (a task told to shut down takes no new work).
    pub running: u32,
    /// Nodes the running replicas are on.
    pub nodes: Vec<String>,
}

/// A change the runtime noticed by itself, for the controller to reconcile
/// at once rather than at its next resync.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuntimeEvent {
    /// The pool's service or one of its replicas changed.
    Pool(String),
    /// Nodes joined, left or changed: every pool's capacity may differ.
    Nodes,
    /// The feed (re)connected; changes during the gap are not known.
    Resync,
}

#[async_trait]
pub trait Runtime: Send + Sync + 'static {
    fn backend(&self) -> &'static str;
    /// Files one replica reads at once (its OCR slots).
    fn slots_per_replica(&self) -> u32;
    async fn capacity(&self, pool: &str) -> Result<Capacity>;
    /// Converges the pool to `replicas`; creates the pool if the runtime
    /// owns its definition.
    async fn set_replicas(&self, pool: &str, replicas: u32) -> Result<()>;
    async fn observe(&self, pool: &str) -> Result<PoolState>;
    /// Changes made outside the controller (a node drained, a service
    /// scaled by hand, a replica that died), as they happen. `None`: the
    /// runtime has no such feed and the periodic resync must do. The
    /// stream reconnects by itself and never ends while the runtime lives.
    fn events(&self) -> Option<BoxStream<'static, RuntimeEvent>> {
        None
    }
}
