//! `skep-bench`: parses the command line, runs the benches the library
//! defines and prints their reports.

use anyhow::Context;
use clap::Parser;
use skep_bench::cli::{AllPlan, Cli, Command};
use skep_bench::report::emit;
use skep_bench::{dispatch, documents, e2e, e2e_pages, files, ingest, ocr, scan};

fn main() -> anyhow::Result<()> {
    // NB: before any thread starts; without it every engine would start a
    // thread per core and the OCR numbers would mean nothing.
    skep_worker::ensure_single_threaded_tesseract();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("SKEP_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let json = cli.json;
    match cli.command {
        Command::Ocr(opts) => emit(&ocr::run(&opts).await?, json),
        Command::Dispatch(opts) => emit(&dispatch::run(&opts).await?, json),
        Command::Ingest(opts) => emit(&ingest::run(&opts).await?, json),
        Command::Scan(opts) => emit(&run_scan(opts).await?, json),
        Command::Documents(opts) => emit(&run_documents(opts).await?, json),
        Command::Files(opts) => emit(&files::run(&opts).await?, json),
        Command::E2e(opts) => {
            let report = tokio::task::spawn_blocking(move || e2e::run(&opts))
                .await
                .context("the e2e bench panicked")??;
            emit(&report, json);
        }
        Command::E2ePages(opts) => {
            let report = tokio::task::spawn_blocking(move || e2e_pages::run(&opts))
                .await
                .context("the e2e-pages bench panicked")??;
            emit(&report, json);
        }
        Command::All => {
            let plan = AllPlan::default();
            emit(&ocr::run(&plan.ocr_small).await?, json);
            emit(&ocr::run(&plan.ocr_a4).await?, json);
            emit(&dispatch::run(&plan.dispatch).await?, json);
            emit(&ingest::run(&plan.ingest).await?, json);
            emit(&run_scan(plan.scan).await?, json);
            emit(&files::run(&plan.files).await?, json);
        }
    }
    Ok(())
}

async fn run_scan(opts: scan::ScanOptions) -> anyhow::Result<scan::ScanReport> {
    let report = tokio::task::spawn_blocking(move || scan::run(&opts))
        .await
        .context("the scan bench panicked")??;
    Ok(report)
}

async fn run_documents(opts: documents::DocumentsOptions) -> anyhow::Result<documents::DocumentsReport> {
    let report = tokio::task::spawn_blocking(move || documents::run(&opts))
        .await
        .context("the documents bench panicked")??;
    Ok(report)
}
