//! The Docker Engine calls the swarm runtime makes, behind a trait so that
//! the read-modify-write, observe and event logic run against a fake in
//! unit tests. [`DockerApi`] is the real one (bollard); it maps every
//! failure to a [`RuntimeError`] naming the endpoint.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use bollard::Docker;
use bollard::errors::Error as BollardError;
use bollard::models::{EventMessage, Node, Service, ServiceSpec, Task};
use bollard::query_parameters::{EventsOptions, ListSecretsOptions, ListTasksOptions, UpdateServiceOptions};
use futures::StreamExt;
use futures::stream::BoxStream;
use tracing::debug;

use crate::runtime::{Result, RuntimeError};

/// Docker's answer to an update made with a stale `version` (HTTP 500).
const OUT_OF_SEQUENCE: &str = "update out of sequence";

#[async_trait]
pub(crate) trait SwarmApi: Send + Sync + 'static {
    /// `None` when no service has this name.
    async fn inspect_service(&self, name: &str) -> Result<Option<Service>>;
    /// A name already taken is a [`RuntimeError::Conflict`].
    async fn create_service(&self, spec: ServiceSpec) -> Result<()>;
    /// Replaces the whole spec. `version` is the index the spec was read
    /// at; a stale one (or a service gone since) is a
    /// [`RuntimeError::Conflict`].
    async fn update_service(&self, name: &str, spec: ServiceSpec, version: u64) -> Result<()>;
    async fn list_nodes(&self) -> Result<Vec<Node>>;
    /// Tasks of the service whose desired state is `running` (none when
    /// the service does not exist).
    async fn list_tasks(&self, service: &str) -> Result<Vec<Task>>;
    async fn ping(&self) -> Result<()>;
    /// The id of the secret `name`, created with `data` when missing
    /// (secrets are immutable: a name is made from what it holds).
    async fn ensure_secret(&self, name: &str, data: &[u8]) -> Result<String>;
    /// Service, node and container events, replayed from `since` (unix
    /// seconds) when given. Ends or fails when the connection does.
    fn events(&self, since: Option<i64>) -> BoxStream<'static, Result<EventMessage>>;
}

/// The Docker Engine API over bollard.
pub(crate) struct DockerApi {
    docker: Docker,
    endpoint: String,
}

/// Where the Docker daemon listens when `DOCKER_HOST` is unset.
pub const DEFAULT_DOCKER_HOST: &str = "unix:///var/run/docker.sock";

/// `DOCKER_HOST`, or the default local socket.
pub fn docker_endpoint() -> String {
    std::env::var("DOCKER_HOST")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| DEFAULT_DOCKER_HOST.to_owned())
}

impl DockerApi {
    /// Connects to `DOCKER_HOST` (unix://, tcp:// or http://; the local
    /// socket when unset), settles on the API version the daemon speaks
    /// (so an older daemon, e.g. 20.10 with API 1.41, does not refuse the
    /// calls) and checks that it is a swarm manager. Every later call gives
    /// up after `timeout` without an answer.
    pub async fn connect(timeout: Duration) -> Result<Self> {
        let endpoint = docker_endpoint();
        let docker = Docker::connect_with_host(&endpoint)
            .map_err(|e| classify(&endpoint, e))?
            .with_timeout(timeout);
        let docker = docker.negotiate_version().await.map_err(|e| classify(&endpoint, e))?;
        let info = docker.info().await.map_err(|e| classify(&endpoint, e))?;
        if !info.swarm.and_then(|s| s.control_available).unwrap_or(false) {
            return Err(not_a_manager(&endpoint));
        }
        let v = docker.client_version();
        debug!(%endpoint, api = %format!("{}.{}", v.major_version, v.minor_version), "connected to docker");
        Ok(Self { docker, endpoint })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn err(&self, e: BollardError) -> RuntimeError {
        classify(&self.endpoint, e)
    }
}

/// The daemon at `endpoint` cannot manage the swarm; what to do about it.
pub fn not_a_manager(endpoint: &str) -> RuntimeError {
    RuntimeError::Unavailable(format!(
        "the Docker daemon at {endpoint} is not a swarm manager: run `docker swarm init` there, \
         or point DOCKER_HOST at a manager"
    ))
}

/// The error and its causes, `: `-joined (bollard's own message alone
/// often says only "client error (Connect)").
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

/// Maps a bollard failure to what the controller acts on.
pub fn classify(endpoint: &str, e: BollardError) -> RuntimeError {
    match e {
        BollardError::DockerResponseServerError { status_code, message } => {
            if status_code == 409 || message.contains(OUT_OF_SEQUENCE) {
                RuntimeError::Conflict(message)
            } else if message.to_ascii_lowercase().contains("not a swarm manager") {
                not_a_manager(endpoint)
            } else {
                RuntimeError::Unavailable(format!(
                    "the Docker daemon at {endpoint} refused the call (HTTP {status_code}): {message}"
                ))
            }
        }
        BollardError::SocketNotFoundError(path) => RuntimeError::Unavailable(format!(
            "no Docker socket at {path}: is the daemon running (or DOCKER_HOST wrong)?"
        )),
        BollardError::RequestTimeoutError => {
            RuntimeError::Unavailable(format!("the Docker daemon at {endpoint} did not answer in time"))
        }
        other => RuntimeError::Unavailable(format!(
            "cannot reach the Docker daemon at {endpoint}: {}",
            chain(&other)
        )),
    }
}

fn is_not_found(e: &BollardError) -> bool {
    matches!(e, BollardError::DockerResponseServerError { status_code: 404, .. })
}

fn filters(pairs: &[(&str, &[&str])]) -> HashMap<String, Vec<String>> {
    pairs
        .iter()
        .map(|(k, vs)| ((*k).to_owned(), vs.iter().map(|v| (*v).to_owned()).collect()))
        .collect()
}

fn log_warnings(name: &str, warnings: Option<Vec<String>>) {
    for w in warnings.unwrap_or_default() {
        // NB: e.g. "image … could not be accessed on a registry": expected
        // for images built on the node, and harmless there.
        debug!(service = name, warning = %w, "docker warned");
    }
}

#[async_trait]
impl SwarmApi for DockerApi {
    async fn inspect_service(&self, name: &str) -> Result<Option<Service>> {
        match self.docker.inspect_service(name, None).await {
            Ok(s) => Ok(Some(s)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(self.err(e)),
        }
    }

    async fn create_service(&self, spec: ServiceSpec) -> Result<()> {
        let name = spec.name.clone().unwrap_or_default();
        let res = self.docker.create_service(spec, None).await.map_err(|e| self.err(e))?;
        log_warnings(&name, res.warnings);
        Ok(())
    }

    async fn ensure_secret(&self, name: &str, data: &[u8]) -> Result<String> {
        use base64::Engine;
        for attempt in 0..2 {
            let options = ListSecretsOptions {
                filters: Some(filters(&[("name", &[name])])),
            };
            let found = self.docker.list_secrets(Some(options)).await.map_err(|e| self.err(e))?;
            // NB: the name filter matches prefixes too.
            if let Some(id) = found
                .into_iter()
                .find(|s| s.spec.as_ref().and_then(|s| s.name.as_deref()) == Some(name))
                .and_then(|s| s.id)
            {
                return Ok(id);
            }
            if attempt > 0 {
                break;
            }
            let spec = bollard::models::SecretSpec {
                name: Some(name.to_owned()),
                labels: Some(HashMap::from([(
                    super::template::OWNED_LABEL.to_owned(),
                    "true".to_owned(),
                )])),
                data: Some(base64::engine::general_purpose::STANDARD.encode(data)),
                ..Default::default()
            };
            match self.docker.create_secret(spec).await {
                Ok(r) => return Ok(r.id),
                // NB: made by another controller since we looked.
                Err(BollardError::DockerResponseServerError { status_code: 409, .. }) => continue,
                Err(e) => return Err(self.err(e)),
            }
        }
        Err(RuntimeError::Unavailable(format!(
            "secret {name} is neither listed nor creatable"
        )))
    }

    async fn update_service(&self, name: &str, spec: ServiceSpec, version: u64) -> Result<()> {
        let version = i32::try_from(version)
            .map_err(|_| RuntimeError::Unavailable(format!("service {name} has version {version}, past i32")))?;
        let options = UpdateServiceOptions {
            version,
            ..Default::default()
        };
        match self.docker.update_service(name, spec, options, None).await {
            Ok(res) => {
                log_warnings(name, res.warnings);
                Ok(())
            }
            Err(e) if is_not_found(&e) => Err(RuntimeError::Conflict(format!("service {name} is gone"))),
            Err(e) => Err(self.err(e)),
        }
    }

    async fn list_nodes(&self) -> Result<Vec<Node>> {
        self.docker.list_nodes(None).await.map_err(|e| self.err(e))
    }

    async fn list_tasks(&self, service: &str) -> Result<Vec<Task>> {
        let options = ListTasksOptions {
            filters: Some(filters(&[("service", &[service]), ("desired-state", &["running"])])),
        };
        match self.docker.list_tasks(Some(options)).await {
            Ok(tasks) => Ok(tasks),
            // NB: the daemon resolves the `service` filter first and
            // answers 404 when no such service exists.
            Err(e) if is_not_found(&e) => Ok(Vec::new()),
            Err(e) => Err(self.err(e)),
        }
    }

    async fn ping(&self) -> Result<()> {
        self.docker.ping().await.map(|_| ()).map_err(|e| self.err(e))
    }

    fn events(&self, since: Option<i64>) -> BoxStream<'static, Result<EventMessage>> {
        let options = EventsOptions {
            since: since.map(|s| s.to_string()),
            until: None,
            filters: Some(filters(&[
                ("type", &["service", "node", "container"]),
                // NB: the Engine API has no task events; a replica starting
                // or dying shows as its container's start/die, on the node
                // it runs on only.
                ("event", &["create", "update", "remove", "start", "die"]),
            ])),
        };
        let endpoint = self.endpoint.clone();
        self.docker
            .events(Some(options))
            .map(move |r| r.map_err(|e| classify(&endpoint, e)))
            .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(status_code: u16, message: &str) -> BollardError {
        BollardError::DockerResponseServerError {
            status_code,
            message: message.to_owned(),
        }
    }

    fn unavailable(e: RuntimeError) -> String {
        match e {
            RuntimeError::Unavailable(m) => m,
            other => panic!("expected unavailable, got {other:?}"),
        }
    }

    #[test]
    fn out_of_sequence_and_409_are_conflicts() {
        let e = classify(
            "unix:///x.sock",
            server(500, "rpc error: code = Unknown desc = update out of sequence"),
        );
        assert!(matches!(e, RuntimeError::Conflict(_)), "{e:?}");
        let e = classify("unix:///x.sock", server(409, "name conflicts with an existing object"));
        assert!(matches!(e, RuntimeError::Conflict(_)), "{e:?}");
    }

    #[test]
    fn not_a_manager_says_what_to_do() {
        let m = unavailable(classify(
            "unix:///var/run/docker.sock",
            server(
                503,
                "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" \
                 to connect this node to swarm and try again.",
            ),
        ));
        assert!(m.contains("run `docker swarm init`"), "{m}");
        assert!(m.contains("DOCKER_HOST"), "{m}");
        assert!(m.contains("unix:///var/run/docker.sock"), "{m}");
    }

    #[test]
    fn a_missing_socket_is_named() {
        let m = unavailable(classify(
            "unix:///nope.sock",
            BollardError::SocketNotFoundError("/nope.sock".into()),
        ));
        assert!(m.contains("/nope.sock"), "{m}");
    }

    #[test]
    fn other_refusals_keep_status_and_message() {
        let m = unavailable(classify("tcp://h:2375", server(400, "invalid mount config")));
        assert!(
            m.contains("400") && m.contains("invalid mount config") && m.contains("tcp://h:2375"),
            "{m}"
        );
    }
}
