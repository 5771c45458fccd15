//! The real thing: `skep run -f job.json --store sqlite:<tmp> --quiet`, the
//! release binary as a user runs it, on a fresh store and output folder
//! each time, timed from the process start to its exit.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use skep_api::{BulkJob, BulkJobSpec, OutputFormat};

use super::corpus::Doc;
use super::score::Score;
use super::tally::{Clock, Sample};
use super::{Error, Result, Setup, poppler, process, read_bounded};

/// Largest `results.jsonl` read (each document's text is in it).
const MAX_RESULTS: u64 = 512 << 20;
/// Most of `skep run`'s standard output kept (its summary is a few lines).
const MAX_STDOUT: usize = 64 * 1024;

/// The `skep` binary beside this program (`target/release/skep` beside
/// `target/release/skep-bench`), unless one is given.
pub fn locate(given: Option<&Path>) -> Result<PathBuf> {
    let path = match given {
        Some(p) => p.to_path_buf(),
        None => std::env::current_exe()
            .map_err(|e| Error::io(Path::new("(this program)"), e))?
            .with_file_name("skep"),
    };
    if !path.is_file() {
        return Err(Error::NoSkep {
            path: path.display().to_string(),
        });
    }
    Ok(path)
}

/// One job for `skep run`.
#[derive(Debug)]
pub struct Job<'a> {
    /// The job's name (a lowercase RFC 1123 label).
    pub name: &'a str,
    /// The folder of PDFs.
    pub source: &'a Path,
    pub formats: &'a [OutputFormat],
    /// `--workers`.
    pub workers: usize,
}

/// A finished `skep run`: its timing and what it wrote. The folder it
/// wrote in lives as long as this value.
#[derive(Debug)]
pub struct SkepRun {
    pub sample: Sample,
    /// Each document's line of `results.jsonl`, by its relative path.
    pub files: HashMap<String, FileResult>,
    /// The job's output folder (`text/`, `pdf/`, `results.jsonl`).
    pub output: PathBuf,
    _dir: tempfile::TempDir,
}

impl SkepRun {
    /// The searchable PDF skep wrote for `rel`.
    pub fn searchable_pdf(&self, rel: &str) -> PathBuf {
        self.output.join("pdf").join(format!("{rel}.pdf"))
    }

    /// Scores the text of each of `docs` (a missing or failed document
    /// reads as empty), and with `pdf` the text `pdftotext` reads from its
    /// searchable PDF (untimed).
    pub fn score(&self, setup: &Setup, docs: &[Doc], pdf: bool) -> Result<Scored> {
        let mut s = Scored {
            pdf: pdf.then(Score::default),
            ..Scored::default()
        };
        for doc in docs {
            let result = self.files.get(&doc.rel).filter(|r| r.succeeded());
            let text = result.and_then(|r| r.text.as_deref()).unwrap_or("");
            s.text.add(&doc.truth, text);
            if let Some(p) = &mut s.pdf {
                p.add(&doc.truth, &poppler::text_of(setup, &self.searchable_pdf(&doc.rel))?);
            }
            match result {
                Some(r) => {
                    s.worker_ms += r.duration_ms;
                    s.ocr_pages += r.ocr_pages();
                    s.pages += r.page_count as usize;
                }
                None => s.failed += 1,
            }
        }
        Ok(s)
    }
}

/// How well a `skep run` read its documents, and what its results say of
/// the time spent.
#[derive(Clone, Debug, Default)]
pub struct Scored {
    pub text: Score,
    pub pdf: Option<Score>,
    /// Documents without a succeeded result.
    pub failed: usize,
    /// Worker time (`durationMs`) summed over the succeeded documents.
    pub worker_ms: u64,
    /// Pages read, and of them OCR'd, over the succeeded documents.
    pub pages: usize,
    pub ocr_pages: usize,
}

/// What `results.jsonl` says of one document.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileResult {
    pub path: String,
    pub status: String,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub page_count: u32,
    #[serde(default)]
    pub pages: Vec<PageEntry>,
    /// Time the workers spent on it, summed over its page ranges.
    #[serde(default)]
    pub duration_ms: u64,
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct PageEntry {
    /// `text` (its text layer) or `ocr`.
    pub source: String,
}

impl FileResult {
    pub fn succeeded(&self) -> bool {
        self.status == "succeeded"
    }

    /// Pages that were OCR'd rather than taken from their text layer.
    pub fn ocr_pages(&self) -> usize {
        self.pages.iter().filter(|p| p.source == "ocr").count()
    }
}

/// Writes the job (every engine setting from `setup`), runs `skep run` on
/// a fresh SQLite store and reads `results.jsonl`. Fails when skep exits
/// non-zero (the job failed) or past the time limit.
pub fn run(setup: &Setup, job: &Job<'_>) -> Result<SkepRun> {
    let dir = tempfile::Builder::new()
        .prefix("skep-bench-run-")
        .tempdir()
        .map_err(|e| Error::io(Path::new("(temporary folder)"), e))?;
    let output = dir.path().join("out");
    let job_file = dir.path().join("job.json");
    let bytes = serde_json::to_vec_pretty(&bulk_job(setup, job, &output)).map_err(|e| Error::Job(e.to_string()))?;
    std::fs::write(&job_file, bytes).map_err(|e| Error::io(&job_file, e))?;

    let mut cmd = Command::new(&setup.skep);
    cmd.arg("run")
        .arg("-f")
        .arg(&job_file)
        .arg("--store")
        .arg(format!("sqlite:{}", dir.path().join("skep.db").display()))
        .arg("--queue")
        .arg("memory:")
        .arg("--workers")
        .arg(job.workers.to_string())
        .arg("--quiet")
        // NB: the user's environment must not point this run elsewhere.
        .env_remove("SKEP_STORE_FILE")
        .env_remove("SKEP_QUEUE_FILE");
    let clock = Clock::start();
    let finished = process::run(cmd, setup.limit, MAX_STDOUT, "build it: cargo build --release -p skep")?;
    let sample = clock.stop();
    finished.checked("skep run")?;

    let results = output.join("results.jsonl");
    let files = parse_results(&read_bounded(&results, MAX_RESULTS)?).map_err(|message| Error::Results {
        path: results.display().to_string(),
        message,
    })?;
    Ok(SkepRun {
        sample,
        files,
        output,
        _dir: dir,
    })
}

fn bulk_job(setup: &Setup, job: &Job<'_>, output: &Path) -> BulkJob {
    let mut spec = BulkJobSpec::for_path(job.source.display().to_string());
    spec.engine.languages = vec![setup.languages.to_owned()];
    spec.engine.page_seg_mode = setup.psm;
    spec.engine.dpi = setup.dpi;
    spec.engine.auto_rotate = setup.auto_rotate;
    spec.output.path = Some(output.display().to_string());
    spec.output.formats = job.formats.to_vec();
    // NB: the default (100 files per worker, pages counted) asks for one
    // worker for a dozen pages; with 1 the job asks for as many as
    // `--workers` allows, one per core by default.
    spec.scaling.files_per_worker = 1;
    spec.pages_per_task = setup.pages_per_task;
    spec.file_timeout_seconds = setup.limit.as_secs().max(1);
    BulkJob::new(job.name, spec)
}

/// The lines of `results.jsonl` by path; an error names the first line
/// that does not parse.
fn parse_results(text: &str) -> std::result::Result<HashMap<String, FileResult>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str::<FileResult>(l)
                .map(|r| (r.path.clone(), r))
                .map_err(|e| format!("line {}: {e}", i + 1))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_lines_are_read_by_path() {
        let text = r#"{"index":0,"path":"a.pdf","status":"succeeded","attempts":1,"text":"hi","pageCount":2,"pages":[{"number":1,"source":"text","confidence":100.0,"rotation":0},{"number":2,"source":"ocr","confidence":91.0,"rotation":0}],"words":1,"durationMs":1234}
{"index":1,"path":"b.pdf","status":"failed","attempts":3,"pageCount":0,"pages":[],"words":0,"reason":"corrupt","error":"x","durationMs":5}
"#;
        let files = parse_results(text).expect("parses");
        let a = &files["a.pdf"];
        assert!(a.succeeded());
        assert_eq!((a.page_count, a.ocr_pages(), a.duration_ms), (2, 1, 1234));
        assert_eq!(a.text.as_deref(), Some("hi"));
        let b = &files["b.pdf"];
        assert!(!b.succeeded());
        assert_eq!(b.reason.as_deref(), Some("corrupt"));
        let err = parse_results("{\"path\":\"a\",\"status\":\"succeeded\"}\nnot json\n").expect_err("bad line");
        assert!(err.starts_with("line 2:"), "{err}");
    }

    #[test]
    fn the_job_carries_every_setting() {
        let setup = Setup::for_tests(PathBuf::from("/nowhere/skep"));
        let job = Job {
            name: "bench-x",
            source: Path::new("/data/pdfs"),
            formats: &[OutputFormat::Txt, OutputFormat::Pdf],
            workers: 2,
        };
        let j = bulk_job(&setup, &job, Path::new("/tmp/out"));
        let text = serde_json::to_string(&j).expect("json");
        let parsed = skep_api::parse_job(&text).expect("skep reads the job back");
        skep_api::validate_job(&parsed).expect("valid");
        let json = serde_json::to_value(&j).expect("json");
        assert_eq!(json["spec"]["engine"]["pageSegMode"], 6);
        assert_eq!(json["spec"]["engine"]["autoRotate"], false);
        assert_eq!(json["spec"]["output"]["formats"], serde_json::json!(["txt", "pdf"]));
        assert_eq!(json["spec"]["pagesPerTask"], 8);
    }

    #[test]
    fn a_missing_binary_says_how_to_build_it() {
        let err = locate(Some(Path::new("/nowhere/skep"))).expect_err("missing");
        assert!(err.to_string().contains("cargo build --release -p skep"), "{err}");
    }

    #[test]
    fn a_failing_skep_is_an_error_with_its_reason() {
        let d = tempfile::tempdir().expect("tempdir");
        let fake = d.path().join("skep");
        std::fs::write(&fake, "#!/bin/sh\necho 'job.json: spec.x: must be y' >&2\nexit 2\n").expect("write");
        let mut perms = std::fs::metadata(&fake).expect("meta").permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        std::fs::set_permissions(&fake, perms).expect("chmod");
        let setup = Setup::for_tests(fake);
        let job = Job {
            name: "bench-x",
            source: d.path(),
            formats: &[OutputFormat::Txt],
            workers: 1,
        };
        let err = run(&setup, &job).expect_err("exit 2");
        assert!(err.to_string().contains("must be y"), "{err}");
    }
}
