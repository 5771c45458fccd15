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

mod amqp;
pub mod conformance;
mod memory;
mod nsq;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

pub use amqp::AmqpQueue;
pub use memory::MemoryQueue;
pub use nsq::NsqQueue;

pub type Result<T, E = QueueError> = std::result::Result<T, E>;

/// The suffix of topics whose messages matter only while fresh (worker
/// heartbeats): a broker may drop their oldest or expired messages instead
/// of keeping them while nobody consumes (RabbitMQ: at most
/// [`EPHEMERAL_MAX_MESSAGES`], each for [`EPHEMERAL_TTL`]).
pub const EPHEMERAL_SUFFIX: &str = ".beats";
/// Most messages an ephemeral topic keeps (the oldest go first).
pub const EPHEMERAL_MAX_MESSAGES: i64 = 10_000;
/// How long an ephemeral topic keeps a message.
pub const EPHEMERAL_TTL: std::time::Duration = std::time::Duration::from_secs(30);

/// Whether `topic` is ephemeral (see [`EPHEMERAL_SUFFIX`]).
pub fn is_ephemeral(topic: &str) -> bool {
    topic.ends_with(EPHEMERAL_SUFFIX)
}

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
    /// A queue URL that cannot be used.
    #[error("invalid queue url: {0}")]
    InvalidUrl(String),
    /// A topic or channel name, or a message, that the backend cannot take
    /// (NSQ allows only `[.a-zA-Z0-9_-]` in names, and no empty message).
    /// Retrying does not help.
    #[error("{0}")]
    Invalid(String),
}

impl QueueError {
    /// A bounded label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            QueueError::Full { .. } => "full",
            QueueError::Unavailable(_) => "unavailable",
            QueueError::TooLarge { .. } => "too_large",
            QueueError::InvalidUrl(_) => "invalid_url",
            QueueError::Invalid(_) => "invalid",
        }
    }
}

// NB: a poisoned lock means a panic while holding it; what these locks
// guard stays consistent between statements, so keep going.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Where the task queue lives: `memory:` (in-process, not durable),
/// `amqp://user:password@host:port/vhost` or `amqps://…` (RabbitMQ, see
/// [`AmqpQueue::connect`] for its options), `nsq://host:4150[,host:4150…]`
/// (nsqds used directly) or `nsqlookup://host:4161[,…]` (nsqds found
/// through nsqlookupd; see [`NsqQueue::connect`]). `Display` and `Debug`
/// hide the password.
#[derive(Clone, PartialEq, Eq)]
pub struct QueueUrl {
    kind: UrlKind,
    raw: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum UrlKind {
    Memory,
    Amqp,
    Nsq,
}

impl QueueUrl {
    pub fn parse(url: &str) -> Result<Self> {
        let raw = url.trim().to_owned();
        let (scheme, rest) = raw.split_once(':').unwrap_or(("", ""));
        let kind = match scheme.to_ascii_lowercase().as_str() {
            "memory" if matches!(rest, "" | "//") => UrlKind::Memory,
            "amqp" | "amqps" => {
                amqp::parse_url(&raw).map_err(|e| QueueError::InvalidUrl(format!("{}: {e}", redact(&raw))))?;
                UrlKind::Amqp
            }
            "nsq" | "nsqlookup" => {
                nsq::check_url(&raw).map_err(|e| QueueError::InvalidUrl(redact(&e.to_string())))?;
                UrlKind::Nsq
            }
            _ => {
                return Err(QueueError::InvalidUrl(format!(
                    "{}: expected memory:, amqp://, amqps://, nsq:// or nsqlookup://",
                    redact(&raw)
                )));
            }
        };
        Ok(Self { kind, raw })
    }

    /// The backend the URL names (`memory`, `amqp`, `nsq` for `nsq://` and
    /// `nsqlookup://`), as
    /// [`TaskQueue::backend`] reports it.
    pub fn backend(&self) -> &'static str {
        match self.kind {
            UrlKind::Memory => "memory",
            UrlKind::Amqp => "amqp",
            UrlKind::Nsq => "nsq",
        }
    }

    /// Connects to the queue the URL names.
    pub async fn connect(&self) -> Result<Arc<dyn TaskQueue>> {
        match self.kind {
            UrlKind::Memory => Ok(Arc::new(MemoryQueue::new())),
            UrlKind::Amqp => Ok(Arc::new(AmqpQueue::connect(&self.raw).await?)),
            UrlKind::Nsq => Ok(Arc::new(NsqQueue::connect(&self.raw).await?)),
        }
    }
}

impl std::str::FromStr for QueueUrl {
    type Err = QueueError;

    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl std::fmt::Display for QueueUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&redact(&self.raw))
    }
}

impl std::fmt::Debug for QueueUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "QueueUrl({})", redact(&self.raw))
    }
}

/// The URL with the password of its user info, if any, replaced by `***`.
///
/// NB: the user info ends at the *last* `@`, not at the first `/ ? #`: a
/// password written without percent-encoding may hold any of them (and
/// `@` and `:`), and no parser can tell where it ends; cutting at the last
/// `@` never shows a piece of it (a path holding `@` is hidden too, which
/// costs nothing).
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host_and_tail)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host_and_tail}"),
        // NB: no `:`: the whole user info may be a token.
        None if userinfo.contains(['/', '?', '#']) => format!("{scheme}://***@{host_and_tail}"),
        None => url.to_owned(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_urls_parse_by_scheme() {
        let backend = |u: &str| QueueUrl::parse(u).map(|q| q.backend());
        assert_eq!(backend("memory:").ok(), Some("memory"));
        assert_eq!(backend(" memory:// ").ok(), Some("memory"));
        assert_eq!(backend("amqp://guest:guest@127.0.0.1:5672/%2f").ok(), Some("amqp"));
        assert_eq!(
            backend("amqps://rabbit.example:5671/jobs?heartbeat=5").ok(),
            Some("amqp")
        );
        assert_eq!(backend("nsq://127.0.0.1:4150").ok(), Some("nsq"));
        assert_eq!(backend("nsq://a:4150,b:4150?http_port=4151").ok(), Some("nsq"));
        assert_eq!(backend("nsqlookup://127.0.0.1:4161,l2").ok(), Some("nsq"));
        for bad in [
            "",
            "memory:x",
            "redis://h",
            "nsq://",
            "nsq://h:x",
            "nsq://h/topic",
            "nsq://h?tls=1",
            "nsqlookup://",
            "amqp://h:notaport/",
            "amqp://h/?management_port=x",
        ] {
            assert!(
                matches!(QueueUrl::parse(bad), Err(QueueError::InvalidUrl(_))),
                "{bad:?} parsed"
            );
        }
    }

    #[test]
    fn display_and_errors_hide_the_password() {
        let u = QueueUrl::parse("amqp://skep:s3cret@rabbit:5672/%2f?management_port=15672").expect("parses");
        assert_eq!(u.to_string(), "amqp://skep:***@rabbit:5672/%2f?management_port=15672");
        assert!(!format!("{u:?}").contains("s3cret"));
        let err = QueueUrl::parse("amqp://skep:s3cret@rabbit:bad/").expect_err("bad port");
        assert!(!err.to_string().contains("s3cret"), "{err}");
        assert_eq!(redact("amqp://rabbit/%2f"), "amqp://rabbit/%2f");
        assert_eq!(redact("amqp://user@rabbit/"), "amqp://user@rabbit/");
        assert_eq!(redact("memory:"), "memory:");
    }

    #[test]
    fn redaction_hides_every_piece_of_awkward_passwords() {
        for password in [
            "p/ss",
            "p?ss",
            "p#ss",
            "p@ss",
            "p:ss",
            "a/b?c#d@e:f",
            "p%40ss%2F",
            "@",
            "//@@",
        ] {
            let url = format!("amqp://skep:{password}@rabbit:5672/%2f?heartbeat=10");
            let shown = redact(&url);
            assert_eq!(shown, "amqp://skep:***@rabbit:5672/%2f?heartbeat=10", "{password}");
            for piece in password.split(['/', '?', '#', '@', ':']).filter(|p| p.len() > 1) {
                assert!(!shown.contains(piece), "{password}: {shown}");
            }
        }
        assert_eq!(redact("amqp://to/ken@rabbit/"), "amqp://***@rabbit/");
        assert_eq!(redact("mongodb://u:pw@a:1,b:2/db"), "mongodb://u:***@a:1,b:2/db");
    }

    #[tokio::test]
    async fn an_unreachable_nsqd_fails_to_connect_and_memory_connects() {
        // NB: port 1 on loopback: nothing listens there.
        let nsq = QueueUrl::parse("nsq://127.0.0.1:1").expect("parses");
        assert_eq!(nsq.backend(), "nsq");
        let err = nsq.connect().await.err().expect("nothing listens on port 1");
        assert_eq!(err.metric_label(), "unavailable", "{err}");
        let q = QueueUrl::parse("memory:")
            .expect("parses")
            .connect()
            .await
            .expect("memory");
        assert_eq!(q.backend(), "memory");
    }
}
