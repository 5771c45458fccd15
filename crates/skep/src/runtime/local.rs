//! Worker replicas as tasks of this process: what `skep run` scales. Each
//! replica is the same worker loop a `skep-worker` container runs, with one
//! OCR slot, fed from the shared queue; scaling down stops the newest
//! replicas gracefully, as a swarm scale-down would.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use skep_queue::TaskQueue;
use skep_worker::WorkerConfig;
use skep_worker::worker::{self, WorkerReport};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span};

use super::{Capacity, PoolState, Result, Runtime};

struct Replica {
    stop: CancellationToken,
    handle: JoinHandle<WorkerReport>,
}

#[derive(Default)]
struct Pool {
    active: Vec<Replica>,
    /// Told to stop, maybe still finishing a file.
    draining: Vec<Replica>,
}

pub struct LocalRuntime {
    queue: Arc<dyn TaskQueue>,
    capacity: u32,
    node: String,
    stop_grace: Duration,
    pools: Mutex<HashMap<String, Pool>>,
    next_id: AtomicU64,
    /// Set by [`LocalRuntime::shutdown`]: no replica starts after it.
    closed: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for LocalRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalRuntime")
            .field("capacity", &self.capacity)
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl LocalRuntime {
    /// `capacity` replicas at most (one per core is right: each replica
    /// runs one Tesseract thread); 0 runs none, for workers started
    /// elsewhere on a shared broker.
    pub fn new(queue: Arc<dyn TaskQueue>, capacity: u32) -> Self {
        Self {
            queue,
            capacity,
            node: skep_worker::node_name(),
            stop_grace: skep_worker::worker::DEFAULT_STOP_GRACE,
            pools: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            closed: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// One replica per core.
    pub fn with_cores(queue: Arc<dyn TaskQueue>) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
        Self::new(queue, cores)
    }

    pub fn with_stop_grace(mut self, grace: Duration) -> Self {
        self.stop_grace = grace;
        self
    }

    /// Stops every replica (each finishes its file within the grace period)
    /// and waits for them.
    pub async fn shutdown(&self) -> WorkerReport {
        let replicas: Vec<Replica> = {
            let mut pools = lock(&self.pools);
            self.closed.store(true, Ordering::SeqCst);
            pools
                .values_mut()
                .flat_map(|p| p.active.drain(..).chain(p.draining.drain(..)).collect::<Vec<_>>())
                .collect()
        };
        for r in &replicas {
            r.stop.cancel();
        }
        let mut total = WorkerReport::default();
        for r in replicas {
            if let Ok(rep) = r.handle.await {
                total.succeeded += rep.succeeded;
                total.failed += rep.failed;
                total.handed_back += rep.handed_back;
            }
        }
        total
    }

    fn spawn_replica(&self, pool: &str) -> Replica {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        let id = format!("local-{pool}-{n}");
        let mut cfg = WorkerConfig::new(id.clone(), self.node.clone(), pool, 1);
        cfg.stop_grace = self.stop_grace;
        let stop = CancellationToken::new();
        let span = info_span!("replica", %id);
        let handle = tokio::spawn(worker::run(self.queue.clone(), cfg, stop.clone()).instrument(span));
        Replica { stop, handle }
    }
}

#[async_trait]
impl Runtime for LocalRuntime {
    fn backend(&self) -> &'static str {
        "local"
    }

    fn slots_per_replica(&self) -> u32 {
        1
    }

    async fn capacity(&self, _pool: &str) -> Result<Capacity> {
        Ok(Capacity {
            replicas: self.capacity,
            nodes: 1,
        })
    }

    async fn set_replicas(&self, pool: &str, replicas: u32) -> Result<()> {
        let mut pools = lock(&self.pools);
        // NB: stopping: the controller may still reconcile while the last
        // results come in; it must not start replicas again.
        if self.closed.load(Ordering::SeqCst) {
            return Ok(());
        }
        let p = pools.entry(pool.to_owned()).or_default();
        p.draining.retain(|r| !r.handle.is_finished());
        let before = p.active.len();
        while p.active.len() < replicas as usize {
            let r = self.spawn_replica(pool);
            p.active.push(r);
        }
        while p.active.len() > replicas as usize {
            if let Some(r) = p.active.pop() {
                r.stop.cancel();
                p.draining.push(r);
            }
        }
        if before != p.active.len() {
            info!(pool, from = before, to = p.active.len(), "local replicas scaled");
        }
        Ok(())
    }

    async fn observe(&self, pool: &str) -> Result<PoolState> {
        let mut pools = lock(&self.pools);
        let Some(p) = pools.get_mut(pool) else {
            return Ok(PoolState::default());
        };
        p.draining.retain(|r| !r.handle.is_finished());
        let running = p.active.iter().filter(|r| !r.handle.is_finished()).count() + p.draining.len();
        Ok(PoolState {
            desired: p.active.len() as u32,
            running: running as u32,
            nodes: if running > 0 {
                vec![self.node.clone()]
            } else {
                Vec::new()
            },
        })
    }
}
