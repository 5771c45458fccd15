//! The HTTP server's limits against misbehaving clients, over raw TCP and
//! real HTTP to an in-process server with small limits: made-up methods,
//! slow headers, idle connections, a connection flood, a dripped body,
//! event streams over their caps.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::api::{ADMIN_TOKEN, ApiServer, READ_TOKEN};
use skep::http::{Docker, Limits};
use skep::store::{SqliteStore, Store};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

async fn server(limits: Limits) -> (tempfile::TempDir, ApiServer) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("skep.db")).await.expect("store"));
    let api = ApiServer::start_limited(store, Docker::from_env(), limits).await;
    (dir, api)
}

fn small() -> Limits {
    Limits {
        max_connections: 20,
        header_timeout: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(2),
        max_streams: 6,
        max_streams_per_token: 3,
    }
}

async fn connect(api: &ApiServer) -> TcpStream {
    TcpStream::connect(api.base.trim_start_matches("http://"))
        .await
        .expect("connect")
}

/// Reads until the server closes the connection (or `within` passes);
/// what was read and how long it took.
async fn read_to_close(s: &mut TcpStream, within: Duration) -> (String, Option<Duration>) {
    let start = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(start + within, s.read(&mut buf)).await {
            Err(_) => return (String::from_utf8_lossy(&out).into_owned(), None),
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&out).into_owned(), Some(start.elapsed())),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// The value of one series in the Prometheus text (panics when absent).
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no {series} in {text}"))
}

async fn metrics_text(api: &ApiServer) -> String {
    reqwest::get(api.url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

#[tokio::test]
async fn made_up_methods_share_one_label() {
    let (_d, api) = server(Limits::default()).await;
    // Warm the label set with a normal request first.
    assert_eq!(api.get("/api/jobs").await.status, 200);
    let before = metrics_text(&api).await.len();
    for i in 0..300 {
        let method = format!("X{}{}", i, "Q".repeat(2000));
        let mut s = connect(&api).await;
        s.write_all(format!("{method} /livez HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes())
            .await
            .expect("write");
        let (answer, closed) = read_to_close(&mut s, Duration::from_secs(10)).await;
        assert!(closed.is_some(), "the server answers and closes");
        assert!(
            answer.starts_with("HTTP/1.1 405"),
            "{}",
            answer.lines().next().unwrap_or("")
        );
    }
    let text = metrics_text(&api).await;
    assert!(
        text.contains(r#"skep_http_requests_total{method="other",route="/livez",status="405"} 300"#),
        "{text}"
    );
    assert!(!text.contains("QQQQ"), "no made-up method is a label");
    assert!(
        text.len() < before + 4096,
        "/metrics grew from {before} to {} bytes",
        text.len()
    );
}

#[tokio::test]
async fn a_slow_header_client_is_cut_off() {
    let (_d, api) = server(small()).await;
    let mut s = connect(&api).await;
    s.write_all(b"GET /livez HTTP/1.1\r\n").await.expect("write");
    let start = Instant::now();
    // One header byte a second: always active, never done.
    let drip = async {
        loop {
            tokio::time::sleep(Duration::from_millis(700)).await;
            if s.write_all(b"x").await.is_err() {
                return start.elapsed();
            }
            let mut b = [0u8; 64];
            if let Ok(Ok(0)) = tokio::time::timeout(Duration::from_millis(10), s.read(&mut b)).await {
                return start.elapsed();
            }
        }
    };
    let took = tokio::time::timeout(Duration::from_secs(15), drip)
        .await
        .expect("the server never closed the slow-header connection");
    assert!(
        took >= Duration::from_secs(1),
        "closed too soon ({took:?}) for a 2 s header timeout"
    );
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed() {
    // NB: a header timeout longer than the idle one, so that the idle
    // watch, not hyper's wait for the next request's headers, closes it.
    let (_d, api) = server(Limits {
        header_timeout: Duration::from_secs(10),
        ..small()
    })
    .await;
    let mut s = connect(&api).await;
    s.write_all(b"GET /livez HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 1024];
    let n = s.read(&mut buf).await.expect("answer");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // Keep-alive: the connection stays open for another request, then goes
    // once nothing moves for the idle timeout.
    let (_, closed) = read_to_close(&mut s, Duration::from_secs(10)).await;
    let closed = closed.expect("an idle keep-alive connection is closed");
    assert!(closed >= Duration::from_secs(1), "closed after {closed:?}");
    let text = metrics_text(&api).await;
    assert!(
        sample(&text, r#"skep_http_connections_closed_total{reason="idle"}"#) >= 1.0,
        "{text}"
    );
}

#[tokio::test]
async fn connections_over_the_cap_are_closed_at_once_and_the_server_recovers() {
    let (_d, api) = server(Limits {
        header_timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(30),
        ..small()
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(connect(&api).await);
    }
    // Let the server accept them all.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut over = connect(&api).await;
    let _ = over.write_all(b"GET /livez HTTP/1.1\r\nhost: x\r\n\r\n").await;
    let (answer, closed) = read_to_close(&mut over, Duration::from_secs(5)).await;
    assert!(closed.is_some() && answer.is_empty(), "refused: {answer:?}");
    let text = metrics_text_when_free(&api, &mut held).await;
    assert!(
        sample(&text, r#"skep_http_connections_closed_total{reason="refused"}"#) >= 1.0,
        "{text}"
    );
}

/// Frees the held connections, then reads `/metrics` (the server answers
/// again once they are gone).
async fn metrics_text_when_free(api: &ApiServer, held: &mut Vec<TcpStream>) -> String {
    held.clear();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(Ok(r)) = tokio::time::timeout(Duration::from_secs(1), reqwest::get(api.url("/metrics"))).await {
            return r.text().await.expect("text");
        }
        assert!(Instant::now() < deadline, "the server did not recover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_dripped_body_times_out_with_408() {
    let (_d, api) = server(small()).await;
    let mut s = connect(&api).await;
    let head = format!(
        "POST /api/jobs HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {ADMIN_TOKEN}\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n{{"
    );
    s.write_all(head.as_bytes()).await.expect("write");
    let start = Instant::now();
    let mut answer = Vec::new();
    let mut buf = [0u8; 2048];
    while start.elapsed() < Duration::from_secs(10) {
        // Half a second per byte: never idle, never done.
        let _ = s.write_all(b" ").await;
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(500), s.read(&mut buf)).await {
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buf[..n]);
            if answer.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 408"),
        "{answer:?} after {:?}",
        start.elapsed()
    );
}

/// Opens `GET path` as an event stream with `token`; the status.
async fn open_stream(api: &ApiServer, path: &str, token: &str) -> (u16, Option<reqwest::Response>) {
    let r = api
        .client
        .get(api.url(path))
        .bearer_auth(token)
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    (status, (status == 200).then_some(r))
}

#[tokio::test]
async fn event_streams_are_capped_per_token_and_in_all() {
    let (_d, api) = server(Limits {
        idle_timeout: Duration::from_secs(30),
        ..small()
    })
    .await;
    let mut open = Vec::new();
    for _ in 0..3 {
        let (status, r) = open_stream(&api, "/api/events", READ_TOKEN).await;
        assert_eq!(status, 200);
        open.push(r);
    }
    let over = api.get("/api/events").await;
    assert_eq!(over.status, 429, "{over:?}");
    assert!(over.error().contains("per token"), "{over:?}");
    // Another token has its own share, up to the global cap (6).
    for _ in 0..3 {
        let (status, r) = open_stream(&api, "/api/events", ADMIN_TOKEN).await;
        assert_eq!(status, 200);
        open.push(r);
    }
    let (status, _) = open_stream(&api, "/api/events", ADMIN_TOKEN).await;
    assert_eq!(status, 429);
    // A closed stream gives its place back.
    open.truncate(2);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, r) = open_stream(&api, "/api/events", READ_TOKEN).await;
        if status == 200 {
            drop(r);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the closed streams never gave their places back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn every_stream_gets_the_jobs_from_the_shared_feed() {
    let (_d, api) = server(Limits {
        idle_timeout: Duration::from_secs(30),
        max_connections: 100,
        max_streams: 40,
        max_streams_per_token: 40,
        ..small()
    })
    .await;
    let job = serde_json::json!({
        "apiVersion": "skep.dev/v1", "kind": "BulkJob",
        "metadata": {"name": "shared"},
        "spec": {"source": {"path": "/nonexistent/for-events"}, "suspend": true},
    });
    assert_eq!(api.admin("POST", "/api/jobs", Some(job)).await.status, 201);
    let mut streams = Vec::new();
    for _ in 0..30 {
        let (status, r) = open_stream(&api, "/api/events", READ_TOKEN).await;
        assert_eq!(status, 200);
        streams.push(r.expect("stream"));
    }
    // Every stream gets the job.
    for r in &mut streams {
        let mut seen = String::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !seen.contains("\"shared\"") {
            let chunk = tokio::time::timeout_at(deadline, r.chunk())
                .await
                .expect("a jobs event in time")
                .expect("chunk")
                .expect("more");
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

#[tokio::test]
async fn deep_nesting_is_refused_before_parsing() {
    let (_d, api) = server(Limits::default()).await;
    let deep = format!("{}1{}", "{\"a\":".repeat(100_000), "}".repeat(100_000));
    let bodies = [
        ("POST", "/api/jobs", "application/json"),
        ("POST", "/api/jobs", "application/yaml"),
        ("POST", "/api/swarm/services/nope/scale", "application/json"),
        ("PUT", "/api/swarm/stacks/nope", "application/yaml"),
    ];
    for (method, path, ct) in bodies {
        let a = api
            .call(method, path, Some(ADMIN_TOKEN), Some((ct, deep.clone())))
            .await;
        assert_eq!(a.status, 400, "{method} {path}: {a:?}");
        assert!(
            a.error().contains("nests deeper than 64 levels"),
            "{method} {path}: {a:?}"
        );
    }
}

#[tokio::test]
async fn a_new_connection_counts_as_active_from_its_accept() {
    let (_d, api) = server(Limits {
        header_timeout: Duration::from_secs(10),
        ..small()
    })
    .await;
    // The server has been up longer than the idle timeout (2 s) ...
    tokio::time::sleep(Duration::from_secs(3)).await;
    for _ in 0..3 {
        let mut s = connect(&api).await;
        // ... and the client takes a moment before its first byte.
        tokio::time::sleep(Duration::from_millis(1200)).await;
        s.write_all(b"GET /livez HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .expect("write");
        let (answer, _) = read_to_close(&mut s, Duration::from_secs(5)).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    }
}
