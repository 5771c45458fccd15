//! Stacks: `docker stack deploy` from a compose file, over the Engine API
//! (Docker has no API for stacks; a stack is the services labelled
//! `com.docker.stack.namespace=<stack>`, each named `<stack>_<service>`).
//!
//! Supported compose keys (anything else is refused with a 400 naming the
//! key, never silently ignored; `x-*` extension keys and YAML merge keys
//! are fine):
//! - top level: `version` (ignored) and `services` (names like the
//!   stack's: at most 31 characters, so that `<stack>_<service>` fits);
//! - per service: `image` (required), `command` and `entrypoint` (a list,
//!   or a string split like a shell does), `environment` (list of
//!   `KEY=VALUE` or a map), `labels` (container labels), `working_dir`,
//!   `user`, `hostname`, `stop_signal`, `stop_grace_period`, `init`, `tty`,
//!   `read_only`;
//! - `deploy`: `mode` (replicated, global), `replicas`, `labels` (service
//!   labels), `resources.limits` (`cpus`, `memory`, `pids`) and
//!   `resources.reservations` (`cpus`, `memory`), `placement`
//!   (`constraints`, `preferences` with `spread`, `max_replicas_per_node`),
//!   `restart_policy` (`condition`, `delay`, `max_attempts`, `window`).
//!
//! Refused: networks, volumes, secrets and configs (top level or per
//! service), `ports`, `build`, and every other key. Services join no
//! network (`docker stack deploy` would make `<stack>_default`). Variable
//! substitution is not done: a `$VAR` or `${VAR}` is refused, `$$` is a
//! literal `$`. Sizes are bytes or a number with b, k, m, g, t or p (powers
//! of 1024, like Docker's `512M`); durations are Go's (`1m30s`, `500ms`).
//!
//! A deploy creates the services the file adds and replaces the spec of
//! those it already has (each at the version it was read at); it is not
//! atomic: a failure part-way leaves the services written so far, and the
//! same deploy again finishes it. `prune=true` also removes the stack's
//! services the file no longer has.

mod compose;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use axum::extract::State;
use axum::http::Method;
use axum::routing::{delete, get, put};
use bollard::models::Service;
use bollard::query_parameters::UpdateServiceOptions;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json, json};

use super::ApiState;
use super::error::{ApiError, ApiResult, ok};
use super::extract::{Body, Path, Query};
use super::openapi::{Api, RouteDoc, path, query};
use super::swarm::{SERVICE_NAME_MAX, STACK_LABEL, check_service_name, connect, filters};
use compose::{MAX_CPUS, MAX_REPLICAS, MIN_MEMORY, STACK_NAME_MAX};

/// Stack names when deploying: at most [`STACK_NAME_MAX`] characters, so
/// that `<stack>_<service>` fits Docker's 63.
fn stack_param() -> super::openapi::Param {
    path(
        "name",
        "The stack's name",
        json!({"type": "string", "pattern": "^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,30}$", "minLength": 1, "maxLength": STACK_NAME_MAX}),
    )
}

/// Stack names when removing: any whose services Docker could name.
fn any_stack_param() -> super::openapi::Param {
    path(
        "name",
        "The stack's name",
        json!({"type": "string", "pattern": "^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,60}$", "minLength": 1, "maxLength": SERVICE_NAME_MAX - 2}),
    )
}

pub(super) fn routes(api: Api) -> Api {
    let tag = "swarm";
    api.add(
        RouteDoc::new(
            Method::GET,
            "/api/swarm/stacks",
            "listStacks",
            "The stacks, with their services' names",
        )
        .tag(tag)
        .data(json!({"type": "array", "items": {"$ref": "#/components/schemas/Stack"}}))
        .errors(&[503]),
        get(list),
    )
    .add(
        RouteDoc::new(
            Method::PUT,
            "/api/swarm/stacks/{name}",
            "deployStack",
            "Create or update a stack from a compose file (application/yaml); each service says whether it was created or updated",
        )
        .tag(tag)
        .param(stack_param())
        .param(query(
            "prune",
            "Also remove the stack's services the file no longer has",
            json!({"type": "boolean"}),
        ))
        .body("application/yaml", json!({"$ref": "#/components/schemas/ComposeFile"}))
        .data(json!({"$ref": "#/components/schemas/StackDeployed"}))
        .errors(&[409, 503]),
        put(deploy),
    )
    .add(
        RouteDoc::new(
            Method::DELETE,
            "/api/swarm/stacks/{name}",
            "deleteStack",
            "Remove every service of a stack",
        )
        .tag(tag)
        .param(any_stack_param())
        .data(
            json!({"type": "object", "required": ["name", "removed"], "properties": {
                "name": {"type": "string"},
                "removed": {"type": "array", "items": {"type": "string"}},
            }}),
        )
        .errors(&[404, 503]),
        delete(remove),
    )
}

pub(super) fn components() -> Map<String, Json> {
    let words =
        json!({"oneOf": [{"type": "string", "maxLength": 4096}, {"type": "array", "items": {"type": "string"}}]});
    // NB: keys are not empty and hold no '=' or ASCII whitespace; an environment entry
    // needs a value, a label may go without.
    let map = json!({"type": "object", "propertyNames": {"pattern": "^[^= \\t\\n\\r\\x0B\\x0C]+$"}, "additionalProperties": {"type": ["string", "number", "boolean"]}});
    let environment = json!({"oneOf": [
        {"type": "array", "items": {"type": "string", "pattern": "^[^= \\t\\n\\r\\x0B\\x0C]+=[\\s\\S]*$"}},
        map,
    ]});
    let labels = json!({"oneOf": [
        {"type": "array", "items": {"type": "string", "pattern": "^[^= \\t\\n\\r\\x0B\\x0C]+(=[\\s\\S]*)?$"}},
        map,
    ]});
    // NB: Docker refuses a CPU count under 0.001 and memory under 4 MiB
    // (0 is "unset"); the patterns keep to what it takes.
    let cpus = json!({"anyOf": [
        {"type": "integer", "minimum": 0, "maximum": MAX_CPUS},
        {"type": "number", "minimum": 0.001, "maximum": MAX_CPUS},
        {"type": "string", "pattern": "^[0-9]{1,6}(\\.[0-9]{1,3})?$"},
    ]});
    let size = json!({"anyOf": [
        {"type": "integer", "const": 0},
        {"type": "integer", "minimum": MIN_MEMORY, "maximum": 1_u64 << 50},
        {"type": "string", "pattern": "^([0-9]{1,4}(\\.[0-9]{1,3})? ?[gGtT]|([4-9]|[1-9][0-9]{1,5})(\\.[0-9]{1,3})? ?[mM])[iI]?[bB]?$"},
    ]});
    let duration = json!({"type": "string", "pattern": "^([0-9]{1,5}(\\.[0-9]{1,9})?(ns|us|ms|s|m|h)){1,4}$"});
    let mut m = Map::new();
    m.insert(
        "ComposeFile".to_owned(),
        json!({
            "type": "object",
            "required": ["services"],
            "description": "A compose file (the subset skep deploys: see the stack module's docs)",
            "additionalProperties": false,
            "patternProperties": {"^x-": {}},
            "properties": {
                "version": {"type": ["string", "number"]},
                "services": {
                    "type": "object",
                    "minProperties": 1,
                    "propertyNames": {"pattern": "^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,30}$", "maxLength": STACK_NAME_MAX},
                    "additionalProperties": {"$ref": "#/components/schemas/ComposeService"},
                },
            },
        }),
    );
    m.insert(
        "ComposeService".to_owned(),
        json!({
            "type": "object",
            "required": ["image"],
            "additionalProperties": false,
            "properties": {
                "image": super::swarm::image_schema(),
                "command": words,
                "entrypoint": words,
                "environment": environment,
                "labels": labels,
                "working_dir": {"type": "string"},
                "user": {"type": "string"},
                "hostname": {"type": "string"},
                "stop_signal": {"type": "string"},
                "stop_grace_period": duration,
                "init": {"type": "boolean"},
                "tty": {"type": "boolean"},
                "read_only": {"type": "boolean"},
                "deploy": {"type": "object", "additionalProperties": false, "properties": {
                    "mode": {"type": "string", "enum": ["replicated", "global"]},
                    "replicas": {"type": "integer", "minimum": 0, "maximum": MAX_REPLICAS},
                    "labels": labels,
                    "resources": {"type": "object", "additionalProperties": false, "properties": {
                        "limits": {"type": "object", "additionalProperties": false, "properties": {
                            "cpus": cpus, "memory": size, "pids": {"type": "integer", "minimum": 0},
                        }},
                        "reservations": {"type": "object", "additionalProperties": false, "properties": {
                            "cpus": cpus, "memory": size,
                        }},
                    }},
                    "placement": {"type": "object", "additionalProperties": false, "properties": {
                        "constraints": {"type": "array", "items": {"type": "string"}},
                        "preferences": {"type": "array", "items": {"type": "object", "required": ["spread"], "properties": {"spread": {"type": "string"}}}},
                        "max_replicas_per_node": {"type": "integer", "minimum": 0},
                    }},
                    "restart_policy": {"type": "object", "additionalProperties": false, "properties": {
                        "condition": {"type": "string", "enum": ["none", "on-failure", "any"]},
                        "delay": duration,
                        "max_attempts": {"type": "integer", "minimum": 0},
                        "window": duration,
                    }},
                }},
            },
        }),
    );
    m.insert(
        "StackDeployed".to_owned(),
        json!({"type": "object", "required": ["stack", "services", "removed"], "properties": {
            "stack": {"type": "string"},
            "services": {"type": "array", "items": {"type": "object", "required": ["name", "action"], "properties": {
                "name": {"type": "string"},
                "action": {"type": "string", "enum": ["created", "updated"]},
            }}},
            "removed": {"type": "array", "items": {"type": "string"}},
        }}),
    );
    m.insert(
        "Stack".to_owned(),
        json!({"type": "object", "required": ["name", "services"], "properties": {
            "name": {"type": "string"},
            "services": {"type": "array", "items": {"type": "string"}},
        }}),
    );
    m
}

/// A stack name of `max` characters at most.
fn check_stack_name(name: &str, max: usize) -> Result<(), ApiError> {
    if check_service_name(name).is_ok() && name.len() <= max {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "{name:?} is not a stack name (a letter or digit, then letters, digits, '_', '.' or '-'; \
             at most {max} characters)"
        )))
    }
}

fn service_name(s: &Service) -> String {
    s.spec.as_ref().and_then(|s| s.name.clone()).unwrap_or_default()
}

fn stack_of(s: &Service) -> Option<&str> {
    s.spec
        .as_ref()
        .and_then(|s| s.labels.as_ref())
        .and_then(|l| l.get(STACK_LABEL))
        .map(String::as_str)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeployQuery {
    #[serde(default)]
    prune: bool,
}

#[derive(Debug, Serialize)]
struct Change {
    name: String,
    action: &'static str,
}

#[derive(Debug, Serialize)]
struct Deployed {
    stack: String,
    services: Vec<Change>,
    removed: Vec<String>,
}

async fn deploy(
    State(state): State<ApiState>,
    Path(stack): Path<String>,
    Query(q): Query<DeployQuery>,
    Body(body): Body,
) -> ApiResult<Deployed> {
    check_stacks_allowed(&state)?;
    check_stack_name(&stack, STACK_NAME_MAX)?;
    let specs = {
        let stack = stack.clone();
        super::off_the_runtime(move || {
            let text =
                std::str::from_utf8(&body).map_err(|_| ApiError::bad_request("the compose file is not UTF-8 text"))?;
            skep_api::check_depth(text, skep_api::MAX_DEPTH).map_err(|e| ApiError::bad_request(e.to_string()))?;
            Ok(compose::service_specs(&stack, text)?)
        })
        .await?
    };
    let d = connect(&state).await?;
    let existing: HashMap<String, Service> = d
        .services(HashMap::new())
        .await?
        .into_iter()
        .map(|s| (service_name(&s), s))
        .collect();
    for s in &specs {
        let name = s.name.clone().unwrap_or_default();
        if let Some(other) = existing.get(&name)
            && stack_of(other) != Some(stack.as_str())
        {
            return Err(ApiError::Conflict(format!(
                "service {name:?} exists and is not part of stack {stack:?}: remove or rename it first"
            )));
        }
        if let Some(current) = existing.get(&name) {
            super::swarm::services::check_manageable(&state, current, &name)?;
        }
    }
    if q.prune {
        for (name, s) in &existing {
            if stack_of(s) == Some(stack.as_str()) && !specs.iter().any(|x| x.name.as_deref() == Some(name.as_str())) {
                super::swarm::services::check_manageable(&state, s, name)?;
            }
        }
    }
    let mut changes = Vec::new();
    for s in specs {
        let name = s.name.clone().unwrap_or_default();
        match existing.get(&name) {
            Some(current) => {
                let version = super::swarm::version_of(current.version.as_ref());
                let version = i32::try_from(version).map_err(|_| {
                    ApiError::Internal(format!(
                        "service {name} has version {version}, past what docker's api takes"
                    ))
                })?;
                let options = UpdateServiceOptions {
                    version,
                    ..Default::default()
                };
                let id = current.id.clone().unwrap_or_else(|| name.clone());
                d.call("updating a service", d.api.update_service(&id, s, options, None))
                    .await?;
                changes.push(Change {
                    name,
                    action: "updated",
                });
            }
            None => {
                d.call("creating a service", d.api.create_service(s, None)).await?;
                changes.push(Change {
                    name,
                    action: "created",
                });
            }
        }
    }
    let mut removed = Vec::new();
    if q.prune {
        let keep: BTreeSet<&str> = changes.iter().map(|c| c.name.as_str()).collect();
        for (name, s) in &existing {
            if stack_of(s) == Some(stack.as_str()) && !keep.contains(name.as_str()) {
                remove_service(&d, name).await?;
                removed.push(name.clone());
            }
        }
        removed.sort();
    }
    ok(Deployed {
        stack,
        services: changes,
        removed,
    })
}

/// Removes a service; one already gone is fine.
async fn remove_service(d: &super::swarm::Conn<'_>, name: &str) -> Result<(), ApiError> {
    match d.call("removing a service", d.api.delete_service(name)).await {
        Ok(()) | Err(ApiError::NotFound(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

#[derive(Debug, Serialize)]
struct StackView {
    name: String,
    services: Vec<String>,
}

async fn list(State(state): State<ApiState>) -> ApiResult<Vec<StackView>> {
    let d = connect(&state).await?;
    let mut stacks: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for s in d.services(filters(&[("label", STACK_LABEL)])).await? {
        if let Some(stack) = stack_of(&s) {
            stacks.entry(stack.to_owned()).or_default().push(service_name(&s));
        }
    }
    ok(stacks
        .into_iter()
        .map(|(name, mut services)| {
            services.sort();
            StackView { name, services }
        })
        .collect())
}

/// Stack deploy and removal can be switched off (`--api-no-stacks`).
fn check_stacks_allowed(state: &ApiState) -> Result<(), ApiError> {
    if state.swarm_policy().no_stacks {
        return Err(ApiError::Forbidden(
            "stack deploy and removal are switched off on this controller (--api-no-stacks)".to_owned(),
        ));
    }
    Ok(())
}

async fn remove(State(state): State<ApiState>, Path(stack): Path<String>) -> ApiResult<Json> {
    check_stacks_allowed(&state)?;
    check_stack_name(&stack, SERVICE_NAME_MAX - 2)?;
    let d = connect(&state).await?;
    let services = d
        .services(filters(&[("label", &format!("{STACK_LABEL}={stack}"))]))
        .await?;
    if services.is_empty() {
        return Err(ApiError::NotFound(format!(
            "stack {stack:?} not found (no service has its label)"
        )));
    }
    for s in &services {
        super::swarm::services::check_manageable(&state, s, &service_name(s))?;
    }
    let mut removed = Vec::new();
    for s in &services {
        let name = service_name(s);
        remove_service(&d, s.id.as_deref().unwrap_or(&name)).await?;
        removed.push(name);
    }
    removed.sort();
    ok(json!({"name": stack, "removed": removed}))
}
