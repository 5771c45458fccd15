//! Allowed paths (`--allow-path`): a job naming a folder outside them is
//! refused over the API and, when it reaches the store another way, failed
//! by the controller (`PathNotAllowed`) without the folder being read or
//! written.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::api::ApiServer;
use serde_json::json;
use skep::controller::{Controller, ControllerConfig};
use skep::http::{Docker, Limits};
use skep::paths::PathPolicy;
use skep::runtime::{LocalRuntime, Runtime};
use skep::store::{SqliteStore, Store};
use skep_api::{BulkJob, BulkJobSpec, Phase};
use skep_queue::{MemoryQueue, TaskQueue};
use tokio_util::sync::CancellationToken;

/// `root/allowed/pages` (a few real pages) and `root/secret` (a page that
/// must never be read).
fn folders() -> (tempfile::TempDir, common::Workspace) {
    let root = tempfile::tempdir().expect("tempdir");
    let ws = common::Workspace::new(2, None, false);
    std::fs::create_dir_all(root.path().join("secret")).expect("secret");
    std::fs::write(root.path().join("secret/page.png"), b"not for you").expect("secret file");
    (root, ws)
}

fn job(name: &str, source: &Path, output: Option<&Path>) -> serde_json::Value {
    let mut spec = json!({"source": {"path": source}});
    if let Some(o) = output {
        spec["output"] = json!({"path": o});
    }
    json!({"apiVersion": "skep.dev/v1", "kind": "BulkJob", "metadata": {"name": name}, "spec": spec})
}

/// A controller on `store` with one local worker that allows only the
/// workspace's folder; its stop token and task.
async fn controller_allowing(
    ws: &common::Workspace,
    store: Arc<dyn Store>,
    resync: Duration,
) -> (CancellationToken, tokio::task::JoinHandle<skep::controller::Result<()>>) {
    let queue: Arc<dyn TaskQueue> = Arc::new(MemoryQueue::new());
    let runtime: Arc<dyn Runtime> = Arc::new(LocalRuntime::new(queue.clone(), 1));
    let cfg = ControllerConfig {
        running_requeue: Duration::from_millis(300),
        resync,
        scale_down_cooldown: Duration::ZERO,
        default_output_root: ws.path().join("default-out"),
        paths: PathPolicy::under(&[ws.path().to_path_buf()]).expect("policy"),
        ..ControllerConfig::default()
    };
    let stop = CancellationToken::new();
    let c = Controller::start(store, queue, runtime, cfg, stop.clone(), |_| {})
        .await
        .expect("start")
        .expect("lease");
    (stop, tokio::spawn(c.wait()))
}

#[tokio::test]
async fn the_api_refuses_folders_outside_the_allowed_ones() {
    let (root, ws) = folders();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&ws.path().join("skep.db")).await.expect("store"));
    let policy = PathPolicy::under(&[ws.path().to_path_buf()]).expect("policy");
    let api = ApiServer::start_opts(
        store.clone(),
        Docker::from_env(),
        Limits::default(),
        policy,
        Default::default(),
    )
    .await;
    let pages = ws.path().join("pages");

    let ok = api.admin("POST", "/api/jobs", Some(job("inside", &pages, None))).await;
    assert_eq!(ok.status, 201, "{ok:?}");

    let secret = root.path().join("secret");
    let cases = [
        (job("src", &secret, None), "spec.source.path"),
        (
            job("missing", &root.path().join("no-such-folder"), None),
            "spec.source.path",
        ),
        (job("out", &pages, Some(&root.path().join("out"))), "spec.output.path"),
        (
            job("dots", &ws.path().join("pages/../../../etc"), None),
            "spec.source.path",
        ),
    ];
    let mut messages = Vec::new();
    for (body, field) in cases {
        let a = api.admin("POST", "/api/jobs", Some(body)).await;
        assert_eq!(a.status, 400, "{a:?}");
        assert!(a.error().starts_with(field), "{a:?}");
        assert!(a.error().contains("not under a path this controller allows"), "{a:?}");
        messages.push(a.error().to_owned());
    }
    // Existing and missing folders are refused in the same words.
    let shape = |m: &str, p: &Path| m.replace(&p.display().to_string(), "PATH");
    assert_eq!(
        shape(&messages[0], &secret),
        shape(&messages[1], &root.path().join("no-such-folder"))
    );

    // A symlink inside the allowed folder that leads out of it.
    std::os::unix::fs::symlink(&secret, ws.path().join("way-out")).expect("symlink");
    let a = api
        .admin("POST", "/api/jobs", Some(job("link", &ws.path().join("way-out"), None)))
        .await;
    assert_eq!(a.status, 400, "{a:?}");
    let stored = store.list_jobs().await.expect("list");
    assert_eq!(
        stored.iter().map(|j| j.name()).collect::<Vec<_>>(),
        ["inside"],
        "nothing refused was stored"
    );
}

#[tokio::test]
async fn the_controller_fails_a_stored_job_outside_the_allowed_folders_without_touching_it() {
    let (root, ws) = folders();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&ws.path().join("skep.db")).await.expect("store"));
    let secret = root.path().join("secret");
    let out = root.path().join("planted-output");
    // Applied to the store directly (as `skep apply` on the store does):
    // the controller is the last line.
    let mut spec = BulkJobSpec::for_path(secret.to_str().expect("utf-8"));
    spec.output.path = Some(out.to_str().expect("utf-8").to_owned());
    store.apply_job(BulkJob::new("sneaky", spec)).await.expect("apply");
    let mut fine = BulkJobSpec::for_path(ws.path().join("pages").to_str().expect("utf-8"));
    fine.output.path = Some(ws.path().join("out").to_str().expect("utf-8").to_owned());
    store.apply_job(BulkJob::new("fine", fine)).await.expect("apply");

    let (stop, controller) = controller_allowing(&ws, store.clone(), Duration::from_secs(5)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let (sneaky, fine) = loop {
        let s = store.get_job("sneaky").await.expect("get").expect("sneaky");
        let f = store.get_job("fine").await.expect("get").expect("fine");
        if s.status().phase.is_finished() && f.status().phase.is_finished() {
            break (s, f);
        }
        assert!(tokio::time::Instant::now() < deadline, "the jobs did not finish");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    stop.cancel();
    controller.await.expect("join").expect("controller");

    assert_eq!(fine.status().phase, Phase::Succeeded, "an allowed job runs as before");
    let s = sneaky.status();
    assert_eq!(s.phase, Phase::Failed);
    let failed = s.condition("Failed").expect("a Failed condition");
    assert_eq!(failed.reason, "PathNotAllowed", "{failed:?}");
    assert!(failed.message.starts_with("spec.source.path: "), "{failed:?}");
    assert_eq!(s.files.total, 0, "the folder was never scanned");
    assert!(!out.exists(), "nothing was written to the refused output folder");
    assert_eq!(
        std::fs::read(secret.join("page.png")).expect("secret"),
        b"not for you",
        "the file is untouched"
    );
}

#[tokio::test]
async fn output_writes_follow_no_planted_symlink() {
    let (root, ws) = folders();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&ws.path().join("skep.db")).await.expect("store"));
    let victim = root.path().join("victim");
    std::fs::write(&victim, b"keep me").expect("victim");
    let elsewhere = root.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).expect("elsewhere");
    // Planted before the job: links at the temporary and final names of
    // results.jsonl, and a `text` folder that leads elsewhere.
    let out = ws.path().join("out");
    std::fs::create_dir_all(&out).expect("out");
    std::os::unix::fs::symlink(&victim, out.join("results.jsonl.tmp-skep")).expect("link");
    std::os::unix::fs::symlink(&victim, out.join("results.jsonl")).expect("link");
    std::os::unix::fs::symlink(&elsewhere, out.join("text")).expect("link");
    let mut spec = BulkJobSpec::for_path(ws.path().join("pages").to_str().expect("utf-8"));
    spec.output.path = Some(out.to_str().expect("utf-8").to_owned());
    store.apply_job(BulkJob::new("planted", spec)).await.expect("apply");

    let (stop, controller) = controller_allowing(&ws, store.clone(), Duration::from_secs(1)).await;
    let phase = || async {
        store
            .get_job("planted")
            .await
            .expect("get")
            .expect("job")
            .status()
            .phase
    };

    // Every file is read, but the outputs cannot be written through the
    // `text` link: the job does not finish, and nothing lands elsewhere.
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert!(!phase().await.is_finished(), "finished while text/ was a symlink");
    assert_eq!(
        std::fs::read_dir(&elsewhere).expect("elsewhere").count(),
        0,
        "nothing written through the link"
    );
    assert_eq!(std::fs::read(&victim).expect("victim"), b"keep me");

    // Once the link is gone the job finishes on its own.
    std::fs::remove_file(out.join("text")).expect("unlink");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while !phase().await.is_finished() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the job did not finish after the link went"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.cancel();
    controller.await.expect("join").expect("controller");
    assert_eq!(phase().await, Phase::Succeeded);
    assert_eq!(
        std::fs::read(&victim).expect("victim"),
        b"keep me",
        "the planted links were not written through"
    );
    assert!(
        !out.join("results.jsonl").is_symlink(),
        "results.jsonl replaced the link"
    );
    assert!(
        std::fs::read_to_string(out.join("results.jsonl"))
            .expect("results")
            .lines()
            .count()
            == 2
    );
    assert!(out.join("text").is_dir() && !out.join("text").is_symlink());
    assert_eq!(std::fs::read_dir(&elsewhere).expect("elsewhere").count(), 0);
}
