//! Black-box: `skep run` with its tasks and results through a real nsqd,
//! named directly (`nsq://`) and found through nsqlookupd
//! (`nsqlookup://`). Runs where `SKEP_TEST_NSQD` (and, for discovery,
//! `SKEP_TEST_NSQLOOKUPD`) name the servers, as the NSQ suite of
//! `skep-queue` does; elsewhere each test prints one line saying it did
//! not run.

mod common;

use std::collections::BTreeSet;

use common::{Workspace, results, text};

/// Two `skep run`s on one nsqd share its topics (one installation per
/// broker, as the README says): the tests take turns.
static NSQD: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn server(var: &str) -> Option<String> {
    let v = std::env::var(var).ok().filter(|s| !s.trim().is_empty());
    if v.is_none() {
        println!("NSQ run test did not run: {var} is not set");
    }
    v
}

/// Runs a 12-page job through `queue` with two local workers; every file
/// has exactly one result and the job succeeded.
fn run_through(queue: &str, name: &str) {
    let _turn = NSQD.lock().unwrap_or_else(|p| p.into_inner());
    let ws = Workspace::new(12, None, false);
    let job = ws.job(name, "  scaling:\n    filesPerWorker: 6\n");
    let out = ws.run(&[
        "run",
        "-f",
        job.to_str().expect("utf-8"),
        "--queue",
        queue,
        "--workers",
        "2",
        "-o",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let final_job: serde_json::Value = serde_json::from_slice(&out.stdout).expect("-o json prints the job");
    assert_eq!(final_job["status"]["phase"], "Succeeded", "{}", text(&out));
    assert_eq!(final_job["status"]["files"]["succeeded"], 12);
    let lines = results(&ws.output(name));
    let paths: BTreeSet<&str> = lines.iter().filter_map(|l| l["path"].as_str()).collect();
    assert_eq!(lines.len(), 12, "one result per file");
    assert_eq!(paths.len(), 12, "no file twice");
    assert!(lines.iter().all(|l| l["status"] == "succeeded"));
}

#[test]
fn skep_run_through_an_nsqd() {
    let Some(nsqd) = server("SKEP_TEST_NSQD") else { return };
    run_through(&format!("nsq://{nsqd}"), "nsq-direct");
}

#[test]
fn skep_run_through_nsqlookupd_discovery() {
    let Some(lookupd) = server("SKEP_TEST_NSQLOOKUPD") else {
        return;
    };
    run_through(&format!("nsqlookup://{lookupd}"), "nsq-lookup");
}
