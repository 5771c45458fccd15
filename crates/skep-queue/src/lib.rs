//! The `TaskQueue` seam: how tasks reach workers and results come back.
//!
//! A queue is a delivery channel that may lose or duplicate messages. The
//! contract every backend keeps:
//! - a published batch is accepted whole or the call fails (the caller
//!   retries; duplicates are fine, results are idempotent downstream);
//! - a delivery is handed to one consumer at a time and comes back (to any
//!   consumer, with `attempts` one higher) when it is not acked within the
//!   visibility timeout, when it is requeued, or when it is dropped unsettled;
//! - `ack`, `requeue` and `touch` of a delivery that already came back are
//!   harmless no-ops, never an error that kills the consumer;
//! - ordering is not promised.

pub mod conformance;
mod memory;

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

pub use memory::MemoryQueue;

pub type Result<T, E = QueueError> = std::result::Result<T, E>;

/// Where a topic's dead letters go: messages a consumer gave up on for good
/// (delivered more often than allowed), kept for an operator to inspect.
pub fn dead_letter_topic(topic: &str) -> String {
    format!("{topic}.dead")
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The backend holds as many messages as it is allowed to.
    #[error("queue is full ({capacity} messages)")]
    Full { capacity: usize },
    /// The broker could not be reached or refused the call.
    #[error("queue backend unavailable: {0}")]
    Unavailable(String),
    #[error("message of {size} bytes exceeds the limit of {limit}")]
    TooLarge { size: usize, limit: usize },
}

impl QueueError {
    /// A bounded label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            QueueError::Full { .. } => "full",
            QueueError::Unavailable(_) => "unavailable",
            QueueError::TooLarge { .. } => "too_large",
        }
    }
}

/// How a consumer subscribes.
#[derive(Clone, Debug)]
pub struct SubscribeOptions {
    /// Consumers of one channel share its messages (each message goes to one
    /// of them).
    pub channel: String,
    /// Deliveries this subscription holds un-acked at most; `next` waits
    /// while it is at the limit.
    pub max_in_flight: usize,
    /// A delivery not acked or touched within this time comes back.
    pub visibility_timeout: Duration,
}

impl SubscribeOptions {
    pub fn new(channel: impl Into<String>, max_in_flight: usize, visibility_timeout: Duration) -> Self {
        Self {
            channel: channel.into(),
            max_in_flight: max_in_flight.max(1),
            visibility_timeout,
        }
    }
}

/// Messages of a topic by state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Depth {
    /// Waiting for a consumer.
    pub ready: u64,
    /// Delivered, not yet acked.
    pub in_flight: u64,
    /// Requeued or published with a delay that has not passed.
    pub deferred: u64,
}

impl Depth {
    pub fn total(&self) -> u64 {
        self.ready + self.in_flight + self.deferred
    }
}

#[async_trait]
pub trait TaskQueue: Send + Sync + 'static {
    /// Short backend name for logs and metrics (`memory`, `nsq`, `amqp`).
    fn backend(&self) -> &'static str;

    /// Whether messages survive a restart of this process. The controller
    /// re-dispatches everything that was in flight when it starts on a
    /// queue that is not durable.
    fn is_durable(&self) -> bool;

    /// Publishes a batch; on error none or some may have been accepted.
    async fn publish(&self, topic: &str, messages: Vec<Bytes>) -> Result<()>;

    /// Publishes one message that becomes ready after `delay`.
    async fn publish_deferred(&self, topic: &str, message: Bytes, delay: Duration) -> Result<()>;

    async fn subscribe(&self, topic: &str, opts: SubscribeOptions) -> Result<Box<dyn Subscription>>;

    /// Messages of a topic as the broker counts them.
    async fn depth(&self, topic: &str) -> Result<Depth>;
}

#[async_trait]
pub trait Subscription: Send {
    /// The next delivery. Waits while nothing is ready or `max_in_flight`
    /// deliveries are un-settled; `None` once the subscription has ended for
    /// good (the caller subscribes again).
    async fn next(&mut self) -> Option<Delivery>;
}

/// The backend's side of one delivery.
#[async_trait]
pub trait Acker: Send + Sync {
    async fn ack(&self) -> Result<()>;
    async fn requeue(&self, delay: Duration) -> Result<()>;
    async fn touch(&self) -> Result<()>;
    /// Moves the message to the topic's dead-letter topic
    /// ([`dead_letter_topic`]) and settles it.
    async fn dead_letter(&self) -> Result<()>;
    /// The delivery was dropped unsettled: hand the message back now. Must
    /// not block.
    fn release(&self);
}

/// One message handed to one consumer. Settle it with [`Delivery::ack`] or
/// [`Delivery::requeue`]; dropping it unsettled requeues it.
pub struct Delivery {
    pub body: Bytes,
    /// 1 on the first delivery, counted by the backend.
    pub attempts: u32,
    /// Backend message id, for logs.
    pub id: String,
    acker: Box<dyn Acker>,
    settled: bool,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("id", &self.id)
            .field("attempts", &self.attempts)
            .field("len", &self.body.len())
            .finish()
    }
}

impl Delivery {
    pub fn new(body: Bytes, attempts: u32, id: String, acker: Box<dyn Acker>) -> Self {
        Self {
            body,
            attempts,
            id,
            acker,
            settled: false,
        }
    }

    /// Done with it: it will not come back.
    pub async fn ack(mut self) -> Result<()> {
        self.settled = true;
        self.acker.ack().await
    }

    /// Hand it back to be delivered again after `delay`.
    pub async fn requeue(mut self, delay: Duration) -> Result<()> {
        self.settled = true;
        self.acker.requeue(delay).await
    }

    /// Give up on it for good: it goes to the dead-letter topic.
    pub async fn dead_letter(mut self) -> Result<()> {
        self.settled = true;
        self.acker.dead_letter().await
    }

    /// Still working on it: restart its visibility timeout.
    pub async fn touch(&self) -> Result<()> {
        self.acker.touch().await
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        if !self.settled {
            self.acker.release();
        }
    }
}
