//! How busy the machine was with other work while a measurement ran: on a
//! shared machine a slow run is often someone else's build, and a number
//! is only worth as much as the quiet it was taken in.
//!
//! Reads Linux's `/proc/stat` (all CPUs) and `/proc/self/stat` (this
//! process and its waited-for children, such as `tesseract` runs); both
//! count in the same clock ticks, so no tick rate is needed.

/// A snapshot taken when a measurement starts.
#[derive(Clone, Copy, Debug)]
pub struct Meter {
    start: Option<Ticks>,
}

#[derive(Clone, Copy, Debug)]
struct Ticks {
    /// Every CPU's time, busy or idle.
    total: u64,
    /// Every CPU's busy time.
    busy: u64,
    /// CPU time of this process and its reaped children.
    ours: u64,
}

impl Meter {
    pub fn start() -> Self {
        Self { start: read() }
    }

    /// The share (0-1) of the whole machine's CPU time that went to other
    /// processes (and the kernel on their behalf) since [`Meter::start`];
    /// `None` where `/proc` cannot be read or too little time passed.
    pub fn others(&self) -> Option<f64> {
        let (a, b) = (self.start?, read()?);
        let total = b.total.checked_sub(a.total)?;
        if total == 0 {
            return None;
        }
        let busy = b.busy.saturating_sub(a.busy);
        let ours = b.ours.saturating_sub(a.ours);
        Some((busy.saturating_sub(ours) as f64 / total as f64).clamp(0.0, 1.0))
    }
}

fn read() -> Option<Ticks> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let own = std::fs::read_to_string("/proc/self/stat").ok()?;
    let (total, busy) = parse_machine(&stat)?;
    Some(Ticks {
        total,
        busy,
        ours: parse_own(&own)?,
    })
}

/// (total, busy) from the `cpu` line of `/proc/stat`: user nice system idle
/// iowait irq softirq steal (guest time is already inside user).
fn parse_machine(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|f| f.parse().ok())
        .collect();
    if v.len() < 8 {
        return None;
    }
    let total: u64 = v.iter().sum();
    let idle = v[3] + v[4];
    Some((total, total - idle))
}

/// utime + stime + cutime + cstime of `/proc/self/stat` (fields 14-17,
/// counted after the command name, which may hold spaces).
fn parse_own(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let sum = fields
        .get(11..15)?
        .iter()
        .map(|f| f.parse::<u64>().ok())
        .sum::<Option<u64>>()?;
    Some(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_stat_lines() {
        let stat = "cpu  100 5 50 800 20 3 2 10 0 0\ncpu0 50 2 25 400 10 1 1 5 0 0\n";
        assert_eq!(parse_machine(stat), Some((990, 170)));
        let own = "4242 (skep bench) S 1 4242 4242 0 -1 4194304 100 0 0 0 70 30 8 2 20 0 3 0";
        assert_eq!(parse_own(own), Some(110));
    }

    #[test]
    fn a_share_is_measured_where_there_is_proc() {
        if !std::path::Path::new("/proc/stat").exists() {
            return;
        }
        let m = Meter::start();
        let until = std::time::Instant::now() + std::time::Duration::from_millis(100);
        while std::time::Instant::now() < until {}
        let share = m.others().expect("a share after 100 ms");
        assert!((0.0..=1.0).contains(&share), "{share}");
    }
}
