//! `skep-bench documents`: PDFs through the real `skep run` (the release
//! binary, as a user runs it), each part against a baseline measured in
//! the same run:
//!
//! - **scanned** ([`scanned`]): image-only PDFs into text and a searchable
//!   PDF, by skep and by OCRmyPDF batched as its users batch it;
//! - **born-digital** ([`born_digital`]): PDFs with a text layer on every
//!   page (nothing to OCR), by skep and by `pdftotext` in sequence;
//! - **split** ([`split`]): one long scanned PDF by skep with one worker
//!   and with two, to show that its page ranges spread over the workers.
//!
//! Every method is timed end to end, process start-up included, after one
//! untimed warm-up run of each program; rounds interleave the methods and
//! the median is reported. The text of every method (and of its searchable
//! PDFs) is scored against the ground truth outside the timing.

mod born_digital;
mod corpus;
mod ocrmypdf;
mod poppler;
mod process;
mod scanned;
mod score;
pub(crate) mod skep_run;
mod split;
mod tally;

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use clap::builder::RangedU64ValueParser;
use serde::Serialize;
use skep_api::OutputFormat;
use skep_testkit::PageSize;
use skep_testkit::documents::{MAX_PDF_PAGES, MAX_SCANNED_FILES};

pub use born_digital::BornDigitalReport;
pub use scanned::ScannedReport;
pub use split::SplitReport;
pub use tally::MethodReport;

use self::born_digital::BornDigitalPart;
use self::corpus::Corpus;
use self::scanned::ScannedPart;
use self::split::SplitPart;
use self::tally::Clock;

pub const DEFAULT_FILES: usize = 4;
pub const DEFAULT_PAGES_PER_FILE: usize = 3;
pub const DEFAULT_DIGITAL_FILES: usize = 20;
pub const DEFAULT_DIGITAL_PAGES_PER_FILE: usize = 100;
pub const DEFAULT_BIG_PAGES: usize = 200;
/// One round: a round of every part takes some 5 minutes on 2 cores.
pub const DEFAULT_ROUNDS: usize = 1;
pub const DEFAULT_SEED: u64 = 1;
/// Longest any one program may run, in seconds.
pub const DEFAULT_TIMEOUT_S: u64 = 1_800;
const MAX_TIMEOUT_S: u64 = 86_400;
const LANGUAGES: &str = "eng";
/// Share of the machine taken by other processes above which the report
/// warns that its numbers are noisy.
const NOISY_LOAD: f64 = 0.05;

/// The warm-up rule, printed with every report.
pub const WARM_UP_RULE: &str = "before the first round, one untimed run of each program: skep run on a one-page \
     scanned PDF, ocrmypdf on the same, pdftotext on one born-digital file; every timed run pays its process \
     start-up, as it does in use";

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The corpus could not be generated or read.
    #[error("corpus in {dir}: {message}")]
    Corpus { dir: String, message: String },
    /// There is no `skep` binary where it was looked for.
    #[error("no skep binary at {path}: build it (cargo build --release -p skep) or pass --skep PATH")]
    NoSkep { path: String },
    /// A program the bench needs is missing.
    #[error("{program} is not installed: {hint}")]
    NotInstalled { program: String, hint: String },
    #[error("{program} could not be run: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    /// A program ran past `--timeout` and was killed.
    #[error("{program} ran longer than {limit:?} and was killed")]
    Timeout { program: String, limit: Duration },
    /// A program exited non-zero; `said` is the last line of its stderr.
    #[error("{program} exited with {status}: {said}")]
    Failed {
        program: String,
        status: String,
        said: String,
    },
    /// An output was too large to read.
    #[error("{path} is larger than {limit} bytes")]
    TooLarge { path: String, limit: u64 },
    /// skep's `results.jsonl` could not be read.
    #[error("{path}: {message}")]
    Results { path: String, message: String },
    /// The job document could not be serialised.
    #[error("the job document could not be written: {0}")]
    Job(String),
}

impl Error {
    fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// A part of the bench.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Part {
    /// Scanned PDFs: skep against OCRmyPDF.
    Scanned,
    /// Born-digital PDFs: skep against pdftotext.
    BornDigital,
    /// One long scanned PDF: skep with 1 and with 2 workers.
    Split,
}

impl Part {
    pub const ALL: [Part; 3] = [Part::Scanned, Part::BornDigital, Part::Split];
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Part::Scanned => "scanned",
            Part::BornDigital => "born-digital",
            Part::Split => "split",
        })
    }
}

/// `skep-bench documents` options.
#[derive(Clone, Debug, clap::Args)]
pub struct DocumentsOptions {
    /// Parts to run, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = Part::ALL, env = "SKEP_BENCH_DOC_PARTS")]
    pub parts: Vec<Part>,
    /// Scanned PDFs in the scanned part.
    #[arg(long, default_value_t = DEFAULT_FILES, env = "SKEP_BENCH_DOC_FILES",
          value_parser = RangedU64ValueParser::<usize>::new().range(1..=MAX_SCANNED_FILES as u64))]
    pub files: usize,
    /// Pages in each scanned PDF.
    #[arg(long, default_value_t = DEFAULT_PAGES_PER_FILE, env = "SKEP_BENCH_DOC_PAGES_PER_FILE",
          value_parser = RangedU64ValueParser::<usize>::new().range(1..=MAX_PDF_PAGES as u64))]
    pub pages_per_file: usize,
    /// Page size of the scanned PDFs: a4 (2480x3508) or small (1240x880).
    #[arg(long, default_value_t = PageSize::A4, env = "SKEP_BENCH_DOC_SIZE")]
    pub size: PageSize,
    /// Born-digital PDFs.
    #[arg(long, default_value_t = DEFAULT_DIGITAL_FILES, env = "SKEP_BENCH_DOC_DIGITAL_FILES",
          value_parser = RangedU64ValueParser::<usize>::new().range(1..=10_000))]
    pub digital_files: usize,
    /// Pages in each born-digital PDF (files x pages at most 100,000).
    #[arg(long, default_value_t = DEFAULT_DIGITAL_PAGES_PER_FILE, env = "SKEP_BENCH_DOC_DIGITAL_PAGES_PER_FILE",
          value_parser = RangedU64ValueParser::<usize>::new().range(1..=MAX_PDF_PAGES as u64))]
    pub digital_pages_per_file: usize,
    /// Small scanned pages of the one PDF of the split part.
    #[arg(long, default_value_t = DEFAULT_BIG_PAGES, env = "SKEP_BENCH_DOC_BIG_PAGES",
          value_parser = RangedU64ValueParser::<usize>::new().range(1..=MAX_PDF_PAGES as u64))]
    pub big_pages: usize,
    /// skep's `spec.pagesPerTask`.
    #[arg(long, default_value_t = skep_api::DEFAULT_PAGES_PER_TASK, env = "SKEP_BENCH_DOC_PAGES_PER_TASK",
          value_parser = clap::value_parser!(u32).range(1..=i64::from(skep_api::MAX_PAGES_PER_TASK)))]
    pub pages_per_task: u32,
    /// skep's `--workers` and OCRmyPDF's `--jobs` (the split part always
    /// compares 1 and 2); default: cores.
    #[arg(long, env = "SKEP_BENCH_DOC_WORKERS", value_parser = RangedU64ValueParser::<usize>::new().range(1..=1024))]
    pub workers: Option<usize>,
    /// Detect page orientation: skep's `autoRotate: true` and OCRmyPDF's
    /// `--rotate-pages` (default: off for both).
    #[arg(long, env = "SKEP_BENCH_DOC_AUTO_ROTATE")]
    pub auto_rotate: bool,
    /// Timed runs of each method, interleaved; the median is reported.
    #[arg(long, default_value_t = DEFAULT_ROUNDS, env = "SKEP_BENCH_DOC_ROUNDS",
          value_parser = RangedU64ValueParser::<usize>::new().range(1..=100))]
    pub rounds: usize,
    /// A folder to keep the documents in (one sub-folder per set and
    /// options; reused when there); default: a temporary folder.
    #[arg(long, env = "SKEP_BENCH_DOC_CORPUS")]
    pub corpus: Option<PathBuf>,
    /// Seed of the generated documents.
    #[arg(long, default_value_t = DEFAULT_SEED, env = "SKEP_BENCH_DOC_SEED")]
    pub seed: u64,
    /// The skep binary; default: `skep` beside this program.
    #[arg(long, env = "SKEP_BENCH_SKEP")]
    pub skep: Option<PathBuf>,
    /// The OCRmyPDF program.
    #[arg(long, default_value = "ocrmypdf", env = "SKEP_BENCH_OCRMYPDF")]
    pub ocrmypdf: String,
    /// Longest any one program run may take, in seconds.
    #[arg(long, default_value_t = DEFAULT_TIMEOUT_S, env = "SKEP_BENCH_DOC_TIMEOUT",
          value_parser = clap::value_parser!(u64).range(1..=MAX_TIMEOUT_S))]
    pub timeout: u64,
}

impl Default for DocumentsOptions {
    fn default() -> Self {
        Self {
            parts: Part::ALL.to_vec(),
            files: DEFAULT_FILES,
            pages_per_file: DEFAULT_PAGES_PER_FILE,
            size: PageSize::A4,
            digital_files: DEFAULT_DIGITAL_FILES,
            digital_pages_per_file: DEFAULT_DIGITAL_PAGES_PER_FILE,
            big_pages: DEFAULT_BIG_PAGES,
            pages_per_task: skep_api::DEFAULT_PAGES_PER_TASK,
            workers: None,
            auto_rotate: false,
            rounds: DEFAULT_ROUNDS,
            corpus: None,
            seed: DEFAULT_SEED,
            skep: None,
            ocrmypdf: "ocrmypdf".to_owned(),
            timeout: DEFAULT_TIMEOUT_S,
        }
    }
}

/// What every run is made with.
#[derive(Clone, Debug)]
pub struct Setup {
    pub skep: PathBuf,
    pub ocrmypdf: String,
    pub workers: usize,
    pub languages: &'static str,
    pub psm: u8,
    pub dpi: u32,
    pub auto_rotate: bool,
    pub pages_per_task: u32,
    /// Longest any one program may run.
    pub limit: Duration,
}

impl Setup {
    #[cfg(test)]
    fn for_tests(skep: PathBuf) -> Self {
        Self {
            skep,
            ocrmypdf: "ocrmypdf".to_owned(),
            workers: 2,
            languages: LANGUAGES,
            psm: skep_api::DEFAULT_PAGE_SEG_MODE,
            dpi: skep_api::DEFAULT_DPI,
            auto_rotate: false,
            pages_per_task: skep_api::DEFAULT_PAGES_PER_TASK,
            limit: Duration::from_secs(600),
        }
    }
}

/// Reads a file a program wrote, refusing one over `max` bytes.
fn read_bounded(path: &Path, max: u64) -> Result<String> {
    let len = std::fs::metadata(path).map_err(|e| Error::io(path, e))?.len();
    if len > max {
        return Err(Error::TooLarge {
            path: path.display().to_string(),
            limit: max,
        });
    }
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Prepares the documents, warms every program up, runs `rounds` rounds
/// of each part asked for, and reports. Blocking; progress goes to stderr.
pub fn run(opts: &DocumentsOptions) -> Result<DocumentsReport> {
    let load1_before = tally::load_average();
    let want = |p: Part| opts.parts.contains(&p);
    let setup = Setup {
        skep: skep_run::locate(opts.skep.as_deref())?,
        ocrmypdf: opts.ocrmypdf.clone(),
        workers: opts.workers.unwrap_or_else(crate::cores).max(1),
        languages: LANGUAGES,
        psm: skep_api::DEFAULT_PAGE_SEG_MODE,
        dpi: skep_api::DEFAULT_DPI,
        auto_rotate: opts.auto_rotate,
        pages_per_task: opts.pages_per_task,
        limit: Duration::from_secs(opts.timeout),
    };
    check_poppler(&setup)?;
    let ocrmypdf_version = if want(Part::Scanned) {
        ocrmypdf::version(&setup)?
    } else {
        String::new()
    };

    let corpus = Corpus::open(opts.corpus.as_deref())?;
    eprintln!("documents: preparing documents in {}", corpus.root.display());
    let warm = corpus.scanned(1, 1, PageSize::Small, opts.seed)?;
    let scanned_set = want(Part::Scanned)
        .then(|| corpus.scanned(opts.files, opts.pages_per_file, opts.size, opts.seed))
        .transpose()?;
    let digital_set = want(Part::BornDigital)
        .then(|| corpus.born_digital(opts.digital_files, opts.digital_pages_per_file, opts.seed))
        .transpose()?;
    let big_set = want(Part::Split)
        .then(|| corpus.scanned(1, opts.big_pages, PageSize::Small, opts.seed))
        .transpose()?;

    let clock = Clock::start();
    let warm_job = skep_run::Job {
        name: "bench-warm-up",
        source: &warm.dir,
        formats: &[OutputFormat::Txt, OutputFormat::Pdf],
        workers: 1,
    };
    skep_run::run(&setup, &warm_job)?;
    let skep_warm_up_s = clock.stop().elapsed.as_secs_f64();
    eprintln!("documents: warm-up: skep run (1 small page) {skep_warm_up_s:.2} s");
    let mut scanned = scanned_set.as_ref().map(|s| ScannedPart::new(&setup, s));
    let mut digital = digital_set.as_ref().map(|s| BornDigitalPart::new(&setup, s));
    let mut split = big_set.as_ref().map(|s| SplitPart::new(&setup, s));
    if let Some(p) = &mut scanned {
        p.warm_up(&warm)?;
    }
    if let Some(p) = &digital {
        p.warm_up()?;
    }

    for round in 1..=opts.rounds {
        if let Some(p) = &mut scanned {
            p.round(round, opts.rounds)?;
        }
        if let Some(p) = &mut digital {
            p.round(round, opts.rounds)?;
        }
        if let Some(p) = &mut split {
            p.round(round, opts.rounds)?;
        }
    }

    Ok(DocumentsReport {
        bench: "documents",
        skep: setup.skep.display().to_string(),
        corpus: corpus.root.display().to_string(),
        workers: setup.workers,
        rounds: opts.rounds,
        psm: setup.psm,
        dpi: setup.dpi,
        languages: setup.languages,
        warm_up: WARM_UP_RULE,
        load1_before,
        skep_warm_up_s,
        scanned: scanned.map(|p| p.report(&ocrmypdf_version)).transpose()?,
        born_digital: digital.map(|p| p.report()),
        split: split.map(|p| p.report()).transpose()?,
    })
}

/// Fails early, with how to install them, when Poppler's programs are
/// missing.
fn check_poppler(setup: &Setup) -> Result<()> {
    for program in ["pdftotext", "pdftoppm"] {
        let mut cmd = Command::new(program);
        cmd.arg("-v");
        process::run(cmd, setup.limit, 0, poppler::INSTALL_HINT)?;
    }
    Ok(())
}

/// The result of `skep-bench documents`.
#[derive(Debug, Serialize)]
pub struct DocumentsReport {
    pub bench: &'static str,
    /// The skep binary run.
    pub skep: String,
    /// The folder of the document sets (a temporary one is gone after the run).
    pub corpus: String,
    pub workers: usize,
    pub rounds: usize,
    pub psm: u8,
    pub dpi: u32,
    pub languages: &'static str,
    pub warm_up: &'static str,
    /// The 1-minute load average when the bench started, before any of its
    /// own work (the per-method `load1` includes the bench's previous run).
    pub load1_before: Option<f64>,
    /// The untimed `skep run` on one small scanned page: a run's fixed cost.
    pub skep_warm_up_s: f64,
    pub scanned: Option<ScannedReport>,
    pub born_digital: Option<BornDigitalReport>,
    pub split: Option<SplitReport>,
}

impl DocumentsReport {
    /// The most of the machine other processes took during any timed run.
    fn busiest(&self) -> f64 {
        let mut methods: Vec<&MethodReport> = Vec::new();
        if let Some(s) = &self.scanned {
            methods.extend([&s.skep, &s.ocrmypdf_pdfa, &s.ocrmypdf_pdf]);
        }
        if let Some(b) = &self.born_digital {
            methods.extend([&b.skep, &b.pdftotext]);
        }
        if let Some(s) = &self.split {
            methods.extend([&s.one_worker, &s.two_workers]);
        }
        methods.iter().filter_map(|m| m.others_load).fold(0.0, f64::max)
    }
}

impl fmt::Display for DocumentsReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "documents: {} ({} workers), psm {}, {} dpi, {}, OMP_THREAD_LIMIT=1, median of {} interleaved round(s); corpus in {}",
            self.skep, self.workers, self.psm, self.dpi, self.languages, self.rounds, self.corpus
        )?;
        writeln!(f, "  warm-up: {}", self.warm_up)?;
        let load = self.load1_before.map_or("-".to_owned(), |l| format!("{l:.2}"));
        write!(
            f,
            "  load average before the bench: {load}; skep run on one small scanned page (warm-up): {:.2} s",
            self.skep_warm_up_s
        )?;
        if let Some(s) = &self.scanned {
            write!(f, "\n{s}")?;
        }
        if let Some(b) = &self.born_digital {
            write!(f, "\n{b}")?;
        }
        if let Some(s) = &self.split {
            write!(f, "\n{s}")?;
        }
        let busiest = self.busiest();
        if busiest > NOISY_LOAD {
            write!(
                f,
                "\n  note: other processes took up to {:.0}% of the machine during a timed run; \
                 the numbers are noisy, rerun when the machine is quiet",
                busiest * 100.0
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `skep` binary of this build: `target/<profile>/skep`, one folder
    /// up from this test's own executable (`target/<profile>/deps/`).
    /// `cargo test --workspace` builds it (skep's own tests need it); under
    /// `CI=true` its absence fails the test, elsewhere it skips it.
    fn skep_binary() -> Option<PathBuf> {
        let exe = std::env::current_exe().expect("test executable");
        let found = exe
            .parent()
            .and_then(Path::parent)
            .map(|profile| profile.join("skep"))
            .filter(|p| p.is_file());
        if found.is_none() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "no skep binary beside the test: CI must run this test (cargo test --workspace builds it)"
            );
            eprintln!("note: no skep binary built; skipping (cargo build -p skep)");
        }
        found
    }

    fn ocrmypdf_installed() -> bool {
        let mut cmd = Command::new("ocrmypdf");
        cmd.arg("--version");
        let found = process::run(cmd, Duration::from_secs(60), 1024, "").is_ok_and(|f| f.status.success());
        if !found {
            eprintln!("note: ocrmypdf is not installed; the scanned part is left out");
        }
        found
    }

    #[test]
    fn every_part_reads_its_documents_and_reports() {
        let Some(skep) = skep_binary() else { return };
        let mut parts = vec![Part::BornDigital, Part::Split];
        if ocrmypdf_installed() {
            parts.push(Part::Scanned);
        }
        let opts = DocumentsOptions {
            parts,
            files: 1,
            pages_per_file: 2,
            size: PageSize::Small,
            digital_files: 2,
            digital_pages_per_file: 9,
            big_pages: 10,
            skep: Some(skep),
            timeout: 600,
            ..DocumentsOptions::default()
        };
        let report = run(&opts).expect("documents bench");

        let b = report.born_digital.as_ref().expect("born-digital part");
        assert_eq!(b.pages, 18);
        assert!(b.exact, "skep read a text layer wrong: CER {}", b.skep.cer_text);
        assert_eq!(b.ocr_pages, 0, "a text page was OCR'd");
        assert_eq!(b.pdftotext.cer_text, 0.0);
        assert!(b.skep.rate.per_s > 0.0 && b.pdftotext.rate.per_s > 0.0);

        let s = report.split.as_ref().expect("split part");
        assert_eq!(s.pages, 10);
        for m in [&s.one_worker, &s.two_workers] {
            assert_eq!(m.failed, 0);
            assert!(m.cer_text < 0.05, "split document read badly: CER {}", m.cer_text);
        }
        assert!(s.speed_up.value > 0.0);

        if let Some(sc) = &report.scanned {
            for (name, m) in [
                ("skep", &sc.skep),
                ("pdfa", &sc.ocrmypdf_pdfa),
                ("pdf", &sc.ocrmypdf_pdf),
            ] {
                assert_eq!(m.failed, 0, "{name}");
                assert!(m.cer_text < 0.05, "{name} text CER {}", m.cer_text);
                let pdf = m.cer_pdf.expect("a searchable PDF");
                assert!(pdf < 0.1, "{name}: the searchable PDF's text reads badly: CER {pdf}");
            }
            assert!(sc.render_s_per_page > 0.0);
        }
        let printed = report.to_string();
        assert!(printed.contains("speed-up 1 -> 2 workers"), "{printed}");
        let json = serde_json::to_value(&report).expect("json");
        assert_eq!(json["bench"], "documents");
    }

    #[test]
    fn a_missing_ocrmypdf_is_reported_with_how_to_install_it() {
        let opts = DocumentsOptions {
            parts: vec![Part::Scanned],
            // NB: never run: the missing OCRmyPDF is found first.
            skep: Some(PathBuf::from("/bin/true")),
            ocrmypdf: "skep-bench-no-ocrmypdf-here".to_owned(),
            ..DocumentsOptions::default()
        };
        let err = run(&opts).expect_err("no ocrmypdf");
        assert!(matches!(err, Error::NotInstalled { .. }), "{err}");
        assert!(err.to_string().contains("apt-get install ocrmypdf"), "{err}");
    }

    #[test]
    fn read_bounded_refuses_a_file_over_its_limit() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("big.txt");
        std::fs::write(&p, vec![b'x'; 100]).expect("write");
        assert!(matches!(read_bounded(&p, 99), Err(Error::TooLarge { .. })));
        assert_eq!(read_bounded(&p, 100).expect("fits").len(), 100);
    }
}
