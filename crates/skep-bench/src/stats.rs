//! Repeated timings and the rates reported from them.

use std::time::Duration;

use serde::Serialize;

/// Timings of one measurement, repeated. The median is what is reported;
/// min and max show how noisy the runs were.
#[derive(Clone, Debug, Default)]
pub struct Samples(Vec<Duration>);

impl Samples {
    pub fn push(&mut self, d: Duration) {
        self.0.push(d);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The middle timing (the mean of the two middle ones for an even
    /// count); zero when there is none.
    pub fn median(&self) -> Duration {
        let mut sorted = self.0.clone();
        sorted.sort();
        let n = sorted.len();
        match n {
            0 => Duration::ZERO,
            _ if n % 2 == 1 => sorted[n / 2],
            _ => (sorted[n / 2 - 1] + sorted[n / 2]) / 2,
        }
    }

    pub fn min(&self) -> Duration {
        self.0.iter().copied().min().unwrap_or_default()
    }

    pub fn max(&self) -> Duration {
        self.0.iter().copied().max().unwrap_or_default()
    }

    /// `units` of work per second at the median timing, with the spread.
    pub fn rate(&self, units: f64) -> Rate {
        let median = self.median().as_secs_f64();
        Rate {
            per_s: if median > 0.0 { units / median } else { 0.0 },
            median_s: median,
            min_s: self.min().as_secs_f64(),
            max_s: self.max().as_secs_f64(),
            runs: self.len(),
        }
    }
}

/// Throughput of a measurement repeated `runs` times.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Rate {
    /// Units (pages, tasks, files) per second at the median timing.
    pub per_s: f64,
    pub median_s: f64,
    pub min_s: f64,
    pub max_s: f64,
    pub runs: usize,
}

/// `a / b`, or NaN (JSON `null`) when `b` is not positive.
pub fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { f64::NAN }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(ms: &[u64]) -> Samples {
        let mut s = Samples::default();
        for &m in ms {
            s.push(Duration::from_millis(m));
        }
        s
    }

    #[test]
    fn median_of_odd_even_and_no_samples() {
        assert_eq!(samples(&[30, 10, 20]).median(), Duration::from_millis(20));
        assert_eq!(samples(&[40, 10, 20, 30]).median(), Duration::from_millis(25));
        assert_eq!(samples(&[]).median(), Duration::ZERO);
    }

    #[test]
    fn rate_is_units_over_median_with_spread() {
        let r = samples(&[2000, 1000, 4000]).rate(10.0);
        assert_eq!(r.per_s, 5.0);
        assert_eq!((r.min_s, r.max_s, r.runs), (1.0, 4.0, 3));
        assert_eq!(samples(&[]).rate(10.0).per_s, 0.0);
    }

    #[test]
    fn ratio_of_nothing_is_nan() {
        assert_eq!(ratio(3.0, 2.0), 1.5);
        assert!(ratio(1.0, 0.0).is_nan());
    }
}
