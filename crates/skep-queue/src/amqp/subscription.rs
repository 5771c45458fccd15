//! A consumer on its own channel, with the visibility timeout RabbitMQ does
//! not have.
//!
//! RabbitMQ keeps an un-acked delivery with its consumer until the channel
//! closes (or, in 3.10+, until `consumer_timeout`, 30 min by default, when it
//! closes the channel itself). The seam promises more: a delivery not
//! settled or touched within the visibility timeout comes back. So a pump
//! task per subscription takes every delivery off the channel as it arrives
//! and keeps it in a table with a deadline: `visibility` after it arrived
//! while it waits for `next` (the broker counts it as delivered the moment
//! it sends it, so a subscription that stops calling `next` must not sit on
//! its prefetch), and `visibility` after `next` handed it out (or it was
//! last touched) from then on. Past its deadline the pump rejects it
//! (requeue). Whoever takes a delivery out of the table (a settle, the pump,
//! a drop) is the only one that settles it with the broker; everyone after
//! finds it gone and does nothing, which is what makes a late ack harmless.
//!
//! Dropping the subscription cancels the consumer and hands back at once
//! what the broker had sent but `next` had not handed out. Deliveries
//! already handed out stay valid: they can still be acked (a worker that
//! stops drains its in-flight tasks that way), and their timeout still
//! holds. The channel closes once the last of them is settled or timed out.
//! A process that dies closes its connection, and the broker hands
//! everything it held to other consumers at once.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use lapin::options::{BasicAckOptions, BasicCancelOptions, BasicRejectOptions};
use lapin::{Channel, Consumer};
use tokio::runtime::Handle;
use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::{Instrument, debug, info_span, warn};

use super::{AmqpError, CALL_TIMEOUT, Inner, call, lock, topology};
use crate::{Acker, Delivery, Subscription};

/// How long a dropped subscription waits for deliveries still on their way
/// after its cancel.
const CANCEL_DRAIN: Duration = Duration::from_secs(2);

pub(super) struct AmqpSubscription {
    shared: Arc<Shared>,
}

struct Shared {
    queue: Arc<Inner>,
    topic: String,
    channel: Channel,
    visibility: Duration,
    state: Mutex<State>,
    /// Wakes `next` when a delivery arrives or the pump stops.
    arrived: Notify,
    /// Wakes the pump when the subscription is dropped.
    dropped: Notify,
    /// This topic's count of deliveries held by this process.
    in_flight: Arc<AtomicU64>,
    /// Set when the subscription is dropped.
    closed: AtomicBool,
    runtime: Handle,
}

#[derive(Default)]
struct State {
    held: HashMap<u64, Held>,
    /// Tags of deliveries not yet handed out, in arrival order. Every tag in
    /// it is in `held` (the pump removes a tag from both).
    waiting: VecDeque<u64>,
    /// The consumer is gone: once `waiting` is empty, `next` returns `None`.
    ended: bool,
}

/// A delivery the broker sent and nobody settled yet.
struct Held {
    acker: lapin::Acker,
    deadline: Instant,
    /// Until `next` hands it out.
    waiting: Option<Waiting>,
}

struct Waiting {
    body: Bytes,
    attempts: u32,
    id: String,
}

impl Shared {
    /// Takes the delivery out of the table: the caller now settles it.
    fn claim(&self, tag: u64) -> Option<lapin::Acker> {
        let held = lock(&self.state).held.remove(&tag);
        held.map(|h| {
            self.in_flight.fetch_sub(1, Ordering::Relaxed);
            h.acker
        })
    }

    /// Takes out every delivery matching `pick` (and its place in the
    /// waiting line).
    fn claim_where(&self, pick: impl Fn(&Held) -> bool) -> Vec<lapin::Acker> {
        let mut state = lock(&self.state);
        let tags: HashSet<u64> = state.held.iter().filter(|(_, h)| pick(h)).map(|(t, _)| *t).collect();
        if tags.is_empty() {
            return Vec::new();
        }
        state.waiting.retain(|t| !tags.contains(t));
        let ackers: Vec<lapin::Acker> = tags
            .iter()
            .filter_map(|t| state.held.remove(t).map(|h| h.acker))
            .collect();
        self.in_flight.fetch_sub(ackers.len() as u64, Ordering::Relaxed);
        ackers
    }

    fn spawn(&self, name: &'static str, fut: impl Future<Output = ()> + Send + 'static) {
        let span = info_span!("amqp", task = name, topic = %self.topic);
        self.runtime.spawn(fut.instrument(span));
    }

    fn end(&self) {
        lock(&self.state).ended = true;
        self.arrived.notify_waiters();
    }

    fn arrive(&self, d: lapin::message::Delivery) {
        let attempts = topology::attempts(d.properties.headers().as_ref(), d.redelivered);
        let id = match d.properties.message_id() {
            Some(id) => id.to_string(),
            None => format!("tag-{}", d.delivery_tag),
        };
        let held = Held {
            acker: d.acker,
            deadline: Instant::now() + self.visibility,
            waiting: Some(Waiting {
                body: Bytes::from(d.data),
                attempts,
                id,
            }),
        };
        {
            let mut state = lock(&self.state);
            state.held.insert(d.delivery_tag, held);
            state.waiting.push_back(d.delivery_tag);
        }
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.arrived.notify_waiters();
    }
}

/// Hands a message back to the queue now (a failed or abandoned delivery;
/// quorum queues count it in `x-delivery-count`).
async fn reject(acker: &lapin::Acker) -> Result<(), AmqpError> {
    // NB: reject, not nack: RabbitMQ 4.3+ counts only a reject as a failed
    // delivery; 3.10 counts both.
    call(
        "basic.reject",
        CALL_TIMEOUT,
        acker.reject(BasicRejectOptions { requeue: true }),
    )
    .await
    .map(|_| ())
}

/// Acks with the broker. A channel that died meanwhile has handed the
/// message back already: that is not an error of the caller's.
async fn ack(acker: &lapin::Acker) -> Result<(), AmqpError> {
    match call("basic.ack", CALL_TIMEOUT, acker.ack(BasicAckOptions::default())).await {
        Ok(_) => Ok(()),
        Err(AmqpError::Broker { source, .. }) => {
            debug!(error = %source, "ack after the channel closed; the message comes back");
            Ok(())
        }
        Err(e) => Err(e),
    }
}

impl AmqpSubscription {
    pub(super) fn start(
        queue: Arc<Inner>,
        topic: &str,
        channel: Channel,
        consumer: Consumer,
        visibility: Duration,
        in_flight: Arc<AtomicU64>,
    ) -> Self {
        let shared = Arc::new(Shared {
            queue,
            topic: topic.to_owned(),
            channel,
            visibility,
            state: Mutex::new(State::default()),
            arrived: Notify::new(),
            dropped: Notify::new(),
            in_flight,
            closed: AtomicBool::new(false),
            runtime: Handle::current(),
        });
        shared.spawn("pump", pump(shared.clone(), consumer));
        Self { shared }
    }
}

#[async_trait]
impl Subscription for AmqpSubscription {
    async fn next(&mut self) -> Option<Delivery> {
        let shared = &self.shared;
        loop {
            let arrived = shared.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            {
                let mut state = lock(&shared.state);
                while let Some(tag) = state.waiting.pop_front() {
                    let Some(held) = state.held.get_mut(&tag) else {
                        continue;
                    };
                    let Some(w) = held.waiting.take() else {
                        continue;
                    };
                    held.deadline = Instant::now() + shared.visibility;
                    let acker = AmqpAcker {
                        shared: shared.clone(),
                        tag,
                        attempts: w.attempts,
                        body: w.body.clone(),
                    };
                    return Some(Delivery::new(w.body, w.attempts, w.id, Box::new(acker)));
                }
                if state.ended {
                    return None;
                }
            }
            arrived.await;
        }
    }
}

impl Drop for AmqpSubscription {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Relaxed);
        self.shared.dropped.notify_one();
    }
}

/// Takes deliveries off the channel as they arrive and hands back those
/// past their deadline, until the subscription is dropped and nothing it
/// handed out is left, or the channel is gone.
async fn pump(shared: Arc<Shared>, mut consumer: Consumer) {
    // NB: however the pump ends (even by a panic), `next` must not wait
    // for it for ever.
    struct EndOnExit(Arc<Shared>);
    impl Drop for EndOnExit {
        fn drop(&mut self) {
            self.0.end();
        }
    }
    let _end = EndOnExit(shared.clone());
    let tick = (shared.visibility / 10).clamp(Duration::from_millis(50), Duration::from_secs(1));
    let mut ticks = tokio::time::interval(tick);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut consuming = true;
    let mut due = false;
    loop {
        tokio::select! {
            d = consumer.next(), if consuming => match d {
                Some(Ok(d)) => shared.arrive(d),
                Some(Err(error)) => {
                    warn!(%error, "the subscription's channel failed");
                    consuming = false;
                    shared.end();
                }
                None => {
                    debug!("the consumer was cancelled");
                    consuming = false;
                    shared.end();
                }
            },
            _ = shared.dropped.notified(), if consuming => {
                consuming = false;
                cancel(&shared, &mut consumer).await;
                shared.end();
            }
            _ = ticks.tick() => due = true,
        }
        // NB: the checks below scan the table: once per tick, not per arrival.
        if !std::mem::take(&mut due) {
            continue;
        }
        if !shared.channel.status().connected() {
            // The broker took everything back with the channel.
            shared.claim_where(|_| true);
            shared.end();
            return;
        }
        let now = Instant::now();
        for acker in shared.claim_where(|h| h.deadline <= now) {
            debug!(visibility = ?shared.visibility, "delivery not settled in time; handing it back");
            if let Err(error) = reject(&acker).await {
                warn!(%error, "handing back a timed-out delivery failed");
            }
        }
        if !consuming && shared.closed.load(Ordering::Relaxed) && lock(&shared.state).held.is_empty() {
            return;
        }
    }
}

/// Stops the consumer and hands back what the broker sent that `next` did
/// not hand out.
async fn cancel(shared: &Shared, consumer: &mut Consumer) {
    if shared.channel.status().connected() {
        let tag = consumer.tag();
        match call(
            "basic.cancel",
            CALL_TIMEOUT,
            shared.channel.basic_cancel(tag, BasicCancelOptions::default()),
        )
        .await
        {
            Ok(()) => {
                while let Ok(Some(Ok(d))) = tokio::time::timeout(CANCEL_DRAIN, consumer.next()).await {
                    if let Err(error) = reject(&d.acker).await {
                        debug!(%error, "handing back an untaken delivery failed");
                    }
                }
            }
            Err(error) => debug!(%error, "cancelling a consumer failed"),
        }
    }
    for acker in shared.claim_where(|h| h.waiting.is_some()) {
        if let Err(error) = reject(&acker).await {
            debug!(%error, "handing back an untaken delivery failed");
        }
    }
}

struct AmqpAcker {
    shared: Arc<Shared>,
    tag: u64,
    attempts: u32,
    body: Bytes,
}

impl AmqpAcker {
    /// After a failed re-publish: hand the message back now rather than
    /// leave it held until the channel closes. Whether that worked.
    async fn fall_back(&self, acker: &lapin::Acker, what: &str, error: &AmqpError) -> bool {
        match reject(acker).await {
            Ok(()) => {
                warn!(%error, "{what} failed; the message was handed back for immediate redelivery instead");
                true
            }
            Err(e) => {
                warn!(%error, reject_error = %e, "{what} failed and so did handing it back; it returns when the channel closes");
                false
            }
        }
    }
}

#[async_trait]
impl Acker for AmqpAcker {
    async fn ack(&self) -> crate::Result<()> {
        match self.shared.claim(self.tag) {
            Some(acker) => Ok(ack(&acker).await?),
            None => Ok(()),
        }
    }

    async fn requeue(&self, delay: Duration) -> crate::Result<()> {
        let Some(acker) = self.shared.claim(self.tag) else {
            return Ok(());
        };
        // NB: the copy is confirmed before the original is acked: a crash in
        // between leaves a duplicate, never a loss.
        let copy = self
            .shared
            .queue
            .publish_attempt(&self.shared.topic, self.body.clone(), self.attempts, delay)
            .await;
        match copy {
            Ok(()) => Ok(ack(&acker).await?),
            Err(error) => {
                if self.fall_back(&acker, "a delayed requeue", &error).await {
                    Ok(())
                } else {
                    Err(error.into())
                }
            }
        }
    }

    async fn touch(&self) -> crate::Result<()> {
        // NB: only the subscription's own deadline; RabbitMQ's consumer_timeout
        // cannot be extended per delivery.
        if let Some(h) = lock(&self.shared.state).held.get_mut(&self.tag) {
            h.deadline = Instant::now() + self.shared.visibility;
        }
        Ok(())
    }

    async fn dead_letter(&self) -> crate::Result<()> {
        let Some(acker) = self.shared.claim(self.tag) else {
            return Ok(());
        };
        let moved = self
            .shared
            .queue
            .publish_dead_letter(&self.shared.topic, self.body.clone(), self.attempts)
            .await;
        match moved {
            Ok(()) => Ok(ack(&acker).await?),
            Err(error) => {
                self.fall_back(&acker, "dead-lettering", &error).await;
                Err(error.into())
            }
        }
    }

    fn release(&self) {
        if let Some(acker) = self.shared.claim(self.tag) {
            self.shared.spawn("release", async move {
                if let Err(error) = reject(&acker).await {
                    debug!(%error, "handing back a dropped delivery failed; it returns when the channel closes");
                }
            });
        }
    }
}
