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

skep_queue::queue_conformance_cases!(cases);
