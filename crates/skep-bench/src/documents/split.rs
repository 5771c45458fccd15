//! Part 3: one long scanned PDF through skep with one worker and with two.
//! skep splits it into ranges of `pagesPerTask` pages, one task each, so
//! two workers should take about half the time.

use std::fmt;

use serde::Serialize;
use skep_api::OutputFormat;

use super::corpus::DocSet;
use super::skep_run::{self, Job};
use super::tally::{MethodReport, Tally};
use super::{Result, Setup, poppler};
use crate::report::{Goal, RatioGoal};
use crate::stats::ratio;

/// Two workers must finish the long document at least 1.8x as fast as one.
pub const GOAL_SPEED_UP: f64 = 1.8;
/// The worker counts compared.
pub const WORKERS: [usize; 2] = [1, 2];
/// Pages rendered to tell the rendering share of a page's time.
const RENDER_SAMPLE_PAGES: usize = 8;

/// The part's state over the rounds.
#[derive(Debug)]
pub struct SplitPart<'a> {
    setup: &'a Setup,
    set: &'a DocSet,
    tallies: [Tally; 2],
    worker_ms: [u64; 2],
    worker_pages: [usize; 2],
}

impl<'a> SplitPart<'a> {
    pub fn new(setup: &'a Setup, set: &'a DocSet) -> Self {
        Self {
            setup,
            set,
            tallies: Default::default(),
            worker_ms: [0; 2],
            worker_pages: [0; 2],
        }
    }

    /// One timed `skep run` (formats `[txt]`) with each worker count.
    pub fn round(&mut self, round: usize, rounds: usize) -> Result<()> {
        for (i, workers) in WORKERS.into_iter().enumerate() {
            let job = Job {
                name: "bench-split",
                source: &self.set.dir,
                formats: &[OutputFormat::Txt],
                workers,
            };
            let run = skep_run::run(self.setup, &job)?;
            let load = run.sample.load1.map_or("-".to_owned(), |l| format!("{l:.2}"));
            eprintln!(
                "documents: split: round {round}/{rounds}: {workers} worker(s) {:.2} s (load {load})",
                run.sample.elapsed.as_secs_f64()
            );
            let s = run.score(self.setup, &self.set.docs, false)?;
            self.tallies[i].add(&run.sample, &s.text, None, s.failed);
            self.worker_ms[i] += s.worker_ms;
            self.worker_pages[i] += s.pages;
        }
        Ok(())
    }

    /// The report; renders a few pages (untimed by the rounds) to tell
    /// the rendering share.
    pub fn report(&self) -> Result<SplitReport> {
        let pages = self.set.pages();
        let [one, two] = [&self.tallies[0], &self.tallies[1]].map(|t| t.report(pages));
        let per_page = |i: usize| ratio(self.worker_ms[i] as f64 / 1000.0, self.worker_pages[i] as f64);
        Ok(SplitReport {
            corpus: self.set.dir.display().to_string(),
            generated: self.set.generated,
            pages,
            pages_per_task: self.setup.pages_per_task,
            speed_up: Goal::new(ratio(one.rate.median_s, two.rate.median_s), GOAL_SPEED_UP),
            render_s_per_page: poppler::render_seconds_per_page(self.setup, &self.set.docs, RENDER_SAMPLE_PAGES)?,
            worker_s_per_page: [per_page(0), per_page(1)],
            one_worker: one,
            two_workers: two,
        })
    }
}

/// The result of the split part; rates are pages per second.
#[derive(Debug, Serialize)]
pub struct SplitReport {
    pub corpus: String,
    pub generated: bool,
    /// Pages of the one document.
    pub pages: usize,
    pub pages_per_task: u32,
    pub one_worker: MethodReport,
    pub two_workers: MethodReport,
    /// Median time with one worker over the median with two.
    pub speed_up: Goal,
    /// Seconds to render a page as skep's worker does, measured apart.
    pub render_s_per_page: f64,
    /// Worker seconds per page (`durationMs`) with one and with two workers.
    pub worker_s_per_page: [f64; 2],
}

impl fmt::Display for SplitReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let origin = if self.generated { "generated" } else { "reused" };
        writeln!(
            f,
            "  split: one scanned PDF of {} small pages ({origin} in {}), pagesPerTask {}",
            self.pages, self.corpus, self.pages_per_task
        )?;
        writeln!(
            f,
            "    {:<18} {:>8} {:>9} {:>8} {:>8} {:>9} {:>9} {:>7} {:>7} {:>6}",
            "workers", "pages/s", "median s", "min s", "max s", "worker s", "CER", "failed", "others", "load1"
        )?;
        for (i, m) in [&self.one_worker, &self.two_workers].into_iter().enumerate() {
            let (others, load) = m.load_cells();
            writeln!(
                f,
                "    {:<18} {:>8.3} {:>9.2} {:>8.2} {:>8.2} {:>9.3} {:>9.4} {:>7} {:>7} {:>6}",
                WORKERS[i],
                m.rate.per_s,
                m.rate.median_s,
                m.rate.min_s,
                m.rate.max_s,
                self.worker_s_per_page[i],
                m.cer_text,
                m.failed,
                others,
                load
            )?;
        }
        writeln!(
            f,
            "    per page: render {:.3} s (pdftoppm, apart); worker s = durationMs per page",
            self.render_s_per_page
        )?;
        write!(f, "    speed-up 1 -> 2 workers: {}", RatioGoal(&self.speed_up))
    }
}
