//! The queue conformance suite against the in-process backend.

use skep_queue::{MemoryQueue, conformance};

macro_rules! cases {
    ($($case:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $case() {
            let q = MemoryQueue::new();
            conformance::$case(&q, concat!("mem.", stringify!($case))).await;
        }
    )*};
}

cases!(
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
