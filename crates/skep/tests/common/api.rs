//! An in-process API server on an ephemeral loopback port, and a client
//! that reads the `{"success": …}` envelope.

use std::sync::Arc;

use serde_json::Value;
use skep::http::auth::{Auth, Tokens};
use skep::http::{Docker, Limits, Readiness, ServerParts};
use skep::metrics::Metrics;
use skep::store::Store;
use tokio_util::sync::CancellationToken;

pub const READ_TOKEN: &str = "read-token-for-tests-0001";
pub const ADMIN_TOKEN: &str = "admin-token-for-tests-0001";

pub struct ApiServer {
    pub base: String,
    pub client: reqwest::Client,
    pub metrics: Metrics,
    pub ready: Readiness,
    shutdown: CancellationToken,
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// An answer: status and the JSON body (`Value::Null` when not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Answer {
    /// `data` of a success envelope; panics with the body otherwise.
    pub fn data(&self) -> &Value {
        assert_eq!(self.body["success"], Value::Bool(true), "not a success: {self:?}");
        &self.body["data"]
    }

    /// `error` of a failure envelope; panics with the body otherwise.
    pub fn error(&self) -> &str {
        assert_eq!(self.body["success"], Value::Bool(false), "not a failure: {self:?}");
        self.body["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error message: {self:?}"))
    }
}

impl ApiServer {
    /// Serves the whole app over `store`, the local Docker daemon, and the
    /// two test tokens.
    pub async fn start(store: Arc<dyn Store>) -> Self {
        Self::start_with(store, Docker::from_env()).await
    }

    pub async fn start_with(store: Arc<dyn Store>, docker: Docker) -> Self {
        Self::start_limited(store, docker, Limits::default()).await
    }

    pub async fn start_limited(store: Arc<dyn Store>, docker: Docker, limits: Limits) -> Self {
        Self::start_opts(store, docker, limits, skep::paths::PathPolicy::Any, Default::default()).await
    }

    pub async fn start_opts(
        store: Arc<dyn Store>,
        docker: Docker,
        limits: Limits,
        paths: skep::paths::PathPolicy,
        swarm_policy: skep::http::SwarmPolicy,
    ) -> Self {
        Self::start_full(store, docker, limits, paths, swarm_policy, None).await
    }

    /// The app serving files under `paths`, signed with `key`.
    pub async fn start_files(store: Arc<dyn Store>, paths: skep::paths::PathPolicy, key: skep::files::FileKey) -> Self {
        Self::start_full(
            store,
            Docker::from_env(),
            Limits::default(),
            paths,
            Default::default(),
            Some(key),
        )
        .await
    }

    async fn start_full(
        store: Arc<dyn Store>,
        docker: Docker,
        limits: Limits,
        paths: skep::paths::PathPolicy,
        swarm_policy: skep::http::SwarmPolicy,
        file_key: Option<skep::files::FileKey>,
    ) -> Self {
        let tokens = Tokens::parse(&format!("{READ_TOKEN} read\n{ADMIN_TOKEN} admin\n")).expect("tokens");
        let shutdown = CancellationToken::new();
        let metrics = Metrics::new();
        let ready = Readiness::default();
        let app = skep::http::router(ServerParts {
            store,
            docker,
            metrics: metrics.clone(),
            auth: Auth::Tokens(tokens),
            ready: ready.clone(),
            limits,
            paths,
            swarm_policy,
            shutdown: shutdown.clone(),
            file_key,
            workers: Default::default(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(skep::http::serve(
            listener,
            app,
            limits,
            metrics.clone(),
            shutdown.clone(),
        ));
        Self {
            base,
            client: reqwest::Client::new(),
            metrics,
            ready,
            shutdown,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends `method path` with `token` (none when `None`) and an optional
    /// body (`(content type, bytes)`).
    pub async fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<(&str, String)>) -> Answer {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.client.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some((ct, b)) = body {
            req = req.header("content-type", ct).body(b);
        }
        let res = req.send().await.expect("request");
        let status = res.status().as_u16();
        let text = res.text().await.expect("body");
        Answer {
            status,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
        }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.call("GET", path, Some(READ_TOKEN), None).await
    }

    /// An admin call with a JSON body.
    pub async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> Answer {
        self.call(
            method,
            path,
            Some(ADMIN_TOKEN),
            body.map(|b| ("application/json", b.to_string())),
        )
        .await
    }
}
