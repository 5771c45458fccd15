//! The swarm itself: what it is, making this node a swarm's first manager,
//! leaving it, and the tokens other nodes join with.

use axum::extract::State;
use axum::http::Method;
use axum::routing::{get, post};
use bollard::models::{LocalNodeState, SwarmInfo, SwarmInitRequest};
use bollard::query_parameters::LeaveSwarmOptions;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::{Conn, connect};
use crate::http::ApiState;
use crate::http::auth::Scope;
use crate::http::error::{ApiError, ApiResult, created, ok};
use crate::http::extract::{ForceQuery, Json, Path, Query};
use crate::http::openapi::{Api, RouteDoc, path, query};

/// Where `docker swarm init` listens when not told.
const DEFAULT_LISTEN_ADDR: &str = "0.0.0.0:2377";
/// The port managers take joins on when Docker names none.
const DEFAULT_SWARM_PORT: u16 = 2377;

fn addr_schema(description: &str) -> Value {
    json!({
        "type": "string",
        "description": description,
        "pattern": "^[a-zA-Z0-9\\[][a-zA-Z0-9_.:%\\[\\]-]{0,254}$",
        "maxLength": 255,
    })
}

pub(super) fn routes(api: Api) -> Api {
    let tag = "swarm";
    let mut join_token = RouteDoc::new(
        Method::GET,
        "/api/swarm/join-token/{role}",
        "swarmJoinToken",
        "The token (and command) a node joins the swarm with, as a worker or a manager (admin scope: a token is a credential)",
    )
    .tag(tag)
    .param(path("role", "The role the joining node takes", json!({"type": "string", "enum": ["worker", "manager"]})))
    .data(json!({"type": "object", "required": ["role", "token", "command"], "properties": {
        "role": {"type": "string", "enum": ["worker", "manager"]},
        "token": {"type": "string"},
        "addr": {"type": ["string", "null"]},
        "command": {"type": "string"},
    }}))
    .errors(&[503]);
    // NB: a join token lets its holder add a manager to the swarm: it is
    // not something a read-only token may see.
    join_token.scope = Scope::Admin;
    api.add(
        RouteDoc::new(Method::GET, "/api/swarm/info", "swarmInfo", "The swarm this node is part of, and this node's place in it")
            .tag(tag)
            .data(json!({"$ref": "#/components/schemas/SwarmInfo"}))
            .errors(&[503]),
        get(info),
    )
    .add(
        RouteDoc::new(Method::POST, "/api/swarm/init", "swarmInit", "Make this node the first manager of a new swarm")
            .tag(tag)
            .json_body(json!({"type": "object", "additionalProperties": false, "properties": {
                "advertiseAddr": addr_schema("The address other nodes reach this one at: IP or interface, optional port"),
                "listenAddr": addr_schema("Where the swarm's control plane listens (default 0.0.0.0:2377)"),
                "forceNewCluster": {"type": "boolean", "description": "Make a new single-manager swarm from this node's current state (recovery)"},
            }}))
            .success(201)
            .data(json!({"type": "object", "required": ["nodeId"], "properties": {"nodeId": {"type": "string"}}}))
            .errors(&[409, 503]),
        post(init),
    )
    .add(
        RouteDoc::new(
            Method::POST,
            "/api/swarm/leave",
            "swarmLeave",
            "Make this node leave its swarm (a manager only with force)",
        )
        .tag(tag)
        .param(query(
            "force",
            "Leave even as a manager (the last manager's leaving erases the swarm)",
            json!({"type": "boolean"}),
        ))
        .data(json!({"type": "object", "required": ["left"], "properties": {"left": {"type": "boolean"}}}))
        .errors(&[409, 503]),
        post(leave),
    )
    .add(join_token, get(join_token_of))
}

pub(super) fn components() -> Map<String, Value> {
    let int = || json!({"type": ["integer", "null"]});
    let mut m = Map::new();
    m.insert(
        "SwarmInfo".to_owned(),
        json!({
            "type": "object",
            "required": ["node"],
            "properties": {
                "id": {"type": ["string", "null"], "description": "The swarm's id (null when this node is in none)"},
                "name": {"type": ["string", "null"]},
                "createdAt": {"type": ["string", "null"]},
                "updatedAt": {"type": ["string", "null"]},
                "version": int(),
                "nodes": int(),
                "managers": int(),
                "joinAddr": {"type": ["string", "null"], "description": "The manager address nodes join at"},
                "managerAddrs": {"type": "array", "items": {"type": "string"}},
                "raft": {"type": ["object", "null"], "properties": {
                    "snapshotInterval": int(),
                    "keepOldSnapshots": int(),
                    "logEntriesForSlowFollowers": int(),
                    "electionTick": int(),
                    "heartbeatTick": int(),
                }},
                "dispatcher": {"type": ["object", "null"], "properties": {
                    "heartbeatPeriodSeconds": {"type": ["number", "null"]},
                }},
                "taskHistoryRetentionLimit": int(),
                "node": {"type": "object", "required": ["state", "manager"], "properties": {
                    "id": {"type": ["string", "null"]},
                    "addr": {"type": ["string", "null"]},
                    "state": {"type": "string", "enum": ["inactive", "pending", "active", "error", "locked", ""]},
                    "manager": {"type": "boolean"},
                    "error": {"type": ["string", "null"]},
                }},
            },
        }),
    );
    m
}

/// This node's swarm state, as `docker info` reports it.
async fn swarm_info(d: &Conn<'_>) -> Result<SwarmInfo, ApiError> {
    let info = d.call("reading docker info", d.api.info()).await?;
    Ok(info.swarm.unwrap_or_default())
}

fn in_a_swarm(s: &SwarmInfo) -> bool {
    matches!(
        s.local_node_state,
        Some(LocalNodeState::ACTIVE | LocalNodeState::PENDING | LocalNodeState::LOCKED)
    )
}

/// The address nodes join at: this manager's own, else another manager's.
fn join_addr(s: &SwarmInfo) -> Option<String> {
    let managers = s.remote_managers.as_deref().unwrap_or_default();
    managers
        .iter()
        .find(|m| m.node_id.is_some() && m.node_id == s.node_id)
        .or_else(|| managers.first())
        .and_then(|m| m.addr.clone())
        .or_else(|| {
            s.node_addr
                .as_ref()
                .filter(|a| !a.is_empty() && s.control_available == Some(true))
                .map(|a| format!("{a}:{DEFAULT_SWARM_PORT}"))
        })
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Raft {
    snapshot_interval: Option<u64>,
    keep_old_snapshots: Option<u64>,
    log_entries_for_slow_followers: Option<u64>,
    election_tick: Option<i64>,
    heartbeat_tick: Option<i64>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Dispatcher {
    heartbeat_period_seconds: Option<f64>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ThisNode {
    id: Option<String>,
    addr: Option<String>,
    state: String,
    manager: bool,
    error: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct InfoView {
    id: Option<String>,
    name: Option<String>,
    created_at: Option<String>,
    updated_at: Option<String>,
    version: Option<u64>,
    nodes: Option<i64>,
    managers: Option<i64>,
    join_addr: Option<String>,
    manager_addrs: Vec<String>,
    raft: Option<Raft>,
    dispatcher: Option<Dispatcher>,
    task_history_retention_limit: Option<i64>,
    node: ThisNode,
}

impl InfoView {
    fn of(s: SwarmInfo) -> Self {
        let join_addr = join_addr(&s);
        let cluster = s.cluster.unwrap_or_default();
        let spec = cluster.spec.unwrap_or_default();
        Self {
            id: cluster.id,
            name: spec.name,
            created_at: cluster.created_at,
            updated_at: cluster.updated_at,
            version: cluster.version.and_then(|v| v.index),
            nodes: s.nodes,
            managers: s.managers,
            join_addr,
            manager_addrs: s
                .remote_managers
                .unwrap_or_default()
                .into_iter()
                .filter_map(|m| m.addr)
                .collect(),
            raft: spec.raft.map(|r| Raft {
                snapshot_interval: r.snapshot_interval,
                keep_old_snapshots: r.keep_old_snapshots,
                log_entries_for_slow_followers: r.log_entries_for_slow_followers,
                election_tick: r.election_tick,
                heartbeat_tick: r.heartbeat_tick,
            }),
            dispatcher: spec.dispatcher.map(|d| Dispatcher {
                heartbeat_period_seconds: d.heartbeat_period.map(|ns| ns as f64 / 1e9),
            }),
            task_history_retention_limit: spec.orchestration.and_then(|o| o.task_history_retention_limit),
            node: ThisNode {
                id: s.node_id.filter(|i| !i.is_empty()),
                addr: s.node_addr.filter(|a| !a.is_empty()),
                state: s.local_node_state.map(|st| st.to_string()).unwrap_or_default(),
                manager: s.control_available.unwrap_or(false),
                error: s.error.filter(|e| !e.is_empty()),
            },
        }
    }
}

async fn info(State(state): State<ApiState>) -> ApiResult<InfoView> {
    let d = connect(&state).await?;
    ok(InfoView::of(swarm_info(&d).await?))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct InitBody {
    advertise_addr: Option<String>,
    listen_addr: Option<String>,
    #[serde(default)]
    force_new_cluster: bool,
}

/// An address Docker takes for `--advertise-addr`/`--listen-addr`: an IP
/// (v4, or v6 in brackets) or an interface name, with an optional port.
fn check_addr(field: &str, a: &str) -> Result<(), ApiError> {
    let first_ok = a.chars().next().is_some_and(|c| c.is_ascii_alphanumeric() || c == '[');
    let rest_ok = a
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '%' | '[' | ']' | '-'));
    if first_ok && rest_ok && a.len() <= 255 {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "{field} {a:?} is not an address (an IP or interface name, with an optional :port)"
        )))
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Initialised {
    node_id: String,
}

/// Docker's refusals of an init are about the addresses it was given (it
/// answers HTTP 500 for an address it cannot bind), so they are 400s.
async fn init(State(state): State<ApiState>, Json(body): Json<InitBody>) -> ApiResult<Initialised> {
    for (field, a) in [
        ("advertiseAddr", &body.advertise_addr),
        ("listenAddr", &body.listen_addr),
    ] {
        if let Some(a) = a {
            check_addr(field, a)?;
        }
    }
    let d = connect(&state).await?;
    let current = swarm_info(&d).await?;
    if in_a_swarm(&current) && !body.force_new_cluster {
        return Err(ApiError::Conflict(
            "this node is already part of a swarm: leave it first (or use forceNewCluster to recover a broken one)"
                .to_owned(),
        ));
    }
    let request = SwarmInitRequest {
        listen_addr: Some(body.listen_addr.unwrap_or_else(|| DEFAULT_LISTEN_ADDR.to_owned())),
        advertise_addr: body.advertise_addr,
        force_new_cluster: Some(body.force_new_cluster),
        ..Default::default()
    };
    let node_id = d
        .call_or(
            "initialising the swarm",
            d.api.init_swarm(request),
            ApiError::BadRequest,
        )
        .await?;
    created(Initialised { node_id })
}

async fn leave(State(state): State<ApiState>, Query(q): Query<ForceQuery>) -> ApiResult<Value> {
    let d = connect(&state).await?;
    let current = swarm_info(&d).await?;
    if !in_a_swarm(&current) {
        return Err(ApiError::Conflict("this node is not part of a swarm".to_owned()));
    }
    // NB: Docker itself refuses this, unless it cannot count the managers;
    // the last manager's state is not risked on that.
    if !q.force && current.control_available == Some(true) && current.managers.unwrap_or(0) <= 1 {
        return Err(ApiError::Conflict(
            "you are attempting to leave the swarm on a node that is participating as a manager. \
             removing the last manager erases all current state of the swarm. use force=true to ignore this message"
                .to_owned(),
        ));
    }
    let options = LeaveSwarmOptions { force: q.force };
    d.call("leaving the swarm", d.api.leave_swarm(Some(options))).await?;
    ok(json!({"left": true}))
}

#[derive(Debug, Serialize)]
struct JoinToken {
    role: String,
    token: String,
    addr: Option<String>,
    command: String,
}

async fn join_token_of(State(state): State<ApiState>, Path(role): Path<String>) -> ApiResult<JoinToken> {
    if role != "worker" && role != "manager" {
        return Err(ApiError::bad_request(format!(
            "role {role:?} is neither worker nor manager"
        )));
    }
    let d = connect(&state).await?;
    let swarm = d.call("inspecting the swarm", d.api.inspect_swarm()).await?;
    let addr = join_addr(&swarm_info(&d).await?);
    let tokens = swarm.join_tokens.unwrap_or_default();
    let token = if role == "worker" {
        tokens.worker
    } else {
        tokens.manager
    }
    .filter(|t| !t.is_empty())
    .ok_or_else(|| ApiError::Unavailable(format!("docker gave no {role} join token")))?;
    let command = format!(
        "docker swarm join --token {token} {}",
        addr.as_deref().unwrap_or("MANAGER-ADDR:2377")
    );
    ok(JoinToken {
        role,
        token,
        addr,
        command,
    })
}

#[cfg(test)]
mod tests {
    use bollard::models::PeerNode;

    use super::*;

    #[test]
    fn addresses_are_checked() {
        for good in [
            "127.0.0.1",
            "10.0.0.1:2377",
            "eth0",
            "eth0:2377",
            "[::1]:2377",
            "fe80::1%eth0",
        ] {
            assert!(check_addr("listenAddr", good).is_ok(), "{good:?}");
        }
        for bad in ["", ":2377", "a b", "a/b", "http://x", &"1".repeat(256)] {
            assert!(check_addr("listenAddr", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_join_address_is_this_managers_own() {
        let s = SwarmInfo {
            node_id: Some("b".into()),
            node_addr: Some("10.0.0.2".into()),
            control_available: Some(true),
            remote_managers: Some(vec![
                PeerNode {
                    node_id: Some("a".into()),
                    addr: Some("10.0.0.1:2377".into()),
                },
                PeerNode {
                    node_id: Some("b".into()),
                    addr: Some("10.0.0.2:2377".into()),
                },
            ]),
            ..Default::default()
        };
        assert_eq!(join_addr(&s).as_deref(), Some("10.0.0.2:2377"));
        let worker = SwarmInfo {
            node_id: Some("c".into()),
            ..s.clone()
        };
        assert_eq!(join_addr(&worker).as_deref(), Some("10.0.0.1:2377"));
        let alone = SwarmInfo {
            remote_managers: None,
            ..s
        };
        assert_eq!(join_addr(&alone).as_deref(), Some("10.0.0.2:2377"));
    }
}
