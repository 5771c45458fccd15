//! The conformance suite every `TaskQueue` backend must pass. Each case
//! takes a queue and a topic prefix of its own (so cases can share a broker)
//! and panics with a message saying what broke. Cases run in real time with
//! short timeouts, because brokers do.
//!
//! Run it from a backend's tests with one `#[tokio::test]` per case:
//! `skep_queue::queue_conformance_cases!(my_macro)` calls `my_macro!` with
//! the name of every case, so a new case reaches every backend; see
//! `tests/memory_conformance.rs`.

/// Calls `$m!(case, case, ...)` with every case of the queue suite: the one
/// list of cases, for every backend's tests.
#[macro_export]
macro_rules! queue_conformance_cases {
    ($m:ident) => {
        $m!(
            publish_consume_ack,
            redelivery_after_consumer_death,
            requeue_with_delay,
            attempts_are_counted,
            late_ack_is_harmless,
            depth_counts,
            ten_thousand_in_batches,
            deferred_publish,
            dead_letter_moves_the_message,
        );
    };
}

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::{Instant, timeout};

use crate::{Delivery, SubscribeOptions, Subscription, TaskQueue};

/// The visibility timeout the cases subscribe with.
pub const VISIBILITY: Duration = Duration::from_millis(1500);
/// How long a case waits for something that should happen.
pub const PATIENCE: Duration = Duration::from_secs(15);

fn body(i: usize) -> Bytes {
    Bytes::from(format!("m{i:06}"))
}

async fn subscribe(q: &dyn TaskQueue, topic: &str, max_in_flight: usize) -> Box<dyn Subscription> {
    q.subscribe(topic, SubscribeOptions::new("conformance", max_in_flight, VISIBILITY))
        .await
        .expect("subscribe")
}

async fn next(sub: &mut Box<dyn Subscription>, what: &str) -> Delivery {
    match timeout(PATIENCE, sub.next()).await {
        Ok(Some(d)) => d,
        Ok(None) => panic!("{what}: the subscription ended"),
        Err(_) => panic!("{what}: nothing delivered within {PATIENCE:?}"),
    }
}

async fn drain_acking(q: &dyn TaskQueue, topic: &str, n: usize) -> HashSet<Bytes> {
    let mut sub = subscribe(q, topic, 256).await;
    let mut seen = HashSet::new();
    let mut duplicates = 0usize;
    while seen.len() < n {
        let d = next(&mut sub, &format!("draining {n} ({} so far)", seen.len())).await;
        if !seen.insert(d.body.clone()) {
            duplicates += 1;
        }
        d.ack().await.expect("ack");
    }
    // NB: a backend may duplicate (the contract allows it) but not wildly.
    assert!(duplicates <= n / 10, "{duplicates} duplicates while draining {n}");
    seen
}

async fn eventually_empty(q: &dyn TaskQueue, topic: &str) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let d = q.depth(topic).await.expect("depth");
        if d.total() == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{topic} still holds {d:?} after everything was acked"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every published message is delivered and, once acked, gone.
pub async fn publish_consume_ack(q: &dyn TaskQueue, prefix: &str) {
    let topic = format!("{prefix}.pca");
    let msgs: Vec<Bytes> = (0..100).map(body).collect();
    q.publish(&topic, msgs.clone()).await.expect("publish");
    let seen = drain_acking(q, &topic, 100).await;
    assert_eq!(seen, msgs.into_iter().collect::<HashSet<_>>());
    eventually_empty(q, &topic).await;
}

/// A consumer that dies holding a delivery does not lose it: it comes back
/// to another consumer with a higher attempt count.
pub async fn redelivery_after_consumer_death(q: &dyn TaskQueue, prefix: &str) {
    let topic = format!("{prefix}.death");
    q.publish(&topic, vec![body(1)]).await.expect("publish");
    {
        let mut doomed = subscribe(q, &topic, 1).await;
        let d = next(&mut doomed, "first delivery").await;
        assert_eq!(d.attempts, 1);
        // NB: forget, not drop: a dead process settles nothing.
        std::mem::forget(d);
    }
    let mut survivor = subscribe(q, &topic, 1).await;
    let d = next(&mut survivor, "redelivery").await;
    assert_eq!(d.body, body(1));
    assert!(d.attempts >= 2, "attempts {} after a redelivery", d.attempts);
    d.ack().await.expect("ack");
    eventually_empty(q, &topic).await;
}

/// A requeue with a delay keeps the message away for about that long and
/// counts the attempt.
pub async fn requeue_with_delay(q: &dyn TaskQueue, prefix: &str) {
    let topic = format!("{prefix}.delay");
    q.publish(&topic, vec![body(2)]).await.expect("publish");
    let mut sub = subscribe(q, &topic, 1).await;
    let d = next(&mut sub, "first delivery").await;
    let delay = Duration::from_millis(800);
    let start = Instant::now();
    d.requeue(delay).await.expect("requeue");
    let d = next(&mut sub, "after the requeue").await;
    let waited = start.elapsed();
    assert!(
        waited >= delay.mul_f32(0.8),
        "came back after {waited:?}, asked for {delay:?}"
    );
    assert_eq!(d.attempts, 2);
    d.ack().await.expect("ack");
}

/// Attempts are counted across requeues.
pub async fn attempts_are_counted(q: &dyn TaskQueue, prefix: &str) {
    let topic = format!("{prefix}.attempts");
    q.publish(&topic, vec![body(3)]).await.expect("publish");
    let mut sub = subscribe(q, &topic, 1).await;
    for expected in 1..=3 {
        let d = next(&mut sub, "delivery").await;
        assert_eq!(d.attempts, expected);
        d.requeue(Duration::ZERO).await.expect("requeue");
    }
    let d = next(&mut sub, "last delivery").await;
    assert_eq!(d.attempts, 4);
    d.ack().await.expect("ack");
}

/// Acking a delivery after it came back is harmless: the consumer keeps
/// working and the new delivery is still in flight.
pub async fn late_ack_is_harmless(q: &dyn TaskQueue, prefix: &str) {
    let topic = format!("{prefix}.late");
    q.publish(&topic, vec![body(4), body(5)]).await.expect("publish");
    let mut sub = subscribe(q, &topic, 4).await;
    let first = next(&mut sub, "first").await;
    let first_body = first.body.clone();
    // Take and settle the other message, then wait for `first` to time out.
    let mut late = None;
    let deadline = Instant::now() + PATIENCE;
    while late.is_none() {
        assert!(Instant::now() < deadline, "the un-acked delivery never came back");
        let d = next(&mut sub, "redelivery").await;
        if d.body == first_body {
            late = Some(d);
        } else {
            d.ack().await.expect("ack other");
        }
    }
    first.ack().await.expect("a late ack must not fail");
    let redelivered = late.expect("set above");
    redelivered.ack().await.expect("ack of the live delivery");
    q.publish(&topic, vec![body(6)]).await.expect("publish after late ack");
    let d = next(&mut sub, "after a late ack the subscription still works").await;
    assert_eq!(d.body, body(6));
    d.ack().await.expect("ack");
    eventually_empty(q, &topic).await;
}

/// `depth` counts ready and in-flight messages.
pub async fn depth_counts(q: &dyn TaskQueue, prefix: &str) {
    let topic = format!("{prefix}.depth");
    q.publish(&topic, (0..10).map(body).collect()).await.expect("publish");
    let deadline = Instant::now() + PATIENCE;
    loop {
        let d = q.depth(&topic).await.expect("depth");
        if d.ready == 10 {
            break;
        }
        assert!(Instant::now() < deadline, "depth {d:?}, expected 10 ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut sub = subscribe(q, &topic, 3).await;
    let held = [
        next(&mut sub, "1").await,
        next(&mut sub, "2").await,
        next(&mut sub, "3").await,
    ];
    let d = q.depth(&topic).await.expect("depth");
    assert_eq!(d.in_flight, 3, "{d:?}");
    assert_eq!(d.total(), 10, "{d:?}");
    for h in held {
        h.ack().await.expect("ack");
    }
    drain_acking(q, &topic, 7).await;
    eventually_empty(q, &topic).await;
}

/// Ten thousand tasks in batches arrive, each at least once, in any order.
pub async fn ten_thousand_in_batches(q: &dyn TaskQueue, prefix: &str) {
    let topic = format!("{prefix}.batch");
    let n = 10_000;
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        q.publish(&topic, chunk.iter().map(|i| body(*i)).collect())
            .await
            .expect("publish batch");
    }
    let seen = drain_acking(q, &topic, n).await;
    assert_eq!(seen.len(), n);
    eventually_empty(q, &topic).await;
}

/// A message published with a delay is not delivered before it.
pub async fn deferred_publish(q: &dyn TaskQueue, prefix: &str) {
    let topic = format!("{prefix}.deferred");
    let start = Instant::now();
    q.publish_deferred(&topic, body(7), Duration::from_millis(700))
        .await
        .expect("publish deferred");
    let mut sub = subscribe(q, &topic, 1).await;
    let d = next(&mut sub, "deferred").await;
    assert!(
        start.elapsed() >= Duration::from_millis(560),
        "after {:?}",
        start.elapsed()
    );
    d.ack().await.expect("ack");
}

/// A dead-lettered delivery leaves its topic for the dead-letter topic.
pub async fn dead_letter_moves_the_message(q: &dyn TaskQueue, prefix: &str) {
    let topic = format!("{prefix}.dlq");
    q.publish(&topic, vec![body(8), body(9)]).await.expect("publish");
    let mut sub = subscribe(q, &topic, 2).await;
    let a = next(&mut sub, "first").await;
    let b = next(&mut sub, "second").await;
    let dead_body = a.body.clone();
    a.dead_letter().await.expect("dead letter");
    b.ack().await.expect("ack");
    eventually_empty(q, &topic).await;
    let dead = crate::dead_letter_topic(&topic);
    let mut dsub = subscribe(q, &dead, 1).await;
    let d = next(&mut dsub, "the dead letter").await;
    assert_eq!(d.body, dead_body);
    d.ack().await.expect("ack dead letter");
}
