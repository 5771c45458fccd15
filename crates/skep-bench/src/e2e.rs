//! `skep-bench e2e`: skep's own cost per file. The real `skep run` binary
//! (embedded SQLite store, in-process queue, local workers) on a tree of
//! empty `.png` files: each fails at once as `empty`, so the workers do
//! nothing and what is measured is the orchestration around them (scan,
//! dispatch, ingest, status). `find` lists the same tree beside it.
//!
//! The process is sampled from `/proc` while it runs: its peak resident
//! memory (`VmHWM`) and the CPU time of all its threads (`utime + stime`,
//! the last sample before it exits, so at most one sampling interval is
//! missed).

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::builder::RangedU64ValueParser;
use serde::Serialize;

use crate::scan;

pub const DEFAULT_FILES: usize = 100_000;
pub const DEFAULT_WORKERS: usize = 2;
/// How often the running `skep` is sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(20);

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Scan(#[from] scan::Error),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no skep binary at {0} (build it: cargo build --release -p skep, or give --skep)")]
    NoSkep(String),
    #[error("skep run did not end within {0:?}")]
    Timeout(Duration),
    #[error("skep run failed ({status}): {said}")]
    Failed { status: String, said: String },
    /// The job did not end as every file failing `empty` must.
    #[error("the job ended {phase} with {failed} of {files} files failed (expected every file failed as empty)")]
    Miscount { phase: String, failed: u64, files: usize },
    #[error("--store: {0}")]
    Store(String),
}

/// `skep-bench e2e` options.
#[derive(Clone, Debug, clap::Args)]
pub struct E2eOptions {
    /// Empty `.png` files in the tree.
    #[arg(long, default_value_t = DEFAULT_FILES, env = "SKEP_BENCH_FILES",
          value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    pub files: usize,
    /// Folder for the tree (reused as by `skep-bench scan`); default: a
    /// temporary folder.
    #[arg(long, env = "SKEP_BENCH_DIR")]
    pub dir: Option<PathBuf>,
    /// `skep run --workers`.
    #[arg(long, default_value_t = DEFAULT_WORKERS,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..=64))]
    pub workers: usize,
    /// The `skep` binary; default: beside this program.
    #[arg(long)]
    pub skep: Option<PathBuf>,
    /// Longest the run may take, in seconds.
    #[arg(long, default_value_t = 3_600)]
    pub timeout_seconds: u64,
    /// A MongoDB store instead of a fresh SQLite file:
    /// `mongodb://HOST:PORT/DATABASE`. The run uses a new database
    /// `DATABASE_e2e_<unix time>`, dropped after, and a plain driver loop
    /// inserting as many task documents of the same shape is timed beside
    /// it (the baseline).
    #[arg(long, env = "SKEP_BENCH_STORE", hide_env_values = true)]
    pub store: Option<String>,
}

impl Default for E2eOptions {
    fn default() -> Self {
        Self {
            files: DEFAULT_FILES,
            dir: None,
            workers: DEFAULT_WORKERS,
            skep: None,
            timeout_seconds: 3_600,
            store: None,
        }
    }
}

/// Makes (or reuses) the tree, lists it with `find` once, then runs `skep
/// run` on it once. Blocking; progress goes to stderr.
pub fn run(opts: &E2eOptions) -> Result<E2eReport> {
    let skep = locate_skep(opts.skep.as_deref())?;
    let work = tempfile::Builder::new()
        .prefix("skep-bench-e2e-")
        .tempdir()
        .map_err(|e| io_error(Path::new("(temporary folder)"), e))?;
    let dir = opts.dir.clone().unwrap_or_else(|| work.path().join("tree"));
    if scan::ensure_tree(&dir, opts.files)? {
        eprintln!("e2e: made {} empty files under {}", opts.files, dir.display());
    }
    let find = scan::time_find(&dir, opts.files)?;
    eprintln!("e2e: find listed them in {:.3} s", find.as_secs_f64());

    let job = work.path().join("job.yaml");
    write_job(&job, "e2e-bench", &dir, &work.path().join("out"), "")?;
    let mongo = match &opts.store {
        Some(url) => Some(fresh_database(url)?),
        None => None,
    };
    let store = match &mongo {
        Some(m) => m.url.clone(),
        None => format!("sqlite:{}", work.path().join("skep.db").display()),
    };
    eprintln!(
        "e2e: skep run with {} workers on {}…",
        opts.workers,
        if mongo.is_some() { "MongoDB" } else { "SQLite" }
    );
    let ran = run_job(
        &skep,
        &job,
        &store,
        opts.workers,
        Duration::from_secs(opts.timeout_seconds),
    );
    let raw = match &mongo {
        Some(m) => {
            let raw = ran.as_ref().ok().map(|_| {
                eprintln!("e2e: a plain driver loop inserting {} task documents…", opts.files);
                raw_inserts(m, opts.files)
            });
            drop_database(m);
            match raw {
                Some(r) => Some(r?),
                None => None,
            }
        }
        None => None,
    };
    let (ran, job) = ran?;
    let phase = job["status"]["phase"].as_str().unwrap_or("").to_owned();
    let failed = job["status"]["files"]["failed"].as_u64().unwrap_or(0);
    if phase != "Succeeded" || failed != opts.files as u64 {
        return Err(Error::Miscount {
            phase,
            failed,
            files: opts.files,
        });
    }
    let wall = ran.elapsed.as_secs_f64();
    let files = opts.files as f64;
    let raw_inserts_per_s = raw.map(|d| files / d.as_secs_f64().max(1e-9));
    Ok(E2eReport {
        bench: "e2e",
        store: if mongo.is_some() { "mongodb" } else { "sqlite" },
        raw_inserts_per_s,
        vs_raw_inserts: raw_inserts_per_s.map(|r| files / wall / r),
        files: opts.files,
        workers: opts.workers,
        wall_s: wall,
        files_per_s: files / wall,
        cpu_s: ran.cpu_s,
        cpu_ms_per_file: ran.cpu_s * 1_000.0 / files,
        peak_rss_mib: ran.peak_rss_kib as f64 / 1024.0,
        find_s: find.as_secs_f64(),
        find_files_per_s: files / find.as_secs_f64(),
    })
}

/// The MongoDB database a run uses: the one named in `--store` with a
/// suffix of its own.
struct Mongo {
    url: String,
    database: String,
}

/// `mongodb://HOST/DB?OPTS` -> the same with `DB_e2e_<unix time>`.
fn fresh_database(url: &str) -> Result<Mongo> {
    let Some(rest) = url.strip_prefix("mongodb://") else {
        return Err(Error::Store("give a mongodb://HOST:PORT/DATABASE URL".into()));
    };
    let (hosts, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (db, query) = path.split_once('?').map_or((path, None), |(d, q)| (d, Some(q)));
    let base = if db.is_empty() { "skep" } else { db };
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let database = format!("{base}_e2e_{stamp}");
    let url = match query {
        Some(q) => format!("mongodb://{hosts}/{database}?{q}"),
        None => format!("mongodb://{hosts}/{database}"),
    };
    Ok(Mongo { url, database })
}

/// The baseline: a plain driver loop inserting `n` documents shaped as
/// skep's task documents, 5,000 at a time (the scan's batch), into a
/// collection with no index but `_id`.
fn raw_inserts(m: &Mongo, n: usize) -> Result<Duration> {
    use mongodb::bson::{Document, doc};
    let store_error = |e: mongodb::error::Error| Error::Store(format!("the plain driver loop: {}", e.kind));
    tokio::runtime::Handle::current().block_on(async {
        let client = mongodb::Client::with_uri_str(&m.url).await.map_err(store_error)?;
        let tasks = client.database(&m.database).collection::<Document>("raw_tasks");
        let started = Instant::now();
        let mut i = 0;
        while i < n {
            let end = (i + skep::controller::scan::SCAN_BATCH).min(n);
            let docs: Vec<Document> = (i..end)
                .map(|k| {
                    doc! {
                        "_id": format!("bench:{k}:0"), "job": "bench", "i": k as i64, "p": 0_i64,
                        "fp": 0_i64, "lp": 0_i64, "span": 1_i64,
                        "path": format!("d{:03}/f{k:06}.png", k / 1000),
                        "state": 0_i32, "attempts": 0_i64, "due": 0_i64,
                    }
                })
                .collect();
            tasks.insert_many(docs).await.map_err(store_error)?;
            i = end;
        }
        Ok(started.elapsed())
    })
}

/// Drops the run's database; a failure is only reported.
fn drop_database(m: &Mongo) {
    let dropped = tokio::runtime::Handle::current().block_on(async {
        let client = mongodb::Client::with_uri_str(&m.url).await?;
        client.database(&m.database).drop().await
    });
    if let Err(e) = dropped {
        eprintln!("e2e: could not drop the database {}: {}", m.database, e.kind);
    }
}

/// The `skep` binary given, or the one beside this program.
pub(crate) fn locate_skep(given: Option<&Path>) -> Result<PathBuf> {
    crate::documents::skep_run::locate(given).map_err(|_| {
        let shown = given.map_or_else(|| PathBuf::from("target/release/skep"), Path::to_path_buf);
        Error::NoSkep(shown.display().to_string())
    })
}

/// Writes the job of a bench run: `name`, reading `source` and writing
/// text to `out`, with `extra` (more lines of its spec, indented by two)
/// appended.
pub(crate) fn write_job(path: &Path, name: &str, source: &Path, out: &Path, extra: &str) -> Result<()> {
    let quoted = |p: &Path| serde_json::to_string(&p.display().to_string()).unwrap_or_default();
    let yaml = format!(
        "apiVersion: skep.dev/v1\nkind: BulkJob\nmetadata:\n  name: {name}\nspec:\n  source:\n    path: {}\n  output:\n    path: {}\n    formats: [txt]\n{extra}",
        quoted(source),
        quoted(out),
    );
    std::fs::write(path, yaml).map_err(|e| io_error(path, e))
}

/// `skep run` of the job at `job` on `store` with `workers` local workers,
/// sampled (killed after `limit`); the job as it printed it at the end.
pub(crate) fn run_job(
    skep: &Path,
    job: &Path,
    store: &str,
    workers: usize,
    limit: Duration,
) -> Result<(Sampled, serde_json::Value)> {
    let mut cmd = Command::new(skep);
    cmd.arg("run").arg("-f").arg(job).arg("--store").arg(store).args([
        "--workers",
        &workers.to_string(),
        "-o",
        "json",
        "--quiet",
    ]);
    let ran = run_sampled(cmd, limit)?;
    let printed = serde_json::from_slice(&ran.stdout).map_err(|e| Error::Failed {
        status: "its output is not the job".into(),
        said: e.to_string(),
    })?;
    Ok((ran, printed))
}

/// What a sampled run left.
pub(crate) struct Sampled {
    pub(crate) elapsed: Duration,
    pub(crate) stdout: Vec<u8>,
    pub(crate) cpu_s: f64,
    pub(crate) peak_rss_kib: u64,
}

/// Runs `cmd`, sampling its `/proc` entry every [`SAMPLE_EVERY`] until it
/// exits; killed after `limit`.
pub(crate) fn run_sampled(mut cmd: Command, limit: Duration) -> Result<Sampled> {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = cmd.spawn().map_err(|e| io_error(Path::new("skep"), e))?;
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let out = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(s) = stdout.as_mut() {
            let _ = s.read_to_end(&mut buf);
        }
        buf
    });
    let err = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(s) = stderr.as_mut() {
            let _ = s.take(1 << 20).read_to_end(&mut buf);
        }
        buf
    });
    let proc = PathBuf::from(format!("/proc/{}", child.id()));
    let ticks = clock_ticks();
    let (mut cpu_s, mut peak_rss_kib) = (0.0, 0);
    let status = loop {
        if let Some(s) = read_cpu_ticks(&proc) {
            cpu_s = s as f64 / ticks;
        }
        if let Some(k) = read_peak_rss(&proc) {
            peak_rss_kib = peak_rss_kib.max(k);
        }
        match child.try_wait().map_err(|e| io_error(Path::new("skep"), e))? {
            Some(status) => break status,
            None if started.elapsed() > limit => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::Timeout(limit));
            }
            None => std::thread::sleep(SAMPLE_EVERY),
        }
    };
    let elapsed = started.elapsed();
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    if !status.success() {
        let text = String::from_utf8_lossy(&stderr);
        return Err(Error::Failed {
            status: status.to_string(),
            said: text.lines().last().unwrap_or("").to_owned(),
        });
    }
    Ok(Sampled {
        elapsed,
        stdout,
        cpu_s,
        peak_rss_kib,
    })
}

/// `utime + stime` of every thread of the process, in clock ticks.
fn read_cpu_ticks(proc: &Path) -> Option<u64> {
    let stat = std::fs::read_to_string(proc.join("stat")).ok()?;
    // NB: the name (field 2) is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // Fields 14 and 15 of the whole line: 12 and 13 after the name.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// `VmHWM` (peak resident set), in KiB.
fn read_peak_rss(proc: &Path) -> Option<u64> {
    let status = std::fs::read_to_string(proc.join("status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux).
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

fn io_error(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The result of `skep-bench e2e`.
#[derive(Debug, Serialize)]
pub struct E2eReport {
    pub bench: &'static str,
    /// `sqlite` or `mongodb`.
    pub store: &'static str,
    /// With MongoDB: task documents a plain driver loop inserted per second.
    pub raw_inserts_per_s: Option<f64>,
    /// With MongoDB: `skep run`'s files/s over that.
    pub vs_raw_inserts: Option<f64>,
    pub files: usize,
    pub workers: usize,
    /// `skep run` from start to exit.
    pub wall_s: f64,
    pub files_per_s: f64,
    /// CPU time of every thread of `skep run`.
    pub cpu_s: f64,
    pub cpu_ms_per_file: f64,
    pub peak_rss_mib: f64,
    /// `find DIR -type f -name '*.png'` on the same tree.
    pub find_s: f64,
    pub find_files_per_s: f64,
}

impl fmt::Display for E2eReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "e2e: skep run on {} empty .png files (each fails as empty), {} workers, {}, in-process queue",
            self.files, self.workers, self.store
        )?;
        writeln!(
            f,
            "  skep run  {:>9.1} s  {:>9.0} files/s  CPU {:.1} s = {:.3} ms/file  peak RSS {:.1} MiB",
            self.wall_s, self.files_per_s, self.cpu_s, self.cpu_ms_per_file, self.peak_rss_mib
        )?;
        if let (Some(raw), Some(vs)) = (self.raw_inserts_per_s, self.vs_raw_inserts) {
            writeln!(
                f,
                "  a plain driver loop inserting as many task documents: {raw:.0} docs/s; skep run / that: {vs:.3}"
            )?;
        }
        write!(
            f,
            "  find      {:>9.3} s  {:>9.0} files/s (the same tree listed)",
            self.find_s, self.find_files_per_s
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_proc_readers_read_this_process() {
        let me = PathBuf::from(format!("/proc/{}", std::process::id()));
        // Burn a little CPU so that the count is not zero.
        let mut x = 0u64;
        let until = Instant::now() + Duration::from_millis(50);
        while Instant::now() < until {
            x = x.wrapping_add(1);
        }
        assert!(x > 0);
        assert!(read_cpu_ticks(&me).expect("stat") > 0);
        assert!(read_peak_rss(&me).expect("status") > 1_000, "a process is over 1 MiB");
        assert!(clock_ticks() >= 100.0);
    }

    #[test]
    fn a_run_gets_a_database_of_its_own() {
        let m = fresh_database("mongodb://h:1/skep?directConnection=true").expect("url");
        assert!(m.database.starts_with("skep_e2e_"), "{}", m.database);
        assert_eq!(m.url, format!("mongodb://h:1/{}?directConnection=true", m.database));
        let m = fresh_database("mongodb://h:1").expect("no database");
        assert!(m.url.starts_with("mongodb://h:1/skep_e2e_"), "{}", m.url);
        assert!(matches!(fresh_database("sqlite:x.db"), Err(Error::Store(_))));
    }

    #[test]
    fn a_missing_binary_is_reported() {
        let opts = E2eOptions {
            files: 1,
            skep: Some(PathBuf::from("/nonexistent/skep")),
            ..E2eOptions::default()
        };
        assert!(matches!(run(&opts), Err(Error::NoSkep(_))));
    }
}
