//! The skep worker: reads images, PDFs and Office documents (OCR with
//! Tesseract through leptess; PDFs through Poppler's programs), makes the
//! artefacts a job asks for, and answers task messages with result
//! messages.
//!
//! - [`Engine`] wraps one Tesseract instance and reads a file (all pages of
//!   a multi-page TIFF) into text, confidence and word counts, or a
//!   [`OcrError`] with a closed [`skep_api::FailureReason`].
//! - [`OcrSlot`] runs an engine on a thread of its own with a per-file time
//!   limit.
//! - [`worker::run`] is the queue loop the `skep-worker` binary and the
//!   local runtime of `skep run` both use.
//! - [`service::run`] is `skep-worker run`: that loop as a swarm service
//!   replica, with health endpoints, metrics and signal handling.

pub mod document;
mod engine;
pub mod fetch;
mod format;
pub mod health;
mod http;
pub mod metrics;
mod omp;
pub mod raster;
pub mod service;
pub mod shutdown;
mod slot;
pub mod staging;
pub mod worker;

pub use engine::{DEFAULT_MAX_FILE_BYTES, Engine, EngineConfig, OcrError, PageImage, PageOcr, Recognized};
pub use format::{DocumentFormat, ImageFormat, sniff, sniff_document};
pub use omp::{OMP_ENV, ensure_single_threaded_tesseract};
pub use shutdown::Shutdown;
pub use slot::{MAX_ABANDONED, OcrSlot};
pub use worker::{NoObserver, WorkerConfig, WorkerObserver, WorkerReport};

/// The host name reported in results: `SKEP_NODE_NAME`, else the kernel's.
pub fn node_name() -> String {
    std::env::var("SKEP_NODE_NAME")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}
