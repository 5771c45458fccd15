//! The controller's HTTP server: the REST API under `/api` (jobs and swarm
//! management, described by the OpenAPI document at `/api/openapi.json`),
//! the dashboard at `/`, and `/livez`, `/readyz`, `/metrics`.
//!
//! `/files` serves one file of a folder source to a worker holding a URL
//! the controller signed, and `/files/staged` takes what such a worker
//! stages (see [`crate::files`]); the signature is their credential, not a
//! token.
//!
//! Auth: every `/api` route needs a bearer token with the scope its
//! [`RouteDoc`](openapi::RouteDoc) names (`read` for GET, `admin` for the
//! rest); `/livez`, `/readyz`, `/metrics`, the dashboard's static page and
//! the OpenAPI document are open (they carry no job or swarm data). A
//! route missing from the table needs `admin`.

pub mod auth;
mod dashboard;
pub mod error;
pub mod events;
mod extract;
mod files;
mod jobs;
pub mod openapi;
pub mod server;
mod stack;
mod swarm;
mod workers;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::store::Store;
use auth::{Auth, Scope};
use error::ApiError;

pub use server::{Limits, serve};
pub use swarm::Docker;

/// Bodies larger than this are refused with 413 (a BulkJob or a compose
/// file is a few KiB).
pub const MAX_BODY: usize = 1024 * 1024;

/// Every call a handler makes to the store or Docker gives up after this.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// Whether this process is the active controller and has synced once.
#[derive(Clone, Debug, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::SeqCst);
    }

    pub fn get(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

struct Inner {
    store: Arc<dyn Store>,
    docker: Docker,
    metrics: Metrics,
    auth: Auth,
    scopes: HashMap<(Method, String), Scope>,
    openapi: String,
    ready: Readiness,
    limits: Limits,
    /// Which folders jobs may name.
    paths: crate::paths::PathPolicy,
    /// What the swarm routes may change.
    swarm_policy: SwarmPolicy,
    /// The jobs feed of the event streams.
    feed: Arc<events::Feed>,
    /// Cancelled when the server shuts down: ends the event streams.
    shutdown: CancellationToken,
    /// Checks the file URLs this controller signs; `None`: `/files` serves
    /// nothing.
    file_key: Option<crate::files::FileKey>,
    /// The workers heard from (filled while this process leads).
    workers: crate::controller::workers::Registry,
    /// The last swarm overview and when it was read: every event stream
    /// shares it, so open dashboards do not multiply the Docker calls.
    swarm_overview: tokio::sync::Mutex<Option<(tokio::time::Instant, serde_json::Value)>>,
}

/// What every handler shares. Cheap to clone.
#[derive(Clone)]
pub struct ApiState(Arc<Inner>);

impl ApiState {
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.0.store
    }

    pub fn docker(&self) -> &Docker {
        &self.0.docker
    }

    pub fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    pub fn shutdown(&self) -> &CancellationToken {
        &self.0.shutdown
    }

    pub(crate) fn swarm_policy(&self) -> SwarmPolicy {
        self.0.swarm_policy
    }

    pub(crate) fn paths(&self) -> &crate::paths::PathPolicy {
        &self.0.paths
    }

    pub(crate) fn workers(&self) -> &crate::controller::workers::Registry {
        &self.0.workers
    }

    pub(crate) fn file_key(&self) -> Option<&crate::files::FileKey> {
        self.0.file_key.as_ref()
    }

    pub(crate) fn feed(&self) -> &Arc<events::Feed> {
        &self.0.feed
    }

    /// The swarm overview, read from Docker at most once per `max_age`
    /// whatever the number of callers (they wait for one read). A failure
    /// is the overview `{"error": …}`.
    pub(crate) async fn swarm_overview(&self, max_age: Duration) -> serde_json::Value {
        let mut cached = self.0.swarm_overview.lock().await;
        if let Some((at, v)) = cached.as_ref()
            && at.elapsed() < max_age
        {
            return v.clone();
        }
        let v = match swarm::overview(self).await {
            Ok(v) => v,
            Err(e) => serde_json::json!({"error": e.to_string()}),
        };
        *cached = Some((tokio::time::Instant::now(), v.clone()));
        v
    }
}

/// How the server is put together.
pub struct ServerParts {
    pub store: Arc<dyn Store>,
    pub docker: Docker,
    pub metrics: Metrics,
    pub auth: Auth,
    pub ready: Readiness,
    pub limits: Limits,
    pub paths: crate::paths::PathPolicy,
    pub swarm_policy: SwarmPolicy,
    pub shutdown: CancellationToken,
    /// The key of the file URLs the controller puts in tasks, if it signs
    /// any (`--file-url-base`).
    pub file_key: Option<crate::files::FileKey>,
    /// The controller's registry of workers (`/api/workers`).
    pub workers: crate::controller::workers::Registry,
}

/// What an admin token may do to the swarm beyond skep's own services.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SwarmPolicy {
    /// Scale, change the image of and remove services skep does not own
    /// (`--api-manage-any-service`).
    pub manage_any_service: bool,
    /// Refuse stack deploy and removal (`--api-no-stacks`).
    pub no_stacks: bool,
    /// Refuse image changes (`--api-no-image-change`).
    pub no_image_change: bool,
}

/// Every API route, with its docs.
fn api() -> openapi::Api {
    let api = openapi::Api::new();
    let api = jobs::routes(api);
    let api = events::routes(api);
    let api = workers::routes(api);
    swarm::routes(api)
}

/// The OpenAPI document of the whole API.
pub fn openapi_document() -> serde_json::Value {
    let (_, routes) = api().into_parts();
    openapi::document(&routes, components())
}

fn components() -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    let mut job = skep_api::schema();
    // NB: the schema's own `$schema`/`$id` keys are not allowed inside an
    // OpenAPI components entry by every tool; its `$defs` are kept.
    if let Some(o) = job.as_object_mut() {
        o.remove("$schema");
        o.remove("$id");
        // NB: the schema's `$defs` become components of their own, and its
        // references follow them.
        if let Some(serde_json::Value::Object(defs)) = o.remove("$defs") {
            for (name, def) in defs {
                m.insert(name, def);
            }
        }
    }
    m.insert("BulkJob".to_owned(), job);
    for v in m.values_mut() {
        rewrite_refs(v);
    }
    m.extend(jobs::components());
    m.extend(swarm::components());
    m.extend(workers::components());
    m
}

/// `#/$defs/X` → `#/components/schemas/X`, everywhere in `v`.
fn rewrite_refs(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(o) => {
            for (k, x) in o.iter_mut() {
                match x {
                    serde_json::Value::String(r) if k == "$ref" => {
                        if let Some(name) = r.strip_prefix("#/$defs/") {
                            *r = format!("#/components/schemas/{name}");
                        }
                    }
                    _ => rewrite_refs(x),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(rewrite_refs),
        _ => {}
    }
}

/// The whole app: API, dashboard, health and metrics.
pub fn router(parts: ServerParts) -> Router {
    let (api_router, routes) = api().into_parts();
    let openapi = openapi::document(&routes, components()).to_string();
    let state = ApiState(Arc::new(Inner {
        store: parts.store,
        docker: parts.docker,
        metrics: parts.metrics,
        auth: parts.auth,
        scopes: openapi::scopes(&routes),
        openapi,
        ready: parts.ready,
        limits: parts.limits,
        paths: parts.paths,
        swarm_policy: parts.swarm_policy,
        feed: Arc::new(events::Feed::new(
            parts.limits.max_streams,
            parts.limits.max_streams_per_token,
        )),
        shutdown: parts.shutdown,
        file_key: parts.file_key,
        workers: parts.workers,
        swarm_overview: tokio::sync::Mutex::new(None),
    }));
    let api_router = api_router
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), authorize));
    // NB: uploads are bounded by their own size and time limits, not by the
    // 1 MiB body limit and the request timeout of everything else.
    let uploads = Router::new().route(
        crate::files::STAGED_PATH,
        axum::routing::put(files::receive).layer(DefaultBodyLimit::disable()),
    );
    Router::new()
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route(crate::files::FILES_PATH, get(files::serve))
        .route("/api/openapi.json", get(openapi_json))
        .merge(dashboard::routes())
        .merge(api_router)
        .fallback(no_such_route)
        .layer(axum::middleware::from_fn_with_state(state.clone(), request_deadline))
        .merge(uploads)
        .layer(axum::middleware::from_fn_with_state(state.clone(), count_requests))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!("{method} is not a method of {}", uri.path()))
}

/// 404 for a path no route serves; under `/api` only after an admin
/// token (closed by default: an unknown API path tells nothing to a
/// caller without one).
async fn no_such_route(
    State(state): State<ApiState>,
    method: Method,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
) -> ApiError {
    if uri.path().starts_with("/api/")
        && let Err(e) = state.0.auth.check(bearer_header(&headers), Scope::Admin)
    {
        return e;
    }
    ApiError::NotFound(format!("no route {method} {}", uri.path()))
}

/// The `Authorization` header's value, if it is text.
fn bearer_header(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok())
}

/// The scope of the caller's token, for handlers whose answer depends on
/// it (set by [`authorize`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller(pub Scope);

/// Checks the token against the scope of the matched route.
async fn authorize(State(state): State<ApiState>, mut req: Request, next: Next) -> Response {
    let needed = req
        .extensions()
        .get::<MatchedPath>()
        .and_then(|p| state.0.scopes.get(&(req.method().clone(), p.as_str().to_owned())))
        .copied()
        .unwrap_or(Scope::Admin);
    match state.0.auth.check(bearer_header(req.headers()), needed) {
        Ok(have) => {
            req.extensions_mut().insert(Caller(have));
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

/// Counts every request by route template (never the raw path) and status.
async fn count_requests(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = method_label(req.method());
    let started = std::time::Instant::now();
    let res = next.run(req).await;
    state
        .0
        .metrics
        .observe_http(method, &route, res.status().as_u16(), started.elapsed());
    res
}

/// The method as a metrics label: one of the standard methods or `other`
/// (hyper accepts any token as a method; a label per made-up method would
/// grow `/metrics` without bound).
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

/// Bounds a handler, reading its body included, by the request timeout:
/// a body dripped slowly or a stuck handler answers 408 and frees the
/// connection. Event streams return their head at once and then stream
/// under the connection's idle timeout.
async fn request_deadline(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    let limit = state.0.limits.request_timeout;
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(res) => res,
        Err(_) => ApiError::Timeout(format!("the request was not handled within {}s", limit.as_secs())).into_response(),
    }
}

async fn livez() -> &'static str {
    "ok\n"
}

/// 200 once this process holds the controller lease and its store
/// answers; 503 with the reason otherwise.
async fn readyz(State(state): State<ApiState>) -> (StatusCode, String) {
    if !state.0.ready.get() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "standby: not the active controller (yet)\n".to_owned(),
        );
    }
    match tokio::time::timeout(CALL_TIMEOUT, state.0.store.get_job("readyz")).await {
        Ok(Ok(_)) => (StatusCode::OK, "ok\n".to_owned()),
        Ok(Err(e)) => (StatusCode::SERVICE_UNAVAILABLE, format!("store: {e}\n")),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "store: no answer in time\n".to_owned()),
    }
}

async fn metrics_text(State(state): State<ApiState>) -> Response {
    match state.0.metrics.encode() {
        Ok(text) => ([(header::CONTENT_TYPE, Metrics::CONTENT_TYPE)], text).into_response(),
        Err(e) => ApiError::Internal(format!("cannot encode metrics: {e}")).into_response(),
    }
}

async fn openapi_json(State(state): State<ApiState>) -> Response {
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        state.0.openapi.clone(),
    )
        .into_response()
}

/// Runs `parse` (YAML or JSON parsing of a body, CPU-bound) on the
/// blocking pool, so that a costly body cannot stall the async threads
/// that answer everyone else (`/livez` included).
pub(crate) async fn off_the_runtime<T: Send + 'static>(
    parse: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(parse)
        .await
        .map_err(|e| ApiError::Internal(format!("parsing stopped: {e}")))?
}

/// Runs `fut` (a store or Docker call) with [`CALL_TIMEOUT`].
pub(crate) async fn bounded<T, E>(what: &str, fut: impl Future<Output = Result<T, E>>) -> Result<T, ApiError>
where
    ApiError: From<E>,
{
    match tokio::time::timeout(CALL_TIMEOUT, fut).await {
        Ok(r) => r.map_err(ApiError::from),
        Err(_) => Err(ApiError::Unavailable(format!(
            "{what} did not answer within {CALL_TIMEOUT:?}"
        ))),
    }
}
