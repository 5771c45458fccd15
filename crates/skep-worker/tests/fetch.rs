//! Files read through their task's URL (`--file-access`): against a real
//! HTTP server on loopback that serves pages, fails, drips and lies about
//! sizes, then through the worker loop with real Tesseract.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use skep_api::{FailureReason, Outcome, RESULTS_TOPIC, ResultMessage, TaskMessage, task_topic};
use skep_queue::{MemoryQueue, SubscribeOptions, TaskQueue};
use skep_testkit::{CorpusOptions, ImageFormat, PageSize, cer, generate_corpus, load_truth};
use skep_worker::fetch::{self, Expect, Fetcher, FileAccess, Source};
use skep_worker::{WorkerConfig, worker};
use tokio_util::sync::CancellationToken;

#[derive(Clone)]
struct Served {
    page: Bytes,
    flaky_calls: Arc<AtomicU32>,
}

async fn page(State(s): State<Served>) -> Bytes {
    s.page.clone()
}

/// Fails twice with 503, then serves the page.
async fn flaky(State(s): State<Served>) -> Response {
    if s.flaky_calls.fetch_add(1, Ordering::SeqCst) < 2 {
        return (StatusCode::SERVICE_UNAVAILABLE, "busy").into_response();
    }
    s.page.clone().into_response()
}

/// Always 500.
async fn broken() -> Response {
    (StatusCode::INTERNAL_SERVER_ERROR, "broken").into_response()
}

async fn expired() -> Response {
    (
        StatusCode::FORBIDDEN,
        [("content-type", "application/json")],
        r#"{"success":false,"error":"the URL has expired"}"#,
    )
        .into_response()
}

async fn gone() -> Response {
    (StatusCode::NOT_FOUND, "no such file").into_response()
}

/// The page as version `"v2"` of an object: another `If-Match` is
/// answered 412, as S3 does.
async fn versioned(State(s): State<Served>, headers: axum::http::HeaderMap) -> Response {
    match headers.get("if-match") {
        Some(tag) if tag != "\"v2\"" => (
            StatusCode::PRECONDITION_FAILED,
            "<Error><Code>PreconditionFailed</Code></Error>",
        )
            .into_response(),
        _ => ([("etag", "\"v2\"")], s.page.clone()).into_response(),
    }
}

/// The page as version `"v3"`, whatever `If-Match` asks (as s3s-fs does).
async fn retagged(State(s): State<Served>) -> Response {
    ([("etag", "\"v3\"")], s.page.clone()).into_response()
}

/// The page streamed with no length given.
async fn page_unsized(State(s): State<Served>) -> Response {
    let chunks = futures::stream::iter([Ok::<_, std::io::Error>(s.page.clone())]);
    Body::from_stream(chunks).into_response()
}

/// Says it is 10 MB long.
async fn big() -> Response {
    Response::builder()
        .header("content-length", "10000000")
        .body(Body::from(vec![0u8; 10_000_000]))
        .expect("a response")
}

/// 10 MB with no length given: the bound holds while streaming.
async fn big_unsized() -> Response {
    let chunks = futures::stream::iter((0..160).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![0u8; 65_536]))));
    Body::from_stream(chunks).into_response()
}

/// A first byte, then nothing for a minute.
async fn drip() -> Response {
    let chunks = futures::stream::unfold(0, |n| async move {
        if n > 0 {
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
        Some((Ok::<_, std::io::Error>(Bytes::from_static(b"x")), n + 1))
    });
    Body::from_stream(chunks).into_response()
}

/// A server on an ephemeral loopback port; its base URL.
async fn serve(body: Bytes) -> (String, Served) {
    let state = Served {
        page: body,
        flaky_calls: Arc::new(AtomicU32::new(0)),
    };
    let app = Router::new()
        .route("/page", get(page))
        .route("/versioned", get(versioned))
        .route("/retagged", get(retagged))
        .route("/page-unsized", get(page_unsized))
        .route("/flaky", get(flaky))
        .route("/broken", get(broken))
        .route("/expired", get(expired))
        .route("/gone", get(gone))
        .route("/big", get(big))
        .route("/big-unsized", get(big_unsized))
        .route("/drip", get(drip))
        .route("/upload-refused", axum::routing::put(expired))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, state)
}

fn files_in(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.count())
}

#[tokio::test]
async fn fetches_are_bounded_retried_and_named_by_result() {
    let page = Bytes::from_static(b"the bytes of a page");
    let (base, served) = serve(page.clone()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let fetcher = Fetcher::new(dir.path(), 1_000_000, &[])
        .expect("fetcher")
        .with_backoff(Duration::from_millis(20));
    let limit = Duration::from_secs(20);

    let ok = fetcher
        .fetch(
            &format!("{base}/page"),
            Path::new("/data/a.png"),
            Expect::default(),
            limit,
        )
        .await
        .expect("page");
    assert_eq!(std::fs::read(&ok.path).expect("read"), page);
    assert_eq!((ok.bytes, ok.tries), (page.len() as u64, 1));
    assert_eq!(
        ok.path.file_name().expect("name"),
        "a.png",
        "the copy keeps the file's name"
    );
    let kept = ok.path.clone();
    drop(ok);
    assert!(!kept.exists(), "a fetched copy is deleted once dropped");

    let flaky = fetcher
        .fetch(
            &format!("{base}/flaky"),
            Path::new("/data/a.png"),
            Expect::default(),
            limit,
        )
        .await
        .expect("flaky");
    assert_eq!((flaky.tries, served.flaky_calls.load(Ordering::SeqCst)), (3, 3));
    drop(flaky);

    let cases = [
        (
            "/broken",
            FailureReason::Unreadable,
            "error",
            "failed 4 times; last: 500",
        ),
        ("/expired", FailureReason::Unreadable, "refused", "the URL has expired"),
        ("/gone", FailureReason::NotFound, "notFound", "404"),
        ("/big", FailureReason::TooLarge, "tooLarge", "1000000 bytes"),
        ("/big-unsized", FailureReason::TooLarge, "tooLarge", "1000000 bytes"),
    ];
    for (path, reason, result, says) in cases {
        let e = fetcher
            .fetch(
                &format!("{base}{path}"),
                Path::new("/data/a.png"),
                Expect::default(),
                limit,
            )
            .await
            .expect_err(path);
        assert_eq!(
            (e.error.reason, e.result),
            (reason, result),
            "{path}: {}",
            e.error.message
        );
        assert!(e.error.message.contains(says), "{path}: {}", e.error.message);
    }

    // The listed version: its ETag and size match.
    let size = page.len() as u64;
    let listed = Expect {
        size: Some(size),
        etag: Some("\"v2\""),
    };
    for path in ["/versioned", "/page-unsized"] {
        let ok = fetcher
            .fetch(&format!("{base}{path}"), Path::new("/data/a.png"), listed, limit)
            .await
            .expect(path);
        assert_eq!(std::fs::read(&ok.path).expect("read"), page, "{path}");
    }
    // Another version: a replaced ETag (412), another length said, or a
    // longer body streamed; each fails at once as `changed`.
    let other_tag = Expect {
        size: Some(size),
        etag: Some("\"v1\""),
    };
    let other_size = Expect {
        size: Some(size - 1),
        etag: None,
    };
    let cases = [
        ("/versioned", other_tag, "ETag is no longer \"v1\""),
        ("/retagged", listed, "ETag is no longer \"v2\""),
        (
            "/page",
            other_size,
            &*format!("it is {size} bytes, listed as {}", size - 1),
        ),
        ("/page-unsized", other_size, &*format!("over {} bytes", size - 1)),
    ];
    for (path, expect, says) in cases {
        let e = fetcher
            .fetch(&format!("{base}{path}"), Path::new("/data/a.png"), expect, limit)
            .await
            .expect_err(path);
        assert_eq!(
            (e.error.reason, e.result),
            (FailureReason::Changed, "changed"),
            "{path}: {}",
            e.error.message
        );
        assert!(e.error.message.contains(says), "{path}: {}", e.error.message);
        assert!(
            !e.error.reason.is_retryable(),
            "a replaced object cannot be read as listed"
        );
    }

    // An ETag no header can carry: the task is wrong, not the server.
    let broken = Expect {
        size: Some(size),
        etag: Some("\"v2\"\r\nX-Injected: 1"),
    };
    let e = fetcher
        .fetch(&format!("{base}/versioned"), Path::new("/data/a.png"), broken, limit)
        .await
        .expect_err("a broken ETag");
    assert_eq!(e.error.reason, FailureReason::BadMessage, "{}", e.error.message);

    let started = std::time::Instant::now();
    let e = fetcher
        .fetch(
            &format!("{base}/drip"),
            Path::new("/data/a.png"),
            Expect::default(),
            Duration::from_secs(2),
        )
        .await
        .expect_err("drip");
    assert_eq!((e.error.reason, e.result), (FailureReason::Timeout, "timeout"));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the task's limit bounds a dripping server"
    );

    // A server that is not there: retried, then unreadable, the URL (and
    // its signature) not in the message.
    let e = fetcher
        .fetch(
            "http://127.0.0.1:9/files?path=%2Fa&sig=SECRETSIG",
            Path::new("/a"),
            Expect::default(),
            limit,
        )
        .await
        .expect_err("refused connection");
    assert_eq!((e.error.reason, e.result), (FailureReason::Unreadable, "error"));
    assert!(!e.error.message.contains("SECRETSIG"), "{}", e.error.message);

    assert_eq!(files_in(dir.path()), 0, "no copy left behind by any failure");
}

fn is_path(s: Result<Source<'_>, skep_worker::OcrError>) -> bool {
    matches!(s, Ok(Source::Path(_)))
}

fn is_url(s: Result<Source<'_>, skep_worker::OcrError>) -> bool {
    matches!(s, Ok(Source::Url(_)))
}

#[test]
fn the_access_mode_picks_the_path_or_the_url() {
    let dir = tempfile::tempdir().expect("tempdir");
    let here = dir.path().join("here.png");
    std::fs::write(&here, b"x").expect("file");
    let task = |path: &Path, url: Option<&str>| TaskMessage {
        url: url.map(str::to_owned),
        ..TaskMessage::for_file("j", "u", 0, path.to_string_lossy())
    };
    let missing = dir.path().join("missing.png");
    let with_url = |p: &Path| task(p, Some("http://ctl/files?x"));
    assert!(
        is_path(fetch::source(FileAccess::Auto, &with_url(&here))),
        "a file that is here is read in place"
    );
    assert!(is_url(fetch::source(FileAccess::Auto, &with_url(&missing))));
    assert!(
        is_url(fetch::source(FileAccess::Auto, &with_url(dir.path()))),
        "a folder is no file"
    );
    assert!(is_path(fetch::source(FileAccess::Auto, &task(&missing, None))));
    assert!(is_path(fetch::source(FileAccess::Path, &with_url(&missing))));
    assert!(is_url(fetch::source(FileAccess::Url, &with_url(&here))));
    let e = fetch::source(FileAccess::Url, &task(&here, None)).expect_err("no url");
    assert_eq!(e.reason, FailureReason::Unreadable);
    assert!(e.message.contains("--file-url-base"), "{}", e.message);

    // An object's task names it (`s3://B/KEY`), never a file of this host.
    let object = |url: Option<&str>| TaskMessage {
        url: url.map(str::to_owned),
        ..TaskMessage::for_file("j", "u", 0, "s3://bucket/k.png")
    };
    assert!(is_url(fetch::source(
        FileAccess::Auto,
        &object(Some("http://s3/presigned"))
    )));
    let e = fetch::source(FileAccess::Path, &object(Some("http://s3/presigned"))).expect_err("not a path");
    assert_eq!(e.reason, FailureReason::Unreadable);
    assert!(e.message.contains("--file-access path"), "{}", e.message);
    let e = fetch::source(FileAccess::Auto, &object(None)).expect_err("no URL");
    assert!(e.message.contains("s3://bucket/k.png"), "{}", e.message);
}

#[tokio::test]
async fn a_worker_with_no_mount_reads_pages_through_their_urls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (pages, truth) = (dir.path().join("pages"), dir.path().join("truth"));
    let opts = CorpusOptions {
        pages: 1,
        seed: 11,
        size: PageSize::Small,
        formats: vec![ImageFormat::Png],
        multipage_tiff: None,
        bad_files: false,
    };
    let files = generate_corpus(&pages, &truth, &opts).expect("corpus");
    let rel = files[0].rel_path.clone();
    let (base, _) = serve(Bytes::from(std::fs::read(pages.join(&rel)).expect("page"))).await;

    let queue: Arc<dyn TaskQueue> = Arc::new(MemoryQueue::new());
    // NB: the paths do not exist here: only the URLs can be read.
    let task = |index: u64, url: &str| {
        Bytes::from(
            TaskMessage {
                url: Some(format!("{base}{url}")),
                timeout_ms: 60_000,
                ..TaskMessage::for_file("j", "uid", index, format!("/nowhere/{rel}"))
            }
            .encode(),
        )
    };
    // A page whose artefacts cannot be uploaded: its staging folder is not
    // here, and its upload URL refuses.
    let staged = Bytes::from(
        TaskMessage {
            url: Some(format!("{base}/page")),
            upload: Some(format!("{base}/upload-refused?sig=x")),
            staging: Some("/nowhere/.skep-staging/uid".to_owned()),
            artefacts: vec![skep_api::Artefact::Hocr],
            timeout_ms: 60_000,
            ..TaskMessage::for_file("j", "uid", 3, format!("/nowhere/{rel}"))
        }
        .encode(),
    );
    queue
        .publish(
            &task_topic("p"),
            vec![task(0, "/page"), task(1, "/expired"), task(2, "/gone"), staged],
        )
        .await
        .expect("publish");
    let fetch_dir = dir.path().join("fetched");
    let mut cfg = WorkerConfig::new("w1", "remote-node", "p", 1);
    cfg.fetch_dir = fetch_dir.clone();
    let stop = CancellationToken::new();
    let w = tokio::spawn(worker::run(queue.clone(), cfg, stop.clone()));
    let mut results = queue
        .subscribe(RESULTS_TOPIC, SubscribeOptions::new("t", 10, Duration::from_secs(60)))
        .await
        .expect("subscribe");
    let mut got = std::collections::BTreeMap::new();
    while got.len() < 4 {
        let d = tokio::time::timeout(Duration::from_secs(120), results.next())
            .await
            .expect("results keep coming")
            .expect("open");
        let r = ResultMessage::decode(&d.body).expect("decode");
        got.insert(r.index, r.outcome);
        d.ack().await.expect("ack");
    }
    stop.cancel();
    w.await.expect("worker");
    match &got[&0] {
        Outcome::Succeeded { text, .. } => {
            let e = cer(&load_truth(&truth, &rel).expect("truth"), text);
            assert!(e < 0.05, "CER {e}: {text}");
        }
        o => panic!("the page through its URL: {o:?}"),
    }
    match &got[&1] {
        Outcome::Failed { reason, error } => {
            assert_eq!(
                *reason,
                FailureReason::Unreadable,
                "a refused URL is retried with a fresh one"
            );
            assert!(error.contains("expired"), "{error}");
        }
        o => panic!("{o:?}"),
    }
    assert!(matches!(
        got[&2],
        Outcome::Failed {
            reason: FailureReason::NotFound,
            ..
        }
    ));
    match &got[&3] {
        Outcome::Failed { reason, error } => {
            assert_eq!(*reason, FailureReason::Unreadable, "{error}");
            assert!(error.contains("uploading the staged files"), "{error}");
            assert!(error.contains("expired"), "the server's reason is kept: {error}");
        }
        o => panic!("a refused upload fails the task: {o:?}"),
    }
    assert_eq!(
        files_in(&fetch_dir),
        0,
        "every fetched copy and local staging folder is removed"
    );
}
