//! Part 1: scanned PDFs into text and a searchable PDF, by skep and by
//! OCRmyPDF (PDF/A, its default; and plain PDF for reference).

use std::fmt;

use serde::Serialize;
use skep_api::OutputFormat;

use super::corpus::DocSet;
use super::ocrmypdf::{self, OutputType};
use super::score::Score;
use super::skep_run::{self, Job};
use super::tally::{MethodReport, Tally};
use super::{Result, Setup, poppler};
use crate::report::{Goal, RatioGoal};
use crate::stats::ratio;

/// skep must read scanned PDFs at least 1.2x as fast as OCRmyPDF's default.
pub const GOAL_SKEP_VS_OCRMYPDF: f64 = 1.2;
/// Pages rendered to tell the rendering share of a page's time.
const RENDER_SAMPLE_PAGES: usize = 24;

/// The part's state over the rounds.
#[derive(Debug)]
pub struct ScannedPart<'a> {
    setup: &'a Setup,
    set: &'a DocSet,
    skep: Tally,
    pdfa: Tally,
    pdf: Tally,
    worker_ms: u64,
    worker_pages: usize,
    warm_up_s: f64,
}

impl<'a> ScannedPart<'a> {
    pub fn new(setup: &'a Setup, set: &'a DocSet) -> Self {
        Self {
            setup,
            set,
            skep: Tally::default(),
            pdfa: Tally::default(),
            pdf: Tally::default(),
            worker_ms: 0,
            worker_pages: 0,
            warm_up_s: f64::NAN,
        }
    }

    /// One untimed OCRmyPDF run on `warm` (Python, its modules and
    /// Ghostscript into the page cache).
    pub fn warm_up(&mut self, warm: &DocSet) -> Result<()> {
        let run = ocrmypdf::run(self.setup, &warm.docs, OutputType::PdfA)?;
        self.warm_up_s = run.sample.elapsed.as_secs_f64();
        eprintln!("documents: warm-up: ocrmypdf {:.2} s", self.warm_up_s);
        Ok(())
    }

    /// One timed run of each method: skep, OCRmyPDF (PDF/A), OCRmyPDF (PDF).
    pub fn round(&mut self, round: usize, rounds: usize) -> Result<()> {
        let (setup, docs) = (self.setup, &self.set.docs);
        let job = Job {
            name: "bench-scanned",
            source: &self.set.dir,
            formats: &[OutputFormat::Txt, OutputFormat::Pdf],
            workers: setup.workers,
        };
        let run = skep_run::run(setup, &job)?;
        progress(
            round,
            rounds,
            "skep",
            run.sample.elapsed.as_secs_f64(),
            run.sample.load1,
        );
        let s = run.score(setup, docs, true)?;
        self.skep.add(&run.sample, &s.text, s.pdf.as_ref(), s.failed);
        self.worker_ms += s.worker_ms;
        self.worker_pages += s.pages;
        drop(run);

        for output in [OutputType::PdfA, OutputType::Pdf] {
            let run = ocrmypdf::run(setup, docs, output)?;
            let name = format!("ocrmypdf ({})", output.name());
            progress(round, rounds, &name, run.sample.elapsed.as_secs_f64(), run.sample.load1);
            let (mut text, mut pdf) = (Score::default(), Score::default());
            for ((doc, sidecar), out) in docs.iter().zip(&run.texts).zip(&run.pdfs) {
                text.add(&doc.truth, sidecar);
                pdf.add(&doc.truth, &poppler::text_of(setup, out)?);
            }
            let tally = match output {
                OutputType::PdfA => &mut self.pdfa,
                OutputType::Pdf => &mut self.pdf,
            };
            tally.add(&run.sample, &text, Some(&pdf), 0);
        }
        Ok(())
    }

    /// The report; renders a sample of the pages (untimed by the rounds)
    /// to tell the rendering share.
    pub fn report(&self, ocrmypdf_version: &str) -> Result<ScannedReport> {
        let pages = self.set.pages();
        let render_s_per_page = poppler::render_seconds_per_page(self.setup, &self.set.docs, RENDER_SAMPLE_PAGES)?;
        let (skep, pdfa, pdf) = (self.skep.report(pages), self.pdfa.report(pages), self.pdf.report(pages));
        let first = self.set.docs.first();
        Ok(ScannedReport {
            corpus: self.set.dir.display().to_string(),
            generated: self.set.generated,
            files: self.set.docs.len(),
            pages_per_file: first.map_or(0, |d| d.pages),
            pages,
            workers: self.setup.workers,
            auto_rotate: self.setup.auto_rotate,
            ocrmypdf_version: ocrmypdf_version.to_owned(),
            ocrmypdf_warm_up_s: self.warm_up_s,
            skep_vs_ocrmypdf: Goal::new(ratio(skep.rate.per_s, pdfa.rate.per_s), GOAL_SKEP_VS_OCRMYPDF),
            skep_vs_ocrmypdf_pdf: ratio(skep.rate.per_s, pdf.rate.per_s),
            render_s_per_page,
            skep_worker_s_per_page: ratio(self.worker_ms as f64 / 1000.0, self.worker_pages as f64),
            skep_core_s_per_page: ratio(self.skep.median_s() * self.setup.workers as f64, pages as f64),
            skep,
            ocrmypdf_pdfa: pdfa,
            ocrmypdf_pdf: pdf,
        })
    }
}

fn progress(round: usize, rounds: usize, method: &str, seconds: f64, load1: Option<f64>) {
    let load = load1.map_or("-".to_owned(), |l| format!("{l:.2}"));
    eprintln!("documents: scanned: round {round}/{rounds}: {method:<16} {seconds:.2} s (load {load})");
}

/// The result of the scanned part; rates are pages per second.
#[derive(Debug, Serialize)]
pub struct ScannedReport {
    /// The folder of PDFs (a temporary one is gone after the run).
    pub corpus: String,
    pub generated: bool,
    pub files: usize,
    pub pages_per_file: usize,
    pub pages: usize,
    /// skep's `--workers` and OCRmyPDF's `--jobs`.
    pub workers: usize,
    /// skep's `autoRotate` and OCRmyPDF's `--rotate-pages`.
    pub auto_rotate: bool,
    pub ocrmypdf_version: String,
    /// The untimed OCRmyPDF run on one small page.
    pub ocrmypdf_warm_up_s: f64,
    /// `skep run`, formats `[txt, pdf]`.
    pub skep: MethodReport,
    /// OCRmyPDF's default output (PDF/A-2b).
    pub ocrmypdf_pdfa: MethodReport,
    /// OCRmyPDF with `--output-type pdf`.
    pub ocrmypdf_pdf: MethodReport,
    /// Pages/s of skep over OCRmyPDF's default.
    pub skep_vs_ocrmypdf: Goal,
    /// Pages/s of skep over OCRmyPDF `--output-type pdf`.
    pub skep_vs_ocrmypdf_pdf: f64,
    /// Seconds to render a page as skep's worker does (`pdftoppm`, one
    /// process per page), measured apart.
    pub render_s_per_page: f64,
    /// Worker seconds per page from `results.jsonl` (`durationMs`): render,
    /// OCR and the page's artefacts, without the controller.
    pub skep_worker_s_per_page: f64,
    /// skep's median wall time times its workers, per page: what a page
    /// costs end to end.
    pub skep_core_s_per_page: f64,
}

impl fmt::Display for ScannedReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let origin = if self.generated { "generated" } else { "reused" };
        let rotate = if self.auto_rotate { "on" } else { "off" };
        writeln!(
            f,
            "  scanned PDFs: {} files x {} pages ({} pages, {origin} in {}), {} workers/jobs, auto-rotate {rotate}, {}",
            self.files,
            self.pages_per_file,
            self.pages,
            self.corpus,
            self.workers,
            self.ocrmypdf_version_line()
        )?;
        writeln!(
            f,
            "    {:<18} {:>8} {:>9} {:>8} {:>8} {:>9} {:>8} {:>7} {:>7} {:>6}",
            "method", "pages/s", "median s", "min s", "max s", "CER text", "CER pdf", "failed", "others", "load1"
        )?;
        for (name, m) in [
            ("skep [txt,pdf]", &self.skep),
            ("ocrmypdf (pdfa)", &self.ocrmypdf_pdfa),
            ("ocrmypdf (pdf)", &self.ocrmypdf_pdf),
        ] {
            let (others, load) = m.load_cells();
            writeln!(
                f,
                "    {:<18} {:>8.3} {:>9.2} {:>8.2} {:>8.2} {:>9.4} {:>8.4} {:>7} {:>7} {:>6}",
                name,
                m.rate.per_s,
                m.rate.median_s,
                m.rate.min_s,
                m.rate.max_s,
                m.cer_text,
                m.cer_pdf.unwrap_or(f64::NAN),
                m.failed,
                others,
                load
            )?;
        }
        writeln!(
            f,
            "    per page: render {:.2} s (pdftoppm, apart); skep worker {:.2} s (durationMs); skep end to end {:.2} core-s",
            self.render_s_per_page, self.skep_worker_s_per_page, self.skep_core_s_per_page
        )?;
        writeln!(f, "    skep/ocrmypdf (pdfa): {}", RatioGoal(&self.skep_vs_ocrmypdf))?;
        write!(
            f,
            "    skep/ocrmypdf (pdf):  {:.3} (reference)",
            self.skep_vs_ocrmypdf_pdf
        )
    }
}

impl ScannedReport {
    fn ocrmypdf_version_line(&self) -> String {
        format!(
            "OCRmyPDF {} (warm-up {:.1} s)",
            self.ocrmypdf_version, self.ocrmypdf_warm_up_s
        )
    }
}
