//! The controller's copy of every job (kube-runtime's reflector store), so
//! that what one reconcile needs of the other jobs — the weights of its
//! pool's jobs for fair shares, a pool's demands, the pools in use, the
//! metrics gauges — costs no store read and does not grow with the number
//! of jobs.
//!
//! It is fed three ways: a full listing at every resync (the first at
//! start), each job reconcile's own read of its job, and the status that
//! reconcile writes (only the lease holder writes statuses, and only
//! there). A spec change reaches it through the watch, which triggers the
//! reconcile that reads it. A listing never undoes what was put while it
//! was being read: each entry remembers when it was put.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard};

use skep_api::{BulkJob, BulkJobStatus, Phase};

use super::dispatch;

#[derive(Default)]
pub struct JobCache(Mutex<Inner>);

#[derive(Default)]
struct Inner {
    /// Moves by one at each put or removal.
    clock: u64,
    jobs: BTreeMap<String, Entry>,
    /// Jobs removed, by when: a listing read before that keeps them out.
    removed: BTreeMap<String, u64>,
}

struct Entry {
    job: BulkJob,
    put_at: u64,
}

/// When a listing started, for [`JobCache::replace`].
#[derive(Clone, Copy, Debug)]
pub struct Mark(u64);

impl JobCache {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Call before reading a full listing, and give the mark to
    /// [`JobCache::replace`] with it.
    pub fn mark(&self) -> Mark {
        Mark(self.lock().clock)
    }

    /// Takes a full listing read after `mark`: jobs put or removed since
    /// then keep what was put (or stay removed); the rest is the listing.
    pub fn replace(&self, mark: Mark, listed: Vec<BulkJob>) {
        let mut inner = self.lock();
        let mut jobs = BTreeMap::new();
        for job in listed {
            let name = job.metadata.name.clone();
            if inner.removed.get(&name).is_some_and(|&at| at > mark.0) {
                continue;
            }
            match inner.jobs.remove(&name) {
                Some(newer) if newer.put_at > mark.0 => jobs.insert(name, newer),
                _ => jobs.insert(name, Entry { job, put_at: mark.0 }),
            };
        }
        // Put after the listing started but not in it: created since.
        let later: Vec<(String, Entry)> = std::mem::take(&mut inner.jobs)
            .into_iter()
            .filter(|(_, e)| e.put_at > mark.0)
            .collect();
        jobs.extend(later);
        inner.jobs = jobs;
        // NB: only removals newer than this listing can still matter.
        inner.removed.retain(|_, at| *at > mark.0);
    }

    /// The job as just read from the store, or as just written.
    pub fn put(&self, job: &BulkJob) {
        let mut inner = self.lock();
        inner.clock += 1;
        let put_at = inner.clock;
        inner.removed.remove(&job.metadata.name);
        inner.jobs.insert(
            job.metadata.name.clone(),
            Entry {
                job: job.clone(),
                put_at,
            },
        );
    }

    /// The status just written for the job `name` (its entry as put when
    /// the reconcile read it).
    pub fn put_status(&self, name: &str, status: &BulkJobStatus) {
        let mut inner = self.lock();
        inner.clock += 1;
        let put_at = inner.clock;
        if let Some(e) = inner.jobs.get_mut(name) {
            e.job.status = Some(status.clone());
            e.put_at = put_at;
        }
    }

    /// The job `name` is gone from the store.
    pub fn remove(&self, name: &str) {
        let mut inner = self.lock();
        inner.clock += 1;
        let at = inner.clock;
        inner.jobs.remove(name);
        inner.removed.insert(name.to_owned(), at);
    }

    /// The jobs of `pool`.
    pub fn pool(&self, pool: &str) -> Vec<BulkJob> {
        self.lock()
            .jobs
            .values()
            .filter(|e| e.job.spec.scaling.pool == pool)
            .map(|e| e.job.clone())
            .collect()
    }

    /// Every job.
    pub fn all(&self) -> Vec<BulkJob> {
        self.lock().jobs.values().map(|e| e.job.clone()).collect()
    }

    /// The pools some job names.
    pub fn pools(&self) -> BTreeSet<String> {
        self.lock()
            .jobs
            .values()
            .map(|e| e.job.spec.scaling.pool.clone())
            .collect()
    }

    /// The summed [`dispatch::weight`] of the running jobs of `pool` other
    /// than `uid`: the jobs a job's dispatch window is shared with.
    pub fn competing_weight(&self, pool: &str, uid: &str) -> f64 {
        self.lock()
            .jobs
            .values()
            .map(|e| &e.job)
            .filter(|j| j.spec.scaling.pool == pool && j.uid() != uid)
            .filter(|j| j.status().phase == Phase::Running && !j.spec.suspend && !j.is_deleting())
            .map(dispatch::weight)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use skep_api::BulkJobSpec;

    use super::*;

    fn job(name: &str, pool: &str, desired: u32) -> BulkJob {
        let mut spec = BulkJobSpec::for_path("/data/in");
        spec.scaling.pool = pool.to_owned();
        let mut job = BulkJob::new(name, spec);
        job.metadata.uid = Some(format!("uid-{name}"));
        job.status = Some(BulkJobStatus {
            phase: Phase::Running,
            ..BulkJobStatus::default()
        });
        job.status.as_mut().unwrap().replicas.desired = desired;
        job
    }

    fn desired(c: &JobCache, name: &str) -> Option<u32> {
        c.all()
            .into_iter()
            .find(|j| j.metadata.name == name)
            .map(|j| j.status().replicas.desired)
    }

    #[test]
    fn a_listing_replaces_what_was_there_before_it() {
        let c = JobCache::default();
        c.put(&job("old", "p", 1));
        c.put(&job("a", "p", 1));
        let mark = c.mark();
        c.replace(mark, vec![job("a", "p", 5), job("b", "q", 2)]);
        assert_eq!(desired(&c, "old"), None, "not listed: gone");
        assert_eq!(desired(&c, "a"), Some(5));
        assert_eq!(c.pools().into_iter().collect::<Vec<_>>(), vec!["p", "q"]);
        assert_eq!(c.pool("q").len(), 1);
    }

    #[test]
    fn a_listing_never_undoes_what_was_put_or_removed_while_it_was_read() {
        let c = JobCache::default();
        c.put(&job("a", "p", 1));
        c.put(&job("gone", "p", 1));
        let mark = c.mark();
        // While the listing is read: a status written, a job created, one
        // deleted.
        c.put(&job("a", "p", 7));
        c.put(&job("new", "p", 3));
        c.remove("gone");
        c.replace(mark, vec![job("a", "p", 1), job("gone", "p", 1)]);
        assert_eq!(desired(&c, "a"), Some(7));
        assert_eq!(desired(&c, "new"), Some(3));
        assert_eq!(desired(&c, "gone"), None);
        // A later listing that has it again brings it back.
        let mark = c.mark();
        c.replace(mark, vec![job("gone", "p", 2)]);
        assert_eq!(desired(&c, "gone"), Some(2));
        assert_eq!(desired(&c, "a"), None);
    }

    #[test]
    fn a_written_status_replaces_only_the_status_and_outlives_an_older_listing() {
        let c = JobCache::default();
        c.put(&job("a", "p", 1));
        let mark = c.mark();
        let mut status = job("a", "p", 6).status().clone();
        status.phase = Phase::Running;
        c.put_status("a", &status);
        c.put_status("unknown", &status);
        c.replace(mark, vec![job("a", "p", 1)]);
        assert_eq!(desired(&c, "a"), Some(6));
        assert_eq!(desired(&c, "unknown"), None, "no entry is made for a job not read");
    }

    #[test]
    fn competing_weight_counts_the_other_running_jobs_of_the_pool() {
        let c = JobCache::default();
        c.put(&job("me", "p", 4));
        c.put(&job("other", "p", 2));
        c.put(&job("elsewhere", "q", 8));
        let mut suspended = job("suspended", "p", 2);
        suspended.spec.suspend = true;
        c.put(&suspended);
        let mut done = job("done", "p", 2);
        done.status.as_mut().unwrap().phase = Phase::Succeeded;
        c.put(&done);
        assert_eq!(
            c.competing_weight("p", "uid-me"),
            dispatch::weight(&job("other", "p", 2))
        );
        assert_eq!(c.competing_weight("r", "uid-me"), 0.0);
    }
}
