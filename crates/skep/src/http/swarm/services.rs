//! The swarm's services: list, inspect, scale, change image, remove, and
//! their tasks and logs.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::State;
use axum::http::Method;
use axum::routing::{delete, get, post, put};
use bollard::container::LogOutput;
use bollard::models::{Service, ServiceSpecMode, ServiceSpecModeReplicated};
use bollard::query_parameters::{LogsOptions, UpdateServiceOptions};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::views::{ServiceView, TaskView, is_global, service_ref, task_ref, version_of};
use super::{
    Conn, STACK_LABEL, check_service_name, check_version, connect, filters, service_name_schema, version_in,
    version_schema, whole,
};
use crate::http::auth::Scope;
use crate::http::error::{ApiError, ApiResult, ok};
use crate::http::extract::{Json, Path, Query};
use crate::http::openapi::{Api, RouteDoc, path, query};
use crate::http::{ApiState, Caller};
use crate::runtime::swarm::template::OWNED_LABEL;
use axum::Extension;

/// Replicas a scale may ask for at most.
pub const MAX_REPLICAS: i64 = 10_000;
/// Log lines per request at most, and by default.
pub const MAX_LOG_LINES: u32 = 10_000;
const DEFAULT_LOG_LINES: u32 = 100;
/// Reading a service's logs stops after this, with what has come so far.
const LOG_WAIT: Duration = Duration::from_secs(10);
/// The label `docker stack deploy` puts the image it was given under.
const STACK_IMAGE_LABEL: &str = "com.docker.stack.image";

/// Whether skep owns `s` (label `dev.skep.owned=true`: the worker
/// services the controller makes, and the services of skep's stack deploy).
fn owned(s: &Service) -> bool {
    s.spec
        .as_ref()
        .and_then(|s| s.labels.as_ref())
        .and_then(|l| l.get(OWNED_LABEL))
        .is_some_and(|v| v == "true")
}

/// Whether `s` bind-mounts a Docker socket (its tasks can drive the
/// daemon: root on that node).
fn mounts_docker_socket(s: &Service) -> bool {
    s.spec
        .as_ref()
        .and_then(|s| s.task_template.as_ref())
        .and_then(|t| t.container_spec.as_ref())
        .and_then(|c| c.mounts.as_ref())
        .is_some_and(|m| {
            m.iter()
                .any(|m| m.source.as_deref().is_some_and(|src| src.ends_with("docker.sock")))
        })
}

/// Scaling, an image change and removal touch skep's own services only,
/// and never one that holds the Docker socket, unless the controller runs
/// with `--api-manage-any-service`.
pub(in crate::http) fn check_manageable(state: &ApiState, s: &Service, name: &str) -> Result<(), ApiError> {
    if state.swarm_policy().manage_any_service {
        return Ok(());
    }
    if !owned(s) {
        return Err(ApiError::Forbidden(format!(
            "service {name:?} is not skep's (no label {OWNED_LABEL}=true); the controller changes other services \
             only with --api-manage-any-service"
        )));
    }
    if mounts_docker_socket(s) {
        return Err(ApiError::Forbidden(format!(
            "service {name:?} mounts the Docker socket; the controller changes such services only with \
             --api-manage-any-service"
        )));
    }
    Ok(())
}

fn name_param() -> crate::http::openapi::Param {
    path("name", "The service's name (or id)", service_name_schema())
}

/// Images: a reference as Docker parses it (`[domain[:port]/]path[:tag][@digest]`,
/// path components lowercase), at most [`IMAGE_MAX`] characters.
pub(in crate::http) fn image_schema() -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": IMAGE_MAX, "pattern": IMAGE_PATTERN})
}

/// An image reference's length at most (Docker's limit for the name).
const IMAGE_MAX: usize = 255;

/// Docker's reference grammar (distribution/reference), ASCII only; a
/// name of 64 hex digits (taken for an image id) is refused besides.
const IMAGE_PATTERN: &str = concat!(
    "^(?:(?:localhost(?::[0-9]+)?",
    "|(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))+(?::[0-9]+)?",
    "|(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]):[0-9]+)/)?",
    "[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*",
    "(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?",
    "(?:@(?:sha256:[a-f0-9]{64}|sha384:[a-f0-9]{96}|sha512:[a-f0-9]{128}))?$",
);

pub(super) fn routes(api: Api) -> Api {
    let tag = "swarm";
    api.add(
        RouteDoc::new(Method::GET, "/api/swarm/services", "listServices", "The swarm's services, with running and desired tasks")
            .tag(tag)
            .param(query(
                "stack",
                "Only the services of this stack",
                json!({"type": "string", "pattern": "^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$", "maxLength": 63}),
            ))
            .data(json!({"type": "array", "items": service_ref()}))
            .errors(&[503]),
        get(list),
    )
    .add(
        RouteDoc::new(Method::GET, "/api/swarm/services/{name}", "getService", "One service")
            .tag(tag)
            .param(name_param())
            .data(service_ref())
            .errors(&[404, 503]),
        get(get_one),
    )
    .add(
        RouteDoc::new(Method::DELETE, "/api/swarm/services/{name}", "deleteService", "Remove a service and its tasks")
            .tag(tag)
            .param(name_param())
            .data(json!({"type": "object", "required": ["name", "deleted"], "properties": {"name": {"type": "string"}, "deleted": {"type": "boolean"}}}))
            .errors(&[404, 503]),
        delete(remove),
    )
    .add(
        RouteDoc::new(
            Method::POST,
            "/api/swarm/services/{name}/scale",
            "scaleService",
            "Set a replicated service's replicas (a global one runs one task per node: 409)",
        )
        .tag(tag)
        .param(name_param())
        .json_body(json!({
            "type": "object",
            "required": ["replicas"],
            "additionalProperties": false,
            "properties": {
                "replicas": {"type": "integer", "minimum": 0, "maximum": MAX_REPLICAS},
                "version": version_schema(),
            },
        }))
        .data(service_ref())
        .errors(&[404, 409, 503]),
        post(scale),
    )
    .add(
        RouteDoc::new(
            Method::PUT,
            "/api/swarm/services/{name}/image",
            "setServiceImage",
            "Roll the service onto another image (nothing is pulled here: the nodes pull it if they need to)",
        )
        .tag(tag)
        .param(name_param())
        .json_body(json!({
            "type": "object",
            "required": ["image"],
            "additionalProperties": false,
            "properties": {"image": image_schema(), "version": version_schema()},
        }))
        .data(service_ref())
        .errors(&[404, 409, 503]),
        put(set_image),
    )
    .add(
        RouteDoc::new(
            Method::GET,
            "/api/swarm/services/{name}/tasks",
            "serviceTasks",
            "The service's tasks Docker still keeps (running, and a few past ones per slot)",
        )
        .tag(tag)
        .param(name_param())
        .data(json!({"type": "array", "items": task_ref()}))
        .errors(&[404, 503]),
        get(tasks),
    )
    .add(
        RouteDoc::new(
            Method::GET,
            "/api/swarm/services/{name}/logs",
            "serviceLogs",
            "The last lines the service's tasks wrote, stdout and stderr apart (read for 10 s at most)",
        )
        .tag(tag)
        .param(name_param())
        .param(query(
            "tail",
            "Lines at most (default 100)",
            json!({"type": "integer", "minimum": 1, "maximum": MAX_LOG_LINES}),
        ))
        .data(json!({"type": "object", "required": ["lines", "complete"], "properties": {
            "lines": {"type": "array", "items": {"type": "object", "required": ["stream", "text"], "properties": {
                "stream": {"type": "string", "enum": ["stdout", "stderr"]},
                "text": {"type": "string"},
            }}},
            "complete": {"type": "boolean", "description": "False when Docker had not sent everything within 10 s"},
        }}))
        .errors(&[404, 503]),
        get(logs),
    )
}

fn check_stack_name(name: &str) -> Result<(), ApiError> {
    check_service_name(name).map_err(|_| ApiError::bad_request(format!("{name:?} is not a stack name")))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    stack: Option<String>,
}

async fn list(State(state): State<ApiState>, Query(q): Query<ListQuery>) -> ApiResult<Vec<ServiceView>> {
    let f = match &q.stack {
        Some(stack) => {
            check_stack_name(stack)?;
            filters(&[("label", &format!("{STACK_LABEL}={stack}"))])
        }
        None => HashMap::new(),
    };
    let d = connect(&state).await?;
    let mut views: Vec<ServiceView> = d.services(f).await?.iter().map(ServiceView::of).collect();
    views.sort_by(|a, b| a.name.cmp(&b.name));
    ok(views)
}

async fn inspect(d: &Conn<'_>, name: &str) -> Result<Service, ApiError> {
    check_service_name(name)?;
    d.service(name).await
}

/// The view of `s`, with its task counts (which an inspect lacks).
async fn view(d: &Conn<'_>, s: &Service) -> Result<ServiceView, ApiError> {
    let id = s.id.clone().unwrap_or_default();
    let listed = d.services(filters(&[("id", &id)])).await?;
    let with_status = listed
        .iter()
        .find(|l| l.id.as_deref() == Some(id.as_str()))
        .unwrap_or(s);
    Ok(ServiceView::of(with_status))
}

async fn get_one(State(state): State<ApiState>, Path(name): Path<String>) -> ApiResult<ServiceView> {
    check_service_name(&name)?;
    let d = connect(&state).await?;
    let s = inspect(&d, &name).await?;
    ok(view(&d, &s).await?)
}

async fn remove(State(state): State<ApiState>, Path(name): Path<String>) -> ApiResult<Value> {
    check_service_name(&name)?;
    let d = connect(&state).await?;
    let s = inspect(&d, &name).await?;
    check_manageable(&state, &s, &name)?;
    let id = s.id.unwrap_or(name.clone());
    d.call("removing the service", d.api.delete_service(&id)).await?;
    ok(json!({"name": name, "deleted": true}))
}

/// Writes `spec` over the service read as `s`, at the version it was read
/// at (a change in between is Docker's "update out of sequence": 409),
/// and answers the service as it is then.
async fn update(d: &Conn<'_>, s: &Service, spec: bollard::models::ServiceSpec) -> ApiResult<ServiceView> {
    let id = s.id.clone().unwrap_or_default();
    let current = version_of(s.version.as_ref());
    let version = i32::try_from(current).map_err(|_| {
        ApiError::Internal(format!(
            "service {id} has version {current}, past what docker's api takes"
        ))
    })?;
    let options = UpdateServiceOptions {
        version,
        ..Default::default()
    };
    d.call("updating the service", d.api.update_service(&id, spec, options, None))
        .await?;
    let s = d.service(&id).await?;
    ok(view(d, &s).await?)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScaleBody {
    replicas: serde_json::Number,
    version: Option<serde_json::Number>,
}

async fn scale(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    Json(body): Json<ScaleBody>,
) -> ApiResult<ServiceView> {
    check_service_name(&name)?;
    let replicas = whole("replicas", &body.replicas)?;
    if !(0..=MAX_REPLICAS).contains(&replicas) {
        return Err(ApiError::bad_request(format!(
            "replicas must be 0 to {MAX_REPLICAS}, got {replicas}"
        )));
    }
    let expected = version_in(body.version.as_ref())?;
    let d = connect(&state).await?;
    let s = inspect(&d, &name).await?;
    check_manageable(&state, &s, &name)?;
    check_version(&format!("service {name:?}"), version_of(s.version.as_ref()), expected)?;
    let mut spec = s.spec.clone().unwrap_or_default();
    let mode = spec.mode.get_or_insert_with(ServiceSpecMode::default);
    if is_global(&s) {
        return Err(ApiError::Conflict(format!(
            "service {name:?} runs in global mode (one task per eligible node): it has no replicas to scale"
        )));
    }
    if mode.replicated_job.is_some() {
        return Err(ApiError::Conflict(format!(
            "service {name:?} is a replicated job: its completions are fixed when it is created"
        )));
    }
    mode.replicated = Some(ServiceSpecModeReplicated {
        replicas: Some(replicas),
    });
    update(&d, &s, spec).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImageBody {
    image: String,
    version: Option<serde_json::Number>,
}

/// `[a-z0-9]+` joined by `.`, `_`, `__` or runs of `-`.
fn is_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: &u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if !b.first().is_some_and(alnum) || !b.last().is_some_and(alnum) {
        return false;
    }
    let mut sep = String::new();
    for &x in b {
        if alnum(&x) {
            if !(sep.is_empty() || sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|y| y == b'-')) {
                return false;
            }
            sep.clear();
        } else if matches!(x, b'.' | b'_' | b'-') {
            sep.push(x as char);
        } else {
            return false;
        }
    }
    true
}

/// A registry: a host name (letters, digits, inner `-`, dot-separated)
/// with an optional `:port`, which Docker takes for one only with a `.`,
/// a port, or as `localhost`.
fn is_domain(d: &str) -> bool {
    let (host, port) = d.split_once(':').unwrap_or((d, ""));
    let label_ok = |l: &str| {
        l.bytes().all(|x| x.is_ascii_alphanumeric() || x == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
            && !l.is_empty()
    };
    (host.contains('.') || !port.is_empty() || host == "localhost")
        && host.split('.').all(label_ok)
        && (port.is_empty() && !d.ends_with(':') || !port.is_empty() && port.bytes().all(|x| x.is_ascii_digit()))
}

/// A digest Docker verifies: sha256, sha384 or sha512, lowercase hex.
fn is_digest(d: &str) -> bool {
    let Some((algorithm, hex)) = d.split_once(':') else {
        return false;
    };
    let len = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return false,
    };
    hex.len() == len && hex.bytes().all(|x| x.is_ascii_digit() || (b'a'..=b'f').contains(&x))
}

/// Whether `s` is an image reference Docker takes: [`IMAGE_PATTERN`].
fn is_image_ref(s: &str) -> bool {
    if s.is_empty() || s.len() > IMAGE_MAX {
        return false;
    }
    let (rest, digest) = match s.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (s, None),
    };
    if digest.is_some_and(|d| !is_digest(d)) {
        return false;
    }
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    let tag_ok = |t: &str| {
        t.len() <= 128
            && t.bytes().next().is_some_and(|x| x.is_ascii_alphanumeric() || x == b'_')
            && t.bytes()
                .all(|x| x.is_ascii_alphanumeric() || matches!(x, b'_' | b'.' | b'-'))
    };
    if tag.is_some_and(|t| !tag_ok(t)) {
        return false;
    }
    // NB: a bare 64-hex-digit name would be taken for an image id.
    if name.len() == 64 && name.bytes().all(|x| x.is_ascii_digit() || (b'a'..=b'f').contains(&x)) {
        return false;
    }
    let parts: Vec<&str> = name.split('/').collect();
    parts.iter().all(|p| is_path_component(p))
        || (parts.len() > 1 && is_domain(parts[0]) && parts[1..].iter().all(|p| is_path_component(p)))
}

pub(in crate::http) fn check_image(image: &str) -> Result<(), ApiError> {
    if is_image_ref(image) {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "{image:?} is not an image reference (like name:tag or registry/name@sha256:…)"
        )))
    }
}

async fn set_image(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    Json(body): Json<ImageBody>,
) -> ApiResult<ServiceView> {
    check_service_name(&name)?;
    if state.swarm_policy().no_image_change {
        return Err(ApiError::Forbidden(
            "image changes are switched off on this controller (--api-no-image-change)".to_owned(),
        ));
    }
    check_image(&body.image)?;
    let expected = version_in(body.version.as_ref())?;
    let d = connect(&state).await?;
    let s = inspect(&d, &name).await?;
    check_manageable(&state, &s, &name)?;
    check_version(&format!("service {name:?}"), version_of(s.version.as_ref()), expected)?;
    let mut spec = s.spec.clone().unwrap_or_default();
    let container = spec
        .task_template
        .get_or_insert_with(Default::default)
        .container_spec
        .get_or_insert_with(Default::default);
    container.image = Some(body.image.clone());
    if let Some(labels) = spec.labels.as_mut()
        && labels.contains_key(STACK_IMAGE_LABEL)
    {
        labels.insert(STACK_IMAGE_LABEL.to_owned(), body.image);
    }
    update(&d, &s, spec).await
}

async fn tasks(State(state): State<ApiState>, Path(name): Path<String>) -> ApiResult<Vec<TaskView>> {
    check_service_name(&name)?;
    let d = connect(&state).await?;
    let s = inspect(&d, &name).await?;
    let id = s.id.clone().unwrap_or_default();
    let (tasks, nodes) = tokio::try_join!(d.tasks(filters(&[("service", &id)])), d.nodes())?;
    let hostnames: HashMap<String, String> = nodes
        .into_iter()
        .filter_map(|n| Some((n.id?, n.description?.hostname?)))
        .collect();
    let mut views: Vec<TaskView> = tasks
        .iter()
        .filter(|t| t.service_id.as_deref() == Some(id.as_str()))
        .map(|t| TaskView::of(t, &hostnames))
        .collect();
    views.sort_by(|a, b| a.slot.cmp(&b.slot).then_with(|| b.updated_at.cmp(&a.updated_at)));
    ok(views)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogsQuery {
    tail: Option<u32>,
}

#[derive(Debug, Serialize)]
struct LogLine {
    stream: &'static str,
    text: String,
}

#[derive(Debug, Serialize)]
struct Logs {
    lines: Vec<LogLine>,
    complete: bool,
}

/// Splits Docker's log frames into lines, keeping the last `tail`.
fn push_lines(lines: &mut Vec<LogLine>, frame: LogOutput, tail: usize) {
    let (stream, bytes) = match frame {
        LogOutput::StdErr { message } => ("stderr", message),
        LogOutput::StdOut { message } | LogOutput::Console { message } => ("stdout", message),
        LogOutput::StdIn { .. } => return,
    };
    let text = String::from_utf8_lossy(&bytes);
    for line in text.split_terminator('\n') {
        lines.push(LogLine {
            stream,
            text: line.strip_suffix('\r').unwrap_or(line).to_owned(),
        });
    }
    if lines.len() > tail {
        lines.drain(..lines.len() - tail);
    }
}

async fn logs(
    State(state): State<ApiState>,
    caller: Option<Extension<Caller>>,
    Path(name): Path<String>,
    Query(q): Query<LogsQuery>,
) -> ApiResult<Logs> {
    check_service_name(&name)?;
    let tail = q.tail.unwrap_or(DEFAULT_LOG_LINES);
    if !(1..=MAX_LOG_LINES).contains(&tail) {
        return Err(ApiError::bad_request(format!(
            "tail must be 1 to {MAX_LOG_LINES}, got {tail}"
        )));
    }
    let d = connect(&state).await?;
    let s = inspect(&d, &name).await?;
    // NB: other services' logs may hold their secrets; a read token sees
    // skep's own only.
    let admin = caller.is_some_and(|Extension(Caller(scope))| scope == Scope::Admin);
    if !admin && !owned(&s) {
        return Err(ApiError::Forbidden(format!(
            "service {name:?} is not skep's: its logs need an admin token"
        )));
    }
    let id = s.id.clone().unwrap_or_default();
    let options = LogsOptions {
        stdout: true,
        stderr: true,
        tail: tail.to_string(),
        ..Default::default()
    };
    let mut stream = d.api.service_logs(&id, Some(options));
    let mut lines = Vec::new();
    let deadline = tokio::time::Instant::now() + LOG_WAIT;
    let complete = loop {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Err(_) => break false,
            Ok(None) => break true,
            Ok(Some(Ok(frame))) => push_lines(&mut lines, frame, tail as usize),
            Ok(Some(Err(e))) => return Err(super::docker_error(d.endpoint, e, ApiError::Unavailable)),
        }
    };
    ok(Logs { lines, complete })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_references() {
        for good in [
            "skep-base:bookworm",
            "registry.example.org:5000/team/ocr@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "localhost:5000/a__b/c-d--e.f:v1.2_3",
            "Registry.Example/ocr:latest",
            "localhost/ocr",
            "myhost:5000/ocr",
            "sha256:0123",
            "nginx",
            "0",
        ] {
            assert!(is_image_ref(good), "{good:?}");
        }
        for bad in [
            "",
            ":tag",
            "a b",
            "name:",
            "ä",
            "-x",
            "F/",
            "Da",
            "a//b",
            "a..b",
            "a___b",
            "a:-x",
            "a@sha256:12",
            "a/",
            "x:5000:1/a",
            &"a".repeat(256),
            &"0".repeat(64),
        ] {
            assert!(!is_image_ref(bad), "{bad:?}");
        }
    }

    #[test]
    fn log_frames_become_lines_and_only_the_tail_is_kept() {
        let mut lines = Vec::new();
        let out = |s: &str| LogOutput::StdOut {
            message: bytes::Bytes::from(s.to_owned()),
        };
        push_lines(&mut lines, out("a\nb\n"), 3);
        push_lines(
            &mut lines,
            LogOutput::StdErr {
                message: bytes::Bytes::from_static(b"oops\r\n"),
            },
            3,
        );
        push_lines(&mut lines, out("c\n"), 3);
        let got: Vec<_> = lines.iter().map(|l| (l.stream, l.text.as_str())).collect();
        assert_eq!(got, [("stdout", "b"), ("stderr", "oops"), ("stdout", "c")]);
    }
}
