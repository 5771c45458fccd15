//! The store conformance suite against MongoDB servers: the nx-27017
//! stand-in named by `SKEP_TEST_NX_URI` (`scripts/mongo-test-server.sh
//! start DIR PORT` prints one) and a real `mongod` named by
//! `SKEP_TEST_MONGO_URI`, whichever are set. Every case runs on each server
//! in both watch modes (a change stream; polling), each in its own database
//! `skep_test_<case>_<random>`, dropped afterwards (emptied on nx-27017:
//! see `clean`). Beyond the suite: the watch re-lists after its connection
//! drops, survives a server restart, and polls where change streams fail.
//!
//! Without `SKEP_TEST_NX_URI` the tests skip with a note, except under
//! `CI=true`, where they fail: CI must run them.

use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use skep::store::{
    FileResult, LeaseRequest, MongoOptions, MongoStore, MongoUrl, NewTask, Store, TaskUpdate, Transition, WatchEvent,
    WatchMode, conformance,
};
use skep_api::{BulkJob, BulkJobSpec, BulkJobStatus};
use tokio::net::{TcpListener, TcpStream};

const NX_VAR: &str = "SKEP_TEST_NX_URI";
const MONGOD_VAR: &str = "SKEP_TEST_MONGO_URI";

/// A server to test against: its label and URL.
struct Server {
    label: &'static str,
    uri: String,
    url: MongoUrl,
}

/// The servers named by the environment; none (after a note) when the
/// stand-in is not named outside CI; a panic under CI.
fn servers() -> Vec<Server> {
    init_logs();
    let mut out = Vec::new();
    for (var, label) in [(NX_VAR, "nx-27017"), (MONGOD_VAR, "mongod")] {
        match env_uri(var) {
            Some(uri) => {
                let url = MongoUrl::parse(&uri).unwrap_or_else(|e| panic!("{var}: {e}"));
                out.push(Server { label, uri, url });
            }
            _ if var == NX_VAR && std::env::var("CI").as_deref() == Ok("true") => panic!(
                "{NX_VAR} is not set: start the MongoDB stand-in with `scripts/mongo-test-server.sh start DIR PORT` \
                 and set {NX_VAR} to the URI it prints (and {MONGOD_VAR} to a real mongod, if there is one)"
            ),
            _ if var == NX_VAR => eprintln!(
                "note: {NX_VAR} is not set; skipping the MongoDB store tests on nx-27017 \
                 (scripts/mongo-test-server.sh start DIR PORT prints a URI for it)"
            ),
            _ => {}
        }
    }
    out
}

/// The variable's value, if set and not blank.
fn env_uri(var: &str) -> Option<String> {
    std::env::var(var).ok().filter(|u| !u.trim().is_empty())
}

/// Logs to the test output, filtered by `RUST_LOG`.
fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// The watch mode that exercises change streams on `server`: forced on the
/// stand-in (which has them); `Auto` on a real mongod, which has them only
/// as a replica set.
fn stream_mode(server: &Server) -> WatchMode {
    if server.label == "mongod" {
        WatchMode::Auto
    } else {
        WatchMode::ChangeStream
    }
}

fn database(case: &str, mode: WatchMode) -> String {
    let m = match mode {
        WatchMode::Poll => "p",
        WatchMode::ChangeStream => "s",
        WatchMode::Auto => "a",
    };
    format!("skep_test_{case}_{m}{:08x}", rand::random::<u32>())
}

fn options(mode: WatchMode) -> MongoOptions {
    MongoOptions {
        watch: Some(mode),
        op_timeout: Duration::from_secs(20),
        ..MongoOptions::default()
    }
}

/// Opens a fresh database of `server` for `case`.
async fn open(server: &Server, case: &str, mode: WatchMode) -> MongoStore {
    let db = database(case, mode);
    // NB: fresh on a real server already; on nx-27017 this also clears what
    // an interrupted run left (see `NX_ONE_AT_A_TIME`).
    clean(server, &db).await;
    let url = server.url.with_database(&db).expect("database name");
    MongoStore::connect(&url, options(mode)).await.expect("connect")
}

/// Empties database `db` of `server`: drops it on a real server. On
/// nx-27017, dropping a database drops the tables of every database, and
/// with them the triggers its change streams read; a stream tracker left
/// for another database name then keeps them from being re-created, and no
/// change stream on that collection delivers again until a restart. So
/// there the documents are deleted instead.
async fn clean(server: &Server, db: &str) {
    let res = async {
        let client = mongodb::Client::with_uri_str(&server.uri).await?;
        let db = client.database(db);
        if server.label == "nx-27017" {
            for name in ["jobs", "tasks", "leases", "meta"] {
                db.collection::<mongodb::bson::Document>(name)
                    .delete_many(mongodb::bson::doc! {})
                    .await?;
            }
            Ok(())
        } else {
            db.drop().await
        }
    };
    if let Err(error) = tokio::time::timeout(Duration::from_secs(30), res)
        .await
        .unwrap_or_else(|_| Err(mongodb::error::Error::custom("timed out")))
    {
        panic!("could not clean {db} on {}: {error}", server.label);
    }
}

/// nx-27017 ignores the database name: every database shares one set of
/// collections. So cases take turns on it; on a real server they run side
/// by side.
static NX_ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn turn(label: &str) -> Option<tokio::sync::MutexGuard<'static, ()>> {
    if label == "nx-27017" {
        Some(NX_ONE_AT_A_TIME.lock().await)
    } else {
        None
    }
}

/// Runs `f` on a fresh store of every server in `mode` (or the stream mode
/// of each server), dropping each database afterwards, failed or not.
async fn on_each<F, Fut>(case: &str, poll: bool, f: F)
where
    F: Fn(MongoStore) -> Fut,
    Fut: Future<Output = ()>,
{
    for server in servers() {
        let mode = if poll { WatchMode::Poll } else { stream_mode(&server) };
        let _turn = turn(server.label).await;
        let store = open(&server, case, mode).await;
        let outcome = AssertUnwindSafe(f(store.clone())).catch_unwind().await;
        clean(&server, store.database()).await;
        if let Err(panic) = outcome {
            eprintln!("{case} failed on {} ({mode:?} watch)", server.label);
            std::panic::resume_unwind(panic);
        }
    }
}

macro_rules! cases {
    ($($case:ident),* $(,)?) => {
        mod stream {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    on_each(stringify!($case), false, |s| async move { conformance::$case(&s).await }).await;
                }
            )*
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn atomic_lease_under_concurrency() {
                on_each("atomic_lease", false, |s| async move {
                    conformance::atomic_lease_under_concurrency(Arc::new(s)).await
                })
                .await;
            }
        }
        mod poll {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    on_each(stringify!($case), true, |s| async move { conformance::$case(&s).await }).await;
                }
            )*
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn atomic_lease_under_concurrency() {
                on_each("atomic_lease", true, |s| async move {
                    conformance::atomic_lease_under_concurrency(Arc::new(s)).await
                })
                .await;
            }
        }
    };
}

skep::store_conformance_cases!(cases);

fn job(name: &str) -> BulkJob {
    BulkJob::new(name, BulkJobSpec::for_path("/data/in"))
}

/// Collects watch events until `want` (a set of names) has been seen, then
/// checks that nothing else arrives for a while.
async fn expect_events(w: &mut futures::stream::BoxStream<'static, WatchEvent>, want: &[&str], within: Duration) {
    let deadline = Instant::now() + within;
    let mut missing: Vec<&str> = want.to_vec();
    while !missing.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        let ev = tokio::time::timeout(left, w.next())
            .await
            .unwrap_or_else(|_| panic!("no event for {missing:?} within {within:?}"))
            .expect("the watch stream does not end");
        let WatchEvent::Changed(name) = ev;
        let pos = missing
            .iter()
            .position(|m| *m == name)
            .unwrap_or_else(|| panic!("unexpected event for {name:?} while waiting for {missing:?}"));
        missing.remove(pos);
    }
    let quiet = tokio::time::timeout(Duration::from_millis(1500), w.next()).await;
    assert!(quiet.is_err(), "no further event: {quiet:?}");
}

/// Writes that a watch must report (a new job, a finalizer change), plus a
/// status write that it must not.
async fn changes_during_gap(writer: &MongoStore, a_uid: &str) {
    writer.apply_job(job("b")).await.expect("create b");
    writer.add_finalizer("a", a_uid).await.expect("finalizer");
    writer
        .update_status("a", a_uid, &BulkJobStatus::default())
        .await
        .expect("status");
}

/// A TCP proxy that can cut every connection and refuse new ones, to drop
/// the watch's connection while the server stays up.
struct Proxy {
    addr: SocketAddr,
    up: tokio::sync::watch::Sender<bool>,
}

impl Proxy {
    async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (up, _) = tokio::sync::watch::channel(true);
        let state = up.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                let mut rx = state.subscribe();
                if !*rx.borrow_and_update() {
                    continue;
                }
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = rx.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        Self { addr, up }
    }

    fn cut(&self) {
        self.up.send_replace(false);
    }

    fn restore(&self) {
        self.up.send_replace(true);
    }
}

/// `host:port` of a single-host URI without credentials.
fn single_host(uri: &str) -> Option<String> {
    let rest = uri.trim().strip_prefix("mongodb://")?;
    let host = rest.split(['/', '?']).next()?;
    (!host.contains(['@', ','])).then(|| host.to_owned())
}

/// The watch's connection drops while the server stays up and changes
/// happen: once it reconnects, the re-list delivers them all (a new change
/// stream alone would not: it starts after them), and a status write made
/// in the gap stays silent.
async fn relists_after_connection_drop(poll: bool) {
    init_logs();
    for (var, label) in [(NX_VAR, "nx-27017"), (MONGOD_VAR, "mongod")] {
        let Some(uri) = env_uri(var) else {
            // NB: servers() panics under CI or prints the note.
            if var == NX_VAR {
                let _ = servers();
            }
            continue;
        };
        let Some(upstream) = single_host(&uri) else {
            eprintln!("note: {var} is not a single host without credentials; no proxy test on {label}");
            continue;
        };
        let direct = MongoUrl::parse(&uri).expect("url");
        let _turn = turn(label).await;
        let proxy = Proxy::start(upstream).await;
        let via_proxy = MongoUrl::parse(&format!("mongodb://{}/?directConnection=true", proxy.addr)).expect("url");
        let server = Server {
            label,
            uri: uri.clone(),
            url: direct,
        };
        let mode = if poll { WatchMode::Poll } else { stream_mode(&server) };
        let db = database("relist", mode);
        clean(&server, &db).await;
        let opts = MongoOptions {
            server_selection_timeout: Duration::from_secs(1),
            op_timeout: Duration::from_secs(3),
            ..options(mode)
        };
        let watched = MongoStore::connect(&via_proxy.with_database(&db).expect("db"), opts)
            .await
            .expect("connect through the proxy");
        let writer = MongoStore::connect(&server.url.with_database(&db).expect("db"), options(mode))
            .await
            .expect("connect");
        let outcome = AssertUnwindSafe(async {
            let a = writer.apply_job(job("a")).await.expect("create a").job;
            let mut w = watched.watch();
            expect_events(&mut w, &["a"], Duration::from_secs(10)).await;

            proxy.cut();
            // NB: long enough for the watch to see its connection fail.
            tokio::time::sleep(Duration::from_millis(1500)).await;
            changes_during_gap(&writer, a.uid()).await;
            tokio::time::sleep(Duration::from_millis(500)).await;
            proxy.restore();
            expect_events(&mut w, &["a", "b"], Duration::from_secs(30)).await;
        })
        .catch_unwind()
        .await;
        clean(&server, &db).await;
        if let Err(panic) = outcome {
            eprintln!("relist test failed on {label} ({mode:?} watch)");
            std::panic::resume_unwind(panic);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_watch_relists_after_connection_drop() {
    relists_after_connection_drop(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_watch_relists_after_connection_drop() {
    relists_after_connection_drop(true).await;
}

/// A private nx-27017 started by the script, stopped when dropped.
struct NxServer {
    dir: PathBuf,
    port: u16,
    /// Launched through `scripts/nx_mongo_launch.py`, with change streams that work.
    patched: bool,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/mongo-test-server.sh")
}

fn venv() -> PathBuf {
    std::env::var_os("NX_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("nx-venv"))
}

impl NxServer {
    fn start(dir: PathBuf, port: u16, patched: bool) -> Self {
        let server = Self { dir, port, patched };
        server.run("start");
        server
    }

    fn run(&self, verb: &str) {
        let mut cmd = Command::new("bash");
        cmd.arg(script()).arg(verb).arg(&self.dir).env("NX_VENV", venv());
        if !self.patched {
            // NB: the package's own entry point is a Python script too.
            cmd.env("NX_LAUNCHER", venv().join("bin/nx-27017"));
        }
        if verb == "start" {
            cmd.arg(self.port.to_string());
        }
        let out = cmd.output().expect("run scripts/mongo-test-server.sh");
        assert!(
            out.status.success(),
            "mongo-test-server.sh {verb} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn url(&self) -> MongoUrl {
        MongoUrl::parse(&format!("mongodb://127.0.0.1:{}", self.port)).expect("url")
    }
}

impl Drop for NxServer {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg(&self.dir)
            .env("NX_VENV", venv())
            .output();
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// The server restarts in the middle of a watch (same data file); changes
/// made after it is back are all delivered, exactly once. Runs on a private
/// nx-27017 (started with the script), when the stand-in is available.
async fn survives_server_restart(poll: bool) {
    init_logs();
    if env_uri(NX_VAR).is_none() {
        let _ = servers();
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let nx = tokio::task::spawn_blocking({
        let dir = dir.path().to_path_buf();
        move || NxServer::start(dir, free_port(), true)
    })
    .await
    .expect("start nx-27017");
    let mode = if poll { WatchMode::Poll } else { WatchMode::ChangeStream };
    let url = nx.url().with_database("skep").expect("db");
    let opts = MongoOptions {
        server_selection_timeout: Duration::from_secs(2),
        op_timeout: Duration::from_secs(5),
        ..options(mode)
    };
    let watched = MongoStore::connect(&url, opts.clone()).await.expect("connect");
    let writer = MongoStore::connect(&url, opts).await.expect("connect");
    let a = writer.apply_job(job("a")).await.expect("create a").job;
    let mut w = watched.watch();
    expect_events(&mut w, &["a"], Duration::from_secs(10)).await;

    let nx = tokio::task::spawn_blocking(move || {
        nx.run("stop");
        nx.run("start");
        nx
    })
    .await
    .expect("restart nx-27017");
    changes_during_gap(&writer, a.uid()).await;
    expect_events(&mut w, &["a", "b"], Duration::from_secs(30)).await;
    let got = writer.get_job("a").await.expect("get").expect("a survived the restart");
    assert!(got.has_finalizer());
    drop(w);
    tokio::task::spawn_blocking(move || drop(nx))
        .await
        .expect("stop nx-27017");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_watch_survives_server_restart() {
    survives_server_restart(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_watch_survives_server_restart() {
    survives_server_restart(true).await;
}

/// Where change streams do not work (nx-27017 as shipped, without the
/// launcher's patches: the Rust driver rejects its replies), `Auto` falls
/// back to polling and the watch still delivers every change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_watch_polls_where_change_streams_fail() {
    init_logs();
    if env_uri(NX_VAR).is_none() {
        let _ = servers();
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    let nx = tokio::task::spawn_blocking(move || NxServer::start(path, free_port(), false))
        .await
        .expect("start nx-27017");
    let url = nx.url().with_database("skep").expect("db");
    let store = MongoStore::connect(&url, options(WatchMode::Auto))
        .await
        .expect("connect");
    conformance::watch_delivers_every_change(&store).await;
    tokio::task::spawn_blocking(move || drop(nx))
        .await
        .expect("stop nx-27017");
}

/// Connecting to nothing fails within the server selection timeout, and
/// the error does not show the password.
#[tokio::test]
async fn unreachable_server_fails_fast_without_leaking_the_password() {
    let port = free_port();
    let url = MongoUrl::parse(&format!("mongodb://skep:hunter2@127.0.0.1:{port}/skep")).expect("url");
    let opts = MongoOptions {
        server_selection_timeout: Duration::from_millis(500),
        ..MongoOptions::default()
    };
    let started = Instant::now();
    let err = MongoStore::connect(&url, opts)
        .await
        .expect_err("nothing listens there");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    let text = err.to_string();
    assert!(!text.contains("hunter2"), "{text}");
    assert_eq!(err.metric_label(), "backend");
}

/// Throughput on whatever server `SKEP_TEST_NX_URI` names (run with
/// `--ignored --nocapture`). On nx-27017 it measures the stand-in, a
/// SQLite file behind a global lock, and says nothing of MongoDB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a test"]
async fn measure_throughput() {
    on_each("throughput", true, |s| async move {
        let uid = s.apply_job(job("a")).await.expect("create").job.uid().to_owned();
        let n: u64 = 10_000;
        let tasks: Vec<NewTask> = (0..n).map(|i| NewTask::file(i, format!("dir/f{i:06}.png"))).collect();
        let t = Instant::now();
        assert_eq!(s.insert_tasks(&uid, tasks).await.expect("insert"), n);
        let rate = |k: u64, t: Instant| k as f64 / t.elapsed().as_secs_f64();
        println!("insert_tasks: {n} tasks in {:?}: {:.0}/s", t.elapsed(), rate(n, t));

        let t = Instant::now();
        let mut leased = Vec::new();
        loop {
            let req = LeaseRequest {
                job_uid: uid.clone(),
                limit: 100,
                now_ms: 0,
                lease_ms: 60_000,
                max_attempts: 3,
            };
            let got = s.lease_tasks(req).await.expect("lease");
            if got.tasks.is_empty() {
                break;
            }
            leased.extend(got.tasks.into_iter().map(|t| t.index));
        }
        assert_eq!(leased.len() as u64, n);
        println!("lease_tasks(100): {n} tasks in {:?}: {:.0}/s", t.elapsed(), rate(n, t));

        let t = Instant::now();
        for chunk in leased.chunks(500) {
            let updates = chunk
                .iter()
                .map(|i| TaskUpdate {
                    job_uid: uid.clone(),
                    index: *i,
                    part: 0,
                    transition: Transition::Succeed {
                        result: FileResult {
                            text: Some("some words".into()),
                            confidence: Some(91.5),
                            pages: 1,
                            words: 2,
                            duration_ms: 120,
                            worker: Some("w1".into()),
                            node: Some("n1".into()),
                            finished_ms: 1,
                            ..FileResult::default()
                        },
                    },
                })
                .collect();
            let applied = s.apply_updates(updates).await.expect("apply");
            assert!(applied.iter().all(|a| *a));
        }
        println!(
            "apply_updates(500): {n} results in {:?}: {:.0}/s",
            t.elapsed(),
            rate(n, t)
        );
        assert_eq!(s.task_counts(&uid).await.expect("counts").files.succeeded, n);
    })
    .await;
}

/// Tasks written before page ranges (no part field, unique by job and
/// index under the index `job_index`) are upgraded when the store connects:
/// they read as part 0 with their results, and ranges of them can be added.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_from_before_ranges_are_upgraded() {
    use mongodb::bson::doc;
    for server in servers() {
        let _turn = turn(server.label).await;
        let db = database("upgrade", WatchMode::Poll);
        clean(&server, &db).await;
        let client = mongodb::Client::with_uri_str(&server.uri).await.expect("client");
        let tasks = client.database(&db).collection::<mongodb::bson::Document>("tasks");
        let old_index = mongodb::IndexModel::builder()
            .keys(doc! { "job": 1, "i": 1 })
            .options(
                mongodb::options::IndexOptions::builder()
                    .unique(true)
                    .name("job_index".to_owned())
                    .build(),
            )
            .build();
        tasks.create_index(old_index).await.expect("old index");
        tasks
            .insert_many([
                doc! { "_id": "u:0", "job": "u", "i": 0_i64, "path": "a.png", "state": 2_i64, "attempts": 1_i64,
                       "due": 0_i64, "text": "old text", "conf": 90.0, "pages": 1_i64, "words": 2_i64, "fin": 5_i64 },
                doc! { "_id": "u:1", "job": "u", "i": 1_i64, "path": "b.pdf", "state": 0_i64, "attempts": 0_i64, "due": 0_i64 },
            ])
            .await
            .expect("old tasks");
        let url = server.url.with_database(&db).expect("db");
        let outcome = AssertUnwindSafe(async {
            let s = MongoStore::connect(&url, options(WatchMode::Poll))
                .await
                .expect("connect upgrades");
            let a = s.get_task("u", 0).await.expect("get").expect("file 0");
            assert_eq!((a.part, a.state), (0, skep::store::TaskState::Succeeded));
            assert_eq!(a.result.and_then(|r| r.text).as_deref(), Some("old text"));
            let c = s.task_counts("u").await.expect("counts");
            assert_eq!((c.files.total, c.files.succeeded, c.files.pending), (2, 1, 1));
            let ranges = skep_api::PageRange::split(10, 8);
            let n = s
                .insert_tasks("u", skep::store::NewTask::ranges(1, "b.pdf", None, &ranges))
                .await
                .expect("ranges fit the new index");
            assert_eq!(n, 2);
            assert_eq!(s.list_parts("u", 1).await.expect("parts").len(), 2);
            assert_eq!(s.list_tasks("u", None, 10).await.expect("files").len(), 2, "files only");
        })
        .catch_unwind()
        .await;
        clean(&server, &db).await;
        if let Err(panic) = outcome {
            eprintln!("upgrade failed on {}", server.label);
            std::panic::resume_unwind(panic);
        }
    }
}
