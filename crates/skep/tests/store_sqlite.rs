//! The store conformance suite against the SQLite backend, one fresh
//! database file per case.

use std::sync::Arc;

use skep::store::{SqliteStore, Store, conformance};

async fn fresh() -> (tempfile::TempDir, Arc<SqliteStore>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("skep.db")).await.expect("open");
    (dir, Arc::new(store))
}

/// The tally the triggers keep agrees with a full count of the tasks.
async fn no_drift(s: &SqliteStore) {
    let drift = s.tally_drift().await.expect("drift");
    assert!(drift.is_empty(), "the task tally drifted:\n{}", drift.join("\n"));
}

// NB: every case ends with the tally checked against a count of its
// tasks: the cases between them write tasks in every way the store can.
macro_rules! cases {
    ($($case:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $case() {
            let (_dir, s) = fresh().await;
            conformance::$case(s.as_ref()).await;
            no_drift(&s).await;
        }
    )*};
}

skep::store_conformance_cases!(cases);

#[tokio::test]
async fn atomic_lease_under_concurrency() {
    let (_dir, s) = fresh().await;
    conformance::atomic_lease_under_concurrency(s.clone()).await;
    no_drift(&s).await;
}

#[tokio::test]
async fn data_survives_reopening() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("nested").join("skep.db");
    let uid = {
        let s = SqliteStore::open(&path).await.expect("open");
        let job = skep_api::BulkJob::new("a", skep_api::BulkJobSpec::for_path("/x"));
        s.apply_job(job).await.expect("apply").job.uid().to_owned()
    };
    let s = SqliteStore::open(&path).await.expect("reopen");
    let job = s.get_job("a").await.expect("get").expect("still there");
    assert_eq!(job.uid(), uid);
}

/// A database written before page ranges (schema 1: tasks keyed by job and
/// index, no parts) is moved to schema 2 when opened: its files become part
/// 0 with their results, and ranges can be added.
#[tokio::test]
async fn a_schema_1_database_is_upgraded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("skep.db");
    {
        let c = rusqlite::Connection::open(&path).expect("open");
        c.execute_batch(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
             INSERT INTO meta(key, value) VALUES ('revision', 0), ('schema', 1);
             CREATE TABLE tasks (
                 job_uid TEXT NOT NULL, idx INTEGER NOT NULL, path TEXT NOT NULL,
                 state INTEGER NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0,
                 due INTEGER NOT NULL DEFAULT 0, text TEXT, confidence REAL,
                 pages INTEGER NOT NULL DEFAULT 0, words INTEGER NOT NULL DEFAULT 0,
                 reason TEXT, error TEXT, duration_ms INTEGER NOT NULL DEFAULT 0,
                 worker TEXT, node TEXT, finished INTEGER NOT NULL DEFAULT 0,
                 PRIMARY KEY (job_uid, idx));
             CREATE INDEX tasks_by_state ON tasks(job_uid, state, due);
             CREATE TABLE leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires INTEGER NOT NULL);
             INSERT INTO leases(name, holder, expires) VALUES ('controller', 'old', 0);
             INSERT INTO tasks(job_uid, idx, path, state, attempts, text, confidence, pages, words, finished)
                 VALUES ('u', 0, 'a.png', 2, 1, 'old text', 90.0, 1, 2, 5), ('u', 1, 'b.pdf', 0, 0, NULL, NULL, 0, 0, 0);",
        )
        .expect("schema 1");
    }
    let s = SqliteStore::open(&path).await.expect("upgrade");
    no_drift(&s).await;
    let a = s.get_task("u", 0).await.expect("get").expect("file 0");
    assert_eq!((a.part, a.state), (0, skep::store::TaskState::Succeeded));
    assert_eq!(a.result.and_then(|r| r.text).as_deref(), Some("old text"));
    let counts = s.task_counts("u").await.expect("counts");
    assert_eq!(
        (counts.files.total, counts.files.succeeded, counts.files.pending),
        (2, 1, 1)
    );
    let ranges = skep_api::PageRange::split(10, 8);
    s.insert_tasks("u", skep::store::NewTask::ranges(1, "b.pdf", None, &ranges))
        .await
        .expect("ranges fit the new key");
    assert_eq!(s.list_parts("u", 1).await.expect("parts").len(), 2);
    // The lease table gains generations; the old holder's lease counts as 0.
    let taken = s
        .acquire_lease("controller", "new", 10, 1_000)
        .await
        .expect("take over");
    assert_eq!((taken.holder.as_str(), taken.generation), ("new", 1));
    drop(s);
    // Opening again leaves it alone.
    let s = SqliteStore::open(&path).await.expect("reopen");
    assert_eq!(s.list_parts("u", 1).await.expect("parts").len(), 2);
}

/// A schema 2 database written before objects had versions gains the
/// `size` and `etag` columns when opened: its tasks read as files of a
/// folder (no version), new objects keep theirs.
#[tokio::test]
async fn a_database_without_object_versions_gains_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("skep.db");
    {
        let c = rusqlite::Connection::open(&path).expect("open");
        c.execute_batch(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
             INSERT INTO meta(key, value) VALUES ('revision', 0), ('schema', 2);
             CREATE TABLE jobs (name TEXT PRIMARY KEY, uid TEXT NOT NULL UNIQUE, revision INTEGER NOT NULL, doc TEXT NOT NULL);
             CREATE TABLE leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires INTEGER NOT NULL, generation INTEGER NOT NULL DEFAULT 0);
             CREATE TABLE tasks (job_uid TEXT NOT NULL, idx INTEGER NOT NULL, part INTEGER NOT NULL DEFAULT 0,
                 first_page INTEGER NOT NULL DEFAULT 0, last_page INTEGER NOT NULL DEFAULT 0, path TEXT NOT NULL,
                 state INTEGER NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0, due INTEGER NOT NULL DEFAULT 0,
                 text TEXT, confidence REAL, pages INTEGER NOT NULL DEFAULT 0, words INTEGER NOT NULL DEFAULT 0,
                 reason TEXT, error TEXT, duration_ms INTEGER NOT NULL DEFAULT 0, worker TEXT, node TEXT,
                 finished INTEGER NOT NULL DEFAULT 0, page_info TEXT, staged TEXT, PRIMARY KEY (job_uid, idx, part));
             CREATE INDEX tasks_by_state ON tasks(job_uid, state, due);
             INSERT INTO tasks(job_uid, idx, path) VALUES ('u', 0, 'a.png');
             INSERT INTO tasks(job_uid, idx, part, first_page, last_page, path, state, pages)
                 VALUES ('u', 2, 0, 0, 0, 'c.pdf', 2, 3), ('u', 3, 0, 0, 0, 'd.pdf', 1, 9), ('u', 3, 1, 1, 4, 'd.pdf', 2, 4);",
        )
        .expect("schema 2");
    }
    let s = SqliteStore::open(&path).await.expect("upgrade");
    // NB: the task tally is counted from the rows already there.
    no_drift(&s).await;
    let c = s.task_counts("u").await.expect("counts");
    assert_eq!(
        (
            c.files.total,
            c.files.pending,
            c.files.dispatched,
            c.files.succeeded,
            c.in_flight
        ),
        (3, 1, 1, 1, 1)
    );
    let a = s.get_task("u", 0).await.expect("get").expect("file 0");
    assert_eq!((a.path.as_str(), a.version), ("a.png", None));
    let version = skep::store::ObjectVersion {
        size: 7,
        etag: Some("\"e\"".into()),
    };
    s.insert_tasks("u", vec![skep::store::NewTask::object(1, "b.png", version.clone())])
        .await
        .expect("an object");
    drop(s);
    let s = SqliteStore::open(&path).await.expect("reopen");
    let b = s.get_task("u", 1).await.expect("get").expect("file 1");
    assert_eq!(b.version, Some(version));
    assert_eq!(s.task_counts("u").await.expect("counts").files.total, 4);
    no_drift(&s).await;
}

/// The drift check can fail: a tally changed behind the triggers' back is
/// reported.
#[tokio::test]
async fn a_wrong_tally_is_seen() {
    let (dir, s) = fresh().await;
    s.insert_tasks("u", vec![skep::store::NewTask::file(0, "a.png")])
        .await
        .expect("insert");
    no_drift(&s).await;
    let c = rusqlite::Connection::open(dir.path().join("skep.db")).expect("open");
    c.execute("UPDATE task_tally SET n = n + 1", []).expect("corrupt");
    let drift = s.tally_drift().await.expect("drift");
    assert_eq!(drift.len(), 1, "{drift:?}");
    assert!(drift[0].contains("job u state 0 files"), "{drift:?}");
}
