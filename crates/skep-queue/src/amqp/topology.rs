//! Which RabbitMQ queues a topic uses and how they are declared. Every
//! queue's arguments are a pure function of its name, so any process can
//! declare any of them and get the same queue (RabbitMQ refuses a
//! re-declaration with other arguments).
//!
//! For a topic `T`, all on the default exchange, all durable:
//! - `T`, a quorum queue: the work queue. Quorum queues count redeliveries
//!   (`x-delivery-count`), which classic queues do not. Its dead-letter
//!   route leads to `T.dead`, so a message the broker gives up on (the
//!   delivery limit of RabbitMQ 4, 20 by default; 3.10 has none) lands where
//!   an operator can see it instead of being dropped.
//! - `T.dead` ([`crate::dead_letter_topic`]), a quorum queue with no
//!   dead-letter route of its own.
//! - `T.delay.<ms>`, one quorum queue per delay bucket, created on demand:
//!   nothing consumes it; its `x-message-ttl` expires each message after
//!   `<ms>` and dead-letters it, at-least-once, back into `T`. One TTL per
//!   queue keeps expiry in FIFO order, so a long delay never holds back a
//!   short one. The queue deletes itself (`x-expires`) once unused for
//!   [`DELAY_QUEUE_IDLE`] after its TTL.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use lapin::types::{AMQPValue, FieldTable, ShortString};
use tokio::time::Instant;

use super::AmqpError;

/// The suffix of dead-letter queues (see [`crate::dead_letter_topic`]).
const DEAD_SUFFIX: &str = ".dead";

/// Longest delay a requeue or deferred publish gets; longer ones are cut to
/// it. Well inside the broker's limit for a TTL (2^32 - 1 ms).
pub(super) const MAX_DELAY: Duration = Duration::from_secs(14 * 24 * 3600);

/// How long a delay queue lives on, unused, after its TTL has passed.
pub(super) const DELAY_QUEUE_IDLE: Duration = Duration::from_secs(600);

/// A process re-declares a delay queue before publishing to it when its own
/// last declaration is older than this. NB: must stay well below
/// [`DELAY_QUEUE_IDLE`]: a message published at most this long after the
/// declaration that kept the queue alive expires before the queue does.
pub(super) const DELAY_REDECLARE: Duration = Duration::from_secs(60);

/// Header carrying how many times a message was delivered before it was
/// re-published (requeue with a delay). NB: no `x-` prefix: RabbitMQ 4
/// treats `x-` headers as its own annotations.
pub(super) const ATTEMPTS_HEADER: &str = "skep-attempts";

/// The broker's redelivery count on quorum queues.
const DELIVERY_COUNT_HEADER: &str = "x-delivery-count";

pub(super) fn is_dead_letter_queue(name: &str) -> bool {
    name.ends_with(DEAD_SUFFIX)
}

/// A queue name as the protocol carries it (at most 255 bytes).
pub(super) fn short(name: &str) -> Result<ShortString, AmqpError> {
    ShortString::try_new(name).map_err(|_| AmqpError::NameTooLong { name: name.to_owned() })
}

fn string(s: &str) -> AMQPValue {
    AMQPValue::LongString(s.into())
}

/// Arguments of a topic's work queue (or of a dead-letter queue). An
/// ephemeral topic ([`crate::is_ephemeral`]) keeps a bounded number of
/// messages for a bounded time and drops the oldest first.
pub(super) fn topic_args(name: &str) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), string("quorum"));
    if crate::is_ephemeral(name) {
        args.insert(
            "x-max-length".into(),
            AMQPValue::LongLongInt(crate::EPHEMERAL_MAX_MESSAGES),
        );
        args.insert("x-overflow".into(), string("drop-head"));
        args.insert(
            "x-message-ttl".into(),
            AMQPValue::LongLongInt(crate::EPHEMERAL_TTL.as_millis() as i64),
        );
        return args;
    }
    if !is_dead_letter_queue(name) {
        args.insert("x-dead-letter-exchange".into(), string(""));
        args.insert(
            "x-dead-letter-routing-key".into(),
            string(&crate::dead_letter_topic(name)),
        );
    }
    args
}

pub(super) fn delay_queue_name(topic: &str, bucket_ms: u64) -> String {
    format!("{topic}.delay.{bucket_ms}")
}

/// Arguments of the delay queue that holds messages for `bucket_ms` and then
/// hands them to `topic`.
pub(super) fn delay_args(topic: &str, bucket_ms: u64) -> FieldTable {
    let ttl = i64::try_from(bucket_ms).unwrap_or(i64::MAX);
    let idle = DELAY_QUEUE_IDLE.as_millis() as i64;
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), string("quorum"));
    args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(ttl));
    args.insert("x-expires".into(), AMQPValue::LongLongInt(ttl.saturating_add(idle)));
    args.insert("x-dead-letter-exchange".into(), string(""));
    args.insert("x-dead-letter-routing-key".into(), string(topic));
    // NB: at-least-once dead-lettering (RabbitMQ 3.10+) keeps a message in
    // the delay queue until the work queue has confirmed it; it requires
    // reject-publish overflow (no length limit is set, so it never rejects).
    args.insert("x-dead-letter-strategy".into(), string("at-least-once"));
    args.insert("x-overflow".into(), string("reject-publish"));
    args
}

/// The delay bucket for `delay`, in milliseconds: rounded up to two
/// significant digits (so at most 10% late), at most [`MAX_DELAY`]. Zero
/// means no delay. Buckets bound the number of delay queues a topic uses to
/// 90 per decade of delay.
pub(super) fn delay_bucket_ms(delay: Duration) -> u64 {
    let max = MAX_DELAY.as_millis() as u64;
    let ms = delay.min(MAX_DELAY).as_nanos().div_ceil(1_000_000) as u64;
    if ms < 100 {
        return ms;
    }
    let mut scale = 1u64;
    while ms / scale >= 100 {
        scale *= 10;
    }
    (ms.div_ceil(scale) * scale).min(max)
}

/// How many deliveries a message had: the count it carried when it was last
/// re-published, plus the broker's redeliveries since, plus this one.
pub(super) fn attempts(headers: Option<&FieldTable>, redelivered: bool) -> u32 {
    let get = |key: &str| headers.and_then(|h| h.inner().get(key)).and_then(as_u64).unwrap_or(0);
    let carried = get(ATTEMPTS_HEADER);
    // NB: classic queues (or a broker that does not count a return) only say
    // `redelivered`; count that as one.
    let redeliveries = get(DELIVERY_COUNT_HEADER).max(u64::from(redelivered));
    let total = carried.saturating_add(redeliveries).saturating_add(1);
    u32::try_from(total).unwrap_or(u32::MAX)
}

fn as_u64(v: &AMQPValue) -> Option<u64> {
    match *v {
        AMQPValue::ShortShortInt(n) => u64::try_from(n).ok(),
        AMQPValue::ShortShortUInt(n) => Some(u64::from(n)),
        AMQPValue::ShortInt(n) => u64::try_from(n).ok(),
        AMQPValue::ShortUInt(n) => Some(u64::from(n)),
        AMQPValue::LongInt(n) => u64::try_from(n).ok(),
        AMQPValue::LongUInt(n) => Some(u64::from(n)),
        AMQPValue::LongLongInt(n) => u64::try_from(n).ok(),
        AMQPValue::Timestamp(n) => Some(n),
        _ => None,
    }
}

/// The headers of a re-published message that had `attempts` deliveries.
pub(super) fn attempts_headers(attempts: u32) -> FieldTable {
    let mut h = FieldTable::default();
    h.insert(ATTEMPTS_HEADER.into(), AMQPValue::LongLongInt(i64::from(attempts)));
    h
}

/// Queues this process declared, and when. Declarations are durable broker
/// state, so the record stays valid across reconnects; a publish that comes
/// back unroutable (someone deleted the queue) forgets the queue.
#[derive(Default)]
pub(super) struct Declared {
    at: Mutex<HashMap<String, Instant>>,
}

/// Queues one process remembers at most; past it the oldest are forgotten
/// (and simply declared again when used).
const DECLARED_LIMIT: usize = 10_000;

impl Declared {
    /// Whether `name` was declared less than `max_age` ago.
    pub(super) fn fresh(&self, name: &str, max_age: Duration) -> bool {
        super::lock(&self.at).get(name).is_some_and(|at| at.elapsed() < max_age)
    }

    pub(super) fn mark(&self, name: &str) {
        let mut at = super::lock(&self.at);
        if at.len() >= DECLARED_LIMIT
            && !at.contains_key(name)
            && let Some(oldest) = at.iter().min_by_key(|(_, t)| **t).map(|(n, _)| n.clone())
        {
            at.remove(&oldest);
        }
        at.insert(name.to_owned(), Instant::now());
    }

    pub(super) fn forget(&self, name: &str) {
        super::lock(&self.at).remove(name);
    }

    /// The delay queues of `topic` declared within their lifetime (a bucket
    /// and its queue name), for counting deferred messages.
    pub(super) fn live_delay_queues(&self, topic: &str) -> Vec<String> {
        let prefix = format!("{topic}.delay.");
        super::lock(&self.at)
            .iter()
            .filter_map(|(name, at)| {
                let ms: u64 = name.strip_prefix(&prefix)?.parse().ok()?;
                let lifetime = Duration::from_millis(ms) + DELAY_QUEUE_IDLE;
                (at.elapsed() < lifetime).then(|| name.clone())
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_buckets_round_up_to_two_significant_digits() {
        let ms = |n| delay_bucket_ms(Duration::from_millis(n));
        assert_eq!(delay_bucket_ms(Duration::ZERO), 0);
        assert_eq!(delay_bucket_ms(Duration::from_micros(10)), 1);
        assert_eq!(ms(99), 99);
        assert_eq!(ms(100), 100);
        assert_eq!(ms(800), 800);
        assert_eq!(ms(801), 810);
        assert_eq!(ms(1234), 1300);
        assert_eq!(ms(60_000), 60_000);
        assert_eq!(ms(61_001), 62_000);
        assert_eq!(
            delay_bucket_ms(Duration::from_secs(100 * 24 * 3600)),
            MAX_DELAY.as_millis() as u64
        );
        for n in [1u64, 7, 150, 999, 1001, 123_456, 9_999_999] {
            let b = ms(n);
            assert!(b >= n && b <= n + n / 10, "{n} -> {b}");
        }
    }

    #[test]
    fn attempts_add_the_carried_count_and_the_broker_count() {
        assert_eq!(attempts(None, false), 1);
        assert_eq!(attempts(None, true), 2, "a classic-queue redelivery");
        let mut h = FieldTable::default();
        h.insert(DELIVERY_COUNT_HEADER.into(), AMQPValue::LongLongInt(2));
        assert_eq!(attempts(Some(&h), true), 3);
        h.insert(ATTEMPTS_HEADER.into(), AMQPValue::LongLongInt(4));
        assert_eq!(attempts(Some(&h), true), 7);
        assert_eq!(attempts(Some(&attempts_headers(3)), false), 4);
        let mut bad = FieldTable::default();
        bad.insert(ATTEMPTS_HEADER.into(), AMQPValue::LongString("x".into()));
        bad.insert(DELIVERY_COUNT_HEADER.into(), AMQPValue::LongLongInt(-5));
        assert_eq!(attempts(Some(&bad), false), 1, "nonsense headers count as absent");
    }

    #[test]
    fn arguments_depend_on_the_name_only() {
        let work = topic_args("skep.tasks.p");
        assert!(work.contains_key("x-dead-letter-routing-key"));
        assert!(!topic_args("skep.tasks.p.dead").contains_key("x-dead-letter-routing-key"));
        assert_eq!(delay_args("t", 800), delay_args("t", 800));
        assert_eq!(delay_queue_name("t", 800), "t.delay.800");
    }

    #[test]
    fn long_names_are_refused_not_panicked_on() {
        assert!(short(&"x".repeat(255)).is_ok());
        assert!(matches!(short(&"x".repeat(256)), Err(AmqpError::NameTooLong { .. })));
    }

    #[test]
    fn live_delay_queues_lists_only_this_topics_delay_queues() {
        let d = Declared::default();
        d.mark("t");
        d.mark("t.delay.800");
        d.mark("t.delay.1300");
        d.mark("t.other.delay.5");
        d.mark("t.delay.x");
        let mut live = d.live_delay_queues("t");
        live.sort();
        assert_eq!(live, vec!["t.delay.1300".to_owned(), "t.delay.800".to_owned()]);
    }
}
