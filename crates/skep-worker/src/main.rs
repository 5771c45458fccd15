//! `skep-worker`: the worker binary. `skep-worker ocr FILE...` reads files
//! directly and prints one JSON line per file, with the same engine, slots
//! and time limits a queue-fed worker uses.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use skep_worker::{DEFAULT_MAX_FILE_BYTES, EngineConfig, OcrSlot};

#[derive(Parser)]
#[command(name = "skep-worker", version, about = "skep's OCR worker (Tesseract via leptess)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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

fn main() -> anyhow::Result<()> {
    skep_worker::ensure_single_threaded_tesseract();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("SKEP_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    match cli.command {
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
                let res = slot
                    .recognize(
                        path.clone(),
                        config.clone(),
                        DEFAULT_MAX_FILE_BYTES,
                        Duration::from_secs(timeout),
                    )
                    .await;
                let line = match res {
                    Ok(r) => serde_json::json!({
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
