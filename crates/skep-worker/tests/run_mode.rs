//! `skep-worker run` as a swarm replica runs it: the real binary against a
//! real RabbitMQ, fed task messages for generated pages of known text,
//! answering on the results topic, stopped by signals.
//!
//! Runs against the broker `SKEP_TEST_AMQP_URL` names (start one with
//! `scripts/rabbitmq-test-server.sh start DIR PORT`, which prints the URL).
//! Without it the broker tests only print a note, unless `CI=true`: then
//! they fail. Each test uses a pool (so task topic) of its own and deletes
//! it after; the broker tests take turns, since they all read the one
//! results topic.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use bytes::Bytes;
use skep_api::{Outcome, RESULTS_TOPIC, ResultMessage, TaskMessage, task_topic};
use skep_queue::{AmqpQueue, NsqQueue, SubscribeOptions, TaskQueue};
use skep_testkit::{CorpusOptions, GeneratedFile, PageSize, cer, generate_corpus, load_truth};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep, timeout};

const URL_VAR: &str = "SKEP_TEST_AMQP_URL";
const BIN: &str = env!("CARGO_BIN_EXE_skep-worker");

/// The broker tests read the shared results topic: one at a time.
static BROKER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn broker_url() -> Option<String> {
    skep_testkit::server_from_env(URL_VAR, "scripts/rabbitmq-test-server.sh start DIR PORT prints its URL")
}

/// A pool name of its own for one test (a DNS label).
fn pool(case: &str) -> String {
    format!("rm-{case}-{}", std::process::id())
}

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

struct Corpus {
    dir: tempfile::TempDir,
    pages: PathBuf,
    truth: PathBuf,
    files: Vec<GeneratedFile>,
}

fn corpus(pages: usize, size: PageSize) -> Corpus {
    let dir = tempfile::tempdir().expect("tempdir");
    let (p, t) = (dir.path().join("pages"), dir.path().join("truth"));
    let opts = CorpusOptions {
        pages,
        seed: 11,
        size,
        ..CorpusOptions::default()
    };
    let files = generate_corpus(&p, &t, &opts).expect("generate");
    Corpus {
        dir,
        pages: p,
        truth: t,
        files,
    }
}

/// One task per file, as the controller's dispatch writes them.
fn tasks(c: &Corpus, job_uid: &str) -> Vec<Bytes> {
    c.files
        .iter()
        .enumerate()
        .map(|(i, f)| {
            Bytes::from(
                TaskMessage {
                    max_attempts: 3,
                    timeout_ms: 120_000,
                    ..TaskMessage::for_file(
                        "run-mode",
                        job_uid,
                        i as u64,
                        c.pages.join(&f.rel_path).to_string_lossy(),
                    )
                }
                .encode(),
            )
        })
        .collect()
}

fn job_uid(case: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{case}-{}-{nanos}", std::process::id())
}

/// A `skep-worker run` process; killed when dropped.
struct Worker {
    child: Child,
    listen: SocketAddr,
    log: PathBuf,
}

impl Worker {
    fn start(dir: &Path, name: &str, args: &[&str]) -> Self {
        Self::start_with_env(dir, name, args, &[])
    }

    fn start_with_env(dir: &Path, name: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        let listen = free_addr();
        let log = dir.join(format!("{name}.log"));
        let stderr = std::fs::File::create(&log).expect("log file");
        let child = Command::new(BIN)
            .arg("run")
            .args(["--id", name, "--listen", &listen.to_string()])
            .args(args)
            .env("OMP_THREAD_LIMIT", "1")
            .env("SKEP_LOG", "info")
            .env_remove("SKEP_QUEUE")
            .env_remove("SKEP_QUEUE_FILE")
            .env_remove("SKEP_POOL")
            .env_remove("NSQD_ADDRESS")
            .env_remove("NSQLOOKUPD_ADDRESSES")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start skep-worker");
        Self { child, listen, log }
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid()])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn exit_within(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "skep-worker did not exit within {limit:?}; its log:\n{}",
                self.log()
            );
            sleep(Duration::from_millis(50)).await;
        }
    }

    async fn get(&self, path: &str) -> Option<(u16, String)> {
        http_get(self.listen, path).await
    }

    /// The value of one sample of `/metrics` (`name` or `name{labels}`).
    async fn metric(&self, sample: &str) -> Option<f64> {
        let (status, body) = self.get("/metrics").await?;
        assert_eq!(status, 200, "{body}");
        body.lines()
            .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
    }

    /// Waits until `/readyz` answers 200.
    async fn ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some((200, _)) = self.get("/readyz").await {
                return;
            }
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                panic!(
                    "skep-worker exited ({status}) before it was ready; its log:\n{}",
                    self.log()
                );
            }
            assert!(Instant::now() < deadline, "never ready; log:\n{}", self.log());
            sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the worker holds a task.
    async fn busy(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.metric("skep_worker_in_flight").await.unwrap_or(0.0) < 1.0 {
            assert!(Instant::now() < deadline, "never took a task; log:\n{}", self.log());
            sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A plain HTTP/1.1 GET; `None` when nothing answers.
async fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = timeout(Duration::from_secs(2), TcpStream::connect(addr))
        .await
        .ok()?
        .ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut raw = String::new();
    timeout(Duration::from_secs(5), s.read_to_string(&mut raw))
        .await
        .ok()?
        .ok()?;
    let status = raw.split_whitespace().nth(1)?.parse().ok()?;
    let (_, body) = raw.split_once("\r\n\r\n")?;
    Some((status, body.to_owned()))
}

/// Results of job `uid` by file index: waits until every one of `files`
/// has one, then a little longer to catch duplicates. Results of other
/// jobs are stale (the broker tests take turns) and are dropped.
async fn collect(queue: &dyn TaskQueue, uid: &str, files: usize, limit: Duration) -> BTreeMap<u64, Vec<ResultMessage>> {
    let opts = SubscribeOptions::new("run-mode-test", 32, Duration::from_secs(60));
    let mut sub = queue
        .subscribe(RESULTS_TOPIC, opts)
        .await
        .expect("subscribe to results");
    let mut got: BTreeMap<u64, Vec<ResultMessage>> = BTreeMap::new();
    let deadline = Instant::now() + limit;
    let mut linger_until: Option<Instant> = None;
    loop {
        let until = linger_until.unwrap_or(deadline);
        let Ok(next) = tokio::time::timeout_at(until, sub.next()).await else {
            break;
        };
        let d = next.expect("the results subscription ended");
        let r = ResultMessage::decode(&d.body).expect("a result message");
        d.ack().await.expect("ack a result");
        if r.job_uid != uid {
            continue;
        }
        got.entry(r.index).or_default().push(r);
        if got.len() == files && linger_until.is_none() {
            linger_until = Some(Instant::now() + Duration::from_secs(2));
        }
    }
    got
}

/// Every file has exactly one result, a success reading its text.
fn assert_one_good_result_each(c: &Corpus, got: &BTreeMap<u64, Vec<ResultMessage>>) {
    for (i, f) in c.files.iter().enumerate() {
        let results = got.get(&(i as u64)).map_or(&[][..], Vec::as_slice);
        assert_eq!(
            results.len(),
            1,
            "{}: {} results: {results:?}",
            f.rel_path,
            results.len()
        );
        match &results[0].outcome {
            Outcome::Succeeded { text, pages, .. } => {
                assert_eq!(*pages as usize, f.pages, "{}", f.rel_path);
                let truth = load_truth(&c.truth, &f.rel_path).expect("truth");
                let e = cer(&truth, text);
                assert!(
                    e < 0.05,
                    "{}: CER {e:.3}\n--- truth\n{truth}\n--- ocr\n{text}",
                    f.rel_path
                );
            }
            other => panic!("{}: {other:?}", f.rel_path),
        }
    }
    assert_eq!(got.len(), c.files.len(), "results for unknown files: {got:?}");
}

async fn connect(url: &str) -> AmqpQueue {
    AmqpQueue::connect(url).await.expect("connect to the test broker")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_answers_every_task_serves_metrics_and_exits_0_on_sigterm() {
    let Some(url) = broker_url() else { return };
    let _turn = BROKER.lock().await;
    let queue = connect(&url).await;
    let pool = pool("a");
    let uid = job_uid("a");
    let c = corpus(6, PageSize::Small);
    queue
        .publish(&task_topic(&pool), tasks(&c, &uid))
        .await
        .expect("publish tasks");

    // The URL comes from a file, as a Docker secret would hand it over.
    let secret = c.dir.path().join("queue-url");
    std::fs::write(&secret, format!("{url}\n")).expect("write the secret");
    let mut w = Worker::start(
        c.dir.path(),
        "worker-a",
        &[
            "--queue-file",
            secret.to_str().expect("utf-8 path"),
            "--pool",
            &pool,
            "--slots",
            "2",
        ],
    );
    w.ready().await;
    assert_eq!(w.get("/livez").await.map(|(s, _)| s), Some(200));
    let got = collect(&queue, &uid, c.files.len(), Duration::from_secs(120)).await;
    assert_one_good_result_each(&c, &got);
    assert!(got.values().flatten().all(|r| r.worker.id == "worker-a"));

    assert_eq!(
        w.metric("skep_worker_files_total{outcome=\"succeeded\"}").await,
        Some(6.0)
    );
    assert_eq!(w.metric("skep_worker_files_total{outcome=\"failed\"}").await, Some(0.0));
    assert_eq!(w.metric("skep_worker_pages_total").await, Some(6.0));
    assert_eq!(w.metric("skep_worker_ocr_seconds_count").await, Some(6.0));
    assert_eq!(w.metric("skep_worker_in_flight").await, Some(0.0));
    assert_eq!(w.metric("skep_worker_slots").await, Some(2.0));
    assert_eq!(w.metric("skep_worker_ready").await, Some(1.0));
    let (_, text) = w.get("/metrics").await.expect("metrics");
    assert!(
        !text.contains(&uid) && !text.contains("page-0"),
        "metrics name a job or file:\n{text}"
    );

    w.signal("TERM");
    let status = w.exit_within(Duration::from_secs(25)).await;
    assert_eq!(status.code(), Some(0), "log:\n{}", w.log());
    let log = w.log();
    assert!(
        log.contains("succeeded=6") && log.contains("handed_back=0"),
        "no exit summary:\n{log}"
    );
    queue.delete_topic(&task_topic(&pool)).await.expect("clean up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_of_a_worker_killed_mid_file_is_redone_by_the_next() {
    let Some(url) = broker_url() else { return };
    let _turn = BROKER.lock().await;
    let queue = connect(&url).await;
    let pool = pool("b");
    let uid = job_uid("b");
    let c = corpus(3, PageSize::A4);
    queue
        .publish(&task_topic(&pool), tasks(&c, &uid))
        .await
        .expect("publish tasks");

    let args = ["--queue", url.as_str(), "--pool", pool.as_str(), "--slots", "1"];
    let mut first = Worker::start(c.dir.path(), "worker-killed", &args);
    first.busy().await;
    first.signal("KILL");
    let status = first.exit_within(Duration::from_secs(10)).await;
    assert_eq!(status.code(), None, "killed by a signal");

    let mut second = Worker::start(c.dir.path(), "worker-next", &args);
    second.ready().await;
    // NB: exactly one each: the killed worker dies while reading, well
    // before its publish-then-ack step (milliseconds of each ~3 s file).
    let got = collect(&queue, &uid, c.files.len(), Duration::from_secs(120)).await;
    assert_one_good_result_each(&c, &got);
    assert!(got.values().flatten().any(|r| r.worker.id == "worker-next"));
    second.signal("TERM");
    assert_eq!(second.exit_within(Duration::from_secs(25)).await.code(), Some(0));
    queue.delete_topic(&task_topic(&pool)).await.expect("clean up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_file_finishes_it_within_the_grace_and_exits_0() {
    let Some(url) = broker_url() else { return };
    let _turn = BROKER.lock().await;
    let queue = connect(&url).await;
    let pool = pool("c");
    let uid = job_uid("c");
    let c = corpus(3, PageSize::A4);
    queue
        .publish(&task_topic(&pool), tasks(&c, &uid))
        .await
        .expect("publish tasks");

    let args = [
        "--queue",
        url.as_str(),
        "--pool",
        pool.as_str(),
        "--slots",
        "1",
        "--stop-grace",
        "20",
    ];
    let mut first = Worker::start(c.dir.path(), "worker-stopped", &args);
    first.busy().await;
    first.signal("TERM");
    // Draining: not ready, still alive while it finishes its file.
    let mut saw_draining = false;
    while first.child.try_wait().expect("try_wait").is_none() {
        if let Some((503, body)) = first.get("/readyz").await {
            saw_draining |= body.contains("draining");
        }
        sleep(Duration::from_millis(20)).await;
    }
    let status = first.exit_within(Duration::from_secs(20)).await;
    assert_eq!(status.code(), Some(0), "log:\n{}", first.log());
    assert!(saw_draining, "/readyz never said draining; log:\n{}", first.log());
    let log = first.log();
    assert!(log.contains("handed_back=0"), "it handed back its file:\n{log}");

    let second = Worker::start(c.dir.path(), "worker-next", &args);
    let got = collect(&queue, &uid, c.files.len(), Duration::from_secs(120)).await;
    assert_one_good_result_each(&c, &got);
    assert!(
        got.values().flatten().any(|r| r.worker.id == "worker-stopped"),
        "the stopped worker's file was not finished by it: {got:?}"
    );
    second.signal("TERM");
    queue.delete_topic(&task_topic(&pool)).await.expect("clean up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_past_the_grace_hands_the_file_back_and_exits_0() {
    let Some(url) = broker_url() else { return };
    let _turn = BROKER.lock().await;
    let queue = connect(&url).await;
    let pool = pool("c2");
    let uid = job_uid("c2");
    let c = corpus(2, PageSize::A4);
    queue
        .publish(&task_topic(&pool), tasks(&c, &uid))
        .await
        .expect("publish tasks");

    let args = ["--queue", url.as_str(), "--pool", pool.as_str(), "--slots", "1"];
    let mut first = Worker::start(
        c.dir.path(),
        "worker-stopped",
        &[&args[..], &["--stop-grace", "0"]].concat(),
    );
    first.busy().await;
    first.signal("TERM");
    let status = first.exit_within(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0), "log:\n{}", first.log());
    let log = first.log();
    assert!(log.contains("handed_back=1"), "no file handed back:\n{log}");

    let second = Worker::start(c.dir.path(), "worker-next", &args);
    let got = collect(&queue, &uid, c.files.len(), Duration::from_secs(120)).await;
    assert_one_good_result_each(&c, &got);
    second.signal("TERM");
    queue.delete_topic(&task_topic(&pool)).await.expect("clean up");
}

/// Forwards TCP connections to `target` until dropped, which cuts them all.
struct Proxy {
    addr: SocketAddr,
    tasks: JoinSet<()>,
}

impl Proxy {
    async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let mut tasks = JoinSet::new();
        tasks.spawn(async move {
            let mut conns = JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = target.clone();
                conns.spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Self { addr, tasks }
    }

    fn cut(&mut self) {
        self.tasks.abort_all();
    }
}

/// `url` split around its host and port: (before, host:port, after).
fn split_authority(url: &str) -> (String, String, String) {
    let (scheme, rest) = url.split_once("://").expect("a url");
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (user, host) = match authority.rsplit_once('@') {
        Some((u, h)) => (format!("{u}@"), h),
        None => (String::new(), authority),
    };
    (format!("{scheme}://{user}"), host.to_owned(), tail.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_loses_the_broker_exits_non_zero_to_be_restarted() {
    let Some(url) = broker_url() else { return };
    let _turn = BROKER.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let pool = pool("lost");
    let (head, broker, tail) = split_authority(&url);
    let mut proxy = Proxy::start(broker).await;
    let proxied = format!("{head}{}{tail}", proxy.addr);
    let mut w = Worker::start(
        dir.path(),
        "worker-lost",
        &["--queue", &proxied, "--pool", &pool, "--queue-timeout", "3"],
    );
    w.ready().await;
    proxy.cut();
    let mut saw_not_ready = false;
    while w.child.try_wait().expect("try_wait").is_none() {
        saw_not_ready |= matches!(w.get("/readyz").await, Some((503, _)));
        sleep(Duration::from_millis(50)).await;
    }
    let status = w.exit_within(Duration::from_secs(40)).await;
    assert_eq!(status.code(), Some(1), "log:\n{}", w.log());
    assert!(saw_not_ready, "/readyz never answered 503; log:\n{}", w.log());
    assert!(w.log().contains("no working task subscription"), "log:\n{}", w.log());
    connect(&url)
        .await
        .delete_topic(&task_topic(&pool))
        .await
        .expect("clean up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_broker_keeps_it_unready_then_exits_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nothing = free_addr();
    let url = format!("amqp://guest:guest@{nothing}/%2f");
    let mut w = Worker::start(dir.path(), "worker-early", &["--queue", &url, "--queue-timeout", "3"]);
    let mut answers = Vec::new();
    while w.child.try_wait().expect("try_wait").is_none() {
        if let (Some((live, _)), Some((ready, _))) = (w.get("/livez").await, w.get("/readyz").await) {
            answers.push((live, ready));
        }
        sleep(Duration::from_millis(100)).await;
    }
    let status = w.exit_within(Duration::from_secs(30)).await;
    assert_eq!(status.code(), Some(1), "log:\n{}", w.log());
    assert!(!answers.is_empty(), "the HTTP server never answered; log:\n{}", w.log());
    assert!(answers.iter().all(|a| *a == (200, 503)), "{answers:?}");
    let log = w.log();
    assert!(log.contains("cannot connect to the task queue; retrying"), "{log}");
    assert!(!log.contains("guest:guest"), "the password was logged:\n{log}");
}

#[test]
fn a_memory_queue_or_no_queue_is_a_usage_error() {
    let run = |args: &[&str], env: Option<(&str, &str)>| {
        let mut cmd = Command::new(BIN);
        cmd.arg("run")
            .args(args)
            .env("OMP_THREAD_LIMIT", "1")
            .env_remove("SKEP_QUEUE")
            .env_remove("SKEP_QUEUE_FILE")
            .env_remove("NSQD_ADDRESS")
            .env_remove("NSQLOOKUPD_ADDRESSES");
        if let Some((k, v)) = env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("run skep-worker");
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (code, err) = run(&["--queue", "memory:"], None);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("memory:") && err.contains("amqp://"), "{err}");
    let (code, err) = run(&[], Some(("SKEP_QUEUE", "memory:")));
    assert_eq!(code, Some(2), "{err}");
    let (code, err) = run(&[], None);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("no task queue given"), "{err}");
    let (code, err) = run(&[], Some(("SKEP_QUEUE_FILE", "/nonexistent/skep-queue-url")));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("/nonexistent/skep-queue-url"), "{err}");
    let (code, err) = run(&["--queue", "nsq://127.0.0.1:99999"], None);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("nsq://127.0.0.1:99999"), "{err}");
    let (code, err) = run(&[], Some(("NSQD_ADDRESS", "127.0.0.1:99999")));
    assert_eq!(code, Some(2), "the old deployments' variable is read: {err}");
    assert!(err.contains("nsq://127.0.0.1:99999"), "{err}");
    let (code, err) = run(&["--queue", "amqp://h/", "--pool", "Not_A_Label"], None);
    assert_eq!(code, Some(2), "{err}");
}

/// A worker configured as the NSQ deployments skep replaces configure
/// theirs (`NSQD_ADDRESS`, no skep variable) takes its tasks from a real
/// nsqd and answers each. Runs where `SKEP_TEST_NSQD` names an nsqd (see
/// `crates/skep-queue/tests/nsq_conformance.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_configured_by_nsqd_address_answers_every_task_through_nsq() {
    let Some(nsqd) = std::env::var("SKEP_TEST_NSQD").ok().filter(|s| !s.is_empty()) else {
        println!("NSQ worker test did not run: SKEP_TEST_NSQD is not set");
        return;
    };
    let queue = NsqQueue::connect(&format!("nsq://{nsqd}"))
        .await
        .expect("connect to the test nsqd");
    let pool = pool("nsq");
    let uid = job_uid("nsq");
    let c = corpus(4, PageSize::Small);
    let mut w = Worker::start_with_env(
        c.dir.path(),
        "worker-nsq",
        &["--pool", &pool, "--slots", "2"],
        &[("NSQD_ADDRESS", &nsqd)],
    );
    w.ready().await;
    queue
        .publish(&task_topic(&pool), tasks(&c, &uid))
        .await
        .expect("publish tasks");
    let got = collect(&queue, &uid, c.files.len(), Duration::from_secs(120)).await;
    assert_one_good_result_each(&c, &got);
    assert!(got.values().flatten().all(|r| r.worker.id == "worker-nsq"));
    w.signal("TERM");
    let status = w.exit_within(Duration::from_secs(25)).await;
    assert_eq!(status.code(), Some(0), "log:\n{}", w.log());
    queue.delete_topic(&task_topic(&pool)).await.expect("clean up");
    queue.close().await;
}
