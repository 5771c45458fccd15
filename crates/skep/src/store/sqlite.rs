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
use skep_api::{BulkJob, BulkJobStatus, FINALIZER, FailureReason, FileCounts};
use tokio::sync::{Notify, mpsc};

use super::{
    Applied, Deleted, FileResult, LeaseRequest, LeaseState, Leased, NewTask, Result, ResultSummary, Store, StoreError,
    TaskRecord, TaskState, TaskUpdate, Transition, WatchEvent, count_state, merge_applied, new_stored_job,
};

/// How often `watch` looks for changes made by other processes; changes
/// made through this store wake it at once.
pub const WATCH_POLL: Duration = Duration::from_millis(500);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta(key, value) VALUES ('revision', 0), ('schema', 1);
CREATE TABLE IF NOT EXISTS jobs (
    name TEXT PRIMARY KEY,
    uid TEXT NOT NULL UNIQUE,
    revision INTEGER NOT NULL,
    doc TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tasks (
    job_uid TEXT NOT NULL,
    idx INTEGER NOT NULL,
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
    PRIMARY KEY (job_uid, idx)
);
CREATE INDEX IF NOT EXISTS tasks_by_state ON tasks(job_uid, state, due);
CREATE TABLE IF NOT EXISTS leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires INTEGER NOT NULL
);
";

// NB: `due` is `not_before` for a pending task and the lease end for a
// dispatched one, so one index serves both "ready to dispatch" queries.
const PENDING: i64 = 0;
const DISPATCHED: i64 = 1;
const SUCCEEDED: i64 = 2;
const FAILED: i64 = 3;

fn state_from(code: i64) -> Result<TaskState> {
    Ok(match code {
        PENDING => TaskState::Pending,
        DISPATCHED => TaskState::Dispatched,
        SUCCEEDED => TaskState::Succeeded,
        FAILED => TaskState::Failed,
        other => return Err(StoreError::Corrupt(format!("task state {other}"))),
    })
}

pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    changed: Arc<Notify>,
    path: String,
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
            Ok(conn)
        })
        .await
        .map_err(|e| StoreError::Backend(e.to_string()))??;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            changed: Arc::new(Notify::new()),
            path: display,
        })
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

    /// Runs a job-document write in an immediate transaction and wakes
    /// watchers when it bumped the revision.
    async fn write_job<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> Result<T> + Send + 'static,
    {
        let out = self
            .call(move |c| {
                let tx = c
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(db)?;
                let out = f(&tx)?;
                tx.commit().map_err(db)?;
                Ok(out)
            })
            .await?;
        self.changed.notify_waiters();
        Ok(out)
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
    bump_revision(tx)?;
    Ok(())
}

const TASK_COLUMNS: &str = "job_uid, idx, path, state, attempts, due, text, confidence, pages, words, reason, error, duration_ms, worker, node, finished";

/// A task row as read, before its state code and reason are checked.
struct TaskRow {
    record: TaskRecord,
    state: i64,
    due: i64,
    reason: Option<String>,
}

fn task_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TaskRow> {
    let result = FileResult {
        text: r.get(6)?,
        confidence: r.get::<_, Option<f64>>(7)?.map(|c| c as f32),
        pages: r.get::<_, i64>(8)? as u32,
        words: r.get::<_, i64>(9)? as u64,
        reason: None,
        error: r.get(11)?,
        duration_ms: r.get::<_, i64>(12)? as u64,
        worker: r.get(13)?,
        node: r.get(14)?,
        finished_ms: r.get(15)?,
    };
    Ok(TaskRow {
        record: TaskRecord {
            job_uid: r.get(0)?,
            index: r.get::<_, i64>(1)? as u64,
            path: r.get(2)?,
            state: TaskState::Pending,
            attempts: r.get::<_, i64>(4)? as u32,
            not_before_ms: 0,
            lease_until_ms: 0,
            result: Some(result),
        },
        state: r.get(3)?,
        due: r.get(5)?,
        reason: r.get(10)?,
    })
}

fn finish_task(row: TaskRow) -> Result<TaskRecord> {
    let TaskRow {
        mut record,
        state,
        due,
        reason,
    } = row;
    record.state = state_from(state)?;
    match record.state {
        TaskState::Pending => record.not_before_ms = due,
        TaskState::Dispatched => record.lease_until_ms = due,
        TaskState::Succeeded | TaskState::Failed => {}
    }
    if let Some(res) = record.result.as_mut() {
        res.reason = reason.as_deref().and_then(FailureReason::parse);
        if res.text.is_none() && res.error.is_none() && res.reason.is_none() && res.finished_ms == 0 {
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

/// Parameters `?3`..`?12` of the result-setting updates.
fn result_values(res: &FileResult) -> [Value; 10] {
    let text = |s: &Option<String>| s.clone().map_or(Value::Null, Value::Text);
    [
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
    ]
}

fn update_values(uid: &str, index: u64, res: &FileResult, extra: &[i64]) -> Vec<Value> {
    let mut v = Vec::with_capacity(12 + extra.len());
    v.push(Value::Text(uid.to_owned()));
    v.push(Value::Integer(index as i64));
    v.extend(result_values(res));
    v.extend(extra.iter().map(|x| Value::Integer(*x)));
    v
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
        self.call(move |c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db)?;
            let mut job = load_owned(&tx, &name, &uid)?;
            job.status = Some(status);
            save_job(&tx, &job, false)?;
            tx.commit().map_err(db)
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
        self.call(move |c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db)?;
            let mut n = 0;
            {
                let mut stmt = tx
                    .prepare_cached("INSERT OR IGNORE INTO tasks(job_uid, idx, path) VALUES (?1, ?2, ?3)")
                    .map_err(db)?;
                for t in &tasks {
                    n += stmt.execute(params![uid, t.index as i64, t.path]).map_err(db)? as u64;
                }
            }
            tx.commit().map_err(db)?;
            Ok(n)
        })
        .await
    }

    async fn delete_tasks(&self, job_uid: &str) -> Result<u64> {
        let uid = job_uid.to_owned();
        self.call(move |c| {
            c.execute("DELETE FROM tasks WHERE job_uid = ?1", [uid])
                .map(|n| n as u64)
                .map_err(db)
        })
        .await
    }

    async fn lease_tasks(&self, req: LeaseRequest) -> Result<Leased> {
        self.call(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db)?;
            let exhausted = tx
                .execute(
                    "UPDATE tasks SET state = ?4, reason = ?5, error = 'dispatched ' || attempts || ' times without a result', finished = ?2, due = 0
                     WHERE job_uid = ?1 AND state IN (0, 1) AND due <= ?2 AND attempts >= ?3",
                    params![req.job_uid, req.now_ms, req.max_attempts, FAILED, FailureReason::AttemptsExceeded.as_str()],
                )
                .map_err(db)? as u64;
            let sql = format!(
                "SELECT {TASK_COLUMNS} FROM tasks WHERE job_uid = ?1 AND state = ?2 AND due <= ?3 ORDER BY due LIMIT ?4"
            );
            let mut tasks = query_tasks(&tx, &sql, params![req.job_uid, PENDING, req.now_ms, req.limit as i64])?;
            if tasks.len() < req.limit {
                let more = (req.limit - tasks.len()) as i64;
                tasks.extend(query_tasks(&tx, &sql, params![req.job_uid, DISPATCHED, req.now_ms, more])?);
            }
            let lease_until = req.now_ms + req.lease_ms;
            {
                let mut stmt = tx
                    .prepare_cached("UPDATE tasks SET state = 1, attempts = attempts + 1, due = ?3 WHERE job_uid = ?1 AND idx = ?2")
                    .map_err(db)?;
                for t in &mut tasks {
                    stmt.execute(params![req.job_uid, t.index as i64, lease_until]).map_err(db)?;
                    t.state = TaskState::Dispatched;
                    t.attempts += 1;
                    t.lease_until_ms = lease_until;
                    t.not_before_ms = 0;
                }
            }
            tx.commit().map_err(db)?;
            Ok(Leased { tasks, exhausted })
        })
        .await
    }

    async fn unlease_tasks(&self, job_uid: &str, indexes: &[u64]) -> Result<u64> {
        let (uid, indexes) = (job_uid.to_owned(), indexes.to_vec());
        self.call(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db)?;
            let mut n = 0;
            {
                let mut stmt = tx
                    .prepare_cached(
                        "UPDATE tasks SET state = 0, due = 0, attempts = MAX(attempts - 1, 0) WHERE job_uid = ?1 AND idx = ?2 AND state = 1",
                    )
                    .map_err(db)?;
                for i in indexes {
                    n += stmt.execute(params![uid, i as i64]).map_err(db)? as u64;
                }
            }
            tx.commit().map_err(db)?;
            Ok(n)
        })
        .await
    }

    async fn retry_failed(&self, job_uid: &str) -> Result<u64> {
        let uid = job_uid.to_owned();
        self.call(move |c| {
            c.execute(
                "UPDATE tasks SET state = 0, due = 0, attempts = 0, text = NULL, confidence = NULL, pages = 0, \
                 words = 0, reason = NULL, error = NULL, duration_ms = 0, worker = NULL, node = NULL, finished = 0 \
                 WHERE job_uid = ?1 AND state = 3",
                params![uid],
            )
            .map(|n| n as u64)
            .map_err(db)
        })
        .await
    }

    async fn reset_dispatched(&self) -> Result<u64> {
        self.call(|c| {
            c.execute("UPDATE tasks SET state = 0, due = 0 WHERE state = 1", [])
                .map(|n| n as u64)
                .map_err(db)
        })
        .await
    }

    async fn apply_updates(&self, updates: Vec<TaskUpdate>) -> Result<Vec<bool>> {
        self.call(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db)?;
            let mut applied = Vec::with_capacity(updates.len());
            {
                let set = "text = ?3, confidence = ?4, pages = ?5, words = ?6, reason = ?7, error = ?8, duration_ms = ?9, worker = ?10, node = ?11, finished = ?12";
                let mut succeed = tx
                    .prepare_cached(&format!(
                        "UPDATE tasks SET state = 2, due = 0, {set} WHERE job_uid = ?1 AND idx = ?2 AND state IN (0, 1)"
                    ))
                    .map_err(db)?;
                let mut retry = tx
                    .prepare_cached(&format!(
                        "UPDATE tasks SET state = 0, due = ?14, {set} WHERE job_uid = ?1 AND idx = ?2 AND state = 1 AND attempts = ?13"
                    ))
                    .map_err(db)?;
                let mut fail = tx
                    .prepare_cached(&format!(
                        "UPDATE tasks SET state = 3, due = 0, {set} WHERE job_uid = ?1 AND idx = ?2 AND state IN (0, 1) AND attempts = ?13"
                    ))
                    .map_err(db)?;
                for u in &updates {
                    let n = match &u.transition {
                        Transition::Succeed { result } => {
                            succeed.execute(params_from_iter(update_values(&u.job_uid, u.index, result, &[])))
                        }
                        Transition::Retry {
                            attempt,
                            not_before_ms,
                            result,
                        } => retry.execute(params_from_iter(update_values(
                            &u.job_uid,
                            u.index,
                            result,
                            &[i64::from(*attempt), *not_before_ms],
                        ))),
                        Transition::Fail { attempt, result } => fail.execute(params_from_iter(update_values(
                            &u.job_uid,
                            u.index,
                            result,
                            &[i64::from(*attempt)],
                        ))),
                    }
                    .map_err(db)?;
                    applied.push(n == 1);
                }
            }
            tx.commit().map_err(db)?;
            Ok(applied)
        })
        .await
    }

    async fn task_counts(&self, job_uid: &str) -> Result<FileCounts> {
        let uid = job_uid.to_owned();
        self.call(move |c| {
            let mut stmt = c
                .prepare_cached("SELECT state, COUNT(*) FROM tasks WHERE job_uid = ?1 GROUP BY state")
                .map_err(db)?;
            let rows = stmt
                .query_map([uid], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)? as u64)))
                .map_err(db)?;
            let mut counts = FileCounts::default();
            for row in rows {
                let (state, n) = row.map_err(db)?;
                count_state(&mut counts, state_from(state)?, n);
            }
            Ok(counts)
        })
        .await
    }

    async fn get_task(&self, job_uid: &str, index: u64) -> Result<Option<TaskRecord>> {
        let uid = job_uid.to_owned();
        self.call(move |c| {
            let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE job_uid = ?1 AND idx = ?2");
            Ok(query_tasks(c, &sql, params![uid, index as i64])?.pop())
        })
        .await
    }

    async fn list_tasks(&self, job_uid: &str, after: Option<u64>, limit: usize) -> Result<Vec<TaskRecord>> {
        let uid = job_uid.to_owned();
        self.call(move |c| {
            let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE job_uid = ?1 AND idx > ?2 ORDER BY idx LIMIT ?3");
            let after = after.map_or(-1, |a| a as i64);
            query_tasks(c, &sql, params![uid, after, limit as i64])
        })
        .await
    }

    async fn summarize(&self, job_uid: &str) -> Result<ResultSummary> {
        let uid = job_uid.to_owned();
        self.call(move |c| {
            let (pages, words, conf, ocr_ms) = c
                .query_row(
                    "SELECT COALESCE(SUM(pages), 0), COALESCE(SUM(words), 0), COALESCE(SUM(confidence * pages), 0.0), COALESCE(SUM(duration_ms), 0)
                     FROM tasks WHERE job_uid = ?1 AND state = 2",
                    [&uid],
                    |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, f64>(2)?, r.get::<_, i64>(3)?)),
                )
                .map_err(db)?;
            let failed_ms: i64 = c
                .query_row(
                    "SELECT COALESCE(SUM(duration_ms), 0) FROM tasks WHERE job_uid = ?1 AND state = 3",
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
                .prepare_cached("SELECT COALESCE(reason, 'unknown'), COUNT(*) FROM tasks WHERE job_uid = ?1 AND state = 3 GROUP BY 1")
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
            c.execute(
                "INSERT INTO leases(name, holder, expires) VALUES (?1, ?2, ?3)
                 ON CONFLICT(name) DO UPDATE SET holder = excluded.holder, expires = excluded.expires
                 WHERE leases.holder = excluded.holder OR leases.expires < ?4",
                params![name, holder, now_ms + ttl_ms, now_ms],
            )
            .map_err(db)?;
            c.query_row("SELECT holder, expires FROM leases WHERE name = ?1", [&name], |r| {
                Ok(LeaseState {
                    holder: r.get(0)?,
                    expires_ms: r.get(1)?,
                })
            })
            .map_err(db)
        })
        .await
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        self.call(move |c| {
            c.execute(
                "DELETE FROM leases WHERE name = ?1 AND holder = ?2",
                params![name, holder],
            )
            .map(|_| ())
            .map_err(db)
        })
        .await
    }
}
