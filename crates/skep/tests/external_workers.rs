//! Workers the controller does not start (`--runtime external`): they
//! announce themselves by heartbeats, the pool's window grows with their
//! slots, they join and leave mid-job, and no file is lost or read twice.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use skep::controller::workers::Registry;
use skep::controller::{Controller, ControllerConfig};
use skep::runtime::{ExternalRuntime, Runtime};
use skep::store::{SqliteStore, Store};
use skep_api::{BulkJob, BulkJobSpec, Phase};
use skep_queue::{MemoryQueue, TaskQueue};
use skep_worker::{WorkerConfig, worker};
use tokio_util::sync::CancellationToken;

fn worker_cfg(id: &str, slots: usize) -> WorkerConfig {
    let mut cfg = WorkerConfig::new(id, format!("host-{id}"), skep_api::DEFAULT_POOL, slots);
    cfg.beat_interval = Some(Duration::from_millis(200));
    cfg.stop_grace = Duration::from_secs(30);
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_workers_join_and_leave_mid_job_and_nothing_is_lost() {
    let ws = common::Workspace::new(24, None, false);
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&ws.path().join("skep.db")).await.expect("store"));
    let queue: Arc<dyn TaskQueue> = Arc::new(MemoryQueue::new());
    let registry = Registry::new();
    let runtime = Arc::new(ExternalRuntime::new(registry.clone()));
    let cfg = ControllerConfig {
        running_requeue: Duration::from_millis(300),
        resync: Duration::from_secs(5),
        default_output_root: ws.path().join("out"),
        workers: registry.clone(),
        ..ControllerConfig::default()
    };
    let stop = CancellationToken::new();
    let rt: Arc<dyn Runtime> = runtime.clone();
    let controller = Controller::start(store.clone(), queue.clone(), rt, cfg, stop.clone(), |_| {})
        .await
        .expect("start")
        .expect("lease");
    let controller = tokio::spawn(controller.wait());

    // One worker of 3 slots first.
    let stop_a = CancellationToken::new();
    let a = tokio::spawn(worker::run(queue.clone(), worker_cfg("a", 3), stop_a.clone()));
    let mut spec = BulkJobSpec::for_path(ws.path().join("pages").to_string_lossy());
    spec.scaling.files_per_worker = 4;
    let name = "external";
    store.apply_job(BulkJob::new(name, spec)).await.expect("apply");

    // The window follows the live slots: more than one replica's worth of
    // files (2) is in flight at once.
    let mut most_dispatched = 0;
    let mut b = None;
    let stop_b = CancellationToken::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
    let done = loop {
        let job = store.get_job(name).await.expect("get").expect("job");
        let files = &job.status().files;
        most_dispatched = most_dispatched.max(files.dispatched);
        // A second worker joins once a few files are done; the first
        // leaves (finishing what it holds) once half are.
        if b.is_none() && files.succeeded >= 3 {
            b = Some(tokio::spawn(worker::run(
                queue.clone(),
                worker_cfg("b", 2),
                stop_b.clone(),
            )));
        }
        if files.succeeded >= 12 && !stop_a.is_cancelled() {
            stop_a.cancel();
        }
        if job.is_finished() {
            break job;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the job did not finish: {:?}",
            job.status()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(done.status().phase, Phase::Succeeded, "{:?}", done.status());
    assert_eq!(done.status().files.succeeded, 24);
    assert!(
        most_dispatched >= 5,
        "the window grew with the workers' slots: at most {most_dispatched} files in flight"
    );
    let report_a = a.await.expect("worker a");
    assert_eq!(report_a.handed_back, 0, "a finished what it held");

    // One result per file, by both workers.
    let lines = common::results(&ws.path().join("out").join(name));
    let paths: BTreeSet<&str> = lines.iter().filter_map(|l| l["path"].as_str()).collect();
    assert_eq!((lines.len(), paths.len()), (24, 24), "one result per file");
    let nodes: BTreeSet<&str> = lines.iter().filter_map(|l| l["node"].as_str()).collect();
    assert_eq!(nodes, BTreeSet::from(["host-a", "host-b"]), "both workers read files");

    // The registry: a left (its last beat said so), b is live.
    let listed = registry.list(chrono::Utc::now().timestamp_millis());
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        (listed[0].beat.id.as_str(), listed[0].beat.slots, listed[0].stale),
        ("b", 2, false)
    );
    assert!(listed[0].beat.succeeded > 0);
    let state = runtime.observe(skep_api::DEFAULT_POOL).await.expect("observe");
    assert_eq!((state.running, state.nodes.clone()), (1, vec!["host-b".to_owned()]));

    stop_b.cancel();
    let report_b = b.expect("b joined").await.expect("worker b");
    assert_eq!(
        report_a.succeeded + report_b.succeeded,
        24,
        "every file was read once, none twice ({report_a:?}, {report_b:?})"
    );
    stop.cancel();
    controller.await.expect("join").expect("controller ran cleanly");
}
