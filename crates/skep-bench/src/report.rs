//! What the benches print: goals, number formatting and the output switch
//! between readable blocks and JSON lines.

use std::fmt;

use serde::Serialize;

/// A number and the least it should be.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Goal {
    pub value: f64,
    pub at_least: f64,
    pub met: bool,
}

impl Goal {
    pub fn new(value: f64, at_least: f64) -> Self {
        Self {
            value,
            at_least,
            met: value >= at_least,
        }
    }

    pub fn verdict(&self) -> &'static str {
        if self.met { "met" } else { "MISSED" }
    }
}

/// Prints a goal on a ratio: `1.02 (goal >= 0.97: met)`.
#[derive(Debug)]
pub struct RatioGoal<'a>(pub &'a Goal);

impl fmt::Display for RatioGoal<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = self.0;
        write!(f, "{:.3} (goal >= {:.2}: {})", g.value, g.at_least, g.verdict())
    }
}

/// Prints a goal on a rate: `312k/s (goal >= 200k/s: met)`.
#[derive(Debug)]
pub struct RateGoal<'a>(pub &'a Goal);

impl fmt::Display for RateGoal<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = self.0;
        write!(
            f,
            "{}/s (goal >= {}/s: {})",
            Count(g.value),
            Count(g.at_least),
            g.verdict()
        )
    }
}

/// A large count, shortened: `1.23M`, `456k`, `789`.
#[derive(Debug)]
pub struct Count(pub f64);

impl fmt::Display for Count {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        if v >= 1e6 {
            write!(f, "{:.2}M", v / 1e6)
        } else if v >= 1e4 {
            write!(f, "{:.0}k", v / 1e3)
        } else if v >= 1e3 {
            write!(f, "{:.1}k", v / 1e3)
        } else {
            write!(f, "{v:.2}")
        }
    }
}

/// Prints `report` as its readable block, or as one JSON line when `json`.
pub fn emit<R: Serialize + fmt::Display>(report: &R, json: bool) {
    if json {
        // NB: the reports are plain structs of numbers and strings, which
        // always serialise.
        println!("{}", serde_json::to_string(report).unwrap_or_default());
    } else {
        println!("{report}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goals_say_met_or_missed() {
        assert_eq!(
            RatioGoal(&Goal::new(0.99, 0.97)).to_string(),
            "0.990 (goal >= 0.97: met)"
        );
        assert_eq!(
            RatioGoal(&Goal::new(0.9, 0.97)).to_string(),
            "0.900 (goal >= 0.97: MISSED)"
        );
        assert_eq!(
            RateGoal(&Goal::new(312_345.0, 200_000.0)).to_string(),
            "312k/s (goal >= 200k/s: met)"
        );
    }

    #[test]
    fn counts_are_shortened() {
        assert_eq!(Count(1_234_567.0).to_string(), "1.23M");
        assert_eq!(Count(5_432.0).to_string(), "5.4k");
        assert_eq!(Count(5.4321).to_string(), "5.43");
    }
}
