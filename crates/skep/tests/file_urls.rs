//! The file endpoint (`GET /files?…`): a URL the controller signed opens
//! its one file, whole or by range, with no API token, until it expires;
//! anything else is refused, and a signed path is still held to the
//! allowed folders and to the job's symlink rule.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::api::ApiServer;
use skep::files::{FileKey, FileUrls};
use skep::paths::PathPolicy;
use skep::store::{SqliteStore, Store};

struct Setup {
    _root: tempfile::TempDir,
    allowed: PathBuf,
    outside: PathBuf,
    data: Vec<u8>,
    api: ApiServer,
    urls: FileUrls,
}

fn key() -> FileKey {
    FileKey::from_text(b"a test key that is long enough to sign").expect("key")
}

/// `root/allowed/{a.bin, link-in, link-out, fifo, real/b.bin, dir-in ->
/// real, dir-out -> outside}` and `root/outside/secret.txt`, served with
/// `--allow-path root/allowed`.
async fn setup() -> Setup {
    let root = tempfile::tempdir().expect("tempdir");
    let allowed = root.path().join("allowed");
    let outside = root.path().join("outside");
    std::fs::create_dir_all(&allowed).expect("allowed");
    std::fs::create_dir_all(&outside).expect("outside");
    let data: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(allowed.join("a.bin"), &data).expect("a.bin");
    std::fs::write(outside.join("secret.txt"), b"root's secret").expect("secret");
    std::os::unix::fs::symlink(allowed.join("a.bin"), allowed.join("link-in")).expect("link-in");
    std::os::unix::fs::symlink(outside.join("secret.txt"), allowed.join("link-out")).expect("link-out");
    std::fs::create_dir_all(allowed.join("real")).expect("real");
    std::fs::write(allowed.join("real/b.bin"), b"bee").expect("b.bin");
    std::os::unix::fs::symlink(allowed.join("real"), allowed.join("dir-in")).expect("dir-in");
    std::os::unix::fs::symlink(&outside, allowed.join("dir-out")).expect("dir-out");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        allowed.join("fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .expect("fifo");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&root.path().join("skep.db")).await.expect("store"));
    let policy = PathPolicy::under(std::slice::from_ref(&allowed)).expect("policy");
    let api = ApiServer::start_files(store, policy, key()).await;
    let urls = FileUrls::new(&api.base, key()).expect("urls");
    Setup {
        allowed,
        outside,
        data,
        api,
        urls,
        _root: root,
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

async fn get(url: &str, range: Option<&str>) -> reqwest::Response {
    let mut req = reqwest::Client::new().get(url);
    if let Some(r) = range {
        req = req.header("range", r);
    }
    req.send().await.expect("request")
}

/// The `error` of a JSON failure envelope.
async fn refusal(res: reqwest::Response) -> (u16, String) {
    let status = res.status().as_u16();
    let body: serde_json::Value = res.json().await.expect("json");
    (status, body["error"].as_str().unwrap_or_default().to_owned())
}

#[tokio::test]
async fn a_signed_url_reads_its_file_whole_by_range_and_by_head_without_a_token() {
    let s = setup().await;
    let url = s.urls.url(&path_str(&s.allowed), "a.bin", now() + 60, false);

    let res = get(&url, None).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["accept-ranges"], "bytes");
    assert_eq!(res.headers()["content-length"], s.data.len().to_string());
    assert_eq!(res.headers()["cache-control"], "no-store");
    assert!(
        res.bytes().await.expect("body") == s.data,
        "the whole file, byte for byte"
    );

    for (range, start, end) in [
        ("bytes=0-9", 0, 10),
        ("bytes=1000000-1999999", 1_000_000, 2_000_000),
        ("bytes=2999990-", 2_999_990, 3_000_000),
        ("bytes=-7", 2_999_993, 3_000_000),
    ] {
        let res = get(&url, Some(range)).await;
        assert_eq!(res.status(), 206, "{range}");
        assert_eq!(
            res.headers()["content-range"],
            format!("bytes {start}-{}/{}", end - 1, s.data.len()),
            "{range}"
        );
        assert!(res.bytes().await.expect("body") == s.data[start..end], "{range}");
    }
    let res = get(&url, Some("bytes=3000000-")).await;
    assert_eq!(res.status(), 416);
    assert_eq!(res.headers()["content-range"], "bytes */3000000");

    let head = reqwest::Client::new().head(&url).send().await.expect("head");
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-length"], "3000000");

    let metrics = s.api.metrics.encode().expect("metrics");
    let sent: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("skep_file_bytes_served_total "))
        .and_then(|v| v.parse().ok())
        .expect("bytes counter");
    assert_eq!(
        sent,
        3_000_000 + 10 + 1_000_000 + 10 + 7,
        "bytes served, HEAD and 416 sending none"
    );
}

#[tokio::test]
async fn tampered_expired_other_file_and_other_key_urls_are_refused() {
    let s = setup().await;
    let root = path_str(&s.allowed);
    let good = s.urls.url(&root, "a.bin", now() + 60, false);

    let other_file = good.replace("a.bin", "link-in");
    let later = {
        let exp = now() + 60;
        s.urls
            .url(&root, "a.bin", exp, false)
            .replace(&format!("expires={exp}"), &format!("expires={}", exp + 3600))
    };
    let tampered = {
        let (head, sig) = good.rsplit_once("sig=").expect("sig");
        let mut sig = sig.to_owned().into_bytes();
        sig[0] = if sig[0] == b'A' { b'B' } else { b'A' };
        format!("{head}sig={}", String::from_utf8(sig).expect("ascii"))
    };
    let follow = good.replace("follow=0", "follow=1");
    let other_key = FileUrls::new(
        &s.api.base,
        FileKey::from_text(b"another key, thirty-two bytes or more").expect("key"),
    )
    .expect("urls")
    .url(&root, "a.bin", now() + 60, false);
    let no_sig = good.split("&sig=").next().expect("head").to_owned();
    let twice = format!("{good}&path=%2Fetc%2Fpasswd");
    for (what, url, says) in [
        ("another file", other_file, "signature does not match"),
        ("a later expiry", later, "signature does not match"),
        ("a changed signature", tampered, "signature does not match"),
        ("symlinks switched on", follow, "signature does not match"),
        ("another key", other_key, "signature does not match"),
        ("no signature", no_sig, "lacks a field"),
        ("a repeated path", twice, "lacks a field"),
    ] {
        let (status, error) = refusal(get(&url, None).await).await;
        assert_eq!(status, 403, "{what}");
        assert!(error.contains(says), "{what}: {error}");
    }

    let expired = s.urls.url(&root, "a.bin", now() - 1, false);
    let (status, error) = refusal(get(&expired, None).await).await;
    assert_eq!((status, error.as_str()), (403, "the URL has expired"));

    // An API token is no key to files: a well-formed URL with a wrong
    // signature and an admin token is refused as without one.
    let forged = good.replace("path=a.bin", "path=..%2Foutside%2Fsecret.txt");
    let res = reqwest::Client::new()
        .get(&forged)
        .bearer_auth(common::api::ADMIN_TOKEN)
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 403);

    let metrics = s.api.metrics.encode().expect("metrics");
    for line in [
        "skep_files_served_total{result=\"refused\"} 8",
        "skep_files_served_total{result=\"expired\"} 1",
        "skep_files_served_total{result=\"ok\"} 0",
    ] {
        assert!(metrics.lines().any(|l| l == line), "no {line} in\n{metrics}");
    }
}

#[tokio::test]
async fn a_signed_path_is_still_held_to_the_allowed_folders_and_the_symlink_rule() {
    let s = setup().await;
    let allowed = path_str(&s.allowed);
    let outside = path_str(&s.outside);
    let url = |root: &str, rel: &str, follow| s.urls.url(root, rel, now() + 60, follow);
    let cases = [
        ("a file outside --allow-path", url(&outside, "secret.txt", true), 403),
        (
            "a link out of the allowed folder, followed",
            url(&allowed, "link-out", true),
            403,
        ),
        (
            "a folder link out of the allowed folder, followed",
            url(&allowed, "dir-out/secret.txt", true),
            403,
        ),
        (
            "a link in the folder, for a job not following links",
            url(&allowed, "link-in", false),
            403,
        ),
        (
            "a folder link in the folder, for a job not following links",
            url(&allowed, "dir-in/b.bin", false),
            403,
        ),
        ("a path climbing out", url(&allowed, "../outside/secret.txt", true), 403),
        ("a missing file", url(&allowed, "gone.png", false), 404),
        ("a folder", url(&allowed, "real", false), 404),
        (
            "a FIFO (opening it must not wait for a writer)",
            url(&allowed, "fifo", false),
            404,
        ),
    ];
    for (what, url, status) in cases {
        let res = tokio::time::timeout(std::time::Duration::from_secs(10), get(&url, None))
            .await
            .unwrap_or_else(|_| panic!("{what}: no answer in 10 s"));
        let (got, error) = refusal(res).await;
        assert_eq!(got, status, "{what}: {error}");
        assert!(!error.contains("root's secret"), "{what}: {error}");
    }
    // Links inside the folder, for a job that follows links, read.
    let res = get(&s.urls.url(&allowed, "link-in", now() + 60, true), Some("bytes=0-3")).await;
    assert_eq!(res.status(), 206);
    assert!(res.bytes().await.expect("body") == s.data[..4]);
    let res = get(&s.urls.url(&allowed, "dir-in/b.bin", now() + 60, true), None).await;
    assert_eq!(res.status(), 200);
    assert_eq!(&res.bytes().await.expect("body")[..], b"bee");
    let metrics = s.api.metrics.encode().expect("metrics");
    for line in [
        "skep_files_served_total{result=\"notAllowed\"} 6",
        "skep_files_served_total{result=\"notFound\"} 3",
    ] {
        assert!(metrics.lines().any(|l| l == line), "no {line} in\n{metrics}");
    }
}

#[tokio::test]
async fn a_controller_signing_no_urls_serves_no_files() {
    let root = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&root.path().join("skep.db")).await.expect("store"));
    let api = ApiServer::start(store).await;
    std::fs::write(root.path().join("a.png"), b"x").expect("file");
    let url = FileUrls::new(&api.base, key())
        .expect("urls")
        .url(&path_str(root.path()), "a.png", now() + 60, false);
    let (status, error) = refusal(get(&url, None).await).await;
    assert_eq!(status, 404);
    assert!(error.contains("serves no files"), "{error}");
}

/// PUTs `body` as `file` of delivery folder `name` through `upload`.
async fn put(upload: &str, name: &str, file: &str, body: Vec<u8>) -> (u16, String) {
    let url = format!("{upload}&name={name}&file={file}");
    let res = reqwest::Client::new().put(&url).body(body).send().await.expect("put");
    let status = res.status().as_u16();
    let body: serde_json::Value = res.json().await.unwrap_or_default();
    (status, body["error"].as_str().unwrap_or_default().to_owned())
}

#[tokio::test]
async fn a_signed_upload_url_stages_files_of_its_task_only() {
    let s = setup().await;
    let output = s.allowed.join("out");
    let root = output.join(".skep-staging/uid");
    std::fs::create_dir_all(&root).expect("staging");
    let out = path_str(&output);
    let upload = s.urls.upload_url(&out, "uid", "3-0-1-", now() + 60);

    // Bigger than the API's 1 MiB body limit: uploads have their own.
    let pdf: Vec<u8> = s.data.clone();
    assert_eq!(put(&upload, "3-0-1-w1-0-ff", "out.pdf", pdf.clone()).await.0, 201);
    assert_eq!(
        put(&upload, "3-0-1-w1-0-ff", "out.hocr", b"<hocr/>".to_vec()).await.0,
        201
    );
    // A retried upload replaces its file.
    assert_eq!(
        put(&upload, "3-0-1-w1-0-ff", "out.hocr", b"<hocr2/>".to_vec()).await.0,
        201
    );
    let dir = root.join("3-0-1-w1-0-ff");
    assert!(std::fs::read(dir.join("out.pdf")).expect("pdf") == pdf);
    assert_eq!(std::fs::read(dir.join("out.hocr")).expect("hocr"), b"<hocr2/>");
    assert_eq!(names(&dir), ["out.hocr", "out.pdf"], "no temporary file left");

    for (what, name, file, status, says) in [
        ("another task's folder", "4-0-1-w1", "out.hocr", 400, "starting with"),
        ("another attempt's folder", "3-0-2-w1", "out.hocr", 400, "starting with"),
        ("the bare prefix", "3-0-1-", "out.hocr", 400, "starting with"),
        ("a path", "3-0-1-w1%2F..%2F..%2Fx", "out.hocr", 400, "plain name"),
        ("a dot folder", ".3-0-1-w1", "out.hocr", 400, "plain name"),
        (
            "a file workers never stage",
            "3-0-1-w1",
            "run.sh",
            400,
            "not a file workers stage",
        ),
        (
            "a path as the file",
            "3-0-1-w1",
            "..%2Fout.hocr",
            400,
            "not a file workers stage",
        ),
    ] {
        let (got, error) = put(&upload, name, file, b"x".to_vec()).await;
        assert_eq!(got, status, "{what}: {error}");
        assert!(error.contains(says), "{what}: {error}");
    }

    // Signatures: changed, expired, a read URL's.
    let tampered = upload.replace("prefix=3-0-1-", "prefix=3-0-");
    let other_job = upload.replace("job=uid", "job=uid2");
    let expired = s.urls.upload_url(&out, "uid", "3-0-1-", now() - 1);
    let read_sig = {
        let read = s.urls.url(&out, "uid", now() + 60, false);
        let sig = read.rsplit_once("sig=").expect("sig").1.to_owned();
        let (head, _) = upload.rsplit_once("sig=").expect("sig");
        format!("{head}sig={sig}")
    };
    for (what, url, says) in [
        ("a changed prefix", tampered, "signature does not match"),
        ("another job", other_job, "signature does not match"),
        ("a read URL's signature", read_sig, "signature does not match"),
        ("an expired URL", expired, "expired"),
    ] {
        let (got, error) = put(&url, "3-0-w1", "out.hocr", b"x".to_vec()).await;
        assert_eq!(got, 403, "{what}: {error}");
        assert!(error.contains(says), "{what}: {error}");
    }

    // An output outside the allowed folders, or a job whose staging folder
    // is gone, takes nothing, and nothing is made anew.
    let outside = s.urls.upload_url(&path_str(&s.outside), "uid", "3-0-1-", now() + 60);
    std::fs::create_dir_all(s.outside.join(".skep-staging/uid")).expect("outside staging");
    assert_eq!(put(&outside, "3-0-1-w1", "out.hocr", b"x".to_vec()).await.0, 403);
    assert!(!s.outside.join(".skep-staging/uid/3-0-1-w1").exists());
    let gone = s.urls.upload_url(&out, "old", "3-0-1-", now() + 60);
    let (got, error) = put(&gone, "3-0-1-w1", "out.hocr", b"x".to_vec()).await;
    assert_eq!(got, 404, "{error}");
    assert!(error.contains("gone"), "{error}");
    assert!(!output.join(".skep-staging/old").exists(), "nothing made anew");

    // A delivery folder planted as a symlink is not written through.
    std::os::unix::fs::symlink(&s.outside, root.join("3-0-1-planted")).expect("plant");
    let (got, _) = put(&upload, "3-0-1-planted", "out.hocr", b"x".to_vec()).await;
    assert_eq!(got, 403);
    assert!(!s.outside.join("out.hocr").exists(), "nothing written through the link");

    // At most four delivery folders per task attempt (the planted one
    // counts).
    assert_eq!(put(&upload, "3-0-1-w2", "out.hocr", b"x".to_vec()).await.0, 201);
    assert_eq!(put(&upload, "3-0-1-w3", "out.hocr", b"x".to_vec()).await.0, 201);
    let (got, error) = put(&upload, "3-0-1-w4", "out.hocr", b"x".to_vec()).await;
    assert_eq!(got, 409, "{error}");
    assert!(error.contains("delivery folders already"), "{error}");
    assert_eq!(
        put(&upload, "3-0-1-w2", "out.xml", b"x".to_vec()).await.0,
        201,
        "an existing delivery folder takes more files"
    );

    // A client that stops mid-body leaves no temporary file.
    let url = url::Url::parse(&format!("{upload}&name=3-0-1-w2&file=out.tsv")).expect("url");
    let mut conn = tokio::net::TcpStream::connect((url.host_str().expect("host"), url.port().expect("port")))
        .await
        .expect("connect");
    let head = format!(
        "PUT {}?{} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\npartial",
        url.path(),
        url.query().expect("query")
    );
    tokio::io::AsyncWriteExt::write_all(&mut conn, head.as_bytes())
        .await
        .expect("write");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    drop(conn);
    let dir2 = root.join("3-0-1-w2");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while names(&dir2) != ["out.hocr", "out.xml"] {
        assert!(
            std::time::Instant::now() < deadline,
            "a temporary file was left: {:?}",
            names(&dir2)
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    // Reads are not uploads.
    let res = reqwest::Client::new().get(&upload).send().await.expect("get");
    assert_eq!(res.status(), 405);

    let metrics = s.api.metrics.encode().expect("metrics");
    for line in [
        "skep_staged_files_received_total{result=\"ok\"} 6",
        "skep_staged_files_received_total{result=\"badRequest\"} 8",
        "skep_staged_files_received_total{result=\"refused\"} 3",
        "skep_staged_files_received_total{result=\"expired\"} 1",
        "skep_staged_files_received_total{result=\"notAllowed\"} 2",
        "skep_staged_files_received_total{result=\"gone\"} 1",
        "skep_staged_files_received_total{result=\"error\"} 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "no {line} in\n{metrics}");
    }
}

/// The names in a folder, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_swapped_for_a_symlink_while_urls_are_served_never_leaks() {
    let s = setup().await;
    // `allowed/d` flips between a real folder holding `shadow` (allowed)
    // and a symlink to `outside/`, which holds a `shadow` of its own.
    std::fs::write(s.outside.join("shadow"), b"SECRET").expect("secret shadow");
    let d = s.allowed.join("d");
    let real = s.allowed.join("d-real");
    std::fs::create_dir_all(&real).expect("d-real");
    std::fs::write(real.join("shadow"), b"public").expect("public shadow");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flipper = {
        let (d, real, outside, stop) = (d.clone(), real.clone(), s.outside.clone(), stop.clone());
        std::thread::spawn(move || {
            let tmp = d.with_extension("tmp");
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for target in [&real, &outside] {
                    let _ = std::fs::remove_file(&tmp);
                    std::os::unix::fs::symlink(target, &tmp).expect("link");
                    std::fs::rename(&tmp, &d).expect("swap");
                }
            }
        })
    };
    let client = reqwest::Client::new();
    let root = path_str(&s.allowed);
    let (mut public, mut refused) = (0, 0);
    for follow in [true, false] {
        let url = s.urls.url(&root, "d/shadow", now() + 60, follow);
        for _ in 0..300 {
            let res = client.get(&url).send().await.expect("request");
            let status = res.status().as_u16();
            let body = res.bytes().await.expect("body");
            assert!(
                !body.windows(6).any(|w| w == b"SECRET"),
                "a file outside the allowed folder leaked"
            );
            match status {
                200 => public += 1,
                _ => refused += 1,
            }
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    flipper.join().expect("flipper");
    assert!(
        public > 0,
        "the allowed file was served at times ({public} of 600; {refused} refused)"
    );
    assert!(
        refused > 0,
        "the swapped folder was refused at times ({refused} of 600)"
    );
}
