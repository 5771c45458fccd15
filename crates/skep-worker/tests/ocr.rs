//! The engine, the slot and the worker loop against real Tesseract, on
//! generated pages of known text.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use skep_api::{FailureReason, Outcome, RESULTS_TOPIC, ResultMessage, TaskMessage, task_topic};
use skep_queue::{MemoryQueue, SubscribeOptions, TaskQueue};
use skep_testkit::{CorpusOptions, GeneratedFile, ImageFormat, PageSize, cer, generate_corpus, load_truth};
use skep_worker::document::{ReadOutput, ReadRequest};
use skep_worker::{DEFAULT_MAX_FILE_BYTES, Engine, EngineConfig, OcrSlot, WorkerConfig, WorkerObserver, worker};
use tokio_util::sync::CancellationToken;

struct Corpus {
    _dir: tempfile::TempDir,
    pages: PathBuf,
    truth: PathBuf,
    files: Vec<GeneratedFile>,
}

fn corpus(pages: usize, formats: Vec<ImageFormat>, multipage: Option<usize>, bad: bool) -> Corpus {
    let dir = tempfile::tempdir().expect("tempdir");
    let (p, t) = (dir.path().join("pages"), dir.path().join("truth"));
    let opts = CorpusOptions {
        pages,
        seed: 7,
        size: PageSize::Small,
        formats,
        multipage_tiff: multipage,
        bad_files: bad,
    };
    let files = generate_corpus(&p, &t, &opts).expect("generate");
    Corpus {
        _dir: dir,
        pages: p,
        truth: t,
        files,
    }
}

fn assert_reads_well(c: &Corpus, rel: &str, text: &str) {
    let truth = load_truth(&c.truth, rel).expect("truth");
    let e = cer(&truth, text);
    assert!(e < 0.05, "{rel}: CER {e:.3}\n--- truth\n{truth}\n--- ocr\n{text}");
}

#[test]
fn every_format_reads_with_low_error() {
    let c = corpus(
        4,
        vec![ImageFormat::Png, ImageFormat::Jpeg, ImageFormat::Bmp, ImageFormat::Tiff],
        Some(3),
        false,
    );
    let mut engine = Engine::new("eng").expect("engine");
    let cfg = EngineConfig::default();
    for f in &c.files {
        let r = engine
            .recognize_file(&c.pages.join(&f.rel_path), &cfg, DEFAULT_MAX_FILE_BYTES)
            .unwrap_or_else(|e| panic!("{}: {e}", f.rel_path));
        assert_eq!(r.pages as usize, f.pages, "{}", f.rel_path);
        assert!(r.words > 50, "{}: {} words", f.rel_path, r.words);
        assert!(r.confidence > 60.0, "{}: confidence {}", f.rel_path, r.confidence);
        assert_reads_well(&c, &f.rel_path, &r.text);
    }
    assert!(c.files.iter().any(|f| f.pages == 3), "the corpus has a 3-page TIFF");
}

#[test]
fn gif_and_webp_read_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lines = skep_testkit::page_text(3, PageSize::Small);
    let page = image::DynamicImage::ImageLuma8(skep_testkit::render_page(&lines, PageSize::Small, 3));
    let truth = lines.join("\n");
    let mut engine = Engine::new("eng").expect("engine");
    for (ext, format) in [("gif", image::ImageFormat::Gif), ("webp", image::ImageFormat::WebP)] {
        let path = dir.path().join(format!("page.{ext}"));
        image::DynamicImage::ImageRgba8(page.to_rgba8())
            .save_with_format(&path, format)
            .expect("encode");
        let r = engine
            .recognize_file(&path, &EngineConfig::default(), DEFAULT_MAX_FILE_BYTES)
            .unwrap_or_else(|e| panic!("{ext}: {e}"));
        let e = cer(&truth, &r.text);
        assert!(e < 0.05, "{ext}: CER {e:.3}");
    }
}

#[test]
fn bad_files_fail_with_their_reason() {
    let c = corpus(1, vec![ImageFormat::Png], None, true);
    let mut engine = Engine::new("eng").expect("engine");
    let cfg = EngineConfig::default();
    let mut reason = |p: &Path| {
        engine
            .recognize_file(p, &cfg, DEFAULT_MAX_FILE_BYTES)
            .expect_err("must fail")
            .reason
    };
    assert_eq!(reason(&c.pages.join("bad/empty.png")), FailureReason::Empty);
    assert_eq!(reason(&c.pages.join("bad/corrupt.png")), FailureReason::Corrupt);
    assert_eq!(reason(&c.pages.join("bad/fake.jpg")), FailureReason::Unsupported);
    assert_eq!(reason(&c.pages.join("missing.png")), FailureReason::NotFound);
    assert_eq!(reason(&c.pages), FailureReason::Unsupported, "a folder");
    let big = c.pages.join("page-0001.png");
    let err = engine.recognize_file(&big, &cfg, 10).expect_err("too large");
    assert_eq!(err.reason, FailureReason::TooLarge);
    // The engine is still good after all that.
    let ok = engine
        .recognize_file(&big, &cfg, DEFAULT_MAX_FILE_BYTES)
        .expect("reads");
    assert_reads_well(&c, "page-0001.png", &ok.text);
}

#[test]
fn a_missing_language_is_an_engine_error() {
    let err = Engine::new("xx_nolang").expect_err("no traineddata");
    assert_eq!(err.reason, FailureReason::Engine);
    assert!(err.message.contains("xx_nolang"), "{err}");
}

#[tokio::test]
async fn slot_times_out_then_recovers() {
    let c = corpus(1, vec![ImageFormat::Png], None, false);
    let path = c.pages.join("page-0001.png");
    let mut slot = OcrSlot::new("t");
    let request = ReadRequest::whole_file(&path, EngineConfig::default(), DEFAULT_MAX_FILE_BYTES);
    let err = slot
        .read(request.clone(), Duration::from_millis(20))
        .await
        .expect_err("20 ms is too short for a page");
    assert_eq!(err.reason, FailureReason::Timeout);
    let ok = slot
        .read(request, Duration::from_secs(60))
        .await
        .expect("the next file works on a fresh thread");
    let ReadOutput::Read(ok) = ok else {
        panic!("a one-page file is not split: {ok:?}")
    };
    assert_reads_well(&c, "page-0001.png", &ok.text);
    assert!(slot.abandoned() <= skep_worker::MAX_ABANDONED);
}

fn task(path: &Path, index: u64, max_attempts: u32) -> Bytes {
    Bytes::from(
        TaskMessage {
            max_attempts,
            timeout_ms: 60_000,
            ..TaskMessage::for_file("j", "uid", index, path.to_string_lossy())
        }
        .encode(),
    )
}

#[tokio::test]
async fn worker_answers_every_task_once_and_drains_on_shutdown() {
    let c = corpus(4, vec![ImageFormat::Png, ImageFormat::Jpeg], None, true);
    let q = MemoryQueue::new();
    let queue: Arc<dyn TaskQueue> = Arc::new(q.clone());
    let mut paths: Vec<String> = c.files.iter().map(|f| f.rel_path.clone()).collect();
    paths.sort();
    let msgs = paths
        .iter()
        .enumerate()
        .map(|(i, p)| task(&c.pages.join(p), i as u64, 3))
        .collect();
    queue.publish(&task_topic("p"), msgs).await.expect("publish");
    // A task whose deliveries already ran out (maxAttempts 0): answered without OCR.
    queue
        .publish(&task_topic("p"), vec![task(&c.pages.join(&paths[0]), 99, 0)])
        .await
        .expect("publish");

    let stop = CancellationToken::new();
    let w = tokio::spawn(worker::run(
        queue.clone(),
        WorkerConfig::new("w1", "node-a", "p", 2),
        stop.clone(),
    ));
    let mut results = queue
        .subscribe(RESULTS_TOPIC, SubscribeOptions::new("t", 100, Duration::from_secs(60)))
        .await
        .expect("subscribe");
    let mut got = std::collections::BTreeMap::new();
    while got.len() < paths.len() + 1 {
        let d = tokio::time::timeout(Duration::from_secs(120), results.next())
            .await
            .expect("results keep coming")
            .expect("open");
        let r = ResultMessage::decode(&d.body).expect("decode");
        assert!(got.insert(r.index, r).is_none(), "one result per task");
        d.ack().await.expect("ack");
    }
    stop.cancel();
    let report = tokio::time::timeout(Duration::from_secs(60), w)
        .await
        .expect("stops")
        .expect("joins");
    assert_eq!(report.handed_back, 0);
    assert_eq!(report.succeeded + report.failed, paths.len() as u64 + 1);

    for (i, rel) in paths.iter().enumerate() {
        let r = &got[&(i as u64)];
        assert_eq!(r.worker.node, "node-a");
        match (&r.outcome, rel.starts_with("bad/")) {
            (Outcome::Succeeded { text, .. }, false) => assert_reads_well(&c, rel, text),
            (Outcome::Failed { .. }, true) => {}
            (o, _) => panic!("{rel}: unexpected {o:?}"),
        }
    }
    assert!(matches!(
        got[&99].outcome,
        Outcome::Failed {
            reason: FailureReason::AttemptsExceeded,
            ..
        }
    ));
    let depth = queue.depth(&task_topic("p")).await.expect("depth");
    assert_eq!(depth.total(), 0, "every task settled");
    let dead = queue
        .depth(&skep_queue::dead_letter_topic(&task_topic("p")))
        .await
        .expect("depth");
    assert_eq!(dead.ready, 1, "the exhausted task went to the dead-letter topic");
}

/// Counts what the worker loop tells its observer.
#[derive(Debug, Default)]
struct Counting {
    subscribed: AtomicU64,
    started: AtomicU64,
    ended: AtomicU64,
    published: AtomicU64,
}

impl WorkerObserver for Counting {
    fn subscribed(&self) {
        self.subscribed.fetch_add(1, Ordering::SeqCst);
    }
    fn task_started(&self) {
        self.started.fetch_add(1, Ordering::SeqCst);
    }
    fn task_ended(&self) {
        self.ended.fetch_add(1, Ordering::SeqCst);
    }
    fn result_published(&self, _result: &ResultMessage) {
        self.published.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_observer_sees_every_task_end_even_one_handed_back() {
    let c = corpus(2, vec![ImageFormat::Png], None, false);
    let queue: Arc<dyn TaskQueue> = Arc::new(MemoryQueue::new());
    let msgs = c
        .files
        .iter()
        .enumerate()
        .map(|(i, f)| task(&c.pages.join(&f.rel_path), i as u64, 3))
        .collect();
    queue.publish(&task_topic("obs"), msgs).await.expect("publish");
    let seen = Arc::new(Counting::default());
    let mut cfg = WorkerConfig::new("w-obs", "node-a", "obs", 1);
    cfg.stop_grace = Duration::ZERO;
    cfg.observer = seen.clone();
    let stop = CancellationToken::new();
    let w = tokio::spawn(worker::run(queue.clone(), cfg, stop.clone()));
    tokio::time::timeout(Duration::from_secs(30), async {
        while seen.started.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("a task starts");
    stop.cancel();
    let report = tokio::time::timeout(Duration::from_secs(30), w)
        .await
        .expect("stops")
        .expect("joins");
    assert_eq!(report.handed_back, 1, "{report:?}");
    assert_eq!(seen.subscribed.load(Ordering::SeqCst), 1);
    let started = seen.started.load(Ordering::SeqCst);
    assert_eq!(
        seen.ended.load(Ordering::SeqCst),
        started,
        "in flight must come back to 0"
    );
    assert_eq!(seen.published.load(Ordering::SeqCst), report.succeeded + report.failed);
}

/// A task of wire version 1 (from a controller older than this worker) is
/// not guessed at: its file is failed with `badMessage`, saying what to
/// upgrade, and the task is settled.
#[tokio::test]
async fn a_task_of_another_wire_version_is_failed_with_a_clear_error() {
    let queue: Arc<dyn TaskQueue> = Arc::new(MemoryQueue::new());
    let v1 = br#"{"v":1,"job":"old","jobUid":"uid-1","index":4,"path":"/nowhere/a.png","attempt":2,"maxAttempts":3,"timeoutMs":1000,"languages":["eng"],"pageSegMode":6,"dpi":300}"#;
    queue
        .publish(&task_topic("ver"), vec![bytes::Bytes::from_static(v1)])
        .await
        .expect("publish");
    let stop = CancellationToken::new();
    let w = tokio::spawn(worker::run(
        queue.clone(),
        WorkerConfig::new("w-v", "node-a", "ver", 1),
        stop.clone(),
    ));
    let mut results = queue
        .subscribe(RESULTS_TOPIC, SubscribeOptions::new("t", 10, Duration::from_secs(60)))
        .await
        .expect("subscribe");
    let d = tokio::time::timeout(Duration::from_secs(30), results.next())
        .await
        .expect("a result")
        .expect("open");
    let r = ResultMessage::decode(&d.body).expect("a result of this version");
    assert_eq!((r.job_uid.as_str(), r.index, r.attempt), ("uid-1", 4, 2));
    match &r.outcome {
        Outcome::Failed { reason, error } => {
            assert_eq!(*reason, FailureReason::BadMessage);
            assert!(error.contains("version 1") && error.contains("upgrade"), "{error}");
        }
        o => panic!("{o:?}"),
    }
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(30), w)
        .await
        .expect("stops")
        .expect("joins");
    assert_eq!(
        queue.depth(&task_topic("ver")).await.expect("depth").total(),
        0,
        "settled"
    );
}
