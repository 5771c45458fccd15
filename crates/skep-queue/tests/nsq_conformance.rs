//! The queue conformance suite against NSQ, plus what only a real nsqd can
//! show: late FINs, TOUCH, RDY, deferred counts, an nsqd killed and
//! restarted under a consumer and a producer, discovery through nsqlookupd.
//!
//! Reads `SKEP_TEST_NSQD` (host:port of an nsqd's TCP address; its HTTP API
//! is on port+1 unless `SKEP_TEST_NSQD_HTTP` gives host:port),
//! `SKEP_TEST_NSQLOOKUPD` (host:port of the HTTP API of an nsqlookupd that
//! the nsqd registers with) and `SKEP_TEST_NSQD_BIN` (an nsqd binary: the
//! restart cases start their own nsqd on free ports with a temporary data
//! directory). Without `SKEP_TEST_NSQD` every test prints one line saying
//! the NSQ suite did not run and passes, even under `CI=true`: no registry
//! ships nsqd, so CI machines may have none.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use skep_queue::conformance::{assert_nothing_for, eventually_empty, next};
use skep_queue::{NsqQueue, QueueError, SubscribeOptions, TaskQueue, conformance};
use tokio::process::{Child, Command};
use tokio::time::{Instant, sleep, timeout};

const NSQD_VAR: &str = "SKEP_TEST_NSQD";
const NSQD_HTTP_VAR: &str = "SKEP_TEST_NSQD_HTTP";
const LOOKUPD_VAR: &str = "SKEP_TEST_NSQLOOKUPD";
const BIN_VAR: &str = "SKEP_TEST_NSQD_BIN";
const PATIENCE: Duration = Duration::from_secs(15);
/// nsqd's default `--sync-timeout` and a margin: by then a disk queue with
/// writes has synced its metadata once.
const NSQD_FIRST_SYNC: Duration = Duration::from_millis(2500);

fn var(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// The URL of the test nsqd, or `None` after saying that the suite did not
/// run. Logs go to the test's output, filtered by `RUST_LOG`.
fn nsqd_url() -> Option<String> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let Some(tcp) = var(NSQD_VAR) else {
        println!("NSQ suite did not run: {NSQD_VAR} is not set");
        return None;
    };
    match var(NSQD_HTTP_VAR).and_then(|h| h.rsplit_once(':').map(|(_, p)| p.to_owned())) {
        Some(port) => Some(format!("nsq://{tcp}?http_port={port}")),
        None => Some(format!("nsq://{tcp}")),
    }
}

/// The nsqd binary for the restart cases, or `None` after saying why the
/// case did not run.
fn nsqd_bin() -> Option<PathBuf> {
    nsqd_url()?;
    let Some(bin) = var(BIN_VAR) else {
        println!("NSQ restart case did not run: {BIN_VAR} is not set");
        return None;
    };
    Some(PathBuf::from(bin))
}

/// A topic prefix no other test run uses (short: NSQ names have 64 bytes).
fn prefix(case: &str) -> String {
    use std::hash::{BuildHasher, RandomState};
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let salt = RandomState::new().hash_one((nanos, std::process::id())) as u32;
    // NB: a case's name may be long; the salt keeps prefixes apart.
    let case: String = case.chars().take(24).collect();
    format!("t{salt:08x}.{case}")
}

async fn connect(url: &str) -> NsqQueue {
    NsqQueue::connect(url).await.expect("connect to the test nsqd")
}

/// Deletes what a case left on nsqd.
async fn clean_up(q: &NsqQueue, topics: &[String]) {
    for t in topics {
        q.delete_topic(t).await.expect("delete a test topic");
    }
    q.close().await;
}

macro_rules! cases {
    ($($case:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $case() {
            let Some(url) = nsqd_url() else { return };
            let q = connect(&url).await;
            let p = prefix(stringify!($case));
            conformance::$case(&q, &p).await;
            clean_up(&q, &conformance::case_topics(&p)).await;
        }
    )*};
}

skep_queue::queue_conformance_cases!(cases);

fn opts(max_in_flight: usize, visibility: Duration) -> SubscribeOptions {
    SubscribeOptions::new("test", max_in_flight, visibility)
}

fn bodies(tag: &str, n: usize) -> Vec<Bytes> {
    (0..n).map(|i| Bytes::from(format!("{tag}{i:06}"))).collect()
}

/// A FIN after nsqd handed the message out again is not sent: it returns
/// `Ok`, nsqd refuses nothing, the connection keeps working and the new
/// delivery can be acked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_fin_after_a_timeout_redelivery_is_a_harmless_no_op() {
    let Some(url) = nsqd_url() else { return };
    let q = connect(&url).await;
    let topic = format!("{}.x", prefix("latefin"));
    q.publish(&topic, vec![Bytes::from_static(b"late")])
        .await
        .expect("publish");
    let mut sub = q
        .subscribe(&topic, opts(2, Duration::from_secs(1)))
        .await
        .expect("subscribe");
    let first = next(&mut sub, "first").await;
    assert_eq!(first.attempts, 1);
    let again = next(&mut sub, "the redelivery after the timeout").await;
    assert_eq!(again.body, first.body);
    assert_eq!(again.attempts, 2);
    assert_eq!(again.id, first.id, "nsqd keeps the message id");
    first.ack().await.expect("a late FIN must not fail");
    q.publish(&topic, vec![Bytes::from_static(b"after")])
        .await
        .expect("publish");
    let after = next(&mut sub, "the connection still delivers after a late FIN").await;
    assert_eq!(after.body, Bytes::from_static(b"after"));
    after.ack().await.expect("ack");
    again.ack().await.expect("the live delivery can be acked");
    assert_nothing_for(&mut sub, Duration::from_millis(1500), "an acked delivery came back").await;
    assert_eq!(q.refused_settles(), 0, "a late FIN reached nsqd");
    drop(sub);
    eventually_empty(&q, &topic).await;
    clean_up(&q, &[topic]).await;
}

/// Ten thousand tasks in one publish; a batch over nsqd's 5 MiB body limit
/// is split; a message over its 1 MiB message limit is refused before
/// anything is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_batches_are_split_within_nsqds_limits() {
    let Some(url) = nsqd_url() else { return };
    let q = connect(&url).await;
    let topic = format!("{}.x", prefix("big"));
    let many = bodies("b", 10_000);
    q.publish(&topic, many.clone()).await.expect("10k in one publish");
    let heavy: Vec<Bytes> = (0..12u8).map(|i| Bytes::from(vec![b'a' + i; 1 << 20])).collect();
    q.publish(&topic, heavy.clone()).await.expect("12 MiB in one publish");
    let err = q
        .publish(
            &topic,
            vec![Bytes::from_static(b"ok"), Bytes::from(vec![0u8; (1 << 20) + 1])],
        )
        .await
        .expect_err("a message over 1 MiB");
    assert!(matches!(err, QueueError::TooLarge { .. }), "{err}");
    let err = q
        .publish(&topic, vec![Bytes::new()])
        .await
        .expect_err("an empty message");
    assert_eq!(err.metric_label(), "invalid", "{err}");

    let want: HashSet<Bytes> = many.into_iter().chain(heavy).collect();
    let mut seen = HashSet::new();
    let mut sub = q
        .subscribe(&topic, opts(256, Duration::from_secs(30)))
        .await
        .expect("subscribe");
    while seen.len() < want.len() {
        let d = next(&mut sub, &format!("{} of {}", seen.len(), want.len())).await;
        seen.insert(d.body.clone());
        d.ack().await.expect("ack");
    }
    assert_eq!(seen, want);
    drop(sub);
    eventually_empty(&q, &topic).await;
    clean_up(&q, &[topic]).await;
}

/// Names NSQ does not allow are refused with a clear error before anything
/// is sent, and the queue keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_and_channel_names_are_validated() {
    let Some(url) = nsqd_url() else { return };
    let q = connect(&url).await;
    let long = "x".repeat(65);
    for bad in ["", "has space", "a/b", "tâche", long.as_str(), "a#b"] {
        let err = q
            .publish(bad, vec![Bytes::from_static(b"m")])
            .await
            .expect_err("invalid topic");
        assert_eq!(err.metric_label(), "invalid", "{bad:?}: {err}");
        assert!(err.to_string().contains("not valid for NSQ"), "{err}");
        let err = q
            .subscribe(bad, opts(1, Duration::from_secs(5)))
            .await
            .err()
            .expect("invalid topic");
        assert_eq!(err.metric_label(), "invalid", "{bad:?}: {err}");
        let err = q.depth(bad).await.expect_err("invalid topic");
        assert_eq!(err.metric_label(), "invalid", "{bad:?}: {err}");
    }
    let topic = format!("{}.x", prefix("names"));
    let err = q
        .subscribe(&topic, SubscribeOptions::new("bad channel", 1, Duration::from_secs(5)))
        .await
        .err()
        .expect("invalid channel");
    assert_eq!(err.metric_label(), "invalid", "{err}");
    assert_eq!(
        q.depth(&topic).await.expect("depth of an unknown topic"),
        Default::default()
    );
    q.publish(&topic, vec![Bytes::from_static(b"fine")])
        .await
        .expect("the queue still works");
    let mut sub = q
        .subscribe(&topic, opts(1, Duration::from_secs(5)))
        .await
        .expect("subscribe");
    next(&mut sub, "the valid message").await.ack().await.expect("ack");
    drop(sub);
    clean_up(&q, &[topic]).await;
}

/// A consumer of an `nsqlookup://` URL subscribed before the topic exists
/// finds it within a few seconds of its first publish; publishing through
/// the lookupd works too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookupd_discovers_a_topic_that_appears_after_subscribe() {
    let Some(url) = nsqd_url() else { return };
    let Some(lookupd) = var(LOOKUPD_VAR) else {
        println!("NSQ lookupd case did not run: {LOOKUPD_VAR} is not set");
        return;
    };
    let direct = connect(&url).await;
    let via_lookup = connect(&format!("nsqlookup://{lookupd}")).await;
    let topic = format!("{}.x", prefix("lookup"));
    let mut sub = via_lookup
        .subscribe(&topic, opts(4, Duration::from_secs(30)))
        .await
        .expect("subscribing to a topic no nsqd has yet");
    sleep(Duration::from_millis(1500)).await;
    let published = Instant::now();
    direct
        .publish(&topic, vec![Bytes::from_static(b"first")])
        .await
        .expect("publish");
    let d = next(&mut sub, "a message of a topic that appeared later").await;
    assert_eq!(d.body, Bytes::from_static(b"first"));
    assert!(
        published.elapsed() < Duration::from_secs(5),
        "found after {:?}",
        published.elapsed()
    );
    d.ack().await.expect("ack");
    via_lookup
        .publish(&topic, vec![Bytes::from_static(b"second")])
        .await
        .expect("publish through the lookupd's nodes");
    let d = next(&mut sub, "a message published through the lookupd").await;
    assert_eq!(d.body, Bytes::from_static(b"second"));
    d.ack().await.expect("ack");
    drop(sub);
    eventually_empty(&via_lookup, &topic).await;
    via_lookup.close().await;
    clean_up(&direct, &[topic]).await;
}

/// Closing the queue ends its subscriptions (`next` returns `None`) and
/// hands back at once everything they held, taken or not; a later ack of a
/// taken delivery is a harmless no-op.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_queue_ends_subscriptions_and_returns_their_messages() {
    let Some(url) = nsqd_url() else { return };
    let q = connect(&url).await;
    let other = connect(&url).await;
    let topic = format!("{}.x", prefix("close"));
    q.publish(&topic, bodies("c", 3)).await.expect("publish");
    let mut sub = q
        .subscribe(&topic, opts(3, Duration::from_secs(600)))
        .await
        .expect("subscribe");
    let taken = next(&mut sub, "taken").await;
    sleep(Duration::from_millis(300)).await;
    q.close().await;
    let ended = timeout(Duration::from_secs(5), sub.next())
        .await
        .expect("a subscription of a closed queue ends");
    assert!(ended.is_none(), "got {ended:?} after close");
    taken.ack().await.expect("an ack after close is a no-op");
    let mut survivor = other
        .subscribe(&topic, opts(3, Duration::from_secs(600)))
        .await
        .expect("subscribe");
    let started = Instant::now();
    let mut got = HashSet::new();
    while got.len() < 3 {
        let d = next(&mut survivor, "a message the closed queue held").await;
        got.insert(d.body.clone());
        d.ack().await.expect("ack");
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        q.publish(&topic, vec![Bytes::from_static(b"late")]).await.is_err(),
        "a closed queue published"
    );
    drop(sub);
    drop(survivor);
    eventually_empty(&other, &topic).await;
    clean_up(&other, &[topic]).await;
}

/// An nsqd of this test's own, on free ports, with everything on disk.
struct OwnNsqd {
    bin: PathBuf,
    dir: tempfile::TempDir,
    tcp: u16,
    http: u16,
    child: Option<Child>,
}

/// Two free loopback ports in a row (nsqd's TCP and HTTP, as nsqd's
/// defaults have them).
fn free_ports() -> (u16, u16) {
    for _ in 0..100 {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        if tcp < u16::MAX && std::net::TcpListener::bind(("127.0.0.1", tcp + 1)).is_ok() {
            return (tcp, tcp + 1);
        }
    }
    panic!("no two free ports in a row");
}

impl OwnNsqd {
    async fn start(bin: PathBuf) -> Self {
        let (tcp, http) = free_ports();
        let mut n = Self {
            bin,
            dir: tempfile::tempdir().expect("a data directory"),
            tcp,
            http,
            child: None,
        };
        n.restart().await;
        n
    }

    fn url(&self) -> String {
        format!("nsq://127.0.0.1:{}", self.tcp)
    }

    async fn restart(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("nsqd.log"))
            .expect("a log file");
        let child = Command::new(&self.bin)
            .arg(format!("--tcp-address=127.0.0.1:{}", self.tcp))
            .arg(format!("--http-address=127.0.0.1:{}", self.http))
            .arg(format!("--data-path={}", self.dir.path().display()))
            .arg("--broadcast-address=127.0.0.1")
            .arg("--mem-queue-size=0")
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("start nsqd");
        self.child = Some(child);
        let deadline = Instant::now() + PATIENCE;
        while tokio::net::TcpStream::connect(("127.0.0.1", self.tcp)).await.is_err() {
            assert!(Instant::now() < deadline, "nsqd did not start listening");
            sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: nsqd writes nothing more.
    async fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().await.expect("kill nsqd");
        }
    }
}

/// nsqd is killed (SIGKILL) and restarted while a consumer works through
/// the topic: the consumer reconnects by itself and every message is
/// delivered (some twice).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nsqd_killed_and_restarted_mid_consume_loses_nothing() {
    let Some(bin) = nsqd_bin() else { return };
    let mut nsqd = OwnNsqd::start(bin).await;
    let q = connect(&nsqd.url()).await;
    let topic = format!("{}.x", prefix("restart"));
    let n = 3000;
    let all = bodies("r", n);
    for chunk in all.chunks(500) {
        q.publish(&topic, chunk.to_vec()).await.expect("publish");
    }
    let mut sub = q
        .subscribe(&topic, opts(16, Duration::from_secs(3)))
        .await
        .expect("subscribe");
    let mut seen = HashSet::new();
    let mut deliveries = 0usize;
    while seen.len() < n / 3 {
        let d = next(&mut sub, "before the kill").await;
        deliveries += 1;
        seen.insert(d.body.clone());
        d.ack().await.expect("ack");
    }
    nsqd.kill().await;
    let killed = Instant::now();
    // NB: what was received before the kill and not taken yet may still
    // be handed out; its acks are no-ops.
    let restart = async {
        sleep(Duration::from_millis(1500)).await;
        nsqd.restart().await;
    };
    let consume = async {
        while seen.len() < n {
            let d = match timeout(Duration::from_secs(30), sub.next()).await {
                Ok(Some(d)) => d,
                Ok(None) => panic!("the subscription ended"),
                Err(_) => panic!("stalled at {} of {n} after the restart", seen.len()),
            };
            deliveries += 1;
            seen.insert(d.body.clone());
            d.ack().await.expect("ack");
        }
    };
    tokio::join!(restart, consume);
    assert_eq!(seen.len(), n);
    println!(
        "{n} messages, {deliveries} deliveries, all seen {:?} after the kill",
        killed.elapsed()
    );
    // NB: nsqd replays what it had read but not synced as read: drain the
    // duplicates.
    while let Ok(Some(d)) = timeout(Duration::from_secs(2), sub.next()).await {
        d.ack().await.expect("ack a duplicate");
    }
    drop(sub);
    eventually_empty(&q, &topic).await;
    q.close().await;
}

/// While nsqd is down a publish fails (nothing is reported done that was
/// not stored); after it is back the next publish succeeds by itself, and
/// what was published before the kill survived it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_during_an_outage_fails_then_succeeds_after_restart() {
    let Some(bin) = nsqd_bin() else { return };
    let mut nsqd = OwnNsqd::start(bin).await;
    let q = connect(&nsqd.url()).await;
    let topic = format!("{}.x", prefix("outage"));
    q.publish(&topic, vec![Bytes::from_static(b"before")])
        .await
        .expect("publish");
    // NB: nsqd has written the message when it says OK, but a disk queue
    // whose metadata was never synced (`--sync-timeout`, 2 s, after its
    // first write) starts empty after a SIGKILL: a new topic's first
    // messages are only crash-safe after that.
    sleep(NSQD_FIRST_SYNC).await;
    nsqd.kill().await;
    let started = Instant::now();
    let err = q
        .publish(&topic, vec![Bytes::from_static(b"during")])
        .await
        .expect_err("a publish while nsqd is down");
    assert_eq!(err.metric_label(), "unavailable", "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    nsqd.restart().await;
    q.publish(&topic, vec![Bytes::from_static(b"after")])
        .await
        .expect("the first publish after the restart");
    let mut sub = q
        .subscribe(&topic, opts(2, Duration::from_secs(10)))
        .await
        .expect("subscribe");
    let mut got = HashSet::new();
    while got.len() < 2 {
        let d = next(&mut sub, "after the restart").await;
        got.insert(d.body.clone());
        d.ack().await.expect("ack");
    }
    let want: HashSet<Bytes> = [Bytes::from_static(b"before"), Bytes::from_static(b"after")].into();
    assert_eq!(got, want);
    drop(sub);
    q.close().await;
}

/// A URL naming two nsqds: publishes are spread over both, a consumer
/// reads from both, even with `max_in_flight` 1 (its one RDY moves to the
/// other nsqd when one runs dry), and depth sums both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nsqds_are_both_published_to_and_consumed_from() {
    let Some(bin) = nsqd_bin() else { return };
    let Some(shared) = var(NSQD_VAR) else { return };
    if var(NSQD_HTTP_VAR).is_some() {
        // NB: `http_port` applies to every nsqd of a URL.
        println!("NSQ two-nsqd case did not run: {NSQD_HTTP_VAR} is set");
        return;
    }
    let own = OwnNsqd::start(bin).await;
    let first = connect(&format!("nsq://{shared}")).await;
    let second = connect(&own.url()).await;
    let both = connect(&format!("nsq://{shared},127.0.0.1:{}", own.tcp)).await;
    let topic = format!("{}.x", prefix("two"));
    let n = 20;
    for b in bodies("w", n) {
        both.publish(&topic, vec![b]).await.expect("publish");
    }
    for q in [&first, &second] {
        let d = q.depth(&topic).await.expect("depth");
        assert_eq!(d.ready, n as u64 / 2, "publishes are spread: {d:?}");
    }
    let mut sub = both
        .subscribe(&topic, opts(1, Duration::from_secs(30)))
        .await
        .expect("subscribe");
    let mut seen = HashSet::new();
    while seen.len() < n {
        let d = next(&mut sub, &format!("{} of {n} from two nsqds", seen.len())).await;
        assert_nothing_for(&mut sub, Duration::from_millis(20), "beyond max_in_flight 1").await;
        seen.insert(d.body.clone());
        d.ack().await.expect("ack");
    }
    drop(sub);
    for q in [&first, &second] {
        eventually_empty(q, &topic).await;
    }
    both.close().await;
    second.close().await;
    clean_up(&first, &[topic]).await;
}

/// Not a test: publish and consume+ack rates. Run with
/// `cargo test -p skep-queue --release --test nsq_conformance -- --ignored --nocapture throughput`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn throughput() {
    let Some(url) = nsqd_url() else { return };
    let q = connect(&url).await;
    let topic = format!("{}.x", prefix("rate"));
    let n = 200_000;
    let body = Bytes::from(vec![b'x'; 100]);
    let started = Instant::now();
    for _ in 0..n / 1000 {
        q.publish(&topic, vec![body.clone(); 1000]).await.expect("publish");
    }
    let secs = started.elapsed().as_secs_f64();
    println!("published {n} in {secs:.2} s: {:.0}/s", n as f64 / secs);
    let mut sub = q
        .subscribe(&topic, opts(256, Duration::from_secs(60)))
        .await
        .expect("subscribe");
    let started = Instant::now();
    for _ in 0..n {
        next(&mut sub, "consume").await.ack().await.expect("ack");
    }
    let secs = started.elapsed().as_secs_f64();
    println!("consumed and acked {n} in {secs:.2} s: {:.0}/s", n as f64 / secs);
    // One at a time with RDY to spare: the latency nsqd's output buffering
    // adds (a lone message waits in its buffer for the flush timer).
    let rounds = 50;
    let started = Instant::now();
    for _ in 0..rounds {
        q.publish(&topic, vec![body.clone()]).await.expect("publish");
        next(&mut sub, "round trip").await.ack().await.expect("ack");
    }
    println!(
        "publish, consume and ack one at a time: {:?} each",
        started.elapsed() / rounds
    );
    drop(sub);
    clean_up(&q, &[topic]).await;
}

/// Each NSQ channel holds a copy of every message: a second channel that
/// nobody reads (left by another program, say) must not make the topic
/// look full to the queue that consumes it with its own channel. Seen as
/// `skep run` waiting 30 s at its stop for results already ingested.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn depth_counts_the_channel_this_queue_consumes_not_a_stale_one() {
    let Some(url) = nsqd_url() else { return };
    let q = connect(&url).await;
    let other = connect(&url).await;
    let topic = format!("{}.chan", prefix("chan"));
    // Both channels exist before the messages come: each gets a copy.
    let mut sub = q
        .subscribe(&topic, SubscribeOptions::new("live", 3, Duration::from_secs(60)))
        .await
        .expect("subscribe");
    let stale = other
        .subscribe(&topic, SubscribeOptions::new("stale", 1, Duration::from_secs(60)))
        .await
        .expect("subscribe the stale channel");
    sleep(Duration::from_millis(300)).await;
    drop(stale);
    let bodies: Vec<Bytes> = (0..3).map(|i| Bytes::from(format!("c{i}"))).collect();
    q.publish(&topic, bodies).await.expect("publish");
    for i in 0..3 {
        next(&mut sub, &format!("message {i}")).await.ack().await.expect("ack");
    }
    eventually_empty(&q, &topic).await;
    let seen_by_another = other.depth(&topic).await.expect("depth without a channel of its own");
    assert_eq!(
        seen_by_another.ready, 3,
        "the busiest channel, for a queue that reads none: {seen_by_another:?}"
    );
    drop(sub);
    other.close().await;
    clean_up(&q, &[topic]).await;
}
