//! The `Store` seam: the single source of truth for jobs, their per-file
//! tasks and results, and the controller lease.
//!
//! What every backend guarantees:
//! - `apply_job` bumps `metadata.generation` when, and only when, the spec
//!   changes; status writes never bump it;
//! - `watch` delivers (at least) one event for every apply, deletion request
//!   and finalizer change, and never for status writes;
//! - a task is leased by one caller at a time (`lease_tasks` is atomic);
//! - a file has at most one final result: the first terminal transition of
//!   a task wins and later ones are refused (results are idempotent per job
//!   uid and file index).

pub mod conformance;
mod sqlite;

use std::collections::BTreeMap;
use std::path::PathBuf;

use async_trait::async_trait;
use futures::stream::BoxStream;
use skep_api::{BulkJob, BulkJobStatus, FailureReason, FileCounts};

pub use sqlite::SqliteStore;

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("bulkjob {0:?} not found")]
    NotFound(String),
    /// The document changed under the caller (another uid, or being deleted).
    #[error("conflict on bulkjob {name:?}: {reason}")]
    Conflict { name: String, reason: String },
    /// The backend failed or is unreachable.
    #[error("store backend error: {0}")]
    Backend(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

impl StoreError {
    pub fn metric_label(&self) -> &'static str {
        match self {
            StoreError::NotFound(_) => "not_found",
            StoreError::Conflict { .. } => "conflict",
            StoreError::Backend(_) => "backend",
            StoreError::Corrupt(_) => "corrupt",
        }
    }
}

/// What `apply_job` did.
#[derive(Clone, Debug)]
pub struct Applied {
    pub job: BulkJob,
    pub created: bool,
    /// The spec differed from the stored one (generation bumped).
    pub spec_changed: bool,
}

/// What `request_delete` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deleted {
    /// The job had no finalizer and is gone, with its tasks.
    Removed,
    /// Marked for deletion; the controller removes it after cleanup.
    Marked,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchEvent {
    /// The named job was applied, marked for deletion or had a finalizer
    /// change.
    Changed(String),
}

/// One file found by the scan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewTask {
    pub index: u64,
    /// Relative to the job's source folder, `/`-separated.
    pub path: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TaskState {
    Pending,
    Dispatched,
    Succeeded,
    Failed,
}

impl TaskState {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Pending => "pending",
            TaskState::Dispatched => "dispatched",
            TaskState::Succeeded => "succeeded",
            TaskState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            TaskState::Pending,
            TaskState::Dispatched,
            TaskState::Succeeded,
            TaskState::Failed,
        ]
        .into_iter()
        .find(|t| t.as_str() == s)
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, TaskState::Succeeded | TaskState::Failed)
    }
}

/// A file's outcome, as stored.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FileResult {
    pub text: Option<String>,
    pub confidence: Option<f32>,
    pub pages: u32,
    pub words: u64,
    pub reason: Option<FailureReason>,
    pub error: Option<String>,
    pub duration_ms: u64,
    pub worker: Option<String>,
    pub node: Option<String>,
    pub finished_ms: i64,
}

/// One file of a job.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskRecord {
    pub job_uid: String,
    pub index: u64,
    pub path: String,
    pub state: TaskState,
    /// Dispatches so far.
    pub attempts: u32,
    /// A pending task is not dispatched before this (retry backoff).
    pub not_before_ms: i64,
    /// A dispatched task whose lease ran out is dispatched again.
    pub lease_until_ms: i64,
    /// Set once the task is terminal (and for the last retryable failure).
    pub result: Option<FileResult>,
}

/// Ask for up to `limit` tasks of a job to dispatch.
#[derive(Clone, Debug)]
pub struct LeaseRequest {
    pub job_uid: String,
    pub limit: usize,
    pub now_ms: i64,
    /// The lease ends at `now_ms + lease_ms`.
    pub lease_ms: i64,
    /// A task already dispatched this often is failed with reason
    /// `attemptsExceeded` instead of being leased again.
    pub max_attempts: u32,
}

/// Tasks leased (their `attempts` already counts this dispatch), and how
/// many were failed instead because their attempts ran out.
#[derive(Clone, Debug, Default)]
pub struct Leased {
    pub tasks: Vec<TaskRecord>,
    pub exhausted: u64,
}

/// A result-driven change of one task.
#[derive(Clone, Debug, PartialEq)]
pub enum Transition {
    /// Applies unless the task is already terminal.
    Succeed { result: FileResult },
    /// Back to pending after a retryable failure. Applies only while the
    /// task is dispatched for this `attempt` (a stale failure is ignored).
    Retry {
        attempt: u32,
        not_before_ms: i64,
        result: FileResult,
    },
    /// Failed for good. Applies only to a non-terminal task whose attempts
    /// equal `attempt`.
    Fail { attempt: u32, result: FileResult },
}

#[derive(Clone, Debug, PartialEq)]
pub struct TaskUpdate {
    pub job_uid: String,
    pub index: u64,
    pub transition: Transition,
}

/// Aggregates over a job's results, for its report.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ResultSummary {
    pub pages: u64,
    pub words: u64,
    /// Sum of per-file mean confidence times pages, over succeeded files.
    pub confidence_page_sum: f64,
    pub ocr_ms: u64,
    pub failures_by_reason: BTreeMap<String, u64>,
    pub nodes: Vec<String>,
}

/// Who holds the controller lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseState {
    pub holder: String,
    pub expires_ms: i64,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    fn backend(&self) -> &'static str;

    /// Creates the job or updates its spec, labels and annotations. Server
    /// fields of the input (uid, generation, status, ...) are ignored.
    /// Refused with `Conflict` while the job is being deleted.
    async fn apply_job(&self, job: BulkJob) -> Result<Applied>;
    async fn get_job(&self, name: &str) -> Result<Option<BulkJob>>;
    async fn list_jobs(&self) -> Result<Vec<BulkJob>>;
    /// Replaces the status of the job `name` if its uid is still `uid`.
    async fn update_status(&self, name: &str, uid: &str, status: &BulkJobStatus) -> Result<()>;
    async fn add_finalizer(&self, name: &str, uid: &str) -> Result<()>;
    /// Removes the finalizer; a job marked for deletion with no finalizer
    /// left is removed, with its tasks.
    async fn remove_finalizer(&self, name: &str, uid: &str) -> Result<()>;
    async fn request_delete(&self, name: &str) -> Result<Deleted>;
    /// Removes the job and its tasks now, finalizer or not.
    async fn force_delete(&self, name: &str) -> Result<()>;
    /// Change events; see the module docs. The stream ends only with the
    /// store.
    fn watch(&self) -> BoxStream<'static, WatchEvent>;

    /// Inserts tasks; an index already present is left alone.
    async fn insert_tasks(&self, job_uid: &str, tasks: Vec<NewTask>) -> Result<u64>;
    async fn delete_tasks(&self, job_uid: &str) -> Result<u64>;
    async fn lease_tasks(&self, req: LeaseRequest) -> Result<Leased>;
    /// Puts dispatched tasks back to pending without counting the attempt
    /// against them (their dispatch never happened).
    async fn unlease_tasks(&self, job_uid: &str, indexes: &[u64]) -> Result<u64>;
    /// Every dispatched task of every job back to pending (the queue lost
    /// them: it is not durable and this process is new).
    async fn reset_dispatched(&self) -> Result<u64>;
    /// Applies each update atomically; says for each whether it applied.
    async fn apply_updates(&self, updates: Vec<TaskUpdate>) -> Result<Vec<bool>>;
    async fn task_counts(&self, job_uid: &str) -> Result<FileCounts>;
    async fn get_task(&self, job_uid: &str, index: u64) -> Result<Option<TaskRecord>>;
    /// Tasks in index order, after `after` (exclusive).
    async fn list_tasks(&self, job_uid: &str, after: Option<u64>, limit: usize) -> Result<Vec<TaskRecord>>;
    async fn summarize(&self, job_uid: &str) -> Result<ResultSummary>;

    /// Takes or renews the lease `name` for `holder` until `now_ms + ttl_ms`
    /// if it is free, expired or already `holder`'s; returns who holds it
    /// afterwards.
    async fn acquire_lease(&self, name: &str, holder: &str, now_ms: i64, ttl_ms: i64) -> Result<LeaseState>;
    async fn release_lease(&self, name: &str, holder: &str) -> Result<()>;
}

/// Where a store lives, as given by `--store` / `SKEP_STORE`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreUrl {
    Sqlite(PathBuf),
}

impl StoreUrl {
    /// `sqlite:PATH` (or `sqlite://PATH`); a bare path means SQLite too.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("the store URL is empty".to_owned());
        }
        if let Some(rest) = s.strip_prefix("sqlite://").or_else(|| s.strip_prefix("sqlite:")) {
            if rest.is_empty() {
                return Err("sqlite: needs a file path, as in sqlite:/var/lib/skep/skep.db".to_owned());
            }
            return Ok(StoreUrl::Sqlite(PathBuf::from(rest)));
        }
        if s.starts_with("mongodb://") || s.starts_with("mongodb+srv://") {
            return Err("the MongoDB store is not built yet (issue #3); use sqlite:PATH".to_owned());
        }
        if s.contains("://") {
            return Err(format!("unknown store scheme in {s:?}; expected sqlite:PATH"));
        }
        Ok(StoreUrl::Sqlite(PathBuf::from(s)))
    }

    /// Opens the store.
    pub async fn open(&self) -> Result<std::sync::Arc<dyn Store>> {
        match self {
            StoreUrl::Sqlite(path) => Ok(std::sync::Arc::new(SqliteStore::open(path).await?)),
        }
    }
}

impl std::fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreUrl::Sqlite(p) => write!(f, "sqlite:{}", p.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls() {
        assert_eq!(
            StoreUrl::parse("sqlite:/a/b.db").unwrap(),
            StoreUrl::Sqlite("/a/b.db".into())
        );
        assert_eq!(
            StoreUrl::parse("sqlite:///a/b.db").unwrap(),
            StoreUrl::Sqlite("/a/b.db".into())
        );
        assert_eq!(StoreUrl::parse("x.db").unwrap(), StoreUrl::Sqlite("x.db".into()));
        assert!(StoreUrl::parse("sqlite:").is_err());
        assert!(
            StoreUrl::parse("redis://x")
                .unwrap_err()
                .contains("unknown store scheme")
        );
        assert!(StoreUrl::parse("mongodb://h").unwrap_err().contains("issue #3"));
    }
}
