//! The production store: MongoDB through the official `mongodb` driver (3.x).
//!
//! Collections, in the database named by the URL path (default `skep`):
//! - `jobs`: one document per job, `_id` = name, with the indexed scalars
//!   `uid`, `version` (optimistic lock, bumped by every write) and
//!   `revision` (bumped only by the writes a watch reports), and the whole
//!   `BulkJob` as a JSON string in `doc`.
//! - `tasks`: one document per file, `_id` = `"{uid}:{index}"`, with the
//!   task state and its result as flat scalar fields.
//! - `leases`: controller leases, `_id` = lease name.
//! - `meta`: the global revision counter.
//!
//! NB: the job is stored as a JSON string, not a native sub-document: label
//! and annotation keys routinely contain dots (`app.kubernetes.io/name`),
//! which MongoDB accepts in field names only with caveats (no query or
//! update can address them by path); the string round-trips exactly on any
//! server, integer widths, dates and bools included, whatever a server does
//! to them; and nothing queries inside a job. What is queried (`uid`,
//! `revision`, `version`) is stored beside it as plain fields.
//!
//! What this backend guarantees beyond the `Store` contract, and assumes:
//! - no multi-document transactions are used: every job write is a
//!   compare-and-swap on `version`, every task transition one conditional
//!   single-document update, so it behaves the same on a standalone server,
//!   a replica set and the stand-in;
//! - `watch` follows a change stream on `jobs` where the server has one
//!   (a replica set), else polls the jobs' revisions; either way it
//!   re-lists after any gap, so no change is lost (see `Watcher`). It also
//!   reports a job that disappeared;
//! - removing a job deletes its document first and its tasks second; a
//!   crash in between leaves tasks under a uid no job has, which nothing
//!   reads again (uids are never reused);
//! - every call is bounded: server selection and connecting by
//!   [`MongoOptions::server_selection_timeout`], each operation by
//!   [`MongoOptions::op_timeout`].

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::Utc;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use mongodb::bson::{Bson, Document, doc};
use mongodb::change_stream::ChangeStream;
use mongodb::change_stream::event::ChangeStreamEvent;
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::{ClientOptions, IndexOptions, ReturnDocument};
use mongodb::{Client, Collection, IndexModel};
use serde::Deserialize;
use skep_api::{BulkJob, BulkJobStatus, FINALIZER, FailureReason, PageInfo, PageRange};
use tokio::sync::{Notify, mpsc};
use tracing::Instrument;

use super::{
    Applied, Deleted, Fence, FileResult, LeaseRequest, LeaseState, Leased, NewTask, ObjectVersion, Result,
    ResultSummary, Store, StoreError, TaskCounts, TaskRecord, TaskState, TaskUpdate, Transition, WatchEvent,
    count_state, merge_applied, new_stored_job,
};

/// The database used when the URL names none.
pub const DEFAULT_DATABASE: &str = "skep";
/// Default bound on finding a server (and on connecting to it).
pub const SERVER_SELECTION_TIMEOUT: Duration = Duration::from_secs(5);
/// Default bound on any one store operation.
pub const OP_TIMEOUT: Duration = Duration::from_secs(30);
/// Default interval of the polling watch; writes through this store wake it
/// at once.
pub const WATCH_POLL: Duration = Duration::from_millis(500);

/// Tasks per `insert_many` call.
const INSERT_CHUNK: usize = 1_000;
/// Task transitions of one `apply_updates` call in flight at once (splits,
/// assemblies and tasks named twice; the rest go in bulk).
const UPDATE_CONCURRENCY: usize = 16;
/// Writes of one bulk `update` command.
const BULK_WRITES: usize = 1_000;
/// Result bytes of one bulk `update` command (a command may hold 16 MiB).
const BULK_BYTES: usize = 8 << 20;
/// Compare-and-swap attempts of one job write before giving up.
const JOB_WRITE_TRIES: usize = 32;
/// Claim rounds of one `lease_tasks` call that lost tasks to other leasers.
const LEASE_ROUNDS: usize = 4;
/// How long the server holds an empty change-stream `getMore`.
const STREAM_AWAIT: Duration = Duration::from_secs(1);
/// Consecutive change-stream failures (not network ones) after which an
/// `Auto` watch gives up on change streams and polls.
const STREAM_FAILURES_BEFORE_POLLING: u32 = 3;
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Room in the watch channel; a full channel holds the watcher back.
const WATCH_CHANNEL: usize = 256;

const DUPLICATE_KEY: i32 = 11000;
/// Server error codes that mean "no change streams here": only on replica
/// sets (40573), unknown `$changeStream` stage (40324), command not
/// supported (115), illegal operation (20).
const NO_CHANGE_STREAMS: [i32; 4] = [40573, 40324, 115, 20];

const PENDING: i32 = 0;
const DISPATCHED: i32 = 1;
const SUCCEEDED: i32 = 2;
const FAILED: i32 = 3;
const SPLIT: i32 = 4;

/// How `watch` learns about changes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WatchMode {
    /// A change stream when the server has them (a replica set), else
    /// polling.
    #[default]
    Auto,
    /// Change streams only; failures are retried, never turned into polling.
    ChangeStream,
    /// Poll the jobs' revisions.
    Poll,
}

impl WatchMode {
    fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Some(WatchMode::Auto),
            "stream" | "changestream" => Some(WatchMode::ChangeStream),
            "poll" => Some(WatchMode::Poll),
            _ => None,
        }
    }
}

/// A `mongodb://` or `mongodb+srv://` store URL.
///
/// It holds credentials, so its `Display` and `Debug` show the password as
/// `***` (and the values of other secret-bearing options too). The path
/// names the database (default `skep`), and is also the driver's default
/// authentication database, as in any MongoDB URI. One option is skep's,
/// not the driver's: `skepWatch=auto|stream|poll` (see [`WatchMode`]).
#[derive(Clone, PartialEq, Eq)]
pub struct MongoUrl {
    /// What the driver gets: the URL without skep's own options.
    driver_url: String,
    database: String,
    watch: Option<WatchMode>,
    /// The password, raw and percent-decoded, to scrub from error messages.
    secrets: Vec<String>,
    /// The redacted form, without the path.
    shown: String,
    shown_query: String,
}

impl MongoUrl {
    /// Parses the URL. Errors never contain the URL or any part of it.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (scheme, rest) = if let Some(r) = s.strip_prefix("mongodb://") {
            ("mongodb://", r)
        } else if let Some(r) = s.strip_prefix("mongodb+srv://") {
            ("mongodb+srv://", r)
        } else {
            return Err("a MongoDB store URL starts with mongodb:// or mongodb+srv://".to_owned());
        };
        // NB: the user info must percent-encode `/ ? # @` (the connection
        // string spec); one that does not cannot be told from the hosts,
        // path and options, so the URL is refused before anything of it can
        // be shown.
        if let Some(at) = rest.rfind('@')
            && rest[..at].contains(['/', '?', '#'])
        {
            return Err(
                "the MongoDB URL's user name or password holds an unencoded `/`, `?`, `#` or `@`: percent-encode them \
                 (%2F %3F %23 %40)"
                    .to_owned(),
            );
        }
        let (before_query, query) = match rest.split_once('?') {
            Some((b, q)) => (b, q),
            None => (rest, ""),
        };
        let hosts_start = before_query.rfind('@').map_or(0, |i| i + 1);
        let (authority, path) = match before_query[hosts_start..].find('/') {
            Some(j) => before_query.split_at(hosts_start + j),
            None => (before_query, ""),
        };
        let (userinfo, hosts) = if hosts_start > 0 {
            (Some(&authority[..hosts_start - 1]), &authority[hosts_start..])
        } else {
            (None, authority)
        };
        if hosts.is_empty() {
            return Err("the MongoDB URL names no host".to_owned());
        }
        let path = path.trim_start_matches('/');
        let database = if path.is_empty() {
            DEFAULT_DATABASE.to_owned()
        } else {
            percent_decode(path).ok_or("the MongoDB URL's database name is not valid percent-encoded UTF-8")?
        };
        check_database_name(&database)?;

        let mut watch = None;
        let mut driver_opts = Vec::new();
        let mut shown_opts = Vec::new();
        for pair in query.split(['&', ';']).filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            if key.eq_ignore_ascii_case("skepWatch") {
                watch = Some(WatchMode::parse(value).ok_or("skepWatch must be auto, stream or poll")?);
                shown_opts.push(pair.to_owned());
                continue;
            }
            driver_opts.push(pair);
            let k = key.to_ascii_lowercase();
            if k.contains("password") || k.contains("secret") || k.contains("token") || k == "authmechanismproperties" {
                shown_opts.push(format!("{key}=***"));
            } else {
                shown_opts.push(pair.to_owned());
            }
        }

        let mut secrets = Vec::new();
        let shown_user = match userinfo {
            None => String::new(),
            Some(u) => match u.split_once(':') {
                Some((user, password)) => {
                    if !password.is_empty() {
                        secrets.push(password.to_owned());
                        if let Some(decoded) = percent_decode(password).filter(|d| d != password) {
                            secrets.push(decoded);
                        }
                    }
                    format!("{user}:***@")
                }
                None => format!("{u}@"),
            },
        };
        let mut driver_url = format!("{scheme}{authority}/{path}");
        if !driver_opts.is_empty() {
            driver_url.push('?');
            driver_url.push_str(&driver_opts.join("&"));
        }
        let shown_query = if shown_opts.is_empty() {
            String::new()
        } else {
            format!("?{}", shown_opts.join("&"))
        };
        Ok(Self {
            driver_url,
            database,
            watch,
            secrets,
            shown: format!("{scheme}{shown_user}{hosts}"),
            shown_query,
        })
    }

    /// The database the store lives in.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// The watch mode the URL asks for (`skepWatch=`), if any.
    pub fn watch_mode(&self) -> Option<WatchMode> {
        self.watch
    }

    /// The same server and credentials, another database (the
    /// authentication database stays the URL's).
    pub fn with_database(&self, database: &str) -> Result<Self, String> {
        check_database_name(database)?;
        Ok(Self {
            database: database.to_owned(),
            ..self.clone()
        })
    }

    /// The same URL with `skepWatch` set to `mode`.
    pub fn with_watch(&self, mode: WatchMode) -> Self {
        Self {
            watch: Some(mode),
            ..self.clone()
        }
    }

    /// `text` with the URL's password replaced by `***`.
    fn scrub(&self, text: String) -> String {
        self.secrets.iter().fold(text, |t, s| {
            if t.contains(s.as_str()) {
                t.replace(s.as_str(), "***")
            } else {
                t
            }
        })
    }
}

impl std::fmt::Display for MongoUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}{}", self.shown, self.database, self.shown_query)
    }
}

impl std::fmt::Debug for MongoUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MongoUrl({self})")
    }
}

fn check_database_name(name: &str) -> Result<(), String> {
    let bad = name.is_empty()
        || name.len() > 63
        || name.chars().any(|c| {
            matches!(
                c,
                '/' | '\\' | '.' | ' ' | '"' | '$' | '*' | '<' | '>' | ':' | '|' | '?' | '\0'
            )
        });
    if bad {
        return Err("the MongoDB database name must be 1 to 63 characters without /\\. \"$*<>:|?".to_owned());
    }
    Ok(())
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Connection and behaviour settings; `Default` is what `skep` uses.
#[derive(Clone, Debug)]
pub struct MongoOptions {
    /// Overrides the URL's `skepWatch` when set.
    pub watch: Option<WatchMode>,
    /// Bounds finding a server and connecting to it (unless the URL sets
    /// `serverSelectionTimeoutMS` / `connectTimeoutMS`).
    pub server_selection_timeout: Duration,
    /// Bounds each store operation (one driver call, or one query and its
    /// cursor).
    pub op_timeout: Duration,
    /// How often the polling watch re-lists.
    pub poll_interval: Duration,
}

impl Default for MongoOptions {
    fn default() -> Self {
        Self {
            watch: None,
            server_selection_timeout: SERVER_SELECTION_TIMEOUT,
            op_timeout: OP_TIMEOUT,
            poll_interval: WATCH_POLL,
        }
    }
}

/// The MongoDB backend of [`Store`]; cheap to clone (one shared client).
#[derive(Clone)]
pub struct MongoStore {
    inner: Arc<Inner>,
    /// When set, job-document writes check it (see [`Store::fenced`]).
    fence: Option<Arc<Fence>>,
}

struct Inner {
    url: MongoUrl,
    jobs: Collection<Document>,
    tasks: Collection<Document>,
    leases: Collection<Document>,
    meta: Collection<Document>,
    watch: WatchMode,
    op_timeout: Duration,
    poll_interval: Duration,
    /// Woken by job writes through this store, for the polling watch.
    changed: Arc<Notify>,
}

impl std::fmt::Debug for MongoStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MongoStore")
            .field("url", &self.inner.url)
            .field("watch", &self.inner.watch)
            .finish()
    }
}

/// A job document as read.
struct JobRow {
    version: i64,
    /// The lease generation of the last fenced write (0: none).
    fence: u64,
    job: BulkJob,
}

/// A task document as stored (numbers read leniently: a server may return
/// a small Int64 as Int32).
#[derive(Deserialize)]
struct TaskDoc {
    job: String,
    i: i64,
    /// Part: 0 for a file, 1.. for its page ranges (absent in documents
    /// written before ranges existed: 0).
    #[serde(default)]
    p: i64,
    /// First and last page of a range.
    #[serde(default)]
    fp: i64,
    #[serde(default)]
    lp: i64,
    path: String,
    /// An object's size and ETag as listed (absent for a file of a folder,
    /// and in documents written before objects existed).
    size: Option<i64>,
    etag: Option<String>,
    state: i64,
    #[serde(default)]
    attempts: i64,
    #[serde(default)]
    due: i64,
    text: Option<String>,
    conf: Option<f64>,
    #[serde(default)]
    pages: i64,
    #[serde(default)]
    words: i64,
    reason: Option<String>,
    error: Option<String>,
    #[serde(default)]
    dur: i64,
    worker: Option<String>,
    node: Option<String>,
    #[serde(default)]
    fin: i64,
    /// Per-page details, as JSON.
    pinfo: Option<String>,
    staged: Option<String>,
}

impl TaskDoc {
    fn into_record(self) -> Result<TaskRecord> {
        let state = state_from(self.state)?;
        let page_info: Vec<PageInfo> = match &self.pinfo {
            Some(json) => serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("page details: {e}")))?,
            None => Vec::new(),
        };
        let result = FileResult {
            text: self.text,
            confidence: self.conf.map(|c| c as f32),
            pages: self.pages as u32,
            page_info,
            staged: self.staged,
            words: self.words as u64,
            reason: self.reason.as_deref().and_then(FailureReason::parse),
            error: self.error,
            duration_ms: self.dur as u64,
            worker: self.worker,
            node: self.node,
            finished_ms: self.fin,
        };
        let has_result = result.text.is_some()
            || result.error.is_some()
            || result.reason.is_some()
            || result.finished_ms != 0
            || result.pages != 0;
        Ok(TaskRecord {
            job_uid: self.job,
            index: self.i as u64,
            part: self.p as u32,
            pages: (self.fp > 0).then_some(PageRange {
                first: self.fp as u32,
                last: self.lp as u32,
            }),
            path: self.path,
            version: self.size.map(|size| ObjectVersion {
                size: size as u64,
                etag: self.etag,
            }),
            state,
            attempts: self.attempts as u32,
            not_before_ms: if state == TaskState::Pending { self.due } else { 0 },
            lease_until_ms: if state == TaskState::Dispatched { self.due } else { 0 },
            result: has_result.then_some(result),
        })
    }
}

fn state_from(code: i64) -> Result<TaskState> {
    Ok(match code {
        0 => TaskState::Pending,
        1 => TaskState::Dispatched,
        2 => TaskState::Succeeded,
        3 => TaskState::Failed,
        4 => TaskState::Split,
        other => return Err(StoreError::Corrupt(format!("task state {other}"))),
    })
}

/// A task's `_id`: `uid:index` for a file (as before ranges existed),
/// `uid:index:part` for a range.
fn task_id(uid: &str, index: u64, part: u32) -> String {
    if part == 0 {
        format!("{uid}:{index}")
    } else {
        format!("{uid}:{index}:{part}")
    }
}

fn index_value(index: u64) -> Result<i64> {
    i64::try_from(index).map_err(|_| StoreError::Backend(format!("task index {index} is out of range")))
}

/// A number field, whatever integer or float type the server returned.
fn number(doc: &Document, key: &str) -> Option<i64> {
    match doc.get(key)? {
        Bson::Int32(v) => Some(i64::from(*v)),
        Bson::Int64(v) => Some(*v),
        Bson::Double(v) if v.is_finite() => Some(*v as i64),
        _ => None,
    }
}

fn float(doc: &Document, key: &str) -> Option<f64> {
    match doc.get(key)? {
        Bson::Int32(v) => Some(f64::from(*v)),
        Bson::Int64(v) => Some(*v as f64),
        Bson::Double(v) => Some(*v),
        _ => None,
    }
}

fn result_fields(res: &FileResult) -> Document {
    let opt = |s: &Option<String>| s.clone().map_or(Bson::Null, Bson::String);
    doc! {
        "text": opt(&res.text),
        "conf": res.confidence.map_or(Bson::Null, |c| Bson::Double(f64::from(c))),
        "pages": i64::from(res.pages),
        "words": res.words as i64,
        "reason": res.reason.map_or(Bson::Null, |r| Bson::String(r.as_str().to_owned())),
        "error": opt(&res.error),
        "dur": res.duration_ms as i64,
        "worker": opt(&res.worker),
        "node": opt(&res.node),
        "fin": res.finished_ms,
        "pinfo": if res.page_info.is_empty() {
            Bson::Null
        } else {
            Bson::String(serde_json::to_string(&res.page_info).unwrap_or_default())
        },
        "staged": opt(&res.staged),
    }
}

fn job_doc(job: &BulkJob, version: i64, revision: i64) -> Result<Document> {
    let json = serde_json::to_string(job).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(doc! {
        "_id": job.metadata.name.as_str(),
        "uid": job.uid(),
        "version": version,
        "revision": revision,
        "doc": json,
    })
}

fn parse_job(doc: &Document) -> Result<BulkJob> {
    let json = doc
        .get_str("doc")
        .map_err(|_| StoreError::Corrupt("job document without its doc field".to_owned()))?;
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("job document: {e}")))
}

/// The error code of a single-write failure (a duplicate key, say).
fn write_error_code(e: &mongodb::error::Error) -> Option<i32> {
    match e.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(w)) => Some(w.code),
        ErrorKind::Command(c) => Some(c.code),
        _ => None,
    }
}

/// Whether the error means the server cannot be reached (as opposed to a
/// server that answered and refused).
fn is_transient(e: &mongodb::error::Error) -> bool {
    matches!(
        e.kind.as_ref(),
        ErrorKind::Io(_) | ErrorKind::ServerSelection { .. } | ErrorKind::ConnectionPoolCleared { .. }
    ) || e.contains_label("ResumableChangeStreamError")
        || e.contains_label("RetryableWriteError")
}

impl MongoStore {
    /// Connects (failing within the server selection timeout when no server
    /// answers) and creates the indexes.
    pub async fn connect(url: &MongoUrl, opts: MongoOptions) -> Result<Self> {
        let fail = |what: &str, e: mongodb::error::Error| StoreError::Backend(url.scrub(format!("{what}: {e}")));
        let mut copts = tokio::time::timeout(opts.op_timeout, ClientOptions::parse(url.driver_url.as_str()))
            .await
            .map_err(|_| StoreError::Backend("resolving the MongoDB URL timed out".to_owned()))?
            .map_err(|e| fail("bad MongoDB URL", e))?;
        copts
            .server_selection_timeout
            .get_or_insert(opts.server_selection_timeout);
        copts.connect_timeout.get_or_insert(opts.server_selection_timeout);
        copts.app_name.get_or_insert_with(|| "skep".to_owned());
        let client = Client::with_options(copts).map_err(|e| fail("MongoDB client", e))?;
        let db = client.database(&url.database);
        let store = Self {
            inner: Arc::new(Inner {
                jobs: db.collection("jobs"),
                tasks: db.collection("tasks"),
                leases: db.collection("leases"),
                meta: db.collection("meta"),
                url: url.clone(),
                watch: opts.watch.or(url.watch).unwrap_or_default(),
                op_timeout: opts.op_timeout,
                poll_interval: opts.poll_interval,
                changed: Arc::new(Notify::new()),
            }),
            fence: None,
        };
        store
            .op("ping", db.run_command(doc! { "ping": 1 }).into_future())
            .await?;
        store.create_indexes().await?;
        Ok(store)
    }

    /// The database this store lives in.
    pub fn database(&self) -> &str {
        &self.inner.url.database
    }

    /// The URL this store was opened with (displays redacted).
    pub fn url(&self) -> &MongoUrl {
        &self.inner.url
    }

    async fn create_indexes(&self) -> Result<()> {
        let i = &self.inner;
        // NB: before page ranges a task was unique by (job, i) (the index
        // "job_index"); ranges share their file's `i`, so that index goes,
        // found by its keys (a wire-compatible server may have named it
        // otherwise), and documents of that time get their part, 0.
        let indexes: Vec<IndexModel> = self
            .op("list indexes", async {
                i.tasks.list_indexes().await?.try_collect().await
            })
            .await?;
        for index in indexes {
            let keys: Vec<&str> = index.keys.keys().map(String::as_str).collect();
            if keys == ["job", "i"]
                && let Some(name) = index.options.and_then(|o| o.name)
            {
                self.op(
                    "drop the index of tasks before ranges",
                    i.tasks.drop_index(name).into_future(),
                )
                .await?;
            }
        }
        self.op(
            "add parts to old tasks",
            i.tasks
                .update_many(doc! { "p": { "$exists": false } }, doc! { "$set": { "p": 0_i64 } })
                .into_future(),
        )
        .await?;
        let indexes = [
            (&i.jobs, doc! { "uid": 1 }, "uid", true),
            (&i.tasks, doc! { "job": 1, "i": 1, "p": 1 }, "job_index_part", true),
            (
                &i.tasks,
                doc! { "job": 1, "state": 1, "due": 1, "i": 1 },
                "job_state_due",
                false,
            ),
        ];
        for (collection, keys, name, unique) in indexes {
            let options = IndexOptions::builder().unique(unique).name(name.to_owned()).build();
            let model = IndexModel::builder().keys(keys).options(options).build();
            self.op("create index", collection.create_index(model).into_future())
                .await?;
        }
        Ok(())
    }

    fn err(&self, what: &str, e: mongodb::error::Error) -> StoreError {
        StoreError::Backend(self.inner.url.scrub(format!("{what}: {e}")))
    }

    /// Runs one driver call under the operation timeout.
    async fn op<T>(&self, what: &str, fut: impl Future<Output = mongodb::error::Result<T>>) -> Result<T> {
        bounded(self.inner.op_timeout, fut).await.map_err(|e| match e {
            Bounded::TimedOut => StoreError::Backend(format!("{what} timed out after {:?}", self.inner.op_timeout)),
            Bounded::Failed(e) => self.err(what, e),
        })
    }

    /// Runs a query and collects its documents, all under one timeout.
    async fn collect(&self, what: &str, find: mongodb::action::Find<'_, Document>) -> Result<Vec<Document>> {
        self.op(what, async move { find.await?.try_collect::<Vec<_>>().await })
            .await
    }

    /// Reads the task documents a find returns.
    async fn records(&self, what: &str, find: mongodb::action::Find<'_, Document>) -> Result<Vec<TaskRecord>> {
        self.collect(what, find)
            .await?
            .into_iter()
            .map(|d| {
                mongodb::bson::from_document::<TaskDoc>(d)
                    .map_err(|e| StoreError::Corrupt(format!("task document: {e}")))?
                    .into_record()
            })
            .collect()
    }

    async fn aggregate(&self, what: &str, pipeline: Vec<Document>) -> Result<Vec<Document>> {
        let tasks = &self.inner.tasks;
        self.op(what, async move {
            tasks.aggregate(pipeline).await?.try_collect::<Vec<_>>().await
        })
        .await
    }

    async fn next_revision(&self) -> Result<i64> {
        let doc = self
            .op(
                "bump revision",
                self.inner
                    .meta
                    .find_one_and_update(doc! { "_id": "revision" }, doc! { "$inc": { "value": 1_i64 } })
                    .upsert(true)
                    .return_document(ReturnDocument::After)
                    .into_future(),
            )
            .await?;
        // NB: some servers (the nx-27017 stand-in) answer a failed
        // find_one_and_update with no document instead of an error.
        doc.as_ref()
            .and_then(|d| number(d, "value"))
            .ok_or_else(|| StoreError::Backend("the revision counter did not answer".to_owned()))
    }

    async fn load(&self, name: &str) -> Result<Option<JobRow>> {
        let doc = self
            .op("read job", self.inner.jobs.find_one(doc! { "_id": name }).into_future())
            .await?;
        let Some(doc) = doc else { return Ok(None) };
        let version = number(&doc, "version").ok_or_else(|| StoreError::Corrupt("job without a version".to_owned()))?;
        Ok(Some(JobRow {
            version,
            fence: number(&doc, "fence").unwrap_or(0).max(0) as u64,
            job: parse_job(&doc)?,
        }))
    }

    async fn load_owned(&self, name: &str, uid: &str) -> Result<JobRow> {
        let row = self
            .load(name)
            .await?
            .ok_or_else(|| StoreError::NotFound(name.to_owned()))?;
        if row.job.uid() != uid {
            return Err(StoreError::Conflict {
                name: name.to_owned(),
                reason: format!("uid is {} now, not {uid}", row.job.uid()),
            });
        }
        Ok(row)
    }

    /// With a fence: refuses to write over `row` if a newer generation
    /// wrote it, or if the lease is in other hands now. The first check is
    /// exact (every write moves `version`, which the write then matches);
    /// the second narrows the window in which a deposed leader writes a
    /// job the new one has not written yet.
    async fn fenced_write(&self, row: &JobRow) -> Result<()> {
        let Some(fence) = &self.fence else { return Ok(()) };
        if row.fence > fence.generation {
            return Err(self.lease_now(fence).await);
        }
        self.check_lease().await
    }

    /// With a fence: fails unless the lease is still the fence's. Not
    /// atomic with the write that follows (no transactions across
    /// collections here): it shrinks a deposed leader's window to one call.
    async fn check_lease(&self) -> Result<()> {
        let Some(fence) = &self.fence else { return Ok(()) };
        match self.read_lease(&fence.lease).await? {
            Some(state) if state.holder == fence.holder && state.generation == fence.generation => Ok(()),
            Some(state) => Err(fence.refused(state.holder, state.generation)),
            None => Err(fence.refused(String::new(), 0)),
        }
    }

    /// The refusal of a fenced write, naming the lease's holder now.
    async fn lease_now(&self, fence: &Fence) -> StoreError {
        match self.read_lease(&fence.lease).await {
            Ok(Some(state)) => fence.refused(state.holder, state.generation),
            _ => fence.refused("(unknown)".to_owned(), 0),
        }
    }

    /// The lease `name` as stored, if any.
    async fn read_lease(&self, name: &str) -> Result<Option<LeaseState>> {
        let doc = self
            .op(
                "read lease",
                self.inner.leases.find_one(doc! { "_id": name }).into_future(),
            )
            .await?;
        Ok(doc.map(|d| lease_state(&d)))
    }

    /// Writes `job` over `row` if nobody wrote it since `row` was read;
    /// `bump` moves the revision (the change is one a watch reports).
    async fn save(&self, row: &JobRow, job: &BulkJob, bump: bool) -> Result<bool> {
        self.fenced_write(row).await?;
        let revision = if bump { Some(self.next_revision().await?) } else { None };
        let filter = doc! { "_id": job.metadata.name.as_str(), "version": row.version };
        let mut update = doc! { "version": row.version + 1, "doc": serde_json::to_string(job).map_err(|e| StoreError::Corrupt(e.to_string()))? };
        if let Some(rev) = revision {
            update.insert("revision", rev);
        }
        if let Some(fence) = &self.fence {
            update.insert("fence", fence.generation as i64);
        }
        let r = self
            .op(
                "write job",
                self.inner
                    .jobs
                    .update_one(filter, doc! { "$set": update })
                    .into_future(),
            )
            .await?;
        if bump && r.matched_count == 1 {
            self.inner.changed.notify_waiters();
        }
        Ok(r.matched_count == 1)
    }

    /// Removes the job (if unchanged since `row` was read), then its tasks.
    async fn remove(&self, row: &JobRow) -> Result<bool> {
        self.fenced_write(row).await?;
        let name = row.job.metadata.name.as_str();
        let r = self
            .op(
                "delete job",
                self.inner
                    .jobs
                    .delete_one(doc! { "_id": name, "version": row.version })
                    .into_future(),
            )
            .await?;
        if r.deleted_count == 0 {
            return Ok(false);
        }
        self.inner.changed.notify_waiters();
        self.delete_tasks(row.job.uid()).await?;
        Ok(true)
    }

    fn contention(name: &str) -> StoreError {
        StoreError::Backend(format!(
            "bulkjob {name:?} kept changing under {JOB_WRITE_TRIES} attempts to write it"
        ))
    }

    /// Fails every leasable task of the job that has used up its attempts;
    /// returns how many.
    async fn exhaust(&self, req: &LeaseRequest) -> Result<u64> {
        let base = doc! {
            "job": req.job_uid.as_str(),
            "state": { "$in": [PENDING, DISPATCHED] },
            "due": { "$lte": req.now_ms },
        };
        let mut filter = base.clone();
        filter.insert("attempts", doc! { "$gte": i64::from(req.max_attempts) });
        // NB: aggregate, not `distinct`: nx-27017's distinct ignores
        // filters with `$in` or `$type`.
        let groups = self
            .aggregate(
                "find exhausted tasks",
                vec![doc! { "$match": filter }, doc! { "$group": { "_id": "$attempts" } }],
            )
            .await?;
        let mut exhausted = 0;
        // NB: one update per distinct attempt count, as the error message
        // names it; a pipeline update could compute it, but not everywhere.
        for attempts in groups.iter().filter_map(|g| number(g, "_id")) {
            let mut filter = base.clone();
            filter.insert("attempts", attempts);
            let update = doc! { "$set": {
                "state": FAILED,
                "reason": FailureReason::AttemptsExceeded.as_str(),
                "error": format!("dispatched {attempts} times without a result"),
                "fin": req.now_ms,
                "due": 0_i64,
            }};
            let r = self
                .op(
                    "fail exhausted tasks",
                    self.inner.tasks.update_many(filter, update).into_future(),
                )
                .await?;
            exhausted += r.modified_count;
        }
        Ok(exhausted)
    }

    /// Ids of up to `limit` tasks in `state` that are due, oldest due first.
    async fn candidates(&self, req: &LeaseRequest, state: i32, limit: usize) -> Result<Vec<String>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let filter = doc! {
            "job": req.job_uid.as_str(),
            "state": state,
            "due": { "$lte": req.now_ms },
            "attempts": { "$lt": i64::from(req.max_attempts) },
        };
        let find = self
            .inner
            .tasks
            .find(filter)
            .sort(doc! { "due": 1, "i": 1 })
            .limit(limit as i64)
            .projection(doc! { "_id": 1 });
        let docs = self.collect("find leasable tasks", find).await?;
        Ok(docs
            .iter()
            .filter_map(|d| d.get_str("_id").ok().map(str::to_owned))
            .collect())
    }

    /// Marks those of `ids` still in `state` and due as dispatched under
    /// `token`.
    async fn claim(&self, req: &LeaseRequest, state: i32, ids: &[String], token: &str) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let filter = doc! {
            "_id": { "$in": ids },
            "state": state,
            "due": { "$lte": req.now_ms },
            "attempts": { "$lt": i64::from(req.max_attempts) },
        };
        let update = doc! {
            "$set": { "state": DISPATCHED, "due": req.now_ms + req.lease_ms, "lease": token },
            "$inc": { "attempts": 1_i64 },
        };
        self.op(
            "lease tasks",
            self.inner.tasks.update_many(filter, update).into_future(),
        )
        .await?;
        Ok(())
    }

    /// Applies the transitions `updates[positions]`, each to a different
    /// task and none needing a second write, in one `update` command;
    /// says which applied. Each write also stores a token of this call,
    /// read back only when the server matched fewer than all of them.
    async fn apply_bulk(&self, updates: &[TaskUpdate], positions: &[usize]) -> Result<Vec<bool>> {
        let token = uuid::Uuid::new_v4().to_string();
        let mut ids = Vec::with_capacity(positions.len());
        let statements: Vec<Document> = positions
            .iter()
            .map(|&pos| {
                let u = &updates[pos];
                let (filter, mut set) = transition_write(u);
                set.insert("applied", token.as_str());
                ids.push(task_id(&u.job_uid, u.index, u.part));
                doc! { "q": filter, "u": { "$set": set }, "multi": false }
            })
            .collect();
        let command = doc! { "update": self.inner.tasks.name(), "updates": statements, "ordered": false };
        let db = self.inner.tasks.client().database(&self.inner.tasks.namespace().db);
        let reply = self.op("apply results", db.run_command(command).into_future()).await?;
        if let Ok(errors) = reply.get_array("writeErrors")
            && let Some(first) = errors.first()
        {
            return Err(StoreError::Backend(format!(
                "apply results: {} of {} writes failed, the first: {first}",
                errors.len(),
                positions.len()
            )));
        }
        if number(&reply, "n") == Some(positions.len() as i64) {
            return Ok(vec![true; positions.len()]);
        }
        let find = self
            .inner
            .tasks
            .find(doc! { "_id": { "$in": &ids }, "applied": token.as_str() })
            .projection(doc! { "_id": 1 });
        let won: HashSet<String> = self
            .collect("read applied results", find)
            .await?
            .iter()
            .filter_map(|d| d.get_str("_id").ok().map(str::to_owned))
            .collect();
        Ok(ids.iter().map(|id| won.contains(id)).collect())
    }

    /// Applies one transition; says whether it did.
    async fn transition(&self, u: &TaskUpdate) -> Result<bool> {
        let (filter, set) = transition_write(u);
        let r = self
            .op(
                "apply result",
                self.inner.tasks.update_one(filter, doc! { "$set": set }).into_future(),
            )
            .await?;
        let applied = r.matched_count == 1;
        // NB: not one transaction (nx-27017 and standalone servers have
        // none): a crash between the two writes leaves a split file without
        // ranges, which `split_ready` reports and the controller repairs, or
        // an assembled file's ranges, which a later assembly ignores.
        match &u.transition {
            Transition::Split { ranges, .. } if applied => {
                let (path, version) = self
                    .get_task(&u.job_uid, u.index)
                    .await?
                    .map(|t| (t.path, t.version))
                    .unwrap_or_default();
                self.insert_tasks(&u.job_uid, NewTask::ranges(u.index, &path, version.as_ref(), ranges))
                    .await?;
            }
            Transition::Assemble { .. } if applied => {
                self.op(
                    "remove ranges",
                    self.inner
                        .tasks
                        .delete_many(
                            doc! { "job": u.job_uid.as_str(), "i": index_value(u.index)?, "p": { "$gt": 0_i64 } },
                        )
                        .into_future(),
                )
                .await?;
            }
            _ => {}
        }
        Ok(applied)
    }
}

/// Splits `positions` into runs for one `update` command each: at most
/// [`BULK_WRITES`] writes and about [`BULK_BYTES`] of result text, well
/// under a command's 16 MiB.
fn bulk_chunks<'a>(updates: &[TaskUpdate], positions: &'a [usize]) -> Vec<&'a [usize]> {
    let size = |pos: usize| -> usize {
        let r = match &updates[pos].transition {
            Transition::Succeed { result } | Transition::Retry { result, .. } | Transition::Fail { result, .. } => {
                Some(result)
            }
            _ => None,
        };
        // NB: the text dominates; the rest of a write is a few hundred bytes.
        512 + r.map_or(0, |r| {
            r.text.as_ref().map_or(0, String::len)
                + r.error.as_ref().map_or(0, String::len)
                + r.staged.as_ref().map_or(0, String::len)
                + r.page_info.len() * 64
        })
    };
    let mut chunks = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, &pos) in positions.iter().enumerate() {
        let s = size(pos);
        if i > start && (i - start == BULK_WRITES || bytes + s > BULK_BYTES) {
            chunks.push(&positions[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += s;
    }
    if start < positions.len() {
        chunks.push(&positions[start..]);
    }
    chunks
}

/// The first write of a transition: its filter and its `$set`.
fn transition_write(u: &TaskUpdate) -> (Document, Document) {
    let id = task_id(&u.job_uid, u.index, u.part);
    let (filter, mut set, result) = match &u.transition {
        Transition::Succeed { result } => (
            doc! { "_id": id, "state": { "$in": [PENDING, DISPATCHED] } },
            doc! { "state": SUCCEEDED, "due": 0_i64 },
            Some(result),
        ),
        Transition::Retry {
            attempt,
            not_before_ms,
            result,
        } => (
            doc! { "_id": id, "state": DISPATCHED, "attempts": i64::from(*attempt) },
            doc! { "state": PENDING, "due": *not_before_ms },
            Some(result),
        ),
        Transition::Fail { attempt, result } => (
            doc! { "_id": id, "state": { "$in": [PENDING, DISPATCHED] }, "attempts": i64::from(*attempt) },
            doc! { "state": FAILED, "due": 0_i64 },
            Some(result),
        ),
        Transition::Split { pages, .. } => (
            doc! { "_id": id, "p": 0_i64, "state": { "$in": [PENDING, DISPATCHED] } },
            doc! { "state": SPLIT, "due": 0_i64, "pages": i64::from(*pages) },
            None,
        ),
        Transition::Assemble { succeeded, result } => (
            doc! { "_id": id, "p": 0_i64, "state": SPLIT },
            doc! { "state": if *succeeded { SUCCEEDED } else { FAILED }, "due": 0_i64 },
            Some(result),
        ),
    };
    if let Some(result) = result {
        set.extend(result_fields(result));
    }
    (filter, set)
}

enum Bounded {
    TimedOut,
    Failed(mongodb::error::Error),
}

async fn bounded<T>(limit: Duration, fut: impl Future<Output = mongodb::error::Result<T>>) -> Result<T, Bounded> {
    match tokio::time::timeout(limit, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Bounded::Failed(e)),
        Err(_) => Err(Bounded::TimedOut),
    }
}

#[async_trait]
impl Store for MongoStore {
    fn backend(&self) -> &'static str {
        "mongodb"
    }

    async fn apply_job(&self, job: BulkJob) -> Result<Applied> {
        let name = job.metadata.name.clone();
        for _ in 0..JOB_WRITE_TRIES {
            match self.load(&name).await? {
                None => {
                    let new = new_stored_job(job.clone());
                    let doc = job_doc(&new, 1, self.next_revision().await?)?;
                    match bounded(self.inner.op_timeout, self.inner.jobs.insert_one(doc).into_future()).await {
                        Ok(_) => {
                            self.inner.changed.notify_waiters();
                            return Ok(Applied {
                                job: new,
                                created: true,
                                spec_changed: true,
                            });
                        }
                        // NB: created by someone else since we looked: apply over it.
                        Err(Bounded::Failed(e)) if write_error_code(&e) == Some(DUPLICATE_KEY) => continue,
                        Err(Bounded::Failed(e)) => return Err(self.err("create job", e)),
                        Err(Bounded::TimedOut) => return Err(StoreError::Backend("create job timed out".to_owned())),
                    }
                }
                Some(row) => {
                    let mut current = row.job.clone();
                    let (spec_changed, changed) = merge_applied(&mut current, &job)?;
                    if changed && !self.save(&row, &current, true).await? {
                        continue;
                    }
                    return Ok(Applied {
                        job: current,
                        created: false,
                        spec_changed,
                    });
                }
            }
        }
        Err(Self::contention(&name))
    }

    async fn get_job(&self, name: &str) -> Result<Option<BulkJob>> {
        Ok(self.load(name).await?.map(|r| r.job))
    }

    async fn list_jobs(&self) -> Result<Vec<BulkJob>> {
        let find = self.inner.jobs.find(doc! {}).sort(doc! { "_id": 1 });
        let docs = self.collect("list jobs", find).await?;
        let mut jobs = docs.iter().map(parse_job).collect::<Result<Vec<_>>>()?;
        // NB: sorted here too: a server may collate `_id` differently.
        jobs.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        Ok(jobs)
    }

    async fn update_status(&self, name: &str, uid: &str, status: &BulkJobStatus) -> Result<()> {
        for _ in 0..JOB_WRITE_TRIES {
            let row = self.load_owned(name, uid).await?;
            let mut job = row.job.clone();
            job.status = Some(status.clone());
            if self.save(&row, &job, false).await? {
                return Ok(());
            }
        }
        Err(Self::contention(name))
    }

    async fn add_finalizer(&self, name: &str, uid: &str) -> Result<()> {
        for _ in 0..JOB_WRITE_TRIES {
            let row = self.load_owned(name, uid).await?;
            if row.job.has_finalizer() {
                return Ok(());
            }
            let mut job = row.job.clone();
            job.metadata.finalizers.push(FINALIZER.to_owned());
            if self.save(&row, &job, true).await? {
                return Ok(());
            }
        }
        Err(Self::contention(name))
    }

    async fn remove_finalizer(&self, name: &str, uid: &str) -> Result<()> {
        for _ in 0..JOB_WRITE_TRIES {
            let row = self.load_owned(name, uid).await?;
            let mut job = row.job.clone();
            job.metadata.finalizers.retain(|f| f != FINALIZER);
            let done = if job.is_deleting() && job.metadata.finalizers.is_empty() {
                self.remove(&row).await?
            } else {
                self.save(&row, &job, true).await?
            };
            if done {
                return Ok(());
            }
        }
        Err(Self::contention(name))
    }

    async fn request_delete(&self, name: &str) -> Result<Deleted> {
        for _ in 0..JOB_WRITE_TRIES {
            let row = self
                .load(name)
                .await?
                .ok_or_else(|| StoreError::NotFound(name.to_owned()))?;
            if row.job.metadata.finalizers.is_empty() {
                if self.remove(&row).await? {
                    return Ok(Deleted::Removed);
                }
                continue;
            }
            if row.job.metadata.deletion_timestamp.is_some() {
                return Ok(Deleted::Marked);
            }
            let mut job = row.job.clone();
            job.metadata.deletion_timestamp = Some(Utc::now());
            if self.save(&row, &job, true).await? {
                return Ok(Deleted::Marked);
            }
        }
        Err(Self::contention(name))
    }

    async fn force_delete(&self, name: &str) -> Result<()> {
        for _ in 0..JOB_WRITE_TRIES {
            let row = self
                .load(name)
                .await?
                .ok_or_else(|| StoreError::NotFound(name.to_owned()))?;
            if self.remove(&row).await? {
                return Ok(());
            }
        }
        Err(Self::contention(name))
    }

    fn watch(&self) -> BoxStream<'static, WatchEvent> {
        let (tx, rx) = mpsc::channel(WATCH_CHANNEL);
        let watcher = Watcher {
            store: self.clone(),
            tx,
            seen: HashMap::new(),
            mode: self.inner.watch,
        };
        let span = tracing::info_span!("store_watch", backend = "mongodb", db = %self.inner.url.database);
        tokio::spawn(watcher.run().instrument(span));
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (e, rx)) }).boxed()
    }

    async fn insert_tasks(&self, job_uid: &str, tasks: Vec<NewTask>) -> Result<u64> {
        self.check_lease().await?;
        let mut inserted = 0;
        for chunk in tasks.chunks(INSERT_CHUNK) {
            let docs = chunk
                .iter()
                .map(|t| {
                    let (first, last) = t.pages.map_or((0, 0), |r| (r.first, r.last));
                    let mut task = doc! {
                        "_id": task_id(job_uid, t.index, t.part),
                        "job": job_uid,
                        "i": index_value(t.index)?,
                        "p": i64::from(t.part),
                        "fp": i64::from(first),
                        "lp": i64::from(last),
                        "span": i64::from(last.saturating_sub(first) + 1),
                        "path": t.path.as_str(),
                        "state": PENDING,
                        "attempts": 0_i64,
                        // NB: ranges first (see the SQLite store).
                        "due": if t.part > 0 { -1_i64 } else { 0_i64 },
                    };
                    if let Some(v) = &t.version {
                        task.insert("size", i64::try_from(v.size).unwrap_or(i64::MAX));
                        if let Some(etag) = &v.etag {
                            task.insert("etag", etag.as_str());
                        }
                    }
                    Ok(task)
                })
                .collect::<Result<Vec<_>>>()?;
            let n = docs.len() as u64;
            match bounded(
                self.inner.op_timeout,
                self.inner.tasks.insert_many(docs).ordered(false).into_future(),
            )
            .await
            {
                Ok(r) => inserted += r.inserted_ids.len() as u64,
                Err(Bounded::Failed(e)) => {
                    // NB: an index already present is a duplicate-key write
                    // error; any other error fails the call.
                    let duplicates = match e.kind.as_ref() {
                        ErrorKind::InsertMany(f) if f.write_concern_error.is_none() => {
                            let errors = f.write_errors.as_deref().unwrap_or_default();
                            errors
                                .iter()
                                .all(|w| w.code == DUPLICATE_KEY)
                                .then_some(errors.len() as u64)
                        }
                        _ => None,
                    };
                    let Some(duplicates) = duplicates else {
                        return Err(self.err("insert tasks", e));
                    };
                    inserted += n.saturating_sub(duplicates);
                }
                Err(Bounded::TimedOut) => return Err(StoreError::Backend("insert tasks timed out".to_owned())),
            }
        }
        Ok(inserted)
    }

    async fn delete_tasks(&self, job_uid: &str) -> Result<u64> {
        self.check_lease().await?;
        let r = self
            .op(
                "delete tasks",
                self.inner.tasks.delete_many(doc! { "job": job_uid }).into_future(),
            )
            .await?;
        Ok(r.deleted_count)
    }

    /// Leases in rounds: pick candidate ids (pending first, then expired
    /// dispatches, oldest due first), claim them with one conditional
    /// `update_many` per state under a fresh token, read back what carries
    /// the token. Each task's claim is one atomic single-document update
    /// whose filter re-checks state, due time and attempts, so two leasers
    /// never both win a task; a leaser that lost some of its candidates
    /// tries again for the rest.
    async fn lease_tasks(&self, req: LeaseRequest) -> Result<Leased> {
        self.check_lease().await?;
        let exhausted = self.exhaust(&req).await?;
        let mut tasks: Vec<TaskRecord> = Vec::new();
        let mut taken: HashSet<String> = HashSet::new();
        for _ in 0..LEASE_ROUNDS {
            let need = req.limit.saturating_sub(tasks.len());
            if need == 0 {
                break;
            }
            let mut pending = self.candidates(&req, PENDING, need).await?;
            let mut expired = self.candidates(&req, DISPATCHED, need - pending.len()).await?;
            if pending.is_empty() && expired.is_empty() {
                break;
            }
            // NB: with a zero lease, what this call took is due again at
            // once; never take a task twice in one call.
            pending.retain(|id| !taken.contains(id));
            expired.retain(|id| !taken.contains(id));
            let token = uuid::Uuid::new_v4().to_string();
            self.claim(&req, PENDING, &pending, &token).await?;
            self.claim(&req, DISPATCHED, &expired, &token).await?;
            let wanted: Vec<&String> = pending.iter().chain(&expired).collect();
            if wanted.is_empty() {
                break;
            }
            let find = self
                .inner
                .tasks
                .find(doc! { "_id": { "$in": &wanted }, "lease": token.as_str() });
            let mut got: HashMap<String, TaskRecord> = HashMap::new();
            for d in self.collect("read leased tasks", find).await? {
                let id = d.get_str("_id").map(str::to_owned).unwrap_or_default();
                let t: TaskDoc =
                    mongodb::bson::from_document(d).map_err(|e| StoreError::Corrupt(format!("task document: {e}")))?;
                got.insert(id, t.into_record()?);
            }
            let won = got.len();
            for id in &wanted {
                if let Some(t) = got.remove(id.as_str()) {
                    taken.insert((*id).clone());
                    tasks.push(t);
                }
            }
            if won == wanted.len() {
                // NB: nobody raced us; fewer candidates than asked means
                // there are no more.
                if wanted.len() < need {
                    break;
                }
            }
        }
        Ok(Leased { tasks, exhausted })
    }

    async fn retry_failed(&self, job_uid: &str) -> Result<u64> {
        self.check_lease().await?;
        // Ranges left behind by a failed split file (normally removed when
        // it was assembled) go first.
        let left = self
            .aggregate(
                "find left-over ranges",
                vec![
                    doc! { "$match": { "job": job_uid, "p": { "$gt": 0_i64 } } },
                    doc! { "$group": { "_id": "$i" } },
                ],
            )
            .await?;
        for i in left.iter().filter_map(|g| number(g, "_id")) {
            let file = self
                .op(
                    "read task",
                    self.inner
                        .tasks
                        .find_one(doc! { "job": job_uid, "i": i, "p": 0_i64, "state": FAILED })
                        .into_future(),
                )
                .await?;
            if file.is_some() {
                self.op(
                    "remove ranges",
                    self.inner
                        .tasks
                        .delete_many(doc! { "job": job_uid, "i": i, "p": { "$gt": 0_i64 } })
                        .into_future(),
                )
                .await?;
            }
        }
        let mut cleared = result_fields(&FileResult::default());
        cleared.insert("state", PENDING);
        cleared.insert("due", 0_i64);
        cleared.insert("attempts", 0_i64);
        cleared.insert("fin", 0_i64);
        let r = self
            .op(
                "retry failed tasks",
                self.inner
                    .tasks
                    .update_many(
                        doc! { "job": job_uid, "p": 0_i64, "state": FAILED },
                        doc! { "$set": cleared },
                    )
                    .into_future(),
            )
            .await?;
        Ok(r.modified_count)
    }

    async fn unlease_tasks(&self, job_uid: &str, keys: &[(u64, u32)]) -> Result<u64> {
        self.check_lease().await?;
        if keys.is_empty() {
            return Ok(0);
        }
        let ids: Vec<String> = keys.iter().map(|(i, p)| task_id(job_uid, *i, *p)).collect();
        let counted = self
            .op(
                "unlease tasks",
                self.inner
                    .tasks
                    .update_many(
                        doc! { "_id": { "$in": &ids }, "state": DISPATCHED, "attempts": { "$gte": 1_i64 } },
                        doc! { "$set": { "state": PENDING, "due": 0_i64 }, "$inc": { "attempts": -1_i64 } },
                    )
                    .into_future(),
            )
            .await?;
        let uncounted = self
            .op(
                "unlease tasks",
                self.inner
                    .tasks
                    .update_many(
                        doc! { "_id": { "$in": &ids }, "state": DISPATCHED, "attempts": { "$lt": 1_i64 } },
                        doc! { "$set": { "state": PENDING, "due": 0_i64, "attempts": 0_i64 } },
                    )
                    .into_future(),
            )
            .await?;
        Ok(counted.modified_count + uncounted.modified_count)
    }

    async fn renew_leases(&self, job_uid: &str, until_ms: i64) -> Result<u64> {
        self.check_lease().await?;
        let r = self
            .op(
                "renew task leases",
                self.inner
                    .tasks
                    .update_many(
                        doc! { "job": job_uid, "state": DISPATCHED, "due": { "$lt": until_ms } },
                        doc! { "$set": { "due": until_ms } },
                    )
                    .into_future(),
            )
            .await?;
        Ok(r.modified_count)
    }

    async fn reset_dispatched(&self) -> Result<u64> {
        self.check_lease().await?;
        let r = self
            .op(
                "reset dispatched tasks",
                self.inner
                    .tasks
                    .update_many(
                        doc! { "state": DISPATCHED },
                        doc! { "$set": { "state": PENDING, "due": 0_i64 } },
                    )
                    .into_future(),
            )
            .await?;
        Ok(r.modified_count)
    }

    /// Each update is one conditional single-document write, so each is
    /// atomic; the call as a whole is not (an error may leave some applied,
    /// which a repeat then reports as not applied). Updates of one task
    /// apply in the order given; different tasks' run concurrently.
    async fn apply_updates(&self, updates: Vec<TaskUpdate>) -> Result<Vec<bool>> {
        self.check_lease().await?;
        let mut groups: Vec<Vec<usize>> = Vec::new();
        let mut by_task: HashMap<(&str, u64, u32), usize> = HashMap::new();
        for (pos, u) in updates.iter().enumerate() {
            let g = *by_task.entry((u.job_uid.as_str(), u.index, u.part)).or_insert_with(|| {
                groups.push(Vec::new());
                groups.len() - 1
            });
            groups[g].push(pos);
        }
        // NB: a task's only transition that needs no second write goes in
        // bulk; a split or an assembly (which insert or remove ranges), and
        // a task named twice (whose writes must be in order), one by one.
        let (plain, ordered): (Vec<Vec<usize>>, Vec<Vec<usize>>) = groups.into_iter().partition(|g| {
            g.len() == 1
                && matches!(
                    updates[g[0]].transition,
                    Transition::Succeed { .. } | Transition::Retry { .. } | Transition::Fail { .. }
                )
        });
        let mut applied = vec![false; updates.len()];
        let plain: Vec<usize> = plain.into_iter().flatten().collect();
        for chunk in bulk_chunks(&updates, &plain) {
            let done = self.apply_bulk(&updates, chunk).await?;
            for (&pos, ok) in chunk.iter().zip(done) {
                applied[pos] = ok;
            }
        }
        let updates = &updates;
        let results: Vec<Vec<(usize, bool)>> = futures::stream::iter(ordered)
            .map(|positions| async move {
                let mut out = Vec::with_capacity(positions.len());
                for pos in positions {
                    out.push((pos, self.transition(&updates[pos]).await?));
                }
                Ok::<_, StoreError>(out)
            })
            .buffer_unordered(UPDATE_CONCURRENCY)
            .try_collect()
            .await?;
        for (pos, ok) in results.into_iter().flatten() {
            applied[pos] = ok;
        }
        Ok(applied)
    }

    async fn count_in_flight(&self, job_uid: &str) -> Result<u64> {
        // NB: a `$match` on a prefix of the (job, state, due, i) index and a
        // plain `$group`, not `count_documents`: nx-27017 (CI's server)
        // answers that in 700 ms for 20k tasks, this in 3 ms.
        let rows = self
            .aggregate(
                "count dispatched tasks",
                vec![
                    doc! { "$match": { "job": job_uid, "state": DISPATCHED } },
                    doc! { "$group": { "_id": null, "n": { "$sum": 1 } } },
                ],
            )
            .await?;
        Ok(rows.first().and_then(|r| number(r, "n")).unwrap_or(0).max(0) as u64)
    }

    async fn task_counts(&self, job_uid: &str) -> Result<TaskCounts> {
        // NB: three plain `$group`s rather than one with `$cond`, which not
        // every server that speaks the wire protocol evaluates.
        let files = self
            .aggregate(
                "count files",
                vec![
                    doc! { "$match": { "job": job_uid, "p": 0_i64 } },
                    doc! { "$group": { "_id": "$state", "n": { "$sum": 1 }, "pages": { "$sum": "$pages" } } },
                ],
            )
            .await?;
        let pageless = self
            .aggregate(
                "count files without pages",
                vec![
                    doc! { "$match": { "job": job_uid, "p": 0_i64, "pages": 0_i64 } },
                    doc! { "$group": { "_id": "$state", "n": { "$sum": 1 } } },
                ],
            )
            .await?;
        let ranges = self
            .aggregate(
                "count ranges",
                vec![
                    doc! { "$match": { "job": job_uid, "p": { "$gt": 0_i64 } } },
                    doc! { "$group": { "_id": "$state", "n": { "$sum": 1 }, "pages": { "$sum": "$span" } } },
                ],
            )
            .await?;
        let state_of = |row: &Document| -> Result<TaskState> {
            state_from(number(row, "_id").ok_or_else(|| StoreError::Corrupt("task without a state".to_owned()))?)
        };
        let mut counts = TaskCounts::default();
        for row in &files {
            let state = state_of(row)?;
            let n = number(row, "n").unwrap_or(0) as u64;
            // NB: a file counts as one page until it was opened (split or
            // finished), and at least one after.
            let zero = pageless
                .iter()
                .find(|r| number(r, "_id") == number(row, "_id"))
                .and_then(|r| number(r, "n"))
                .unwrap_or(0) as u64;
            let pages = number(row, "pages").unwrap_or(0) as u64 + zero;
            count_state(&mut counts.files, state, n);
            if state == TaskState::Dispatched {
                counts.in_flight += n;
            }
            if state == TaskState::Split {
                counts.split += n;
            }
            counts.pages.total += if matches!(state, TaskState::Pending | TaskState::Dispatched) {
                n
            } else {
                pages
            };
            if state.is_terminal() {
                counts.pages.done += pages;
            }
        }
        for row in &ranges {
            let state = state_of(row)?;
            if state == TaskState::Dispatched {
                counts.in_flight += number(row, "n").unwrap_or(0) as u64;
            }
            if state.is_terminal() {
                counts.pages.done += number(row, "pages").unwrap_or(0) as u64;
            }
        }
        Ok(counts)
    }

    async fn get_task(&self, job_uid: &str, index: u64) -> Result<Option<TaskRecord>> {
        let doc = self
            .op(
                "read task",
                self.inner
                    .tasks
                    .find_one(doc! { "_id": task_id(job_uid, index, 0) })
                    .into_future(),
            )
            .await?;
        doc.map(|d| {
            mongodb::bson::from_document::<TaskDoc>(d)
                .map_err(|e| StoreError::Corrupt(format!("task document: {e}")))?
                .into_record()
        })
        .transpose()
    }

    async fn list_tasks(&self, job_uid: &str, after: Option<u64>, limit: usize) -> Result<Vec<TaskRecord>> {
        let after = match after {
            Some(a) => index_value(a)?,
            None => -1,
        };
        let find = self
            .inner
            .tasks
            .find(doc! { "job": job_uid, "p": 0_i64, "i": { "$gt": after } })
            .sort(doc! { "i": 1 })
            .limit(i64::try_from(limit).unwrap_or(i64::MAX));
        self.records("list tasks", find).await
    }

    async fn list_parts(&self, job_uid: &str, index: u64) -> Result<Vec<TaskRecord>> {
        let find = self
            .inner
            .tasks
            .find(doc! { "job": job_uid, "i": index_value(index)?, "p": { "$gt": 0_i64 } })
            .sort(doc! { "p": 1 });
        self.records("list ranges", find).await
    }

    async fn split_ready(&self, job_uid: &str, limit: usize) -> Result<Vec<TaskRecord>> {
        let find = self
            .inner
            .tasks
            .find(doc! { "job": job_uid, "p": 0_i64, "state": SPLIT })
            .sort(doc! { "i": 1 });
        let mut ready = Vec::new();
        for file in self.records("list split files", find).await? {
            if ready.len() >= limit {
                break;
            }
            let busy = self
                .op(
                    "count ranges at work",
                    self.inner
                        .tasks
                        .count_documents(doc! {
                            "job": job_uid,
                            "i": index_value(file.index)?,
                            "p": { "$gt": 0_i64 },
                            "state": { "$in": [PENDING, DISPATCHED] },
                        })
                        .into_future(),
                )
                .await?;
            if busy == 0 {
                ready.push(file);
            }
        }
        Ok(ready)
    }

    async fn summarize(&self, job_uid: &str) -> Result<ResultSummary> {
        let ok = self
            .aggregate(
                "summarize results",
                vec![
                    doc! { "$match": { "job": job_uid, "p": 0_i64, "state": SUCCEEDED } },
                    doc! { "$group": {
                        "_id": Bson::Null,
                        "pages": { "$sum": "$pages" },
                        "words": { "$sum": "$words" },
                        "conf": { "$sum": { "$multiply": ["$conf", "$pages"] } },
                        "dur": { "$sum": "$dur" },
                    }},
                ],
            )
            .await?;
        let failed = self
            .aggregate(
                "summarize failures",
                vec![
                    doc! { "$match": { "job": job_uid, "p": 0_i64, "state": FAILED } },
                    doc! { "$group": {
                        "_id": { "$ifNull": ["$reason", "unknown"] },
                        "n": { "$sum": 1 },
                        "dur": { "$sum": "$dur" },
                    }},
                ],
            )
            .await?;
        let mut summary = ResultSummary::default();
        if let Some(row) = ok.first() {
            summary.pages = number(row, "pages").unwrap_or(0) as u64;
            summary.words = number(row, "words").unwrap_or(0) as u64;
            summary.confidence_page_sum = float(row, "conf").unwrap_or(0.0);
            summary.ocr_ms = number(row, "dur").unwrap_or(0) as u64;
        }
        for row in &failed {
            let reason = row.get_str("_id").unwrap_or("unknown").to_owned();
            *summary.failures_by_reason.entry(reason).or_default() += number(row, "n").unwrap_or(0) as u64;
            summary.ocr_ms += number(row, "dur").unwrap_or(0) as u64;
        }
        let nodes = self
            .aggregate(
                "list nodes",
                vec![
                    doc! { "$match": { "job": job_uid, "node": { "$type": "string" } } },
                    doc! { "$group": { "_id": "$node" } },
                ],
            )
            .await?;
        let mut nodes: Vec<String> = nodes
            .iter()
            .filter_map(|n| n.get_str("_id").ok().map(str::to_owned))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        nodes.sort();
        summary.nodes = nodes;
        Ok(summary)
    }

    /// Renew (holder's own), else take over (expired, another's: the
    /// generation moves up), else create (insert); then read who holds it.
    async fn acquire_lease(&self, name: &str, holder: &str, now_ms: i64, ttl_ms: i64) -> Result<LeaseState> {
        let expires = now_ms + ttl_ms;
        let leases = &self.inner.leases;
        for _ in 0..JOB_WRITE_TRIES {
            let renewed = self
                .op(
                    "renew lease",
                    leases
                        .update_one(
                            doc! { "_id": name, "holder": holder },
                            doc! { "$set": { "expires": expires } },
                        )
                        .into_future(),
                )
                .await?;
            if renewed.matched_count == 0 {
                let taken = self
                    .op(
                        "take lease",
                        leases
                            .update_one(
                                doc! { "_id": name, "holder": { "$ne": holder }, "expires": { "$lt": now_ms } },
                                doc! { "$set": { "holder": holder, "expires": expires }, "$inc": { "generation": 1_i64 } },
                            )
                            .into_future(),
                    )
                    .await?;
                if taken.matched_count == 0 {
                    let doc = doc! { "_id": name, "holder": holder, "expires": expires, "generation": 1_i64 };
                    match bounded(self.inner.op_timeout, leases.insert_one(doc).into_future()).await {
                        Ok(_) => {}
                        Err(Bounded::Failed(e)) if write_error_code(&e) == Some(DUPLICATE_KEY) => {}
                        Err(Bounded::Failed(e)) => return Err(self.err("take lease", e)),
                        Err(Bounded::TimedOut) => return Err(StoreError::Backend("take lease timed out".to_owned())),
                    }
                }
            }
            if let Some(state) = self.read_lease(name).await? {
                return Ok(state);
            }
        }
        Err(StoreError::Backend(format!("lease {name:?} kept changing")))
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        // NB: the document stays, with its generation: the next holder's
        // must be higher than any a deposed leader may still hold.
        self.op(
            "release lease",
            self.inner
                .leases
                .update_one(
                    doc! { "_id": name, "holder": holder },
                    doc! { "$set": { "expires": 0_i64 } },
                )
                .into_future(),
        )
        .await?;
        Ok(())
    }

    fn fenced(&self, fence: Fence) -> Arc<dyn Store> {
        Arc::new(Self {
            inner: self.inner.clone(),
            fence: Some(Arc::new(fence)),
        })
    }
}

fn lease_state(d: &Document) -> LeaseState {
    LeaseState {
        holder: d.get_str("holder").unwrap_or_default().to_owned(),
        expires_ms: number(d, "expires").unwrap_or(0),
        generation: number(d, "generation").unwrap_or(0).max(0) as u64,
    }
}

/// The watch loop, a small state machine: open a change stream (when the
/// mode allows), then re-list, then follow the stream; on any error, back
/// off, re-open and re-list. Re-listing emits `Changed` for every job whose
/// revision differs from the last one emitted for it (or that is gone), so
/// a gap never loses a change, and a change seen twice (in the list and on
/// the stream) is emitted once. A stream event is turned into a re-read of
/// that job's revision, so writes that do not move it (status) are
/// silent. The polling mode is the same re-list on a timer.
struct Watcher {
    store: MongoStore,
    tx: mpsc::Sender<WatchEvent>,
    /// Last revision emitted per job name.
    seen: HashMap<String, i64>,
    mode: WatchMode,
}

/// Why the watch loop stopped following the stream.
enum Gap {
    /// The receiver is gone: end the task.
    Closed,
    /// The stream or a read failed: re-open and re-list. The flag says
    /// whether the failure was the server being out of reach.
    Error(String, bool),
}

impl Watcher {
    async fn run(mut self) {
        let mut backoff = BACKOFF_MIN;
        let mut stream_failures = 0;
        loop {
            if self.tx.is_closed() {
                return;
            }
            if self.mode == WatchMode::Poll {
                self.poll().await;
                return;
            }
            match self.open().await {
                Ok(stream) => {
                    tracing::debug!("store watch follows a change stream");
                    let mut healthy = false;
                    match self.follow(stream, &mut healthy).await {
                        Gap::Closed => return,
                        Gap::Error(error, transient) => {
                            if healthy {
                                // NB: the stream worked for a while: a new
                                // failure starts the count and backoff anew.
                                stream_failures = 0;
                                backoff = BACKOFF_MIN;
                            }
                            if !transient {
                                stream_failures += 1;
                            }
                            tracing::warn!(%error, "store watch lost its change stream; re-listing");
                        }
                    }
                }
                Err(e) => {
                    let transient = is_transient(&e);
                    let unsupported = matches!(
                        e.kind.as_ref(),
                        ErrorKind::Command(c) if NO_CHANGE_STREAMS.contains(&c.code)
                    );
                    let error = self.store.inner.url.scrub(e.to_string());
                    if !transient {
                        stream_failures += 1;
                    }
                    if self.mode == WatchMode::Auto && unsupported {
                        tracing::info!(%error, "the server has no change streams; the store watch polls");
                        self.mode = WatchMode::Poll;
                        continue;
                    }
                    tracing::warn!(%error, "store watch cannot open a change stream");
                    if let Err(error) = self.relist().await {
                        match error {
                            Gap::Closed => return,
                            Gap::Error(error, _) => tracing::warn!(%error, "store watch cannot list jobs"),
                        }
                    }
                }
            }
            if self.mode == WatchMode::Auto && stream_failures >= STREAM_FAILURES_BEFORE_POLLING {
                tracing::warn!("change streams keep failing; the store watch polls");
                self.mode = WatchMode::Poll;
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = self.tx.closed() => return,
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    async fn open(&self) -> mongodb::error::Result<ChangeStream<ChangeStreamEvent<Document>>> {
        let inner = &self.store.inner;
        match tokio::time::timeout(
            inner.op_timeout,
            inner.jobs.watch().max_await_time(STREAM_AWAIT).into_future(),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(mongodb::error::Error::custom("opening the change stream timed out")),
        }
    }

    /// Re-lists, then follows the stream until it fails or nobody listens;
    /// sets `healthy` once the stream has answered.
    async fn follow(&mut self, mut stream: ChangeStream<ChangeStreamEvent<Document>>, healthy: &mut bool) -> Gap {
        if let Err(gap) = self.relist().await {
            return gap;
        }
        let limit = self.store.inner.op_timeout + STREAM_AWAIT;
        loop {
            let started = Instant::now();
            let next = tokio::select! {
                n = tokio::time::timeout(limit, stream.next_if_any()) => n,
                _ = self.tx.closed() => return Gap::Closed,
            };
            match next {
                Ok(Ok(Some(event))) => {
                    *healthy = true;
                    tracing::trace!(op = ?event.operation_type, "change event");
                    let name = event
                        .document_key
                        .as_ref()
                        .and_then(|k| k.get_str("_id").ok())
                        .map(str::to_owned);
                    let res = match name {
                        Some(name) => self.recheck(&name).await,
                        // NB: an event without a job key (a drop, say):
                        // the list says what changed.
                        None => self.relist().await,
                    };
                    if let Err(gap) = res {
                        return gap;
                    }
                }
                Ok(Ok(None)) => {
                    *healthy = true;
                    if !stream.is_alive() {
                        return Gap::Error("the change stream ended".to_owned(), false);
                    }
                    // NB: a server that ignores maxAwaitTimeMS answers an
                    // empty getMore at once; do not spin on it.
                    if started.elapsed() < STREAM_AWAIT / 10 {
                        tokio::time::sleep(STREAM_AWAIT / 5).await;
                    }
                }
                Ok(Err(e)) => return Gap::Error(self.store.inner.url.scrub(e.to_string()), is_transient(&e)),
                Err(_) => return Gap::Error(format!("no answer from the change stream within {limit:?}"), true),
            }
        }
    }

    /// The polling mode: re-list on every local write and every interval.
    async fn poll(&mut self) {
        tracing::debug!("store watch polls");
        let changed = self.store.inner.changed.clone();
        let mut backoff = BACKOFF_MIN;
        loop {
            let notified = changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let wait = match self.relist().await {
                Ok(()) => {
                    backoff = BACKOFF_MIN;
                    self.store.inner.poll_interval
                }
                Err(Gap::Closed) => return,
                Err(Gap::Error(error, _)) => {
                    tracing::warn!(%error, "store watch poll failed");
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    backoff.max(self.store.inner.poll_interval)
                }
            };
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep(wait) => {}
                _ = self.tx.closed() => return,
            }
        }
    }

    async fn emit(&self, name: &str) -> Result<(), Gap> {
        self.tx
            .send(WatchEvent::Changed(name.to_owned()))
            .await
            .map_err(|_| Gap::Closed)
    }

    /// Emits every job whose revision moved since last emitted, and every
    /// job that is gone.
    async fn relist(&mut self) -> Result<(), Gap> {
        let find = self
            .store
            .inner
            .jobs
            .find(doc! {})
            .projection(doc! { "_id": 1, "revision": 1 });
        let docs = self
            .store
            .collect("list job revisions", find)
            .await
            .map_err(|e| Gap::Error(e.to_string(), true))?;
        let mut current: Vec<(String, i64)> = docs
            .iter()
            .filter_map(|d| Some((d.get_str("_id").ok()?.to_owned(), number(d, "revision")?)))
            .collect();
        current.sort_by_key(|(_, rev)| *rev);
        let present: HashSet<&str> = current.iter().map(|(n, _)| n.as_str()).collect();
        let mut gone: Vec<String> = self
            .seen
            .keys()
            .filter(|n| !present.contains(n.as_str()))
            .cloned()
            .collect();
        gone.sort();
        for name in gone {
            self.seen.remove(&name);
            self.emit(&name).await?;
        }
        for (name, rev) in current {
            if self.seen.get(&name) != Some(&rev) {
                self.emit(&name).await?;
                self.seen.insert(name, rev);
            }
        }
        Ok(())
    }

    /// Emits `name` if its revision moved since last emitted (or it is gone).
    async fn recheck(&mut self, name: &str) -> Result<(), Gap> {
        let inner = &self.store.inner;
        let doc = self
            .store
            .op(
                "read job revision",
                inner
                    .jobs
                    .find_one(doc! { "_id": name })
                    .projection(doc! { "revision": 1 })
                    .into_future(),
            )
            .await
            .map_err(|e| Gap::Error(e.to_string(), true))?;
        match doc.and_then(|d| number(&d, "revision")) {
            Some(rev) if self.seen.get(name) != Some(&rev) => {
                self.emit(name).await?;
                self.seen.insert(name.to_owned(), rev);
            }
            None if self.seen.remove(name).is_some() => self.emit(name).await?,
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_never_show_the_password() {
        let u = MongoUrl::parse("mongodb://skep:s3cr%40t@db1:27017,db2/jobs?authSource=admin&skepWatch=poll").unwrap();
        assert_eq!(u.database(), "jobs");
        assert_eq!(u.watch_mode(), Some(WatchMode::Poll));
        assert_eq!(
            u.driver_url,
            "mongodb://skep:s3cr%40t@db1:27017,db2/jobs?authSource=admin"
        );
        let shown = u.to_string();
        assert_eq!(
            shown,
            "mongodb://skep:***@db1:27017,db2/jobs?authSource=admin&skepWatch=poll"
        );
        let debug = format!("{u:?}");
        for text in [&shown, &debug] {
            assert!(!text.contains("s3cr"), "{text}");
        }
        assert_eq!(
            u.scrub("auth failed for s3cr@t and s3cr%40t".to_owned()),
            "auth failed for *** and ***"
        );

        let plain = MongoUrl::parse("mongodb://127.0.0.1:27017").unwrap();
        assert_eq!(plain.database(), DEFAULT_DATABASE);
        assert_eq!(plain.watch_mode(), None);
        assert_eq!(plain.to_string(), "mongodb://127.0.0.1:27017/skep");

        let srv = MongoUrl::parse("mongodb+srv://u:p@cluster.example.net/?tlsCertificateKeyFilePassword=x").unwrap();
        assert_eq!(srv.database(), DEFAULT_DATABASE);
        assert_eq!(
            srv.to_string(),
            "mongodb+srv://u:***@cluster.example.net/skep?tlsCertificateKeyFilePassword=***"
        );

        let other = u
            .with_database("skep_test_1")
            .unwrap()
            .with_watch(WatchMode::ChangeStream);
        assert_eq!(other.database(), "skep_test_1");
        assert_eq!(other.driver_url, u.driver_url, "the auth database stays");
        assert_eq!(other.watch_mode(), Some(WatchMode::ChangeStream));
    }

    #[test]
    fn bad_urls_are_refused_without_echoing_them() {
        for bad in [
            "mongodb://",
            "mongodb://user:hunter2@/db",
            "mongodb://user:hunter2@h/a.b",
            "mongodb://user:hunter2@h/db?skepWatch=sometimes",
            "mongodb://user:hunter2@h/%zz",
        ] {
            let err = MongoUrl::parse(bad).unwrap_err();
            assert!(!err.contains("hunter2"), "{err}");
        }
    }
}
