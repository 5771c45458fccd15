//! `skep-bench dispatch`: how fast task messages pass through the
//! in-process queue, against a plain `tokio::sync::mpsc` channel carrying
//! the same bytes.
//!
//! Three phases, each timed on its own: publish N messages in batches with
//! no consumer; consume and ack them all with K consumers; both at once on
//! an empty queue. The channel does the same with its one receiver, so the
//! ratio is the price of the queue's semantics: shared consumers, in-flight
//! tracking, acks and redelivery.
//!
//! With `--queue amqp://…` (RabbitMQ) or `--queue nsq://…` /
//! `nsqlookup://…` (NSQ) the publish and consume+ack phases also run
//! against that broker, after the in-process rounds, with fewer messages
//! (`--broker-tasks`) on a topic of their own that is deleted after each
//! round; the report gives the broker's rates against the in-process
//! queue's and against [`GOAL_BROKER_TASKS_PER_S`] and
//! [`GOAL_BROKER_CONSUME_PER_S`].

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::builder::RangedU64ValueParser;
use serde::Serialize;
use skep_api::{TaskMessage, WIRE_VERSION, task_topic};
use skep_queue::{AmqpQueue, MemoryQueue, NsqQueue, QueueError, QueueUrl, SubscribeOptions, Subscription, TaskQueue};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{Instrument, info_span};

use crate::report::{Count, Goal, RateGoal};
use crate::stats::{Rate, Samples, ratio};

pub const DEFAULT_TASKS: usize = 1_000_000;
/// Messages per publish call, as the controller batches its dispatch.
pub const DEFAULT_BATCH: usize = 1_000;
pub const DEFAULT_ROUNDS: usize = 5;
/// Tasks per second every queue phase should reach.
pub const GOAL_TASKS_PER_S: f64 = 200_000.0;
/// Task messages per phase against a broker: each is a network round trip
/// away, so fewer than in process.
pub const DEFAULT_BROKER_TASKS: usize = 100_000;
/// Tasks per second a real broker should take from the publisher (issues
/// #3 and #11).
pub const GOAL_BROKER_TASKS_PER_S: f64 = 50_000.0;
/// Tasks per second a real broker should hand out and take acks for
/// (issue #11).
pub const GOAL_BROKER_CONSUME_PER_S: f64 = 20_000.0;
const POOL: &str = "bench";
const CHANNEL: &str = "workers";
const VISIBILITY: Duration = Duration::from_secs(60);
/// Deliveries a consumer may hold by default; it acks each before taking
/// the next.
pub const DEFAULT_IN_FLIGHT: usize = 8;
/// How long a consumer waits for a message before the run is stalled.
const PATIENCE: Duration = Duration::from_secs(30);

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the queue failed")]
    Queue(#[source] QueueError),
    /// Connecting to, or cleaning up on, a broker given by `--queue`.
    #[error("broker {url}: {what}")]
    Broker {
        url: String,
        what: &'static str,
        #[source]
        source: QueueError,
    },
    /// A consumer waited too long for the next message.
    #[error("no message for {waited:?}")]
    Stalled { waited: Duration },
    /// Messages were still in the queue after every one was consumed.
    #[error("{left} messages left in the queue after consuming all {tasks}")]
    Leftover { left: u64, tasks: usize },
    /// The baseline channel closed before every message passed.
    #[error("the baseline channel closed early")]
    ChannelClosed,
    #[error("{0} panicked")]
    Panicked(&'static str),
}

/// `skep-bench dispatch` options.
#[derive(Clone, Debug, clap::Args)]
pub struct DispatchOptions {
    /// Task messages per phase.
    #[arg(long, default_value_t = DEFAULT_TASKS, env = "SKEP_BENCH_TASKS",
          value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    pub tasks: usize,
    /// Messages per publish.
    #[arg(long, default_value_t = DEFAULT_BATCH, env = "SKEP_BENCH_BATCH",
          value_parser = RangedU64ValueParser::<usize>::new().range(1..=1_000_000))]
    pub batch: usize,
    /// Queue consumers; default: cores.
    #[arg(long, env = "SKEP_BENCH_CONSUMERS", value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    pub consumers: Option<usize>,
    /// Timed runs of each phase, queue and channel interleaved; the median
    /// is reported.
    #[arg(long, default_value_t = DEFAULT_ROUNDS, env = "SKEP_BENCH_ROUNDS",
          value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    pub rounds: usize,
    /// Deliveries each consumer may hold at once.
    #[arg(long, default_value_t = DEFAULT_IN_FLIGHT, env = "SKEP_BENCH_IN_FLIGHT",
          value_parser = RangedU64ValueParser::<usize>::new().range(1..=65_535))]
    pub in_flight: usize,
    /// A broker to run the publish and consume+ack phases against as well:
    /// RabbitMQ (`amqp://user:password@host:port/vhost`) or NSQ
    /// (`nsq://host:4150`, `nsqlookup://host:4161`); repeatable.
    #[arg(long = "queue", value_name = "URL", value_parser = BrokerUrl::parse)]
    pub queues: Vec<BrokerUrl>,
    /// Task messages per phase against each `--queue`.
    #[arg(long, default_value_t = DEFAULT_BROKER_TASKS, env = "SKEP_BENCH_BROKER_TASKS",
          value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    pub broker_tasks: usize,
}

/// A broker URL as given, with its password; `Display` and `Debug` hide it.
#[derive(Clone)]
pub struct BrokerUrl {
    raw: String,
    url: QueueUrl,
}

impl BrokerUrl {
    /// A RabbitMQ or NSQ URL; `memory:` is not a broker to bench (the
    /// in-process queue is the baseline).
    pub fn parse(s: &str) -> Result<Self, String> {
        let url = QueueUrl::parse(s).map_err(|e| e.to_string())?;
        if url.backend() == "memory" {
            return Err(format!("{url}: the in-process queue is the baseline, not a broker"));
        }
        Ok(Self {
            raw: s.trim().to_owned(),
            url,
        })
    }
}

impl fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.url.fmt(f)
    }
}

impl fmt::Debug for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BrokerUrl({})", self.url)
    }
}

impl Default for DispatchOptions {
    fn default() -> Self {
        Self {
            tasks: DEFAULT_TASKS,
            batch: DEFAULT_BATCH,
            consumers: None,
            rounds: DEFAULT_ROUNDS,
            in_flight: DEFAULT_IN_FLIGHT,
            queues: Vec::new(),
            broker_tasks: DEFAULT_BROKER_TASKS,
        }
    }
}

/// One value per phase.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Phases<T> {
    /// Publishing every message, nothing consuming.
    pub publish: T,
    /// Consuming and acking every message already published.
    pub consume_ack: T,
    /// Publishing and consuming at once, from empty to drained.
    pub both: T,
}

impl<T> Phases<T> {
    fn map<U>(&self, f: impl Fn(&T) -> U) -> Phases<U> {
        Phases {
            publish: f(&self.publish),
            consume_ack: f(&self.consume_ack),
            both: f(&self.both),
        }
    }

    fn zip<'a, U>(&'a self, other: &'a Phases<U>) -> Phases<(&'a T, &'a U)> {
        Phases {
            publish: (&self.publish, &other.publish),
            consume_ack: (&self.consume_ack, &other.consume_ack),
            both: (&self.both, &other.both),
        }
    }

    fn push_into(self, samples: &mut Phases<Samples>)
    where
        T: Into<Duration>,
    {
        samples.publish.push(self.publish.into());
        samples.consume_ack.push(self.consume_ack.into());
        samples.both.push(self.both.into());
    }
}

/// Runs `rounds` rounds of the queue's three phases and the channel's.
/// Progress goes to stderr.
pub async fn run(opts: &DispatchOptions) -> Result<DispatchReport> {
    let consumers = opts.consumers.unwrap_or_else(crate::cores).max(1);
    let tasks = opts.tasks;
    let bodies = tokio::task::spawn_blocking(move || task_bodies(tasks))
        .await
        .map_err(|_| Error::Panicked("encoding the task messages"))?;
    let message_bytes = bodies.iter().map(Bytes::len).sum::<usize>() as f64 / bodies.len().max(1) as f64;
    let mut queue = Phases::<Samples>::default();
    let mut channel = Phases::<Samples>::default();
    for round in 1..=opts.rounds {
        let q = queue_round(&bodies, opts.batch, consumers, opts.in_flight).await?;
        eprintln!("dispatch: round {round}/{}: queue   {}", opts.rounds, Secs(&q));
        q.push_into(&mut queue);
        let c = channel_round(&bodies, opts.batch).await?;
        eprintln!("dispatch: round {round}/{}: channel {}", opts.rounds, Secs(&c));
        c.push_into(&mut channel);
    }
    let queue = queue.map(|s| s.rate(tasks as f64));
    let channel = channel.map(|s| s.rate(tasks as f64));
    let mut brokers = Vec::with_capacity(opts.queues.len());
    if !opts.queues.is_empty() {
        let n = opts.broker_tasks;
        let bodies = tokio::task::spawn_blocking(move || task_bodies(n))
            .await
            .map_err(|_| Error::Panicked("encoding the task messages"))?;
        for url in &opts.queues {
            brokers.push(broker_rounds(url, &bodies, opts, consumers, &queue).await?);
        }
    }
    Ok(DispatchReport {
        bench: "dispatch",
        tasks,
        batch: opts.batch,
        consumers,
        in_flight: opts.in_flight,
        rounds: opts.rounds,
        message_bytes,
        queue_vs_channel: queue.zip(&channel).map(|(q, c)| ratio(q.per_s, c.per_s)),
        goals: queue.map(|q| Goal::new(q.per_s, GOAL_TASKS_PER_S)),
        queue,
        channel,
        brokers,
    })
}

/// `opts.rounds` rounds of publish, then consume+ack, against one broker,
/// each on a fresh topic deleted afterwards (also when the round failed).
async fn broker_rounds(
    url: &BrokerUrl,
    bodies: &[Bytes],
    opts: &DispatchOptions,
    consumers: usize,
    in_process: &Phases<Rate>,
) -> Result<BrokerReport> {
    let broker_error = |what| {
        let url = url.to_string();
        move |source| Error::Broker { url, what, source }
    };
    let queue = Broker::connect(url).await.map_err(broker_error("cannot connect"))?;
    let mut publish = Samples::default();
    let mut consume_ack = Samples::default();
    let stamp = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    for round in 1..=opts.rounds {
        let topic = task_topic(&format!("bench-{}-{stamp}-{round}", std::process::id()));
        let timed = broker_round(&queue, &topic, bodies, opts.batch, consumers, opts.in_flight).await;
        let deleted = queue.delete_topic(&topic).await;
        let (p, c) = timed?;
        deleted.map_err(broker_error("cannot delete the bench topic"))?;
        eprintln!(
            "dispatch: round {round}/{}: {url} publish {:.3} s, consume+ack {:.3} s",
            opts.rounds,
            p.as_secs_f64(),
            c.as_secs_f64()
        );
        publish.push(p);
        consume_ack.push(c);
    }
    queue.close().await;
    let n = bodies.len() as f64;
    let (publish, consume_ack) = (publish.rate(n), consume_ack.rate(n));
    Ok(BrokerReport {
        queue: url.to_string(),
        tasks: bodies.len(),
        publish_vs_queue: ratio(publish.per_s, in_process.publish.per_s),
        consume_ack_vs_queue: ratio(consume_ack.per_s, in_process.consume_ack.per_s),
        publish_goal: Goal::new(publish.per_s, GOAL_BROKER_TASKS_PER_S),
        consume_ack_goal: Goal::new(consume_ack.per_s, GOAL_BROKER_CONSUME_PER_S),
        publish,
        consume_ack,
    })
}

/// A broker the bench can also clean up after and close.
enum Broker {
    Amqp(AmqpQueue),
    Nsq(NsqQueue),
}

impl Broker {
    async fn connect(url: &BrokerUrl) -> Result<Self, QueueError> {
        Ok(match url.url.backend() {
            "nsq" => Broker::Nsq(NsqQueue::connect(&url.raw).await?),
            _ => Broker::Amqp(AmqpQueue::connect(&url.raw).await?),
        })
    }

    fn queue(&self) -> &dyn TaskQueue {
        match self {
            Broker::Amqp(q) => q,
            Broker::Nsq(q) => q,
        }
    }

    async fn delete_topic(&self, topic: &str) -> Result<(), QueueError> {
        match self {
            Broker::Amqp(q) => q.delete_topic(topic).await,
            Broker::Nsq(q) => q.delete_topic(topic).await,
        }
    }

    async fn close(&self) {
        match self {
            Broker::Amqp(q) => q.close().await,
            Broker::Nsq(q) => q.close().await,
        }
    }
}

async fn broker_round(
    queue: &Broker,
    topic: &str,
    bodies: &[Bytes],
    batch: usize,
    consumers: usize,
    in_flight: usize,
) -> Result<(Duration, Duration)> {
    let ready = batches(bodies, batch);
    let started = Instant::now();
    publish_all(queue.queue(), topic, ready).await?;
    let publish = started.elapsed();
    let started = Instant::now();
    consume_all(queue.queue(), topic, bodies.len(), consumers, in_flight).await?;
    Ok((publish, started.elapsed()))
}

struct Secs<'a>(&'a Phases<Duration>);

impl fmt::Display for Secs<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.0;
        write!(
            f,
            "publish {:.3} s, consume+ack {:.3} s, both {:.3} s",
            p.publish.as_secs_f64(),
            p.consume_ack.as_secs_f64(),
            p.both.as_secs_f64()
        )
    }
}

/// `n` encoded task messages of realistic size (~380 bytes: wire version 2 with a staging folder), each its own
/// allocation as when the controller encodes them.
pub fn task_bodies(n: usize) -> Vec<Bytes> {
    (0..n)
        .map(|i| {
            let msg = TaskMessage {
                v: WIRE_VERSION,
                job: "invoices-2024-q3".to_owned(),
                job_uid: "3f6c2a9e-8d1b-4c57-9e0a-6b2f1d7c4e88".to_owned(),
                index: i as u64,
                part: 0,
                pages: None,
                path: format!(
                    "/data/scans/archive-2024/box-{:04}/folder-{:02}/scan-{i:07}.png",
                    i / 10_000,
                    i / 100 % 100
                ),
                url: None,
                upload: None,
                size: None,
                etag: None,
                attempt: 1,
                max_attempts: 3,
                timeout_ms: 300_000,
                languages: vec!["eng".to_owned()],
                page_seg_mode: 6,
                dpi: 300,
                pages_per_task: 8,
                pdf: skep_api::PdfMode::Auto,
                auto_rotate: true,
                artefacts: Vec::new(),
                staging: Some(
                    "/data/out/invoices-2024-q3/.skep-staging/3f6c2a9e-8d1b-4c57-9e0a-6b2f1d7c4e88".to_owned(),
                ),
            };
            Bytes::from(msg.encode())
        })
        .collect()
}

fn batches(bodies: &[Bytes], batch: usize) -> Vec<Vec<Bytes>> {
    bodies.chunks(batch.max(1)).map(<[Bytes]>::to_vec).collect()
}

async fn queue_round(bodies: &[Bytes], batch: usize, consumers: usize, in_flight: usize) -> Result<Phases<Duration>> {
    let n = bodies.len();
    let topic = task_topic(POOL);
    let queue = Arc::new(MemoryQueue::new());
    let ready = batches(bodies, batch);
    let started = Instant::now();
    publish_all(queue.as_ref(), &topic, ready).await?;
    let publish = started.elapsed();
    let started = Instant::now();
    consume_all(queue.as_ref(), &topic, n, consumers, in_flight).await?;
    let consume_ack = started.elapsed();
    ensure_drained(&queue, n).await?;

    let queue = Arc::new(MemoryQueue::new());
    let ready = batches(bodies, batch);
    let started = Instant::now();
    let publisher = {
        let (queue, topic) = (queue.clone(), topic.clone());
        tokio::spawn(
            async move { publish_all(queue.as_ref(), &topic, ready).await }.instrument(info_span!("publisher")),
        )
    };
    consume_all(queue.as_ref(), &topic, n, consumers, in_flight).await?;
    publisher.await.map_err(|_| Error::Panicked("the publisher"))??;
    let both = started.elapsed();
    ensure_drained(&queue, n).await?;
    Ok(Phases {
        publish,
        consume_ack,
        both,
    })
}

/// Publishes the batches one after the other, as the controller does.
async fn publish_all<Q: TaskQueue + ?Sized>(queue: &Q, topic: &str, batches: Vec<Vec<Bytes>>) -> Result<()> {
    for batch in batches {
        queue.publish(topic, batch).await.map_err(Error::Queue)?;
    }
    Ok(())
}

/// Consumes and acks `n` messages with `consumers` subscriptions sharing
/// one channel, each on a task of its own.
async fn consume_all<Q: TaskQueue + ?Sized>(
    queue: &Q,
    topic: &str,
    n: usize,
    consumers: usize,
    in_flight: usize,
) -> Result<()> {
    let claimed = Arc::new(AtomicUsize::new(0));
    let mut set = JoinSet::new();
    for i in 0..consumers {
        let claimed = claimed.clone();
        let opts = SubscribeOptions::new(CHANNEL, in_flight, VISIBILITY);
        let sub = queue.subscribe(topic, opts).await.map_err(Error::Queue)?;
        set.spawn(consume(sub, n, claimed).instrument(info_span!("consumer", i)));
    }
    while let Some(done) = set.join_next().await {
        done.map_err(|_| Error::Panicked("a consumer"))??;
    }
    Ok(())
}

/// Takes and acks messages until the consumers together have claimed `n`.
async fn consume(mut sub: Box<dyn Subscription>, n: usize, claimed: Arc<AtomicUsize>) -> Result<()> {
    while claimed.fetch_add(1, Ordering::Relaxed) < n {
        let delivery = tokio::time::timeout(PATIENCE, sub.next())
            .await
            .map_err(|_| Error::Stalled { waited: PATIENCE })?
            .ok_or(Error::Stalled { waited: PATIENCE })?;
        delivery.ack().await.map_err(Error::Queue)?;
    }
    Ok(())
}

/// Every message was delivered once and acked: nothing ready, in flight or
/// deferred remains.
async fn ensure_drained(queue: &MemoryQueue, tasks: usize) -> Result<()> {
    let left = queue.depth(&task_topic(POOL)).await.map_err(Error::Queue)?.total();
    if left > 0 {
        return Err(Error::Leftover { left, tasks });
    }
    Ok(())
}

async fn channel_round(bodies: &[Bytes], batch: usize) -> Result<Phases<Duration>> {
    let n = bodies.len();
    // NB: bounded at the message count, as the queue is bounded by its
    // capacity: publishing never waits on the consumer in either.
    let (tx, rx) = mpsc::channel::<Bytes>(n);
    let ready = batches(bodies, batch);
    let started = Instant::now();
    send_all(&tx, ready).await?;
    let publish = started.elapsed();
    let started = Instant::now();
    tokio::spawn(recv_all(rx, n).instrument(info_span!("receiver")))
        .await
        .map_err(|_| Error::Panicked("the receiver"))??;
    let consume_ack = started.elapsed();

    let (tx, rx) = mpsc::channel::<Bytes>(n);
    let ready = batches(bodies, batch);
    let started = Instant::now();
    let receiver = tokio::spawn(recv_all(rx, n).instrument(info_span!("receiver")));
    let sender = tokio::spawn(async move { send_all(&tx, ready).await }.instrument(info_span!("sender")));
    sender.await.map_err(|_| Error::Panicked("the sender"))??;
    receiver.await.map_err(|_| Error::Panicked("the receiver"))??;
    let both = started.elapsed();
    Ok(Phases {
        publish,
        consume_ack,
        both,
    })
}

async fn send_all(tx: &mpsc::Sender<Bytes>, batches: Vec<Vec<Bytes>>) -> Result<()> {
    for batch in batches {
        let permits = tx.reserve_many(batch.len()).await.map_err(|_| Error::ChannelClosed)?;
        for (permit, body) in permits.zip(batch) {
            permit.send(body);
        }
    }
    Ok(())
}

async fn recv_all(mut rx: mpsc::Receiver<Bytes>, n: usize) -> Result<()> {
    for _ in 0..n {
        tokio::time::timeout(PATIENCE, rx.recv())
            .await
            .map_err(|_| Error::Stalled { waited: PATIENCE })?
            .ok_or(Error::ChannelClosed)?;
    }
    Ok(())
}

/// The result of `skep-bench dispatch`; rates are tasks per second.
#[derive(Debug, Serialize)]
pub struct DispatchReport {
    pub bench: &'static str,
    pub tasks: usize,
    pub batch: usize,
    pub consumers: usize,
    /// Deliveries each consumer may hold.
    pub in_flight: usize,
    pub rounds: usize,
    /// Mean size of one encoded task message.
    pub message_bytes: f64,
    /// The in-process queue, `consumers` consumers.
    pub queue: Phases<Rate>,
    /// A plain bounded mpsc channel, one receiver.
    pub channel: Phases<Rate>,
    pub queue_vs_channel: Phases<f64>,
    /// Queue rates against [`GOAL_TASKS_PER_S`].
    pub goals: Phases<Goal>,
    /// One per `--queue`, in order.
    pub brokers: Vec<BrokerReport>,
}

/// The publish and consume+ack phases against one broker; rates are tasks
/// per second, ratios are against the in-process queue of the same run.
#[derive(Debug, Serialize)]
pub struct BrokerReport {
    /// The URL, password hidden.
    pub queue: String,
    pub tasks: usize,
    pub publish: Rate,
    pub consume_ack: Rate,
    pub publish_vs_queue: f64,
    pub consume_ack_vs_queue: f64,
    /// Publish rate against [`GOAL_BROKER_TASKS_PER_S`].
    pub publish_goal: Goal,
    /// Consume+ack rate against [`GOAL_BROKER_CONSUME_PER_S`].
    pub consume_ack_goal: Goal,
}

impl fmt::Display for DispatchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "dispatch: {} task messages of {:.0} bytes, batches of {}, median of {} rounds",
            self.tasks, self.message_bytes, self.batch, self.rounds
        )?;
        writeln!(
            f,
            "  queue: MemoryQueue, {} consumers x {} in flight; baseline: tokio mpsc channel, 1 receiver",
            self.consumers, self.in_flight
        )?;
        writeln!(
            f,
            "  {:<12} {:>10} {:>10} {:>8}   queue vs goal",
            "phase", "queue/s", "channel/s", "ratio"
        )?;
        let rows = [
            (
                "publish",
                &self.queue.publish,
                &self.channel.publish,
                self.queue_vs_channel.publish,
                &self.goals.publish,
            ),
            (
                "consume+ack",
                &self.queue.consume_ack,
                &self.channel.consume_ack,
                self.queue_vs_channel.consume_ack,
                &self.goals.consume_ack,
            ),
            (
                "both",
                &self.queue.both,
                &self.channel.both,
                self.queue_vs_channel.both,
                &self.goals.both,
            ),
        ];
        for (i, (name, q, c, r, g)) in rows.into_iter().enumerate() {
            write!(
                f,
                "  {:<12} {:>10} {:>10} {:>8.3}   {}",
                name,
                Count(q.per_s).to_string(),
                Count(c.per_s).to_string(),
                r,
                RateGoal(g)
            )?;
            if i + 1 < 3 {
                writeln!(f)?;
            }
        }
        for b in &self.brokers {
            writeln!(f)?;
            writeln!(
                f,
                "  broker {}: {} task messages, same consumers; ratio is broker vs in-process queue",
                b.queue, b.tasks
            )?;
            writeln!(
                f,
                "  {:<12} {:>10} {:>10} {:>8.3}   {}",
                "publish",
                Count(b.publish.per_s).to_string(),
                "",
                b.publish_vs_queue,
                RateGoal(&b.publish_goal)
            )?;
            write!(
                f,
                "  {:<12} {:>10} {:>10} {:>8.3}   {}",
                "consume+ack",
                Count(b.consume_ack.per_s).to_string(),
                "",
                b.consume_ack_vs_queue,
                RateGoal(&b.consume_ack_goal)
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_messages_are_task_sized_and_decode() {
        let bodies = task_bodies(3);
        for b in &bodies {
            assert!((300..=450).contains(&b.len()), "{} bytes", b.len());
        }
        let t = TaskMessage::decode(&bodies[2]).expect("decodes");
        assert_eq!(t.index, 2);
    }

    #[test]
    fn brokers_are_taken_the_baseline_is_not_and_passwords_are_hidden() {
        let url = BrokerUrl::parse("amqp://bench:s3cret@127.0.0.1:5950/%2f").expect("amqp parses");
        assert!(!format!("{url} {url:?}").contains("s3cret"));
        assert!(BrokerUrl::parse("memory:").is_err());
        assert!(BrokerUrl::parse("nsq://127.0.0.1:4150").is_ok());
        assert!(BrokerUrl::parse("nsqlookup://127.0.0.1:4161").is_ok());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_phase_drains_every_message() {
        let opts = DispatchOptions {
            tasks: 5_500,
            batch: 1_000,
            consumers: Some(3),
            rounds: 1,
            ..DispatchOptions::default()
        };
        let report = run(&opts).await.expect("dispatch bench");
        assert_eq!(report.consumers, 3);
        assert!(report.brokers.is_empty());
        for r in [
            report.queue.publish,
            report.queue.consume_ack,
            report.queue.both,
            report.channel.both,
        ] {
            assert!(r.per_s > 0.0 && r.runs == 1, "{r:?}");
        }
    }
}
