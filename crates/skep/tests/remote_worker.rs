//! Black-box: a worker that cannot see the source or the output folder.
//! `skep controller` runs no worker of its own (`--workers 0`) and signs
//! URLs per task (`--file-url-base`); a real `skep-worker run` in its own
//! mount namespace, where the whole workspace is an empty tmpfs, reads
//! every file through the controller's `/files` endpoint and uploads the
//! artefacts it makes to `/files/staged`, over a real RabbitMQ.
//!
//! Needs `SKEP_TEST_AMQP_URL` (CI starts RabbitMQ) and root (for the mount
//! namespace); elsewhere it prints why it did not run, unless `CI=true`:
//! then it fails.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Workspace, results, text};
use skep_testkit::{cer, load_truth};

/// Kills a child process when dropped (a failed assertion leaves none).
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    // NB: /proc/self belongs to the process's effective user.
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// The worker binary, built beside `skep` by `cargo test --workspace`.
fn worker_bin() -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_skep")).with_file_name("skep-worker");
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build -p skep-worker` (the README's test command does)",
        bin.display()
    );
    bin
}

/// The body of `GET path` on the controller, once it answers 200 (a plain
/// HTTP/1.0 GET: no client to install).
fn get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = std::net::TcpStream::connect(("127.0.0.1", port)).and_then(|mut c| {
            c.set_read_timeout(Some(Duration::from_secs(10)))?;
            c.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())?;
            let mut text = String::new();
            c.read_to_string(&mut text)?;
            Ok(text)
        });
        if let Ok(text) = got
            && (text.starts_with("HTTP/1.0 200") || text.starts_with("HTTP/1.1 200"))
            && let Some((_, body)) = text.split_once("\r\n\r\n")
        {
            return body.to_owned();
        }
        assert!(Instant::now() < deadline, "the controller's {path} never answered 200");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn metrics(port: u16) -> String {
    get(port, "/metrics")
}

fn counter(metrics: &str, series: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{metrics}")) as u64
}

#[test]
fn a_worker_that_sees_no_folder_of_the_job_reads_and_stages_through_the_controller() {
    let Some(amqp) = skep_testkit::server_from_env(
        "SKEP_TEST_AMQP_URL",
        "scripts/rabbitmq-test-server.sh start DIR PORT prints its URL",
    ) else {
        return;
    };
    if !is_root() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI must run the remote worker test as root (it hides the folder in a mount namespace)"
        );
        println!("remote worker test did not run: it needs root for a mount namespace");
        return;
    }
    let ws = Workspace::new(6, None, true);
    let name = "remote";
    let pool = format!("remote-{}", std::process::id());
    let job = ws.job(
        name,
        &format!("  scaling:\n    pool: {pool}\n  output:\n    formats: [txt, hocr, pdf]\n"),
    );
    let key = ws.path().join("file-url.key");
    std::fs::write(&key, "a key shared by the controllers, 32 bytes or more\n").expect("key");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let log = std::fs::File::create(ws.path().join("controller.log")).expect("log");
    let _controller = Killed(
        ws.skep()
            .args([
                "controller",
                "--workers",
                "0",
                "--queue",
                &amqp,
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--file-url-base",
                &base,
                "--file-url-key-file",
                key.to_str().expect("utf-8"),
                "--allow-path",
                ws.path().to_str().expect("utf-8"),
                "--api-no-auth",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("controller starts"),
    );
    metrics(port);
    let out = ws.run(&["apply", "-f", job.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // NB: the worker's own mount namespace: the workspace (pages, output,
    // staging) is an empty tmpfs there, so files can only come through
    // their URLs and artefacts only go through the upload URLs.
    let hidden = ws.path().to_path_buf();
    let worker_log = std::fs::File::create(ws.path().join("worker.log")).expect("log");
    let fetch_dir = tempfile::tempdir().expect("fetch dir");
    let mut worker = Command::new("unshare");
    worker
        .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg(
            r#"mount -t tmpfs skep-hidden "$1" || exit 97
               [ -z "$(ls -A "$1")" ] || exit 98
               exec "$2" run --queue "$3" --pool "$4" --listen 127.0.0.1:0 --slots 2"#,
        )
        .args(["sh", hidden.to_str().expect("utf-8")])
        .arg(worker_bin())
        .args([&amqp, &pool])
        .env("SKEP_FILE_ACCESS", "auto")
        .env("SKEP_FETCH_DIR", fetch_dir.path())
        .env("SKEP_NODE", "remote-host")
        .stdout(Stdio::null())
        .stderr(worker_log);
    let _worker = Killed(worker.spawn().expect("unshare runs"));

    let out = ws.run(&["wait", name, "--timeout", "240"]);
    let logs = || {
        format!(
            "--- controller\n{}\n--- worker\n{}",
            std::fs::read_to_string(ws.path().join("controller.log")).unwrap_or_default(),
            std::fs::read_to_string(ws.path().join("worker.log")).unwrap_or_default()
        )
    };
    assert_eq!(out.status.code(), Some(0), "{}\n{}", text(&out), logs());

    // One result per file; every readable page read well, by the remote
    // worker; the bad files failed for their own reasons, not for access.
    let mut by_path = BTreeMap::new();
    for l in results(&ws.output(name)) {
        let p = l["path"].as_str().expect("path").to_owned();
        assert!(by_path.insert(p.clone(), l).is_none(), "{p} has two results");
    }
    assert_eq!(by_path.len(), ws.files.len(), "{}", logs());
    let mut readable = 0;
    for f in &ws.files {
        let r = &by_path[&f.rel_path];
        match &f.expect_failure {
            None => {
                assert_eq!(r["status"], "succeeded", "{}: {r}\n{}", f.rel_path, logs());
                let truth = load_truth(&ws.path().join("truth"), &f.rel_path).expect("truth");
                let e = cer(&truth, r["text"].as_str().expect("text"));
                assert!(e < 0.05, "{}: CER {e:.3}", f.rel_path);
                readable += 1;
            }
            Some(_) => {
                assert_eq!(r["status"], "failed", "{}: {r}", f.rel_path);
                assert!(
                    !["notFound", "unreadable"].contains(&r["reason"].as_str().unwrap_or_default()),
                    "{}: a bad file fails for its content, not for its access: {r}",
                    f.rel_path
                );
            }
        }
    }
    // The worker announced itself over the broker: the API lists it.
    let workers: serde_json::Value = serde_json::from_str(&get(port, "/api/workers")).expect("json");
    // NB: this test's pool only: other tests' workers beat on the same broker.
    let listed: Vec<&serde_json::Value> = workers["data"]
        .as_array()
        .expect("a list")
        .iter()
        .filter(|w| w["pool"] == serde_json::json!(pool))
        .collect();
    assert_eq!(listed.len(), 1, "{workers}");
    assert_eq!(
        (
            &listed[0]["node"],
            &listed[0]["pool"],
            &listed[0]["slots"],
            &listed[0]["stale"]
        ),
        (
            &serde_json::json!("remote-host"),
            &serde_json::json!(pool),
            &serde_json::json!(2),
            &serde_json::json!(false)
        ),
        "{workers}"
    );

    // The artefacts came back through the uploads and were landed.
    let out_dir = ws.output(name);
    for f in ws.files.iter().filter(|f| f.expect_failure.is_none()) {
        let hocr = std::fs::read_to_string(out_dir.join("hocr").join(format!("{}.hocr", f.rel_path)))
            .unwrap_or_else(|e| panic!("{}: no hOCR ({e})\n{}", f.rel_path, logs()));
        assert!(hocr.contains("ocr_page"), "{}: {hocr}", f.rel_path);
        let pdf = std::fs::read(out_dir.join("pdf").join(format!("{}.pdf", f.rel_path))).expect("a searchable PDF");
        assert!(pdf.starts_with(b"%PDF"), "{}", f.rel_path);
    }
    let described = ws.run(&["get", name, "-o", "json"]);
    let job: serde_json::Value = serde_json::from_slice(&described.stdout).expect("json");
    assert_eq!(job["status"]["nodesUsed"], serde_json::json!(["remote-host"]), "{job}");

    // Every file went through the file endpoint, none refused.
    let m = metrics(port);
    let served = counter(&m, "skep_files_served_total{result=\"ok\"}");
    assert!(
        served >= ws.files.len() as u64,
        "{served} files served for {} files\n{m}",
        ws.files.len()
    );
    assert_eq!(counter(&m, "skep_files_served_total{result=\"refused\"}"), 0, "{m}");
    assert!(counter(&m, "skep_file_bytes_served_total") > 0);
    let staged = counter(&m, "skep_staged_files_received_total{result=\"ok\"}");
    assert!(
        staged >= 2 * readable as u64,
        "{staged} staged files for {readable} pages\n{m}"
    );
    assert!(readable >= 6);
    assert_eq!(
        std::fs::read_dir(fetch_dir.path()).map(|d| d.count()).unwrap_or(0),
        0,
        "the worker left no fetched copy or local staging folder"
    );
    assert_eq!(
        std::fs::read_dir(out_dir.join(".skep-staging")).map_or(0, |d| d.count()),
        0,
        "no staging left once the job ended"
    );
}
