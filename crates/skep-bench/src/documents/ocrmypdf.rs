//! The baseline for scanned PDFs: OCRmyPDF, the way its users batch it:
//! one `ocrmypdf` process per file, the files in sequence, each with
//! `--jobs <workers>` (its pages in parallel), `-l eng`,
//! `--tesseract-pagesegmode 6` and `--sidecar FILE.txt` for its text.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;

use super::corpus::Doc;
use super::process;
use super::tally::{Clock, Sample};
use super::{Error, Result, Setup, read_bounded};

/// How to get it where it is missing.
pub const INSTALL_HINT: &str = "install it: apt-get install ocrmypdf (Debian 12 ships 14.0), or pip install ocrmypdf";
/// Most standard output kept (it writes nothing there when given a file).
const MAX_STDOUT: usize = 64 * 1024;
/// Largest sidecar text read.
const MAX_SIDECAR: u64 = 256 << 20;

/// Which PDF it writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputType {
    /// Its default, PDF/A-2b (the pages go through Ghostscript): what its
    /// users get unless they ask otherwise.
    PdfA,
    /// `--output-type pdf`: the text layer grafted onto the input PDF.
    Pdf,
}

impl OutputType {
    pub fn name(self) -> &'static str {
        match self {
            OutputType::PdfA => "pdfa",
            OutputType::Pdf => "pdf",
        }
    }
}

/// What `ocrmypdf --version` prints (`14.0.1+dfsg1`); an error with
/// [`INSTALL_HINT`] when it cannot run.
pub fn version(setup: &Setup) -> Result<String> {
    let mut cmd = Command::new(&setup.ocrmypdf);
    cmd.arg("--version");
    let out = process::run(cmd, setup.limit, MAX_STDOUT, INSTALL_HINT)?.checked(&setup.ocrmypdf)?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// A timed pass over the files: its timing, and per document (in order)
/// the sidecar text and the searchable PDF. The folder they are in lives
/// as long as this value.
#[derive(Debug)]
pub struct OcrmypdfRun {
    pub sample: Sample,
    pub texts: Vec<String>,
    pub pdfs: Vec<PathBuf>,
    _dir: tempfile::TempDir,
}

/// Runs OCRmyPDF on each document in turn; a file it fails on fails the
/// run (it should read all of them).
pub fn run(setup: &Setup, docs: &[Doc], output: OutputType) -> Result<OcrmypdfRun> {
    let dir = tempfile::Builder::new()
        .prefix("skep-bench-ocrmypdf-")
        .tempdir()
        .map_err(|e| Error::io(Path::new("(temporary folder)"), e))?;
    let outputs: Vec<(PathBuf, PathBuf)> = (0..docs.len())
        .map(|i| {
            (
                dir.path().join(format!("{i:05}.pdf")),
                dir.path().join(format!("{i:05}.txt")),
            )
        })
        .collect();
    let clock = Clock::start();
    for (doc, (pdf, sidecar)) in docs.iter().zip(&outputs) {
        let mut cmd = Command::new(&setup.ocrmypdf);
        cmd.arg("--jobs")
            .arg(setup.workers.to_string())
            .arg("-l")
            .arg(setup.languages)
            .arg("--tesseract-pagesegmode")
            .arg(setup.psm.to_string())
            .arg("--sidecar")
            .arg(sidecar);
        if output == OutputType::Pdf {
            cmd.arg("--output-type").arg("pdf");
        }
        if setup.auto_rotate {
            cmd.arg("--rotate-pages");
        }
        cmd.arg(&doc.path).arg(pdf);
        process::run(cmd, setup.limit, MAX_STDOUT, INSTALL_HINT)?.checked(&setup.ocrmypdf)?;
    }
    let sample = clock.stop();
    let texts = outputs
        .iter()
        .map(|(_, sidecar)| read_bounded(sidecar, MAX_SIDECAR))
        .collect::<Result<_>>()?;
    Ok(OcrmypdfRun {
        sample,
        texts,
        pdfs: outputs.into_iter().map(|(pdf, _)| pdf).collect(),
        _dir: dir,
    })
}
