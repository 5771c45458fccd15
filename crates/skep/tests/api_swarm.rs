//! The REST API's `/api/swarm` routes through real HTTP against the real
//! Docker daemon of this machine (a single-node swarm manager: `docker
//! swarm init --advertise-addr 127.0.0.1`), with services of the local
//! image `SKEP_TEST_IMAGE` (default `skep-base:bookworm`; nothing is
//! pulled). What the API did is checked with separate Docker calls. Every
//! test names its stack with its own random prefix and removes its
//! services afterwards, pass or fail; the node drained by one test is made
//! active again, pass or fail, and no other test runs meanwhile.
//!
//! Never called here: leave with `force`, init with `forceNewCluster`.
//!
//! Runs when `SKEP_TEST_SWARM=1`; otherwise skips with a note, except under
//! `CI=true`, where it fails: CI must run it.

mod common;

use common::swarm::{docker, enabled, image};

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use bollard::models::NodeSpecAvailabilityEnum;
use bollard::query_parameters::{
    ListServicesOptions, ListTasksOptions, RemoveImageOptions, TagImageOptions, UpdateNodeOptions,
};
use common::api::{ADMIN_TOKEN, Answer, ApiServer, READ_TOKEN};
use futures::StreamExt;
use serde_json::{Value, json};
use skep::store::{SqliteStore, Store};
use tokio::sync::RwLock;

/// Long enough for a few containers to start on a busy 2-core machine.
const CONVERGE: Duration = Duration::from_secs(90);
const STACK_LABEL: &str = "com.docker.stack.namespace";

/// Held for reading by every test that needs this node active, for
/// writing by the one that drains it.
static NODE: RwLock<()> = RwLock::const_new(());

/// A fresh store and the API over it.
async fn server() -> (tempfile::TempDir, ApiServer) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("skep.db")).await.expect("store"));
    (dir, ApiServer::start(store).await)
}

fn random(n: usize) -> String {
    uuid::Uuid::new_v4().simple().to_string()[..n].to_owned()
}

/// Runs `f` on a runtime of its own on another thread: for `Drop`, which
/// cannot await and may run inside the test's runtime.
fn block_on_the_side<F, Fut>(f: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let done = std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
            return;
        };
        rt.block_on(f());
    });
    let _ = done.join();
}

/// Removes every service named with `prefix`, and the image tags made,
/// when dropped.
struct Cleanup {
    prefix: String,
    tags: Vec<String>,
}

impl Cleanup {
    fn new(prefix: String) -> Self {
        Self {
            prefix,
            tags: Vec::new(),
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let prefix = self.prefix.clone();
        let tags = std::mem::take(&mut self.tags);
        block_on_the_side(move || async move {
            let d = docker().await;
            for s in d.list_services(None::<ListServicesOptions>).await.unwrap_or_default() {
                let name = s.spec.and_then(|s| s.name).unwrap_or_default();
                if name.starts_with(&prefix) {
                    let _ = d.delete_service(&name).await;
                }
            }
            for tag in tags {
                // NB: a tag of an image a container still uses is refused
                // until the service's containers are gone.
                for _ in 0..30 {
                    let options = RemoveImageOptions {
                        noprune: true,
                        ..Default::default()
                    };
                    if d.remove_image(&tag, Some(options), None).await.is_ok() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        });
    }
}

/// Makes this node active again when dropped.
struct Reactivate {
    node: String,
}

async fn set_availability(d: &Docker, node: &str, a: NodeSpecAvailabilityEnum) {
    let n = d.inspect_node(node).await.expect("node");
    let mut spec = n.spec.expect("node spec");
    spec.availability = Some(a);
    let version = n.version.and_then(|v| v.index).expect("node version") as i64;
    d.update_node(node, spec, UpdateNodeOptions { version })
        .await
        .expect("node updated");
}

impl Drop for Reactivate {
    fn drop(&mut self) {
        let node = self.node.clone();
        block_on_the_side(move || async move {
            let d = docker().await;
            let n = d.inspect_node(&node).await.expect("node");
            if n.spec.and_then(|s| s.availability) != Some(NodeSpecAvailabilityEnum::ACTIVE) {
                set_availability(&d, &node, NodeSpecAvailabilityEnum::ACTIVE).await;
            }
        });
    }
}

async fn eventually<F, Fut>(what: &str, mut check: F) -> Value
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Value, String>>,
{
    let deadline = tokio::time::Instant::now() + CONVERGE;
    loop {
        match check().await {
            Ok(v) => return v,
            Err(last) if tokio::time::Instant::now() >= deadline => panic!("{what}: not after {CONVERGE:?}: {last}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// This node's id and hostname, as Docker says.
async fn this_node(d: &Docker) -> (String, String) {
    let info = d.info().await.expect("info");
    let id = info.swarm.and_then(|s| s.node_id).expect("a swarm node");
    let hostname = d
        .inspect_node(&id)
        .await
        .expect("node")
        .description
        .and_then(|d| d.hostname)
        .expect("hostname");
    (id, hostname)
}

fn expect_status(a: &Answer, status: u16, what: &str) {
    assert_eq!(a.status, status, "{what}: {a:?}");
    if status >= 400 {
        assert!(!a.error().is_empty(), "{what}: {a:?}");
    }
}

async fn put_stack(api: &ApiServer, stack: &str, compose: &str) -> Answer {
    api.call(
        "PUT",
        &format!("/api/swarm/stacks/{stack}"),
        Some(ADMIN_TOKEN),
        Some(("application/yaml", compose.to_owned())),
    )
    .await
}

/// Tasks of `service` (a name) in state running, by their image.
async fn running_tasks(d: &Docker, service: &str) -> Vec<String> {
    let options = ListTasksOptions {
        filters: Some(
            [
                ("service".to_owned(), vec![service.to_owned()]),
                ("desired-state".to_owned(), vec!["running".to_owned()]),
            ]
            .into(),
        ),
    };
    d.list_tasks(Some(options))
        .await
        .expect("tasks")
        .into_iter()
        .filter(|t| t.status.as_ref().and_then(|s| s.state) == Some(bollard::models::TaskState::RUNNING))
        .map(|t| {
            t.spec
                .and_then(|s| s.container_spec)
                .and_then(|c| c.image)
                .unwrap_or_default()
        })
        .collect()
}

async fn spec_replicas(d: &Docker, service: &str) -> i64 {
    d.inspect_service(service, None)
        .await
        .expect("service")
        .spec
        .and_then(|s| s.mode)
        .and_then(|m| m.replicated)
        .and_then(|r| r.replicas)
        .expect("replicated")
}

/// The data of the first `swarm` event of `GET /api/events`.
async fn first_swarm_event(api: &ApiServer) -> Value {
    let res = api
        .client
        .get(api.url("/api/events"))
        .bearer_auth(READ_TOKEN)
        .send()
        .await
        .expect("events");
    assert_eq!(res.status().as_u16(), 200);
    let mut body = res.bytes_stream();
    let mut text = String::new();
    let read = async {
        while let Some(chunk) = body.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk.expect("chunk")));
            // NB: events end with a blank line; `data:` may come in pieces.
            while let Some(end) = text.find("\n\n") {
                let event: String = text.drain(..end + 2).collect();
                if event.lines().any(|l| l == "event: swarm") {
                    let data: String = event
                        .lines()
                        .filter_map(|l| l.strip_prefix("data:"))
                        .map(str::trim_start)
                        .collect::<Vec<_>>()
                        .join("\n");
                    return serde_json::from_str(&data).expect("swarm event is JSON");
                }
            }
        }
        panic!("the event stream ended without a swarm event");
    };
    tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .expect("a swarm event within 20 s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_join_tokens_init_and_leave() {
    if !enabled("swarm API") {
        return;
    }
    let _node = NODE.read().await;
    let (_dir, api) = server().await;
    let d = docker().await;
    let swarm = d.inspect_swarm().await.expect("this node is a swarm manager");
    let (node_id, _) = this_node(&d).await;

    let a = api.get("/api/swarm/info").await;
    expect_status(&a, 200, "info");
    let info = a.data();
    assert_eq!(info["id"].as_str(), swarm.id.as_deref(), "{info}");
    assert_eq!(info["node"]["id"].as_str(), Some(node_id.as_str()));
    assert_eq!(info["node"]["state"], "active");
    assert_eq!(info["node"]["manager"], true);
    assert!(
        info["nodes"].as_i64() >= Some(1) && info["managers"].as_i64() >= Some(1),
        "{info}"
    );
    assert!(info["raft"]["electionTick"].is_i64(), "{info}");
    assert!(
        info["dispatcher"]["heartbeatPeriodSeconds"].as_f64() > Some(0.0),
        "{info}"
    );
    let join_addr = info["joinAddr"].as_str().expect("joinAddr").to_owned();
    assert!(join_addr.ends_with(":2377"), "{join_addr}");

    let tokens = swarm.join_tokens.expect("join tokens");
    for (role, token) in [("worker", tokens.worker), ("manager", tokens.manager)] {
        let token = token.expect("token");
        let a = api.admin("GET", &format!("/api/swarm/join-token/{role}"), None).await;
        expect_status(&a, 200, role);
        assert_eq!(a.data()["role"], role);
        assert_eq!(a.data()["token"].as_str(), Some(token.as_str()));
        assert_eq!(
            a.data()["command"].as_str(),
            Some(format!("docker swarm join --token {token} {join_addr}").as_str())
        );
    }
    let a = api.get("/api/swarm/join-token/worker").await;
    expect_status(&a, 403, "a join token is not for a read-only token");
    let a = api.admin("GET", "/api/swarm/join-token/admiral", None).await;
    expect_status(&a, 400, "a bad role");

    let a = api.admin("POST", "/api/swarm/init", Some(json!({}))).await;
    expect_status(&a, 409, "init on a swarm node");
    assert!(a.error().contains("already part of a swarm"), "{a:?}");
    let a = api
        .admin(
            "POST",
            "/api/swarm/init",
            Some(json!({"advertiseAddr": "not an address"})),
        )
        .await;
    expect_status(&a, 400, "init with a bad address");
    let a = api
        .admin("POST", "/api/swarm/init", Some(json!({"nonsense": true})))
        .await;
    expect_status(&a, 400, "init with an unknown field");

    let a = api.admin("POST", "/api/swarm/leave", None).await;
    expect_status(&a, 409, "leave on the last manager without force");
    assert!(a.error().contains("manager") && a.error().contains("force"), "{a:?}");
    let a = api.admin("POST", "/api/swarm/leave?force=maybe", None).await;
    expect_status(&a, 400, "leave with a bad force");
    let still = d.info().await.expect("info").swarm.expect("swarm");
    assert_eq!(still.local_node_state, Some(bollard::models::LocalNodeState::ACTIVE));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_are_listed_inspected_and_the_only_one_is_not_removed() {
    if !enabled("swarm API") {
        return;
    }
    let _node = NODE.read().await;
    let (_dir, api) = server().await;
    let d = docker().await;
    let (id, hostname) = this_node(&d).await;
    let ncpu = d.info().await.expect("info").ncpu.expect("NCPU");

    let a = api.get("/api/swarm/nodes").await;
    expect_status(&a, 200, "nodes");
    let nodes = a.data().as_array().expect("a list").clone();
    assert_eq!(nodes.len(), d.list_nodes(None).await.expect("nodes").len());
    let me = nodes.iter().find(|n| n["id"] == id.as_str()).expect("this node listed");
    assert_eq!(me["hostname"], hostname.as_str());
    assert_eq!(me["role"], "manager");
    assert_eq!(me["leader"], true);
    assert_eq!(me["state"], "ready");
    assert_eq!(me["availability"], "active");
    assert_eq!(me["cpus"].as_f64(), Some(ncpu as f64));
    assert!(
        me["memoryBytes"].as_i64() > Some(0) && me["version"].as_u64() > Some(0),
        "{me}"
    );

    for by in [id.as_str(), hostname.as_str()] {
        let a = api.get(&format!("/api/swarm/nodes/{by}")).await;
        expect_status(&a, 200, by);
        assert_eq!(a.data()["id"], id.as_str());
    }
    let a = api.get(&format!("/api/swarm/nodes/nosuchnode{}", random(8))).await;
    expect_status(&a, 404, "an unknown node");
    let a = api.get(&format!("/api/swarm/nodes/{}", &id[..4])).await;
    expect_status(&a, 404, "a prefix of the node's id names no node");
    for bad in ["-x", "a%20b", "%2Ex", "a%2Fb"] {
        let a = api.get(&format!("/api/swarm/nodes/{bad}")).await;
        expect_status(&a, 400, bad);
    }

    let a = api.admin("DELETE", &format!("/api/swarm/nodes/{id}"), None).await;
    assert!((400..500).contains(&a.status), "removing the only manager: {a:?}");
    assert!(a.error().contains("manager"), "{a:?}");
    d.inspect_node(&id).await.expect("the node is still there");
    let a = api
        .admin("DELETE", &format!("/api/swarm/nodes/nosuchnode{}", random(8)), None)
        .await;
    expect_status(&a, 404, "removing an unknown node");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_is_drained_and_made_active_again() {
    if !enabled("swarm API") {
        return;
    }
    let _node = NODE.write().await;
    let (_dir, api) = server().await;
    let d = docker().await;
    let (id, _) = this_node(&d).await;
    let path = format!("/api/swarm/nodes/{id}/availability");

    let a = api.admin("PUT", &path, Some(json!({"availability": "sleepy"}))).await;
    expect_status(&a, 400, "a bad availability");
    let a = api.admin("PUT", &path, Some(json!({}))).await;
    expect_status(&a, 400, "no availability");

    let before = api.get(&format!("/api/swarm/nodes/{id}")).await.data()["version"]
        .as_u64()
        .expect("version");
    let _restore = Reactivate { node: id.clone() };
    let a = api
        .admin("PUT", &path, Some(json!({"availability": "drain", "version": before})))
        .await;
    expect_status(&a, 200, "drain");
    assert_eq!(a.data()["availability"], "drain");
    let spec = d.inspect_node(&id).await.expect("node").spec.expect("spec");
    assert_eq!(spec.availability, Some(NodeSpecAvailabilityEnum::DRAIN));

    let a = api
        .admin("PUT", &path, Some(json!({"availability": "active", "version": before})))
        .await;
    expect_status(&a, 409, "a stale version");

    let a = api.get("/api/swarm/health").await;
    expect_status(&a, 200, "health while drained");
    assert_eq!(a.data()["status"], "unhealthy", "no node takes tasks: {:?}", a.data());

    let a = api.admin("PUT", &path, Some(json!({"availability": "active"}))).await;
    expect_status(&a, 200, "active");
    assert_eq!(a.data()["availability"], "active");
    let spec = d.inspect_node(&id).await.expect("node").spec.expect("spec");
    assert_eq!(spec.availability, Some(NodeSpecAvailabilityEnum::ACTIVE));
}

fn compose(image: &str, replicas: u32) -> String {
    format!(
        "\
version: '3.8'
services:
  app:
    image: {image}
    command: sh -c 'echo hello-from-skep; echo oops-from-skep >&2; exec sleep infinity'
    stop_grace_period: 1s
    environment:
      GREETING: hello
      COUNT: 3
    labels:
      team: ocr
    deploy:
      replicas: {replicas}
      labels: {{tier: test}}
      resources:
        limits: {{memory: 64M}}
        reservations: {{cpus: '0.01'}}
  agent:
    image: {image}
    command: [sleep, infinity]
    stop_grace_period: 1s
    deploy:
      mode: global
"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_of_a_stack_are_deployed_scaled_updated_and_removed() {
    if !enabled("swarm API") {
        return;
    }
    let _node = NODE.read().await;
    let (_dir, api) = server().await;
    let d = docker().await;
    let (_, hostname) = this_node(&d).await;
    let stack = format!("skt-{}-api", random(8));
    let mut guard = Cleanup::new(format!("{stack}_"));
    let app = format!("{stack}_app");
    let agent = format!("{stack}_agent");
    let image = image();

    // Deploy.
    let a = put_stack(&api, &stack, &compose(&image, 1)).await;
    expect_status(&a, 200, "deploy");
    let mut names: Vec<&str> = a.data()["services"]
        .as_array()
        .expect("services")
        .iter()
        .map(|s| {
            assert_eq!(s["action"], "created");
            s["name"].as_str().expect("name")
        })
        .collect();
    names.sort_unstable();
    assert_eq!(names, [agent.as_str(), app.as_str()]);
    let spec = d
        .inspect_service(&app, None)
        .await
        .expect("app exists")
        .spec
        .expect("spec");
    assert_eq!(
        spec.labels
            .as_ref()
            .and_then(|l| l.get(STACK_LABEL))
            .map(String::as_str),
        Some(stack.as_str())
    );
    assert_eq!(
        spec.labels.as_ref().and_then(|l| l.get("tier")).map(String::as_str),
        Some("test")
    );
    let task = spec.task_template.expect("task template");
    let c = task.container_spec.expect("container spec");
    assert_eq!(c.image.as_deref(), Some(image.as_str()));
    assert_eq!(c.args.as_ref().map(Vec::len), Some(3), "{:?}", c.args);
    let env = c.env.unwrap_or_default();
    assert!(
        env.contains(&"GREETING=hello".to_owned()) && env.contains(&"COUNT=3".to_owned()),
        "{env:?}"
    );
    assert_eq!(c.labels.and_then(|l| l.get("team").cloned()).as_deref(), Some("ocr"));
    let resources = task.resources.expect("resources");
    assert_eq!(resources.limits.and_then(|l| l.memory_bytes), Some(64 << 20));
    assert_eq!(resources.reservations.and_then(|r| r.nano_cpus), Some(10_000_000));

    // List, inspect, run.
    let a = api.get(&format!("/api/swarm/services?stack={stack}")).await;
    expect_status(&a, 200, "services of the stack");
    let listed = a.data().as_array().expect("a list").clone();
    assert_eq!(listed.len(), 2, "{listed:?}");
    let listed_app = listed.iter().find(|s| s["name"] == app.as_str()).expect("app listed");
    assert_eq!(listed_app["stack"], stack.as_str());
    assert_eq!(listed_app["mode"], "replicated");
    assert_eq!(listed_app["replicas"]["desired"], 1);
    let listed_agent = listed
        .iter()
        .find(|s| s["name"] == agent.as_str())
        .expect("agent listed");
    assert_eq!(listed_agent["mode"], "global");
    let a = api
        .get(&format!("/api/swarm/services?stack=skt-none-{}", random(8)))
        .await;
    assert_eq!(a.data().as_array().map(Vec::len), Some(0));

    let running = eventually("app running 1", || async {
        let a = api.get(&format!("/api/swarm/services/{app}")).await;
        let v = a.data().clone();
        if v["replicas"]["running"] == 1 {
            Ok(v)
        } else {
            Err(format!("{v}"))
        }
    })
    .await;
    assert_eq!(running["image"], image.as_str());
    let version = running["version"].as_u64().expect("version");
    let id = running["id"].as_str().expect("id");
    let a = api.get(&format!("/api/swarm/services/{id}")).await;
    assert_eq!(a.data()["name"], app.as_str(), "a service by its id");
    let a = api
        .admin("DELETE", &format!("/api/swarm/services/{}", &id[..4]), None)
        .await;
    expect_status(&a, 404, "a prefix of the service's id names no service");

    let a = api.get(&format!("/api/swarm/services/{app}/tasks")).await;
    expect_status(&a, 200, "tasks");
    let tasks = a.data().as_array().expect("a list").clone();
    assert!(
        tasks
            .iter()
            .any(|t| t["state"] == "running" && t["node"] == hostname.as_str()),
        "{tasks:?}"
    );

    let logs = eventually("the app's greeting in its logs", || async {
        let a = api.get(&format!("/api/swarm/services/{app}/logs?tail=50")).await;
        let lines = a.data()["lines"].clone();
        let has = |stream: &str, text: &str| {
            lines
                .as_array()
                .is_some_and(|ls| ls.iter().any(|l| l["stream"] == stream && l["text"] == text))
        };
        if has("stdout", "hello-from-skep") && has("stderr", "oops-from-skep") {
            Ok(a.data().clone())
        } else {
            Err(format!("{}", a.data()))
        }
    })
    .await;
    assert_eq!(logs["complete"], true, "{logs}");
    for bad in ["0", "10001", "-1", "many"] {
        let a = api.get(&format!("/api/swarm/services/{app}/logs?tail={bad}")).await;
        expect_status(&a, 400, &format!("tail={bad}"));
    }

    // The dashboard's overview.
    let overview = first_swarm_event(&api).await;
    assert!(
        overview["services"].as_array().is_some_and(|s| s
            .iter()
            .any(|s| s["name"] == app.as_str() && s["stack"] == stack.as_str())),
        "{overview}"
    );
    assert!(
        overview["nodes"]
            .as_array()
            .is_some_and(|n| n.iter().any(|n| n["hostname"] == hostname.as_str())),
        "{overview}"
    );
    assert!(overview["health"]["status"].is_string(), "{overview}");

    // Scale.
    let path = format!("/api/swarm/services/{app}/scale");
    let a = api
        .admin("POST", &path, Some(json!({"replicas": 2, "version": version})))
        .await;
    expect_status(&a, 200, "scale to 2");
    assert_eq!(a.data()["replicas"]["desired"], 2);
    assert_eq!(spec_replicas(&d, &app).await, 2);
    eventually("2 tasks running", || async {
        let n = running_tasks(&d, &app).await.len();
        if n == 2 {
            Ok(Value::Null)
        } else {
            Err(format!("{n} running"))
        }
    })
    .await;
    let a = api
        .admin("POST", &path, Some(json!({"replicas": 3, "version": version})))
        .await;
    expect_status(&a, 409, "scale at a stale version");
    assert_eq!(spec_replicas(&d, &app).await, 2, "the stale scale changed nothing");
    for body in [
        json!({"replicas": -1}),
        json!({"replicas": 10001}),
        json!({"replicas": "two"}),
        json!({}),
        json!({"replicas": 1, "extra": 1}),
    ] {
        let a = api.admin("POST", &path, Some(body.clone())).await;
        expect_status(&a, 400, &body.to_string());
    }
    let a = api
        .admin(
            "POST",
            &format!("/api/swarm/services/{agent}/scale"),
            Some(json!({"replicas": 2})),
        )
        .await;
    expect_status(&a, 409, "scale a global service");
    assert!(a.error().contains("global"), "{a:?}");

    // Health and statistics with the stack running.
    let a = api.get("/api/swarm/health").await;
    expect_status(&a, 200, "health");
    let health = a.data();
    let app_health = health["services"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == app.as_str()))
        .expect("app in health");
    assert_eq!(
        (app_health["desired"].as_u64(), app_health["running"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(app_health["status"], "healthy");
    assert!(
        health["nodes"]
            .as_array()
            .is_some_and(|n| n.iter().any(|n| n["status"] == "healthy"))
    );
    assert!(
        health["taskSuccessRate"].as_f64().is_some_and(|r| r > 0.0 && r <= 1.0),
        "{health}"
    );
    let a = api.get("/api/swarm/statistics").await;
    expect_status(&a, 200, "statistics");
    let stats = a.data();
    assert!(stats["services"]["total"].as_u64() >= Some(2), "{stats}");
    assert!(stats["services"]["byMode"]["global"].as_u64() >= Some(1), "{stats}");
    assert!(stats["services"]["stacks"].as_u64() >= Some(1), "{stats}");
    assert!(stats["tasks"]["byState"]["running"].as_u64() >= Some(3), "{stats}");
    let info = d.info().await.expect("info");
    assert_eq!(stats["resources"]["cpus"].as_f64(), info.ncpu.map(|n| n as f64));
    assert_eq!(stats["nodes"]["byRole"]["manager"].as_u64(), Some(1), "{stats}");
    let per_node = stats["runningTasksPerNode"].as_array().expect("per node");
    assert!(
        per_node
            .iter()
            .any(|n| n["hostname"] == hostname.as_str() && n["running"].as_u64() >= Some(3))
    );

    // Image: a new local tag of the same image (nothing can be pulled).
    let tag = format!("skt-{}", random(8));
    let (repo, _) = image.rsplit_once(':').unwrap_or((image.as_str(), "latest"));
    let tagged = format!("{repo}:{tag}");
    d.tag_image(
        &image,
        Some(TagImageOptions {
            repo: Some(repo.to_owned()),
            tag: Some(tag.clone()),
        }),
    )
    .await
    .expect("tag");
    guard.tags.push(tagged.clone());
    let current = api.get(&format!("/api/swarm/services/{app}")).await.data()["version"]
        .as_u64()
        .expect("version");
    let ipath = format!("/api/swarm/services/{app}/image");
    let a = api
        .admin("PUT", &ipath, Some(json!({"image": tagged, "version": current})))
        .await;
    expect_status(&a, 200, "image update");
    assert_eq!(a.data()["image"], tagged.as_str());
    let spec = d.inspect_service(&app, None).await.expect("app").spec.expect("spec");
    assert_eq!(
        spec.task_template
            .and_then(|t| t.container_spec)
            .and_then(|c| c.image)
            .as_deref(),
        Some(tagged.as_str())
    );
    eventually("2 tasks running the new tag", || async {
        let images = running_tasks(&d, &app).await;
        if images.len() == 2 && images.iter().all(|i| *i == tagged) {
            Ok(Value::Null)
        } else {
            Err(format!("{images:?}"))
        }
    })
    .await;
    let a = api.admin("PUT", &ipath, Some(json!({"image": "Not An Image"}))).await;
    expect_status(&a, 400, "a bad image");
    let a = api
        .admin("PUT", &ipath, Some(json!({"image": tagged, "version": current})))
        .await;
    expect_status(&a, 409, "image update at a stale version");

    // Stacks: list, redeploy, refusals.
    let a = api.get("/api/swarm/stacks").await;
    expect_status(&a, 200, "stacks");
    let listed = a.data().as_array().expect("a list");
    let mine = listed
        .iter()
        .find(|s| s["name"] == stack.as_str())
        .expect("the stack listed");
    assert_eq!(mine["services"], json!([agent, app]));

    let a = put_stack(&api, &stack, &compose(&image, 3)).await;
    expect_status(&a, 200, "redeploy");
    assert!(
        a.data()["services"]
            .as_array()
            .is_some_and(|s| s.iter().all(|s| s["action"] == "updated")),
        "{a:?}"
    );
    assert_eq!(spec_replicas(&d, &app).await, 3);
    let a = put_stack(
        &api,
        &stack,
        &compose(&image, 3).replace("mode: global", "mode: replicated"),
    )
    .await;
    expect_status(&a, 409, "a service's mode does not change");
    assert!(a.error().contains("mode change"), "{a:?}");

    for (body, needle) in [
        (
            format!("services:\n  web:\n    image: {image}\n    ports: ['8080:80']\n"),
            "services.web.ports",
        ),
        (
            "services:\n  worker:\n    command: [sleep, '1']\n".to_owned(),
            "\"worker\" has no image",
        ),
        ("services: [".to_owned(), "not valid yaml"),
        (
            format!("services:\n  web:\n    image: {image}\nvolumes:\n  data: {{}}\n"),
            "volumes",
        ),
    ] {
        let a = put_stack(&api, &stack, &body).await;
        expect_status(&a, 400, needle);
        assert!(a.error().contains(needle), "{needle}: {a:?}");
    }
    let a = put_stack(&api, "-bad", &compose(&image, 1)).await;
    expect_status(&a, 400, "a bad stack name");

    // Unknown and bad names.
    let nosuch = format!("skt-nosuch-{}", random(8));
    for (method, path, body) in [
        ("GET", format!("/api/swarm/services/{nosuch}"), None),
        ("GET", format!("/api/swarm/services/{nosuch}/tasks"), None),
        ("GET", format!("/api/swarm/services/{nosuch}/logs"), None),
        (
            "POST",
            format!("/api/swarm/services/{nosuch}/scale"),
            Some(json!({"replicas": 1})),
        ),
        (
            "PUT",
            format!("/api/swarm/services/{nosuch}/image"),
            Some(json!({"image": image})),
        ),
        ("DELETE", format!("/api/swarm/services/{nosuch}"), None),
        ("DELETE", format!("/api/swarm/stacks/{nosuch}"), None),
    ] {
        let a = api.admin(method, &path, body).await;
        expect_status(&a, 404, &format!("{method} {path}"));
    }
    for bad in ["-bad", "a%20b", "_x", &"x".repeat(64)] {
        let a = api.get(&format!("/api/swarm/services/{bad}")).await;
        expect_status(&a, 400, bad);
        let a = api
            .admin(
                "POST",
                &format!("/api/swarm/services/{bad}/scale"),
                Some(json!({"replicas": 1})),
            )
            .await;
        expect_status(&a, 400, bad);
    }
    let a = api.get("/api/swarm/services?stack=-bad").await;
    expect_status(&a, 400, "a bad stack filter");

    // Remove one service, then the stack.
    let a = api.admin("DELETE", &format!("/api/swarm/services/{agent}"), None).await;
    expect_status(&a, 200, "remove agent");
    let a = api.get(&format!("/api/swarm/services/{agent}")).await;
    expect_status(&a, 404, "agent gone");
    let a = api.admin("DELETE", &format!("/api/swarm/stacks/{stack}"), None).await;
    expect_status(&a, 200, "remove the stack");
    assert_eq!(a.data()["removed"], json!([app]));
    let left = d
        .list_services(Some(ListServicesOptions {
            filters: Some([("label".to_owned(), vec![format!("{STACK_LABEL}={stack}")])].into()),
            ..Default::default()
        }))
        .await
        .expect("services");
    assert!(left.is_empty(), "{left:?}");
    let a = api.admin("DELETE", &format!("/api/swarm/stacks/{stack}"), None).await;
    expect_status(&a, 404, "the stack is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_describes_every_swarm_route() {
    let (_dir, api) = server().await;
    let doc = api.call("GET", "/api/openapi.json", None, None).await.body;
    let paths = doc["paths"].as_object().expect("paths");
    for p in [
        "/api/swarm/info",
        "/api/swarm/init",
        "/api/swarm/leave",
        "/api/swarm/join-token/{role}",
        "/api/swarm/nodes",
        "/api/swarm/nodes/{id}",
        "/api/swarm/nodes/{id}/availability",
        "/api/swarm/services",
        "/api/swarm/services/{name}",
        "/api/swarm/services/{name}/scale",
        "/api/swarm/services/{name}/image",
        "/api/swarm/services/{name}/tasks",
        "/api/swarm/services/{name}/logs",
        "/api/swarm/health",
        "/api/swarm/statistics",
        "/api/swarm/stacks",
        "/api/swarm/stacks/{name}",
    ] {
        let ops = paths
            .get(p)
            .and_then(Value::as_object)
            .unwrap_or_else(|| panic!("{p} documented"));
        for (method, op) in ops {
            assert_eq!(op["tags"], json!(["swarm"]), "{method} {p}");
            assert!(op["operationId"].is_string(), "{method} {p}");
        }
    }
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    for s in [
        "ServiceView",
        "NodeView",
        "HealthView",
        "TaskView",
        "SwarmInfo",
        "SwarmStatistics",
        "ComposeFile",
    ] {
        assert!(schemas.contains_key(s), "{s}");
    }
    // Every $ref points at a schema that exists.
    let text = doc.to_string();
    for r in text.split("\"#/components/schemas/").skip(1) {
        let name = r.split('"').next().expect("name");
        assert!(schemas.contains_key(name), "dangling $ref {name}");
    }
}

/// Creates a service of 0 replicas through Docker itself (not skep).
async fn foreign_service(d: &Docker, name: &str, labels: &[(&str, &str)], socket: bool) {
    use bollard::models::{
        Mount, MountType, ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated, TaskSpec, TaskSpecContainerSpec,
    };
    let spec = ServiceSpec {
        name: Some(name.to_owned()),
        labels: Some(labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()),
        task_template: Some(TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                image: Some(image()),
                args: Some(vec!["sleep".into(), "600".into()]),
                env: Some(vec!["SECRET_IN_ENV=do-not-show".into()]),
                mounts: socket.then(|| {
                    vec![Mount {
                        source: Some("/var/run/docker.sock".into()),
                        target: Some("/var/run/docker.sock".into()),
                        typ: Some(MountType::BIND),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        mode: Some(ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated { replicas: Some(0) }),
            ..Default::default()
        }),
        ..Default::default()
    };
    d.create_service(spec, None)
        .await
        .expect("create a service through Docker");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_skep_does_not_own_are_left_alone() {
    if !enabled("swarm API") {
        return;
    }
    let _node = NODE.read().await;
    let prefix = format!("t{}", random(6));
    let _cleanup = Cleanup::new(prefix.clone());
    let d = docker().await;
    let foreign = format!("{prefix}-foreign");
    let socket = format!("{prefix}-socket");
    foreign_service(&d, &foreign, &[], false).await;
    foreign_service(&d, &socket, &[("dev.skep.owned", "true")], true).await;
    let (_dir, api) = server().await;
    for name in [&foreign, &socket] {
        let a = api
            .admin(
                "POST",
                &format!("/api/swarm/services/{name}/scale"),
                Some(json!({"replicas": 1})),
            )
            .await;
        expect_status(&a, 403, "scale a service skep may not change");
        assert!(a.error().contains("--api-manage-any-service"), "{a:?}");
        let a = api
            .admin(
                "PUT",
                &format!("/api/swarm/services/{name}/image"),
                Some(json!({"image": "busybox:1"})),
            )
            .await;
        expect_status(&a, 403, "change the image of a service skep may not change");
        let a = api.admin("DELETE", &format!("/api/swarm/services/{name}"), None).await;
        expect_status(&a, 403, "remove a service skep may not change");
        assert_eq!(spec_replicas(&d, name).await, 0, "nothing changed");
    }
    // Logs: a read token reads skep's services' only.
    let a = api.get(&format!("/api/swarm/services/{foreign}/logs")).await;
    expect_status(&a, 403, "a read token and another's logs");
    let a = api
        .call(
            "GET",
            &format!("/api/swarm/services/{foreign}/logs"),
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    expect_status(&a, 200, "an admin token reads any service's logs");

    // With --api-manage-any-service the admin may.
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("skep.db")).await.expect("store"));
    let any = ApiServer::start_opts(
        store,
        skep::http::Docker::from_env(),
        skep::http::Limits::default(),
        skep::paths::PathPolicy::Any,
        skep::http::SwarmPolicy {
            manage_any_service: true,
            ..Default::default()
        },
    )
    .await;
    let a = any
        .admin(
            "POST",
            &format!("/api/swarm/services/{foreign}/scale"),
            Some(json!({"replicas": 0})),
        )
        .await;
    expect_status(&a, 200, "scale with --api-manage-any-service");
}
