//! The in-process queue: the `skep run` backend. Not durable: everything in
//! it is gone when the process ends, and the controller re-dispatches from
//! the store when it starts again.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::{Acker, Delivery, Depth, QueueError, Result, SubscribeOptions, Subscription, TaskQueue, lock};

/// Messages one queue holds at most, over all topics and states.
pub const DEFAULT_CAPACITY: usize = 4_000_000;

/// An in-process queue with visibility timeouts, delayed requeue and
/// per-subscription in-flight limits. Cheap to clone; clones share topics.
#[derive(Clone)]
pub struct MemoryQueue {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for MemoryQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryQueue").finish_non_exhaustive()
    }
}

struct Inner {
    topics: Mutex<HashMap<String, Arc<Topic>>>,
    capacity: usize,
}

struct Topic {
    state: Mutex<TopicState>,
    notify: Notify,
}

#[derive(Default)]
struct TopicState {
    ready: VecDeque<Msg>,
    /// Keyed by (due time, id) so the earliest comes first.
    deferred: BTreeMap<(Instant, u64), Msg>,
    in_flight: HashMap<u64, InFlight>,
    next_id: u64,
    next_delivery: u64,
    total: usize,
}

struct Msg {
    id: u64,
    body: Bytes,
    /// Deliveries so far.
    attempts: u32,
}

struct InFlight {
    msg: Msg,
    /// Which delivery of the message this is; a settle from an older one is
    /// ignored.
    delivery: u64,
    deadline: Instant,
    timeout: Duration,
}

impl TopicState {
    /// Moves due deferred messages and expired deliveries to `ready`.
    fn tick(&mut self, now: Instant) {
        while let Some(entry) = self.deferred.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let msg = entry.remove();
            self.ready.push_back(msg);
        }
        if self.in_flight.values().any(|f| f.deadline <= now) {
            let expired: Vec<u64> = self
                .in_flight
                .iter()
                .filter(|(_, f)| f.deadline <= now)
                .map(|(id, _)| *id)
                .collect();
            for id in expired {
                if let Some(f) = self.in_flight.remove(&id) {
                    self.ready.push_back(f.msg);
                }
            }
        }
    }

    /// The next instant at which `tick` would change something.
    fn next_wake(&self) -> Option<Instant> {
        let deferred = self.deferred.first_key_value().map(|(k, _)| k.0);
        let expiry = self.in_flight.values().map(|f| f.deadline).min();
        match (deferred, expiry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn take(&mut self, id: u64, delivery: u64) -> Option<Msg> {
        match self.in_flight.get(&id) {
            Some(f) if f.delivery == delivery => self.in_flight.remove(&id).map(|f| f.msg),
            _ => None,
        }
    }
}

impl Default for MemoryQueue {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryQueue {
    pub fn new() -> Self {
        Self::with_capacity(DEFAULT_CAPACITY)
    }

    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                topics: Mutex::new(HashMap::new()),
                capacity,
            }),
        }
    }

    fn topic(&self, name: &str) -> Arc<Topic> {
        let mut topics = lock(&self.inner.topics);
        topics
            .entry(name.to_owned())
            .or_insert_with(|| {
                Arc::new(Topic {
                    state: Mutex::new(TopicState::default()),
                    notify: Notify::new(),
                })
            })
            .clone()
    }

    fn total_messages(&self) -> usize {
        let topics: Vec<Arc<Topic>> = lock(&self.inner.topics).values().cloned().collect();
        topics.iter().map(|t| lock(&t.state).total).sum()
    }

    fn admit(&self, n: usize) -> Result<()> {
        if self.total_messages() + n > self.inner.capacity {
            return Err(QueueError::Full {
                capacity: self.inner.capacity,
            });
        }
        Ok(())
    }
}

#[async_trait]
impl TaskQueue for MemoryQueue {
    fn backend(&self) -> &'static str {
        "memory"
    }

    fn is_durable(&self) -> bool {
        false
    }

    async fn publish(&self, topic: &str, messages: Vec<Bytes>) -> Result<()> {
        self.admit(messages.len())?;
        let t = self.topic(topic);
        {
            let mut s = lock(&t.state);
            s.total += messages.len();
            for body in messages {
                let id = s.next_id;
                s.next_id += 1;
                s.ready.push_back(Msg { id, body, attempts: 0 });
            }
        }
        t.notify.notify_waiters();
        Ok(())
    }

    async fn publish_deferred(&self, topic: &str, message: Bytes, delay: Duration) -> Result<()> {
        self.admit(1)?;
        let t = self.topic(topic);
        {
            let mut s = lock(&t.state);
            s.total += 1;
            let id = s.next_id;
            s.next_id += 1;
            let due = Instant::now() + delay;
            s.deferred.insert(
                (due, id),
                Msg {
                    id,
                    body: message,
                    attempts: 0,
                },
            );
        }
        t.notify.notify_waiters();
        Ok(())
    }

    async fn subscribe(&self, topic: &str, opts: SubscribeOptions) -> Result<Box<dyn Subscription>> {
        Ok(Box::new(MemorySubscription {
            queue: self.clone(),
            topic_name: topic.to_owned(),
            topic: self.topic(topic),
            permits: Arc::new(Semaphore::new(opts.max_in_flight.max(1))),
            visibility: opts.visibility_timeout,
        }))
    }

    async fn depth(&self, topic: &str) -> Result<Depth> {
        let t = self.topic(topic);
        let mut s = lock(&t.state);
        s.tick(Instant::now());
        Ok(Depth {
            ready: s.ready.len() as u64,
            in_flight: s.in_flight.len() as u64,
            deferred: s.deferred.len() as u64,
        })
    }
}

struct MemorySubscription {
    queue: MemoryQueue,
    topic_name: String,
    topic: Arc<Topic>,
    permits: Arc<Semaphore>,
    visibility: Duration,
}

#[async_trait]
impl Subscription for MemorySubscription {
    async fn next(&mut self) -> Option<Delivery> {
        let permit = self.permits.clone().acquire_owned().await.ok()?;
        loop {
            let notified = self.topic.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let wake = {
                let now = Instant::now();
                let mut s = lock(&self.topic.state);
                s.tick(now);
                if let Some(mut msg) = s.ready.pop_front() {
                    msg.attempts += 1;
                    s.next_delivery += 1;
                    let delivery = s.next_delivery;
                    let (id, attempts, body) = (msg.id, msg.attempts, msg.body.clone());
                    s.in_flight.insert(
                        id,
                        InFlight {
                            msg,
                            delivery,
                            deadline: now + self.visibility,
                            timeout: self.visibility,
                        },
                    );
                    let acker = MemoryAcker {
                        queue: self.queue.clone(),
                        topic_name: self.topic_name.clone(),
                        topic: self.topic.clone(),
                        id,
                        delivery,
                        _permit: permit,
                    };
                    return Some(Delivery::new(body, attempts, id.to_string(), Box::new(acker)));
                }
                s.next_wake()
            };
            match wake {
                Some(at) => {
                    tokio::select! {
                        _ = notified => {}
                        _ = tokio::time::sleep_until(at) => {}
                    }
                }
                None => notified.await,
            }
        }
    }
}

struct MemoryAcker {
    queue: MemoryQueue,
    topic_name: String,
    topic: Arc<Topic>,
    id: u64,
    delivery: u64,
    /// Held until the delivery is settled: the subscription's in-flight slot.
    _permit: OwnedSemaphorePermit,
}

impl MemoryAcker {
    fn requeue_now(&self, delay: Duration) {
        let mut s = lock(&self.topic.state);
        if let Some(msg) = s.take(self.id, self.delivery) {
            if delay.is_zero() {
                s.ready.push_back(msg);
            } else {
                s.deferred.insert((Instant::now() + delay, msg.id), msg);
            }
            drop(s);
            self.topic.notify.notify_waiters();
        }
    }
}

#[async_trait]
impl Acker for MemoryAcker {
    async fn ack(&self) -> Result<()> {
        let mut s = lock(&self.topic.state);
        if s.take(self.id, self.delivery).is_some() {
            s.total -= 1;
        }
        Ok(())
    }

    async fn requeue(&self, delay: Duration) -> Result<()> {
        self.requeue_now(delay);
        Ok(())
    }

    async fn dead_letter(&self) -> Result<()> {
        let msg = {
            let mut s = lock(&self.topic.state);
            let msg = s.take(self.id, self.delivery);
            if msg.is_some() {
                s.total -= 1;
            }
            msg
        };
        if let Some(msg) = msg {
            self.queue
                .publish(&crate::dead_letter_topic(&self.topic_name), vec![msg.body])
                .await?;
        }
        Ok(())
    }

    async fn touch(&self) -> Result<()> {
        let mut s = lock(&self.topic.state);
        if let Some(f) = s.in_flight.get_mut(&self.id)
            && f.delivery == self.delivery
        {
            f.deadline = Instant::now() + f.timeout;
        }
        Ok(())
    }

    fn release(&self) {
        self.requeue_now(Duration::ZERO);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(n: usize, vis_ms: u64) -> SubscribeOptions {
        SubscribeOptions::new("c", n, Duration::from_millis(vis_ms))
    }

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[tokio::test(start_paused = true)]
    async fn unacked_delivery_comes_back_after_visibility_timeout() {
        let q = MemoryQueue::new();
        q.publish("t", vec![b("a")]).await.unwrap();
        let mut sub = q.subscribe("t", opts(10, 1000)).await.unwrap();
        let d1 = sub.next().await.unwrap();
        assert_eq!(d1.attempts, 1);
        std::mem::forget(d1); // a consumer that died without settling
        let start = Instant::now();
        let d2 = sub.next().await.unwrap();
        assert_eq!(d2.attempts, 2);
        assert_eq!(start.elapsed(), Duration::from_millis(1000));
        d2.ack().await.unwrap();
        assert_eq!(q.depth("t").await.unwrap(), Depth::default());
    }

    #[tokio::test(start_paused = true)]
    async fn late_ack_does_not_settle_the_redelivery() {
        let q = MemoryQueue::new();
        q.publish("t", vec![b("a")]).await.unwrap();
        let mut sub = q.subscribe("t", opts(10, 100)).await.unwrap();
        let first = sub.next().await.unwrap();
        tokio::time::advance(Duration::from_millis(150)).await;
        let second = sub.next().await.unwrap();
        first.ack().await.unwrap();
        let d = q.depth("t").await.unwrap();
        assert_eq!(d.in_flight, 1, "the second delivery is still in flight");
        second.ack().await.unwrap();
        assert_eq!(q.depth("t").await.unwrap().total(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn requeue_with_delay_and_touch() {
        let q = MemoryQueue::new();
        q.publish("t", vec![b("a")]).await.unwrap();
        let mut sub = q.subscribe("t", opts(10, 100)).await.unwrap();
        let d = sub.next().await.unwrap();
        tokio::time::advance(Duration::from_millis(80)).await;
        d.touch().await.unwrap();
        tokio::time::advance(Duration::from_millis(80)).await;
        assert_eq!(q.depth("t").await.unwrap().in_flight, 1, "touch extended it");
        let start = Instant::now();
        d.requeue(Duration::from_millis(500)).await.unwrap();
        assert_eq!(q.depth("t").await.unwrap().deferred, 1);
        let again = sub.next().await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_millis(500));
        assert_eq!(again.attempts, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn max_in_flight_holds_back_deliveries() {
        let q = MemoryQueue::new();
        q.publish("t", vec![b("a"), b("b")]).await.unwrap();
        let mut sub = q.subscribe("t", opts(1, 60_000)).await.unwrap();
        let d = sub.next().await.unwrap();
        let blocked = tokio::time::timeout(Duration::from_secs(1), sub.next()).await;
        assert!(blocked.is_err(), "a second delivery beyond max_in_flight");
        d.ack().await.unwrap();
        assert!(sub.next().await.is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn dropped_delivery_is_requeued_at_once() {
        let q = MemoryQueue::new();
        q.publish("t", vec![b("a")]).await.unwrap();
        let mut sub = q.subscribe("t", opts(1, 60_000)).await.unwrap();
        drop(sub.next().await.unwrap());
        let start = Instant::now();
        let d = sub.next().await.unwrap();
        assert_eq!(start.elapsed(), Duration::ZERO);
        assert_eq!(d.attempts, 2);
    }

    #[tokio::test]
    async fn capacity_is_enforced() {
        let q = MemoryQueue::with_capacity(2);
        q.publish("t", vec![b("a"), b("b")]).await.unwrap();
        let err = q.publish("u", vec![b("c")]).await.unwrap_err();
        assert!(matches!(err, QueueError::Full { capacity: 2 }));
    }
}
