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
            touch_holds_a_delivery_and_drop_returns_it,
            max_in_flight_holds_back_deliveries,
            long_delays_are_deferred_not_in_flight,
            dropped_subscription_keeps_taken_deliveries_and_returns_the_rest,
        );
    };
}

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::{Instant, timeout};

use crate::{Delivery, SubscribeOptions, Subscription, TaskQueue};

/// The topics the cases use, as suffixes of their prefix (`{prefix}.{t}`).
const TOPICS: &[&str] = &[
    "pca", "death", "delay", "attempts", "late", "depth", "batch", "deferred", "dlq", "touch", "mif", "long", "drop",
];

/// Every topic the cases of `prefix` may have made: what a backend's tests
/// delete after a case.
pub fn case_topics(prefix: &str) -> Vec<String> {
    TOPICS.iter().map(|t| format!("{prefix}.{t}")).collect()
}

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

/// The next delivery within [`PATIENCE`], or a panic saying `what` broke.
pub async fn next(sub: &mut Box<dyn Subscription>, what: &str) -> Delivery {
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

/// Waits (up to [`PATIENCE`]) until the broker counts nothing in `topic`.
pub async fn eventually_empty(q: &dyn TaskQueue, topic: &str) {
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

/// Panics (with `what`) if anything is delivered within `wait`.
pub async fn assert_nothing_for(sub: &mut Box<dyn Subscription>, wait: Duration, what: &str) {
    if let Ok(d) = timeout(wait, sub.next()).await {
        panic!("{what}: got {d:?}");
    }
}

fn opts(max_in_flight: usize, visibility: Duration) -> SubscribeOptions {
    SubscribeOptions::new("conformance", max_in_flight, visibility)
}

/// Touching restarts the visibility timeout; dropping a delivery unsettled
/// hands it back at once, one attempt more. (A visibility of 1 s: NSQ's
/// shortest.)
pub async fn touch_holds_a_delivery_and_drop_returns_it(q: &dyn TaskQueue, prefix: &str) {
    let topic = format!("{prefix}.touch");
    q.publish(&topic, vec![Bytes::from_static(b"t")])
        .await
        .expect("publish");
    let mut sub = q
        .subscribe(&topic, opts(2, Duration::from_secs(1)))
        .await
        .expect("subscribe");
    let d = next(&mut sub, "first").await;
    assert_eq!(d.attempts, 1);
    let until = Instant::now() + Duration::from_millis(3000);
    while Instant::now() < until {
        d.touch().await.expect("touch");
        assert_nothing_for(&mut sub, Duration::from_millis(300), "a touched delivery came back").await;
    }
    drop(d);
    let again = timeout(Duration::from_secs(2), sub.next())
        .await
        .expect("a dropped delivery comes back at once")
        .expect("subscription alive");
    assert_eq!(again.attempts, 2);
    again.ack().await.expect("ack");
    drop(sub);
    eventually_empty(q, &topic).await;
}

/// `max_in_flight` is the consumer's prefetch: with that many deliveries
/// unsettled, `next` waits even though more messages are ready, and the
/// broker counts them as ready.
pub async fn max_in_flight_holds_back_deliveries(q: &dyn TaskQueue, prefix: &str) {
    let topic = format!("{prefix}.mif");
    q.publish(&topic, (0..4).map(body).collect()).await.expect("publish");
    let mut sub = q
        .subscribe(&topic, opts(2, Duration::from_secs(60)))
        .await
        .expect("subscribe");
    let a = next(&mut sub, "first").await;
    let b = next(&mut sub, "second").await;
    assert_nothing_for(&mut sub, Duration::from_secs(1), "a delivery beyond max_in_flight").await;
    let depth = q.depth(&topic).await.expect("depth");
    assert_eq!((depth.ready, depth.in_flight), (2, 2), "{depth:?}");
    a.ack().await.expect("ack");
    let c = next(&mut sub, "after a slot freed").await;
    for d in [b, c] {
        d.ack().await.expect("ack");
    }
    next(&mut sub, "the last").await.ack().await.expect("ack");
    drop(sub);
    eventually_empty(q, &topic).await;
}

/// A requeue with a delay far longer than the visibility timeout: the copy
/// is counted as deferred, nothing is in flight, and it comes back after
/// the delay.
pub async fn long_delays_are_deferred_not_in_flight(q: &dyn TaskQueue, prefix: &str) {
    let topic = format!("{prefix}.long");
    q.publish(&topic, vec![Bytes::from_static(b"l")])
        .await
        .expect("publish");
    let mut sub = q
        .subscribe(&topic, opts(1, Duration::from_secs(1)))
        .await
        .expect("subscribe");
    let d = next(&mut sub, "first").await;
    d.requeue(Duration::from_secs(4)).await.expect("requeue");
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let depth = q.depth(&topic).await.expect("depth");
        if depth.deferred == 1 && depth.in_flight == 0 && depth.ready == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "depth {depth:?} after a delayed requeue");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_nothing_for(&mut sub, Duration::from_secs(2), "delivered before its delay").await;
    let d = next(&mut sub, "after the delay").await;
    assert_eq!(d.attempts, 2);
    d.ack().await.expect("ack");
    drop(sub);
    eventually_empty(q, &topic).await;
}

/// A dropped subscription hands back at once what the broker had sent it
/// but nobody took; what was taken stays with its taker and can be acked
/// (a stopping worker drains its in-flight tasks that way).
pub async fn dropped_subscription_keeps_taken_deliveries_and_returns_the_rest(q: &dyn TaskQueue, prefix: &str) {
    let topic = format!("{prefix}.drop");
    q.publish(&topic, (0..5).map(body).collect()).await.expect("publish");
    let mut first = q
        .subscribe(&topic, opts(5, Duration::from_secs(600)))
        .await
        .expect("subscribe");
    let taken = next(&mut first, "taken").await;
    // Give the broker time to push the rest to this subscription.
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(first);

    let mut second = q
        .subscribe(&topic, opts(5, Duration::from_secs(600)))
        .await
        .expect("subscribe");
    let started = Instant::now();
    for i in 0..4 {
        let d = next(&mut second, &format!("untaken delivery {i}")).await;
        assert_ne!(d.body, taken.body, "the taken delivery came back while held");
        d.ack().await.expect("ack");
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the untaken deliveries took {:?} to come back",
        started.elapsed()
    );
    taken.ack().await.expect("ack after the subscription was dropped");
    assert_nothing_for(&mut second, Duration::from_secs(2), "an acked delivery came back").await;
    drop(second);
    eventually_empty(q, &topic).await;
}
