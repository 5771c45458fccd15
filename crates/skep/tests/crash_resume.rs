//! Crash safety: `skep run` killed with SIGKILL mid-job and run again on
//! the same store resumes; no file is lost and none that was finished
//! before the kill is processed again.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use common::{Workspace, results, text};
use skep::store::{SqliteStore, Store, TaskState};

/// Finished tasks: index -> (worker, finished time), from the store.
async fn finished(store: &SqliteStore, uid: &str) -> BTreeMap<u64, (String, i64)> {
    let mut out = BTreeMap::new();
    let mut after = None;
    loop {
        let page = store.list_tasks(uid, after, 500).await.expect("list");
        let Some(last) = page.last() else { break };
        after = Some(last.index);
        for t in page {
            if t.state == TaskState::Succeeded {
                let r = t.result.expect("a result");
                out.insert(t.index, (r.worker.unwrap_or_default(), r.finished_ms));
            }
        }
    }
    out
}

async fn open(path: &Path) -> SqliteStore {
    SqliteStore::open(path).await.expect("open store")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_job_then_rerun_resumes_without_loss_or_rework() {
    let ws = Workspace::new(40, None, false);
    let job = ws.job("crashy", "  scaling:\n    filesPerWorker: 10\n");
    let job = job.to_str().expect("utf-8").to_owned();
    let db = ws.path().join("skep.db");

    let mut child = ws.skep().args(["run", "-f", &job, "--quiet"]).spawn().expect("spawn");
    let store = open(&db).await;
    let deadline = Instant::now() + Duration::from_secs(180);
    let (uid, before) = loop {
        assert!(Instant::now() < deadline, "no progress before the kill");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let Some(j) = store.get_job("crashy").await.expect("get") else {
            continue;
        };
        let done = finished(&store, j.uid()).await;
        if done.len() >= 8 {
            break (j.uid().to_owned(), done);
        }
    };
    child.kill().expect("SIGKILL");
    let killed = child.wait().expect("reaped");
    assert!(!killed.success(), "the first run was killed, not finished: {killed:?}");
    let counts = store.task_counts(&uid).await.expect("counts").files;
    assert!(counts.finished() < counts.total, "killed mid-job: {counts:?}");

    let out = ws
        .skep()
        .args(["run", "-f", &job, "-o", "json"])
        .output()
        .expect("second run");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["metadata"]["uid"], uid.as_str(), "the same job resumed");
    assert_eq!(v["status"]["phase"], "Succeeded");
    assert_eq!(v["status"]["files"]["succeeded"], 40);

    let after = finished(&store, &uid).await;
    assert_eq!(after.len(), 40, "every file has its result");
    for (index, was) in &before {
        assert_eq!(
            after.get(index),
            Some(was),
            "file {index} finished before the kill and was processed again"
        );
    }
    let lines = results(&ws.output("crashy"));
    let paths: BTreeSet<String> = lines
        .iter()
        .map(|l| l["path"].as_str().expect("path").to_owned())
        .collect();
    assert_eq!((lines.len(), paths.len()), (40, 40), "one line per file");
}

/// Every file a worker read, by index, from `skep run`'s debug log (one
/// `read` line per file read to the end).
fn reads_in_log(log: &str) -> Vec<u64> {
    let mut plain = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // An ANSI colour: up to its final `m`.
            for d in chars.by_ref() {
                if d == 'm' {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
        .lines()
        .filter(|l| l.contains("skep_worker::worker") && l.contains(" read "))
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("index="))
                .and_then(|n| n.parse().ok())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_mid_job_then_rerun_reads_no_file_twice() {
    let ws = Workspace::new(40, None, false);
    let job = ws.job("stopped", "  scaling:\n    filesPerWorker: 10\n");
    let job = job.to_str().expect("utf-8").to_owned();
    let db = ws.path().join("skep.db");
    let log_of = |name: &str| {
        let path = ws.path().join(name);
        (std::fs::File::create(&path).expect("log file"), path)
    };

    let (log1, log1_path) = log_of("run1.log");
    let mut child = ws
        .skep()
        .args(["run", "-f", &job, "--quiet", "--workers", "2"])
        .env("SKEP_LOG", "warn,skep_worker::worker=debug")
        .stderr(log1)
        .spawn()
        .expect("spawn");
    let store = open(&db).await;
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        assert!(Instant::now() < deadline, "no progress before Ctrl-C");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let Some(j) = store.get_job("stopped").await.expect("get") else {
            continue;
        };
        if finished(&store, j.uid()).await.len() >= 8 {
            break;
        }
    }
    let sent = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(sent.success());
    let first = child.wait().expect("reaped");
    assert_eq!(first.code(), Some(130), "Ctrl-C exits 130");

    let (log2, log2_path) = log_of("run2.log");
    let second = ws
        .skep()
        .args(["run", "-f", &job, "--quiet", "--workers", "2"])
        .env("SKEP_LOG", "warn,skep_worker::worker=debug")
        .stderr(log2)
        .status()
        .expect("second run");
    assert_eq!(second.code(), Some(0));

    let mut reads = reads_in_log(&std::fs::read_to_string(&log1_path).expect("log 1"));
    let in_first = reads.len();
    reads.extend(reads_in_log(&std::fs::read_to_string(&log2_path).expect("log 2")));
    assert!(in_first >= 8, "the first run read files before Ctrl-C: {in_first}");
    let mut once = reads.clone();
    once.sort_unstable();
    once.dedup();
    assert_eq!(
        (reads.len(), once.len()),
        (40, 40),
        "every file read exactly once over both runs (first run read {in_first})"
    );
    let lines = results(&ws.output("stopped"));
    assert_eq!(lines.len(), 40, "one line per file");
}
