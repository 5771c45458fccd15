//! The reconcile scheduler, with kube-runtime's guarantees:
//! - requests for a key are merged: a key waiting to run runs once, at the
//!   earliest time any request asked for;
//! - a key never runs twice at once: a request that arrives while it runs
//!   is kept and runs after it;
//! - at most `concurrency` keys run at once;
//! - the work returns when to run the key again (`None`: only on a new
//!   request).

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::time::DelayQueue;
use tokio_util::time::delay_queue;

/// Requests the scheduler holds before senders wait.
// NB: the scheduler merges requests, so this only bounds bursts (a result
// batch triggers one request per job it touched).
pub const REQUEST_BUFFER: usize = 1024;

/// Asks the scheduler to run keys. Cheap to clone.
#[derive(Debug)]
pub struct Trigger<K> {
    tx: mpsc::Sender<(K, Instant)>,
}

impl<K> Clone for Trigger<K> {
    fn clone(&self) -> Self {
        Self { tx: self.tx.clone() }
    }
}

impl<K: Send> Trigger<K> {
    /// Run `key` as soon as possible.
    pub async fn now(&self, key: K) {
        let _ = self.tx.send((key, Instant::now())).await;
    }

    /// Run `key` at `at` (or earlier, if asked).
    pub async fn at(&self, key: K, at: Instant) {
        let _ = self.tx.send((key, at)).await;
    }
}

pub struct Scheduler<K> {
    rx: mpsc::Receiver<(K, Instant)>,
    concurrency: usize,
}

/// A scheduler and the handle that feeds it.
pub fn scheduler<K>(concurrency: usize) -> (Trigger<K>, Scheduler<K>) {
    let (tx, rx) = mpsc::channel(REQUEST_BUFFER);
    (
        Trigger { tx },
        Scheduler {
            rx,
            concurrency: concurrency.max(1),
        },
    )
}

struct State<K> {
    queue: DelayQueue<K>,
    scheduled: HashMap<K, (delay_queue::Key, Instant)>,
    running: HashMap<K, Option<Instant>>,
}

impl<K: Hash + Eq + Clone> State<K> {
    fn request(&mut self, key: K, at: Instant) {
        if let Some(again) = self.running.get_mut(&key) {
            *again = Some(again.map_or(at, |t| t.min(at)));
            return;
        }
        match self.scheduled.get_mut(&key) {
            Some((qkey, when)) => {
                if at < *when {
                    self.queue.reset_at(qkey, at);
                    *when = at;
                }
            }
            None => {
                let qkey = self.queue.insert_at(key.clone(), at);
                self.scheduled.insert(key, (qkey, at));
            }
        }
    }
}

impl<K> Scheduler<K>
where
    K: Hash + Eq + Clone + Send + 'static,
{
    /// Runs until `shutdown`, then waits for the keys that are running.
    pub async fn run<F, Fut>(mut self, mut work: F, shutdown: CancellationToken)
    where
        F: FnMut(K) -> Fut,
        Fut: Future<Output = Option<Duration>> + Send + 'static,
    {
        let mut st = State {
            queue: DelayQueue::new(),
            scheduled: HashMap::new(),
            running: HashMap::new(),
        };
        let mut tasks: JoinSet<(K, Option<Duration>)> = JoinSet::new();
        loop {
            let can_start = st.running.len() < self.concurrency && !st.queue.is_empty();
            tokio::select! {
                _ = shutdown.cancelled() => break,
                req = self.rx.recv() => match req {
                    Some((key, at)) => st.request(key, at),
                    None => break,
                },
                expired = std::future::poll_fn(|cx| st.queue.poll_expired(cx)), if can_start => {
                    if let Some(expired) = expired {
                        let key = expired.into_inner();
                        st.scheduled.remove(&key);
                        st.running.insert(key.clone(), None);
                        let fut = work(key.clone());
                        tasks.spawn(async move { (key, fut.await) });
                    }
                }
                Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                    if let Ok((key, after)) = done {
                        let again = st.running.remove(&key).flatten();
                        if let Some(d) = after {
                            st.request(key.clone(), Instant::now() + d);
                        }
                        if let Some(at) = again {
                            st.request(key, at);
                        }
                    }
                }
            }
        }
        while tasks.join_next().await.is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Default)]
    struct Log {
        runs: Vec<(String, Duration)>,
        running: HashMap<String, usize>,
        max_same_key: usize,
        total_running: usize,
        max_total: usize,
    }

    fn start(
        concurrency: usize,
        work_time: Duration,
        requeue: Option<Duration>,
    ) -> (Trigger<String>, Arc<Mutex<Log>>, CancellationToken, Instant) {
        let (trigger, sched) = scheduler::<String>(concurrency);
        let log = Arc::new(Mutex::new(Log::default()));
        let stop = CancellationToken::new();
        let t0 = Instant::now();
        let l = log.clone();
        tokio::spawn(sched.run(
            move |key: String| {
                let l = l.clone();
                async move {
                    {
                        let mut g = l.lock().unwrap();
                        g.runs.push((key.clone(), t0.elapsed()));
                        let n = g.running.entry(key.clone()).or_default();
                        *n += 1;
                        let n = *n;
                        g.max_same_key = g.max_same_key.max(n);
                        g.total_running += 1;
                        g.max_total = g.max_total.max(g.total_running);
                    }
                    tokio::time::sleep(work_time).await;
                    let mut g = l.lock().unwrap();
                    *g.running.get_mut(&key).unwrap() -= 1;
                    g.total_running -= 1;
                    requeue
                }
            },
            stop.clone(),
        ));
        (trigger, log, stop, t0)
    }

    fn runs(log: &Arc<Mutex<Log>>) -> Vec<(String, Duration)> {
        log.lock().unwrap().runs.clone()
    }

    #[tokio::test(start_paused = true)]
    async fn requests_for_a_waiting_key_are_merged() {
        let (t, log, _stop, _) = start(4, Duration::from_millis(10), None);
        let later = Instant::now() + Duration::from_secs(1);
        for _ in 0..3 {
            t.at("a".into(), later).await;
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(runs(&log), vec![("a".into(), Duration::from_secs(1))]);
    }

    #[tokio::test(start_paused = true)]
    async fn the_earliest_request_wins() {
        let (t, log, _stop, _) = start(4, Duration::from_millis(10), None);
        t.at("a".into(), Instant::now() + Duration::from_secs(10)).await;
        t.at("a".into(), Instant::now() + Duration::from_secs(2)).await;
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert_eq!(runs(&log), vec![("a".into(), Duration::from_secs(2))]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_never_runs_twice_at_once() {
        let (t, log, _stop, _) = start(4, Duration::from_secs(1), None);
        t.now("a".into()).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        t.now("a".into()).await;
        t.now("a".into()).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        let r = runs(&log);
        assert_eq!(r.len(), 2, "{r:?}");
        assert_eq!(
            r[1].1,
            Duration::from_secs(1),
            "the second run starts when the first ends"
        );
        assert_eq!(log.lock().unwrap().max_same_key, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrency_is_bounded() {
        let (t, log, _stop, _) = start(2, Duration::from_secs(1), None);
        for k in ["a", "b", "c", "d", "e"] {
            t.now(k.into()).await;
        }
        tokio::time::sleep(Duration::from_secs(10)).await;
        let g = log.lock().unwrap();
        assert_eq!(g.runs.len(), 5);
        assert_eq!(g.max_total, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn work_requeues_itself() {
        let (t, log, stop, _) = start(2, Duration::ZERO, Some(Duration::from_secs(3)));
        t.now("a".into()).await;
        tokio::time::sleep(Duration::from_millis(9500)).await;
        stop.cancel();
        let times: Vec<u64> = runs(&log).into_iter().map(|(_, d)| d.as_secs()).collect();
        assert_eq!(times, vec![0, 3, 6, 9]);
    }
}
