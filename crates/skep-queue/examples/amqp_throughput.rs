//! Publish and consume+ack throughput of the RabbitMQ backend.
//!
//! ```text
//! scripts/rabbitmq-test-server.sh start /tmp/rmq 5800   # prints the URL
//! cargo run --release -p skep-queue --example amqp_throughput -- URL [TASKS] [PUBLISHERS] [CONSUMERS] [PREFETCH]
//! ```
//!
//! Publishes TASKS (default 100 000) messages of about 250 bytes in batches
//! of 1000, each batch confirmed, from PUBLISHERS concurrent publishers
//! (default 4); then drains them with CONSUMERS subscriptions (default 4),
//! each holding up to PREFETCH deliveries (default 256) and acking each one
//! on its own. Every delivery is checked to be a published task; the topic is
//! deleted afterwards.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use skep_queue::{AmqpQueue, SubscribeOptions, TaskQueue};

const BATCH: usize = 1000;
const BODY_BYTES: usize = 250;

fn arg(args: &[String], i: usize, default: usize) -> Result<usize, String> {
    match args.get(i) {
        Some(s) => s.parse().map_err(|_| format!("argument {i} ({s:?}) is not a number")),
        None => Ok(default),
    }
}

/// A task body of about 250 bytes, unique by `i`, like a skep task message.
fn task(i: usize) -> Bytes {
    let head = format!(
        "{{\"v\":1,\"job\":\"bench\",\"jobUid\":\"00000000-0000-0000-0000-000000000000\",\"index\":{i},\"path\":\"/data/in/"
    );
    let mut s = head;
    while s.len() < BODY_BYTES - 12 {
        s.push('x');
    }
    s.push_str(".pdf\",\"a\":1}");
    Bytes::from(s)
}

fn index_of(body: &[u8]) -> Option<usize> {
    let s = std::str::from_utf8(body).ok()?;
    let rest = s.split_once("\"index\":")?.1;
    rest.split(',').next()?.parse().ok()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let url = match args.get(1) {
        Some(u) => u.clone(),
        None => std::env::var("SKEP_TEST_AMQP_URL")
            .map_err(|_| "usage: amqp_throughput URL [TASKS] [PUBLISHERS] [CONSUMERS] [PREFETCH]")?,
    };
    let tasks = arg(&args, 2, 100_000)?.div_ceil(BATCH) * BATCH;
    let publishers = arg(&args, 3, 4)?.max(1);
    let consumers = arg(&args, 4, 4)?.max(1);
    let prefetch = arg(&args, 5, 256)?.max(1);
    let queue = Arc::new(AmqpQueue::connect(&url).await?);
    let topic = format!("skepbench.{}", std::process::id());
    println!(
        "{tasks} tasks of {} bytes, batches of {BATCH}; {publishers} publishers, {consumers} consumers x prefetch {prefetch}",
        task(0).len()
    );

    // Publish: each publisher takes every publishers-th batch.
    let batches = tasks / BATCH;
    let start = Instant::now();
    let mut handles = Vec::new();
    for p in 0..publishers {
        let queue = queue.clone();
        let topic = topic.clone();
        handles.push(tokio::spawn(async move {
            let mut worst = Duration::ZERO;
            for b in (p..batches).step_by(publishers) {
                let msgs: Vec<Bytes> = (b * BATCH..(b + 1) * BATCH).map(task).collect();
                let t = Instant::now();
                queue.publish(&topic, msgs).await?;
                worst = worst.max(t.elapsed());
            }
            Ok::<_, skep_queue::QueueError>(worst)
        }));
    }
    let mut worst = Duration::ZERO;
    for h in handles {
        worst = worst.max(h.await??);
    }
    let publish_time = start.elapsed();
    println!(
        "publish:  {:>8.0} tasks/s  ({tasks} in {publish_time:.2?}; slowest confirmed batch {worst:.2?})",
        tasks as f64 / publish_time.as_secs_f64()
    );
    let depth = queue.depth(&topic).await?;
    println!("depth after publishing: {depth:?}");

    // Consume and ack, one ack per delivery.
    let start = Instant::now();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<usize>>(consumers);
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for _ in 0..consumers {
        let queue = queue.clone();
        let topic = topic.clone();
        let tx = tx.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let opts = SubscribeOptions::new("bench", prefetch, Duration::from_secs(60));
            let Ok(mut sub) = queue.subscribe(&topic, opts).await else {
                let _ = tx.send(seen).await;
                return;
            };
            while done.load(std::sync::atomic::Ordering::Relaxed) < tasks {
                let Ok(Some(d)) = tokio::time::timeout(Duration::from_secs(2), sub.next()).await else {
                    break;
                };
                if let Some(i) = index_of(&d.body) {
                    seen.push(i);
                }
                if d.ack().await.is_err() {
                    break;
                }
                done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            let _ = tx.send(seen).await;
        });
    }
    drop(tx);
    let mut seen = HashSet::new();
    let mut deliveries = 0usize;
    while let Some(part) = rx.recv().await {
        deliveries += part.len();
        seen.extend(part);
    }
    let consume_time = start.elapsed();
    println!(
        "consume:  {:>8.0} tasks/s  ({deliveries} deliveries, {} distinct of {tasks}, in {consume_time:.2?})",
        deliveries as f64 / consume_time.as_secs_f64(),
        seen.len()
    );
    queue.delete_topic(&topic).await?;
    queue.close().await;
    if seen.len() != tasks {
        return Err(format!("{} of {tasks} tasks were not delivered", tasks - seen.len()).into());
    }
    Ok(())
}
