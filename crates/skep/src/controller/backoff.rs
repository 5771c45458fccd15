//! Exponential backoff for the error policy: each failure of a key doubles
//! its wait, up to a cap; a success resets it.

use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Self {
        Self { base, max, failures: 0 }
    }

    /// The wait after one more failure.
    pub fn next_delay(&mut self) -> Duration {
        let d = delay_for(self.base, self.max, self.failures);
        self.failures = self.failures.saturating_add(1);
        d
    }

    pub fn reset(&mut self) {
        self.failures = 0;
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// `base * 2^n`, capped at `max`.
pub fn delay_for(base: Duration, max: Duration, n: u32) -> Duration {
    let factor = 1u32.checked_shl(n.min(31)).unwrap_or(u32::MAX);
    base.checked_mul(factor).unwrap_or(max).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_then_caps_then_resets() {
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(5));
        let got: Vec<u64> = (0..6).map(|_| b.next_delay().as_millis() as u64).collect();
        assert_eq!(got, vec![500, 1000, 2000, 4000, 5000, 5000]);
        assert_eq!(b.failures(), 6);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(500));
    }

    #[test]
    fn never_overflows() {
        assert_eq!(
            delay_for(Duration::from_secs(1), Duration::from_secs(300), 100),
            Duration::from_secs(300)
        );
        assert_eq!(
            delay_for(Duration::from_secs(u64::MAX / 2), Duration::from_secs(9), 3),
            Duration::from_secs(9)
        );
    }
}
