//! Publishing with publisher confirms: a batch is `Ok` only once the broker
//! has confirmed every message of it (for a quorum queue: written to a
//! majority of its replicas' logs).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::future::{join_all, try_join_all};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection};
use tokio::sync::Semaphore;
use tracing::debug;

use super::{AmqpError, call, lock};

/// Publishes in flight at once per queue object; more wait.
pub(super) const MAX_CONCURRENT_PUBLISHES: usize = 32;
/// Idle confirm-mode channels kept for reuse.
const POOL_SIZE: usize = 16;
/// Messages published before waiting for their confirms; bounds the
/// promises held per batch.
pub(super) const CONFIRM_WINDOW: usize = 1024;
/// A batch this large is split over several channels confirmed in
/// parallel: the broker runs each channel in its own process, so one
/// batch's confirms no longer wait on one channel's writes.
const SPLIT_AT: usize = 256;
/// Channels one batch is split over at most.
const SPLIT_CHANNELS: usize = 4;
/// AMQP delivery mode of a message written to disk.
const PERSISTENT: u8 = 2;
/// How often nacked messages are published again, and the first pause.
const NACK_RETRIES: u32 = 3;
const NACK_BACKOFF: Duration = Duration::from_millis(50);

/// One message to publish.
pub(super) struct Outgoing {
    pub body: Bytes,
    /// Extra headers (the carried attempt count of a re-published message).
    pub headers: Option<FieldTable>,
}

impl Outgoing {
    pub(super) fn plain(body: Bytes) -> Self {
        Self { body, headers: None }
    }
}

pub(super) struct Publisher {
    idle: Mutex<Vec<Channel>>,
    permits: Semaphore,
    /// Source of message ids, unique within this process.
    next_id: AtomicU64,
    /// Distinguishes this process's ids from others'.
    id_prefix: String,
}

impl Publisher {
    pub(super) fn new() -> Self {
        // NB: a random-enough prefix without a dependency: the std hasher is
        // seeded randomly per process.
        use std::hash::{BuildHasher, RandomState};
        let seed = RandomState::new().hash_one(std::process::id());
        Self {
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(MAX_CONCURRENT_PUBLISHES),
            next_id: AtomicU64::new(1),
            id_prefix: format!("{:08x}", seed as u32),
        }
    }

    async fn channel(&self, conn: &Connection) -> Result<Channel, AmqpError> {
        loop {
            let pooled = lock(&self.idle).pop();
            match pooled {
                Some(ch) if ch.status().connected() => return Ok(ch),
                Some(_) => continue,
                None => break,
            }
        }
        let ch = call("channel.open", super::CALL_TIMEOUT, conn.create_channel()).await?;
        call(
            "confirm.select",
            super::CALL_TIMEOUT,
            ch.confirm_select(ConfirmSelectOptions::default()),
        )
        .await?;
        Ok(ch)
    }

    fn give_back(&self, ch: Channel) {
        let mut idle = lock(&self.idle);
        if idle.len() < POOL_SIZE {
            idle.push(ch);
        }
    }

    /// Publishes `messages` to `queue` (on the default exchange) and waits
    /// for every confirm; a large batch is split over a few channels (no
    /// order is kept between them; the queue promises none). Messages the broker nacks are published again, a
    /// few times: a quorum queue nacks while it elects its first leader
    /// (seen on RabbitMQ 3.10 right after the queue was declared). On any
    /// error the channel is dropped (closed), so nothing of a failed batch
    /// lingers on a reused channel.
    pub(super) async fn publish(
        &self,
        conn: &Connection,
        queue: &str,
        messages: Vec<Outgoing>,
    ) -> Result<(), AmqpError> {
        let _permit = self.permits.acquire().await.map_err(|_| AmqpError::Closed)?;
        let routing_key = super::topology::short(queue)?;
        let parts = split(messages.len());
        let mut rest = messages.as_slice();
        let mut chunks = Vec::with_capacity(parts);
        for i in 0..parts {
            let take = rest.len().div_ceil(parts - i);
            let (head, tail) = rest.split_at(take);
            chunks.push(head);
            rest = tail;
        }
        try_join_all(
            chunks
                .into_iter()
                .map(|c| self.publish_on_one(conn, &routing_key, queue, c)),
        )
        .await?;
        Ok(())
    }

    /// [`publish`](Self::publish) of one part on one channel.
    async fn publish_on_one(
        &self,
        conn: &Connection,
        routing_key: &ShortString,
        queue: &str,
        messages: &[Outgoing],
    ) -> Result<(), AmqpError> {
        let ch = self.channel(conn).await?;
        for window in messages.chunks(CONFIRM_WINDOW) {
            let mut pending: Vec<&Outgoing> = window.iter().collect();
            let mut backoff = NACK_BACKOFF;
            for retry in 0..=NACK_RETRIES {
                let nacked = self.send(&ch, routing_key, queue, &pending).await?;
                if nacked.is_empty() {
                    break;
                }
                if retry == NACK_RETRIES {
                    return Err(AmqpError::Nacked {
                        queue: queue.to_owned(),
                        count: nacked.len(),
                        of: window.len(),
                    });
                }
                debug!(
                    queue,
                    nacked = nacked.len(),
                    of = pending.len(),
                    "the broker nacked messages; publishing them again"
                );
                pending = nacked.into_iter().map(|i| pending[i]).collect();
                tokio::time::sleep(backoff).await;
                backoff *= 4;
            }
        }
        self.give_back(ch);
        Ok(())
    }

    /// Publishes `messages` and waits for their confirms; the indices of
    /// those the broker nacked.
    async fn send(
        &self,
        ch: &Channel,
        routing_key: &ShortString,
        queue: &str,
        messages: &[&Outgoing],
    ) -> Result<Vec<usize>, AmqpError> {
        let options = BasicPublishOptions {
            mandatory: true,
            immediate: false,
        };
        let sends = messages.iter().map(|m| {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let mut props = BasicProperties::default()
                .with_delivery_mode(PERSISTENT)
                .with_message_id(format!("{}-{id}", self.id_prefix).into());
            if let Some(h) = &m.headers {
                props = props.with_headers(h.clone());
            }
            ch.basic_publish("".into(), routing_key.clone(), options, &m.body, props)
        });
        let confirms = try_join_all(sends).await.map_err(|source| AmqpError::Broker {
            op: "basic.publish",
            source,
        })?;
        let mut nacked = Vec::new();
        let mut returned = 0usize;
        for (i, confirmation) in join_all(confirms).await.into_iter().enumerate() {
            match confirmation {
                Ok(Confirmation::Ack(None)) => {}
                Ok(Confirmation::Ack(Some(_))) => returned += 1,
                Ok(Confirmation::Nack(_)) => nacked.push(i),
                Ok(Confirmation::NotRequested) => {
                    return Err(AmqpError::Protocol("a publish on a confirm channel was not confirmed"));
                }
                Err(source) => {
                    return Err(AmqpError::Broker {
                        op: "publisher confirm",
                        source,
                    });
                }
            }
        }
        if returned > 0 {
            return Err(AmqpError::Unroutable {
                queue: queue.to_owned(),
                count: returned,
            });
        }
        Ok(nacked)
    }
}

/// How many channels a batch of `n` messages is split over.
fn split(n: usize) -> usize {
    n.div_ceil(SPLIT_AT).clamp(1, SPLIT_CHANNELS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_batches_use_a_few_channels() {
        assert_eq!(split(0), 1);
        assert_eq!(split(1), 1);
        assert_eq!(split(SPLIT_AT), 1);
        assert_eq!(split(SPLIT_AT + 1), 2);
        assert_eq!(split(1000), 4);
        assert_eq!(split(100_000), SPLIT_CHANNELS);
    }
}
