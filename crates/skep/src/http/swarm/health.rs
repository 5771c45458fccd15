//! How the swarm is doing (health) and what it holds (statistics), both
//! computed from one [`Snapshot`].
//!
//! Health: a node is `healthy` when ready and active, `degraded` when
//! ready but paused or drained, `unhealthy` otherwise. A service is
//! `healthy` when it runs every task it wants, `degraded` when it runs
//! some, `unhealthy` when it wants tasks and runs none. The swarm is
//! `unhealthy` when no node is healthy, `degraded` when any node or
//! service is not healthy, else `healthy`. The task success rate counts
//! the tasks Docker still keeps (its task history: a few per slot):
//! complete or running against failed or rejected; `null` when none.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::Method;
use axum::routing::get;
use bollard::models::{Task, TaskState};
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::views::{NodeView, ServiceView, task_state};
use super::{STACK_LABEL, Snapshot, connect};
use crate::http::ApiState;
use crate::http::error::{ApiResult, ok};
use crate::http::openapi::{Api, RouteDoc};

const STATUSES: [&str; 3] = ["healthy", "degraded", "unhealthy"];

pub(super) fn routes(api: Api) -> Api {
    let tag = "swarm";
    api.add(
        RouteDoc::new(
            Method::GET,
            "/api/swarm/health",
            "swarmHealth",
            "Whether the nodes take tasks and the services run what they want",
        )
        .tag(tag)
        .data(json!({"$ref": "#/components/schemas/HealthView"}))
        .errors(&[503]),
        get(health),
    )
    .add(
        RouteDoc::new(
            Method::GET,
            "/api/swarm/statistics",
            "swarmStatistics",
            "Counts of nodes, services and tasks, and the swarm's CPUs and memory",
        )
        .tag(tag)
        .data(json!({"$ref": "#/components/schemas/SwarmStatistics"}))
        .errors(&[503]),
        get(statistics),
    )
}

pub(super) fn components() -> Map<String, Value> {
    let status = json!({"type": "string", "enum": STATUSES});
    let counts = json!({"type": "object", "additionalProperties": {"type": "integer"}});
    let mut m = Map::new();
    m.insert(
        "HealthView".to_owned(),
        json!({
            "type": "object",
            "required": ["status", "nodes", "services", "taskSuccessRate"],
            "properties": {
                "status": status,
                "nodes": {"type": "array", "items": {"type": "object", "required": ["id", "hostname", "status", "availability", "state"], "properties": {
                    "id": {"type": "string"},
                    "hostname": {"type": "string"},
                    "status": status,
                    "availability": {"type": "string", "enum": ["active", "pause", "drain"]},
                    "state": {"type": "string", "enum": ["ready", "down", "unknown", "disconnected"]},
                }}},
                "services": {"type": "array", "items": {"type": "object", "required": ["name", "desired", "running", "status"], "properties": {
                    "name": {"type": "string"},
                    "desired": {"type": ["integer", "null"]},
                    "running": {"type": "integer"},
                    "status": status,
                }}},
                "taskSuccessRate": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
            },
        }),
    );
    m.insert(
        "SwarmStatistics".to_owned(),
        json!({
            "type": "object",
            "required": ["nodes", "services", "tasks", "resources", "runningTasksPerNode"],
            "properties": {
                "nodes": {"type": "object", "properties": {
                    "total": {"type": "integer"},
                    "byRole": counts,
                    "byAvailability": counts,
                    "byState": counts,
                }},
                "services": {"type": "object", "properties": {
                    "total": {"type": "integer"},
                    "byMode": counts,
                    "stacks": {"type": "integer"},
                }},
                "tasks": {"type": "object", "properties": {
                    "total": {"type": "integer"},
                    "byState": counts,
                }},
                "resources": {"type": "object", "properties": {
                    "cpus": {"type": "number"},
                    "memoryBytes": {"type": "integer"},
                }},
                "runningTasksPerNode": {"type": "array", "items": {"type": "object", "properties": {
                    "id": {"type": "string"},
                    "hostname": {"type": "string"},
                    "running": {"type": "integer"},
                }}},
            },
        }),
    );
    m
}

#[derive(Debug, Clone, Serialize)]
struct NodeHealth {
    id: String,
    hostname: String,
    status: &'static str,
    availability: &'static str,
    state: &'static str,
}

#[derive(Debug, Clone, Serialize)]
struct ServiceHealth {
    name: String,
    desired: Option<u64>,
    running: u64,
    status: &'static str,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(in crate::http) struct HealthView {
    status: &'static str,
    nodes: Vec<NodeHealth>,
    services: Vec<ServiceHealth>,
    task_success_rate: Option<f64>,
}

fn node_status(n: &NodeView) -> &'static str {
    match (n.state, n.availability) {
        ("ready", "active") => "healthy",
        ("ready", _) => "degraded",
        _ => "unhealthy",
    }
}

fn service_status(s: &ServiceView) -> &'static str {
    let running = s.replicas.running;
    match s.replicas.desired {
        Some(desired) if running >= desired => "healthy",
        Some(_) if running > 0 => "degraded",
        Some(_) => "unhealthy",
        // NB: a global service whose eligible nodes Docker did not count.
        None if running > 0 => "healthy",
        None => "degraded",
    }
}

/// Complete or running against failed or rejected, of `tasks`.
fn success_rate(tasks: &[Task]) -> Option<f64> {
    let (mut good, mut bad) = (0u64, 0u64);
    for t in tasks {
        match task_state(t) {
            Some(TaskState::COMPLETE | TaskState::RUNNING) => good += 1,
            Some(TaskState::FAILED | TaskState::REJECTED) => bad += 1,
            _ => {}
        }
    }
    (good + bad > 0).then(|| good as f64 / (good + bad) as f64)
}

impl HealthView {
    pub fn of(nodes: &[NodeView], services: &[ServiceView], tasks: &[Task]) -> Self {
        let nodes: Vec<NodeHealth> = nodes
            .iter()
            .map(|n| NodeHealth {
                id: n.id.clone(),
                hostname: n.hostname.clone(),
                status: node_status(n),
                availability: n.availability,
                state: n.state,
            })
            .collect();
        let services: Vec<ServiceHealth> = services
            .iter()
            .map(|s| ServiceHealth {
                name: s.name.clone(),
                desired: s.replicas.desired,
                running: s.replicas.running,
                status: service_status(s),
            })
            .collect();
        let status = if !nodes.iter().any(|n| n.status == "healthy") {
            "unhealthy"
        } else if nodes.iter().any(|n| n.status != "healthy") || services.iter().any(|s| s.status != "healthy") {
            "degraded"
        } else {
            "healthy"
        };
        Self {
            status,
            nodes,
            services,
            task_success_rate: success_rate(tasks),
        }
    }
}

async fn health(State(state): State<ApiState>) -> ApiResult<HealthView> {
    let d = connect(&state).await?;
    let snap = Snapshot::read(&d).await?;
    ok(HealthView::of(&snap.node_views(), &snap.service_views(), &snap.tasks))
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct NodeCounts {
    total: usize,
    by_role: BTreeMap<&'static str, u64>,
    by_availability: BTreeMap<&'static str, u64>,
    by_state: BTreeMap<&'static str, u64>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ServiceCounts {
    total: usize,
    by_mode: BTreeMap<&'static str, u64>,
    stacks: usize,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct TaskCounts {
    total: usize,
    by_state: BTreeMap<String, u64>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Resources {
    cpus: f64,
    memory_bytes: i64,
}

#[derive(Debug, Serialize)]
struct NodeTasks {
    id: String,
    hostname: String,
    running: u64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Statistics {
    nodes: NodeCounts,
    services: ServiceCounts,
    tasks: TaskCounts,
    resources: Resources,
    running_tasks_per_node: Vec<NodeTasks>,
}

/// `keys` at 0, then one more for each of `values`.
fn count<'a>(keys: &[&'a str], values: impl Iterator<Item = &'a str>) -> BTreeMap<&'a str, u64> {
    let mut m: BTreeMap<&str, u64> = keys.iter().map(|k| (*k, 0)).collect();
    for v in values {
        *m.entry(v).or_insert(0) += 1;
    }
    m
}

impl Statistics {
    fn of(snap: &Snapshot) -> Self {
        let nodes = snap.node_views();
        let services = snap.service_views();
        let mut by_state: BTreeMap<String, u64> = BTreeMap::new();
        for t in &snap.tasks {
            let state = task_state(t).map_or_else(|| "unknown".to_owned(), |s| s.to_string());
            *by_state.entry(state).or_insert(0) += 1;
        }
        let stacks: std::collections::BTreeSet<&str> = services
            .iter()
            .filter_map(|s| s.labels.get(STACK_LABEL).map(String::as_str))
            .collect();
        Self {
            nodes: NodeCounts {
                total: nodes.len(),
                by_role: count(&["manager", "worker"], nodes.iter().map(|n| n.role)),
                by_availability: count(&["active", "pause", "drain"], nodes.iter().map(|n| n.availability)),
                by_state: count(
                    &["ready", "down", "unknown", "disconnected"],
                    nodes.iter().map(|n| n.state),
                ),
            },
            services: ServiceCounts {
                total: services.len(),
                by_mode: count(&["replicated", "global"], services.iter().map(|s| s.mode)),
                stacks: stacks.len(),
            },
            tasks: TaskCounts {
                total: snap.tasks.len(),
                by_state,
            },
            resources: Resources {
                cpus: nodes.iter().map(|n| n.cpus).sum(),
                memory_bytes: nodes.iter().map(|n| n.memory_bytes).sum(),
            },
            running_tasks_per_node: nodes
                .iter()
                .map(|n| NodeTasks {
                    id: n.id.clone(),
                    hostname: n.hostname.clone(),
                    running: n.tasks_running,
                })
                .collect(),
        }
    }
}

async fn statistics(State(state): State<ApiState>) -> ApiResult<Statistics> {
    let d = connect(&state).await?;
    let snap = Snapshot::read(&d).await?;
    ok(Statistics::of(&snap))
}

#[cfg(test)]
mod tests {
    use bollard::models::TaskStatus;

    use super::super::views::Replicas;
    use super::*;

    fn node(state: &'static str, availability: &'static str) -> NodeView {
        NodeView {
            id: "n".into(),
            hostname: "h".into(),
            role: "manager",
            availability,
            state,
            addr: None,
            leader: true,
            cpus: 2.0,
            memory_bytes: 1 << 30,
            engine_version: None,
            labels: BTreeMap::new(),
            tasks_running: 0,
            version: 1,
        }
    }

    fn service(desired: Option<u64>, running: u64) -> ServiceView {
        ServiceView {
            id: "s".into(),
            name: "s".into(),
            image: "i".into(),
            mode: "replicated",
            replicas: Replicas { desired, running },
            stack: None,
            labels: BTreeMap::new(),
            version: 1,
            created_at: None,
            updated_at: None,
        }
    }

    fn task(state: TaskState) -> Task {
        Task {
            status: Some(TaskStatus {
                state: Some(state),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_swarm_is_as_healthy_as_its_nodes_and_services() {
        let ready = node("ready", "active");
        let h = HealthView::of(std::slice::from_ref(&ready), &[service(Some(2), 2)], &[]);
        assert_eq!((h.status, h.task_success_rate), ("healthy", None));
        let h = HealthView::of(std::slice::from_ref(&ready), &[service(Some(2), 1)], &[]);
        assert_eq!((h.status, h.services[0].status), ("degraded", "degraded"));
        let h = HealthView::of(std::slice::from_ref(&ready), &[service(Some(2), 0)], &[]);
        assert_eq!((h.status, h.services[0].status), ("degraded", "unhealthy"));
        let h = HealthView::of(&[ready.clone(), node("down", "active")], &[], &[]);
        assert_eq!((h.status, h.nodes[1].status), ("degraded", "unhealthy"));
        let h = HealthView::of(&[node("ready", "drain")], &[service(Some(0), 0)], &[]);
        assert_eq!(
            (h.status, h.nodes[0].status, h.services[0].status),
            ("unhealthy", "degraded", "healthy")
        );
    }

    #[test]
    fn the_success_rate_counts_finished_and_running_against_failed() {
        let tasks = [
            task(TaskState::RUNNING),
            task(TaskState::COMPLETE),
            task(TaskState::FAILED),
            task(TaskState::REJECTED),
            task(TaskState::SHUTDOWN),
            task(TaskState::PENDING),
        ];
        assert_eq!(success_rate(&tasks), Some(0.5));
        assert_eq!(success_rate(&tasks[4..]), None);
    }
}
