//! `skep-bench e2e-pages`: what the orchestration costs at full load. The
//! real `skep run` (SQLite, in-process queue, local workers) reads a
//! corpus of real pages, against the baseline of bare leptess engines in a
//! plain loop on as many threads as `skep run` has workers, reading the
//! same pages, in the same run.
//!
//! The bare loop's clock starts once its engines are warm (the `ocr`
//! bench's rule); `skep run` is timed whole, from its start (scan, engines
//! made, every result stored) to its exit, so the ratio is a floor.
//!
//! The job sets `scaling.filesPerWorker: 1`: with the default (100) a job
//! asks for one worker fewer for each hundred files left, so its last
//! hundred pages would be read by one worker while the other core idles
//! (the scaling policy, not the orchestration; 0.86 of bare on 600 pages).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::builder::RangedU64ValueParser;
use serde::Serialize;
use skep_testkit::{CorpusOptions, PageSize};

use crate::e2e;
use crate::ocr::{self, Corpus, Page, Settings};
use crate::report::{Goal, RatioGoal};
use crate::stats::{Rate, Samples, ratio};

pub const DEFAULT_PAGES: usize = 600;
pub const DEFAULT_ROUNDS: usize = 1;
/// `skep run`'s pages/s over the bare loop's, at least.
pub const GOAL_RUN_VS_BARE: f64 = 0.97;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Ocr(#[from] ocr::Error),
    #[error(transparent)]
    Run(#[from] e2e::Error),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The job did not read every page.
    #[error("the job ended {phase} with {succeeded} of {pages} pages read")]
    Unread {
        phase: String,
        succeeded: u64,
        pages: usize,
    },
}

/// `skep-bench e2e-pages` options.
#[derive(Clone, Debug, clap::Args)]
pub struct E2ePagesOptions {
    /// Pages in the generated corpus.
    #[arg(long, default_value_t = DEFAULT_PAGES, env = "SKEP_BENCH_PAGES",
          value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    pub pages: usize,
    /// Page size of the generated corpus: small (1240x880) or a4 (2480x3508).
    #[arg(long, default_value_t = PageSize::Small, env = "SKEP_BENCH_SIZE")]
    pub size: PageSize,
    /// `skep run --workers`, and the bare loop's threads.
    #[arg(long, default_value_t = e2e::DEFAULT_WORKERS,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..=64))]
    pub workers: usize,
    /// Timed runs of each, interleaved; the median is reported.
    #[arg(long, default_value_t = DEFAULT_ROUNDS, env = "SKEP_BENCH_ROUNDS",
          value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    pub rounds: usize,
    /// A folder to keep the corpus in, as `skep-bench ocr --corpus`.
    #[arg(long, env = "SKEP_BENCH_CORPUS")]
    pub corpus: Option<PathBuf>,
    /// Seed of the generated corpus.
    #[arg(long, default_value_t = ocr::DEFAULT_SEED, env = "SKEP_BENCH_SEED")]
    pub seed: u64,
    /// The `skep` binary; default: beside this program.
    #[arg(long)]
    pub skep: Option<PathBuf>,
    /// Longest one `skep run` may take, in seconds.
    #[arg(long, default_value_t = 3_600)]
    pub timeout_seconds: u64,
}

/// Prepares the corpus, then runs `rounds` rounds of the bare loop and
/// `skep run`. Blocking; progress goes to stderr.
pub fn run(opts: &E2ePagesOptions) -> Result<E2ePagesReport> {
    let skep = e2e::locate_skep(opts.skep.as_deref())?;
    let corpus_opts = CorpusOptions {
        pages: opts.pages,
        seed: opts.seed,
        size: opts.size,
        ..CorpusOptions::default()
    };
    let corpus = Corpus::prepare(opts.corpus.as_deref(), &corpus_opts)?;
    let pages: Arc<[Page]> = corpus.pages.clone().into();
    let work = tempfile::Builder::new()
        .prefix("skep-bench-e2e-pages-")
        .tempdir()
        .map_err(|e| io_error(Path::new("(temporary folder)"), e))?;
    // NB: the job reads a folder of exactly the single pages the bare loop
    // reads (the corpus folder may hold documents of several pages too).
    let source = work.path().join("pages");
    link_pages(&pages, &source)?;
    let settings = Settings {
        threads: opts.workers,
        psm: ocr::DEFAULT_PSM,
        dpi: skep_api::DEFAULT_DPI,
        languages: "eng".into(),
    };
    let (mut bare, mut skep_run) = (Samples::default(), Samples::default());
    let (mut cpu_s, mut peak_rss_kib) = (0.0f64, 0u64);
    for round in 1..=opts.rounds {
        let r = ocr::bare_round(&pages, &settings)?;
        let read = r.texts.iter().filter(|t| t.is_some()).count();
        eprintln!(
            "e2e-pages: round {round}/{}: bare     {:.2} s ({read} of {} pages read)",
            opts.rounds,
            r.elapsed.as_secs_f64(),
            pages.len()
        );
        bare.push(r.elapsed);
        let out = work.path().join(format!("out-{round}"));
        let ran = skep_run_once(&skep, opts, &source, &out, work.path(), pages.len())?;
        eprintln!(
            "e2e-pages: round {round}/{}: skep run {:.2} s",
            opts.rounds,
            ran.elapsed.as_secs_f64()
        );
        skep_run.push(ran.elapsed);
        cpu_s = cpu_s.max(ran.cpu_s);
        peak_rss_kib = peak_rss_kib.max(ran.peak_rss_kib);
    }
    let n = pages.len() as f64;
    let (bare, skep_run) = (bare.rate(n), skep_run.rate(n));
    Ok(E2ePagesReport {
        bench: "e2e-pages",
        corpus: corpus.location.display().to_string(),
        size: opts.size.to_string(),
        pages: pages.len(),
        workers: opts.workers,
        rounds: opts.rounds,
        run_vs_bare: Goal::new(ratio(skep_run.per_s, bare.per_s), GOAL_RUN_VS_BARE),
        bare,
        skep_run,
        skep_cpu_s: cpu_s,
        skep_peak_rss_mib: peak_rss_kib as f64 / 1024.0,
    })
}

/// Hard links (or copies) each page into `to`, numbered in corpus order.
fn link_pages(pages: &[Page], to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).map_err(|e| io_error(to, e))?;
    for (i, p) in pages.iter().enumerate() {
        let ext = p.path.extension().and_then(|e| e.to_str()).unwrap_or("png");
        let dest = to.join(format!("{i:06}.{ext}"));
        if std::fs::hard_link(&p.path, &dest).is_err() {
            std::fs::copy(&p.path, &dest).map_err(|e| io_error(&dest, e))?;
        }
    }
    Ok(())
}

fn skep_run_once(
    skep: &Path,
    opts: &E2ePagesOptions,
    source: &Path,
    out: &Path,
    work: &Path,
    pages: usize,
) -> Result<e2e::Sampled> {
    let job = work.join("job.yaml");
    let db = work.join(format!(
        "{}.db",
        out.file_name().and_then(|n| n.to_str()).unwrap_or("skep")
    ));
    let extra = format!(
        "  engine:\n    pageSegMode: {}\n  scaling:\n    filesPerWorker: 1\n",
        ocr::DEFAULT_PSM
    );
    e2e::write_job(&job, "e2e-pages", source, out, &extra)?;
    let store = format!("sqlite:{}", db.display());
    let (ran, status) = e2e::run_job(
        skep,
        &job,
        &store,
        opts.workers,
        Duration::from_secs(opts.timeout_seconds),
    )?;
    let phase = status["status"]["phase"].as_str().unwrap_or("").to_owned();
    let succeeded = status["status"]["files"]["succeeded"].as_u64().unwrap_or(0);
    if phase != "Succeeded" || succeeded != pages as u64 {
        return Err(Error::Unread {
            phase,
            succeeded,
            pages,
        });
    }
    Ok(ran)
}

fn io_error(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The result of `skep-bench e2e-pages`.
#[derive(Debug, Serialize)]
pub struct E2ePagesReport {
    pub bench: &'static str,
    pub corpus: String,
    pub size: String,
    pub pages: usize,
    pub workers: usize,
    pub rounds: usize,
    pub run_vs_bare: Goal,
    /// Bare leptess engines in a plain loop, warm.
    pub bare: Rate,
    /// `skep run`, start to exit.
    pub skep_run: Rate,
    pub skep_cpu_s: f64,
    pub skep_peak_rss_mib: f64,
}

impl fmt::Display for E2ePagesReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "e2e-pages: {} {} pages, {} workers, {} rounds (median)",
            self.pages, self.size, self.workers, self.rounds
        )?;
        writeln!(
            f,
            "  bare leptess loop (warm)  {:>8.3} pages/s  ({:.2} s)",
            self.bare.per_s, self.bare.median_s
        )?;
        writeln!(
            f,
            "  skep run (start to exit)  {:>8.3} pages/s  ({:.2} s, CPU {:.1} s, peak RSS {:.1} MiB)",
            self.skep_run.per_s, self.skep_run.median_s, self.skep_cpu_s, self.skep_peak_rss_mib
        )?;
        write!(f, "  skep run / bare: {}", RatioGoal(&self.run_vs_bare))
    }
}
