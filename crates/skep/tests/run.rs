//! Black-box: the `skep` binary on generated folders of known text.

mod common;

use std::collections::BTreeMap;

use common::{Workspace, results, text};
use skep_testkit::{cer, load_truth};

#[test]
fn run_reads_every_page_once_and_reports_failures() {
    let ws = Workspace::new(30, Some(3), true);
    let job = ws.job(
        "pages",
        "  scaling:\n    filesPerWorker: 10\n  fileTimeoutSeconds: 120\n",
    );
    let out = ws.run(&["run", "-f", job.to_str().expect("utf-8"), "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let final_job: serde_json::Value = serde_json::from_slice(&out.stdout).expect("-o json prints the job");
    let status = &final_job["status"];
    assert_eq!(status["phase"], "Succeeded");

    // 30 pages + a 3-page TIFF + 3 bad files.
    let expected_files = ws.files.len() as u64;
    assert_eq!(expected_files, 34);
    let files = &status["files"];
    let n = |k: &str| files[k].as_u64().expect("a count");
    assert_eq!(n("total"), expected_files);
    assert_eq!((n("succeeded"), n("failed")), (31, 3));
    assert_eq!((n("pending"), n("dispatched")), (0, 0));
    assert_eq!(n("succeeded") + n("failed"), n("total"), "counts add up");
    let conditions: BTreeMap<String, String> = status["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .map(|c| {
            (
                c["type"].as_str().unwrap_or("").to_owned(),
                c["status"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(conditions.get("Complete").map(String::as_str), Some("True"));
    assert_eq!(conditions.get("FilesFailed").map(String::as_str), Some("True"));

    // Exactly one result per file, for exactly the files of the corpus.
    let out_dir = ws.output("pages");
    let lines = results(&out_dir);
    let mut by_path: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    for l in lines {
        let p = l["path"].as_str().expect("path").to_owned();
        assert!(by_path.insert(p.clone(), l).is_none(), "{p} has two results");
    }
    let expected: Vec<&str> = ws.files.iter().map(|f| f.rel_path.as_str()).collect();
    assert_eq!(by_path.keys().map(String::as_str).collect::<Vec<_>>(), {
        let mut e = expected.clone();
        e.sort();
        e
    });

    let mut total_cer = 0.0;
    let mut read = 0;
    for f in &ws.files {
        let r = &by_path[&f.rel_path];
        match &f.expect_failure {
            Some(reason) => {
                assert_eq!(r["status"], "failed", "{}", f.rel_path);
                let want = match reason.as_str() {
                    "empty" => "empty",
                    "corrupt" => "corrupt",
                    _ => "unsupported",
                };
                assert_eq!(r["reason"], want, "{}: {r}", f.rel_path);
                assert!(
                    r["error"].as_str().is_some_and(|e| !e.is_empty()),
                    "{} has an error message",
                    f.rel_path
                );
            }
            None => {
                assert_eq!(r["status"], "succeeded", "{}: {r}", f.rel_path);
                let truth = load_truth(&ws.path().join("truth"), &f.rel_path).expect("truth");
                let got = r["text"].as_str().expect("text");
                let e = cer(&truth, got);
                assert!(e < 0.05, "{}: CER {e:.3}", f.rel_path);
                total_cer += e;
                read += 1;
                assert_eq!(r["pageCount"].as_u64(), Some(f.pages as u64), "{r}");
                let pages = r["pages"].as_array().expect("pages");
                assert_eq!(pages.len(), f.pages, "one entry per page: {r}");
                assert!(pages.iter().all(|p| p["source"] == "ocr"), "images are OCR'd: {r}");
                let txt = std::fs::read_to_string(out_dir.join("text").join(format!("{}.txt", f.rel_path)))
                    .expect("a .txt per succeeded file");
                assert_eq!(txt, got);
            }
        }
    }
    let mean = total_cer / f64::from(read);
    assert!(mean < 0.05, "mean CER {mean:.4}");

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("report.json")).expect("report.json"))
            .expect("report is JSON");
    assert_eq!(report["files"], 34);
    assert_eq!(report["pages"], 33, "30 pages and a 3-page TIFF");
    assert_eq!(report["failuresByReason"]["empty"], 1);
    assert_eq!(report["failuresByReason"]["corrupt"], 1);
    assert!(report["meanConfidence"].as_f64().expect("confidence") > 60.0);
    assert!(report["pagesPerSecond"].as_f64().expect("rate") > 0.0);

    // Running the same job again changes nothing and says so.
    let again = ws.run(&["run", "-f", job.to_str().expect("utf-8")]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already finished"),
        "{}",
        text(&again)
    );

    // The store answers get and describe.
    let get = ws.run(&["get"]);
    assert!(
        String::from_utf8_lossy(&get.stdout).contains("Succeeded"),
        "{}",
        text(&get)
    );
    let describe = ws.run(&["describe", "pages"]);
    let d = String::from_utf8_lossy(&describe.stdout);
    assert!(d.contains("34 total") && d.contains("FilesFailed"), "{d}");
}

#[test]
fn invalid_jobs_exit_2_and_store_nothing() {
    let ws = Workspace::new(1, None, false);
    let job = ws.job("bad", "  scaling:\n    minReplicas: 5\n    maxReplicas: 2\n");
    for verb in ["run", "apply"] {
        let out = ws.run(&[verb, "-f", job.to_str().expect("utf-8")]);
        assert_eq!(out.status.code(), Some(2), "{verb}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("spec.scaling.maxReplicas: must be >= minReplicas (5)"),
            "{verb}: {err}"
        );
    }
    let typo = ws.job("typo", "  scalling: {}\n");
    let out = ws.run(&["apply", "-f", typo.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unknown field `scalling`"),
        "{}",
        text(&out)
    );

    // No worker in this process and a queue no other process reaches.
    let good = ws.job("good", "");
    let out = ws.run(&["run", "-f", good.to_str().expect("utf-8"), "--workers", "0"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--workers 0 runs no worker in this process"),
        "{}",
        text(&out)
    );
    let out = ws.run(&["controller", "--workers", "0", "--allow-any-path"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("reaches no other"),
        "{}",
        text(&out)
    );
    // File URLs are served by the controller's HTTP server.
    let out = ws.run(&["controller", "--file-url-base", "http://ctl:8080", "--allow-any-path"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("needs --listen"),
        "{}",
        text(&out)
    );
    let out = ws.run(&[
        "controller",
        "--api-only",
        "--listen",
        "127.0.0.1:0",
        "--file-url-base",
        "http://ctl:8080",
        "--allow-any-path",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("same --file-url-key-file"),
        "{}",
        text(&out)
    );
    let short = ws.path().join("short.key");
    std::fs::write(&short, "too short").expect("key");
    let out = ws.run(&[
        "controller",
        "--file-url-key-file",
        short.to_str().expect("utf-8"),
        "--allow-any-path",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("at least 32"),
        "{}",
        text(&out)
    );
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("too short"),
        "the key is not echoed"
    );

    let list = ws.run(&["get", "-o", "json"]);
    assert_eq!(list.status.code(), Some(0), "{}", text(&list));
    let v: serde_json::Value = serde_json::from_slice(&list.stdout).expect("json");
    assert_eq!(v["items"], serde_json::json!([]), "nothing was stored");
}

#[test]
fn a_missing_source_folder_fails_the_job_clearly() {
    let ws = Workspace::new(1, None, false);
    let p = ws.path().join("nowhere.yaml");
    std::fs::write(
        &p,
        "apiVersion: skep.dev/v1\nkind: BulkJob\nmetadata: {name: nowhere}\nspec:\n  source: {path: no-such-folder}\n",
    )
    .expect("write");
    let out = ws.run(&["run", "-f", p.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("Failed") && stdout.contains("SourceNotFound") && stdout.contains("no-such-folder"),
        "{}",
        text(&out)
    );
}

#[test]
fn apply_get_delete_round_trip() {
    let ws = Workspace::new(1, None, false);
    let job = ws.job("later", "");
    let job = job.to_str().expect("utf-8");
    let out = ws.run(&["apply", "-f", job]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "bulkjob.skep.dev/later created",
        "{}",
        text(&out)
    );
    let out = ws.run(&["apply", "-f", job]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "bulkjob.skep.dev/later unchanged"
    );
    let out = ws.run(&["get", "later", "-o", "yaml"]);
    let y = String::from_utf8_lossy(&out.stdout);
    assert!(y.contains("name: later") && y.contains("generation: 1"), "{y}");
    let missing = ws.run(&["get", "nope"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("\"nope\" not found"),
        "{}",
        text(&missing)
    );
    // No controller has touched it, so it has no finalizer and goes at once.
    let out = ws.run(&["delete", "later"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "bulkjob.skep.dev/later deleted",
        "{}",
        text(&out)
    );
    let out = ws.run(&["get", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["items"], serde_json::json!([]));
}
