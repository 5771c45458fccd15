//! `skep-bench ingest`: how fast results go into a store, SQLite (a
//! temporary file) being the baseline every `--store` is compared with.
//!
//! Each round creates a job, inserts its N tasks in the scan's batches,
//! leases them all in the dispatcher's batches, then writes one succeeded
//! result per task with `apply_updates` in the result ingest's batches, one
//! call after another as the controller does; each phase is timed on its
//! own and the job is deleted afterwards (also when the round failed). The
//! store calls are the controller's; the queue in front of ingest is not
//! part of this bench (see `dispatch`).

use std::fmt;
use std::future::Future;
use std::time::{Duration, Instant, SystemTime};

use clap::builder::RangedU64ValueParser;
use serde::Serialize;
use skep::controller::scan::SCAN_BATCH;
use skep::store::{FileResult, LeaseRequest, NewTask, Store, StoreError, StoreUrl, TaskUpdate, Transition};
use skep_api::{BulkJob, BulkJobSpec};

use crate::report::{Count, Goal, RateGoal};
use crate::stats::{Rate, Samples, ratio};

/// Results per round into the SQLite baseline.
pub const DEFAULT_TASKS: usize = 20_000;
/// Results per round into each `--store`: a remote store is slower.
pub const DEFAULT_STORE_TASKS: usize = 5_000;
pub const DEFAULT_ROUNDS: usize = 3;
/// Results per second a store should take (issue #3).
pub const GOAL_RESULTS_PER_S: f64 = 20_000.0;
/// Results per `apply_updates` call: the controller's own batch.
pub const INGEST_BATCH: usize = skep::controller::INGEST_BATCH;
/// Tasks per `lease_tasks` call: the controller's dispatch batch.
pub const LEASE_BATCH: usize = skep::controller::DISPATCH_BATCH as usize;
/// Bytes of OCR text per result, about a short page.
const TEXT_BYTES: usize = 1_500;
/// The longest one store call may take before the bench gives up.
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot make a temporary directory for the SQLite store")]
    TempDir(#[source] std::io::Error),
    #[error("store {store}: {what}")]
    Store {
        store: String,
        what: &'static str,
        #[source]
        source: StoreError,
    },
    /// A store call took longer than [`CALL_TIMEOUT`].
    #[error("store {store}: {what} took more than {CALL_TIMEOUT:?}")]
    Timeout { store: String, what: &'static str },
    /// The store did fewer of something than it was asked to.
    #[error("store {store}: {what}: {done} of {asked}")]
    Short {
        store: String,
        what: &'static str,
        done: u64,
        asked: usize,
    },
}

/// `skep-bench ingest` options.
#[derive(Clone, Debug, clap::Args)]
pub struct IngestOptions {
    /// Results per round into the SQLite baseline.
    #[arg(long, default_value_t = DEFAULT_TASKS, env = "SKEP_BENCH_TASKS",
          value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    pub tasks: usize,
    /// A store to write results into as well (`mongodb://HOST:PORT/DATABASE`
    /// or `sqlite:PATH`); repeatable. The bench's job is deleted afterwards.
    #[arg(long = "store", value_name = "URL", value_parser = StoreUrl::parse)]
    pub stores: Vec<StoreUrl>,
    /// Results per round into each `--store`.
    #[arg(long, default_value_t = DEFAULT_STORE_TASKS, env = "SKEP_BENCH_STORE_TASKS",
          value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    pub store_tasks: usize,
    /// Timed rounds per store; the median is reported.
    #[arg(long, default_value_t = DEFAULT_ROUNDS, env = "SKEP_BENCH_ROUNDS",
          value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    pub rounds: usize,
}

impl Default for IngestOptions {
    fn default() -> Self {
        Self {
            tasks: DEFAULT_TASKS,
            stores: Vec::new(),
            store_tasks: DEFAULT_STORE_TASKS,
            rounds: DEFAULT_ROUNDS,
        }
    }
}

/// The timings of one round.
#[derive(Clone, Copy, Debug)]
struct Round {
    insert: Duration,
    lease: Duration,
    results: Duration,
}

/// Runs the SQLite baseline, then each `--store`. Progress goes to stderr.
pub async fn run(opts: &IngestOptions) -> Result<IngestReport> {
    let dir = tempfile::tempdir().map_err(Error::TempDir)?;
    let baseline = StoreUrl::Sqlite(dir.path().join("bench.db"));
    let baseline = bench_store(&baseline, opts.tasks, opts.rounds).await?;
    let mut stores = Vec::with_capacity(opts.stores.len());
    for url in &opts.stores {
        let mut s = bench_store(url, opts.store_tasks, opts.rounds).await?;
        s.results_vs_sqlite = ratio(s.results.per_s, baseline.results.per_s);
        stores.push(s);
    }
    Ok(IngestReport {
        bench: "ingest",
        rounds: opts.rounds,
        batch: INGEST_BATCH,
        text_bytes: TEXT_BYTES,
        sqlite: baseline,
        stores,
    })
}

async fn bench_store(url: &StoreUrl, tasks: usize, rounds: usize) -> Result<StoreRates> {
    let label = url.to_string();
    let store = call(&label, "open", url.open()).await?;
    let mut insert = Samples::default();
    let mut lease = Samples::default();
    let mut results = Samples::default();
    for round in 1..=rounds {
        let r = job_round(store.as_ref(), &label, tasks).await?;
        eprintln!(
            "ingest: round {round}/{rounds}: {label} insert {:.3} s, lease {:.3} s, results {:.3} s",
            r.insert.as_secs_f64(),
            r.lease.as_secs_f64(),
            r.results.as_secs_f64()
        );
        insert.push(r.insert);
        lease.push(r.lease);
        results.push(r.results);
    }
    let n = tasks as f64;
    let results = results.rate(n);
    Ok(StoreRates {
        store: label,
        backend: store.backend(),
        tasks,
        insert: insert.rate(n),
        lease: lease.rate(n),
        goal: Goal::new(results.per_s, GOAL_RESULTS_PER_S),
        results,
        results_vs_sqlite: 1.0,
    })
}

/// One job through the three phases, deleted afterwards.
async fn job_round(store: &dyn Store, label: &str, tasks: usize) -> Result<Round> {
    let name = format!("skep-bench-ingest-{}-{}", std::process::id(), now_ms());
    let job = BulkJob::new(&name, BulkJobSpec::for_path("/data/in"));
    let applied = call(label, "apply_job", store.apply_job(job.clone())).await?;
    let timed = phases(store, label, applied.job.uid(), &job, tasks).await;
    let deleted = call(label, "force_delete", store.force_delete(&name)).await;
    let round = timed?;
    deleted?;
    Ok(round)
}

async fn phases(store: &dyn Store, label: &str, uid: &str, job: &BulkJob, tasks: usize) -> Result<Round> {
    let new_tasks: Vec<NewTask> = (0..tasks as u64)
        .map(|i| {
            NewTask::file(
                i,
                format!("box-{:04}/folder-{:02}/scan-{i:07}.png", i / 10_000, i / 100 % 100),
            )
        })
        .collect();
    let started = Instant::now();
    let mut inserted = 0;
    for chunk in new_tasks.chunks(SCAN_BATCH) {
        inserted += call(label, "insert_tasks", store.insert_tasks(uid, chunk.to_vec())).await?;
    }
    let insert = started.elapsed();
    check(label, "tasks inserted", inserted, tasks)?;

    let started = Instant::now();
    let mut leased = 0;
    loop {
        let req = LeaseRequest {
            job_uid: uid.to_owned(),
            limit: LEASE_BATCH,
            now_ms: now_ms(),
            lease_ms: 600_000,
            max_attempts: job.spec.max_attempts,
        };
        let got = call(label, "lease_tasks", store.lease_tasks(req)).await?.tasks.len();
        leased += got as u64;
        if got == 0 || leased as usize >= tasks {
            break;
        }
    }
    let lease = started.elapsed();
    check(label, "tasks leased", leased, tasks)?;

    let updates = result_updates(uid, tasks);
    let started = Instant::now();
    let mut applied = 0;
    for chunk in updates.chunks(INGEST_BATCH) {
        let done = call(label, "apply_updates", store.apply_updates(chunk.to_vec())).await?;
        applied += done.iter().filter(|a| **a).count() as u64;
    }
    let results = started.elapsed();
    check(label, "results applied", applied, tasks)?;
    Ok(Round { insert, lease, results })
}

/// One succeeded result per task, as ingest turns a worker's result
/// message into a store update.
fn result_updates(uid: &str, tasks: usize) -> Vec<TaskUpdate> {
    let line = "Invoice 2024-Q3 total due 1,234.56 EUR payable within 30 days. ";
    let text: String = line.chars().cycle().take(TEXT_BYTES).collect();
    let finished_ms = now_ms();
    (0..tasks as u64)
        .map(|index| TaskUpdate {
            job_uid: uid.to_owned(),
            index,
            part: 0,
            transition: Transition::Succeed {
                result: FileResult {
                    text: Some(text.clone()),
                    confidence: Some(91.5),
                    pages: 1,
                    words: 230,
                    duration_ms: 1_800,
                    worker: Some(format!("bench-worker-{}", index % 8)),
                    node: Some("bench-node".to_owned()),
                    finished_ms,
                    ..FileResult::default()
                },
            },
        })
        .collect()
}

fn check(store: &str, what: &'static str, done: u64, asked: usize) -> Result<()> {
    if done as usize == asked {
        return Ok(());
    }
    Err(Error::Short {
        store: store.to_owned(),
        what,
        done,
        asked,
    })
}

/// `fut` under [`CALL_TIMEOUT`], its error named after the store and call.
async fn call<T>(
    store: &str,
    what: &'static str,
    fut: impl Future<Output = std::result::Result<T, StoreError>>,
) -> Result<T> {
    match tokio::time::timeout(CALL_TIMEOUT, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(source)) => Err(Error::Store {
            store: store.to_owned(),
            what,
            source,
        }),
        Err(_) => Err(Error::Timeout {
            store: store.to_owned(),
            what,
        }),
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// One store's rates; units are tasks (insert, lease) or results per
/// second.
#[derive(Debug, Serialize)]
pub struct StoreRates {
    /// The URL, password hidden.
    pub store: String,
    pub backend: &'static str,
    pub tasks: usize,
    pub insert: Rate,
    pub lease: Rate,
    pub results: Rate,
    /// Results per second against the SQLite baseline of the same run.
    pub results_vs_sqlite: f64,
    /// Results per second against [`GOAL_RESULTS_PER_S`].
    pub goal: Goal,
}

/// The result of `skep-bench ingest`.
#[derive(Debug, Serialize)]
pub struct IngestReport {
    pub bench: &'static str,
    pub rounds: usize,
    /// Results per `apply_updates` call.
    pub batch: usize,
    /// Bytes of OCR text per result.
    pub text_bytes: usize,
    pub sqlite: StoreRates,
    pub stores: Vec<StoreRates>,
}

impl fmt::Display for IngestReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "ingest: succeeded results of {} bytes of text, {} per apply_updates, median of {} rounds; baseline: SQLite in a temporary file",
            self.text_bytes, self.batch, self.rounds
        )?;
        write!(
            f,
            "  {:<8} {:>7} {:>10} {:>10} {:>10} {:>8}   results vs goal",
            "store", "tasks", "insert/s", "lease/s", "results/s", "ratio"
        )?;
        for s in std::iter::once(&self.sqlite).chain(&self.stores) {
            writeln!(f)?;
            write!(
                f,
                "  {:<8} {:>7} {:>10} {:>10} {:>10} {:>8.3}   {}",
                s.backend,
                s.tasks,
                Count(s.insert.per_s).to_string(),
                Count(s.lease.per_s).to_string(),
                Count(s.results.per_s).to_string(),
                s.results_vs_sqlite,
                RateGoal(&s.goal)
            )?;
        }
        for s in &self.stores {
            write!(f, "\n  {}: {}", s.backend, s.store)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_result_lands_in_the_sqlite_baseline() {
        let opts = IngestOptions {
            tasks: 1_100,
            rounds: 1,
            ..IngestOptions::default()
        };
        let report = run(&opts).await.expect("ingest bench");
        assert_eq!(report.sqlite.tasks, 1_100);
        assert_eq!(report.sqlite.backend, "sqlite");
        assert!(report.sqlite.results.per_s > 0.0 && report.stores.is_empty());
    }

    #[test]
    fn results_carry_a_page_of_text() {
        let u = result_updates("u", 2);
        let Transition::Succeed { result } = &u[1].transition else {
            panic!("not a success")
        };
        assert_eq!(result.text.as_deref().map(str::len), Some(TEXT_BYTES));
        assert_eq!(u[1].index, 1);
    }
}
