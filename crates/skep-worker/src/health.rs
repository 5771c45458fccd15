//! What `/readyz` and the queue watchdog of a worker process know: whether
//! it holds a working task subscription, and whether it is draining.
//!
//! The queue counts as up while the worker is subscribed to its pool's task
//! topic and its last result publish (if any failed since) went through. A
//! process starts with the queue down: it has not connected yet.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use crate::metrics::Metrics;

/// Why a worker process is or is not ready, as `/readyz` tells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// Subscribed and taking tasks.
    Ready,
    /// Not subscribed: connecting, or the broker connection was lost.
    QueueDown,
    /// Results cannot be published.
    PublishFailing,
    /// Stopping: takes no more tasks.
    Draining,
}

impl Readiness {
    pub fn as_str(self) -> &'static str {
        match self {
            Readiness::Ready => "ready",
            Readiness::QueueDown => "not subscribed to the task queue",
            Readiness::PublishFailing => "results cannot be published",
            Readiness::Draining => "draining",
        }
    }
}

#[derive(Debug)]
struct State {
    subscribed: bool,
    publish_failing: bool,
    draining: bool,
    /// Since when the queue has been down; `None` while it is up.
    down_since: Option<Instant>,
}

/// Shared between the worker's observer, the HTTP handlers and the
/// watchdog. Keeps the `skep_worker_ready` gauge in step.
#[derive(Debug)]
pub struct Health {
    state: Mutex<State>,
    metrics: Metrics,
}

impl Health {
    pub fn new(metrics: Metrics) -> Self {
        metrics.set_ready(false);
        Self {
            state: Mutex::new(State {
                subscribed: false,
                publish_failing: false,
                draining: false,
                down_since: Some(Instant::now()),
            }),
            metrics,
        }
    }

    // NB: a poisoned lock means a panic while holding it; the state is
    // plain flags, consistent between statements, so keep going.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn update(&self, change: impl FnOnce(&mut State)) {
        let mut state = self.lock();
        change(&mut state);
        let up = state.subscribed && !state.publish_failing;
        match (up, state.down_since) {
            (true, Some(_)) => state.down_since = None,
            (false, None) => state.down_since = Some(Instant::now()),
            _ => {}
        }
        self.metrics.set_ready(readiness(&state) == Readiness::Ready);
    }

    pub fn set_subscribed(&self, subscribed: bool) {
        self.update(|s| s.subscribed = subscribed);
    }

    pub fn set_publish_failing(&self, failing: bool) {
        self.update(|s| s.publish_failing = failing);
    }

    /// From now on the process is not ready, for good.
    pub fn set_draining(&self) {
        self.update(|s| s.draining = true);
    }

    pub fn readiness(&self) -> Readiness {
        readiness(&self.lock())
    }

    /// How long the queue has been down, `None` while it is up.
    pub fn queue_down_for(&self) -> Option<Duration> {
        self.lock().down_since.map(|t| t.elapsed())
    }
}

fn readiness(s: &State) -> Readiness {
    if s.draining {
        Readiness::Draining
    } else if !s.subscribed {
        Readiness::QueueDown
    } else if s.publish_failing {
        Readiness::PublishFailing
    } else {
        Readiness::Ready
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready_gauge(m: &Metrics) -> bool {
        let text = m.encode().expect("encode");
        text.lines().any(|l| l == "skep_worker_ready 1")
    }

    #[tokio::test(start_paused = true)]
    async fn the_queue_is_down_until_subscribed_and_counts_from_each_loss() {
        let metrics = Metrics::new(1).expect("metrics");
        let h = Health::new(metrics.clone());
        assert_eq!(h.readiness(), Readiness::QueueDown);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(h.queue_down_for(), Some(Duration::from_secs(5)));
        assert!(!ready_gauge(&metrics));

        h.set_subscribed(true);
        assert_eq!(h.readiness(), Readiness::Ready);
        assert_eq!(h.queue_down_for(), None);
        assert!(ready_gauge(&metrics));

        tokio::time::advance(Duration::from_secs(60)).await;
        h.set_publish_failing(true);
        assert_eq!(h.readiness(), Readiness::PublishFailing);
        tokio::time::advance(Duration::from_secs(2)).await;
        // Losing the subscription as well does not restart the count.
        h.set_subscribed(false);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(h.queue_down_for(), Some(Duration::from_secs(3)));
        h.set_subscribed(true);
        assert_eq!(h.queue_down_for(), Some(Duration::from_secs(3)), "publishes still fail");
        h.set_publish_failing(false);
        assert_eq!(h.queue_down_for(), None);
        assert!(ready_gauge(&metrics));
    }

    #[tokio::test(start_paused = true)]
    async fn draining_is_never_ready_again() {
        let metrics = Metrics::new(1).expect("metrics");
        let h = Health::new(metrics.clone());
        h.set_subscribed(true);
        h.set_draining();
        assert_eq!(h.readiness(), Readiness::Draining);
        h.set_subscribed(true);
        assert_eq!(h.readiness(), Readiness::Draining);
        assert!(!ready_gauge(&metrics));
    }
}
