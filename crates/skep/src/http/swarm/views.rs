//! What the API shows of Docker's services, nodes and tasks: flat,
//! camelCase views with the dashboard's field names, and their schemas.

use std::collections::{BTreeMap, HashMap};

use bollard::models::{Node, NodeState, Service, Task, TaskState};
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::STACK_LABEL;

pub(super) fn service_ref() -> Value {
    json!({"$ref": "#/components/schemas/ServiceView"})
}

pub(super) fn node_ref() -> Value {
    json!({"$ref": "#/components/schemas/NodeView"})
}

pub(super) fn task_ref() -> Value {
    json!({"$ref": "#/components/schemas/TaskView"})
}

fn labels_schema() -> Value {
    json!({"type": "object", "additionalProperties": {"type": "string"}})
}

pub(super) fn components() -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(
        "ServiceView".to_owned(),
        json!({
            "type": "object",
            "required": ["id", "name", "image", "mode", "replicas", "stack", "labels", "version"],
            "properties": {
                "id": {"type": "string"},
                "name": {"type": "string"},
                "image": {"type": "string"},
                "mode": {"type": "string", "enum": ["replicated", "global"]},
                "replicas": {
                    "type": "object",
                    "required": ["desired", "running"],
                    "properties": {
                        "desired": {"type": ["integer", "null"], "description": "Tasks wanted (for a global service: one per eligible node, when Docker says)"},
                        "running": {"type": "integer"},
                    },
                },
                "stack": {"type": ["string", "null"]},
                "labels": labels_schema(),
                "version": {"type": "integer"},
                "createdAt": {"type": ["string", "null"]},
                "updatedAt": {"type": ["string", "null"]},
            },
        }),
    );
    m.insert(
        "NodeView".to_owned(),
        json!({
            "type": "object",
            "required": ["id", "hostname", "role", "availability", "state", "leader", "cpus", "memoryBytes", "labels", "tasksRunning", "version"],
            "properties": {
                "id": {"type": "string"},
                "hostname": {"type": "string"},
                "role": {"type": "string", "enum": ["manager", "worker"]},
                "availability": {"type": "string", "enum": ["active", "pause", "drain"]},
                "state": {"type": "string", "enum": ["ready", "down", "unknown", "disconnected"]},
                "addr": {"type": ["string", "null"]},
                "leader": {"type": "boolean"},
                "cpus": {"type": "number"},
                "memoryBytes": {"type": "integer"},
                "engineVersion": {"type": ["string", "null"]},
                "labels": labels_schema(),
                "tasksRunning": {"type": "integer"},
                "version": {"type": "integer"},
            },
        }),
    );
    m.insert(
        "TaskView".to_owned(),
        json!({
            "type": "object",
            "required": ["id", "state", "desiredState"],
            "properties": {
                "id": {"type": "string"},
                "slot": {"type": ["integer", "null"]},
                "nodeId": {"type": ["string", "null"]},
                "node": {"type": ["string", "null"], "description": "The node's hostname"},
                "state": {"type": "string"},
                "desiredState": {"type": "string"},
                "message": {"type": ["string", "null"]},
                "error": {"type": ["string", "null"]},
                "image": {"type": ["string", "null"]},
                "containerId": {"type": ["string", "null"]},
                "exitCode": {"type": ["integer", "null"]},
                "createdAt": {"type": ["string", "null"]},
                "updatedAt": {"type": ["string", "null"]},
            },
        }),
    );
    m
}

#[derive(Debug, Clone, Serialize)]
pub(in crate::http) struct Replicas {
    /// `None` for a global service whose eligible nodes Docker did not count.
    pub desired: Option<u64>,
    pub running: u64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(in crate::http) struct ServiceView {
    pub id: String,
    pub name: String,
    pub image: String,
    pub mode: &'static str,
    pub replicas: Replicas,
    pub stack: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub version: u64,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
}

/// Whether the service runs one task per node (global, or a global job).
pub(super) fn is_global(s: &Service) -> bool {
    s.spec
        .as_ref()
        .and_then(|s| s.mode.as_ref())
        .is_some_and(|m| m.global.is_some() || m.global_job.is_some())
}

pub(in crate::http) fn version_of(v: Option<&bollard::models::ObjectVersion>) -> u64 {
    v.and_then(|v| v.index).unwrap_or(0)
}

impl ServiceView {
    /// `s` as listed with `status=true` (running and desired counts); a
    /// service read without them shows 0 running.
    pub fn of(s: &Service) -> Self {
        let spec = s.spec.clone().unwrap_or_default();
        let labels: BTreeMap<String, String> = spec.labels.unwrap_or_default().into_iter().collect();
        let status = s.service_status.as_ref();
        let global = is_global(s);
        let desired = if global {
            status.and_then(|st| st.desired_tasks)
        } else {
            spec.mode
                .as_ref()
                .and_then(|m| m.replicated.as_ref())
                .map(|r| u64::try_from(r.replicas.unwrap_or(1)).unwrap_or(0))
                .or_else(|| status.and_then(|st| st.desired_tasks))
        };
        Self {
            id: s.id.clone().unwrap_or_default(),
            name: spec.name.unwrap_or_default(),
            image: spec
                .task_template
                .and_then(|t| t.container_spec)
                .and_then(|c| c.image)
                .unwrap_or_default(),
            mode: if global { "global" } else { "replicated" },
            replicas: Replicas {
                desired,
                running: status.and_then(|st| st.running_tasks).unwrap_or(0),
            },
            stack: labels.get(STACK_LABEL).cloned(),
            labels,
            version: version_of(s.version.as_ref()),
            created_at: s.created_at.clone(),
            updated_at: s.updated_at.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(in crate::http) struct NodeView {
    pub id: String,
    pub hostname: String,
    pub role: &'static str,
    pub availability: &'static str,
    pub state: &'static str,
    pub addr: Option<String>,
    pub leader: bool,
    pub cpus: f64,
    pub memory_bytes: i64,
    pub engine_version: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub tasks_running: u64,
    pub version: u64,
}

/// Tasks in state `running`, by node id.
pub(super) fn running_per_node(tasks: &[Task]) -> HashMap<String, u64> {
    let mut m = HashMap::new();
    for t in tasks {
        if task_state(t) == Some(TaskState::RUNNING)
            && let Some(node) = &t.node_id
        {
            *m.entry(node.clone()).or_insert(0) += 1;
        }
    }
    m
}

pub(super) fn task_state(t: &Task) -> Option<TaskState> {
    t.status.as_ref().and_then(|s| s.state)
}

fn node_state(s: Option<NodeState>) -> &'static str {
    match s {
        Some(NodeState::READY) => "ready",
        Some(NodeState::DOWN) => "down",
        Some(NodeState::DISCONNECTED) => "disconnected",
        Some(NodeState::UNKNOWN) | None => "unknown",
    }
}

impl NodeView {
    /// `n`, with its running tasks counted from `running` (by node id).
    pub fn of(n: &Node, running: &HashMap<String, u64>) -> Self {
        use bollard::models::{NodeSpecAvailabilityEnum as A, NodeSpecRoleEnum as R};
        let spec = n.spec.clone().unwrap_or_default();
        let desc = n.description.clone().unwrap_or_default();
        let resources = desc.resources.unwrap_or_default();
        let id = n.id.clone().unwrap_or_default();
        Self {
            tasks_running: running.get(&id).copied().unwrap_or(0),
            id,
            hostname: desc.hostname.unwrap_or_default(),
            role: match spec.role {
                Some(R::MANAGER) => "manager",
                _ => "worker",
            },
            availability: match spec.availability {
                Some(A::PAUSE) => "pause",
                Some(A::DRAIN) => "drain",
                _ => "active",
            },
            state: node_state(n.status.as_ref().and_then(|s| s.state)),
            addr: n.status.as_ref().and_then(|s| s.addr.clone()),
            leader: n.manager_status.as_ref().and_then(|m| m.leader).unwrap_or(false),
            cpus: resources.nano_cpus.unwrap_or(0) as f64 / 1e9,
            memory_bytes: resources.memory_bytes.unwrap_or(0),
            engine_version: desc.engine.and_then(|e| e.engine_version),
            labels: spec.labels.unwrap_or_default().into_iter().collect(),
            version: version_of(n.version.as_ref()),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct TaskView {
    pub id: String,
    pub slot: Option<i64>,
    pub node_id: Option<String>,
    pub node: Option<String>,
    pub state: String,
    pub desired_state: String,
    pub message: Option<String>,
    pub error: Option<String>,
    pub image: Option<String>,
    pub container_id: Option<String>,
    pub exit_code: Option<i64>,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
}

impl TaskView {
    /// `t`, its node named from `hostnames` (by node id).
    pub fn of(t: &Task, hostnames: &HashMap<String, String>) -> Self {
        let status = t.status.clone().unwrap_or_default();
        let container = status.container_status.unwrap_or_default();
        Self {
            id: t.id.clone().unwrap_or_default(),
            slot: t.slot,
            node_id: t.node_id.clone(),
            node: t.node_id.as_ref().and_then(|n| hostnames.get(n).cloned()),
            state: status.state.map_or_else(|| "unknown".to_owned(), |s| s.to_string()),
            desired_state: t.desired_state.map_or_else(|| "unknown".to_owned(), |s| s.to_string()),
            message: status.message,
            error: status.err,
            image: t
                .spec
                .as_ref()
                .and_then(|s| s.container_spec.as_ref())
                .and_then(|c| c.image.clone()),
            container_id: container.container_id,
            exit_code: container.exit_code,
            created_at: t.created_at.clone(),
            updated_at: t.updated_at.clone(),
        }
    }
}
