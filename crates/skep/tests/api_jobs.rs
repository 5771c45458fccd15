//! The REST API's job routes, auth and documents, through real HTTP
//! against an in-process controller on the embedded backends (SQLite,
//! in-process queue, local workers with real Tesseract).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::api::{ADMIN_TOKEN, Answer, ApiServer, READ_TOKEN};
use futures::StreamExt;
use serde_json::{Value, json};
use skep::controller::{Controller, ControllerConfig};
use skep::runtime::{LocalRuntime, Runtime};
use skep::store::{SqliteStore, Store};
use skep_queue::{MemoryQueue, TaskQueue};
use tokio_util::sync::CancellationToken;

/// Long enough for a few dozen small pages on a busy 2-core machine.
const FINISH: Duration = Duration::from_secs(120);

struct Stack {
    ws: common::Workspace,
    api: ApiServer,
    stop: CancellationToken,
    controller: tokio::task::JoinHandle<skep::controller::Result<()>>,
}

impl Stack {
    async fn start(pages: usize, bad_files: bool, workers: u32) -> Self {
        let ws = common::Workspace::new(pages, None, bad_files);
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&ws.path().join("skep.db")).await.expect("store"));
        let api = ApiServer::start(store.clone()).await;
        let queue: Arc<dyn TaskQueue> = Arc::new(MemoryQueue::new());
        let runtime: Arc<dyn Runtime> = Arc::new(LocalRuntime::new(queue.clone(), workers));
        let cfg = ControllerConfig {
            running_requeue: Duration::from_millis(300),
            resync: Duration::from_secs(5),
            scale_down_cooldown: Duration::ZERO,
            lease_ttl: Duration::from_secs(15),
            default_output_root: ws.path().join("out"),
            metrics: api.metrics.clone(),
            ..ControllerConfig::default()
        };
        let stop = CancellationToken::new();
        let c = Controller::start(store, queue, runtime, cfg, stop.clone(), |_| {})
            .await
            .expect("start")
            .expect("lease");
        api.ready.set(true);
        let controller = tokio::spawn(c.wait());
        Self {
            ws,
            api,
            stop,
            controller,
        }
    }

    fn job_yaml(&self, name: &str, extra: &str) -> String {
        format!(
            "apiVersion: skep.dev/v1\nkind: BulkJob\nmetadata:\n  name: {name}\n  labels:\n    team: ocr\nspec:\n  source:\n    path: {}\n{extra}",
            self.ws.path().join("pages").display()
        )
    }

    async fn apply(&self, yaml: String) -> Answer {
        self.api
            .call("POST", "/api/jobs", Some(ADMIN_TOKEN), Some(("application/yaml", yaml)))
            .await
    }

    /// Polls the job until `done` holds for it.
    async fn wait_for(&self, name: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + FINISH;
        loop {
            let a = self.api.get(&format!("/api/jobs/{name}")).await;
            if a.status == 200 && done(a.data()) {
                return a.data().clone();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name}: not {what} within {FINISH:?}: {a:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn stop(self) {
        self.stop.cancel();
        self.controller.await.expect("join").expect("controller");
    }
}

fn phase(job: &Value) -> &str {
    job["status"]["phase"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_apply_list_get_results_report_delete() {
    let s = Stack::start(12, false, 2).await;
    let yaml = s.job_yaml("scan-a", "");

    let created = s.apply(yaml.clone()).await;
    assert_eq!(created.status, 201, "{created:?}");
    assert_eq!(created.data()["created"], true);
    let again = s.apply(yaml.clone()).await;
    assert_eq!((again.status, again.data()["specChanged"].clone()), (200, json!(false)));

    let stale = s
        .apply(yaml.replace("  name: scan-a\n", "  name: scan-a\n  generation: 7\n"))
        .await;
    assert_eq!(stale.status, 409, "{stale:?}");
    assert!(stale.error().contains("generation"), "{stale:?}");
    let bad = s.apply("kind: [".to_owned()).await;
    assert_eq!(bad.status, 400);
    assert!(!bad.error().is_empty());
    let relative = s
        .apply(
            s.job_yaml("rel", "")
                .replace(&s.ws.path().join("pages").display().to_string(), "pages"),
        )
        .await;
    assert_eq!(relative.status, 400, "{relative:?}");
    assert!(relative.error().contains("spec.source.path"), "{relative:?}");
    let invalid = s.apply(s.job_yaml("Not_A_Name", "")).await;
    assert_eq!(invalid.status, 400);
    assert!(invalid.error().contains("metadata.name"), "{invalid:?}");
    let json_body = s
        .api
        .call(
            "POST",
            "/api/jobs",
            Some(ADMIN_TOKEN),
            Some((
                "application/json",
                json!({"apiVersion": "skep.dev/v1", "kind": "BulkJob", "metadata": {"name": "scan-json"},
                       "spec": {"source": {"path": "/nonexistent/skep-api-test"}}})
                .to_string(),
            )),
        )
        .await;
    assert_eq!(json_body.status, 201, "{json_body:?}");

    let done = s.wait_for("scan-a", "Succeeded", |j| phase(j) == "Succeeded").await;
    assert_eq!(done["status"]["files"]["succeeded"], 12);
    s.wait_for("scan-json", "Failed", |j| phase(j) == "Failed").await;

    let listed = s.api.get("/api/jobs?phase=Succeeded&label=team%3Docr").await;
    let names: Vec<&str> = listed
        .data()
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|j| j["metadata"]["name"].as_str())
        .collect();
    assert_eq!(names, ["scan-a"]);
    assert_eq!(s.api.get("/api/jobs?phase=Bogus").await.status, 400);
    assert_eq!(s.api.get("/api/jobs?label=nolabel").await.status, 400);

    // Results page through every file exactly once.
    let mut seen = Vec::new();
    let mut after: Option<u64> = None;
    loop {
        let q = after.map_or(String::new(), |a| format!("&after={a}"));
        let page = s.api.get(&format!("/api/jobs/scan-a/results?limit=5{q}")).await;
        let items = page.data()["items"].as_array().expect("items").clone();
        seen.extend(items.iter().map(|i| i["index"].as_u64().expect("index")));
        assert!(
            items
                .iter()
                .all(|i| i["state"] == "succeeded" && i.get("text").is_none())
        );
        match page.data()["next"].as_u64() {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert_eq!(seen, (0..12).collect::<Vec<_>>());
    let with_text = s.api.get("/api/jobs/scan-a/results?limit=1&text=true").await;
    assert!(
        with_text.data()["items"][0]["text"]
            .as_str()
            .is_some_and(|t| t.len() > 20),
        "{with_text:?}"
    );
    assert_eq!(s.api.get("/api/jobs/scan-a/results?limit=0").await.status, 400);
    assert_eq!(s.api.get("/api/jobs/scan-a/results?limit=100000").await.status, 400);

    let report = s.api.get("/api/jobs/scan-a/report").await;
    assert_eq!(report.data()["final"], true);
    assert_eq!(report.data()["report"]["files"], 12);
    assert!(report.data()["report"]["pages"].as_u64() >= Some(12));

    let metrics = reqwest::get(s.api.url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("skep_files_processed_total{outcome=\"succeeded\"} 12"),
        "{metrics}"
    );
    assert!(metrics.contains("skep_controller_leader 1"), "{metrics}");
    assert!(
        metrics.contains("skep_http_requests_total{method=\"GET\",route=\"/api/jobs/{name}\",status=\"200\"}"),
        "route templates, not paths, label requests"
    );
    assert!(!metrics.contains("scan-a"), "no job names in metrics");

    assert_eq!(s.api.get("/api/jobs/nope").await.status, 404);
    assert_eq!(s.api.get("/api/jobs/NOT_A_NAME").await.status, 400);
    let deleted = s.api.admin("DELETE", "/api/jobs/scan-a", None).await;
    assert_eq!(deleted.status, 202, "{deleted:?}");
    assert_eq!(deleted.data()["deleted"], "marked");
    let deadline = tokio::time::Instant::now() + FINISH;
    while s.api.get("/api/jobs/scan-a").await.status != 404 {
        assert!(tokio::time::Instant::now() < deadline, "scan-a never went away");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let forced = s.api.admin("DELETE", "/api/jobs/scan-json?force=true", None).await;
    assert_eq!(
        (forced.status, forced.data()["deleted"].clone()),
        (200, json!("removed"))
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspend_resume_and_retry_failed_files() {
    let s = Stack::start(16, true, 1).await;
    assert_eq!(s.apply(s.job_yaml("mixed", "")).await.status, 201);
    s.wait_for("mixed", "Running", |j| phase(j) == "Running").await;
    let suspended = s.api.admin("POST", "/api/jobs/mixed/suspend", None).await;
    assert_eq!(suspended.status, 200, "{suspended:?}");
    assert_eq!(suspended.data()["spec"]["suspend"], true);
    s.wait_for("mixed", "Suspended", |j| phase(j) == "Suspended").await;
    let resumed = s.api.admin("POST", "/api/jobs/mixed/resume", None).await;
    assert_eq!(resumed.data()["spec"]["suspend"], false);
    let first = s.wait_for("mixed", "finished", |j| phase(j) == "Succeeded").await;
    let failed = first["status"]["files"]["failed"].as_u64().expect("failed");
    assert_eq!(failed, 3, "the three bad files: {first}");
    let first_done = first["status"]["completionTime"]
        .as_str()
        .expect("completion")
        .to_owned();

    let again = s.api.admin("POST", "/api/jobs/mixed/suspend", None).await;
    assert_eq!(again.status, 409, "a finished job cannot be suspended: {again:?}");

    let retry = s.api.admin("POST", "/api/jobs/mixed/retry", None).await;
    assert_eq!(retry.status, 202, "{retry:?}");
    assert_eq!(retry.data()["failed"], 3);
    let token = retry.data()["retry"].as_str().expect("token").to_owned();
    let rerun = s
        .wait_for("mixed", "retried and finished again", |j| {
            j["status"]["retried"].as_str() == Some(token.as_str())
                && phase(j) == "Succeeded"
                && j["status"]["completionTime"].as_str() != Some(first_done.as_str())
        })
        .await;
    assert_eq!(rerun["status"]["files"]["failed"], 3, "bad files fail again: {rerun}");
    assert_eq!(rerun["status"]["files"]["succeeded"], 16);
    let page = s.api.get("/api/jobs/mixed/results?limit=1000").await;
    let reasons: Vec<&str> = page.data()["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["reason"].as_str())
        .collect();
    assert_eq!(reasons.len(), 3, "{page:?}");
    let report = s.api.get("/api/jobs/mixed/report").await;
    assert_eq!(
        report.data()["report"]["failuresByReason"].as_object().map(|o| o.len()),
        Some(3)
    );
    s.stop().await;
}

/// Reads server-sent events from `path` until `until` holds for a `jobs`
/// event's data; returns every `jobs` event seen.
async fn read_events(api: &ApiServer, path: &str, until: impl Fn(&Value) -> bool) -> Vec<Value> {
    let res = api
        .client
        .get(api.url(path))
        .bearer_auth(READ_TOKEN)
        .send()
        .await
        .expect("events");
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap_or("")
            .starts_with("text/event-stream")
    );
    let mut body = res.bytes_stream();
    let mut buf = String::new();
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + FINISH;
    loop {
        let chunk = tokio::time::timeout_at(deadline, body.next())
            .await
            .expect("an event in time")
            .expect("stream open")
            .expect("chunk");
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let mut name = "";
            let mut data = String::new();
            for line in block.lines() {
                if let Some(n) = line.strip_prefix("event:") {
                    name = n.trim();
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push_str(d.trim_start());
                }
            }
            if name == "jobs" {
                let v: Value = serde_json::from_str(&data).expect("jobs data is JSON");
                let stop = until(&v);
                events.push(v);
                if stop {
                    return events;
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_stream_shows_progress_until_done() {
    let s = Stack::start(24, false, 1).await;
    assert_eq!(s.apply(s.job_yaml("live", "")).await.status, 201);
    let events = read_events(&s.api, "/api/jobs/live/events", |v| v[0]["phase"] == "Succeeded").await;
    let finished: Vec<u64> = events
        .iter()
        .filter_map(|v| {
            let f = &v[0]["files"];
            Some(f["succeeded"].as_u64()? + f["failed"].as_u64()?)
        })
        .collect();
    let mut distinct = finished.clone();
    distinct.dedup();
    assert!(distinct.len() >= 3, "progress seen moving: {finished:?}");
    assert!(
        finished.windows(2).all(|w| w[0] <= w[1]),
        "never backwards: {finished:?}"
    );
    assert!(
        events.iter().any(|v| v[0]["filesPerSecond"].as_f64() > Some(0.0)),
        "a throughput while running"
    );
    let all = read_events(&s.api, "/api/events", |v| {
        v.as_array().is_some_and(|a| a.iter().any(|j| j["name"] == "live"))
    })
    .await;
    assert_eq!(all.last().expect("one")[0]["files"]["total"], 24);
    let missing = s.api.get("/api/jobs/ghost/events").await;
    assert_eq!(missing.status, 404);
    s.stop().await;
}

/// Every route of the OpenAPI document with its path parameters filled.
fn documented_routes() -> Vec<(String, String, String)> {
    let doc = skep::http::openapi_document();
    let mut out = Vec::new();
    for (path, ops) in doc["paths"].as_object().expect("paths") {
        for (method, op) in ops.as_object().expect("ops") {
            let mut concrete = path.clone();
            for p in op["parameters"].as_array().into_iter().flatten() {
                if p["in"] == "path" {
                    let name = p["name"].as_str().expect("name");
                    let value = if name == "role" { "worker" } else { "some-name" };
                    concrete = concrete.replace(&format!("{{{name}}}"), value);
                }
            }
            let scope = op["x-skep-scope"].as_str().expect("scope").to_owned();
            out.push((method.to_uppercase(), concrete, scope));
        }
    }
    out
}

#[tokio::test]
async fn every_route_needs_its_token_and_scope() {
    let dir = tempfile::tempdir().expect("tmp");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("s.db")).await.expect("store"));
    let api = ApiServer::start(store).await;
    let routes = documented_routes();
    assert!(routes.len() >= 10, "{routes:?}");
    let mut mutating = 0;
    for (method, path, scope) in &routes {
        // NB: a GET may need admin too (a join token is a secret).
        assert!(method == "GET" || scope == "admin", "{method} {path} has scope {scope}");
        let none = api.call(method, path, None, None).await;
        assert_eq!(none.status, 401, "{method} {path} without a token: {none:?}");
        assert!(!none.error().is_empty());
        let wrong = api.call(method, path, Some("not-a-known-token-at-all"), None).await;
        assert_eq!(wrong.status, 401, "{method} {path} with a wrong token: {wrong:?}");
        if scope == "read" {
            // NB: the status only: an event stream's body never ends.
            let status = api
                .client
                .get(api.url(path))
                .bearer_auth(READ_TOKEN)
                .send()
                .await
                .expect("send")
                .status()
                .as_u16();
            assert!(
                ![401, 403].contains(&status),
                "{method} {path} refused a read token: {status}"
            );
        } else {
            let read = api.call(method, path, Some(READ_TOKEN), None).await;
            mutating += 1;
            assert_eq!(read.status, 403, "{method} {path} with a read token: {read:?}");
            assert!(read.error().contains("admin"), "{read:?}");
        }
    }
    assert!(mutating >= 6, "mutating routes checked: {mutating}");
    for open in ["/livez", "/metrics", "/api/openapi.json", "/"] {
        let res = reqwest::get(api.url(open)).await.expect("open route");
        assert_eq!(res.status(), 200, "{open} is open");
    }
    assert_eq!(
        reqwest::get(api.url("/readyz")).await.expect("readyz").status(),
        503,
        "not ready yet"
    );
    api.ready.set(true);
    assert_eq!(reqwest::get(api.url("/readyz")).await.expect("readyz").status(), 200);
    let unknown = api.call("GET", "/api/nothing-here", Some(ADMIN_TOKEN), None).await;
    assert_eq!(unknown.status, 404);
    assert!(unknown.error().contains("no route"));
    let wrong_method = api.call("PATCH", "/api/jobs", Some(ADMIN_TOKEN), None).await;
    assert_eq!(wrong_method.status, 405);
    assert!(wrong_method.error().contains("PATCH"));
    let unknown_closed = api.call("POST", "/api/nothing-here", None, None).await;
    assert_eq!(unknown_closed.status, 401, "closed by default");
}

#[tokio::test]
async fn errors_have_one_shape_and_the_right_status() {
    let dir = tempfile::tempdir().expect("tmp");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("s.db")).await.expect("store"));
    let api = ApiServer::start(store).await;
    let huge = "x".repeat(skep::http::MAX_BODY + 1);
    let too_large = api
        .call("POST", "/api/jobs", Some(ADMIN_TOKEN), Some(("application/yaml", huge)))
        .await;
    assert_eq!(too_large.status, 413, "{:?}", too_large.status);
    assert!(!too_large.error().is_empty());
    let not_utf8 = api
        .client
        .post(api.url("/api/jobs"))
        .bearer_auth(ADMIN_TOKEN)
        .body(vec![0xff, 0xfe, 0x00])
        .send()
        .await
        .expect("send");
    assert_eq!(not_utf8.status(), 400);
    let unknown_query = api.get("/api/jobs?bogus=1").await;
    assert_eq!(unknown_query.status, 400, "{unknown_query:?}");
    for (method, path) in [
        ("POST", "/api/jobs/ghost/suspend"),
        ("POST", "/api/jobs/ghost/retry"),
        ("DELETE", "/api/jobs/ghost"),
    ] {
        let a = api.admin(method, path, None).await;
        assert_eq!(a.status, 404, "{method} {path}: {a:?}");
        assert!(a.error().contains("ghost"));
    }
}

#[test]
fn the_openapi_document_names_every_operation_once() {
    let doc = skep::http::openapi_document();
    assert_eq!(doc["openapi"], "3.1.0");
    let mut ids = std::collections::BTreeSet::new();
    for (path, ops) in doc["paths"].as_object().expect("paths") {
        for (method, op) in ops.as_object().expect("ops") {
            let id = op["operationId"].as_str().expect("operationId");
            assert!(ids.insert(id.to_owned()), "operationId {id} twice");
            for p in op["parameters"].as_array().into_iter().flatten() {
                if p["in"] == "path" {
                    let name = p["name"].as_str().expect("name");
                    assert!(path.contains(&format!("{{{name}}}")), "{method} {path}: {name}");
                }
            }
            assert!(op["responses"].as_object().is_some_and(|r| r.contains_key("401")));
        }
    }
    assert!(doc["components"]["schemas"]["BulkJob"]["properties"]["spec"].is_object());
    let text = doc.to_string();
    assert!(
        !text.contains("#/$defs/"),
        "every reference resolves inside the document"
    );
    for r in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = &r[..r.find('"').expect("end")];
        assert!(doc["components"]["schemas"][name].is_object(), "dangling $ref {name}");
    }
}
