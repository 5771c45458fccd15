//! Worker replicas as Docker Swarm services, through the Docker Engine API:
//! pool `P` is the replicated service `<prefix>P` (`skep-worker-P` by
//! default), made from a [`ServiceTemplate`] when skep is given one and the
//! service does not exist yet, or else deployed beforehand (a stack file).
//!
//! Guarantees: scaling writes the service's full spec back with only the
//! replica count changed, at the version it was read at, retrying on a
//! fresh read when someone else wrote in between; a count already reached
//! writes nothing. Capacity comes from the ready, active nodes the
//! service's placement allows (see [`capacity`]); the node list is cached
//! for [`SwarmConfig::capacity_ttl`] and dropped on node events.

mod api;
pub mod capacity;
mod events;
mod observe;
mod scale;
pub mod template;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::time::Instant;
use tracing::{info, warn};

use super::{Capacity, PoolState, Result, Runtime, RuntimeError, RuntimeEvent};
use api::{DockerApi, SwarmApi};
use capacity::{Constraint, NodeInfo, Reservation};
use scale::Scaled;

pub use api::{classify as classify_error, docker_endpoint, not_a_manager};
pub use template::{BindMount, ServiceTemplate, parse_env, parse_memory};

pub const DEFAULT_SERVICE_PREFIX: &str = "skep-worker-";
/// The worker image runs one OCR slot per replica unless told otherwise.
pub const DEFAULT_SLOTS_PER_REPLICA: u32 = 1;
pub const DEFAULT_NODE_FACTOR: f64 = 1.0;
/// How long a node list serves capacity without a node event.
pub const DEFAULT_CAPACITY_TTL: Duration = Duration::from_secs(10);
/// Every Docker call gives up after this without an answer (the
/// controller's own call timeout is longer).
pub const DOCKER_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Clone, Debug)]
pub struct SwarmConfig {
    /// Service name = prefix + pool.
    pub service_prefix: String,
    /// OCR slots each replica runs (what the template passes the workers
    /// as `SKEP_WORKER_SLOTS`, and what dispatch sizes its window by).
    pub slots_per_replica: u32,
    /// Multiplies the replicas that fit on each node.
    pub node_factor: f64,
    pub capacity_ttl: Duration,
    /// How to create a pool's service when it does not exist; without one
    /// such a pool is [`RuntimeError::UnknownPool`].
    pub template: Option<ServiceTemplate>,
}

impl Default for SwarmConfig {
    fn default() -> Self {
        Self {
            service_prefix: DEFAULT_SERVICE_PREFIX.to_owned(),
            slots_per_replica: DEFAULT_SLOTS_PER_REPLICA,
            node_factor: DEFAULT_NODE_FACTOR,
            capacity_ttl: DEFAULT_CAPACITY_TTL,
            template: None,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The node list, kept for a TTL. `generation` guards against a list read
/// before an invalidation being stored after it.
struct NodeCache {
    ttl: Duration,
    entry: Mutex<Option<(Instant, Arc<Vec<NodeInfo>>)>>,
    generation: AtomicU64,
}

impl NodeCache {
    fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entry: Mutex::new(None),
            generation: AtomicU64::new(0),
        }
    }

    fn get(&self) -> Option<Arc<Vec<NodeInfo>>> {
        let entry = lock(&self.entry);
        entry
            .as_ref()
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, nodes)| nodes.clone())
    }

    fn put(&self, generation: u64, nodes: Arc<Vec<NodeInfo>>) {
        let mut entry = lock(&self.entry);
        if self.generation.load(Ordering::SeqCst) == generation {
            *entry = Some((Instant::now(), nodes));
        }
    }

    fn invalidate(&self) {
        let mut entry = lock(&self.entry);
        self.generation.fetch_add(1, Ordering::SeqCst);
        *entry = None;
    }
}

/// What the runtime and its event watch share.
pub(crate) struct Shared {
    api: Arc<dyn SwarmApi>,
    cfg: SwarmConfig,
    nodes: NodeCache,
    /// Constraints already warned about as not understood.
    warned: Mutex<HashSet<String>>,
    endpoint: String,
    /// The secret holding the queue URL for the workers, once made.
    queue_secret: tokio::sync::Mutex<Option<template::QueueSecret>>,
}

/// The swarm runtime. Cheap to clone; clones share the node cache.
#[derive(Clone)]
pub struct SwarmRuntime {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for SwarmRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SwarmRuntime")
            .field("endpoint", &self.shared.endpoint)
            .field("service_prefix", &self.shared.cfg.service_prefix)
            .finish()
    }
}

impl SwarmRuntime {
    /// Connects to the Docker daemon `DOCKER_HOST` names (the local socket
    /// when unset), which must be a swarm manager.
    pub async fn connect(cfg: SwarmConfig) -> Result<Self> {
        let api = DockerApi::connect(DOCKER_TIMEOUT).await?;
        let endpoint = api.endpoint().to_owned();
        Ok(Self::build(Arc::new(api), cfg, endpoint))
    }

    #[cfg(test)]
    pub(crate) fn with_api(api: Arc<dyn SwarmApi>, cfg: SwarmConfig) -> Self {
        Self::build(api, cfg, "fake".to_owned())
    }

    fn build(api: Arc<dyn SwarmApi>, cfg: SwarmConfig, endpoint: String) -> Self {
        Self {
            shared: Arc::new(Shared {
                api,
                nodes: NodeCache::new(cfg.capacity_ttl),
                cfg,
                warned: Mutex::new(HashSet::new()),
                endpoint,
                queue_secret: tokio::sync::Mutex::new(None),
            }),
        }
    }

    /// The Docker endpoint in use (`unix:///var/run/docker.sock`, …).
    /// The Docker secret the template's workers read the queue URL from
    /// (made once; `None` when the template gives the workers no URL).
    async fn queue_secret(&self) -> Result<Option<template::QueueSecret>> {
        let Some(t) = self.shared.cfg.template.as_ref().filter(|t| t.needs_queue_secret()) else {
            return Ok(None);
        };
        let url = t.queue.as_deref().unwrap_or_default();
        let mut cached = self.shared.queue_secret.lock().await;
        if let Some(s) = cached.as_ref() {
            return Ok(Some(s.clone()));
        }
        let name = template::QueueSecret::name_for(url);
        let id = self.shared.api.ensure_secret(&name, url.as_bytes()).await?;
        let s = template::QueueSecret { id, name };
        *cached = Some(s.clone());
        Ok(Some(s))
    }

    pub fn endpoint(&self) -> &str {
        &self.shared.endpoint
    }

    pub fn config(&self) -> &SwarmConfig {
        &self.shared.cfg
    }

    /// The service that runs `pool`.
    pub fn service_name(&self, pool: &str) -> String {
        format!("{}{pool}", self.shared.cfg.service_prefix)
    }

    /// Changes to the pools' services, their replicas and the nodes, for
    /// as long as the stream is polled: see [`events`](self::events) for
    /// the reconnection rules. Container events come from the daemon this
    /// runtime talks to only, so replicas starting or dying on other nodes
    /// are seen at the next reconcile rather than at once.
    pub fn events(&self) -> BoxStream<'static, RuntimeEvent> {
        events::Watch::new(self.shared.clone()).into_stream().boxed()
    }

    /// The node list, cached unless `fresh`.
    async fn nodes(&self, fresh: bool) -> Result<Arc<Vec<NodeInfo>>> {
        if !fresh && let Some(nodes) = self.shared.nodes.get() {
            return Ok(nodes);
        }
        let generation = self.shared.nodes.generation.load(Ordering::SeqCst);
        let nodes: Vec<NodeInfo> = self
            .shared
            .api
            .list_nodes()
            .await?
            .iter()
            .filter_map(NodeInfo::from_node)
            .collect();
        let nodes = Arc::new(nodes);
        self.shared.nodes.put(generation, nodes.clone());
        Ok(nodes)
    }

    /// Parses constraints, warning once per constraint not understood.
    fn constraints(&self, pool: &str, raw: &[String]) -> Vec<Constraint> {
        let parsed: Vec<Constraint> = raw.iter().map(|c| Constraint::parse(c)).collect();
        for (c, raw) in parsed.iter().zip(raw) {
            if c.is_unknown() && lock(&self.shared.warned).insert(raw.clone()) {
                warn!(
                    pool,
                    constraint = %raw,
                    "placement constraint not understood by capacity; counting every node it might allow"
                );
            }
        }
        parsed
    }
}

#[async_trait]
impl Runtime for SwarmRuntime {
    fn backend(&self) -> &'static str {
        "swarm"
    }

    fn slots_per_replica(&self) -> u32 {
        self.shared.cfg.slots_per_replica.max(1)
    }

    async fn capacity(&self, pool: &str) -> Result<Capacity> {
        let name = self.service_name(pool);
        let (raw, reservation) = match self.shared.api.inspect_service(&name).await? {
            Some(svc) => {
                let spec = svc.spec.unwrap_or_default();
                (capacity::constraints_of_spec(&spec), Reservation::of_spec(&spec))
            }
            None => match &self.shared.cfg.template {
                Some(t) => (t.constraints.clone(), t.reservation()),
                None => return Err(RuntimeError::UnknownPool(pool.to_owned())),
            },
        };
        let constraints = self.constraints(pool, &raw);
        let nodes = self.nodes(false).await?;
        Ok(capacity::capacity(
            &nodes,
            &constraints,
            &reservation,
            self.shared.cfg.node_factor,
        ))
    }

    async fn set_replicas(&self, pool: &str, replicas: u32) -> Result<()> {
        let name = self.service_name(pool);
        let secret = self.queue_secret().await?;
        let create = self
            .shared
            .cfg
            .template
            .as_ref()
            .map(|t| t.service_spec(&name, pool, replicas, self.slots_per_replica(), secret.as_ref()));
        match scale::scale(self.shared.api.as_ref(), &name, pool, replicas, create).await? {
            Scaled::Unchanged => {}
            Scaled::Updated { from } => info!(pool, service = %name, from, to = replicas, "service scaled"),
            Scaled::Created => info!(pool, service = %name, replicas, "service created"),
        }
        Ok(())
    }

    async fn observe(&self, pool: &str) -> Result<PoolState> {
        let name = self.service_name(pool);
        let Some(svc) = self.shared.api.inspect_service(&name).await? else {
            return Ok(PoolState::default());
        };
        let desired = svc.spec.as_ref().and_then(scale::replicas_of).unwrap_or(0);
        let tasks = self.shared.api.list_tasks(&name).await?;
        let mut nodes = self.nodes(false).await?;
        if observe::has_unknown_node(&tasks, &nodes) {
            nodes = self.nodes(true).await?;
        }
        Ok(observe::pool_state(desired, &tasks, &nodes))
    }

    fn events(&self) -> Option<BoxStream<'static, RuntimeEvent>> {
        Some(SwarmRuntime::events(self))
    }
}

#[cfg(test)]
mod tests {
    use bollard::models::{Node, Task, TaskState, TaskStatus};

    use super::scale::tests::{FakeApi, stack_spec};
    use super::*;

    fn node_json(id: &str, host: &str, cpus: i64, availability: &str) -> Node {
        serde_json::from_value(serde_json::json!({
            "ID": id,
            "Spec": {"Role": "worker", "Availability": availability},
            "Description": {"Hostname": host, "Resources": {"NanoCPUs": cpus * 1_000_000_000, "MemoryBytes": 8i64 << 30}},
            "Status": {"State": "ready"}
        }))
        .expect("node json")
    }

    fn running_on(node: &str) -> Task {
        Task {
            node_id: Some(node.into()),
            desired_state: Some(TaskState::RUNNING),
            status: Some(TaskStatus {
                state: Some(TaskState::RUNNING),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn observe_reads_desired_running_and_hostnames() {
        let api = FakeApi::with_service(stack_spec("skep-worker-default", 3), 1);
        {
            let mut st = api.lock();
            st.nodes = vec![node_json("n1", "alpha", 2, "active")];
            st.tasks = vec![running_on("n1"), running_on("n1")];
        }
        let rt = SwarmRuntime::with_api(api.clone(), SwarmConfig::default());
        let s = rt.observe("default").await.expect("observe");
        assert_eq!(
            s,
            PoolState {
                desired: 3,
                running: 2,
                nodes: vec!["alpha".into()]
            }
        );
        // A node that joined since the list was cached is looked up again.
        {
            let mut st = api.lock();
            st.nodes.push(node_json("n2", "beta", 2, "active"));
            st.tasks.push(running_on("n2"));
        }
        let s = rt.observe("default").await.expect("observe");
        assert_eq!(s.nodes, vec!["alpha".to_owned(), "beta".to_owned()]);
    }

    #[tokio::test]
    async fn a_missing_service_observes_as_empty() {
        let rt = SwarmRuntime::with_api(Arc::new(FakeApi::default()), SwarmConfig::default());
        assert_eq!(rt.observe("nope").await.ok(), Some(PoolState::default()));
    }

    #[tokio::test]
    async fn capacity_uses_the_service_or_else_the_template() {
        let api = Arc::new(FakeApi::default());
        api.lock().nodes = vec![node_json("n1", "a", 4, "active"), node_json("n2", "b", 4, "drain")];
        let rt = SwarmRuntime::with_api(api.clone(), SwarmConfig::default());
        assert!(matches!(rt.capacity("p").await, Err(RuntimeError::UnknownPool(_))));

        let mut template = ServiceTemplate::new("img");
        template.cpu_reservation = Some(0.5);
        let cfg = SwarmConfig {
            template: Some(template),
            ..SwarmConfig::default()
        };
        let rt = SwarmRuntime::with_api(api.clone(), cfg);
        assert_eq!(rt.capacity("p").await.ok(), Some(Capacity { replicas: 8, nodes: 1 }));

        *api.lock() = Default::default();
        let api = FakeApi::with_service(stack_spec("skep-worker-p", 1), 1);
        api.lock().nodes = vec![node_json("n1", "a", 4, "active")];
        let rt = SwarmRuntime::with_api(api, SwarmConfig::default());
        assert_eq!(
            rt.capacity("p").await.ok(),
            Some(Capacity { replicas: 4, nodes: 1 }),
            "no reservations in the service: one per core"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn node_list_is_cached_until_its_ttl_or_an_invalidation() {
        let api = FakeApi::with_service(stack_spec("skep-worker-p", 1), 1);
        api.lock().nodes = vec![node_json("n1", "a", 4, "active")];
        let rt = SwarmRuntime::with_api(api.clone(), SwarmConfig::default());
        assert_eq!(rt.capacity("p").await.ok().map(|c| c.replicas), Some(4));
        api.lock().nodes.push(node_json("n2", "b", 4, "active"));
        assert_eq!(rt.capacity("p").await.ok().map(|c| c.replicas), Some(4), "cached");
        tokio::time::advance(DEFAULT_CAPACITY_TTL).await;
        assert_eq!(rt.capacity("p").await.ok().map(|c| c.replicas), Some(8), "expired");
        api.lock().nodes.pop();
        rt.shared.nodes.invalidate();
        assert_eq!(rt.capacity("p").await.ok().map(|c| c.replicas), Some(4), "invalidated");
    }

    #[tokio::test]
    async fn set_replicas_creates_from_the_template_with_the_pool_env() {
        let api = Arc::new(FakeApi::default());
        let mut template = ServiceTemplate::new("skep-worker:dev");
        template.queue = Some("amqp://rabbit".into());
        let cfg = SwarmConfig {
            template: Some(template),
            slots_per_replica: 2,
            ..SwarmConfig::default()
        };
        let rt = SwarmRuntime::with_api(api.clone(), cfg);
        rt.set_replicas("scans", 3).await.expect("created");
        let st = api.lock();
        let spec = &st.creates[0];
        assert_eq!(spec.name.as_deref(), Some("skep-worker-scans"));
        assert_eq!(scale::replicas_of(spec), Some(3));
        let env = spec
            .task_template
            .as_ref()
            .and_then(|t| t.container_spec.as_ref())
            .and_then(|c| c.env.clone())
            .unwrap_or_default();
        assert!(env.contains(&"SKEP_POOL=scans".to_owned()), "{env:?}");
        assert!(env.contains(&"SKEP_WORKER_SLOTS=2".to_owned()), "{env:?}");
        assert!(
            !env.iter().any(|e| e.contains("amqp://")),
            "the queue URL is never an env value: {env:?}"
        );
        assert!(
            env.contains(&"SKEP_QUEUE_FILE=/run/secrets/skep_queue".to_owned()),
            "{env:?}"
        );
        let secrets = spec
            .task_template
            .as_ref()
            .and_then(|t| t.container_spec.as_ref())
            .and_then(|c| c.secrets.clone())
            .unwrap_or_default();
        assert_eq!(secrets.len(), 1);
        assert_eq!(
            secrets[0].secret_name,
            Some(template::QueueSecret::name_for("amqp://rabbit"))
        );
        assert_eq!(
            st.secrets,
            vec![(
                template::QueueSecret::name_for("amqp://rabbit"),
                b"amqp://rabbit".to_vec()
            )]
        );
    }
}
