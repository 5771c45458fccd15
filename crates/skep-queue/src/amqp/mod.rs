//! The RabbitMQ backend (AMQP 0-9-1, through `lapin`).
//!
//! Guarantees, on top of the seam's contract (see the crate docs):
//! - a topic is one durable quorum queue; every message is persistent and a
//!   publish returns `Ok` only once the broker confirmed each message of the
//!   batch (a nack or an unroutable message fails the batch);
//! - a delayed requeue, a deferred publish and a dead-letter are each a
//!   confirmed publish of a copy (to a delay queue or to the dead-letter
//!   queue) *before* the original is acked: a process dying in between
//!   leaves a duplicate, never a loss. Queues, delays and attempts:
//!   [`topology`];
//! - `attempts` is 1 on the first delivery and one more for each
//!   redelivery (counted by the quorum queue: a rejected, timed-out or
//!   dropped delivery, or a consumer's channel that closed) and for each
//!   requeue (carried in a header of the re-published copy);
//! - the visibility timeout is enforced by the subscription, not the broker
//!   ([`subscription`]); `touch` restarts it. The broker's own
//!   `consumer_timeout` (30 min by default) still closes a channel that holds
//!   a delivery longer: set it above the longest per-file timeout;
//! - `max_in_flight` is the consumer's prefetch (`basic.qos`, per consumer);
//! - `depth`: `ready` is the broker's count (`queue.declare`, passive);
//!   `in_flight` and `deferred` come from the management API when the URL
//!   names its port (`?management_port=15672`), over all consumers but some
//!   seconds old (see [`management`]); without it `in_flight` counts this
//!   process's subscriptions only and `deferred` the delay queues this
//!   process declared. `in_flight` is never below this process's own count.
//!
//! Connections: one for publishing, one for consuming (RabbitMQ blocks a
//! publishing connection under a resource alarm; acks must still get
//! through), each re-established by the next call after it dies. A dead
//! connection fails publishes (the caller retries) and ends subscriptions
//! (`next` returns `None`; the caller subscribes again). Every broker call
//! has a timeout.

mod connection;
mod management;
mod publish;
mod subscription;
mod topology;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use lapin::Connection;
use lapin::options::{BasicConsumeOptions, BasicQosOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::uri::AMQPUri;
use tracing::{debug, warn};

use self::connection::ConnSlot;
use self::management::Management;
use self::publish::{Outgoing, Publisher};
use self::subscription::AmqpSubscription;
use self::topology::Declared;
use crate::{Depth, QueueError, Result, SubscribeOptions, Subscription, TaskQueue};

/// Timeout of one broker call (declare, qos, consume, ack, ...).
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Timeout of a whole publish, confirms included.
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(30);
/// Timeout of establishing a connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Heartbeat asked for when the URL does not say (`?heartbeat=SECONDS`): a
/// silently dead connection is noticed within about twice this.
pub const DEFAULT_HEARTBEAT_SECS: u16 = 15;
/// Largest message accepted. RabbitMQ's own limit is 128 MiB; messages this
/// big belong in a file that a message points to.
pub const MAX_MESSAGE_BYTES: usize = 16 << 20;
/// URL query option naming the management API's port.
pub const MANAGEMENT_PORT_OPTION: &str = "management_port";

/// What went wrong talking to RabbitMQ. Callers see it as a
/// [`QueueError`] (see the `From` impl).
#[derive(Debug, thiserror::Error)]
pub(crate) enum AmqpError {
    /// The URL could not be used.
    #[error("{0}")]
    Url(String),
    /// A broker call did not finish in time.
    #[error("{op} timed out after {after:?}")]
    Timeout { op: &'static str, after: Duration },
    /// The broker refused a call, or the connection failed under it.
    #[error("{op} failed: {source}")]
    Broker {
        op: &'static str,
        #[source]
        source: lapin::Error,
    },
    /// The broker nacked messages (it could not store them).
    #[error("the broker refused {count} of {of} messages published to {queue}")]
    Nacked { queue: String, count: usize, of: usize },
    /// Published messages could not be routed: the queue is gone.
    #[error("{count} messages published to {queue} were returned: the queue does not exist")]
    Unroutable { queue: String, count: usize },
    /// A queue or consumer name over AMQP's 255 bytes.
    #[error("name {name:?} is longer than 255 bytes")]
    NameTooLong { name: String },
    /// The broker broke the protocol's promises.
    #[error("protocol violation: {0}")]
    Protocol(&'static str),
    /// The management API could not be read.
    #[error("management api: {0}")]
    Management(String),
    /// The queue object is shutting down.
    #[error("the queue is closed")]
    Closed,
}

impl From<AmqpError> for QueueError {
    fn from(e: AmqpError) -> Self {
        match e {
            AmqpError::Url(msg) => QueueError::InvalidUrl(msg),
            other => QueueError::Unavailable(other.to_string()),
        }
    }
}

/// Runs one broker call with a timeout.
pub(crate) async fn call<T>(
    op: &'static str,
    after: Duration,
    fut: impl Future<Output = lapin::Result<T>>,
) -> Result<T, AmqpError> {
    match tokio::time::timeout(after, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(source)) => Err(AmqpError::Broker { op, source }),
        Err(_) => Err(AmqpError::Timeout { op, after }),
    }
}

pub(crate) use crate::lock;

/// A `TaskQueue` on a RabbitMQ broker. Cheap to clone; clones share
/// connections.
#[derive(Clone)]
pub struct AmqpQueue {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for AmqpQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpQueue")
            .field("host", &self.inner.host)
            .field("management", &self.inner.management.is_some())
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    host: String,
    publish_conn: ConnSlot,
    consume_conn: ConnSlot,
    publisher: Publisher,
    declared: Declared,
    management: Option<Management>,
    /// Deliveries held by this process's subscriptions, per topic.
    in_flight: Mutex<HashMap<String, Arc<AtomicU64>>>,
    next_consumer: AtomicU64,
}

impl AmqpQueue {
    /// Connects to the broker at `url` (`amqp://user:password@host:port/vhost`
    /// or `amqps://…`; lapin's query options such as `heartbeat` apply, and
    /// `management_port` enables the management API for `depth`). Fails if
    /// the broker cannot be reached now; later connection losses are
    /// repaired by the next call.
    pub async fn connect(url: &str) -> Result<Self> {
        let (uri, management_port) = parse_url(url)?;
        let management = management_port.map(|port| {
            Management::new(
                &uri.authority.host,
                port,
                &uri.authority.userinfo.username,
                &uri.authority.userinfo.password,
                &uri.vhost,
                CALL_TIMEOUT,
            )
        });
        let inner = Inner {
            host: format!("{}:{}", uri.authority.host, uri.authority.port),
            publish_conn: ConnSlot::new("publish", uri.clone(), CONNECT_TIMEOUT),
            consume_conn: ConnSlot::new("consume", uri, CONNECT_TIMEOUT),
            publisher: Publisher::new(),
            declared: Declared::default(),
            management,
            in_flight: Mutex::new(HashMap::new()),
            next_consumer: AtomicU64::new(1),
        };
        inner.publish_conn.get().await?;
        Ok(Self { inner: Arc::new(inner) })
    }

    /// Deletes a topic's queues, messages and all: its work queue, its
    /// dead-letter queue and the delay queues this process declared for it
    /// (others delete themselves when idle). For tests and purges; a
    /// consumer of a deleted queue sees its subscription end.
    pub async fn delete_topic(&self, topic: &str) -> Result<()> {
        let inner = &self.inner;
        let mut names = vec![topic.to_owned()];
        if !topology::is_dead_letter_queue(topic) {
            names.push(crate::dead_letter_topic(topic));
        }
        names.extend(inner.declared.live_delay_queues(topic));
        let conn = inner.publish_conn.get().await?;
        let ch = call("channel.open", CALL_TIMEOUT, conn.create_channel()).await?;
        for name in names {
            inner.declared.forget(&name);
            call(
                "queue.delete",
                CALL_TIMEOUT,
                ch.queue_delete(topology::short(&name)?, QueueDeleteOptions::default()),
            )
            .await?;
        }
        Ok(())
    }

    /// Closes both connections. Subscriptions still open end; un-acked
    /// deliveries go back to their queues.
    pub async fn close(&self) {
        self.inner.publish_conn.close().await;
        self.inner.consume_conn.close().await;
    }
}

/// Splits a URL into what lapin takes and this backend's own options.
pub(crate) fn parse_url(url: &str) -> Result<(AMQPUri, Option<u16>), AmqpError> {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, q),
        None => (url, ""),
    };
    let mut management_port = None;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key == MANAGEMENT_PORT_OPTION {
            let port = value
                .parse::<u16>()
                .map_err(|_| AmqpError::Url(format!("{MANAGEMENT_PORT_OPTION}={value} is not a port")))?;
            management_port = Some(port);
        } else {
            kept.push(pair);
        }
    }
    let lapin_url = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    let mut uri: AMQPUri = lapin_url.parse().map_err(AmqpError::Url)?;
    if uri.query.heartbeat.is_none() {
        uri.query.heartbeat = Some(DEFAULT_HEARTBEAT_SECS);
    }
    Ok((uri, management_port))
}

impl Inner {
    async fn declare(&self, conn: &Connection, name: &str, args: FieldTable) -> Result<(), AmqpError> {
        let ch = call("channel.open", CALL_TIMEOUT, conn.create_channel()).await?;
        call(
            "queue.declare",
            CALL_TIMEOUT,
            ch.queue_declare(topology::short(name)?, QueueDeclareOptions::durable(), args),
        )
        .await?;
        Ok(())
    }

    /// Declares a topic's work queue and its dead-letter queue, once per
    /// process.
    async fn ensure_topic(&self, topic: &str) -> Result<(), AmqpError> {
        if self.declared.fresh(topic, Duration::MAX) {
            return Ok(());
        }
        topology::short(topic)?;
        let conn = self.publish_conn.get().await?;
        if !topology::is_dead_letter_queue(topic) {
            let dead = crate::dead_letter_topic(topic);
            self.declare(&conn, &dead, topology::topic_args(&dead)).await?;
            self.declared.mark(&dead);
        }
        self.declare(&conn, topic, topology::topic_args(topic)).await?;
        self.declared.mark(topic);
        debug!(topic, "declared");
        Ok(())
    }

    async fn ensure_delay_queue(&self, topic: &str, bucket_ms: u64) -> Result<String, AmqpError> {
        self.ensure_topic(topic).await?;
        let name = topology::delay_queue_name(topic, bucket_ms);
        if !self.declared.fresh(&name, topology::DELAY_REDECLARE) {
            let conn = self.publish_conn.get().await?;
            self.declare(&conn, &name, topology::delay_args(topic, bucket_ms))
                .await?;
            self.declared.mark(&name);
        }
        Ok(name)
    }

    /// Publishes to a declared queue, with the whole-publish timeout.
    async fn publish_to(&self, queue: &str, messages: Vec<Outgoing>) -> Result<(), AmqpError> {
        let conn = self.publish_conn.get().await?;
        let out = match tokio::time::timeout(PUBLISH_TIMEOUT, self.publisher.publish(&conn, queue, messages)).await {
            Ok(r) => r,
            Err(_) => Err(AmqpError::Timeout {
                op: "publish",
                after: PUBLISH_TIMEOUT,
            }),
        };
        if let Err(AmqpError::Unroutable { .. }) = &out {
            // Someone deleted it; declare it again on the next call.
            self.declared.forget(queue);
        }
        out
    }

    /// Publishes one message to `topic` after `delay` (none: at once),
    /// carrying `attempts` earlier deliveries.
    pub(crate) async fn publish_attempt(
        &self,
        topic: &str,
        body: Bytes,
        attempts: u32,
        delay: Duration,
    ) -> Result<(), AmqpError> {
        let headers = (attempts > 0).then(|| topology::attempts_headers(attempts));
        let msg = vec![Outgoing { body, headers }];
        let bucket = topology::delay_bucket_ms(delay);
        if delay > topology::MAX_DELAY {
            warn!(?delay, max = ?topology::MAX_DELAY, "delay cut to the longest supported");
        }
        if bucket == 0 {
            self.ensure_topic(topic).await?;
            return self.publish_to(topic, msg).await;
        }
        let queue = self.ensure_delay_queue(topic, bucket).await?;
        self.publish_to(&queue, msg).await
    }

    /// Publishes a message given up on to the topic's dead-letter queue.
    pub(crate) async fn publish_dead_letter(&self, topic: &str, body: Bytes, attempts: u32) -> Result<(), AmqpError> {
        let dead = crate::dead_letter_topic(topic);
        self.ensure_topic(&dead).await?;
        let mut headers = FieldTable::default();
        // NB: informational only, not the attempts header: a message moved
        // back from the dead-letter queue starts counting afresh.
        headers.insert(
            "skep-dead-after-attempts".into(),
            AMQPValue::LongLongInt(attempts.into()),
        );
        headers.insert("skep-dead-from".into(), AMQPValue::LongString(topic.into()));
        self.publish_to(
            &dead,
            vec![Outgoing {
                body,
                headers: Some(headers),
            }],
        )
        .await
    }

    fn in_flight_counter(&self, topic: &str) -> Arc<AtomicU64> {
        lock(&self.in_flight).entry(topic.to_owned()).or_default().clone()
    }

    /// Ready messages of a queue; `None` if it does not exist.
    async fn ready_count(&self, name: &str) -> Result<Option<u64>, AmqpError> {
        let conn = self.publish_conn.get().await?;
        let ch = call("channel.open", CALL_TIMEOUT, conn.create_channel()).await?;
        let passive = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        match call(
            "queue.declare",
            CALL_TIMEOUT,
            ch.queue_declare(topology::short(name)?, passive, FieldTable::default()),
        )
        .await
        {
            Ok(q) => Ok(Some(q.message_count().into())),
            Err(AmqpError::Broker { source, .. }) if is_not_found(&source) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

fn is_not_found(e: &lapin::Error) -> bool {
    match e.kind() {
        lapin::ErrorKind::ProtocolError(amqp) => amqp.get_id() == 404,
        _ => false,
    }
}

#[async_trait]
impl TaskQueue for AmqpQueue {
    fn backend(&self) -> &'static str {
        "amqp"
    }

    fn is_durable(&self) -> bool {
        true
    }

    async fn publish(&self, topic: &str, messages: Vec<Bytes>) -> Result<()> {
        if let Some(m) = messages.iter().find(|m| m.len() > MAX_MESSAGE_BYTES) {
            return Err(QueueError::TooLarge {
                size: m.len(),
                limit: MAX_MESSAGE_BYTES,
            });
        }
        if messages.is_empty() {
            return Ok(());
        }
        self.inner.ensure_topic(topic).await?;
        let out = messages.into_iter().map(Outgoing::plain).collect();
        Ok(self.inner.publish_to(topic, out).await?)
    }

    async fn publish_deferred(&self, topic: &str, message: Bytes, delay: Duration) -> Result<()> {
        if message.len() > MAX_MESSAGE_BYTES {
            return Err(QueueError::TooLarge {
                size: message.len(),
                limit: MAX_MESSAGE_BYTES,
            });
        }
        Ok(self.inner.publish_attempt(topic, message, 0, delay).await?)
    }

    async fn subscribe(&self, topic: &str, opts: SubscribeOptions) -> Result<Box<dyn Subscription>> {
        let inner = &self.inner;
        inner.ensure_topic(topic).await?;
        let conn = inner.consume_conn.get().await?;
        let ch = call("channel.open", CALL_TIMEOUT, conn.create_channel()).await?;
        let prefetch = u16::try_from(opts.max_in_flight.max(1)).unwrap_or(u16::MAX);
        call(
            "basic.qos",
            CALL_TIMEOUT,
            ch.basic_qos(prefetch, BasicQosOptions { global: false }),
        )
        .await?;
        let n = inner.next_consumer.fetch_add(1, Ordering::Relaxed);
        let channel_name: String = opts.channel.chars().take(64).collect();
        let tag = format!("skep-{channel_name}-{}-{n}", std::process::id());
        let consumer = call(
            "basic.consume",
            CALL_TIMEOUT,
            ch.basic_consume(
                topology::short(topic)?,
                topology::short(&tag)?,
                BasicConsumeOptions::default(),
                FieldTable::default(),
            ),
        )
        .await
        .inspect_err(|_| {
            // NB: maybe the queue was deleted; the caller's next subscribe
            // declares it again.
            inner.declared.forget(topic);
        })?;
        Ok(Box::new(AmqpSubscription::start(
            inner.clone(),
            topic,
            ch,
            consumer,
            opts.visibility_timeout,
            inner.in_flight_counter(topic),
        )))
    }

    async fn depth(&self, topic: &str) -> Result<Depth> {
        let inner = &self.inner;
        inner.ensure_topic(topic).await?;
        let Some(ready) = inner.ready_count(topic).await? else {
            // Deleted since this process declared it.
            inner.declared.forget(topic);
            return Ok(Depth::default());
        };
        let mut depth = Depth {
            ready,
            in_flight: inner.in_flight_counter(topic).load(Ordering::Relaxed),
            deferred: 0,
        };
        // NB: exact and current for what this process did; the management
        // API adds what other processes did, a statistics interval late.
        for name in inner.declared.live_delay_queues(topic) {
            depth.deferred += inner.ready_count(&name).await?.unwrap_or(0);
        }
        if let Some(m) = &inner.management {
            let stats = async {
                let q = m.queue(topic).await?;
                let delayed = m.queues_with_prefix(&format!("{topic}.delay.")).await?;
                Ok::<_, AmqpError>((q.unwrap_or_default(), delayed))
            };
            match stats.await {
                Ok((q, delayed)) => {
                    depth.in_flight = depth.in_flight.max(q.unacked);
                    depth.deferred = depth.deferred.max(delayed.ready + delayed.unacked);
                }
                Err(error) => warn!(%error, topic, "management api unavailable; depth counts this process only"),
            }
        }
        Ok(depth)
    }
}
