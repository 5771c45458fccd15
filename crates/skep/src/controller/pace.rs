//! How long a job's tasks take, learnt from its results: dispatch sizes a
//! job's window in time (about [`WINDOW_TIME`] of work queued per worker
//! slot) instead of a fixed number of files, and renews the job's leases
//! while its results keep coming.
//!
//! Like a consumer's prefetch: small fast files get a deep window, so a
//! worker never waits on the controller's round trip; slow pages get the
//! floor (`window_factor` per slot), so suspend, delete and fair sharing
//! still act within a few files. The average rises at once with a slow
//! file and falls slowly, so a job whose files turn slow shrinks its
//! window before it queues much of them.
//!
//! It also paces the full counts of a job's tasks: a count that took `d`
//! is not repeated for [`COUNT_SHARE`] × `d` (at most [`MAX_COUNT_GAP`]),
//! so counting never takes more than about a tenth of the controller's
//! time, whatever the store. SQLite keeps its counts as it goes (a count
//! is a few rows: every reconcile counts); a MongoDB store groups every
//! task of the job, and is counted less often as the job grows.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Work queued per worker slot that dispatch aims for.
pub const WINDOW_TIME: Duration = Duration::from_secs(2);
/// The most tasks queued per worker slot, however fast the files.
pub const MAX_WINDOW_FACTOR: u32 = 256;
/// How much of a slower result moves the average (a slow file counts at
/// once)...
const RISE: f64 = 0.5;
/// ...and of a faster one (a run of fast files is needed to trust them).
const FALL: f64 = 0.02;
/// A full count is not repeated for this many times what it took...
pub const COUNT_SHARE: u32 = 10;
/// ...nor for longer than this.
pub const MAX_COUNT_GAP: Duration = Duration::from_secs(10);
/// Jobs remembered at most (a job is forgotten when it finishes; past
/// this, the least recently heard from goes).
const MAX_JOBS: usize = 10_000;

#[derive(Clone, Copy, Debug)]
struct Pace {
    /// Moving average of a task's time at a worker, in milliseconds; none
    /// before the first result.
    mean_ms: Option<f64>,
    /// Results seen in all.
    results: u64,
    /// When the last result came (or the job was first seen).
    heard: Instant,
    /// When the job's leases were last renewed, and `results` then.
    renewed: Option<(Instant, u64)>,
    /// No full count of the job's tasks before this.
    count_after: Option<Instant>,
    /// Splits of the job's files applied (a count that started before one
    /// was applied cannot say there are none).
    splits_applied: u64,
    /// The last full count found no file split and waiting for assembly,
    /// and none was split since.
    no_splits: bool,
}

impl Pace {
    fn new(now: Instant) -> Self {
        Self {
            mean_ms: None,
            results: 0,
            heard: now,
            renewed: None,
            count_after: None,
            splits_applied: 0,
            no_splits: false,
        }
    }
}

/// Per job (by uid), shared by ingest (which feeds it) and dispatch.
#[derive(Debug, Default)]
pub struct Paces(Mutex<HashMap<String, Pace>>);

impl Paces {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pace>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The job's entry, made (the least recently heard from going when
    /// full) where there is none.
    fn entry<'a>(map: &'a mut HashMap<String, Pace>, job_uid: &str, now: Instant) -> &'a mut Pace {
        if !map.contains_key(job_uid) {
            if map.len() >= MAX_JOBS
                && let Some(oldest) = map.iter().min_by_key(|(_, p)| p.heard).map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
            map.insert(job_uid.to_owned(), Pace::new(now));
        }
        map.get_mut(job_uid).expect("just made")
    }

    /// One result of the job's, that took `duration_ms` at its worker.
    pub fn observe(&self, job_uid: &str, duration_ms: u64, now: Instant) {
        let mut map = self.lock();
        let p = Self::entry(&mut map, job_uid, now);
        let sample = duration_ms as f64;
        p.mean_ms = Some(match p.mean_ms {
            Some(mean) => {
                let k = if sample > mean { RISE } else { FALL };
                mean + k * (sample - mean)
            }
            None => sample,
        });
        p.results += 1;
        p.heard = now;
    }

    /// Whether the job's tasks may be counted in full now.
    pub fn count_due(&self, job_uid: &str, now: Instant) -> bool {
        self.lock()
            .get(job_uid)
            .and_then(|p| p.count_after)
            .is_none_or(|after| now >= after)
    }

    /// A full count of the job's tasks ended at `now` after `took`.
    pub fn counted(&self, job_uid: &str, took: Duration, now: Instant) {
        let mut map = self.lock();
        let gap = took.saturating_mul(COUNT_SHARE).min(MAX_COUNT_GAP);
        Self::entry(&mut map, job_uid, now).count_after = Some(now + gap);
    }

    /// A file of the job was split into page ranges (after the store took
    /// it).
    pub fn split_applied(&self, job_uid: &str, now: Instant) {
        let mut map = self.lock();
        let p = Self::entry(&mut map, job_uid, now);
        p.splits_applied += 1;
        p.no_splits = false;
    }

    /// Taken before a full count, for [`Paces::split_counted`].
    pub fn splits_mark(&self, job_uid: &str) -> u64 {
        self.lock().get(job_uid).map_or(0, |p| p.splits_applied)
    }

    /// A full count that started at `mark` found `split` files split and
    /// waiting for assembly.
    pub fn split_counted(&self, job_uid: &str, mark: u64, split: u64, now: Instant) {
        let mut map = self.lock();
        let p = Self::entry(&mut map, job_uid, now);
        p.no_splits = split == 0 && p.splits_applied == mark;
    }

    /// Whether the job may have split files to assemble: unless a full
    /// count found none and none was split since (a job of images never
    /// asks the store again after its first count).
    pub fn may_have_splits(&self, job_uid: &str) -> bool {
        self.lock().get(job_uid).is_none_or(|p| !p.no_splits)
    }

    /// Tasks to queue per worker slot for this job: [`WINDOW_TIME`] of its
    /// average task, between `floor` and [`MAX_WINDOW_FACTOR`]; `floor`
    /// until a result has come.
    pub fn factor(&self, job_uid: &str, floor: u32) -> u32 {
        let floor = floor.max(1);
        let ceiling = MAX_WINDOW_FACTOR.max(floor);
        let Some(mean) = self.lock().get(job_uid).and_then(|p| p.mean_ms) else {
            return floor;
        };
        // NB: a task under a millisecond counts as one: the controller's
        // own round trip is the limit there.
        let per_task = mean.max(1.0);
        let fits = WINDOW_TIME.as_millis() as f64 / per_task;
        (fits.floor() as u32).clamp(floor, ceiling)
    }

    /// Whether the job's leases should be renewed now: results came since
    /// the last renewal, and that was at least `every` ago. Marks them
    /// renewed when it says yes.
    pub fn renewal_due(&self, job_uid: &str, every: Duration, now: Instant) -> bool {
        let mut map = self.lock();
        let Some(p) = map.get_mut(job_uid).filter(|p| p.results > 0) else {
            return false;
        };
        let due = match p.renewed {
            None => true,
            Some((at, results)) => p.results > results && now.saturating_duration_since(at) >= every,
        };
        if due {
            p.renewed = Some((now, p.results));
        }
        due
    }

    /// A renewal that did not reach the store: due again at the next call.
    pub fn renewal_failed(&self, job_uid: &str) {
        if let Some(p) = self.lock().get_mut(job_uid) {
            p.renewed = None;
        }
    }

    pub fn forget(&self, job_uid: &str) {
        self.lock().remove(job_uid);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_is_a_time_of_work_between_the_floor_and_the_ceiling() {
        let p = Paces::default();
        let t = Instant::now();
        assert_eq!(p.factor("a", 2), 2, "no result yet: the floor");
        p.observe("a", 0, t);
        assert_eq!(p.factor("a", 2), MAX_WINDOW_FACTOR, "instant tasks: the ceiling");
        let q = Paces::default();
        q.observe("b", 100, t);
        assert_eq!(q.factor("b", 2), 20, "2 s of 100 ms tasks");
        q.observe("c", 5_000, t);
        assert_eq!(q.factor("c", 2), 2, "slow tasks: the floor");
        assert_eq!(q.factor("c", 300), 300, "a floor above the ceiling wins");
    }

    #[test]
    fn a_slow_file_shrinks_the_window_at_once_and_fast_ones_grow_it_slowly() {
        let p = Paces::default();
        let t = Instant::now();
        for _ in 0..100 {
            p.observe("a", 1, t);
        }
        assert_eq!(p.factor("a", 2), MAX_WINDOW_FACTOR);
        p.observe("a", 10_000, t);
        assert!(p.factor("a", 2) <= 2, "{}", p.factor("a", 2));
        let mut fast = 0;
        while p.factor("a", 2) < MAX_WINDOW_FACTOR {
            p.observe("a", 1, t);
            fast += 1;
            assert!(fast < 10_000, "never grew back");
        }
        assert!(fast > 100, "grew back after only {fast} fast files");
    }

    #[test]
    fn renewals_follow_results_at_most_every_period() {
        let p = Paces::default();
        let t = Instant::now();
        let every = Duration::from_secs(10);
        assert!(!p.renewal_due("a", every, t), "no result: nothing to renew for");
        p.observe("a", 5, t);
        assert!(p.renewal_due("a", every, t), "the first result renews");
        p.observe("a", 5, t);
        assert!(!p.renewal_due("a", every, t + Duration::from_secs(5)), "too soon");
        assert!(p.renewal_due("a", every, t + Duration::from_secs(11)));
        assert!(
            !p.renewal_due("a", every, t + Duration::from_secs(30)),
            "no result since: the leases run out"
        );
        p.observe("a", 5, t);
        assert!(p.renewal_due("a", every, t + Duration::from_secs(31)));
        p.renewal_failed("a");
        assert!(
            p.renewal_due("a", every, t + Duration::from_secs(31)),
            "a failed renewal is tried again"
        );
    }

    #[test]
    fn full_counts_take_at_most_a_tenth_of_the_time() {
        let p = Paces::default();
        let t = Instant::now();
        assert!(p.count_due("a", t), "never counted: due");
        p.counted("a", Duration::from_micros(50), t);
        assert!(
            p.count_due("a", t + Duration::from_millis(1)),
            "a cheap count: due again at once"
        );
        p.counted("a", Duration::from_millis(200), t);
        assert!(
            !p.count_due("a", t + Duration::from_secs(1)),
            "a count of 200 ms: not within 2 s"
        );
        assert!(p.count_due("a", t + Duration::from_secs(2)));
        p.counted("a", Duration::from_secs(60), t);
        assert!(p.count_due("a", t + MAX_COUNT_GAP), "never more than the longest gap");
        assert_eq!(p.factor("a", 2), 2, "counting says nothing of the pace");
        assert!(!p.renewal_due("a", Duration::ZERO, t), "nor asks for renewals");
    }

    #[test]
    fn memory_is_bounded_and_finished_jobs_are_forgotten() {
        let p = Paces::default();
        let t = Instant::now();
        for i in 0..MAX_JOBS + 10 {
            p.observe(&format!("job-{i}"), 1, t + Duration::from_millis(i as u64));
        }
        assert_eq!(p.len(), MAX_JOBS);
        assert_eq!(p.factor("job-0", 2), 2, "the least recently heard from went first");
        p.forget(&format!("job-{}", MAX_JOBS + 9));
        assert_eq!(p.len(), MAX_JOBS - 1);
    }

    #[test]
    fn split_files_are_looked_for_until_a_count_finds_none_and_none_came_since() {
        let p = Paces::default();
        let t = Instant::now();
        assert!(p.may_have_splits("a"), "a job never counted may have some");
        let mark = p.splits_mark("a");
        p.split_counted("a", mark, 2, t);
        assert!(p.may_have_splits("a"), "the count found two");
        let mark = p.splits_mark("a");
        p.split_counted("a", mark, 0, t);
        assert!(!p.may_have_splits("a"), "none found, none since");
        p.split_applied("a", t);
        assert!(p.may_have_splits("a"), "a file split since");
        // A split applied while a count ran: that count cannot clear it.
        let mark = p.splits_mark("a");
        p.split_applied("a", t);
        p.split_counted("a", mark, 0, t);
        assert!(p.may_have_splits("a"), "split during the count");
        p.forget("a");
        assert!(p.may_have_splits("a"), "a forgotten job may have some again");
    }
}
