//! Stopping in two steps: the first request drains (take no more tasks,
//! finish those in flight within the stop grace, hand back the rest), the
//! second aborts at once. A swarm scale-down sends SIGTERM, then SIGKILL
//! after the service's stop grace period; an operator at a terminal sends
//! SIGINT twice.

use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

/// Cheap to clone; clones share both steps.
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    drain: CancellationToken,
    abort: CancellationToken,
}

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    /// The first call starts draining, the second aborts; later calls do
    /// nothing more.
    pub fn request(&self) {
        if self.drain.is_cancelled() {
            self.abort.cancel();
        } else {
            self.drain.cancel();
        }
    }

    /// Completes once draining was requested.
    pub async fn drained(&self) {
        self.drain.cancelled().await;
    }

    /// Completes once aborting was requested.
    pub async fn aborted(&self) {
        self.abort.cancelled().await;
    }

    /// Requests a step at each SIGTERM or SIGINT, from a task that ends
    /// after the second. Must be called within a Tokio runtime.
    pub fn on_signals(&self) -> std::io::Result<()> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let this = self.clone();
        tokio::spawn(
            async move {
                loop {
                    let name = tokio::select! {
                        Some(()) = term.recv() => "SIGTERM",
                        Some(()) = int.recv() => "SIGINT",
                        else => return,
                    };
                    if this.drain.is_cancelled() {
                        warn!(
                            signal = name,
                            "second signal: exiting without waiting for in-flight tasks"
                        );
                        this.request();
                        return;
                    }
                    info!(
                        signal = name,
                        "draining: taking no more tasks, finishing those in flight"
                    );
                    this.request();
                }
            }
            .instrument(info_span!("signals")),
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    async fn done(f: impl Future<Output = ()>) -> bool {
        tokio::time::timeout(Duration::from_millis(20), f).await.is_ok()
    }

    #[tokio::test]
    async fn first_request_drains_and_second_aborts() {
        let s = Shutdown::new();
        assert!(!done(s.drained()).await);
        s.request();
        assert!(done(s.drained()).await);
        assert!(!done(s.aborted()).await);
        s.clone().request();
        assert!(done(s.aborted()).await);
    }
}
