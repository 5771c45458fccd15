//! Poppler's programs: `pdftotext` as the baseline for born-digital PDFs
//! and to read back the text layer of searchable PDFs, and `pdftoppm` to
//! tell how much of a scanned page's time is rendering.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::corpus::Doc;
use super::process;
use super::tally::{Clock, Sample};
use super::{Error, Result, Setup, read_bounded};

pub const INSTALL_HINT: &str = "install poppler-utils (apt-get install poppler-utils)";
/// Largest text read back from one PDF.
const MAX_TEXT: usize = 256 << 20;

/// `pdftotext -enc UTF-8 FILE OUT.txt` over the documents in sequence,
/// timed, then (untimed) the text of each, in order.
pub fn pdftotext_all(setup: &Setup, docs: &[Doc]) -> Result<(Sample, Vec<String>)> {
    let dir = tempfile::Builder::new()
        .prefix("skep-bench-pdftotext-")
        .tempdir()
        .map_err(|e| Error::io(Path::new("(temporary folder)"), e))?;
    let outs: Vec<_> = (0..docs.len())
        .map(|i| dir.path().join(format!("{i:05}.txt")))
        .collect();
    let clock = Clock::start();
    for (doc, out) in docs.iter().zip(&outs) {
        let mut cmd = Command::new("pdftotext");
        cmd.args(["-enc", "UTF-8"]).arg(&doc.path).arg(out);
        process::run(cmd, setup.limit, 0, INSTALL_HINT)?.checked("pdftotext")?;
    }
    let sample = clock.stop();
    let texts = outs
        .iter()
        .map(|o| read_bounded(o, MAX_TEXT as u64))
        .collect::<Result<_>>()?;
    Ok((sample, texts))
}

/// The text layer of `pdf` as `pdftotext` reads it (pages end in form
/// feeds); empty when there is no such file (a method that made none).
pub fn text_of(setup: &Setup, pdf: &Path) -> Result<String> {
    if !pdf.is_file() {
        return Ok(String::new());
    }
    let mut cmd = Command::new("pdftotext");
    cmd.args(["-enc", "UTF-8"]).arg(pdf).arg("-");
    let out = process::run(cmd, setup.limit, MAX_TEXT, INSTALL_HINT)?.checked("pdftotext")?;
    if out.stdout_truncated {
        return Err(Error::TooLarge {
            path: pdf.display().to_string(),
            limit: MAX_TEXT as u64,
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Seconds per page to render up to `max_pages` pages of `docs` as skep's
/// worker does (`pdftoppm -cropbox -f N -l N -r DPI -gray`, one page per
/// process, the image read and dropped), one after another.
pub fn render_seconds_per_page(setup: &Setup, docs: &[Doc], max_pages: usize) -> Result<f64> {
    let mut total = Duration::ZERO;
    let mut rendered = 0usize;
    let pages = docs.iter().flat_map(|d| (1..=d.pages).map(move |n| (d, n)));
    for (doc, n) in pages.take(max_pages) {
        let (n, dpi) = (n.to_string(), setup.dpi.to_string());
        let mut cmd = Command::new("pdftoppm");
        cmd.arg("-cropbox")
            .args(["-f", &n, "-l", &n, "-r", &dpi, "-gray", "--"])
            .arg(&doc.path);
        total += process::run(cmd, setup.limit, 0, INSTALL_HINT)?
            .checked("pdftoppm")?
            .elapsed;
        rendered += 1;
    }
    Ok(if rendered == 0 {
        f64::NAN
    } else {
        total.as_secs_f64() / rendered as f64
    })
}
