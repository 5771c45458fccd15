//! The queue conformance suite against RabbitMQ, plus what only a real
//! broker can show: a consumer process killed mid-task hands its task to
//! another consumer at once.
//!
//! Runs against the broker `SKEP_TEST_AMQP_URL` names (start one with
//! `scripts/rabbitmq-test-server.sh start DIR PORT`, which prints the URL).
//! Without it the tests only print a note, unless `CI=true`: then they fail.

use std::time::Duration;

use bytes::Bytes;
use skep_queue::conformance::{assert_nothing_for, eventually_empty, next};
use skep_queue::{AmqpQueue, SubscribeOptions, TaskQueue, conformance};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::time::{Instant, timeout};

const URL_VAR: &str = "SKEP_TEST_AMQP_URL";
/// Set in the child process: the topic it consumes from.
const CHILD_TOPIC_VAR: &str = "SKEP_TEST_AMQP_CHILD_TOPIC";
/// What the child prints once it holds a delivery.
const CHILD_GOT: &str = "skep-child-holds:";

fn broker_url() -> Option<String> {
    skep_testkit::server_from_env(URL_VAR, "scripts/rabbitmq-test-server.sh start DIR PORT prints its URL")
}

/// A topic prefix no other test run uses.
fn prefix(case: &str) -> String {
    use std::hash::{BuildHasher, RandomState};
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let salt = RandomState::new().hash_one(nanos) as u32;
    format!("skeptest.{case}.{}.{salt:08x}", std::process::id())
}

async fn connect(url: &str) -> AmqpQueue {
    AmqpQueue::connect(url).await.expect("connect to the test broker")
}

/// Deletes what a case left on the broker.
async fn clean_up(q: &AmqpQueue, topics: &[String]) {
    for t in topics {
        q.delete_topic(t).await.expect("delete a test topic");
    }
    q.close().await;
}

macro_rules! cases {
    ($($case:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $case() {
            let Some(url) = broker_url() else { return };
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

/// Not a test on its own: the consumer process that
/// `killed_consumer_process_hands_its_task_to_another` starts. It takes one
/// delivery, says so, and hangs holding it until it is killed.
#[tokio::test]
async fn child_consumer_process() {
    let Ok(topic) = std::env::var(CHILD_TOPIC_VAR) else {
        return;
    };
    let url = std::env::var(URL_VAR).expect("the parent passes the broker url");
    let q = connect(&url).await;
    // NB: a visibility timeout far beyond the parent's patience: only the
    // broker noticing the dead connection can bring the message back in time.
    let mut sub = q
        .subscribe(&topic, opts(1, Duration::from_secs(600)))
        .await
        .expect("subscribe");
    let d = next(&mut sub, "the child's delivery").await;
    println!("{CHILD_GOT}{}", String::from_utf8_lossy(&d.body));
    tokio::time::sleep(Duration::from_secs(300)).await;
    drop(d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_consumer_process_hands_its_task_to_another() {
    let Some(url) = broker_url() else { return };
    let q = connect(&url).await;
    let topic = format!("{}.kill", prefix("kill"));
    q.publish(&topic, vec![Bytes::from_static(b"task-1")])
        .await
        .expect("publish");

    let exe = std::env::current_exe().expect("the test binary");
    let mut child = Command::new(exe)
        .args(["child_consumer_process", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_TOPIC_VAR, &topic)
        .env(URL_VAR, &url)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the child consumer");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let held = timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.expect("read the child's output") {
            // NB: libtest may have printed the test's name on the same line.
            if let Some((_, body)) = line.split_once(CHILD_GOT) {
                return body.to_owned();
            }
        }
        panic!("the child exited without taking the task");
    })
    .await
    .expect("the child took no task within 30 s");
    assert_eq!(held, "task-1");

    let mut survivor = q
        .subscribe(&topic, opts(1, Duration::from_secs(600)))
        .await
        .expect("subscribe");
    assert_nothing_for(
        &mut survivor,
        Duration::from_secs(1),
        "a task held by a live consumer was delivered again",
    )
    .await;

    // SIGKILL: the process settles nothing and closes nothing itself.
    child.kill().await.expect("kill the child");
    let killed_at = Instant::now();
    let d = next(&mut survivor, "the dead consumer's task").await;
    assert!(
        killed_at.elapsed() < Duration::from_secs(10),
        "redelivered only after {:?}",
        killed_at.elapsed()
    );
    assert_eq!(d.body, Bytes::from_static(b"task-1"));
    assert!(d.attempts >= 2, "attempts {} after the consumer died", d.attempts);
    d.ack().await.expect("ack");
    drop(survivor);
    eventually_empty(&q, &topic).await;
    clean_up(&q, &[topic]).await;
}

/// A queue deleted behind the backend's back ends its subscriptions, fails
/// one publish (the broker returns the messages: nothing is confirmed that
/// was not stored) and one subscribe, and the retries declare it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_deleted_elsewhere_is_declared_again() {
    let Some(url) = broker_url() else { return };
    let q = connect(&url).await;
    let other = connect(&url).await;
    let topic = format!("{}.gone", prefix("gone"));
    q.publish(&topic, vec![Bytes::from_static(b"a")])
        .await
        .expect("publish");
    let mut sub = q
        .subscribe(&topic, opts(1, Duration::from_secs(5)))
        .await
        .expect("subscribe");
    let a = next(&mut sub, "before the delete").await;
    other.delete_topic(&topic).await.expect("delete elsewhere");
    let ended = timeout(Duration::from_secs(10), sub.next())
        .await
        .expect("a subscription to a deleted queue ends");
    assert!(ended.is_none(), "got {ended:?} from a deleted queue");
    a.ack().await.expect("an ack of a deleted queue's delivery is harmless");

    let err = q
        .publish(&topic, vec![Bytes::from_static(b"b")])
        .await
        .expect_err("a publish to a deleted queue cannot be confirmed as stored");
    assert_eq!(err.metric_label(), "unavailable", "{err}");
    q.publish(&topic, vec![Bytes::from_static(b"c")])
        .await
        .expect("the retry declares the queue again");
    let mut sub = match q.subscribe(&topic, opts(1, Duration::from_secs(5))).await {
        Ok(sub) => sub,
        Err(_) => q
            .subscribe(&topic, opts(1, Duration::from_secs(5)))
            .await
            .expect("a second subscribe declares the queue again"),
    };
    let d = next(&mut sub, "the retried message").await;
    assert_eq!(d.body, Bytes::from_static(b"c"));
    d.ack().await.expect("ack");
    drop(sub);
    other.close().await;
    clean_up(&q, &[topic]).await;
}

/// After the connection is lost, subscriptions end (the caller subscribes
/// again), acks of their deliveries are harmless, and the next calls
/// reconnect; the unacked message is delivered again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_connection_ends_subscriptions_and_the_next_call_reconnects() {
    let Some(url) = broker_url() else { return };
    let q = connect(&url).await;
    let topic = format!("{}.reconnect", prefix("reconnect"));
    q.publish(&topic, vec![Bytes::from_static(b"r")])
        .await
        .expect("publish");
    let mut sub = q
        .subscribe(&topic, opts(1, Duration::from_secs(600)))
        .await
        .expect("subscribe");
    let d = next(&mut sub, "before the loss").await;
    q.close().await;
    let ended = timeout(Duration::from_secs(10), sub.next())
        .await
        .expect("a subscription on a lost connection ends");
    assert!(ended.is_none(), "got {ended:?} from a lost connection");
    d.ack().await.expect("an ack on a lost channel is harmless");

    q.publish(&topic, vec![Bytes::from_static(b"s")])
        .await
        .expect("publishing reconnects");
    let mut sub = q
        .subscribe(&topic, opts(2, Duration::from_secs(600)))
        .await
        .expect("subscribing reconnects");
    let mut got = vec![next(&mut sub, "one").await, next(&mut sub, "two").await];
    got.sort_by(|a, b| a.body.cmp(&b.body));
    assert_eq!(got[0].body, Bytes::from_static(b"r"), "the unacked message came back");
    assert!(got[0].attempts >= 2);
    assert_eq!(got[1].body, Bytes::from_static(b"s"));
    for d in got {
        d.ack().await.expect("ack");
    }
    drop(sub);
    eventually_empty(&q, &topic).await;
    clean_up(&q, &[topic]).await;
}

/// Without the management API (`management_port`), depth still counts
/// ready messages from the broker and this process's in-flight ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn depth_without_the_management_api() {
    let Some(url) = broker_url() else { return };
    let bare: String = match url.split_once('?') {
        Some((base, query)) => {
            let kept: Vec<&str> = query
                .split('&')
                .filter(|kv| !kv.starts_with("management_port="))
                .collect();
            if kept.is_empty() {
                base.to_owned()
            } else {
                format!("{base}?{}", kept.join("&"))
            }
        }
        None => url.clone(),
    };
    let q = connect(&bare).await;
    let p = prefix("bare");
    conformance::depth_counts(&q, &p).await;
    conformance::deferred_publish(&q, &p).await;
    clean_up(&q, &[format!("{p}.depth"), format!("{p}.deferred")]).await;
}

/// The TLS stack is built in: an `amqps://` URL pointed at a plain AMQP
/// port fails the handshake with an error (not a panic, not a hang).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqps_to_a_plain_port_fails_cleanly() {
    let Some(url) = broker_url() else { return };
    let tls = url.replacen("amqp://", "amqps://", 1);
    let started = Instant::now();
    let err = AmqpQueue::connect(&tls)
        .await
        .expect_err("a TLS handshake with a plain AMQP listener cannot succeed");
    assert_eq!(err.metric_label(), "unavailable", "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
}
