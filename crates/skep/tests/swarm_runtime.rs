//! The swarm runtime against the real Docker daemon of this machine (a
//! swarm manager: `docker swarm init --advertise-addr 127.0.0.1`), with
//! services of the local image `SKEP_TEST_IMAGE` (default
//! `skep-base:bookworm`, a Debian rootfs; nothing is pulled) running
//! `sleep infinity`. What the runtime did is checked with separate Docker
//! API calls, not through the runtime. Every test names its services with
//! its own random prefix and removes them afterwards, pass or fail.
//!
//! Runs when `SKEP_TEST_SWARM=1`; otherwise skips with a note, except under
//! `CI=true`, where it fails: CI must run it.

mod common;

use common::swarm::{docker, enabled, image};

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use bollard::models::{
    Mount, MountType, ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated, TaskSpec, TaskSpecContainerSpec,
};
use bollard::query_parameters::UpdateServiceOptions;
use skep::controller::{Controller, ControllerConfig};
use skep::runtime::swarm::{ServiceTemplate, SwarmConfig};
use skep::runtime::{Runtime, RuntimeError, RuntimeEvent, SwarmRuntime};
use skep::store::{SqliteStore, Store};
use skep_api::{BulkJob, BulkJobSpec};
use skep_queue::{MemoryQueue, TaskQueue};
use tokio_util::sync::CancellationToken;

/// Long enough for a few containers to start on a busy 2-core machine.
const CONVERGE: Duration = Duration::from_secs(90);

/// Removes every service named with `prefix` when dropped.
struct Cleanup {
    prefix: String,
}

impl Cleanup {
    fn new(test: &str) -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        Self {
            prefix: format!("skt-{}-{test}-", &id[..8]),
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let prefix = self.prefix.clone();
        // NB: Drop cannot await, and may run inside the test's runtime.
        let done = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            rt.block_on(async {
                let d = docker().await;
                for s in d.list_services(None).await.unwrap_or_default() {
                    let name = s.spec.and_then(|s| s.name).unwrap_or_default();
                    if name.starts_with(&prefix) {
                        let _ = d.delete_service(&name).await;
                    }
                }
            });
        });
        let _ = done.join();
    }
}

/// The password in the workers' queue URL: it must show nowhere in what
/// `docker service inspect` prints.
const PASSWORD: &str = "s3cret-in-a-secret";

fn template() -> ServiceTemplate {
    ServiceTemplate {
        args: vec!["sleep".into(), "infinity".into()],
        // NB: `sleep` as PID 1 ignores SIGTERM; do not wait 30 s for it.
        stop_grace_period: Duration::from_secs(1),
        queue: Some(format!("amqp://guest:{PASSWORD}@127.0.0.1:5672/%2f")),
        ..ServiceTemplate::new(image())
    }
}

async fn runtime(prefix: &str, template: Option<ServiceTemplate>) -> SwarmRuntime {
    let cfg = SwarmConfig {
        service_prefix: prefix.to_owned(),
        template,
        ..SwarmConfig::default()
    };
    SwarmRuntime::connect(cfg).await.expect("this node is a swarm manager")
}

/// The service's replica count and version, read with bollard directly.
async fn replicas(d: &Docker, name: &str) -> (i64, u64) {
    let s = d.inspect_service(name, None).await.expect("service exists");
    let n = s
        .spec
        .and_then(|s| s.mode)
        .and_then(|m| m.replicated)
        .and_then(|r| r.replicas)
        .expect("replicated");
    (n, s.version.and_then(|v| v.index).expect("version"))
}

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let deadline = tokio::time::Instant::now() + CONVERGE;
    loop {
        match check().await {
            Ok(()) => return,
            Err(last) if tokio::time::Instant::now() >= deadline => panic!("{what}: not after {CONVERGE:?}: {last}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

async fn this_hostname(d: &Docker) -> String {
    let info = d.info().await.expect("info");
    let id = info.swarm.and_then(|s| s.node_id).expect("a swarm node");
    d.inspect_node(&id)
        .await
        .expect("node")
        .description
        .and_then(|d| d.hostname)
        .expect("hostname")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scales_a_service_made_from_the_template_and_back_to_zero() {
    if !enabled("swarm runtime") {
        return;
    }
    let guard = Cleanup::new("tpl");
    let d = docker().await;
    let rt = runtime(&guard.prefix, Some(template())).await;
    let name = rt.service_name("a");

    rt.set_replicas("a", 3).await.expect("created at 3");
    let svc = d.inspect_service(&name, None).await.expect("service exists");
    let spec = svc.spec.expect("spec");
    let labels = spec.labels.clone().unwrap_or_default();
    assert_eq!(labels.get("dev.skep.owned").map(String::as_str), Some("true"));
    assert_eq!(labels.get("dev.skep.pool").map(String::as_str), Some("a"));
    let env = spec
        .task_template
        .and_then(|t| t.container_spec)
        .and_then(|c| c.env)
        .unwrap_or_default();
    assert!(env.contains(&"SKEP_POOL=a".to_owned()), "{env:?}");
    assert!(env.contains(&"SKEP_NODE={{.Node.Hostname}}".to_owned()), "{env:?}");
    assert!(
        env.contains(&"SKEP_QUEUE_FILE=/run/secrets/skep_queue".to_owned()),
        "{env:?}"
    );
    assert_eq!(replicas(&d, &name).await.0, 3);
    // The queue URL reaches the workers as a Docker secret, never in the
    // service's spec.
    let inspected = serde_json::to_string(&d.inspect_service(&name, None).await.expect("service")).expect("json");
    assert!(
        !inspected.contains(PASSWORD),
        "the password shows in docker service inspect"
    );
    assert!(
        inspected.contains("skep-queue-"),
        "the service names its queue secret: {inspected}"
    );

    let host = this_hostname(&d).await;
    eventually("3 replicas running on this node", || async {
        let s = rt.observe("a").await.map_err(|e| e.to_string())?;
        if s.desired == 3 && s.running == 3 && s.nodes == [host.clone()] {
            Ok(())
        } else {
            Err(format!("{s:?}"))
        }
    })
    .await;

    let before = replicas(&d, &name).await;
    rt.set_replicas("a", 3).await.expect("unchanged");
    assert_eq!(replicas(&d, &name).await, before, "the same count writes nothing");

    rt.set_replicas("a", 0).await.expect("scaled to 0");
    assert_eq!(replicas(&d, &name).await.0, 0);
    eventually("no replica running", || async {
        let s = rt.observe("a").await.map_err(|e| e.to_string())?;
        if s.desired == 0 && s.running == 0 && s.nodes.is_empty() {
            Ok(())
        } else {
            Err(format!("{s:?}"))
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_follows_this_nodes_cpus_and_the_constraints() {
    if !enabled("swarm runtime") {
        return;
    }
    let guard = Cleanup::new("cap");
    let d = docker().await;
    let info = d.info().await.expect("info");
    let cpus = info.ncpu.expect("NCPU");
    let memory = info.mem_total.expect("MemTotal");
    let reserve_memory: u64 = 64 << 20;
    let expected = (cpus * 2).min(memory / reserve_memory as i64);
    assert!(
        memory / (reserve_memory as i64) > cpus * 2,
        "this test wants CPUs to be the bound"
    );

    let tpl = ServiceTemplate {
        cpu_reservation: Some(0.5),
        memory_reservation: Some(reserve_memory),
        ..template()
    };
    let rt = runtime(&guard.prefix, Some(tpl.clone())).await;
    let c = rt.capacity("a").await.expect("capacity from the template");
    assert_eq!(
        (i64::from(c.replicas), c.nodes),
        (expected, 1),
        "0.5 CPU each on {cpus} CPUs"
    );

    // The same once the service exists: its own reservations count.
    rt.set_replicas("a", 1).await.expect("created");
    let c = rt.capacity("a").await.expect("capacity from the service");
    assert_eq!(i64::from(c.replicas), expected);

    let workers_only = ServiceTemplate {
        constraints: vec!["node.role==worker".into()],
        ..tpl
    };
    let rt = runtime(&guard.prefix, Some(workers_only)).await;
    let c = rt.capacity("b").await.expect("capacity");
    assert_eq!((c.replicas, c.nodes), (0, 0), "this node is a manager");
}

/// Writes a label to the service the way another tool would: read, change,
/// write at the version read, again on a conflict.
async fn add_label(d: &Docker, name: &str, key: &str) {
    for _ in 0..20 {
        let svc = d.inspect_service(name, None).await.expect("service");
        let mut spec = svc.spec.expect("spec");
        spec.labels
            .get_or_insert_with(Default::default)
            .insert(key.into(), "yes".into());
        let options = UpdateServiceOptions {
            version: svc.version.and_then(|v| v.index).expect("version") as i32,
            ..Default::default()
        };
        match d.update_service(name, spec, options, None).await {
            Ok(_) => return,
            Err(e) if e.to_string().contains("update out of sequence") => continue,
            Err(e) => panic!("out-of-band update: {e}"),
        }
    }
    panic!("out-of-band update kept conflicting");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_writers_neither_fail_nor_lose_changes() {
    if !enabled("swarm runtime") {
        return;
    }
    let guard = Cleanup::new("race");
    let d = docker().await;
    let rt = runtime(&guard.prefix, Some(template())).await;
    let name = rt.service_name("a");
    rt.set_replicas("a", 1).await.expect("created");

    let other = rt.clone();
    let (up, down, ()) = tokio::join!(rt.set_replicas("a", 10), other.set_replicas("a", 2), async {
        for i in 0..3 {
            add_label(&d, &name, &format!("oob-{i}")).await;
        }
    });
    up.expect("scale to 10");
    down.expect("scale to 2");
    let (n, _) = replicas(&d, &name).await;
    assert!(n == 10 || n == 2, "one of the two counts won, got {n}");
    let labels = d
        .inspect_service(&name, None)
        .await
        .expect("service")
        .spec
        .and_then(|s| s.labels)
        .unwrap_or_default();
    for i in 0..3 {
        assert!(
            labels.contains_key(&format!("oob-{i}")),
            "label oob-{i} lost: {labels:?}"
        );
    }
    assert_eq!(labels.get("dev.skep.pool").map(String::as_str), Some("a"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_service_is_scaled_with_its_spec_intact() {
    if !enabled("swarm runtime") {
        return;
    }
    let guard = Cleanup::new("stack");
    let d = docker().await;
    let name = format!("{}default", guard.prefix);
    let spec = ServiceSpec {
        name: Some(name.clone()),
        labels: Some([("com.docker.stack.namespace".to_owned(), "skep".to_owned())].into()),
        task_template: Some(TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                image: Some(image()),
                args: Some(vec!["sleep".into(), "infinity".into()]),
                env: Some(vec!["SKEP_POOL=default".into(), "SKEP_LOG=debug".into()]),
                mounts: Some(vec![Mount {
                    source: Some("/tmp".into()),
                    target: Some("/data".into()),
                    typ: Some(MountType::BIND),
                    read_only: Some(true),
                    ..Default::default()
                }]),
                stop_grace_period: Some(1_000_000_000),
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
    d.create_service(spec, None).await.expect("created by hand");
    let mut before = d
        .inspect_service(&name, None)
        .await
        .expect("service")
        .spec
        .expect("spec");

    let rt = runtime(&guard.prefix, None).await;
    rt.set_replicas("default", 2).await.expect("scaled");
    let after = d
        .inspect_service(&name, None)
        .await
        .expect("service")
        .spec
        .expect("spec");
    before.mode = Some(ServiceSpecMode {
        replicated: Some(ServiceSpecModeReplicated { replicas: Some(2) }),
        ..Default::default()
    });
    assert_eq!(after, before, "only the replica count changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_without_service_or_template_is_unknown() {
    if !enabled("swarm runtime") {
        return;
    }
    let guard = Cleanup::new("unknown");
    let rt = runtime(&guard.prefix, None).await;
    let e = rt.set_replicas("nope", 1).await;
    assert!(
        matches!(e, Err(RuntimeError::UnknownPool(ref p)) if p == "nope"),
        "{e:?}"
    );
    let e = rt.capacity("nope").await;
    assert!(matches!(e, Err(RuntimeError::UnknownPool(_))), "{e:?}");
    assert_eq!(rt.observe("nope").await.expect("observe"), Default::default());
    let names: Vec<String> = docker()
        .await
        .list_services(None)
        .await
        .expect("services")
        .into_iter()
        .filter_map(|s| s.spec.and_then(|s| s.name))
        .filter(|n| n.starts_with(&guard.prefix))
        .collect();
    assert!(names.is_empty(), "nothing was created: {names:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scale_change_is_an_event_naming_the_pool() {
    if !enabled("swarm runtime") {
        return;
    }
    use futures::StreamExt;
    let guard = Cleanup::new("events");
    let rt = runtime(&guard.prefix, Some(template())).await;
    let mut events = rt.events();
    let first = tokio::time::timeout(Duration::from_secs(10), events.next()).await;
    assert_eq!(
        first.ok().flatten(),
        Some(RuntimeEvent::Resync),
        "a subscription starts with a resync"
    );

    rt.set_replicas("ev", 1).await.expect("created");
    rt.set_replicas("ev", 2).await.expect("scaled");
    let seen = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(ev) = events.next().await {
            if ev == RuntimeEvent::Pool("ev".into()) {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(seen.ok(), Some(true), "an event naming pool `ev` within 10 s");
}

/// Sets the replica count the way `docker service scale` does.
async fn scale_by_hand(d: &Docker, name: &str, n: i64) {
    let svc = d.inspect_service(name, None).await.expect("service");
    let mut spec = svc.spec.expect("spec");
    spec.mode = Some(ServiceSpecMode {
        replicated: Some(ServiceSpecModeReplicated { replicas: Some(n) }),
        ..Default::default()
    });
    let options = UpdateServiceOptions {
        version: svc.version.and_then(|v| v.index).expect("version") as i32,
        ..Default::default()
    };
    d.update_service(name, spec, options, None)
        .await
        .expect("scaled by hand");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_restores_a_service_scaled_by_hand_without_waiting_for_a_resync() {
    if !enabled("swarm runtime") {
        return;
    }
    let guard = Cleanup::new("ctl");
    let d = docker().await;
    let ws = common::Workspace::new(4, None, false);
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&ws.path().join("skep.db")).await.expect("store"));
    // NB: nothing consumes this queue: the replicas only sleep, so the job
    // stays running and keeps wanting its replicas.
    let queue: Arc<dyn TaskQueue> = Arc::new(MemoryQueue::new());
    let swarm = runtime(&guard.prefix, Some(template())).await;
    let name = swarm.service_name("ctl");
    let cfg = ControllerConfig {
        // Only a runtime event can bring the pool back within the test.
        resync: Duration::from_secs(3600),
        running_requeue: Duration::from_millis(500),
        default_output_root: ws.path().join("out"),
        ..ControllerConfig::default()
    };
    let stop = CancellationToken::new();
    let rt: Arc<dyn Runtime> = Arc::new(swarm);
    let c = Controller::start(store.clone(), queue, rt, cfg, stop.clone(), |_| {})
        .await
        .expect("start")
        .expect("lease");
    let controller = tokio::spawn(c.wait());

    let mut spec = BulkJobSpec::for_path(ws.path().join("pages").to_string_lossy());
    spec.scaling.pool = "ctl".into();
    spec.scaling.min_replicas = 2;
    store.apply_job(BulkJob::new("ctl", spec)).await.expect("apply");
    eventually("the controller scales the pool to 2", || async {
        match d.inspect_service(&name, None).await {
            Ok(_) if replicas(&d, &name).await.0 == 2 => Ok(()),
            Ok(_) => Err(format!("{:?}", replicas(&d, &name).await)),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;

    scale_by_hand(&d, &name, 0).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (n, _) = replicas(&d, &name).await;
        if n == 2 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the pool stayed at {n} after being scaled by hand"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.cancel();
    controller.await.expect("join").expect("controller ran cleanly");
}

#[test]
fn the_swarm_runtime_refuses_an_in_process_queue() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_skep"))
        .args(["controller", "--runtime", "swarm", "--queue", "memory:"])
        .env("SKEP_STORE", format!("sqlite:{}", dir.path().join("skep.db").display()))
        .env_remove("SKEP_QUEUE_FILE")
        .output()
        .expect("runs skep");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--runtime swarm") && stderr.contains("memory:"),
        "{stderr}"
    );
}
