//! The `skep controller` binary under hostile load, as an attacker would
//! bring it: a thousand idle connections and hundreds of event streams that
//! are never read, with thousands of jobs in the store. `/livez` must keep
//! answering within a second, memory must stay bounded, and the controller
//! must keep its lease (it stays ready).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use skep::store::{SqliteStore, Store};
use skep_api::{BulkJob, BulkJobSpec};

const TOKEN: &str = "hostile-read-token-0001";

/// The resident memory of `pid`, in MiB.
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS");
    kb / 1024.0
}

/// `GET path` on a fresh connection; the status line and how long the
/// whole answer took.
fn get(addr: &str, path: &str) -> (String, Duration) {
    let started = Instant::now();
    let Ok(mut s) = TcpStream::connect(addr) else {
        return ("connection refused".to_owned(), started.elapsed());
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    write!(s, "GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").expect("write");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    (out.lines().next().unwrap_or("").to_owned(), started.elapsed())
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_and_unread_streams_leave_the_controller_answering() {
    let ws = common::Workspace::new(0, None, false);
    let db = ws.path().join("skep.db");
    {
        let store = SqliteStore::open(&db).await.expect("store");
        // Suspended jobs of an empty folder: in the store, reconciled, never
        // run; each is a line of every jobs event.
        let empty = ws.path().join("empty");
        std::fs::create_dir_all(&empty).expect("empty folder");
        for i in 0..2000 {
            let mut spec = BulkJobSpec::for_path(empty.to_str().expect("utf-8"));
            spec.suspend = true;
            store
                .apply_job(BulkJob::new(format!("job-{i:04}"), spec))
                .await
                .expect("apply");
        }
    }
    std::fs::write(ws.path().join("tokens"), format!("{TOKEN} read\n")).expect("tokens");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
        l.local_addr().expect("addr").port()
    };
    let addr = format!("127.0.0.1:{port}");
    let child = ws
        .skep()
        .args([
            "controller",
            "--listen",
            &addr,
            "--api-tokens-file",
            "tokens",
            "--workers",
            "1",
            "--allow-path",
            ws.path().to_str().expect("utf-8"),
            // NB: caps above the load, so that all 500 streams are held
            // (by default one token may hold 32, the server 256).
            "--api-max-streams",
            "600",
            "--api-max-streams-per-token",
            "600",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("controller");
    let controller = Killed(child);
    let pid = controller.0.id();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !get(&addr, "/readyz").0.contains("200") {
        assert!(Instant::now() < deadline, "the controller never became ready");
        std::thread::sleep(Duration::from_millis(200));
    }
    let rss_before = rss_mib(pid);

    // 1,000 connections that never send a byte.
    let mut idle = Vec::new();
    for _ in 0..1000 {
        idle.push(TcpStream::connect(&addr).expect("idle connection"));
    }
    // Event streams that are never read (as many as the server allows,
    // the rest refused): each asks, then stops reading.
    let mut streams = Vec::new();
    let mut refused = 0;
    for _ in 0..500 {
        let mut s = TcpStream::connect(&addr).expect("stream connection");
        write!(
            s,
            "GET /api/events HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\n\r\n"
        )
        .expect("ask");
        streams.push(s);
    }
    // Let the events pile up against the unread sockets.
    std::thread::sleep(Duration::from_secs(8));

    let mut worst = Duration::ZERO;
    for _ in 0..10 {
        let (status, took) = get(&addr, "/livez");
        assert!(status.contains("200"), "/livez answered {status:?}");
        worst = worst.max(took);
        std::thread::sleep(Duration::from_millis(300));
    }
    let (ready, _) = get(&addr, "/readyz");
    let rss = rss_mib(pid);
    // How many streams the server refused (429) or still holds.
    for s in &mut streams {
        s.set_read_timeout(Some(Duration::from_millis(50))).expect("timeout");
        let mut head = [0u8; 12];
        if s.read(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 429") {
            refused += 1;
        }
    }
    eprintln!(
        "hostile load: /livez worst {worst:?}, RSS {rss_before:.0} -> {rss:.0} MiB, {refused} of 500 streams refused, /readyz {ready:?}"
    );
    assert!(worst < Duration::from_secs(1), "/livez took {worst:?}");
    assert!(rss < 200.0, "RSS {rss:.0} MiB under load");
    assert!(ready.contains("200"), "the controller still leads: {ready:?}");
    assert_eq!(refused, 0, "every stream was held");
    assert!(
        std::process::Command::new("kill")
            .args(["-0", &pid.to_string()])
            .status()
            .expect("kill -0")
            .success(),
        "the controller is alive"
    );
    drop(idle);
    drop(streams);
}
