//! The swarm's nodes: list, inspect, drain/pause/activate, remove.

use axum::extract::State;
use axum::http::Method;
use axum::routing::{delete, get, put};
use bollard::models::{Node, NodeSpecAvailabilityEnum};
use bollard::query_parameters::{DeleteNodeOptions, UpdateNodeOptions};
use serde::Deserialize;
use serde_json::{Value, json};

use super::views::{NodeView, node_ref, running_per_node, version_of};
use super::{
    Conn, Snapshot, check_node_ref, check_version, connect, filters, node_ref_schema, version_in, version_schema,
};
use crate::http::ApiState;
use crate::http::error::{ApiError, ApiResult, ok};
use crate::http::extract::{ForceQuery, Json, Path, Query};
use crate::http::openapi::{Api, RouteDoc, path, query};

fn id_param() -> crate::http::openapi::Param {
    path(
        "id",
        "The node's id (or a unique prefix of it) or hostname",
        node_ref_schema(),
    )
}

pub(super) fn routes(api: Api) -> Api {
    let tag = "swarm";
    api.add(
        RouteDoc::new(Method::GET, "/api/swarm/nodes", "listNodes", "The swarm's nodes, with their running tasks")
            .tag(tag)
            .data(json!({"type": "array", "items": node_ref()}))
            .errors(&[503]),
        get(list),
    )
    .add(
        RouteDoc::new(Method::GET, "/api/swarm/nodes/{id}", "getNode", "One node")
            .tag(tag)
            .param(id_param())
            .data(node_ref())
            .errors(&[404, 503]),
        get(get_one),
    )
    .add(
        RouteDoc::new(
            Method::DELETE,
            "/api/swarm/nodes/{id}",
            "deleteNode",
            "Remove a node from the swarm (Docker refuses a manager, and a node not down unless forced)",
        )
        .tag(tag)
        .param(id_param())
        .param(query("force", "Remove it even if it is not down", json!({"type": "boolean"})))
        .data(json!({"type": "object", "required": ["id", "deleted"], "properties": {"id": {"type": "string"}, "deleted": {"type": "boolean"}}}))
        .errors(&[404, 409, 503]),
        delete(remove),
    )
    .add(
        RouteDoc::new(
            Method::PUT,
            "/api/swarm/nodes/{id}/availability",
            "setNodeAvailability",
            "Set whether the node takes tasks: active, pause (keeps its tasks) or drain (moves them away)",
        )
        .tag(tag)
        .param(id_param())
        .json_body(json!({
            "type": "object",
            "required": ["availability"],
            "additionalProperties": false,
            "properties": {
                "availability": {"type": "string", "enum": ["active", "pause", "drain"]},
                "version": version_schema(),
            },
        }))
        .data(node_ref())
        .errors(&[404, 409, 503]),
        put(set_availability),
    )
}

async fn list(State(state): State<ApiState>) -> ApiResult<Vec<NodeView>> {
    let d = connect(&state).await?;
    let (nodes, tasks) = tokio::try_join!(d.nodes(), d.tasks(filters(&[("desired-state", "running")])))?;
    let snap = Snapshot {
        services: Vec::new(),
        nodes,
        tasks,
    };
    ok(snap.node_views())
}

async fn inspect(d: &Conn<'_>, id: &str) -> Result<Node, ApiError> {
    check_node_ref(id)?;
    d.node(id).await
}

/// `n` with its running tasks counted.
async fn view(d: &Conn<'_>, n: &Node) -> Result<NodeView, ApiError> {
    let id = n.id.clone().unwrap_or_default();
    let tasks = d.tasks(filters(&[("node", &id), ("desired-state", "running")])).await?;
    Ok(NodeView::of(n, &running_per_node(&tasks)))
}

async fn get_one(State(state): State<ApiState>, Path(id): Path<String>) -> ApiResult<NodeView> {
    let d = connect(&state).await?;
    let n = inspect(&d, &id).await?;
    ok(view(&d, &n).await?)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Availability {
    Active,
    Pause,
    Drain,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AvailabilityBody {
    availability: Availability,
    version: Option<serde_json::Number>,
}

/// Read-modify-write at the node's version: a `version` in the body that is
/// not the node's, or a change by someone else in between, is a 409.
async fn set_availability(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Json(body): Json<AvailabilityBody>,
) -> ApiResult<NodeView> {
    check_node_ref(&id)?;
    let expected = version_in(body.version.as_ref())?;
    let d = connect(&state).await?;
    let n = inspect(&d, &id).await?;
    let current = version_of(n.version.as_ref());
    check_version(&format!("node {id:?}"), current, expected)?;
    let mut spec = n.spec.clone().unwrap_or_default();
    spec.availability = Some(match body.availability {
        Availability::Active => NodeSpecAvailabilityEnum::ACTIVE,
        Availability::Pause => NodeSpecAvailabilityEnum::PAUSE,
        Availability::Drain => NodeSpecAvailabilityEnum::DRAIN,
    });
    let node_id = n.id.clone().unwrap_or(id);
    let version = i64::try_from(current)
        .map_err(|_| ApiError::Internal(format!("node {node_id} has version {current}, past i64")))?;
    d.call(
        "updating the node",
        d.api.update_node(&node_id, spec, UpdateNodeOptions { version }),
    )
    .await?;
    let n = inspect(&d, &node_id).await?;
    ok(view(&d, &n).await?)
}

async fn remove(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Query(q): Query<ForceQuery>,
) -> ApiResult<Value> {
    check_node_ref(&id)?;
    let d = connect(&state).await?;
    let n = inspect(&d, &id).await?;
    let options = DeleteNodeOptions { force: q.force };
    let node_id = n.id.unwrap_or(id.clone());
    d.call("removing the node", d.api.delete_node(&node_id, Some(options)))
        .await?;
    ok(json!({"id": id, "deleted": true}))
}
