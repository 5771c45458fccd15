//! The embedded store: one SQLite file (WAL mode), safe to share between
//! processes on one machine (`skep run` in one, `skep get` in another).
//! Calls run on the blocking pool; one connection per store, behind a mutex
//! that is never held across an await.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use futures::StreamExt;
use futures::stream::BoxStream;
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params, params_from_iter};
use skep_api::{BulkJob, BulkJobStatus, FINALIZER, FailureReason, PageRange};
use tokio::sync::{Notify, mpsc};

use super::{
    Applied, Deleted, Fence, FileResult, LeaseRequest, LeaseState, Leased, NewTask, ObjectVersion, Result,
    ResultSummary, Store, StoreError, TaskCounts, TaskRecord, TaskState, TaskUpdate, Transition, WatchEvent,
    count_state, merge_applied, new_stored_job,
};

/// How often `watch` looks for changes made by other processes; changes
/// made through this store wake it at once.
pub const WATCH_POLL: Duration = Duration::from_millis(500);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta(key, value) VALUES ('revision', 0);
CREATE TABLE IF NOT EXISTS jobs (
    name TEXT PRIMARY KEY,
    uid TEXT NOT NULL UNIQUE,
    revision INTEGER NOT NULL,
    doc TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires INTEGER NOT NULL,
    generation INTEGER NOT NULL DEFAULT 0
);
";

/// The task table of schema 2 (version 1 had no parts, ranges, page
/// details or staging folders; `size` and `etag` were added later, see
/// [`migrate`]).
const TASKS_V2: &str = "
CREATE TABLE tasks (
    job_uid TEXT NOT NULL,
    idx INTEGER NOT NULL,
    part INTEGER NOT NULL DEFAULT 0,
    first_page INTEGER NOT NULL DEFAULT 0,
    last_page INTEGER NOT NULL DEFAULT 0,
    path TEXT NOT NULL,
    state INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    due INTEGER NOT NULL DEFAULT 0,
    text TEXT,
    confidence REAL,
    pages INTEGER NOT NULL DEFAULT 0,
    words INTEGER NOT NULL DEFAULT 0,
    reason TEXT,
    error TEXT,
    duration_ms INTEGER NOT NULL DEFAULT 0,
    worker TEXT,
    node TEXT,
    finished INTEGER NOT NULL DEFAULT 0,
    page_info TEXT,
    staged TEXT,
    size INTEGER,
    etag TEXT,
    PRIMARY KEY (job_uid, idx, part)
);
CREATE INDEX tasks_by_state ON tasks(job_uid, state, due);
";

/// Finds the tasks a lease fails for their attempts without reading every
/// pending task (added beside schema 2; older builds ignore it).
const TASKS_BY_ATTEMPTS: &str = "CREATE INDEX IF NOT EXISTS tasks_by_attempts ON tasks(job_uid, state, attempts);";

/// A task's pages as the counts see them: a range's own, an opened file's,
/// else one.
macro_rules! task_pages {
    ($row:literal) => {
        concat!(
            "(CASE WHEN ",
            $row,
            ".part > 0 THEN ",
            $row,
            ".last_page - ",
            $row,
            ".first_page + 1 WHEN ",
            $row,
            ".pages > 0 THEN ",
            $row,
            ".pages ELSE 1 END)"
        )
    };
}

/// Each job's tasks counted by state and kind (file or range), kept by
/// triggers in the same transaction as every write to `tasks`, whoever
/// writes: `task_counts` reads a few rows instead of grouping every task
/// of the job on each reconcile (added beside schema 2; an older build's
/// writes keep it right as well).
const TASK_TALLY: &str = concat!(
    "CREATE TABLE task_tally (
    job_uid TEXT NOT NULL,
    state INTEGER NOT NULL,
    file INTEGER NOT NULL,
    n INTEGER NOT NULL,
    pages INTEGER NOT NULL,
    PRIMARY KEY (job_uid, state, file)
) WITHOUT ROWID;
INSERT INTO task_tally(job_uid, state, file, n, pages)
    SELECT job_uid, state, part = 0, COUNT(*), SUM(",
    task_pages!("tasks"),
    ") FROM tasks GROUP BY 1, 2, 3;
CREATE TRIGGER task_tally_insert AFTER INSERT ON tasks BEGIN
    INSERT INTO task_tally(job_uid, state, file, n, pages) VALUES (NEW.job_uid, NEW.state, NEW.part = 0, 1, ",
    task_pages!("NEW"),
    ") ON CONFLICT(job_uid, state, file) DO UPDATE SET n = n + 1, pages = pages + excluded.pages;
END;
CREATE TRIGGER task_tally_delete AFTER DELETE ON tasks BEGIN
    UPDATE task_tally SET n = n - 1, pages = pages - ",
    task_pages!("OLD"),
    " WHERE job_uid = OLD.job_uid AND state = OLD.state AND file = (OLD.part = 0);
END;
CREATE TRIGGER task_tally_update AFTER UPDATE OF job_uid, state, part, first_page, last_page, pages ON tasks
WHEN OLD.job_uid IS NOT NEW.job_uid OR OLD.state IS NOT NEW.state OR OLD.part IS NOT NEW.part OR ",
    task_pages!("OLD"),
    " IS NOT ",
    task_pages!("NEW"),
    " BEGIN
    UPDATE task_tally SET n = n - 1, pages = pages - ",
    task_pages!("OLD"),
    " WHERE job_uid = OLD.job_uid AND state = OLD.state AND file = (OLD.part = 0);
    INSERT INTO task_tally(job_uid, state, file, n, pages) VALUES (NEW.job_uid, NEW.state, NEW.part = 0, 1, ",
    task_pages!("NEW"),
    ") ON CONFLICT(job_uid, state, file) DO UPDATE SET n = n + 1, pages = pages + excluded.pages;
END;"
);

const SCHEMA_VERSION: i64 = 2;

/// Creates the task table, or moves a version 1 table to version 2 (same
/// rows, as part 0 of their files).
fn migrate(c: &mut Connection) -> Result<()> {
    let tx = c
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db)?;
    let version: Option<i64> = tx
        .query_row("SELECT value FROM meta WHERE key = 'schema'", [], |r| r.get(0))
        .optional()
        .map_err(db)?;
    if !has_column(&tx, "leases", "generation")? {
        // NB: added beside schema 2 without a version of its own: older
        // builds read the table as before.
        tx.execute_batch("ALTER TABLE leases ADD COLUMN generation INTEGER NOT NULL DEFAULT 0")
            .map_err(db)?;
    }
    let has_tasks: bool = tx
        .query_row(
            "SELECT COUNT(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'tasks'",
            [],
            |r| r.get(0),
        )
        .map_err(db)?;
    match (has_tasks, version) {
        (false, _) => tx.execute_batch(TASKS_V2).map_err(db)?,
        (true, Some(SCHEMA_VERSION)) => {
            // NB: an object's size and ETag were added beside schema 2
            // without a version of their own (both may be NULL): an older
            // build reads and writes the table as before.
            if !has_column(&tx, "tasks", "etag")? {
                tx.execute_batch("ALTER TABLE tasks ADD COLUMN size INTEGER; ALTER TABLE tasks ADD COLUMN etag TEXT;")
                    .map_err(db)?;
            }
            tx.execute_batch(TASKS_BY_ATTEMPTS).map_err(db)?;
            add_tally(&tx)?;
            return tx.commit().map_err(db);
        }
        (true, Some(1) | None) => {
            tx.execute_batch(
                "ALTER TABLE tasks RENAME TO tasks_v1;
                 DROP INDEX IF EXISTS tasks_by_state;",
            )
            .map_err(db)?;
            tx.execute_batch(TASKS_V2).map_err(db)?;
            tx.execute_batch(
                "INSERT INTO tasks(job_uid, idx, path, state, attempts, due, text, confidence, pages, words, reason, error, duration_ms, worker, node, finished)
                 SELECT job_uid, idx, path, state, attempts, due, text, confidence, pages, words, reason, error, duration_ms, worker, node, finished FROM tasks_v1;
                 DROP TABLE tasks_v1;",
            )
            .map_err(db)?;
        }
        (true, Some(other)) => {
            return Err(StoreError::Corrupt(format!(
                "the database has schema version {other}; this build knows {SCHEMA_VERSION} (upgrade skep)"
            )));
        }
    }
    tx.execute_batch(TASKS_BY_ATTEMPTS).map_err(db)?;
    add_tally(&tx)?;
    tx.execute(
        "INSERT INTO meta(key, value) VALUES ('schema', ?1) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        [SCHEMA_VERSION],
    )
    .map_err(db)?;
    tx.commit().map_err(db)
}

/// The task tally and its triggers, counted from the tasks once, where
/// the database has none yet.
fn add_tally(tx: &rusqlite::Transaction<'_>) -> Result<()> {
    let has: bool = tx
        .query_row(
            "SELECT COUNT(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'task_tally'",
            [],
            |r| r.get(0),
        )
        .map_err(db)?;
    if !has {
        tx.execute_batch(TASK_TALLY).map_err(db)?;
    }
    Ok(())
}

fn has_column(tx: &rusqlite::Transaction<'_>, table: &str, column: &str) -> Result<bool> {
    tx.query_row(
        "SELECT COUNT(*) > 0 FROM pragma_table_info(?1) WHERE name = ?2",
        [table, column],
        |r| r.get(0),
    )
    .map_err(db)
}

// NB: `due` is `not_before` for a pending task and the lease end for a
// dispatched one, so one index serves both "ready to dispatch" queries.
const PENDING: i64 = 0;
const DISPATCHED: i64 = 1;
const SUCCEEDED: i64 = 2;
const FAILED: i64 = 3;
const SPLIT: i64 = 4;

fn state_from(code: i64) -> Result<TaskState> {
    Ok(match code {
        PENDING => TaskState::Pending,
        DISPATCHED => TaskState::Dispatched,
        SUCCEEDED => TaskState::Succeeded,
        FAILED => TaskState::Failed,
        SPLIT => TaskState::Split,
        other => return Err(StoreError::Corrupt(format!("task state {other}"))),
    })
}

pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    changed: Arc<Notify>,
    path: String,
    /// Checked inside every write transaction when set.
    fence: Option<Arc<Fence>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.path).finish()
    }
}

fn db(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn lock(m: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    // NB: a panic while holding the lock leaves SQLite consistent (any open
    // transaction rolls back on drop), so the connection stays usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and its folder.
    pub async fn open(path: &Path) -> Result<Self> {
        let path = path.to_path_buf();
        let display = path.display().to_string();
        let conn = tokio::task::spawn_blocking(move || -> Result<Connection> {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .map_err(|e| StoreError::Backend(format!("cannot create {}: {e}", dir.display())))?;
            }
            let conn = Connection::open(&path)
                .map_err(|e| StoreError::Backend(format!("cannot open {}: {e}", path.display())))?;
            conn.busy_timeout(Duration::from_secs(10)).map_err(db)?;
            conn.pragma_update(None, "journal_mode", "WAL").map_err(db)?;
            conn.pragma_update(None, "synchronous", "NORMAL").map_err(db)?;
            conn.execute_batch(SCHEMA).map_err(db)?;
            let mut conn = conn;
            migrate(&mut conn)?;
            Ok(conn)
        })
        .await
        .map_err(|e| StoreError::Backend(e.to_string()))??;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            changed: Arc::new(Notify::new()),
            path: display,
            fence: None,
        })
    }

    /// Where the task tally and a full count of the tasks disagree, one
    /// line per (job, state, kind); none when all is well.
    pub async fn tally_drift(&self) -> Result<Vec<String>> {
        self.call(|c| {
            type Rows = std::collections::BTreeMap<(String, i64, bool), (i64, i64)>;
            let read = |c: &Connection, sql: &str| -> Result<Rows> {
                let mut stmt = c.prepare(sql).map_err(db)?;
                let rows = stmt
                    .query_map([], |r| Ok(((r.get(0)?, r.get(1)?, r.get(2)?), (r.get(3)?, r.get(4)?))))
                    .map_err(db)?;
                rows.collect::<std::result::Result<Rows, _>>().map_err(db)
            };
            let tally = read(
                c,
                "SELECT job_uid, state, file, n, pages FROM task_tally WHERE n != 0 OR pages != 0",
            )?;
            let counted = read(
                c,
                concat!(
                    "SELECT job_uid, state, part = 0, COUNT(*), SUM(",
                    task_pages!("tasks"),
                    ") FROM tasks GROUP BY 1, 2, 3"
                ),
            )?;
            let keys: std::collections::BTreeSet<_> = tally.keys().chain(counted.keys()).collect();
            Ok(keys
                .into_iter()
                .filter(|k| tally.get(*k) != counted.get(*k))
                .map(|k| {
                    format!(
                        "job {} state {} {}: tallied {:?}, counted {:?}",
                        k.0,
                        k.1,
                        if k.2 { "files" } else { "ranges" },
                        tally.get(k),
                        counted.get(k)
                    )
                })
                .collect())
        })
        .await
    }

    async fn call<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || f(&mut lock(&conn)))
            .await
            .map_err(|e| StoreError::Backend(format!("store call panicked: {e}")))?
    }

    /// Runs a write in an immediate transaction, after checking the fence
    /// (if any) inside it.
    async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> Result<T> + Send + 'static,
    {
        let fence = self.fence.clone();
        self.call(move |c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db)?;
            if let Some(fence) = fence {
                check_fence(&tx, &fence)?;
            }
            let out = f(&tx)?;
            tx.commit().map_err(db)?;
            Ok(out)
        })
        .await
    }

    /// A job-document [`write`](Self::write) that wakes watchers.
    async fn write_job<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> Result<T> + Send + 'static,
    {
        let out = self.write(f).await?;
        self.changed.notify_waiters();
        Ok(out)
    }
}

/// Fails with [`StoreError::Fenced`] unless the lease is still the fence's.
fn check_fence(tx: &rusqlite::Transaction<'_>, fence: &Fence) -> Result<()> {
    let current: Option<(String, i64)> = tx
        .query_row(
            "SELECT holder, generation FROM leases WHERE name = ?1",
            [&fence.lease],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(db)?;
    match current {
        Some((holder, generation)) if holder == fence.holder && generation as u64 == fence.generation => Ok(()),
        Some((holder, generation)) => Err(fence.refused(holder, generation as u64)),
        None => Err(fence.refused(String::new(), 0)),
    }
}

fn bump_revision(tx: &rusqlite::Transaction<'_>) -> Result<i64> {
    tx.query_row(
        "UPDATE meta SET value = value + 1 WHERE key = 'revision' RETURNING value",
        [],
        |r| r.get(0),
    )
    .map_err(db)
}

fn load_job(tx: &rusqlite::Transaction<'_>, name: &str) -> Result<Option<BulkJob>> {
    let doc: Option<String> = tx
        .query_row("SELECT doc FROM jobs WHERE name = ?1", [name], |r| r.get(0))
        .optional()
        .map_err(db)?;
    doc.map(|d| parse_doc(&d)).transpose()
}

fn parse_doc(doc: &str) -> Result<BulkJob> {
    serde_json::from_str(doc).map_err(|e| StoreError::Corrupt(format!("job document: {e}")))
}

fn to_doc(job: &BulkJob) -> Result<String> {
    serde_json::to_string(job).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn save_job(tx: &rusqlite::Transaction<'_>, job: &BulkJob, bump: bool) -> Result<()> {
    let doc = to_doc(job)?;
    if bump {
        let rev = bump_revision(tx)?;
        tx.execute(
            "UPDATE jobs SET doc = ?2, revision = ?3 WHERE name = ?1",
            params![job.metadata.name, doc, rev],
        )
        .map_err(db)?;
    } else {
        tx.execute(
            "UPDATE jobs SET doc = ?2 WHERE name = ?1",
            params![job.metadata.name, doc],
        )
        .map_err(db)?;
    }
    Ok(())
}

fn load_owned(tx: &rusqlite::Transaction<'_>, name: &str, uid: &str) -> Result<BulkJob> {
    let job = load_job(tx, name)?.ok_or_else(|| StoreError::NotFound(name.to_owned()))?;
    if job.uid() != uid {
        return Err(StoreError::Conflict {
            name: name.to_owned(),
            reason: format!("uid is {} now, not {uid}", job.uid()),
        });
    }
    Ok(job)
}

fn remove_job(tx: &rusqlite::Transaction<'_>, name: &str, uid: &str) -> Result<()> {
    tx.execute("DELETE FROM jobs WHERE name = ?1", [name]).map_err(db)?;
    tx.execute("DELETE FROM tasks WHERE job_uid = ?1", [uid]).map_err(db)?;
    tx.execute("DELETE FROM task_tally WHERE job_uid = ?1", [uid])
        .map_err(db)?;
    bump_revision(tx)?;
    Ok(())
}

const TASK_COLUMNS: &str = "job_uid, idx, part, first_page, last_page, path, state, attempts, due, text, confidence, pages, words, reason, error, duration_ms, worker, node, finished, page_info, staged, size, etag";

/// A task row as read, before its state code, reason and page details are
/// checked.
struct TaskRow {
    record: TaskRecord,
    state: i64,
    due: i64,
    reason: Option<String>,
    page_info: Option<String>,
}

fn task_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TaskRow> {
    let result = FileResult {
        text: r.get(9)?,
        confidence: r.get::<_, Option<f64>>(10)?.map(|c| c as f32),
        pages: r.get::<_, i64>(11)? as u32,
        page_info: Vec::new(),
        staged: r.get(20)?,
        words: r.get::<_, i64>(12)? as u64,
        reason: None,
        error: r.get(14)?,
        duration_ms: r.get::<_, i64>(15)? as u64,
        worker: r.get(16)?,
        node: r.get(17)?,
        finished_ms: r.get(18)?,
    };
    let (first, last) = (r.get::<_, i64>(3)?, r.get::<_, i64>(4)?);
    Ok(TaskRow {
        record: TaskRecord {
            job_uid: r.get(0)?,
            index: r.get::<_, i64>(1)? as u64,
            part: r.get::<_, i64>(2)? as u32,
            pages: (first > 0).then_some(PageRange {
                first: first as u32,
                last: last as u32,
            }),
            path: r.get(5)?,
            version: object_version(r.get(21)?, r.get(22)?),
            state: TaskState::Pending,
            attempts: r.get::<_, i64>(7)? as u32,
            not_before_ms: 0,
            lease_until_ms: 0,
            result: Some(result),
        },
        state: r.get(6)?,
        due: r.get(8)?,
        reason: r.get(13)?,
        page_info: r.get(19)?,
    })
}

/// An object's version from its columns (`size` is NULL for a file of a
/// folder).
fn object_version(size: Option<i64>, etag: Option<String>) -> Option<ObjectVersion> {
    size.map(|size| ObjectVersion {
        size: size as u64,
        etag,
    })
}

fn finish_task(row: TaskRow) -> Result<TaskRecord> {
    let TaskRow {
        mut record,
        state,
        due,
        reason,
        page_info,
    } = row;
    record.state = state_from(state)?;
    match record.state {
        TaskState::Pending => record.not_before_ms = due,
        TaskState::Dispatched => record.lease_until_ms = due,
        TaskState::Succeeded | TaskState::Failed | TaskState::Split => {}
    }
    if let Some(res) = record.result.as_mut() {
        res.reason = reason.as_deref().and_then(FailureReason::parse);
        if let Some(json) = page_info {
            res.page_info =
                serde_json::from_str(&json).map_err(|e| StoreError::Corrupt(format!("page details: {e}")))?;
        }
        if res.text.is_none() && res.error.is_none() && res.reason.is_none() && res.finished_ms == 0 && res.pages == 0 {
            record.result = None;
        }
    }
    Ok(record)
}

fn query_tasks(c: &Connection, sql: &str, p: impl rusqlite::Params) -> Result<Vec<TaskRecord>> {
    let mut stmt = c.prepare_cached(sql).map_err(db)?;
    let rows = stmt.query_map(p, task_from_row).map_err(db)?;
    let mut out = Vec::new();
    for row in rows {
        out.push(finish_task(row.map_err(db)?)?);
    }
    Ok(out)
}

/// The result columns every result-setting update writes, `?4`..`?15`.
const SET_RESULT: &str = "text = ?4, confidence = ?5, pages = ?6, words = ?7, reason = ?8, error = ?9, duration_ms = ?10, worker = ?11, node = ?12, finished = ?13, page_info = ?14, staged = ?15";

/// Parameters `?1`..`?15` of a result-setting update (the key, then the
/// result), then `extra` from `?16` on.
fn update_values(uid: &str, index: u64, part: u32, res: &FileResult, extra: &[i64]) -> Vec<Value> {
    let text = |s: &Option<String>| s.clone().map_or(Value::Null, Value::Text);
    let page_info = if res.page_info.is_empty() {
        Value::Null
    } else {
        Value::Text(serde_json::to_string(&res.page_info).unwrap_or_default())
    };
    let mut v = vec![
        Value::Text(uid.to_owned()),
        Value::Integer(index as i64),
        Value::Integer(i64::from(part)),
        text(&res.text),
        res.confidence.map_or(Value::Null, |c| Value::Real(f64::from(c))),
        Value::Integer(i64::from(res.pages)),
        Value::Integer(res.words as i64),
        res.reason.map_or(Value::Null, |r| Value::Text(r.as_str().to_owned())),
        text(&res.error),
        Value::Integer(res.duration_ms as i64),
        text(&res.worker),
        text(&res.node),
        Value::Integer(res.finished_ms),
        page_info,
        text(&res.staged),
    ];
    v.extend(extra.iter().map(|x| Value::Integer(*x)));
    v
}

fn insert_new_tasks(tx: &rusqlite::Transaction<'_>, uid: &str, tasks: &[NewTask]) -> Result<u64> {
    let mut stmt = tx
        .prepare_cached(
            "INSERT OR IGNORE INTO tasks(job_uid, idx, part, first_page, last_page, path, due, size, etag) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )
        .map_err(db)?;
    let mut n = 0;
    for t in tasks {
        let (first, last) = t.pages.map_or((0, 0), |r| (r.first, r.last));
        // NB: ranges get `due` -1 so that a started file's ranges are
        // dispatched before new files (the lease reads in `due` order).
        let due = if t.part > 0 { -1 } else { 0 };
        let size = t.version.as_ref().map(|v| v.size as i64);
        let etag = t.version.as_ref().and_then(|v| v.etag.as_deref());
        n += stmt
            .execute(params![
                uid,
                t.index as i64,
                t.part,
                first,
                last,
                t.path,
                due,
                size,
                etag
            ])
            .map_err(db)? as u64;
    }
    Ok(n)
}

/// Applies one update inside `tx`; whether it applied.
fn apply_update(tx: &rusqlite::Transaction<'_>, u: &TaskUpdate) -> Result<bool> {
    let key = "job_uid = ?1 AND idx = ?2 AND part = ?3";
    // Every transition but a split sets the result: its state change and
    // condition, and the parameters after the result's (`?16`, `?17`).
    let (change, condition, (result, extra)) = match &u.transition {
        Transition::Succeed { result } => ("state = 2, due = 0", "state IN (0, 1)", (result, vec![])),
        Transition::Retry {
            attempt,
            not_before_ms,
            result,
        } => (
            "state = 0, due = ?17",
            "state = 1 AND attempts = ?16",
            (result, vec![i64::from(*attempt), *not_before_ms]),
        ),
        Transition::Fail { attempt, result } => (
            "state = 3, due = 0",
            "state IN (0, 1) AND attempts = ?16",
            (result, vec![i64::from(*attempt)]),
        ),
        Transition::Assemble { succeeded, result } => (
            "state = ?16, due = 0",
            "part = 0 AND state = 4",
            (result, vec![if *succeeded { SUCCEEDED } else { FAILED }]),
        ),
        Transition::Split { pages, ranges } => return split(tx, u, *pages, ranges),
    };
    let sql = format!("UPDATE tasks SET {change}, {SET_RESULT} WHERE {key} AND {condition}");
    let n = tx
        .prepare_cached(&sql)
        .map_err(db)?
        .execute(params_from_iter(update_values(
            &u.job_uid, u.index, u.part, result, &extra,
        )))
        .map_err(db)?;
    if n == 1 && matches!(u.transition, Transition::Assemble { .. }) {
        tx.execute(
            "DELETE FROM tasks WHERE job_uid = ?1 AND idx = ?2 AND part > 0",
            params![u.job_uid, u.index as i64],
        )
        .map_err(db)?;
    }
    Ok(n == 1)
}

/// A file found to need splitting: it waits in `Split` with its page count,
/// and its ranges are inserted.
fn split(tx: &rusqlite::Transaction<'_>, u: &TaskUpdate, pages: u32, ranges: &[PageRange]) -> Result<bool> {
    let n = tx
        .prepare_cached(
            "UPDATE tasks SET state = 4, due = 0, pages = ?4 WHERE job_uid = ?1 AND idx = ?2 AND part = ?3 AND part = 0 AND state IN (0, 1)",
        )
        .map_err(db)?
        .execute(params![u.job_uid, u.index as i64, u.part, pages])
        .map_err(db)?;
    if n == 1 {
        let (path, version): (String, Option<ObjectVersion>) = tx
            .query_row(
                "SELECT path, size, etag FROM tasks WHERE job_uid = ?1 AND idx = ?2 AND part = 0",
                params![u.job_uid, u.index as i64],
                |r| Ok((r.get(0)?, object_version(r.get(1)?, r.get(2)?))),
            )
            .map_err(db)?;
        insert_new_tasks(
            tx,
            &u.job_uid,
            &NewTask::ranges(u.index, &path, version.as_ref(), ranges),
        )?;
    }
    Ok(n == 1)
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn apply_job(&self, job: BulkJob) -> Result<Applied> {
        self.write_job(move |tx| {
            let name = job.metadata.name.clone();
            match load_job(tx, &name)? {
                None => {
                    let new = new_stored_job(job);
                    let rev = bump_revision(tx)?;
                    tx.execute(
                        "INSERT INTO jobs(name, uid, revision, doc) VALUES (?1, ?2, ?3, ?4)",
                        params![name, new.uid(), rev, to_doc(&new)?],
                    )
                    .map_err(db)?;
                    Ok(Applied {
                        job: new,
                        created: true,
                        spec_changed: true,
                    })
                }
                Some(mut current) => {
                    let (spec_changed, changed) = merge_applied(&mut current, &job)?;
                    if changed {
                        save_job(tx, &current, true)?;
                    }
                    Ok(Applied {
                        job: current,
                        created: false,
                        spec_changed,
                    })
                }
            }
        })
        .await
    }

    async fn get_job(&self, name: &str) -> Result<Option<BulkJob>> {
        let name = name.to_owned();
        self.call(move |c| {
            let doc: Option<String> = c
                .query_row("SELECT doc FROM jobs WHERE name = ?1", [&name], |r| r.get(0))
                .optional()
                .map_err(db)?;
            doc.map(|d| parse_doc(&d)).transpose()
        })
        .await
    }

    async fn list_jobs(&self) -> Result<Vec<BulkJob>> {
        self.call(|c| {
            let mut stmt = c.prepare_cached("SELECT doc FROM jobs ORDER BY name").map_err(db)?;
            let docs = stmt.query_map([], |r| r.get::<_, String>(0)).map_err(db)?;
            let mut out = Vec::new();
            for d in docs {
                out.push(parse_doc(&d.map_err(db)?)?);
            }
            Ok(out)
        })
        .await
    }

    async fn update_status(&self, name: &str, uid: &str, status: &BulkJobStatus) -> Result<()> {
        let (name, uid, status) = (name.to_owned(), uid.to_owned(), status.clone());
        self.write(move |tx| {
            let mut job = load_owned(tx, &name, &uid)?;
            job.status = Some(status);
            save_job(tx, &job, false)
        })
        .await
    }

    async fn add_finalizer(&self, name: &str, uid: &str) -> Result<()> {
        let (name, uid) = (name.to_owned(), uid.to_owned());
        self.write_job(move |tx| {
            let mut job = load_owned(tx, &name, &uid)?;
            if !job.has_finalizer() {
                job.metadata.finalizers.push(FINALIZER.to_owned());
                save_job(tx, &job, true)?;
            }
            Ok(())
        })
        .await
    }

    async fn remove_finalizer(&self, name: &str, uid: &str) -> Result<()> {
        let (name, uid) = (name.to_owned(), uid.to_owned());
        self.write_job(move |tx| {
            let mut job = load_owned(tx, &name, &uid)?;
            job.metadata.finalizers.retain(|f| f != FINALIZER);
            if job.is_deleting() && job.metadata.finalizers.is_empty() {
                remove_job(tx, &name, &uid)
            } else {
                save_job(tx, &job, true)
            }
        })
        .await
    }

    async fn request_delete(&self, name: &str) -> Result<Deleted> {
        let name = name.to_owned();
        self.write_job(move |tx| {
            let mut job = load_job(tx, &name)?.ok_or_else(|| StoreError::NotFound(name.clone()))?;
            if job.metadata.finalizers.is_empty() {
                remove_job(tx, &name, job.uid())?;
                return Ok(Deleted::Removed);
            }
            if job.metadata.deletion_timestamp.is_none() {
                job.metadata.deletion_timestamp = Some(Utc::now());
                save_job(tx, &job, true)?;
            }
            Ok(Deleted::Marked)
        })
        .await
    }

    async fn force_delete(&self, name: &str) -> Result<()> {
        let name = name.to_owned();
        self.write_job(move |tx| {
            let job = load_job(tx, &name)?.ok_or_else(|| StoreError::NotFound(name.clone()))?;
            remove_job(tx, &name, job.uid())
        })
        .await
    }

    fn watch(&self) -> BoxStream<'static, WatchEvent> {
        let (tx, rx) = mpsc::channel(256);
        let conn = self.conn.clone();
        let changed = self.changed.clone();
        tokio::spawn(async move {
            let mut seen: i64 = -1;
            loop {
                let notified = changed.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                let conn2 = conn.clone();
                let since = seen;
                let rows = tokio::task::spawn_blocking(move || -> Result<Vec<(String, i64)>> {
                    let c = lock(&conn2);
                    let mut stmt = c
                        .prepare_cached("SELECT name, revision FROM jobs WHERE revision > ?1 ORDER BY revision")
                        .map_err(db)?;
                    let rows = stmt
                        .query_map([since], |r| Ok((r.get(0)?, r.get(1)?)))
                        .map_err(db)?
                        .collect::<rusqlite::Result<Vec<_>>>()
                        .map_err(db)?;
                    Ok(rows)
                })
                .await;
                match rows {
                    Ok(Ok(rows)) => {
                        for (name, rev) in rows {
                            seen = seen.max(rev);
                            if tx.send(WatchEvent::Changed(name)).await.is_err() {
                                return;
                            }
                        }
                    }
                    Ok(Err(error)) => tracing::warn!(%error, "store watch poll failed"),
                    Err(error) => tracing::warn!(%error, "store watch poll panicked"),
                }
                if tx.is_closed() {
                    return;
                }
                tokio::select! {
                    _ = notified => {}
                    _ = tokio::time::sleep(WATCH_POLL) => {}
                    _ = tx.closed() => return,
                }
            }
        });
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (e, rx)) }).boxed()
    }

    async fn insert_tasks(&self, job_uid: &str, tasks: Vec<NewTask>) -> Result<u64> {
        let uid = job_uid.to_owned();
        self.write(move |tx| insert_new_tasks(tx, &uid, &tasks)).await
    }

    async fn delete_tasks(&self, job_uid: &str) -> Result<u64> {
        let uid = job_uid.to_owned();
        self.write(move |tx| {
            let n = tx.execute("DELETE FROM tasks WHERE job_uid = ?1", [&uid]).map_err(db)? as u64;
            tx.execute("DELETE FROM task_tally WHERE job_uid = ?1", [&uid])
                .map_err(db)?;
            Ok(n)
        })
        .await
    }

    async fn lease_tasks(&self, req: LeaseRequest) -> Result<Leased> {
        self.write(move |tx| {
            let exhausted = tx
                .execute(
                    // NB: by attempts, not by due: every pending task is due,
                    // and this runs on every dispatch.
                    "UPDATE tasks INDEXED BY tasks_by_attempts SET state = ?4, reason = ?5, error = 'dispatched ' || attempts || ' times without a result', finished = ?2, due = 0
                     WHERE job_uid = ?1 AND state IN (0, 1) AND attempts >= ?3 AND due <= ?2",
                    params![req.job_uid, req.now_ms, req.max_attempts, FAILED, FailureReason::AttemptsExceeded.as_str()],
                )
                .map_err(db)? as u64;
            let sql = format!(
                "SELECT {TASK_COLUMNS} FROM tasks WHERE job_uid = ?1 AND state = ?2 AND due <= ?3 ORDER BY due LIMIT ?4"
            );
            let mut tasks = query_tasks(tx, &sql, params![req.job_uid, PENDING, req.now_ms, req.limit as i64])?;
            if tasks.len() < req.limit {
                let more = (req.limit - tasks.len()) as i64;
                tasks.extend(query_tasks(tx, &sql, params![req.job_uid, DISPATCHED, req.now_ms, more])?);
            }
            let lease_until = req.now_ms + req.lease_ms;
            {
                let mut stmt = tx
                    .prepare_cached(
                        "UPDATE tasks SET state = 1, attempts = attempts + 1, due = ?4 WHERE job_uid = ?1 AND idx = ?2 AND part = ?3",
                    )
                    .map_err(db)?;
                for t in &mut tasks {
                    stmt.execute(params![req.job_uid, t.index as i64, t.part, lease_until]).map_err(db)?;
                    t.state = TaskState::Dispatched;
                    t.attempts += 1;
                    t.lease_until_ms = lease_until;
                    t.not_before_ms = 0;
                }
            }
            Ok(Leased { tasks, exhausted })
        })
        .await
    }

    async fn unlease_tasks(&self, job_uid: &str, keys: &[(u64, u32)]) -> Result<u64> {
        let (uid, keys) = (job_uid.to_owned(), keys.to_vec());
        self.write(move |tx| {
            let mut n = 0;
            {
                let mut stmt = tx
                    .prepare_cached(
                        "UPDATE tasks SET state = 0, due = 0, attempts = MAX(attempts - 1, 0) WHERE job_uid = ?1 AND idx = ?2 AND part = ?3 AND state = 1",
                    )
                    .map_err(db)?;
                for (i, part) in keys {
                    n += stmt.execute(params![uid, i as i64, part]).map_err(db)? as u64;
                }
            }
            Ok(n)
        })
        .await
    }

    async fn renew_leases(&self, job_uid: &str, until_ms: i64) -> Result<u64> {
        let uid = job_uid.to_owned();
        self.write(move |tx| {
            // NB: a range of the (job, state, due) index: only the leases
            // that end earlier are read.
            tx.execute(
                "UPDATE tasks SET due = ?3 WHERE job_uid = ?1 AND state = ?2 AND due < ?3",
                params![uid, DISPATCHED, until_ms],
            )
            .map(|n| n as u64)
            .map_err(db)
        })
        .await
    }

    async fn retry_failed(&self, job_uid: &str) -> Result<u64> {
        let uid = job_uid.to_owned();
        self.write(move |tx| {
            tx.execute(
                "DELETE FROM tasks WHERE job_uid = ?1 AND part > 0 AND idx IN \
                 (SELECT idx FROM tasks WHERE job_uid = ?1 AND part = 0 AND state = 3)",
                params![uid],
            )
            .map_err(db)?;
            let n = tx
                .execute(
                    "UPDATE tasks SET state = 0, due = 0, attempts = 0, text = NULL, confidence = NULL, pages = 0, \
                     words = 0, reason = NULL, error = NULL, duration_ms = 0, worker = NULL, node = NULL, finished = 0, \
                     page_info = NULL, staged = NULL WHERE job_uid = ?1 AND part = 0 AND state = 3",
                    params![uid],
                )
                .map_err(db)? as u64;
            Ok(n)
        })
        .await
    }

    async fn reset_dispatched(&self) -> Result<u64> {
        self.write(|tx| {
            tx.execute("UPDATE tasks SET state = 0, due = 0 WHERE state = 1", [])
                .map(|n| n as u64)
                .map_err(db)
        })
        .await
    }

    async fn apply_updates(&self, updates: Vec<TaskUpdate>) -> Result<Vec<bool>> {
        self.write(move |tx| {
            let mut applied = Vec::with_capacity(updates.len());
            for u in &updates {
                applied.push(apply_update(tx, u)?);
            }
            Ok(applied)
        })
        .await
    }

    async fn task_counts(&self, job_uid: &str) -> Result<TaskCounts> {
        let uid = job_uid.to_owned();
        self.call(move |c| {
            let mut counts = TaskCounts::default();
            let mut stmt = c
                .prepare_cached("SELECT state, file, n, pages FROM task_tally WHERE job_uid = ?1 AND n > 0")
                .map_err(db)?;
            let rows = stmt
                .query_map([uid], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, bool>(1)?,
                        r.get::<_, i64>(2)? as u64,
                        r.get::<_, i64>(3)? as u64,
                    ))
                })
                .map_err(db)?;
            for row in rows {
                let (code, is_file, n, pages) = row.map_err(db)?;
                let state = state_from(code)?;
                if state == TaskState::Dispatched {
                    counts.in_flight += n;
                }
                if is_file {
                    count_state(&mut counts.files, state, n);
                    if state == TaskState::Split {
                        counts.split += n;
                    }
                    // NB: a file's pages are known once it was opened (split
                    // or finished); until then it counts as one.
                    counts.pages.total += if matches!(state, TaskState::Pending | TaskState::Dispatched) {
                        n
                    } else {
                        pages
                    };
                    if state.is_terminal() {
                        counts.pages.done += pages;
                    }
                } else if state.is_terminal() {
                    counts.pages.done += pages;
                }
            }
            Ok(counts)
        })
        .await
    }

    async fn count_in_flight(&self, job_uid: &str) -> Result<u64> {
        let uid = job_uid.to_owned();
        self.call(move |c| {
            c.prepare_cached("SELECT COALESCE(SUM(n), 0) FROM task_tally WHERE job_uid = ?1 AND state = ?2")
                .map_err(db)?
                .query_row(params![uid, DISPATCHED], |r| r.get::<_, i64>(0))
                .map(|n| n.max(0) as u64)
                .map_err(db)
        })
        .await
    }

    async fn get_task(&self, job_uid: &str, index: u64) -> Result<Option<TaskRecord>> {
        let uid = job_uid.to_owned();
        self.call(move |c| {
            let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE job_uid = ?1 AND idx = ?2 AND part = 0");
            Ok(query_tasks(c, &sql, params![uid, index as i64])?.pop())
        })
        .await
    }

    async fn list_tasks(&self, job_uid: &str, after: Option<u64>, limit: usize) -> Result<Vec<TaskRecord>> {
        let uid = job_uid.to_owned();
        self.call(move |c| {
            let sql = format!(
                "SELECT {TASK_COLUMNS} FROM tasks WHERE job_uid = ?1 AND idx > ?2 AND part = 0 ORDER BY idx LIMIT ?3"
            );
            let after = after.map_or(-1, |a| a as i64);
            query_tasks(c, &sql, params![uid, after, limit as i64])
        })
        .await
    }

    async fn list_parts(&self, job_uid: &str, index: u64) -> Result<Vec<TaskRecord>> {
        let uid = job_uid.to_owned();
        self.call(move |c| {
            let sql =
                format!("SELECT {TASK_COLUMNS} FROM tasks WHERE job_uid = ?1 AND idx = ?2 AND part > 0 ORDER BY part");
            query_tasks(c, &sql, params![uid, index as i64])
        })
        .await
    }

    async fn split_ready(&self, job_uid: &str, limit: usize) -> Result<Vec<TaskRecord>> {
        let uid = job_uid.to_owned();
        self.call(move |c| {
            // NB: by the state index: left to itself, the planner walks
            // every task of the job in `idx` order to spare the sort of the
            // few split files (seen: most of a reconcile's cost at a
            // million files).
            let sql = format!(
                "SELECT {TASK_COLUMNS} FROM tasks AS f INDEXED BY tasks_by_state WHERE job_uid = ?1 AND state = {SPLIT} AND part = 0 AND NOT EXISTS \
                 (SELECT 1 FROM tasks AS r WHERE r.job_uid = ?1 AND r.idx = f.idx AND r.part > 0 AND r.state IN (0, 1)) \
                 ORDER BY idx LIMIT ?2"
            );
            query_tasks(c, &sql, params![uid, limit as i64])
        })
        .await
    }

    async fn summarize(&self, job_uid: &str) -> Result<ResultSummary> {
        let uid = job_uid.to_owned();
        self.call(move |c| {
            let (pages, words, conf, ocr_ms) = c
                .query_row(
                    "SELECT COALESCE(SUM(pages), 0), COALESCE(SUM(words), 0), COALESCE(SUM(confidence * pages), 0.0), COALESCE(SUM(duration_ms), 0)
                     FROM tasks WHERE job_uid = ?1 AND state = 2 AND part = 0",
                    [&uid],
                    |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, f64>(2)?, r.get::<_, i64>(3)?)),
                )
                .map_err(db)?;
            let failed_ms: i64 = c
                .query_row(
                    "SELECT COALESCE(SUM(duration_ms), 0) FROM tasks WHERE job_uid = ?1 AND state = 3 AND part = 0",
                    [&uid],
                    |r| r.get(0),
                )
                .map_err(db)?;
            let mut summary = ResultSummary {
                pages: pages as u64,
                words: words as u64,
                confidence_page_sum: conf,
                ocr_ms: (ocr_ms + failed_ms) as u64,
                ..ResultSummary::default()
            };
            let mut stmt = c
                .prepare_cached(
                    "SELECT COALESCE(reason, 'unknown'), COUNT(*) FROM tasks WHERE job_uid = ?1 AND state = 3 AND part = 0 GROUP BY 1",
                )
                .map_err(db)?;
            for row in stmt
                .query_map([&uid], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
                .map_err(db)?
            {
                let (reason, n) = row.map_err(db)?;
                summary.failures_by_reason.insert(reason, n as u64);
            }
            let mut stmt = c
                .prepare_cached("SELECT DISTINCT node FROM tasks WHERE job_uid = ?1 AND node IS NOT NULL ORDER BY node")
                .map_err(db)?;
            for row in stmt.query_map([&uid], |r| r.get::<_, String>(0)).map_err(db)? {
                summary.nodes.push(row.map_err(db)?);
            }
            Ok(summary)
        })
        .await
    }

    async fn acquire_lease(&self, name: &str, holder: &str, now_ms: i64, ttl_ms: i64) -> Result<LeaseState> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        self.call(move |c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db)?;
            tx.execute(
                "INSERT INTO leases(name, holder, expires, generation) VALUES (?1, ?2, ?3, 1)
                 ON CONFLICT(name) DO UPDATE SET holder = excluded.holder, expires = excluded.expires,
                     generation = leases.generation + (leases.holder <> excluded.holder)
                 WHERE leases.holder = excluded.holder OR leases.expires < ?4",
                params![name, holder, now_ms + ttl_ms, now_ms],
            )
            .map_err(db)?;
            let state = tx
                .query_row(
                    "SELECT holder, expires, generation FROM leases WHERE name = ?1",
                    [&name],
                    |r| {
                        Ok(LeaseState {
                            holder: r.get(0)?,
                            expires_ms: r.get(1)?,
                            generation: r.get::<_, i64>(2)? as u64,
                        })
                    },
                )
                .map_err(db)?;
            tx.commit().map_err(db)?;
            Ok(state)
        })
        .await
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        self.call(move |c| {
            // NB: the row stays, with its generation: the next holder's
            // must be higher than any a deposed leader may still hold.
            c.execute(
                "UPDATE leases SET expires = 0 WHERE name = ?1 AND holder = ?2",
                params![name, holder],
            )
            .map(|_| ())
            .map_err(db)
        })
        .await
    }

    fn fenced(&self, fence: Fence) -> Arc<dyn Store> {
        Arc::new(Self {
            conn: self.conn.clone(),
            changed: self.changed.clone(),
            path: self.path.clone(),
            fence: Some(Arc::new(fence)),
        })
    }
}
