//! `skep-bench ocr`: the same pages read three ways, each with the same
//! number of threads, rounds interleaved, medians compared.
//!
//! - **bare** ([`bare`]): leptess engines in a plain loop, the baseline;
//! - **pipeline** ([`pipeline`]): the real skep worker fed by the queue;
//! - **urls**: the same worker reading every page through the controller's
//!   file endpoint on loopback (`--file-access url`), as a worker with no
//!   shared mount does;
//! - **s3** (with `--s3`): the same worker reading every page through a
//!   presigned GET of an S3 server on loopback, as it reads an object
//!   source;
//! - **cli** ([`tesseract_cli`]): one `tesseract` process per page.
//!
//! The mean character error rate of each method is reported beside its
//! speed, so a method that is fast because it reads wrong shows.

mod bare;
mod corpus;
mod pipeline;
mod tesseract_cli;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::builder::RangedU64ValueParser;
use serde::Serialize;
use skep_testkit::{CorpusOptions, PageSize};

pub use corpus::{Corpus, Page};

use crate::report::{Goal, RatioGoal};
use crate::stats::{Rate, Samples, ratio};

pub const DEFAULT_PAGES: usize = 12;
pub const DEFAULT_PSM: u8 = skep_api::DEFAULT_PAGE_SEG_MODE;
pub const DEFAULT_ROUNDS: usize = 3;
pub const DEFAULT_SEED: u64 = 1;
/// The worker's queue, messages and slots may cost at most 3% against
/// bare engines.
pub const GOAL_PIPELINE_VS_BARE: f64 = 0.97;
/// The worker must beat a process per page by at least 5%.
pub const GOAL_PIPELINE_VS_CLI: f64 = 1.05;
/// Reading pages through the controller's URLs may cost at most 5%
/// against reading them from a path.
pub const GOAL_URLS_VS_PIPELINE: f64 = 0.95;
const LANGUAGES: &str = "eng";
/// Share of the machine taken by other processes above which a report
/// warns that its numbers are noisy.
const NOISY_LOAD: f64 = 0.05;

/// How each method is warmed up before each of its timed runs; printed
/// with every report.
pub const WARM_UP_RULE: &str = "before each timed run every thread of the method reads one page untimed \
     (bare: starts its engine and reads a page; pipeline, urls and s3: the worker starts and answers one task per slot; \
     cli: one tesseract process per thread), so engine start-up is outside the timing of bare and pipeline, \
     while cli pays its start-up in every process, as it does in use";

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The corpus could not be generated or read.
    #[error("corpus in {dir}: {message}")]
    Corpus { dir: String, message: String },
    /// The corpus has no single-page file with ground truth.
    #[error("corpus in {dir} has no single-page file with ground truth")]
    NoPages { dir: String },
    /// A leptess engine for the bare method could not start.
    #[error("a Tesseract engine could not start: {0} (is tesseract-ocr-eng installed?)")]
    Engine(String),
    /// The `tesseract` program could not be run at all.
    #[error("cannot run `{}` (is tesseract-ocr installed?)", tesseract_cli::TESSERACT)]
    Tesseract(#[source] std::io::Error),
    #[error("the in-process queue failed")]
    Queue(#[source] skep_queue::QueueError),
    /// The worker gave no result for too long.
    #[error("no result from the worker within {waited:?}")]
    Stalled { waited: Duration },
    #[error("{0} panicked")]
    Panicked(&'static str),
    /// The controller's file endpoint could not start.
    #[error("the file endpoint: {0}")]
    FileServer(String),
    /// The pages could not be put on the S3 server, or signed.
    #[error("the S3 server: {0}")]
    S3(String),
}

/// `skep-bench ocr` options.
#[derive(Clone, Debug, clap::Args)]
pub struct OcrOptions {
    /// Pages in the generated corpus.
    #[arg(long, default_value_t = DEFAULT_PAGES, env = "SKEP_BENCH_PAGES",
          value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    pub pages: usize,
    /// Page size of the generated corpus: small (1240x880) or a4 (2480x3508).
    #[arg(long, default_value_t = PageSize::Small, env = "SKEP_BENCH_SIZE")]
    pub size: PageSize,
    /// Tesseract page segmentation mode, the same for every method.
    #[arg(long, default_value_t = DEFAULT_PSM, env = "SKEP_BENCH_PSM",
          value_parser = clap::value_parser!(u8).range(3..=13))]
    pub psm: u8,
    /// Pages read at once by each method; default: cores.
    #[arg(long, env = "SKEP_BENCH_THREADS", value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    pub threads: Option<usize>,
    /// Timed runs of each method, interleaved; the median is reported.
    #[arg(long, default_value_t = DEFAULT_ROUNDS, env = "SKEP_BENCH_ROUNDS",
          value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    pub rounds: usize,
    /// A folder to keep the corpus in (`pages/`, `truth/`): reused when it
    /// holds one, generated there when not; default: a temporary folder.
    #[arg(long, env = "SKEP_BENCH_CORPUS")]
    pub corpus: Option<PathBuf>,
    /// Seed of the generated corpus.
    #[arg(long, default_value_t = DEFAULT_SEED, env = "SKEP_BENCH_SEED")]
    pub seed: u64,
    /// An S3 server to read the pages from as well (method `s3`):
    /// "ENDPOINT ACCESS_KEY SECRET_KEY DATA_DIR", the line
    /// `scripts/s3-test-server.sh start DIR PORT` prints followed by
    /// DIR/data (a bucket is made there). Without it, `s3` is not run.
    #[arg(long, env = "SKEP_BENCH_S3", hide_env_values = true)]
    pub s3: Option<String>,
}

impl Default for OcrOptions {
    fn default() -> Self {
        Self {
            pages: DEFAULT_PAGES,
            size: PageSize::Small,
            psm: DEFAULT_PSM,
            threads: None,
            rounds: DEFAULT_ROUNDS,
            corpus: None,
            seed: DEFAULT_SEED,
            s3: None,
        }
    }
}

/// What every method reads with.
#[derive(Clone, Debug)]
pub struct Settings {
    pub threads: usize,
    pub psm: u8,
    /// Resolution assumed for images that record none (the pages record 300).
    pub dpi: u32,
    pub languages: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Bare,
    Pipeline,
    Urls,
    S3,
    Cli,
}

impl Method {
    /// The order of every round.
    pub const ALL: [Method; 5] = [Method::Bare, Method::Pipeline, Method::Urls, Method::S3, Method::Cli];

    pub fn name(self) -> &'static str {
        match self {
            Method::Bare => "bare",
            Method::Pipeline => "pipeline",
            Method::Urls => "urls",
            Method::S3 => "s3",
            Method::Cli => "cli",
        }
    }
}

/// One timed run of one method: the time, the text of each page (`None`
/// where the method failed on it) and how busy the machine was otherwise.
#[derive(Clone, Debug)]
pub struct Round {
    pub elapsed: Duration,
    pub texts: Vec<Option<String>>,
    /// Share of the machine other processes used meanwhile (see [`crate::load`]).
    pub others: Option<f64>,
}

/// Every round of one method.
#[derive(Debug, Default)]
struct Tally {
    samples: Samples,
    cer_sum: f64,
    failed: usize,
    others: Option<f64>,
}

impl Tally {
    fn add(&mut self, round: &Round, pages: &[Page]) {
        self.samples.push(round.elapsed);
        self.cer_sum += mean_cer(round, pages);
        self.failed = self.failed.max(round.texts.iter().filter(|t| t.is_none()).count());
        self.others = match (self.others, round.others) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }

    fn report(&self, pages: usize) -> MethodReport {
        MethodReport {
            rate: self.samples.rate(pages as f64),
            mean_cer: self.cer_sum / self.samples.len().max(1) as f64,
            failed: self.failed,
            others_load: self.others,
        }
    }
}

/// Mean CER over the pages; a page the method failed on scores as empty.
fn mean_cer(round: &Round, pages: &[Page]) -> f64 {
    let total: f64 = pages
        .iter()
        .zip(&round.texts)
        .map(|(p, t)| skep_testkit::cer(&p.truth, t.as_deref().unwrap_or("")))
        .sum();
    total / pages.len().max(1) as f64
}

/// Prepares the corpus, then runs `rounds` rounds of bare, pipeline, cli.
/// Progress goes to stderr.
pub async fn run(opts: &OcrOptions) -> Result<OcrReport> {
    let settings = Settings {
        threads: opts.threads.unwrap_or_else(crate::cores).max(1),
        psm: opts.psm,
        dpi: skep_api::DEFAULT_DPI,
        languages: LANGUAGES.to_owned(),
    };
    let corpus_opts = CorpusOptions {
        pages: opts.pages,
        seed: opts.seed,
        size: opts.size,
        ..CorpusOptions::default()
    };
    let dir = opts.corpus.clone();
    let corpus = tokio::task::spawn_blocking(move || Corpus::prepare(dir.as_deref(), &corpus_opts))
        .await
        .map_err(|_| Error::Panicked("corpus generation"))??;
    let pages: Arc<[Page]> = corpus.pages.clone().into();
    let server = crate::files::FileServer::start()
        .await
        .map_err(|e| Error::FileServer(e.to_string()))?;
    let presigned = match &opts.s3 {
        Some(line) => Some(presign_pages(line, &pages).await?),
        None => None,
    };
    let mut tallies: [Tally; 5] = Default::default();
    for round in 1..=opts.rounds {
        for (method, tally) in Method::ALL.into_iter().zip(tallies.iter_mut()) {
            let r = match (method, &presigned) {
                (Method::Bare, _) => blocking(pages.clone(), settings.clone(), bare::run).await?,
                (Method::Pipeline, _) => pipeline::run(&pages, &settings, pipeline::Reader::Path).await?,
                (Method::Urls, _) => pipeline::run(&pages, &settings, pipeline::Reader::Files(&server)).await?,
                (Method::S3, Some(urls)) => pipeline::run(&pages, &settings, pipeline::Reader::Presigned(urls)).await?,
                (Method::S3, None) => continue,
                (Method::Cli, _) => blocking(pages.clone(), settings.clone(), tesseract_cli::run).await?,
            };
            eprintln!(
                "ocr {}: round {round}/{}: {:<8} {:.2} s",
                opts.size,
                opts.rounds,
                method.name(),
                r.elapsed.as_secs_f64()
            );
            tally.add(&r, &pages);
        }
    }
    let [bare, pipeline, urls, s3, cli] = tallies.map(|t| t.report(pages.len()));
    let s3 = presigned.is_some().then_some(s3);
    Ok(OcrReport {
        bench: "ocr",
        corpus: corpus.location.display().to_string(),
        generated: corpus.generated,
        size: opts.size.to_string(),
        pages: pages.len(),
        psm: settings.psm,
        threads: settings.threads,
        rounds: opts.rounds,
        warm_up: WARM_UP_RULE,
        pipeline_vs_bare: Goal::new(ratio(pipeline.rate.per_s, bare.rate.per_s), GOAL_PIPELINE_VS_BARE),
        pipeline_vs_cli: Goal::new(ratio(pipeline.rate.per_s, cli.rate.per_s), GOAL_PIPELINE_VS_CLI),
        urls_vs_pipeline: Goal::new(ratio(urls.rate.per_s, pipeline.rate.per_s), GOAL_URLS_VS_PIPELINE),
        s3_vs_pipeline: s3
            .as_ref()
            .map(|s| Goal::new(ratio(s.rate.per_s, pipeline.rate.per_s), GOAL_URLS_VS_PIPELINE)),
        bare,
        pipeline,
        urls,
        s3,
        cli,
    })
}

/// One round of the bare loop (blocking): the baseline other benches
/// compare with.
pub fn bare_round(pages: &[Page], settings: &Settings) -> Result<Round> {
    bare::run(pages, settings)
}

async fn blocking(pages: Arc<[Page]>, settings: Settings, f: fn(&[Page], &Settings) -> Result<Round>) -> Result<Round> {
    tokio::task::spawn_blocking(move || f(&pages, &settings))
        .await
        .map_err(|_| Error::Panicked("an OCR method"))?
}

/// The result of `skep-bench ocr`.
#[derive(Debug, Serialize)]
pub struct OcrReport {
    pub bench: &'static str,
    /// Folder of the corpus (a temporary one is gone after the run).
    pub corpus: String,
    /// Whether this run generated the corpus (else it was reused).
    pub generated: bool,
    /// Page size asked for (a reused corpus keeps the size it was made with).
    pub size: String,
    pub pages: usize,
    pub psm: u8,
    pub threads: usize,
    pub rounds: usize,
    pub warm_up: &'static str,
    pub bare: MethodReport,
    pub pipeline: MethodReport,
    /// The pipeline reading every page through the file endpoint.
    pub urls: MethodReport,
    /// The pipeline reading every page through presigned S3 GETs (`--s3`).
    pub s3: Option<MethodReport>,
    pub cli: MethodReport,
    /// Pages/s of pipeline over bare.
    pub pipeline_vs_bare: Goal,
    /// Pages/s of pipeline over cli.
    pub pipeline_vs_cli: Goal,
    /// Pages/s through URLs over pages/s from paths.
    pub urls_vs_pipeline: Goal,
    /// Pages/s through presigned S3 GETs over pages/s from paths.
    pub s3_vs_pipeline: Option<Goal>,
}

/// Pages per second (`per_s`) of one method, and how well it read.
#[derive(Debug, Serialize)]
pub struct MethodReport {
    #[serde(flatten)]
    pub rate: Rate,
    /// Mean character error rate against the ground truth, failed pages
    /// counted as empty.
    pub mean_cer: f64,
    /// Pages the method failed on (most in any round).
    pub failed: usize,
    /// The most of the machine's CPU (0-1) other processes used during a
    /// timed run of this method; `None` where it cannot be measured.
    pub others_load: Option<f64>,
}

impl fmt::Display for OcrReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let origin = if self.generated { "generated" } else { "reused" };
        writeln!(
            f,
            "ocr: {} {} pages ({origin} in {}), psm {}, {} threads, median of {} interleaved rounds",
            self.pages, self.size, self.corpus, self.psm, self.threads, self.rounds
        )?;
        writeln!(f, "  warm-up: {}", self.warm_up)?;
        writeln!(
            f,
            "  {:<10} {:>8} {:>9} {:>8} {:>8} {:>9} {:>7} {:>8}",
            "method", "pages/s", "median s", "min s", "max s", "mean CER", "failed", "others"
        )?;
        let mut methods = vec![("bare", &self.bare), ("pipeline", &self.pipeline), ("urls", &self.urls)];
        if let Some(s3) = &self.s3 {
            methods.push(("s3", s3));
        }
        methods.push(("cli", &self.cli));
        for &(name, m) in &methods {
            let others = m.others_load.map_or("-".to_owned(), |o| format!("{:.0}%", o * 100.0));
            writeln!(
                f,
                "  {:<10} {:>8.3} {:>9.3} {:>8.3} {:>8.3} {:>9.4} {:>7} {:>8}",
                name, m.rate.per_s, m.rate.median_s, m.rate.min_s, m.rate.max_s, m.mean_cer, m.failed, others
            )?;
        }
        let busiest = methods.iter().filter_map(|(_, m)| m.others_load).fold(0.0, f64::max);
        if busiest > NOISY_LOAD {
            writeln!(
                f,
                "  note: other processes took up to {:.0}% of the machine during a timed run; \
                 the numbers are noisy, rerun when the machine is quiet",
                busiest * 100.0
            )?;
        }
        writeln!(f, "  pipeline/bare: {}", RatioGoal(&self.pipeline_vs_bare))?;
        writeln!(f, "  pipeline/cli:  {}", RatioGoal(&self.pipeline_vs_cli))?;
        write!(f, "  urls/pipeline: {}", RatioGoal(&self.urls_vs_pipeline))?;
        match &self.s3_vs_pipeline {
            Some(g) => write!(f, "\n  s3/pipeline:   {}", RatioGoal(g)),
            None => write!(f, "\n  s3/pipeline:   not run (no --s3 server)"),
        }
    }
}

/// Puts every page on the S3 server named by `line` (in a new bucket) and
/// presigns a GET of each, valid for a day, by page path.
async fn presign_pages(line: &str, pages: &[Page]) -> Result<std::collections::HashMap<PathBuf, String>> {
    let f: Vec<&str> = line.split_whitespace().collect();
    let [endpoint, access, secret, data] = f.as_slice() else {
        return Err(Error::S3(
            "--s3 takes \"ENDPOINT ACCESS_KEY SECRET_KEY DATA_DIR\"".into(),
        ));
    };
    let bucket = format!(
        "skep-bench-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0)
    );
    std::fs::create_dir_all(PathBuf::from(data).join(&bucket)).map_err(|e| Error::S3(format!("{data}: {e}")))?;
    let stores = skep::objects::ObjectStores::new(skep::objects::S3Settings {
        endpoint: Some((*endpoint).to_owned()),
        region: "us-east-1".into(),
        access_key_id: (*access).to_owned(),
        secret_access_key: (*secret).to_owned(),
        session_token: None,
        virtual_hosted: false,
    });
    let mut urls = std::collections::HashMap::new();
    for (i, p) in pages.iter().enumerate() {
        let name = p.path.file_name().and_then(|n| n.to_str()).unwrap_or("page.png");
        let key = format!("pages/{i:05}-{name}");
        let bytes = std::fs::read(&p.path).map_err(|e| Error::S3(format!("{}: {e}", p.path.display())))?;
        stores
            .put(&bucket, &key, bytes.into())
            .await
            .map_err(|e| Error::S3(e.0))?;
        let url = stores
            .presign_get(&bucket, &key, Duration::from_secs(86_400))
            .await
            .map_err(|e| Error::S3(e.0))?;
        urls.insert(p.path.clone(), url);
    }
    Ok(urls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_method_reads_every_page_well() {
        let opts = OcrOptions {
            pages: 3,
            threads: Some(2),
            rounds: 1,
            ..OcrOptions::default()
        };
        let report = run(&opts).await.expect("ocr bench");
        assert_eq!(report.pages, 3);
        for (name, m) in [
            ("bare", &report.bare),
            ("pipeline", &report.pipeline),
            ("urls", &report.urls),
            ("cli", &report.cli),
        ] {
            assert_eq!(m.failed, 0, "{name} failed on a page");
            assert!(m.mean_cer < 0.05, "{name} reads badly: CER {}", m.mean_cer);
            assert!(m.rate.per_s > 0.0, "{name} has no rate");
        }
    }
}
