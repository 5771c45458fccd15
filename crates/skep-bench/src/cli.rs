//! The command line of `skep-bench`.

use clap::{Parser, Subcommand};
use skep_testkit::PageSize;

use crate::dispatch::DispatchOptions;
use crate::documents::DocumentsOptions;
use crate::e2e::E2eOptions;
use crate::e2e_pages::E2ePagesOptions;
use crate::files::FilesOptions;
use crate::ingest::IngestOptions;
use crate::ocr::OcrOptions;
use crate::scan::ScanOptions;

/// Pages of the A4 part of `all`: few, since one takes ~2 s on a core.
pub const ALL_A4_PAGES: usize = 3;
/// Rounds of the A4 part of `all`: one is too noisy to judge a goal by.
pub const ALL_A4_ROUNDS: usize = 3;

#[derive(Debug, Parser)]
#[command(
    name = "skep-bench",
    version,
    about = "Benchmarks of skep against baselines measured in the same run (build with --release)"
)]
pub struct Cli {
    /// Print one JSON line per bench instead of a readable block.
    #[arg(long, global = true, env = "SKEP_BENCH_JSON")]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// OCR pages with the skep worker pipeline, bare leptess engines and the
    /// tesseract command; compare pages/s and error rates.
    Ocr(OcrOptions),
    /// Pass task messages through the in-process queue and through a plain
    /// tokio channel, and with --queue through a RabbitMQ or NSQ broker;
    /// compare tasks/s.
    Dispatch(DispatchOptions),
    /// Write results into a SQLite store and with --store into another
    /// (MongoDB); compare results/s.
    Ingest(IngestOptions),
    /// Scan a tree of empty .png files with skep's folder scan and with
    /// find; compare files/s.
    Scan(ScanOptions),
    /// Run PDFs through the real `skep run` binary: scanned PDFs against
    /// OCRmyPDF, born-digital PDFs against pdftotext, one long PDF with 1
    /// and 2 workers (some 5 minutes on 2 cores; not part of `all`).
    Documents(DocumentsOptions),
    /// Serve one large file through the controller's file endpoint (what a
    /// worker with no shared mount reads) and read it from the page cache;
    /// compare MB/s.
    Files(FilesOptions),
    /// Run the real `skep run` on a tree of empty .png files (each fails
    /// at once, so only skep's orchestration is measured): files/s, CPU
    /// per file, peak RSS, with `find` on the same tree beside it (not
    /// part of `all`).
    E2e(E2eOptions),
    /// Run the real `skep run` on real pages with local workers against
    /// bare leptess engines in a plain loop on as many threads: what the
    /// orchestration costs at full load (some 3 minutes for 600 small
    /// pages on 2 cores; not part of `all`).
    E2ePages(E2ePagesOptions),
    /// Every bench with defaults (a few minutes on 2 cores): ocr on small
    /// pages, ocr on a few A4 pages, dispatch, ingest (SQLite only), scan,
    /// files.
    All,
}

/// What `all` runs, in order.
#[derive(Debug)]
pub struct AllPlan {
    pub ocr_small: OcrOptions,
    pub ocr_a4: OcrOptions,
    pub dispatch: DispatchOptions,
    pub ingest: IngestOptions,
    pub scan: ScanOptions,
    pub files: FilesOptions,
}

impl Default for AllPlan {
    fn default() -> Self {
        Self {
            ocr_small: OcrOptions::default(),
            ocr_a4: OcrOptions {
                pages: ALL_A4_PAGES,
                size: PageSize::A4,
                rounds: ALL_A4_ROUNDS,
                ..OcrOptions::default()
            },
            dispatch: DispatchOptions::default(),
            ingest: IngestOptions::default(),
            scan: ScanOptions::default(),
            files: FilesOptions::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_match_the_documented_ones() {
        let cli = Cli::try_parse_from(["skep-bench", "ocr"]).expect("parses");
        let Command::Ocr(o) = cli.command else {
            panic!("not ocr")
        };
        assert_eq!(
            (o.pages, o.size, o.psm, o.rounds, o.threads),
            (12, PageSize::Small, 6, 3, None)
        );
        let cli = Cli::try_parse_from(["skep-bench", "dispatch", "--json"]).expect("parses");
        assert!(cli.json);
        let cli = Cli::try_parse_from([
            "skep-bench",
            "dispatch",
            "--queue",
            "amqp://guest:guest@127.0.0.1:5950/%2f",
            "--queue",
            "nsq://127.0.0.1:4150",
        ])
        .expect("parses");
        let Command::Dispatch(d) = cli.command else {
            panic!("not dispatch")
        };
        assert_eq!((d.queues.len(), d.broker_tasks, d.in_flight), (2, 100_000, 8));
        assert!(Cli::try_parse_from(["skep-bench", "dispatch", "--queue", "memory:"]).is_err());
        let cli = Cli::try_parse_from(["skep-bench", "ingest", "--store", "mongodb://127.0.0.1:27250/bench"])
            .expect("parses");
        let Command::Ingest(i) = cli.command else {
            panic!("not ingest")
        };
        assert_eq!(
            (i.tasks, i.store_tasks, i.rounds, i.stores.len()),
            (20_000, 5_000, 3, 1)
        );
        let cli = Cli::try_parse_from(["skep-bench", "documents"]).expect("parses");
        let Command::Documents(d) = cli.command else {
            panic!("not documents")
        };
        assert_eq!(d.parts, crate::documents::Part::ALL.to_vec());
        assert_eq!(
            (
                d.files,
                d.pages_per_file,
                d.size,
                d.digital_files,
                d.digital_pages_per_file
            ),
            (4, 3, PageSize::A4, 20, 100)
        );
        assert_eq!((d.big_pages, d.pages_per_task, d.rounds, d.workers), (200, 8, 1, None));
        let cli = Cli::try_parse_from(["skep-bench", "documents", "--parts", "split,born-digital"]).expect("parses");
        let Command::Documents(d) = cli.command else {
            panic!("not documents")
        };
        use crate::documents::Part;
        assert_eq!(d.parts, vec![Part::Split, Part::BornDigital]);
        assert!(Cli::try_parse_from(["skep-bench", "documents", "--parts", "office"]).is_err());
        assert!(Cli::try_parse_from(["skep-bench", "documents", "--big-pages", "1001"]).is_err());
        assert!(Cli::try_parse_from(["skep-bench", "documents", "--pages-per-task", "0"]).is_err());
        assert!(Cli::try_parse_from(["skep-bench", "ocr", "--psm", "2"]).is_err());
        assert!(Cli::try_parse_from(["skep-bench", "ocr", "--size", "letter"]).is_err());
    }
}
