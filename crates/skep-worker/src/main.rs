//! `skep-worker`: the worker binary. `skep-worker run` is what a swarm
//! service replica runs: it takes tasks from the shared queue until stopped
//! (see `skep_worker::service`). `skep-worker ocr FILE...` reads files
//! directly and prints one JSON line per file, with the same engine, slots
//! and time limits a queue-fed worker uses.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::error::ErrorKind;
use clap::{Args, CommandFactory, Parser, Subcommand};
use skep_worker::document::{ReadOutput, ReadRequest};
use skep_worker::fetch::FileAccess;
use skep_worker::service::{self, ServiceConfig};
use skep_worker::worker::{DEFAULT_STOP_GRACE, DEFAULT_VISIBILITY_TIMEOUT};
use skep_worker::{DEFAULT_MAX_FILE_BYTES, EngineConfig, OcrSlot, Shutdown, WorkerConfig};
use tracing::{error, info};

#[derive(Parser)]
#[command(name = "skep-worker", version, about = "skep's OCR worker (Tesseract via leptess)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Take tasks from the pool's queue until SIGTERM or SIGINT (a second
    /// signal exits at once). Serves /livez, /readyz and /metrics.
    Run(RunArgs),
    /// Read image files now and print one JSON line per file.
    Ocr {
        /// Image files (PNG, JPEG, TIFF incl. multi-page, BMP, GIF, WebP, PNM, JPEG 2000).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Tesseract languages, `+`-separated.
        #[arg(long, default_value = "eng", env = "SKEP_LANGUAGES")]
        lang: String,
        /// Tesseract page segmentation mode (3-13).
        #[arg(long, default_value_t = skep_api::DEFAULT_PAGE_SEG_MODE)]
        psm: u8,
        /// Resolution assumed for images that record none.
        #[arg(long, default_value_t = skep_api::DEFAULT_DPI)]
        dpi: u32,
        /// Per-file time limit in seconds.
        #[arg(long, default_value_t = skep_api::DEFAULT_FILE_TIMEOUT_SECONDS)]
        timeout: u64,
        /// Files read at once (one Tesseract thread each); default: cores.
        #[arg(long, env = "SKEP_WORKER_SLOTS")]
        slots: Option<usize>,
    },
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    queue: QueueArgs,
    /// Worker pool whose tasks to take (a job's `spec.scaling.pool`).
    #[arg(long, env = "SKEP_POOL", default_value = skep_api::DEFAULT_POOL, value_parser = parse_pool)]
    pool: String,
    /// Files read at once (one Tesseract thread each).
    #[arg(long, env = "SKEP_WORKER_SLOTS", default_value_t = service::DEFAULT_SLOTS as u32,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    slots: u32,
    /// Worker id reported in results and heartbeats; default: host name,
    /// process id and a random tag (containers on the host network share
    /// its name and each runs as process 1).
    #[arg(long, env = "SKEP_WORKER_ID")]
    id: Option<String>,
    /// Node reported in results; default: SKEP_NODE_NAME, else the host
    /// name. A swarm service sets it to {{.Node.Hostname}}.
    #[arg(long, env = "SKEP_NODE")]
    node: Option<String>,
    /// Address of the HTTP server for /livez, /readyz and /metrics.
    #[arg(long, env = "SKEP_WORKER_LISTEN", default_value = service::DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Seconds in-flight files may run on after SIGTERM; keep it below the
    /// service's stop grace period (30 s), after which SIGKILL follows.
    #[arg(long, env = "SKEP_STOP_GRACE", value_name = "SECONDS", default_value_t = DEFAULT_STOP_GRACE.as_secs())]
    stop_grace: u64,
    /// Seconds a task may go untouched before the queue hands it to another
    /// worker (a working worker touches its tasks well within it).
    #[arg(long, env = "SKEP_VISIBILITY_TIMEOUT", value_name = "SECONDS",
          default_value_t = DEFAULT_VISIBILITY_TIMEOUT.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    visibility_timeout: u64,
    /// Seconds without a task subscription (broker not up yet, or lost)
    /// after which the worker exits non-zero, to be restarted.
    #[arg(long, env = "SKEP_QUEUE_TIMEOUT", value_name = "SECONDS",
          default_value_t = service::DEFAULT_QUEUE_TIMEOUT.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    queue_timeout: u64,
    /// How a task's file is reached: `auto` reads the path when it is a
    /// file here (a shared mount) and fetches the task's URL otherwise;
    /// `path` always reads the path; `url` always fetches (the controller
    /// signs URLs when started with --file-url-base).
    #[arg(long, env = "SKEP_FILE_ACCESS", value_enum, default_value_t)]
    file_access: FileAccess,
    /// Folder for files fetched through URLs while they are read (each is
    /// deleted after); default: skep-fetch in the system's temp folder.
    #[arg(long, env = "SKEP_FETCH_DIR", value_name = "DIR")]
    fetch_dir: Option<PathBuf>,
    /// PEM file of CA certificates trusted for https:// file URLs beside
    /// the system's (a controller behind a TLS proxy with a private CA).
    #[arg(long, env = "SKEP_FETCH_CA_FILE", value_name = "PEM")]
    fetch_ca_file: Option<PathBuf>,
}

#[derive(Args)]
struct QueueArgs {
    /// Task queue: amqp://user:password@host:port/vhost (or amqps://),
    /// nsq://HOST:4150[,HOST:4150...] or nsqlookup://HOST:4161[,...].
    /// Required, here or from --queue-file; without either, the variables
    /// of older NSQ deployments are honoured: NSQLOOKUPD_ADDRESSES
    /// (nsqlookupd HTTP addresses, comma-separated) or NSQD_ADDRESS.
    #[arg(long = "queue", env = "SKEP_QUEUE", value_name = "URL", hide_env_values = true)]
    url: Option<String>,
    /// File holding the task queue URL (a Docker secret).
    #[arg(
        long = "queue-file",
        env = "SKEP_QUEUE_FILE",
        value_name = "PATH",
        conflicts_with = "url"
    )]
    file: Option<PathBuf>,
}

fn parse_pool(s: &str) -> Result<String, String> {
    if skep_api::is_dns_label(s) {
        Ok(s.to_owned())
    } else {
        Err("a pool name is a DNS label: lowercase letters, digits and '-', at most 63".to_owned())
    }
}

/// Prints a usage error and exits with code 2.
fn usage_error(message: impl std::fmt::Display) -> ! {
    Cli::command().error(ErrorKind::ValueValidation, message).exit()
}

fn main() -> anyhow::Result<()> {
    skep_worker::ensure_single_threaded_tesseract();
    let cli = Cli::parse();
    let default_filter = match cli.command {
        Command::Run(_) => "info",
        Command::Ocr { .. } => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SKEP_LOG").unwrap_or_else(|_| default_filter.into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    match cli.command {
        Command::Run(args) => {
            let cfg = service_config(args);
            let code = rt.block_on(run(cfg));
            // NB: exit here rather than drop the runtime: a timed-out OCR
            // thread may still be reading, and nothing it does matters now.
            std::process::exit(code);
        }
        Command::Ocr {
            files,
            lang,
            psm,
            dpi,
            timeout,
            slots,
        } => rt.block_on(ocr(files, lang, psm, dpi, timeout, slots)),
    }
}

/// Resolves the run flags, exiting with a usage error when they are unusable.
fn service_config(args: RunArgs) -> ServiceConfig {
    let raw = match (args.queue.url, args.queue.file) {
        (Some(url), _) => url,
        (None, Some(path)) => match std::fs::read_to_string(&path) {
            Ok(s) => s.trim().to_owned(),
            Err(e) => usage_error(format!("cannot read the queue URL from {}: {e}", path.display())),
        },
        (None, None) => {
            let var = |name: &str| std::env::var(name).ok();
            service::legacy_nsq_url(var("NSQLOOKUPD_ADDRESSES").as_deref(), var("NSQD_ADDRESS").as_deref())
                .unwrap_or_else(|| {
                    usage_error(
                        "no task queue given: pass --queue URL, or set SKEP_QUEUE or SKEP_QUEUE_FILE \
                         (or NSQLOOKUPD_ADDRESSES / NSQD_ADDRESS)",
                    )
                })
        }
    };
    let queue = service::worker_queue_url(&raw).unwrap_or_else(|e| usage_error(e));
    let id = args
        .id
        .filter(|s| !s.is_empty())
        .unwrap_or_else(service::default_worker_id);
    let node = args
        .node
        .filter(|s| !s.is_empty())
        .unwrap_or_else(skep_worker::node_name);
    let mut worker = WorkerConfig::new(id, node, args.pool, args.slots as usize);
    worker.stop_grace = Duration::from_secs(args.stop_grace);
    worker.visibility_timeout = Duration::from_secs(args.visibility_timeout);
    worker.file_access = args.file_access;
    if let Some(dir) = args.fetch_dir {
        worker.fetch_dir = dir;
    }
    if let Some(path) = &args.fetch_ca_file {
        worker.fetch_roots =
            skep_worker::fetch::load_roots(path).unwrap_or_else(|e| usage_error(format!("--fetch-ca-file: {e}")));
    }
    ServiceConfig {
        queue,
        worker,
        listen: args.listen,
        queue_timeout: Duration::from_secs(args.queue_timeout),
    }
}

/// Runs the worker service; returns the process exit code.
async fn run(cfg: ServiceConfig) -> i32 {
    let shutdown = Shutdown::new();
    if let Err(e) = shutdown.on_signals() {
        error!(error = %e, "cannot listen for signals");
        return 1;
    }
    info!(
        worker = %cfg.worker.id,
        node = %cfg.worker.node,
        pool = %cfg.worker.pool,
        slots = cfg.worker.slots,
        queue = %cfg.queue,
        "skep-worker starting"
    );
    match service::run(cfg, shutdown).await {
        Ok(_) => 0,
        Err(e) => {
            error!(error = %e, "skep-worker failed");
            e.exit_code()
        }
    }
}

async fn ocr(
    files: Vec<PathBuf>,
    lang: String,
    psm: u8,
    dpi: u32,
    timeout: u64,
    slots: Option<usize>,
) -> anyhow::Result<()> {
    anyhow::ensure!((3..=13).contains(&psm), "--psm must be between 3 and 13, got {psm}");
    let config = EngineConfig {
        languages: lang,
        page_seg_mode: psm,
        dpi,
        ..EngineConfig::default()
    };
    let slots = slots
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let (tx, mut rx) = tokio::sync::mpsc::channel(slots * 2);
    let queue = std::sync::Arc::new(std::sync::Mutex::new(files.into_iter().enumerate()));
    let mut workers = tokio::task::JoinSet::new();
    for i in 0..slots {
        let (queue, tx, config) = (queue.clone(), tx.clone(), config.clone());
        workers.spawn(async move {
            let mut slot = OcrSlot::new(format!("cli-{i}"));
            loop {
                let next = queue.lock().map(|mut q| q.next()).unwrap_or(None);
                let Some((index, path)) = next else { break };
                let started = Instant::now();
                let request = ReadRequest::whole_file(&path, config.clone(), DEFAULT_MAX_FILE_BYTES);
                let res = slot.read(request, Duration::from_secs(timeout)).await;
                let line = match res {
                    Ok(ReadOutput::Split { pages }) => serde_json::json!({
                        "path": path, "status": "failed", "reason": "tooLarge",
                        "error": format!("{pages} pages is more than one call reads"),
                    }),
                    Ok(ReadOutput::Read(r)) => serde_json::json!({
                        "path": path, "status": "succeeded", "text": r.text, "confidence": r.confidence,
                        "pages": r.pages, "words": r.words, "durationMs": started.elapsed().as_millis() as u64,
                    }),
                    Err(e) => serde_json::json!({
                        "path": path, "status": "failed", "reason": e.reason, "error": e.message,
                        "durationMs": started.elapsed().as_millis() as u64,
                    }),
                };
                if tx.send((index, line)).await.is_err() {
                    break;
                }
            }
        });
    }
    drop(tx);
    let mut failed = 0usize;
    while let Some((_, line)) = rx.recv().await {
        if line["status"] == "failed" {
            failed += 1;
        }
        println!("{line}");
    }
    while workers.join_next().await.is_some() {}
    if failed > 0 {
        eprintln!("{failed} file(s) failed");
        std::process::exit(1);
    }
    Ok(())
}
