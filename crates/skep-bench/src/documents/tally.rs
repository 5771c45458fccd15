//! Timed runs of one method over the rounds, with how busy the machine
//! was during each: the share of CPU other processes took (see
//! [`crate::load`]) and the 1-minute load average when the run started.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::score::Score;
use crate::load::Meter;
use crate::stats::{Rate, Samples};

/// A running clock over one timed run.
#[derive(Debug)]
pub struct Clock {
    started: Instant,
    meter: Meter,
    load1: Option<f64>,
}

impl Clock {
    pub fn start() -> Self {
        Self {
            load1: load_average(),
            meter: Meter::start(),
            started: Instant::now(),
        }
    }

    pub fn stop(&self) -> Sample {
        Sample {
            elapsed: self.started.elapsed(),
            others: self.meter.others(),
            load1: self.load1,
        }
    }
}

/// One timed run.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub elapsed: Duration,
    /// Share (0-1) of the machine's CPU other processes used meanwhile.
    pub others: Option<f64>,
    /// The 1-minute load average when it started (see [`load_average`]).
    pub load1: Option<f64>,
}

/// Every round of one method.
#[derive(Debug, Default)]
pub struct Tally {
    samples: Samples,
    others: Option<f64>,
    load1: Option<f64>,
    text: Vec<f64>,
    pdf: Vec<f64>,
    failed: usize,
}

impl Tally {
    /// Adds a round: its timing, how well its text read (`text`), how well
    /// the text of its searchable PDFs read (`pdf`, where it makes them)
    /// and the documents it failed on.
    pub fn add(&mut self, s: &Sample, text: &Score, pdf: Option<&Score>, failed: usize) {
        self.samples.push(s.elapsed);
        self.others = max(self.others, s.others);
        self.load1 = max(self.load1, s.load1);
        self.text.push(text.cer());
        if let Some(p) = pdf {
            self.pdf.push(p.cer());
        }
        self.failed = self.failed.max(failed);
    }

    pub fn median_s(&self) -> f64 {
        self.samples.median().as_secs_f64()
    }

    /// The report of a method that read `pages` pages per round.
    pub fn report(&self, pages: usize) -> MethodReport {
        MethodReport {
            rate: self.samples.rate(pages as f64),
            cer_text: mean(&self.text),
            cer_pdf: (!self.pdf.is_empty()).then(|| mean(&self.pdf)),
            failed: self.failed,
            others_load: self.others,
            load1: self.load1,
        }
    }
}

/// Pages per second of one method (at the median run), how well it read,
/// and how busy the machine was.
#[derive(Clone, Debug, Serialize)]
pub struct MethodReport {
    #[serde(flatten)]
    pub rate: Rate,
    /// Character error rate of its text against the ground truth (mean
    /// over rounds; documents it failed on count as empty).
    pub cer_text: f64,
    /// The same for `pdftotext` of its searchable PDFs, where it makes them.
    pub cer_pdf: Option<f64>,
    /// Documents it failed on (most in any round).
    pub failed: usize,
    /// The most of the machine's CPU (0-1) other processes used during one
    /// of its runs.
    pub others_load: Option<f64>,
    /// The highest 1-minute load average at the start of one of its runs.
    pub load1: Option<f64>,
}

impl MethodReport {
    /// `others` and `load1` as table cells.
    pub fn load_cells(&self) -> (String, String) {
        (
            self.others_load
                .map_or("-".to_owned(), |o| format!("{:.0}%", o * 100.0)),
            self.load1.map_or("-".to_owned(), |l| format!("{l:.2}")),
        )
    }
}

fn max(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// Mean of `v`; NaN when empty or when any value is NaN.
fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.iter().sum::<f64>() / v.len() as f64
}

/// The 1-minute load average (Linux `/proc/loadavg`). It trails: a run
/// started just after another of the bench's own carries some of that
/// one's load.
pub fn load_average() -> Option<f64> {
    parse_load_average(&std::fs::read_to_string("/proc/loadavg").ok()?)
}

fn parse_load_average(text: &str) -> Option<f64> {
    text.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_average_is_the_first_field() {
        assert_eq!(parse_load_average("1.52 2.07 3.74 2/345 6789\n"), Some(1.52));
        assert_eq!(parse_load_average(""), None);
    }

    #[test]
    fn a_tally_reports_the_median_and_the_worst_load() {
        let mut t = Tally::default();
        let mut good = Score::default();
        good.add("abc", "abc");
        for (ms, others, load) in [(3000, 0.1, 1.0), (1000, 0.5, 2.5), (2000, 0.2, 0.5)] {
            let s = Sample {
                elapsed: Duration::from_millis(ms),
                others: Some(others),
                load1: Some(load),
            };
            t.add(&s, &good, None, usize::from(ms == 1000));
        }
        let r = t.report(10);
        assert_eq!(r.rate.per_s, 5.0);
        assert_eq!((r.others_load, r.load1, r.failed), (Some(0.5), Some(2.5), 1));
        assert_eq!(r.cer_text, 0.0);
        assert_eq!(r.cer_pdf, None);
        assert_eq!(r.load_cells(), ("50%".to_owned(), "2.50".to_owned()));
    }
}
