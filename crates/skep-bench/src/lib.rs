//! Benchmarks of skep, each against a baseline measured in the same run on
//! the same machine, so that the ratios mean something even where the
//! absolute numbers drift with the machine's load.
//!
//! - [`ocr`]: the real worker pipeline (queue, worker loop, OCR slots)
//!   against bare leptess engines and against the `tesseract` command.
//! - [`dispatch`]: the in-process [`skep_queue::MemoryQueue`] against a
//!   plain `tokio::sync::mpsc` channel carrying the same task messages,
//!   and optionally a RabbitMQ broker against both.
//! - [`ingest`]: result writes into the SQLite store, and optionally into
//!   another store (MongoDB) against it.
//! - [`scan`]: skep's folder scan against `find`.
//! - [`files`]: the controller's file endpoint against a local read.
//! - [`e2e`]: the real `skep run` on empty files: skep's own cost per
//!   file, with `find` beside it.
//! - [`documents`]: PDFs through the real `skep run` binary against
//!   OCRmyPDF and `pdftotext`, and one long PDF split over workers.
//!
//! Every bench returns a report that prints as a readable block
//! ([`std::fmt::Display`]) or as one JSON line ([`serde::Serialize`]).

pub mod cli;
pub mod dispatch;
pub mod documents;
pub mod e2e;
pub mod e2e_pages;
pub mod files;
pub mod ingest;
pub mod load;
pub mod ocr;
pub mod report;
pub mod scan;
pub mod stats;

/// Threads the machine runs at once (1 when it cannot tell).
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
