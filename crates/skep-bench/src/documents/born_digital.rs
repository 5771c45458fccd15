//! Part 2: born-digital PDFs (a text layer on every page, nothing to OCR)
//! through skep, against `pdftotext` over the same files in sequence.

use std::fmt;

use serde::Serialize;
use skep_api::OutputFormat;

use super::corpus::DocSet;
use super::score::Score;
use super::skep_run::{self, Job};
use super::tally::{MethodReport, Tally};
use super::{Result, Setup, poppler};
use crate::report::{Goal, RateGoal};
use crate::stats::ratio;

/// skep must read at least 200 text-layer pages per second per core, end
/// to end.
pub const GOAL_PAGES_PER_CORE: f64 = 200.0;

/// The part's state over the rounds.
#[derive(Debug)]
pub struct BornDigitalPart<'a> {
    setup: &'a Setup,
    set: &'a DocSet,
    skep: Tally,
    pdftotext: Tally,
    ocr_pages: usize,
    worker_ms: u64,
    worker_pages: usize,
}

impl<'a> BornDigitalPart<'a> {
    pub fn new(setup: &'a Setup, set: &'a DocSet) -> Self {
        Self {
            setup,
            set,
            skep: Tally::default(),
            pdftotext: Tally::default(),
            ocr_pages: 0,
            worker_ms: 0,
            worker_pages: 0,
        }
    }

    /// One untimed `pdftotext` pass over the first file.
    pub fn warm_up(&self) -> Result<()> {
        poppler::pdftotext_all(self.setup, &self.set.docs[..1])?;
        Ok(())
    }

    /// One timed run of each: skep (formats `[txt]`), then pdftotext.
    pub fn round(&mut self, round: usize, rounds: usize) -> Result<()> {
        let (setup, docs) = (self.setup, &self.set.docs);
        let job = Job {
            name: "bench-born-digital",
            source: &self.set.dir,
            formats: &[OutputFormat::Txt],
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
        let s = run.score(setup, docs, false)?;
        self.skep.add(&run.sample, &s.text, None, s.failed);
        self.ocr_pages = self.ocr_pages.max(s.ocr_pages);
        self.worker_ms += s.worker_ms;
        self.worker_pages += s.pages;
        drop(run);

        let (sample, texts) = poppler::pdftotext_all(setup, docs)?;
        progress(round, rounds, "pdftotext", sample.elapsed.as_secs_f64(), sample.load1);
        let mut score = Score::default();
        for (doc, text) in docs.iter().zip(&texts) {
            score.add(&doc.truth, text);
        }
        self.pdftotext.add(&sample, &score, None, 0);
        Ok(())
    }

    pub fn report(&self) -> BornDigitalReport {
        let pages = self.set.pages();
        let (skep, pdftotext) = (self.skep.report(pages), self.pdftotext.report(pages));
        let per_core = skep.rate.per_s / self.setup.workers as f64;
        BornDigitalReport {
            corpus: self.set.dir.display().to_string(),
            generated: self.set.generated,
            files: self.set.docs.len(),
            pages_per_file: self.set.docs.first().map_or(0, |d| d.pages),
            pages,
            workers: self.setup.workers,
            pages_per_task: self.setup.pages_per_task,
            skep_per_core: Goal::new(per_core, GOAL_PAGES_PER_CORE),
            skep_per_core_vs_pdftotext: ratio(per_core, pdftotext.rate.per_s),
            exact: skep.cer_text == 0.0 && skep.failed == 0,
            ocr_pages: self.ocr_pages,
            skep_worker_ms_per_page: ratio(self.worker_ms as f64, self.worker_pages as f64),
            skep,
            pdftotext,
        }
    }
}

fn progress(round: usize, rounds: usize, method: &str, seconds: f64, load1: Option<f64>) {
    let load = load1.map_or("-".to_owned(), |l| format!("{l:.2}"));
    eprintln!("documents: born-digital: round {round}/{rounds}: {method:<10} {seconds:.2} s (load {load})");
}

/// The result of the born-digital part; rates are pages per second.
#[derive(Debug, Serialize)]
pub struct BornDigitalReport {
    pub corpus: String,
    pub generated: bool,
    pub files: usize,
    pub pages_per_file: usize,
    pub pages: usize,
    pub workers: usize,
    pub pages_per_task: u32,
    /// `skep run`, formats `[txt]`.
    pub skep: MethodReport,
    /// `pdftotext` over the files, one at a time.
    pub pdftotext: MethodReport,
    /// skep's pages/s divided by its workers.
    pub skep_per_core: Goal,
    /// skep's pages/s per worker over pdftotext's (one process at a time).
    pub skep_per_core_vs_pdftotext: f64,
    /// Whether skep read every page exactly (CER 0, no failure).
    pub exact: bool,
    /// Pages skep OCR'd (should be none: every page has text).
    pub ocr_pages: usize,
    /// Worker milliseconds per page from `results.jsonl` (`durationMs`).
    pub skep_worker_ms_per_page: f64,
}

impl fmt::Display for BornDigitalReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let origin = if self.generated { "generated" } else { "reused" };
        writeln!(
            f,
            "  born-digital PDFs: {} files x {} pages ({} pages, {origin} in {}), {} workers, pagesPerTask {}",
            self.files, self.pages_per_file, self.pages, self.corpus, self.workers, self.pages_per_task
        )?;
        writeln!(
            f,
            "    {:<18} {:>8} {:>9} {:>8} {:>8} {:>9} {:>7} {:>7} {:>6}",
            "method", "pages/s", "median s", "min s", "max s", "CER", "failed", "others", "load1"
        )?;
        for (name, m) in [("skep [txt]", &self.skep), ("pdftotext (serial)", &self.pdftotext)] {
            let (others, load) = m.load_cells();
            writeln!(
                f,
                "    {:<18} {:>8.1} {:>9.3} {:>8.3} {:>8.3} {:>9.4} {:>7} {:>7} {:>6}",
                name, m.rate.per_s, m.rate.median_s, m.rate.min_s, m.rate.max_s, m.cer_text, m.failed, others, load
            )?;
        }
        let exact = if self.exact { "yes" } else { "NO" };
        writeln!(
            f,
            "    skep read every page exactly: {exact}; pages OCR'd: {}; worker time {:.2} ms/page (durationMs)",
            self.ocr_pages, self.skep_worker_ms_per_page
        )?;
        writeln!(f, "    skep per core: {}", RateGoal(&self.skep_per_core))?;
        write!(
            f,
            "    skep per core / pdftotext: {:.3}",
            self.skep_per_core_vs_pdftotext
        )
    }
}
