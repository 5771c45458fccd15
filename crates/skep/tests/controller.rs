//! The controller in-process on the embedded backends, with real workers
//! and real Tesseract: scaling decisions, scale-down mid-job, suspend and
//! resume, deletion while running, TTL.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use skep::controller::{Controller, ControllerConfig};
use skep::runtime::{Capacity, LocalRuntime, PoolState, Runtime};
use skep::store::{SqliteStore, Store};
use skep_api::{BulkJob, BulkJobSpec, Phase};
use skep_queue::{MemoryQueue, TaskQueue};
use tokio_util::sync::CancellationToken;

/// A local runtime that records every replica count it is asked for.
struct Recording {
    inner: LocalRuntime,
    asked: Mutex<Vec<u32>>,
    max_running: Mutex<u32>,
}

#[async_trait]
impl Runtime for Recording {
    fn backend(&self) -> &'static str {
        "recording"
    }
    fn slots_per_replica(&self) -> u32 {
        self.inner.slots_per_replica()
    }
    async fn capacity(&self, pool: &str) -> skep::runtime::Result<Capacity> {
        self.inner.capacity(pool).await
    }
    async fn set_replicas(&self, pool: &str, replicas: u32) -> skep::runtime::Result<()> {
        self.asked.lock().expect("lock").push(replicas);
        self.inner.set_replicas(pool, replicas).await
    }
    async fn observe(&self, pool: &str) -> skep::runtime::Result<PoolState> {
        let s = self.inner.observe(pool).await?;
        let mut m = self.max_running.lock().expect("lock");
        *m = (*m).max(s.running);
        Ok(s)
    }
}

struct Harness {
    ws: common::Workspace,
    store: Arc<dyn Store>,
    runtime: Arc<Recording>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<skep::controller::Result<()>>,
}

impl Harness {
    async fn start(pages: usize, capacity: u32, cooldown: Duration) -> Self {
        Self::start_with(pages, capacity, |cfg| cfg.scale_down_cooldown = cooldown).await
    }

    /// [`start`](Self::start) with the test's changes to the configuration.
    async fn start_with(pages: usize, capacity: u32, edit: impl FnOnce(&mut ControllerConfig)) -> Self {
        let ws = common::Workspace::new(pages, None, false);
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&ws.path().join("skep.db")).await.expect("store"));
        let queue: Arc<dyn TaskQueue> = Arc::new(MemoryQueue::new());
        let runtime = Arc::new(Recording {
            inner: LocalRuntime::new(queue.clone(), capacity),
            asked: Mutex::new(Vec::new()),
            max_running: Mutex::new(0),
        });
        let mut cfg = ControllerConfig {
            running_requeue: Duration::from_millis(500),
            resync: Duration::from_secs(5),
            lease_ttl: Duration::from_secs(15),
            default_output_root: ws.path().join("out"),
            ..ControllerConfig::default()
        };
        edit(&mut cfg);
        let stop = CancellationToken::new();
        let rt: Arc<dyn Runtime> = runtime.clone();
        let c = Controller::start(store.clone(), queue, rt, cfg, stop.clone(), |_| {})
            .await
            .expect("start")
            .expect("lease");
        let task = tokio::spawn(c.wait());
        Self {
            ws,
            store,
            runtime,
            stop,
            task,
        }
    }

    fn job(&self, name: &str) -> BulkJob {
        let mut spec = BulkJobSpec::for_path(self.ws.path().join("pages").to_string_lossy());
        spec.output.path = Some(self.ws.output(name).to_string_lossy().into_owned());
        BulkJob::new(name, spec)
    }

    async fn wait_for(&self, name: &str, what: &str, pred: impl Fn(&BulkJob) -> bool) -> BulkJob {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
        loop {
            if let Some(j) = self.store.get_job(name).await.expect("get")
                && pred(&j)
            {
                return j;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name}: timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn stop(self) -> Vec<u32> {
        self.stop.cancel();
        self.task.await.expect("join").expect("controller ran cleanly");
        self.runtime.inner.shutdown().await;
        self.runtime.asked.lock().expect("lock").clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scales_to_the_rule_capped_by_capacity_then_back_while_losing_nothing() {
    let h = Harness::start(24, 3, Duration::ZERO).await;
    let mut job = h.job("scale");
    job.spec.scaling.files_per_worker = 6; // 24 files -> 4 wanted, capacity 3
    job.spec.scaling.scale_back_to = 0;
    h.store.apply_job(job).await.expect("apply");
    let done = h.wait_for("scale", "the end", |j| j.is_finished()).await;
    let asked_at_end = h.runtime.asked.lock().expect("lock").clone();
    let max_running = *h.runtime.max_running.lock().expect("lock");
    let status = done.status();
    assert_eq!(status.phase, Phase::Succeeded);
    assert_eq!(
        (status.files.succeeded, status.files.failed),
        (24, 0),
        "no file lost while scaling down"
    );
    assert_eq!(
        asked_at_end.first(),
        Some(&3),
        "4 wanted, capped at capacity 3: {asked_at_end:?}"
    );
    assert!(max_running <= 3, "never more than capacity ran: {max_running}");
    // Scale-back happens just after the job finishes.
    let pool = loop {
        let p = h.runtime.observe("tesseract").await.expect("observe");
        if p.desired == 0 {
            break p;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(pool.desired, 0);
    let asked = h.stop().await;
    assert!(
        asked.windows(2).all(|w| w[1] <= w[0]),
        "the pool only shrinks as files finish: {asked:?}"
    );
    assert_eq!(asked.last(), Some(&0), "scaled back to scaleBackTo: {asked:?}");
    assert!(
        asked.len() >= 2,
        "scaled down at least once mid-job or at the end: {asked:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspend_holds_dispatch_and_resume_finishes() {
    let h = Harness::start(6, 2, Duration::ZERO).await;
    let mut job = h.job("pause");
    job.spec.suspend = true;
    h.store.apply_job(job.clone()).await.expect("apply");
    let j = h
        .wait_for("pause", "Suspended", |j| j.status().phase == Phase::Suspended)
        .await;
    assert_eq!(j.status().files.total, 6, "scanned while suspended");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let j = h.store.get_job("pause").await.expect("get").expect("job");
    assert_eq!(j.status().files.finished(), 0, "nothing ran while suspended");
    assert_eq!(j.status().files.dispatched, 0);
    assert_eq!(j.status().replicas.desired, 0);
    job.spec.suspend = false;
    let applied = h.store.apply_job(job).await.expect("resume");
    assert_eq!(applied.job.generation(), 2);
    let done = h.wait_for("pause", "the end", |j| j.is_finished()).await;
    assert_eq!(done.status().files.succeeded, 6);
    assert_eq!(done.status().observed_generation, Some(2));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_running_job_cleans_up_before_it_goes() {
    let h = Harness::start(20, 2, Duration::ZERO).await;
    let mut job = h.job("doomed");
    job.spec.scaling.files_per_worker = 5;
    h.store.apply_job(job).await.expect("apply");
    let j = h
        .wait_for("doomed", "some progress", |j| j.status().files.finished() >= 2)
        .await;
    assert!(j.has_finalizer(), "the controller put its finalizer on");
    let uid = j.uid().to_owned();
    h.store.request_delete("doomed").await.expect("delete");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while h.store.get_job("doomed").await.expect("get").is_some() {
        assert!(tokio::time::Instant::now() < deadline, "the job was never removed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        h.store.task_counts(&uid).await.expect("counts").files.total,
        0,
        "tasks purged"
    );
    let pool = h.runtime.observe("tesseract").await.expect("observe");
    assert_eq!(pool.desired, 0, "scaled back before the document went");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_job_with_a_ttl_is_deleted_and_its_output_kept() {
    let h = Harness::start(2, 2, Duration::ZERO).await;
    let mut job = h.job("brief");
    job.spec.ttl_seconds_after_finished = Some(1);
    h.store.apply_job(job).await.expect("apply");
    h.wait_for("brief", "the end", |j| j.is_finished()).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while h.store.get_job("brief").await.expect("get").is_some() {
        assert!(tokio::time::Instant::now() < deadline, "ttl never removed the job");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(h.ws.output("brief").join("results.jsonl").exists(), "the output stays");
    h.stop().await;
}

/// Split brain: another controller takes the lease while this one still
/// believes it leads (its next renewal is 20 s away). The store refuses
/// its first write by the lease's fencing token, so it writes nothing for
/// a job applied after the takeover, and steps down at once instead of at
/// its next renewal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposed_leader_is_fenced_off_and_steps_down_at_its_first_write() {
    let ttl = Duration::from_secs(60);
    let h = Harness::start_with(2, 1, |cfg| cfg.lease_ttl = ttl).await;

    // The lease as a second controller finds it once the first one's
    // renewals stopped reaching the store (its clock a TTL ahead).
    let now = chrono::Utc::now().timestamp_millis();
    let ttl_ms = ttl.as_millis() as i64;
    let taken = h
        .store
        .acquire_lease(skep::controller::LEASE_NAME, "intruder", now + ttl_ms + 1_000, ttl_ms)
        .await
        .expect("take over");
    assert_eq!(taken.holder, "intruder");

    let uid = h
        .store
        .apply_job(h.job("late"))
        .await
        .expect("apply")
        .job
        .uid()
        .to_owned();
    let ended = tokio::time::timeout(Duration::from_secs(10), h.task)
        .await
        .expect("the deposed leader steps down at its first refused write, not at its next renewal")
        .expect("join");
    match ended {
        Err(skep::controller::Error::LeaseLost(by)) => assert_eq!(by, "intruder"),
        other => panic!("the deposed leader ended with {other:?}"),
    }
    let job = h.store.get_job("late").await.expect("get").expect("job");
    assert!(
        job.status.is_none(),
        "a deposed leader wrote a status: {:?}",
        job.status
    );
    assert!(!job.has_finalizer(), "a deposed leader added its finalizer");
    let counts = h.store.task_counts(&uid).await.expect("counts");
    assert_eq!(counts.files.total, 0, "a deposed leader scanned the job");
    h.stop.cancel();
    h.runtime.inner.shutdown().await;
}

/// A scan writes how many files it has found so far while it runs (here at
/// every batch of 5,000), so that a big folder shows from the first
/// second (and once more after the last, shorter batch). Every status write is caught by a SQLite trigger the test adds
/// to the store's own file, so nothing depends on polling fast enough.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_shows_what_it_has_found_while_it_runs() {
    const FILES: usize = 12_000;
    let h = Harness::start_with(1, 1, |cfg| cfg.scan_progress_every = Duration::ZERO).await;
    let many = h.ws.path().join("many");
    for d in 0..12 {
        let dir = many.join(format!("d{d:02}"));
        std::fs::create_dir_all(&dir).expect("mkdir");
        for f in 0..FILES / 12 {
            std::fs::write(dir.join(format!("{f:04}.png")), b"").expect("file");
        }
    }
    let db = rusqlite::Connection::open(h.ws.path().join("skep.db")).expect("open the store's file");
    db.busy_timeout(Duration::from_secs(30)).expect("busy timeout");
    db.execute_batch(
        "CREATE TABLE status_log (seq INTEGER PRIMARY KEY AUTOINCREMENT, doc TEXT NOT NULL);
         CREATE TRIGGER log_status AFTER UPDATE OF doc ON jobs BEGIN
             INSERT INTO status_log (doc) VALUES (new.doc);
         END;",
    )
    .expect("trigger");
    let mut job = h.job("big-scan");
    job.spec.source.path = many.to_string_lossy().into_owned();
    h.store.apply_job(job).await.expect("apply");
    h.wait_for("big-scan", "the scan's end", |j| {
        j.status().is_true(skep_api::condition::SCANNED)
    })
    .await;
    let written: Vec<(String, String, u64)> = {
        let mut q = db.prepare("SELECT doc FROM status_log ORDER BY seq").expect("query");
        q.query_map([], |r| r.get::<_, String>(0))
            .expect("rows")
            .map(|doc| {
                let job: BulkJob = serde_json::from_str(&doc.expect("row")).expect("job");
                let s = job.status();
                let scanned = s
                    .conditions
                    .iter()
                    .find(|c| c.type_ == skep_api::condition::SCANNED)
                    .map(|c| (format!("{:?}", c.status), c.reason.clone()));
                let (status, reason) = scanned.unwrap_or_default();
                (status, reason, s.files.total)
            })
            .filter(|(_, reason, _)| !reason.is_empty())
            .collect()
    };
    h.stop().await;
    let scanning: Vec<u64> = written
        .iter()
        .take_while(|(_, reason, _)| reason == "Scanning")
        .map(|(_, _, total)| *total)
        .collect();
    assert_eq!(
        scanning,
        vec![5_000, 10_000, 12_000],
        "found so far, in order: {written:?}"
    );
    assert_eq!(
        written
            .get(scanning.len())
            .map(|(s, r, t)| (s.as_str(), r.as_str(), *t)),
        Some(("True", "Scanned", FILES as u64)),
        "then the scan's end: {written:?}"
    );
}
