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
//!   uid, file index and part).
//!
//! A task is a whole file (part 0) or, once a worker said the file has more
//! pages than a task should read, one page range of it (parts 1..). A split
//! file's part 0 waits in state `Split` while its ranges run, and is
//! finished by [`Transition::Assemble`], which also removes its ranges.
//! File counts and `list_tasks` see files (part 0) only.

pub mod conformance;
mod mongo;
mod sqlite;

use std::collections::BTreeMap;
use std::path::PathBuf;

use async_trait::async_trait;
use futures::stream::BoxStream;
use skep_api::{BulkJob, BulkJobStatus, FailureReason, FileCounts, PageCounts, PageInfo, PageRange};

pub use mongo::{MongoOptions, MongoStore, MongoUrl, WatchMode};
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
    /// A write through a [`Store::fenced`] store was refused: the lease it
    /// was fenced with is not the current one (another controller took
    /// over since). The writer must stop acting.
    #[error("write refused: the {lease} lease is now {holder:?}'s (generation {generation}), not this controller's")]
    Fenced {
        lease: String,
        holder: String,
        generation: u64,
    },
}

impl StoreError {
    pub fn metric_label(&self) -> &'static str {
        match self {
            StoreError::NotFound(_) => "not_found",
            StoreError::Conflict { .. } => "conflict",
            StoreError::Backend(_) => "backend",
            StoreError::Corrupt(_) => "corrupt",
            StoreError::Fenced { .. } => "fenced",
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

/// A job as first stored: a fresh uid, generation 1, no status or finalizers.
/// The same rule for every backend.
pub(crate) fn new_stored_job(mut job: BulkJob) -> BulkJob {
    job.metadata.uid = Some(uuid::Uuid::new_v4().to_string());
    job.metadata.generation = Some(1);
    job.metadata.creation_timestamp = Some(chrono::Utc::now());
    job.metadata.deletion_timestamp = None;
    job.metadata.finalizers.clear();
    job.status = None;
    job
}

/// Applies `job` over the stored `current`, as `kubectl apply` would: the spec,
/// labels and annotations are replaced, the generation is bumped only when the
/// spec changed. Returns `(spec_changed, anything_changed)`. The same rule for
/// every backend.
pub(crate) fn merge_applied(current: &mut BulkJob, job: &BulkJob) -> Result<(bool, bool)> {
    if current.is_deleting() {
        return Err(StoreError::Conflict {
            name: current.metadata.name.clone(),
            reason: "it is being deleted; apply again once it is gone".to_owned(),
        });
    }
    let spec_changed = current.spec != job.spec;
    let meta_changed =
        current.metadata.labels != job.metadata.labels || current.metadata.annotations != job.metadata.annotations;
    if spec_changed {
        current.spec = job.spec.clone();
        current.metadata.generation = Some(current.generation() + 1);
    }
    current.metadata.labels = job.metadata.labels.clone();
    current.metadata.annotations = job.metadata.annotations.clone();
    Ok((spec_changed, spec_changed || meta_changed))
}

/// Adds `n` files in `state` to a job's file counts (a split file counts as
/// dispatched: its ranges are at work).
pub(crate) fn count_state(counts: &mut FileCounts, state: TaskState, n: u64) {
    match state {
        TaskState::Pending => counts.pending += n,
        TaskState::Dispatched | TaskState::Split => counts.dispatched += n,
        TaskState::Succeeded => counts.succeeded += n,
        TaskState::Failed => counts.failed += n,
    }
    counts.total += n;
}

/// A job's progress, as the store counts it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskCounts {
    /// Files (part 0 of every task).
    pub files: FileCounts,
    pub pages: PageCounts,
    /// Tasks (files and ranges) dispatched and not answered yet: what the
    /// queue holds or workers read now.
    pub in_flight: u64,
    /// Files split into page ranges and not assembled yet (counted as
    /// dispatched in `files`).
    pub split: u64,
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

/// A task to insert: a file found by the scan (part 0, no pages), or a
/// page range of a split file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewTask {
    pub index: u64,
    pub part: u32,
    pub pages: Option<PageRange>,
    /// Relative to the job's source folder, `/`-separated.
    pub path: String,
    /// The object as the listing saw it (`None` for a file of a folder).
    pub version: Option<ObjectVersion>,
}

/// An object's size and ETag as its listing gave them: a worker reads that
/// version or fails, so an object replaced mid-job is never read as
/// another.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectVersion {
    pub size: u64,
    /// `None` where the store lists no ETag.
    pub etag: Option<String>,
}

impl NewTask {
    /// A whole file, as the scan finds it.
    pub fn file(index: u64, path: impl Into<String>) -> Self {
        Self {
            index,
            part: 0,
            pages: None,
            path: path.into(),
            version: None,
        }
    }

    /// A whole object, as the scan lists it.
    pub fn object(index: u64, key: impl Into<String>, version: ObjectVersion) -> Self {
        Self {
            version: Some(version),
            ..Self::file(index, key)
        }
    }

    /// The page ranges of a split file, parts `1..`; each reads the version
    /// the file was listed with.
    pub fn ranges(index: u64, path: &str, version: Option<&ObjectVersion>, ranges: &[PageRange]) -> Vec<Self> {
        ranges
            .iter()
            .enumerate()
            .map(|(i, r)| Self {
                index,
                part: i as u32 + 1,
                pages: Some(*r),
                path: path.to_owned(),
                version: version.cloned(),
            })
            .collect()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TaskState {
    Pending,
    Dispatched,
    Succeeded,
    Failed,
    /// A file whose page ranges are at work (part 0 only).
    Split,
}

impl TaskState {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Pending => "pending",
            TaskState::Dispatched => "dispatched",
            TaskState::Succeeded => "succeeded",
            TaskState::Failed => "failed",
            TaskState::Split => "split",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            TaskState::Pending,
            TaskState::Dispatched,
            TaskState::Succeeded,
            TaskState::Failed,
            TaskState::Split,
        ]
        .into_iter()
        .find(|t| t.as_str() == s)
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, TaskState::Succeeded | TaskState::Failed)
    }
}

/// A file's (or a range's) outcome, as stored.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FileResult {
    pub text: Option<String>,
    pub confidence: Option<f32>,
    /// Pages read; for a split file, its page count.
    pub pages: u32,
    /// Per page, in page order.
    pub page_info: Vec<PageInfo>,
    /// The staging folder holding the artefacts of the delivery that made
    /// this result (a name in the job's staging folder).
    pub staged: Option<String>,
    pub words: u64,
    pub reason: Option<FailureReason>,
    pub error: Option<String>,
    pub duration_ms: u64,
    pub worker: Option<String>,
    pub node: Option<String>,
    pub finished_ms: i64,
}

/// One file of a job, or one page range of a split file.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskRecord {
    pub job_uid: String,
    pub index: u64,
    /// 0 for the file; 1.. for its page ranges.
    pub part: u32,
    /// The range's pages (parts 1..).
    pub pages: Option<PageRange>,
    pub path: String,
    /// The object as the listing saw it (`None` for a file of a folder).
    pub version: Option<ObjectVersion>,
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
    /// The file has too many pages for one task: it waits in state `Split`
    /// (with `pages` as its page count) while `ranges` run as parts 1..
    /// (inserted with it; dispatched before new files). Applies to part 0
    /// unless it is terminal or already split, like `Succeed`.
    Split { pages: u32, ranges: Vec<PageRange> },
    /// A split file's final result, made from its ranges; its ranges are
    /// removed. Applies only to part 0 in state `Split`.
    Assemble { succeeded: bool, result: FileResult },
}

#[derive(Clone, Debug, PartialEq)]
pub struct TaskUpdate {
    pub job_uid: String,
    pub index: u64,
    pub part: u32,
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
    /// Moves up by one each time the lease changes hands (not when it is
    /// renewed or released): the fencing token of a term of leadership.
    pub generation: u64,
}

/// A fencing token: writes through [`Store::fenced`] apply only while the
/// lease `lease` is still `holder`'s at `generation`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fence {
    pub lease: String,
    pub holder: String,
    pub generation: u64,
}

impl Fence {
    /// The fence of a term that `state` (as returned by
    /// [`Store::acquire_lease`]) starts.
    pub fn of(lease: &str, state: &LeaseState) -> Self {
        Self {
            lease: lease.to_owned(),
            holder: state.holder.clone(),
            generation: state.generation,
        }
    }

    fn refused(&self, holder: String, generation: u64) -> StoreError {
        StoreError::Fenced {
            lease: self.lease.clone(),
            holder,
            generation,
        }
    }
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
    /// Puts dispatched tasks `(index, part)` back to pending without
    /// counting the attempt against them (their dispatch never happened).
    async fn unlease_tasks(&self, job_uid: &str, keys: &[(u64, u32)]) -> Result<u64>;
    /// The job's dispatched tasks whose lease ends before `until_ms` now
    /// end at `until_ms` (its workers are still taking its tasks); how many.
    async fn renew_leases(&self, job_uid: &str, until_ms: i64) -> Result<u64>;
    /// Every dispatched task of every job back to pending (the queue lost
    /// them: it is not durable and this process is new).
    async fn reset_dispatched(&self) -> Result<u64>;
    /// Applies each update atomically; says for each whether it applied.
    async fn apply_updates(&self, updates: Vec<TaskUpdate>) -> Result<Vec<bool>>;
    /// Every failed task of the job back to pending with no attempts and
    /// no result, so that it is dispatched again. Returns how many.
    async fn retry_failed(&self, job_uid: &str) -> Result<u64>;
    async fn task_counts(&self, job_uid: &str) -> Result<TaskCounts>;
    /// `task_counts(job_uid).in_flight` alone, for less: the dispatched
    /// tasks only.
    async fn count_in_flight(&self, job_uid: &str) -> Result<u64>;
    /// The file `index` (part 0).
    async fn get_task(&self, job_uid: &str, index: u64) -> Result<Option<TaskRecord>>;
    /// Files (part 0) in index order, after `after` (exclusive).
    async fn list_tasks(&self, job_uid: &str, after: Option<u64>, limit: usize) -> Result<Vec<TaskRecord>>;
    /// The page ranges (parts 1..) of the file `index`, in part order.
    async fn list_parts(&self, job_uid: &str, index: u64) -> Result<Vec<TaskRecord>>;
    /// Up to `limit` split files none of whose ranges is pending or
    /// dispatched: ready to be assembled (or to have lost ranges put back).
    async fn split_ready(&self, job_uid: &str, limit: usize) -> Result<Vec<TaskRecord>>;
    async fn summarize(&self, job_uid: &str) -> Result<ResultSummary>;

    /// Takes or renews the lease `name` for `holder` until `now_ms + ttl_ms`
    /// if it is free, expired or already `holder`'s; returns who holds it
    /// afterwards.
    async fn acquire_lease(&self, name: &str, holder: &str, now_ms: i64, ttl_ms: i64) -> Result<LeaseState>;
    /// Ends `holder`'s lease now, keeping its generation.
    async fn release_lease(&self, name: &str, holder: &str) -> Result<()>;

    /// This store with its writes fenced by `fence`: a write that finds
    /// the lease in other hands fails with [`StoreError::Fenced`] and
    /// changes nothing. SQLite checks the lease inside every write's
    /// transaction. MongoDB (no transactions across documents) fences the
    /// job documents: a job written under a generation refuses writes of
    /// an older one; task writes there stay guarded only by their own
    /// conditions (state, attempt), which make a deposed leader's writes
    /// duplicates at worst.
    fn fenced(&self, fence: Fence) -> std::sync::Arc<dyn Store>;
}

/// Where a store lives, as given by `--store` / `SKEP_STORE` (or the file
/// named by `SKEP_STORE_FILE`). `Display` and `Debug` never show a password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreUrl {
    Sqlite(PathBuf),
    /// `mongodb://` or `mongodb+srv://`.
    Mongo(MongoUrl),
}

impl StoreUrl {
    /// `sqlite:PATH` (or `sqlite://PATH`), `mongodb://...` or
    /// `mongodb+srv://...`; a bare path means SQLite. Errors never echo a
    /// URL (it may hold a password).
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
            return MongoUrl::parse(s).map(StoreUrl::Mongo);
        }
        if let Some((scheme, _)) = s.split_once("://") {
            return Err(format!(
                "unknown store scheme {scheme:?}; expected sqlite:PATH or mongodb://HOST/DATABASE"
            ));
        }
        Ok(StoreUrl::Sqlite(PathBuf::from(s)))
    }

    /// The store URL from, in order: `flag` (`--store`, which clap also
    /// fills from `SKEP_STORE`), the `SKEP_STORE` variable, or the file
    /// named by `SKEP_STORE_FILE` (a Docker secret holding the whole URL,
    /// password included; surrounding whitespace is ignored). `Ok(None)`
    /// when none is set: the caller picks its default. Errors name the
    /// source, never the URL.
    pub fn from_env_or(flag: Option<&str>) -> Result<Option<Self>, String> {
        Self::from_sources(flag, |k| std::env::var(k).ok())
    }

    fn from_sources(flag: Option<&str>, env: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, String> {
        if let Some(s) = flag {
            return Self::parse(s).map(Some).map_err(|e| format!("--store: {e}"));
        }
        if let Some(s) = env("SKEP_STORE").filter(|s| !s.trim().is_empty()) {
            return Self::parse(&s).map(Some).map_err(|e| format!("SKEP_STORE: {e}"));
        }
        if let Some(path) = env("SKEP_STORE_FILE").filter(|s| !s.trim().is_empty()) {
            let s = std::fs::read_to_string(&path)
                .map_err(|e| format!("SKEP_STORE_FILE: cannot read {path}: {}", e.kind()))?;
            return Self::parse(&s)
                .map(Some)
                .map_err(|e| format!("SKEP_STORE_FILE ({path}): {e}"));
        }
        Ok(None)
    }

    /// Opens the store.
    pub async fn open(&self) -> Result<std::sync::Arc<dyn Store>> {
        match self {
            StoreUrl::Sqlite(path) => Ok(std::sync::Arc::new(SqliteStore::open(path).await?)),
            StoreUrl::Mongo(url) => Ok(std::sync::Arc::new(
                MongoStore::connect(url, MongoOptions::default()).await?,
            )),
        }
    }
}

impl std::fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreUrl::Sqlite(p) => write!(f, "sqlite:{}", p.display()),
            StoreUrl::Mongo(url) => write!(f, "{url}"),
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
        assert!(!StoreUrl::parse("redis://u:pw@x").unwrap_err().contains("pw"));
    }

    #[test]
    fn mongo_urls_display_redacted() {
        let url = StoreUrl::parse("mongodb://skep:hunter2@db:27017/prod?authSource=admin").unwrap();
        let StoreUrl::Mongo(m) = &url else {
            panic!("not a MongoDB URL: {url}")
        };
        assert_eq!(m.database(), "prod");
        assert_eq!(url.to_string(), "mongodb://skep:***@db:27017/prod?authSource=admin");
        assert!(!format!("{url:?}").contains("hunter2"));
        let srv = StoreUrl::parse("mongodb+srv://skep:hunter2@cluster.example.net").unwrap();
        assert_eq!(srv.to_string(), "mongodb+srv://skep:***@cluster.example.net/skep");
        let err = StoreUrl::parse("mongodb://skep:hunter2@db/a.b").unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
        // Passwords with characters the spec wants encoded never show.
        for password in ["Kx7/Qz9", "Kx7?Qz9", "Kx7#Qz9", "Kx7@Qz9", "Kx7/Qz9?Wv3#Jm5@Rt8"] {
            let raw = format!("mongodb://skep:{password}@db:27017/prod?authSource=admin");
            let shown = match StoreUrl::parse(&raw) {
                Ok(u) => format!("{u} {u:?}"),
                Err(e) => e,
            };
            for piece in password.split(['/', '?', '#', '@']) {
                assert!(!shown.contains(piece), "{password}: {shown}");
            }
        }
        let encoded = StoreUrl::parse("mongodb://skep:p%3Fss%40@db/prod").unwrap();
        assert_eq!(encoded.to_string(), "mongodb://skep:***@db/prod");
    }

    #[test]
    fn store_url_from_flag_env_or_secret_file() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("store-url");
        std::fs::write(&secret, "mongodb://skep:hunter2@db/skep\n").unwrap();
        let secret_path = secret.display().to_string();
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned())
        };
        let from_file = StoreUrl::from_sources(None, |k| (k == "SKEP_STORE_FILE").then(|| secret_path.clone()))
            .unwrap()
            .unwrap();
        assert_eq!(from_file.to_string(), "mongodb://skep:***@db/skep");
        let flag_wins = StoreUrl::from_sources(Some("sqlite:a.db"), env(&[("SKEP_STORE", "sqlite:b.db")])).unwrap();
        assert_eq!(flag_wins, Some(StoreUrl::Sqlite("a.db".into())));
        let env_next = StoreUrl::from_sources(None, env(&[("SKEP_STORE", "sqlite:b.db")])).unwrap();
        assert_eq!(env_next, Some(StoreUrl::Sqlite("b.db".into())));
        assert_eq!(StoreUrl::from_sources(None, env(&[])).unwrap(), None);
        let missing = StoreUrl::from_sources(None, env(&[("SKEP_STORE_FILE", "/nonexistent/skep-url")])).unwrap_err();
        assert!(missing.contains("SKEP_STORE_FILE"), "{missing}");
        std::fs::write(&secret, "mongodb://skep:hunter2@db/bad.name").unwrap();
        let bad = StoreUrl::from_sources(None, |k| (k == "SKEP_STORE_FILE").then(|| secret_path.clone())).unwrap_err();
        assert!(bad.contains("SKEP_STORE_FILE") && !bad.contains("hunter2"), "{bad}");
    }
}
