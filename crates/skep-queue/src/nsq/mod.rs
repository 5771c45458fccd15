//! The NSQ backend: a client of nsqd's TCP protocol (V2) written here,
//! plus nsqd's and nsqlookupd's HTTP APIs for depth and discovery.
//!
//! Guarantees, on top of the seam's contract (see the crate docs):
//! - a publish is `Ok` only once nsqd answered `OK` to every MPUB of the
//!   batch; what was not confirmed is sent once more on a fresh connection
//!   (to the next nsqd of the URL, if there are several), then the publish
//!   fails: nothing is dropped silently ([`producer`]);
//! - a message is at most [`MAX_MESSAGE_BYTES`] (nsqd's `--max-msg-size`
//!   default) and not empty; a batch is split into MPUBs of at most
//!   [`MAX_BODY_BYTES`] (nsqd's `--max-body-size` default);
//! - the visibility timeout is nsqd's `msg_timeout` for the subscription's
//!   connections, clamped to what nsqd accepts by default
//!   ([`MIN_MSG_TIMEOUT`] to [`MAX_MSG_TIMEOUT`], its
//!   `--max-msg-timeout`); nsqd hands out again what is not settled in
//!   time, and a TOUCH extends it, for [`MAX_MSG_TIMEOUT`] in all;
//! - `attempts` is nsqd's own count of deliveries;
//! - a requeue is REQ with the delay and a deferred publish is DPUB, both
//!   cut to [`MAX_DEFER`] (nsqd's `--max-req-timeout` default; nsqd refuses
//!   a DPUB over its limit);
//! - a settle that comes too late is a no-op, never an error and never a
//!   broken connection ([`subscription`]);
//! - consumers reconnect by themselves, for ever; `next` returns `None`
//!   only once the queue is closed;
//! - `depth` sums nsqd's `/stats` over every nsqd: ready is the topic's
//!   and its channel's depth, in-flight and deferred the channel's ([`http`]).
//!
//! Every call has a timeout: connecting [`CONNECT_TIMEOUT`], a whole
//! publish [`PUBLISH_TIMEOUT`], an HTTP call [`HTTP_TIMEOUT`].

mod conn;
mod discovery;
mod http;
mod producer;
mod protocol;
mod subscription;
mod url;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::future::join_all;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use self::discovery::Discovery;
use self::http::Http;
use self::producer::Producer;
use self::protocol::Command;
use self::subscription::NsqSubscription;
use crate::{Depth, QueueError, Result, SubscribeOptions, Subscription, TaskQueue, lock};

/// Timeout of opening a connection (TCP, IDENTIFY, SUB).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Timeout of a whole publish, retry included.
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(30);
/// Timeout of one call to nsqd's or nsqlookupd's HTTP API.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest message: nsqd's default `--max-msg-size`.
pub const MAX_MESSAGE_BYTES: usize = 1 << 20;
/// Largest MPUB body: nsqd's default `--max-body-size`.
pub const MAX_BODY_BYTES: usize = 5 << 20;
/// Longest delay of a requeue or deferred publish: nsqd's default
/// `--max-req-timeout`.
pub const MAX_DEFER: Duration = Duration::from_secs(3600);
/// Shortest visibility timeout nsqd accepts.
pub const MIN_MSG_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest visibility timeout: nsqd's default `--max-msg-timeout` (a
/// longer one fails IDENTIFY).
pub const MAX_MSG_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// What went wrong talking to NSQ. Callers see it as a [`QueueError`]
/// (see the `From` impl).
#[derive(Debug, thiserror::Error)]
pub(crate) enum NsqError {
    /// The URL could not be used.
    #[error("{0}")]
    Url(String),
    /// A name or message NSQ cannot take.
    #[error("{0}")]
    Invalid(String),
    /// A socket call failed.
    #[error("{op} nsqd {addr} failed: {source}")]
    Io {
        op: &'static str,
        addr: String,
        #[source]
        source: std::io::Error,
    },
    /// A call did not finish in time.
    #[error("{op} {addr} timed out after {after:?}")]
    Timeout {
        op: &'static str,
        addr: String,
        after: Duration,
    },
    /// nsqd answered a command with an error (and closed the connection).
    #[error("nsqd {addr} refused {command}: {message}")]
    Refused {
        addr: String,
        command: &'static str,
        message: String,
    },
    /// nsqd broke the protocol's promises.
    #[error("nsqd {addr} {what}")]
    Protocol { addr: String, what: String },
    /// The connection ended before nsqd confirmed a command.
    #[error("the connection to nsqd {addr} ended before {command} was confirmed")]
    Lost { addr: String, command: &'static str },
    /// An HTTP call failed.
    #[error("{url}: {what}")]
    Http { url: String, what: String },
    /// The lookupds know no nsqd.
    #[error("no nsqd is known to publish to")]
    NoNodes,
    /// The queue object was closed.
    #[error("the queue is closed")]
    Closed,
}

impl From<NsqError> for QueueError {
    fn from(e: NsqError) -> Self {
        match e {
            NsqError::Url(msg) => QueueError::InvalidUrl(msg),
            NsqError::Invalid(msg) => QueueError::Invalid(msg),
            other => QueueError::Unavailable(other.to_string()),
        }
    }
}

fn check_name(kind: &str, name: &str) -> Result<(), NsqError> {
    if protocol::valid_name(name) {
        return Ok(());
    }
    Err(NsqError::Invalid(format!(
        "{kind} name {name:?} is not valid for NSQ: use 1 to {} of [.a-zA-Z0-9_-], optionally followed by #ephemeral",
        protocol::MAX_NAME_LEN
    )))
}

fn check_message(m: &Bytes) -> Result<()> {
    if m.len() > MAX_MESSAGE_BYTES {
        return Err(QueueError::TooLarge {
            size: m.len(),
            limit: MAX_MESSAGE_BYTES,
        });
    }
    if m.is_empty() {
        return Err(QueueError::Invalid("NSQ cannot carry an empty message".to_owned()));
    }
    Ok(())
}

/// A `TaskQueue` on NSQ. Cheap to clone; clones share connections.
///
/// Durable in the sense of [`TaskQueue::is_durable`]: nsqd writes what does
/// not fit in its memory queue to disk and reads it back after a restart.
/// Deployments that want messages to survive a crash of nsqd run it with
/// `--mem-queue-size=0` (everything goes to disk; our manifests do). Even
/// then, as measured with nsqd 1.3.0 and SIGKILL:
/// - nsqd keeps in memory what is in flight or deferred (requeued with a
///   delay, or published with DPUB): a graceful stop writes it to disk (it
///   comes back early, as a duplicate), a crash loses what nsqd had already
///   recorded as read on disk;
/// - a topic's or channel's disk queue has no metadata until its first
///   sync (`--sync-timeout`, 2 s, after its first write); a crash before
///   that loses what it held;
/// - after a crash nsqd reads again what it had read since its last sync:
///   consumers see duplicates;
/// - with `--mem-queue-size=0` a DPUB ([`TaskQueue::publish_deferred`])
///   that nsqd cannot hand to its topic's message pump at once (no channel
///   yet, or the pump busy) goes to the disk queue, which does not keep the
///   delay: it is delivered at once. A requeue with a delay (REQ) keeps it.
#[derive(Clone)]
pub struct NsqQueue {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for NsqQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NsqQueue")
            .field("url", &self.inner.shown)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    /// The URL, redacted, for logs.
    shown: String,
    discovery: Discovery,
    http: Http,
    producer: Producer,
    /// Cancelled by [`NsqQueue::close`]; subscriptions stop with it.
    closing: CancellationToken,
    /// Late FIN, REQ and TOUCH that nsqd refused softly.
    soft_errors: Arc<AtomicU64>,
    /// The channel this queue last subscribed to each topic with: the one
    /// its depth counts (see [`TaskQueue::depth`] below).
    channels: std::sync::Mutex<std::collections::HashMap<String, String>>,
}

impl NsqQueue {
    /// Connects to the nsqds of an `nsq://` URL (publishing needs one of
    /// them now) or asks the lookupds of an `nsqlookup://` URL for theirs
    /// (one lookupd must answer now); see [`url`] for the forms. Later
    /// losses are repaired by the next call.
    pub async fn connect(url: &str) -> Result<Self> {
        let shown = crate::redact(url);
        let nodes = url::parse(url.trim())?;
        let http = Http::new(HTTP_TIMEOUT)?;
        let soft_errors = Arc::new(AtomicU64::new(0));
        let inner = Inner {
            shown,
            discovery: Discovery::new(nodes, http.clone()),
            http,
            producer: Producer::new(CONNECT_TIMEOUT, soft_errors.clone()),
            closing: CancellationToken::new(),
            soft_errors,
            channels: std::sync::Mutex::new(std::collections::HashMap::new()),
        };
        let nsqds = inner.discovery.all().await?;
        if !inner.discovery.is_lookup() {
            let mut last = None;
            for n in &nsqds {
                match inner.producer.conn(&n.tcp).await {
                    Ok(_) => {
                        last = None;
                        break;
                    }
                    Err(e) => last = Some(e),
                }
            }
            if let Some(e) = last {
                return Err(e.into());
            }
        }
        debug!(url = %inner.shown, nsqds = nsqds.len(), "connected to nsq");
        Ok(Self { inner: Arc::new(inner) })
    }

    /// Deletes a topic and its dead-letter topic, with their channels and
    /// messages, from every nsqd. For tests and purges; consumers of the
    /// topic are disconnected by nsqd (and subscribe again, which creates
    /// it anew).
    pub async fn delete_topic(&self, topic: &str) -> Result<()> {
        check_name("topic", topic)?;
        let nsqds = self.inner.discovery.all().await?;
        let dead = crate::dead_letter_topic(topic);
        for n in &nsqds {
            self.inner.http.delete_topic(n, topic).await?;
            if protocol::valid_name(&dead) {
                self.inner.http.delete_topic(n, &dead).await?;
            }
        }
        Ok(())
    }

    /// Closes every connection. Subscriptions end (`next` returns `None`)
    /// and hand back every message they hold, taken or not; later calls
    /// fail.
    pub async fn close(&self) {
        self.inner.closing.cancel();
        self.inner.producer.close();
    }

    /// FIN, REQ and TOUCH commands nsqd refused because the message was no
    /// longer in flight (a settle that raced nsqd's timeout); such a
    /// refusal is harmless. For tests and diagnostics.
    pub fn refused_settles(&self) -> u64 {
        self.inner.soft_errors.load(Ordering::Relaxed)
    }
}

impl Inner {
    /// Sends publishing commands to some nsqd, confirmed, with the
    /// whole-publish timeout.
    async fn publish_commands(&self, commands: Vec<Command>) -> Result<(), NsqError> {
        if self.closing.is_cancelled() {
            return Err(NsqError::Closed);
        }
        let publish = async {
            let nsqds = self.discovery.all().await?;
            self.producer.publish(&nsqds, commands).await
        };
        match tokio::time::timeout(PUBLISH_TIMEOUT, publish).await {
            Ok(r) => r,
            Err(_) => Err(NsqError::Timeout {
                op: "publish to",
                addr: self.shown.clone(),
                after: PUBLISH_TIMEOUT,
            }),
        }
    }

    /// Publishes checked messages to a checked topic.
    pub(crate) async fn publish_to(&self, topic: &str, messages: Vec<Bytes>) -> Result<(), NsqError> {
        let commands = producer::batches(messages, MAX_BODY_BYTES)
            .into_iter()
            .map(|bodies| Command::Mpub {
                topic: topic.to_owned(),
                bodies,
            })
            .collect();
        self.publish_commands(commands).await
    }
}

#[async_trait]
impl TaskQueue for NsqQueue {
    fn backend(&self) -> &'static str {
        "nsq"
    }

    fn is_durable(&self) -> bool {
        true
    }

    async fn publish(&self, topic: &str, messages: Vec<Bytes>) -> Result<()> {
        check_name("topic", topic)?;
        for m in &messages {
            check_message(m)?;
        }
        if messages.is_empty() {
            return Ok(());
        }
        Ok(self.inner.publish_to(topic, messages).await?)
    }

    async fn publish_deferred(&self, topic: &str, message: Bytes, delay: Duration) -> Result<()> {
        check_name("topic", topic)?;
        check_message(&message)?;
        if delay > MAX_DEFER {
            tracing::warn!(?delay, max = ?MAX_DEFER, "delay cut to nsqd's longest");
        }
        let dpub = Command::Dpub {
            topic: topic.to_owned(),
            delay: delay.min(MAX_DEFER),
            body: message,
        };
        Ok(self.inner.publish_commands(vec![dpub]).await?)
    }

    async fn subscribe(&self, topic: &str, opts: SubscribeOptions) -> Result<Box<dyn Subscription>> {
        check_name("topic", topic)?;
        check_name("channel", &opts.channel)?;
        let inner = &self.inner;
        if inner.closing.is_cancelled() {
            return Err(NsqError::Closed.into());
        }
        let msg_timeout = opts.visibility_timeout.clamp(MIN_MSG_TIMEOUT, MAX_MSG_TIMEOUT);
        if msg_timeout != opts.visibility_timeout {
            debug!(asked = ?opts.visibility_timeout, using = ?msg_timeout, "visibility timeout clamped to nsqd's range");
        }
        let nsqds = inner.discovery.for_topic(topic).await?;
        lock(&inner.channels).insert(topic.to_owned(), opts.channel.clone());
        let sub = NsqSubscription::start(
            inner.clone(),
            topic,
            &opts.channel,
            opts.max_in_flight.max(1),
            msg_timeout,
            nsqds,
        )
        .await?;
        Ok(Box::new(sub))
    }

    /// Counts one channel of the topic (each NSQ channel holds a copy of
    /// every message): the one this queue consumes the topic with, else
    /// the busiest (skep has one channel per topic; another one, such as a
    /// stale channel nobody reads, must not make a drained topic look full
    /// to its consumer).
    async fn depth(&self, topic: &str) -> Result<Depth> {
        check_name("topic", topic)?;
        let nsqds = self.inner.discovery.all().await?;
        let channel = lock(&self.inner.channels).get(topic).cloned();
        let each = join_all(
            nsqds
                .iter()
                .map(|n| self.inner.http.depth(n, topic, channel.as_deref())),
        )
        .await;
        let mut total = Depth::default();
        for d in each {
            let d = d?;
            total.ready += d.ready;
            total.in_flight += d.in_flight;
            total.deferred += d.deferred;
        }
        Ok(total)
    }
}

/// Parses an NSQ URL for [`crate::QueueUrl`].
pub(crate) fn check_url(url: &str) -> Result<(), NsqError> {
    url::parse(url).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_messages_are_checked_before_anything_is_sent() {
        assert!(check_name("topic", "skep.tasks.default").is_ok());
        let err: QueueError = check_name("topic", "skep tasks").expect_err("invalid").into();
        assert_eq!(err.metric_label(), "invalid");
        assert!(err.to_string().contains("\"skep tasks\""), "{err}");
        let big = Bytes::from(vec![0u8; MAX_MESSAGE_BYTES + 1]);
        assert!(matches!(check_message(&big), Err(QueueError::TooLarge { .. })));
        assert!(check_message(&Bytes::from(vec![0u8; MAX_MESSAGE_BYTES])).is_ok());
        assert!(matches!(check_message(&Bytes::new()), Err(QueueError::Invalid(_))));
    }
}
