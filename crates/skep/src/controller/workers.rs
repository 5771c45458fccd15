//! The workers the controller hears from: each worker publishes a
//! heartbeat ([`WorkerBeat`]) on [`WORKERS_TOPIC`] every few seconds, with
//! its pool and slots, wherever it runs (a local replica, a swarm task, a
//! remote host the controller never started). The registry keeps the last
//! beat of each; a pool's dispatch window is sized by the slots of its
//! live workers, `GET /api/workers` lists them, and `--runtime external`
//! counts them as the pool's running replicas.
//!
//! A worker is live until three of its beats are missed, listed as stale
//! until ten minutes have passed, then forgotten; a worker that stops
//! says so in its last beat and is forgotten at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use skep_api::{WORKERS_TOPIC, WireError, WorkerBeat};
use skep_queue::{SubscribeOptions, TaskQueue};
use tokio_util::sync::CancellationToken;

/// Beats missed before a worker is stale.
const MISSED_BEATS: u64 = 3;
/// The beat interval a worker may claim, clamped into this range (so that
/// a worker goes stale within three minutes whatever it says).
const MIN_INTERVAL_MS: u64 = 1_000;
const MAX_INTERVAL_MS: u64 = 60_000;
/// Most slots one worker counts for (a beat saying more is clamped).
pub const MAX_SLOTS: u32 = 256;
/// Longest id, node, pool or version kept from a beat.
const MAX_FIELD: usize = 253;
/// Largest beat read; a bigger message is dropped unread.
const MAX_BEAT_BYTES: usize = 4096;
/// How long a stale worker stays listed.
const FORGET_AFTER_MS: i64 = 600_000;
/// Most workers kept: beats from more are dropped (a bound on memory
/// whatever publishes on the topic).
pub const MAX_WORKERS: usize = 10_000;
/// The channel the controller reads beats with.
const CHANNEL: &str = "controller";

/// One worker as the registry knows it: its last beat, when it came, and
/// whether it is stale.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkerInfo {
    #[serde(flatten)]
    pub beat: WorkerBeat,
    /// When its last beat came (Unix milliseconds).
    pub last_seen_ms: i64,
    /// Three beats missed: not counted in its pool's window.
    pub stale: bool,
}

#[derive(Clone, Debug)]
struct Seen {
    beat: WorkerBeat,
    at_ms: i64,
}

impl Seen {
    fn stale(&self, now_ms: i64) -> bool {
        now_ms - self.at_ms > grace_ms(&self.beat)
    }
}

/// How long after a beat its worker is live.
fn grace_ms(beat: &WorkerBeat) -> i64 {
    (beat.interval_ms.clamp(MIN_INTERVAL_MS, MAX_INTERVAL_MS) * MISSED_BEATS) as i64
}

/// A beat fit to keep: its names short and printable, its slots bounded;
/// `None` for one that is not.
fn sane(mut beat: WorkerBeat) -> Option<WorkerBeat> {
    let ok = |s: &str| !s.is_empty() && s.len() <= MAX_FIELD && s.chars().all(|c| !c.is_control());
    if !ok(&beat.id) || !ok(&beat.node) || !ok(&beat.pool) || beat.version.len() > MAX_FIELD {
        return None;
    }
    beat.slots = beat.slots.clamp(1, MAX_SLOTS);
    Some(beat)
}

/// The last beat of every worker heard from. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Registry(Arc<Mutex<HashMap<String, Seen>>>);

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Seen>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a beat heard at `now_ms`. A beat with oversized or empty
    /// names is dropped; one sent longer ago than its worker's grace (a
    /// backlog read by a controller that just started) is dropped too,
    /// unless it says the worker left.
    pub fn record(&self, beat: WorkerBeat, now_ms: i64) {
        let Some(beat) = sane(beat) else {
            return;
        };
        if !beat.leaving && beat.sent_ms > 0 && now_ms - beat.sent_ms > grace_ms(&beat) {
            return;
        }
        let mut map = self.lock();
        map.retain(|_, s| now_ms - s.at_ms <= FORGET_AFTER_MS);
        if beat.leaving {
            map.remove(&beat.id);
            return;
        }
        if map.len() >= MAX_WORKERS && !map.contains_key(&beat.id) {
            return;
        }
        map.insert(beat.id.clone(), Seen { beat, at_ms: now_ms });
    }

    /// Every worker known at `now_ms`, by pool then id.
    pub fn list(&self, now_ms: i64) -> Vec<WorkerInfo> {
        let map = self.lock();
        let mut out: Vec<WorkerInfo> = map
            .values()
            .filter(|s| now_ms - s.at_ms <= FORGET_AFTER_MS)
            .map(|s| WorkerInfo {
                beat: s.beat.clone(),
                last_seen_ms: s.at_ms,
                stale: s.stale(now_ms),
            })
            .collect();
        out.sort_by(|a, b| (&a.beat.pool, &a.beat.id).cmp(&(&b.beat.pool, &b.beat.id)));
        out
    }

    /// The live workers of `pool` at `now_ms`: how many, their slots, and
    /// their nodes.
    pub fn live(&self, pool: &str, now_ms: i64) -> Live {
        let map = self.lock();
        let mut live = Live::default();
        let mut nodes = std::collections::BTreeSet::new();
        for s in map.values().filter(|s| s.beat.pool == pool && !s.stale(now_ms)) {
            live.workers += 1;
            live.slots = live.slots.saturating_add(u64::from(s.beat.slots));
            if nodes.len() < MAX_NODES {
                nodes.insert(s.beat.node.clone());
            }
        }
        live.nodes = nodes.into_iter().collect();
        live
    }
}

/// Most node names a pool's live workers report (what a job's
/// `status.nodesUsed` may gain from them).
pub const MAX_NODES: usize = 256;

/// A pool's live workers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Live {
    pub workers: u32,
    pub slots: u64,
    pub nodes: Vec<String>,
}

/// Reads beats into `registry` until `stop`; subscribes again after the
/// broker drops the subscription. Never ends on its own.
pub async fn listen(queue: Arc<dyn TaskQueue>, registry: Registry, stop: CancellationToken) -> super::Result<()> {
    let mut backoff = Duration::from_millis(200);
    loop {
        let opts = SubscribeOptions::new(CHANNEL, 256, Duration::from_secs(60));
        let subscribed = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            s = queue.subscribe(WORKERS_TOPIC, opts) => s,
        };
        match subscribed {
            Ok(mut sub) => {
                backoff = Duration::from_millis(200);
                loop {
                    let delivery = tokio::select! {
                        _ = stop.cancelled() => return Ok(()),
                        d = sub.next() => d,
                    };
                    let Some(d) = delivery else { break };
                    if d.body.len() > MAX_BEAT_BYTES {
                        tracing::debug!(bytes = d.body.len(), "a heartbeat too large to read");
                        let _ = d.ack().await;
                        continue;
                    }
                    match WorkerBeat::decode(&d.body) {
                        Ok(beat) => registry.record(beat, chrono::Utc::now().timestamp_millis()),
                        Err(WireError::Version { found }) => {
                            tracing::debug!(found, "a heartbeat of another wire version")
                        }
                        Err(error) => tracing::debug!(%error, "an unreadable heartbeat"),
                    }
                    let _ = d.ack().await;
                }
                tracing::debug!("the heartbeat subscription ended; subscribing again");
            }
            Err(error) => tracing::debug!(%error, retry_in = ?backoff, "cannot subscribe to heartbeats"),
        }
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beat(id: &str, pool: &str, slots: u32) -> WorkerBeat {
        WorkerBeat::new(id, &format!("node-{id}"), pool, slots, 10_000)
    }

    #[test]
    fn the_topic_is_ephemeral() {
        assert!(skep_queue::is_ephemeral(WORKERS_TOPIC));
    }

    #[test]
    fn live_workers_count_until_three_beats_are_missed() {
        let r = Registry::new();
        r.record(beat("a", "p", 4), 0);
        r.record(beat("b", "p", 2), 5_000);
        r.record(beat("c", "q", 8), 5_000);
        let live = r.live("p", 20_000);
        assert_eq!((live.workers, live.slots), (2, 6));
        assert_eq!(live.nodes, ["node-a", "node-b"]);
        // a's last beat was 31 s ago: stale, listed, not counted.
        let live = r.live("p", 31_000);
        assert_eq!((live.workers, live.slots), (1, 2));
        let listed = r.list(31_000);
        assert_eq!(listed.len(), 3);
        assert!(listed.iter().find(|w| w.beat.id == "a").is_some_and(|w| w.stale));
        // Forgotten after ten minutes.
        r.record(beat("b", "p", 2), 700_000);
        assert_eq!(
            r.list(700_000).iter().map(|w| w.beat.id.as_str()).collect::<Vec<_>>(),
            ["b"]
        );
    }

    #[test]
    fn a_leaving_worker_is_forgotten_at_once() {
        let r = Registry::new();
        r.record(beat("a", "p", 4), 0);
        r.record(
            WorkerBeat {
                leaving: true,
                ..beat("a", "p", 4)
            },
            1_000,
        );
        assert_eq!(r.live("p", 1_000).workers, 0);
        assert!(r.list(1_000).is_empty());
    }

    #[test]
    fn hostile_or_stale_beats_are_dropped_and_slots_clamped() {
        let r = Registry::new();
        let long = "x".repeat(MAX_FIELD + 1);
        for bad in [
            WorkerBeat::new(&long, "n", "p", 1, 10_000),
            WorkerBeat::new("a", &long, "p", 1, 10_000),
            WorkerBeat::new("a", "n", &long, 1, 10_000),
            WorkerBeat::new("", "n", "p", 1, 10_000),
            WorkerBeat::new("a\u{7}", "n", "p", 1, 10_000),
            WorkerBeat {
                version: long.clone(),
                ..WorkerBeat::new("a", "n", "p", 1, 10_000)
            },
        ] {
            r.record(bad, 0);
        }
        assert!(r.list(0).is_empty());
        r.record(WorkerBeat::new("big", "n", "p", 1_000_000, 10_000), 0);
        assert_eq!(r.live("p", 0).slots, u64::from(MAX_SLOTS));
        // Sent 40 s before it was read (a backlog): says nothing of now.
        r.record(
            WorkerBeat {
                sent_ms: 60_000,
                ..WorkerBeat::new("old", "n", "q", 1, 10_000)
            },
            100_000,
        );
        assert_eq!(r.live("q", 100_000).workers, 0);
        // A worker claiming a beat an hour apart is stale within 3 minutes.
        r.record(WorkerBeat::new("slow", "n", "s", 1, 3_600_000), 0);
        assert_eq!(r.live("s", 170_000).workers, 1);
        assert_eq!(r.live("s", 181_000).workers, 0);
    }

    #[test]
    fn the_registry_is_bounded() {
        let r = Registry::new();
        for i in 0..MAX_WORKERS + 5 {
            r.record(beat(&format!("w{i}"), "p", 1), 0);
        }
        assert_eq!(r.list(0).len(), MAX_WORKERS);
    }
}
