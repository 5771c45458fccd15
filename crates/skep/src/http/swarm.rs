//! `/api/swarm`: swarm management over the Docker Engine API (bollard):
//! the swarm itself (info, init, leave, join tokens), its nodes, its
//! services, their health and statistics, and stacks (in [`super::stack`]).
//!
//! Every Docker call gives up after [`CALL_TIMEOUT`](super::CALL_TIMEOUT);
//! Docker's failures map to the API's statuses in [`docker_error`]: 404
//! stays 404, a conflict or a stale `version` is 409, Docker's own 400 is
//! 400 with its message, and a daemon that cannot be reached or is not a
//! swarm manager is 503. Input is checked before Docker is called.

mod cluster;
mod health;
mod nodes;
pub(super) mod services;
mod views;

pub(super) use services::{check_image, image_schema};
pub(super) use views::version_of;

use std::collections::HashMap;
use std::time::Duration;

use bollard::errors::Error as BollardError;
use bollard::models::{Node, Service, Task};
use bollard::query_parameters::{ListServicesOptions, ListTasksOptions};
use serde_json::{Map, Value, json};
use tokio::sync::OnceCell;

use super::error::ApiError;
use super::openapi::Api;
use super::{ApiState, CALL_TIMEOUT};
use crate::runtime::swarm::docker_endpoint;

/// Each Docker call gives up after this.
pub const DOCKER_TIMEOUT: Duration = Duration::from_secs(15);

/// The label `docker stack deploy` puts on a stack's services.
pub(super) const STACK_LABEL: &str = "com.docker.stack.namespace";

/// A Docker client, connected on first use (and again after a failed
/// connect), so that the API starts and answers 503 while Docker is down.
pub struct Docker {
    endpoint: String,
    client: OnceCell<bollard::Docker>,
}

impl std::fmt::Debug for Docker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Docker").field("endpoint", &self.endpoint).finish()
    }
}

impl Default for Docker {
    fn default() -> Self {
        Self::from_env()
    }
}

impl Docker {
    /// The daemon `DOCKER_HOST` names (the local socket when unset).
    pub fn from_env() -> Self {
        Self::at(docker_endpoint())
    }

    pub fn at(endpoint: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            client: OnceCell::new(),
        }
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The client, negotiated to the daemon's API version.
    pub async fn client(&self) -> Result<&bollard::Docker, ApiError> {
        self.client
            .get_or_try_init(|| async {
                let unavailable = |e: bollard::errors::Error| {
                    ApiError::from(crate::runtime::swarm::classify_error(&self.endpoint, e))
                };
                let docker = bollard::Docker::connect_with_host(&self.endpoint)
                    .map_err(unavailable)?
                    .with_timeout(DOCKER_TIMEOUT);
                tokio::time::timeout(DOCKER_TIMEOUT, docker.negotiate_version())
                    .await
                    .map_err(|_| {
                        ApiError::Unavailable(format!("the docker daemon at {} did not answer in time", self.endpoint))
                    })?
                    .map_err(unavailable)
            })
            .await
    }
}

/// A connected client and where it points, for [`Conn::call`].
pub(super) struct Conn<'a> {
    pub api: &'a bollard::Docker,
    endpoint: &'a str,
}

/// Connects (or reuses the connection) to the daemon behind `state`.
pub(super) async fn connect(state: &ApiState) -> Result<Conn<'_>, ApiError> {
    let docker = state.docker();
    Ok(Conn {
        api: docker.client().await?,
        endpoint: docker.endpoint(),
    })
}

impl Conn<'_> {
    /// Runs one Docker call, bounded by [`CALL_TIMEOUT`], its failure
    /// mapped by [`docker_error`]; `what` names it in a timeout message.
    pub async fn call<T>(&self, what: &str, fut: impl Future<Output = Result<T, BollardError>>) -> Result<T, ApiError> {
        self.call_or(what, fut, ApiError::Unavailable).await
    }

    /// [`Conn::call`], with Docker's answers that no rule of
    /// [`docker_error`] places (its HTTP 500s) made by `refused`.
    pub async fn call_or<T>(
        &self,
        what: &str,
        fut: impl Future<Output = Result<T, BollardError>>,
        refused: fn(String) -> ApiError,
    ) -> Result<T, ApiError> {
        match tokio::time::timeout(CALL_TIMEOUT, fut).await {
            Ok(r) => r.map_err(|e| docker_error(self.endpoint, e, refused)),
            Err(_) => Err(ApiError::Unavailable(format!(
                "the docker daemon at {} did not answer ({what}) within {CALL_TIMEOUT:?}",
                self.endpoint
            ))),
        }
    }

    /// Every service, with its running and desired task counts.
    pub async fn services(&self, filters: HashMap<String, Vec<String>>) -> Result<Vec<Service>, ApiError> {
        let options = ListServicesOptions {
            filters: Some(filters),
            status: Some(true),
        };
        self.call("listing services", self.api.list_services(Some(options)))
            .await
    }

    pub async fn nodes(&self) -> Result<Vec<Node>, ApiError> {
        self.call("listing nodes", self.api.list_nodes(None)).await
    }

    pub async fn tasks(&self, filters: HashMap<String, Vec<String>>) -> Result<Vec<Task>, ApiError> {
        let options = ListTasksOptions { filters: Some(filters) };
        self.call("listing tasks", self.api.list_tasks(Some(options))).await
    }

    /// The service named `name` or with exactly this id, or 404. (Docker
    /// would also take a unique id prefix: not here, so that a short name
    /// cannot reach a service it does not name.)
    pub async fn service(&self, name: &str) -> Result<Service, ApiError> {
        let s = self
            .call("inspecting the service", self.api.inspect_service(name, None))
            .await?;
        let named = s.id.as_deref() == Some(name) || s.spec.as_ref().and_then(|x| x.name.as_deref()) == Some(name);
        if named {
            Ok(s)
        } else {
            Err(ApiError::NotFound(format!("service {name} not found")))
        }
    }

    /// The node with exactly this id or hostname, or 404 (no id prefix, as
    /// for [`Conn::service`]).
    pub async fn node(&self, id: &str) -> Result<Node, ApiError> {
        let n = self.call("inspecting the node", self.api.inspect_node(id)).await?;
        let named = n.id.as_deref() == Some(id)
            || n.description.as_ref().and_then(|d| d.hostname.as_deref()) == Some(id)
            || n.spec.as_ref().and_then(|s| s.name.as_deref()) == Some(id);
        if named {
            Ok(n)
        } else {
            Err(ApiError::NotFound(format!("node {id} not found")))
        }
    }
}

/// Docker filters from `(key, value)` pairs.
pub(super) fn filters(pairs: &[(&str, &str)]) -> HashMap<String, Vec<String>> {
    let mut m: HashMap<String, Vec<String>> = HashMap::new();
    for (k, v) in pairs {
        m.entry((*k).to_owned()).or_default().push((*v).to_owned());
    }
    m
}

/// Docker's message without the gRPC wrapping, starting lowercase.
fn tidy(message: &str) -> String {
    let m = message.rsplit_once("desc = ").map_or(message, |(_, rest)| rest).trim();
    let mut chars = m.chars();
    match (chars.next(), chars.next()) {
        (Some(first), Some(second)) if first.is_uppercase() && !second.is_uppercase() => {
            first.to_lowercase().chain(m.chars().skip(1)).collect()
        }
        _ => m.to_owned(),
    }
}

/// Maps a Docker failure to the API's status. Docker's answers that no rule
/// places (its HTTP 500s) are made by `refused`.
pub(super) fn docker_error(endpoint: &str, e: BollardError, refused: fn(String) -> ApiError) -> ApiError {
    let BollardError::DockerResponseServerError { status_code, message } = e else {
        return ApiError::from(crate::runtime::swarm::classify_error(endpoint, e));
    };
    let lower = message.to_ascii_lowercase();
    let text = tidy(&message);
    if lower.contains("update out of sequence") {
        ApiError::Conflict(format!("{text}: the object changed since it was read; read it again"))
    } else if lower.contains("mode change is not allowed") {
        // NB: Docker answers 501 (gRPC Unimplemented) for this one.
        ApiError::Conflict(format!("{text}: remove the service and create it again"))
    } else if lower.contains("already part of a swarm")
        || lower.contains("not part of a swarm")
        || lower.contains("attempting to leave the swarm")
    {
        ApiError::Conflict(text)
    } else if lower.contains("not a swarm manager") {
        ApiError::from(crate::runtime::swarm::not_a_manager(endpoint))
    } else if status_code == 404 || lower.contains("code = notfound") {
        ApiError::NotFound(text)
    } else if status_code == 409
        || lower.contains("code = failedprecondition")
        || lower.contains("code = alreadyexists")
    {
        ApiError::Conflict(text)
    } else if status_code == 400 || lower.contains("code = invalidargument") {
        ApiError::BadRequest(text)
    } else if status_code == 503 {
        ApiError::Unavailable(format!("the docker daemon at {endpoint} is unavailable: {text}"))
    } else {
        refused(format!(
            "the docker daemon at {endpoint} refused the call (http {status_code}): {text}"
        ))
    }
}

/// Whether `s` can name a Docker object: a letter or digit, then letters,
/// digits, `_`, `.` or `-`, `max` characters at most.
fn is_docker_name(s: &str, max: usize) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.len() <= max
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Service names: `^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$`.
pub(super) const SERVICE_NAME_MAX: usize = 63;
/// Node ids and hostnames: `^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,252}$`.
const NODE_REF_MAX: usize = 253;

pub(super) fn service_name_schema() -> Value {
    json!({"type": "string", "pattern": "^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$", "minLength": 1, "maxLength": SERVICE_NAME_MAX})
}

fn node_ref_schema() -> Value {
    json!({"type": "string", "pattern": "^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,252}$", "minLength": 1, "maxLength": NODE_REF_MAX})
}

/// A schema for `version`: the object's version as read, to refuse a
/// change made on a stale read.
fn version_schema() -> Value {
    json!({"type": "integer", "minimum": 0, "maximum": i32::MAX})
}

pub(super) fn check_service_name(name: &str) -> Result<(), ApiError> {
    if is_docker_name(name, SERVICE_NAME_MAX) {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "{name:?} is not a service name (a letter or digit, then letters, digits, '_', '.' or '-'; \
             at most {SERVICE_NAME_MAX} characters)"
        )))
    }
}

fn check_node_ref(id: &str) -> Result<(), ApiError> {
    if is_docker_name(id, NODE_REF_MAX) {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "{id:?} is not a node id or hostname (a letter or digit, then letters, digits, '_', '.' or '-'; \
             at most {NODE_REF_MAX} characters)"
        )))
    }
}

/// A JSON integer as JSON Schema counts it (`3` or `3.0`), or a 400
/// naming `field`.
fn whole(field: &str, n: &serde_json::Number) -> Result<i64, ApiError> {
    n.as_i64()
        .or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| f as i64)
        })
        .ok_or_else(|| ApiError::bad_request(format!("{field} must be a whole number, got {n}")))
}

/// A body's `version`: a whole number from 0, or a 400.
fn version_in(n: Option<&serde_json::Number>) -> Result<Option<u64>, ApiError> {
    n.map(|n| {
        u64::try_from(whole("version", n)?)
            .map_err(|_| ApiError::bad_request(format!("version must be 0 or more, got {n}")))
    })
    .transpose()
}

/// 409 unless `expected` (when given) is the object's `current` version.
fn check_version(what: &str, current: u64, expected: Option<u64>) -> Result<(), ApiError> {
    match expected {
        Some(v) if v != current => Err(ApiError::Conflict(format!(
            "{what} is at version {current}, not {v}: read it again and retry"
        ))),
        _ => Ok(()),
    }
}

pub(super) fn routes(api: Api) -> Api {
    let api = cluster::routes(api);
    let api = nodes::routes(api);
    let api = services::routes(api);
    let api = health::routes(api);
    super::stack::routes(api)
}

pub(super) fn components() -> Map<String, Value> {
    let mut m = views::components();
    m.extend(cluster::components());
    m.extend(health::components());
    m.extend(super::stack::components());
    m
}

/// What the overview, the health and the statistics are computed from:
/// three Docker calls.
struct Snapshot {
    services: Vec<Service>,
    nodes: Vec<Node>,
    tasks: Vec<Task>,
}

impl Snapshot {
    async fn read(d: &Conn<'_>) -> Result<Self, ApiError> {
        let (services, nodes, tasks) =
            tokio::try_join!(d.services(HashMap::new()), d.nodes(), d.tasks(HashMap::new()))?;
        Ok(Self { services, nodes, tasks })
    }

    fn service_views(&self) -> Vec<views::ServiceView> {
        let mut v: Vec<_> = self.services.iter().map(views::ServiceView::of).collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    fn node_views(&self) -> Vec<views::NodeView> {
        let running = views::running_per_node(&self.tasks);
        let mut v: Vec<_> = self.nodes.iter().map(|n| views::NodeView::of(n, &running)).collect();
        v.sort_by(|a, b| a.hostname.cmp(&b.hostname).then_with(|| a.id.cmp(&b.id)));
        v
    }
}

/// Services, nodes and health in one object, for the dashboard's `swarm`
/// event: the same shapes as `GET /api/swarm/services`, `/nodes` and
/// `/health`, from three Docker calls.
pub(super) async fn overview(state: &ApiState) -> Result<Value, ApiError> {
    let d = connect(state).await?;
    let snap = Snapshot::read(&d).await?;
    let services = snap.service_views();
    let nodes = snap.node_views();
    let health = health::HealthView::of(&nodes, &services, &snap.tasks);
    Ok(json!({"services": services, "nodes": nodes, "health": health}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(status_code: u16, message: &str) -> ApiError {
        let e = BollardError::DockerResponseServerError {
            status_code,
            message: message.to_owned(),
        };
        docker_error("unix:///x.sock", e, ApiError::Unavailable)
    }

    #[test]
    fn docker_failures_map_to_api_statuses() {
        let cases = [
            (404, "service nope not found", 404),
            (500, "rpc error: code = Unknown desc = update out of sequence", 409),
            (
                503,
                "This node is already part of a swarm. Use \"docker swarm leave\" to leave this swarm and join another one.",
                409,
            ),
            (
                503,
                "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again.",
                503,
            ),
            (
                400,
                "rpc error: code = FailedPrecondition desc = node n0 is a cluster manager and is a member of the raft cluster. It must be demoted to worker before removal",
                409,
            ),
            (400, "invalid reference format", 400),
            (500, "rpc error: code = InvalidArgument desc = ContainerSpec: bad", 400),
            (
                501,
                "rpc error: code = Unimplemented desc = service mode change is not allowed",
                409,
            ),
            (500, "something odd", 503),
        ];
        for (status, message, want) in cases {
            assert_eq!(refused(status, message).status().as_u16(), want, "{status} {message}");
        }
    }

    #[test]
    fn docker_messages_lose_the_grpc_wrapping_and_start_lowercase() {
        assert_eq!(tidy("rpc error: code = Unknown desc = Foo bar"), "foo bar");
        assert_eq!(tidy("ID is ambiguous"), "ID is ambiguous");
        assert_eq!(tidy("service x not found"), "service x not found");
    }

    #[test]
    fn names_are_checked_before_docker() {
        for good in ["a", "skep_web", "A-1.b", &"x".repeat(63)] {
            assert!(check_service_name(good).is_ok(), "{good:?}");
        }
        for bad in ["", "-a", "_a", "a/b", "a b", "ä", &"x".repeat(64)] {
            assert!(
                matches!(check_service_name(bad), Err(ApiError::BadRequest(_))),
                "{bad:?}"
            );
        }
        assert!(check_node_ref("n0jiyy0ytg1qstf0c7mjkt5av").is_ok());
        assert!(check_node_ref("host.example.org").is_ok());
        assert!(check_node_ref(".").is_err());
    }

    #[test]
    fn whole_numbers_may_be_written_as_floats() {
        let n = |v: serde_json::Value| v.as_number().cloned().expect("a number");
        assert_eq!(whole("x", &n(json!(3))).ok(), Some(3));
        assert_eq!(whole("x", &n(json!(3.0))).ok(), Some(3));
        assert_eq!(whole("x", &n(json!(-2))).ok(), Some(-2));
        assert!(whole("x", &n(json!(3.5))).is_err());
        assert!(whole("x", &n(json!(1e300))).is_err());
        assert_eq!(version_in(Some(&n(json!(7.0)))).ok(), Some(Some(7)));
        assert!(version_in(Some(&n(json!(-1)))).is_err());
        assert_eq!(version_in(None).ok(), Some(None));
    }

    #[test]
    fn a_stale_version_is_a_conflict() {
        assert!(check_version("service a", 7, None).is_ok());
        assert!(check_version("service a", 7, Some(7)).is_ok());
        assert!(matches!(
            check_version("service a", 7, Some(6)),
            Err(ApiError::Conflict(_))
        ));
    }
}
