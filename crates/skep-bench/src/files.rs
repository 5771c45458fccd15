//! `skep-bench files`: the controller's file endpoint (`GET /files`, what a
//! worker with no shared mount reads through) against reading the same
//! file from the page cache, on loopback.
//!
//! Also [`FileServer`]: the controller's HTTP app with a file key, for the
//! `ocr` bench's "pipeline through URLs" method.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use clap::builder::RangedU64ValueParser;
use serde::Serialize;
use skep::files::{FileKey, FileUrls};
use skep::http::auth::Auth;
use skep::http::{Docker, Limits, Readiness, ServerParts};
use skep::store::{SqliteStore, Store};
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;

use crate::report::Goal;
use crate::stats::{Rate, Samples, ratio};

pub const DEFAULT_MIB: u64 = 256;
pub const DEFAULT_ROUNDS: usize = 5;
/// The endpoint must serve at least this many MB/s on loopback.
pub const GOAL_MB_PER_S: f64 = 200.0;

/// `skep-bench files` options.
#[derive(Clone, Debug, clap::Args)]
pub struct FilesOptions {
    /// Size of the file served, in MiB.
    #[arg(long, default_value_t = DEFAULT_MIB, value_parser = RangedU64ValueParser::<u64>::new().range(1..=16_384))]
    pub mib: u64,
    /// Timed reads of each way, interleaved; the median is reported.
    #[arg(long, default_value_t = DEFAULT_ROUNDS, value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    pub rounds: usize,
}

impl Default for FilesOptions {
    fn default() -> Self {
        Self {
            mib: DEFAULT_MIB,
            rounds: DEFAULT_ROUNDS,
        }
    }
}

/// The controller's HTTP app on an ephemeral loopback port, signing file
/// URLs, allowing any path. Stops when dropped.
pub struct FileServer {
    pub urls: FileUrls,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl FileServer {
    pub async fn start() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("skep.db")).await?);
        let key = FileKey::random();
        let shutdown = CancellationToken::new();
        let metrics = skep::metrics::Metrics::new();
        let limits = Limits::default();
        let app = skep::http::router(ServerParts {
            store,
            docker: Docker::from_env(),
            metrics: metrics.clone(),
            auth: Auth::Disabled,
            ready: Readiness::default(),
            limits,
            paths: skep::paths::PathPolicy::Any,
            swarm_policy: Default::default(),
            shutdown: shutdown.clone(),
            file_key: Some(key.clone()),
            workers: Default::default(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        tokio::spawn(skep::http::serve(listener, app, limits, metrics, shutdown.clone()));
        Ok(Self {
            urls: FileUrls::new(&base, key).map_err(anyhow::Error::msg)?,
            shutdown,
            _dir: dir,
        })
    }

    /// A URL for `path` valid for a day.
    pub fn url(&self, path: &Path) -> String {
        let expires = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64)
            + 86_400;
        let root = path.parent().unwrap_or(Path::new("/")).to_string_lossy();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        self.urls.url(&root, &name, expires, false)
    }
}

/// Writes `mib` MiB of varied bytes (not zeros: nothing compresses or
/// short-cuts them).
fn make_file(path: &Path, mib: u64) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut block = vec![0u8; 1 << 20];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..mib {
        for b in block.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        f.write_all(&block)?;
    }
    f.flush()
}

/// Reads the file through the page cache, 256 KiB at a time; the bytes.
async fn read_local(path: &Path) -> anyhow::Result<u64> {
    let mut f = tokio::fs::File::open(path).await?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut n = 0u64;
    loop {
        let got = f.read(&mut buf).await?;
        if got == 0 {
            return Ok(n);
        }
        n += got as u64;
    }
}

/// Fetches the URL, counting the body's bytes.
async fn read_url(client: &reqwest::Client, url: &str) -> anyhow::Result<u64> {
    let mut res = client.get(url).send().await?.error_for_status()?;
    let mut n = 0u64;
    while let Some(chunk) = res.chunk().await? {
        n += chunk.len() as u64;
    }
    Ok(n)
}

pub async fn run(opts: &FilesOptions) -> anyhow::Result<FilesReport> {
    let dir = tempfile::tempdir()?;
    let path: PathBuf = dir.path().join("served.bin");
    let mib = opts.mib;
    let p = path.clone();
    tokio::task::spawn_blocking(move || make_file(&p, mib)).await??;
    let bytes = mib << 20;
    let server = FileServer::start().await?;
    let url = server.url(&path);
    let client = reqwest::Client::new();
    // Untimed: the page cache holds the file, and the connection is open.
    read_local(&path).await?;
    read_url(&client, &url).await?;
    let (mut local, mut endpoint) = (Samples::default(), Samples::default());
    for round in 1..=opts.rounds {
        let t = Instant::now();
        anyhow::ensure!(read_local(&path).await? == bytes, "the local read came short");
        let l = t.elapsed();
        local.push(l);
        let t = Instant::now();
        anyhow::ensure!(
            read_url(&client, &url).await? == bytes,
            "the endpoint's body came short"
        );
        let e = t.elapsed();
        endpoint.push(e);
        eprintln!(
            "files: round {round}/{}: local {:.3} s, endpoint {:.3} s",
            opts.rounds,
            l.as_secs_f64(),
            e.as_secs_f64()
        );
    }
    let mb = bytes as f64 / 1e6;
    let local = local.rate(mb);
    let endpoint = endpoint.rate(mb);
    Ok(FilesReport {
        bench: "files",
        mib,
        rounds: opts.rounds,
        endpoint_vs_local: ratio(endpoint.per_s, local.per_s),
        endpoint_mb_per_s: Goal::new(endpoint.per_s, GOAL_MB_PER_S),
        local,
        endpoint,
    })
}

/// The result of `skep-bench files`; rates are MB/s.
#[derive(Debug, Serialize)]
pub struct FilesReport {
    pub bench: &'static str,
    pub mib: u64,
    pub rounds: usize,
    /// Reading the file from the page cache.
    pub local: Rate,
    /// `GET /files` on loopback, the body streamed and counted.
    pub endpoint: Rate,
    pub endpoint_vs_local: f64,
    pub endpoint_mb_per_s: Goal,
}

impl fmt::Display for FilesReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "files: one {} MiB file, median of {} interleaved rounds (MB/s)",
            self.mib, self.rounds
        )?;
        writeln!(f, "  {:<28} {:>9} {:>9}", "way", "MB/s", "median s")?;
        for (name, r) in [
            ("local read (page cache)", &self.local),
            ("GET /files (loopback)", &self.endpoint),
        ] {
            writeln!(f, "  {:<28} {:>9.0} {:>9.3}", name, r.per_s, r.median_s)?;
        }
        writeln!(f, "  endpoint / local read: {:.3}", self.endpoint_vs_local)?;
        write!(
            f,
            "  endpoint MB/s: {:.0} (goal >= {:.0}: {})",
            self.endpoint_mb_per_s.value,
            self.endpoint_mb_per_s.at_least,
            self.endpoint_mb_per_s.verdict()
        )?;
        Ok(())
    }
}
