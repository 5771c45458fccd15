//! Reading a task's file through its URL, for a worker that cannot see
//! the task's path (no shared mount): `skep-worker run --file-access`.
//!
//! The file is streamed into a temporary file of the worker's own (the
//! engine and the PDF tools read paths), bounded in size by the worker's
//! `max_file_bytes` and in time by the task's timeout, retried on
//! transient failures (connection errors, 5xx, 408, 429) with a short
//! backoff, and removed once the file is read.
//!
//! What such a worker stages for a delivery (artefacts, a long text) is
//! written to a local folder first and then uploaded, file by file, to
//! the task's signed upload URL; the result is published only once every
//! file is there, so the controller lands it exactly as from a mount.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::StreamExt;
use skep_api::{FailureReason, TaskMessage};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

use crate::OcrError;

/// How a worker reaches a task's file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum FileAccess {
    /// The path when it is a file here, else the URL when the task has one.
    #[default]
    Auto,
    /// Always the path (a shared mount); the URL is never used.
    Path,
    /// Always the URL; a task without one fails `unreadable`.
    Url,
}

/// The certificates of a PEM file (a private CA for `https://` URLs).
pub fn load_roots(path: &Path) -> Result<Vec<reqwest::Certificate>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {}", path.display(), e.kind()))?;
    let roots = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| format!("{}: {e}", path.display()))?;
    if roots.is_empty() {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    Ok(roots)
}

/// Tries of one fetch (the first and the retries).
pub const FETCH_TRIES: u32 = 4;
/// Longest wait for a connection to the file's server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What a fetch did, for metrics: a closed set.
pub const FETCH_RESULTS: [&str; 7] = ["ok", "notFound", "changed", "refused", "tooLarge", "timeout", "error"];

/// A fetched file, under its own name in a folder of its own; both are
/// deleted when dropped.
#[derive(Debug)]
pub struct Fetched {
    pub path: PathBuf,
    _dir: tempfile::TempDir,
    pub bytes: u64,
    /// Tries it took (1 when the first worked).
    pub tries: u32,
}

/// The version a fetch must read: an object's size and ETag as the
/// controller listed them (none for a file of a folder). Another version
/// fails the file as `changed`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Expect<'a> {
    pub size: Option<u64>,
    pub etag: Option<&'a str>,
}

impl<'a> Expect<'a> {
    pub fn of(task: &'a TaskMessage) -> Self {
        Self {
            size: task.size,
            etag: task.etag.as_deref(),
        }
    }
}

/// A failed fetch: the file's failure and the metrics result.
#[derive(Debug)]
pub struct FetchError {
    pub error: OcrError,
    pub result: &'static str,
}

/// Fetches task files over HTTP(S). Cheap to clone.
#[derive(Clone, Debug)]
pub struct Fetcher {
    client: reqwest::Client,
    dir: PathBuf,
    max_bytes: u64,
    backoff: Duration,
}

/// Where a task's file is read from.
#[derive(Debug)]
pub enum Source<'a> {
    Path(&'a Path),
    Url(&'a str),
}

/// Chooses between the task's path and URL.
pub fn source(access: FileAccess, task: &TaskMessage) -> Result<Source<'_>, OcrError> {
    let path = Path::new(&task.path);
    // NB: a task of an object-storage source names its object
    // (`s3://BUCKET/KEY`), never a file of this host.
    let local = path.is_absolute();
    match (access, task.url.as_deref()) {
        (FileAccess::Path, _) | (FileAccess::Auto, None) if !local => Err(OcrError::new(
            FailureReason::Unreadable,
            format!(
                "{} is not a path on this host and the task has no URL for it{}",
                task.path,
                if access == FileAccess::Path {
                    " (this worker reads paths only: --file-access path)"
                } else {
                    ""
                }
            ),
        )),
        (FileAccess::Path, _) | (FileAccess::Auto, None) => Ok(Source::Path(path)),
        (FileAccess::Url, Some(url)) => Ok(Source::Url(url)),
        (FileAccess::Url, None) => Err(OcrError::new(
            FailureReason::Unreadable,
            "this worker reads files through URLs (--file-access url) and the task has none: \
             start the controller with --file-url-base",
        )),
        (FileAccess::Auto, Some(url)) => {
            // NB: a file that is there is read in place, zero copy; anything
            // else (no mount, a folder, a broken link) goes through the URL.
            if local && std::fs::metadata(path).is_ok_and(|m| m.is_file()) {
                Ok(Source::Path(path))
            } else {
                Ok(Source::Url(url))
            }
        }
    }
}

impl Fetcher {
    /// Fetches into `dir` (created if missing), files of `max_bytes` at
    /// most; `https://` URLs are checked against the system's roots and
    /// `roots` (a private CA: `--fetch-ca-file`).
    pub fn new(dir: impl Into<PathBuf>, max_bytes: u64, roots: &[reqwest::Certificate]) -> Result<Self, String> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .https_only(false);
        for root in roots {
            builder = builder.add_root_certificate(root.clone());
        }
        let client = builder
            .build()
            .map_err(|e| format!("cannot make an HTTP client: {e}"))?;
        Ok(Self {
            client,
            dir: dir.into(),
            max_bytes,
            backoff: Duration::from_millis(250),
        })
    }

    /// The same fetcher with another first backoff (tests).
    pub fn with_backoff(mut self, backoff: Duration) -> Self {
        self.backoff = backoff;
        self
    }

    /// Fetches `url` within `limit`, with retries, as a file named like
    /// `original` (the task's path: artefacts name their image by it); the
    /// body must be the `expect`ed version (`If-Match`, size).
    pub async fn fetch(
        &self,
        url: &str,
        original: &Path,
        expect: Expect<'_>,
        limit: Duration,
    ) -> Result<Fetched, FetchError> {
        let deadline = Instant::now() + limit;
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| error(format!("cannot make {}: {}", self.dir.display(), e.kind())))?;
        let dir = tempfile::Builder::new()
            .prefix("skep-fetch-")
            .tempdir_in(&self.dir)
            .map_err(|e| error(format!("cannot make a folder in {}: {}", self.dir.display(), e.kind())))?;
        let name = original
            .file_name()
            .filter(|n| !n.is_empty())
            .map_or_else(|| "file".into(), |n| n.to_os_string());
        let path = dir.path().join(name);
        let mut out = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .map_err(|e| error(format!("cannot make a fetched file: {}", e.kind())))?;
        if let Some(etag) = expect.etag
            && reqwest::header::HeaderValue::from_str(etag).is_err()
        {
            return Err(FetchError {
                error: OcrError::new(FailureReason::BadMessage, "the task's ETag is not a header value"),
                result: "error",
            });
        }
        let mut wait = self.backoff;
        let mut tries = 0;
        loop {
            tries += 1;
            let left = deadline.saturating_duration_since(Instant::now());
            let attempt = tokio::time::timeout(left, self.try_once(url, expect, &mut out)).await;
            let failure = match attempt {
                Ok(Ok(bytes)) => {
                    return Ok(Fetched {
                        path,
                        _dir: dir,
                        bytes,
                        tries,
                    });
                }
                Ok(Err(Try::Final(e))) => return Err(e),
                Ok(Err(Try::Transient(message))) => message,
                Err(_) => {
                    return Err(FetchError {
                        error: OcrError::new(
                            FailureReason::Timeout,
                            format!("the file was not fetched within {}s", limit.as_secs()),
                        ),
                        result: "timeout",
                    });
                }
            };
            if tries >= FETCH_TRIES || Instant::now() + wait >= deadline {
                return Err(error(format!(
                    "fetching the file failed {tries} times; last: {failure}"
                )));
            }
            tracing::debug!(tries, error = %failure, "fetching a file failed; trying again");
            tokio::time::sleep(wait).await;
            wait *= 2;
        }
    }

    /// One try: the whole body into `out` (emptied first).
    async fn try_once(&self, url: &str, expect: Expect<'_>, out: &mut tokio::fs::File) -> Result<u64, Try> {
        out.set_len(0).await.map_err(|e| Try::io("emptying", &e))?;
        out.rewind().await.map_err(|e| Try::io("rewinding", &e))?;
        let mut get = self.client.get(url);
        if let Some(etag) = expect.etag {
            // NB: a presigned GET signs only `host`; an unsigned
            // `If-Match` is still honoured (S3 answers 412).
            get = get.header(reqwest::header::IF_MATCH, etag);
        }
        let res = get.send().await.map_err(|e| Try::Transient(describe(e)))?;
        let status = res.status();
        if !status.is_success() {
            // NB: the server's message, bounded: it says why (expired,
            // changed URL, no such file) and carries no secret.
            let message = body_text(res).await;
            let said = if message.is_empty() {
                String::new()
            } else {
                format!(": {message}")
            };
            return Err(match status.as_u16() {
                404 | 410 => Try::Final(FetchError {
                    error: OcrError::new(
                        FailureReason::NotFound,
                        format!("the file's URL answered {status}{said}"),
                    ),
                    result: "notFound",
                }),
                401 | 403 => Try::Final(FetchError {
                    error: OcrError::new(
                        FailureReason::Unreadable,
                        format!("the file's URL was refused ({status}{said})"),
                    ),
                    result: "refused",
                }),
                412 => Try::Final(changed(format!("its ETag is no longer {}", expect.etag.unwrap_or("?")))),
                408 | 429 | 500..=599 => Try::Transient(format!("{status}{said}")),
                _ => Try::Final(error(format!("the file's URL answered {status}{said}"))),
            });
        }
        // NB: checked here too, for a server that ignores `If-Match` on
        // a GET (s3s-fs does).
        if let Some(etag) = expect.etag
            && let Some(served) = res.headers().get(reqwest::header::ETAG)
            && !skep_api::same_etag(served.as_bytes(), etag.as_bytes())
        {
            return Err(Try::Final(changed(format!("its ETag is no longer {etag}"))));
        }
        if let Some(len) = res.content_length() {
            if len > self.max_bytes {
                return Err(Try::Final(too_large(self.max_bytes)));
            }
            if let Some(size) = expect.size
                && len != size
            {
                return Err(Try::Final(changed(format!("it is {len} bytes, listed as {size}"))));
            }
        }
        let mut stream = res.bytes_stream();
        let mut bytes = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| Try::Transient(describe(e)))?;
            bytes += chunk.len() as u64;
            if bytes > self.max_bytes {
                return Err(Try::Final(too_large(self.max_bytes)));
            }
            out.write_all(&chunk).await.map_err(|e| Try::io("writing", &e))?;
        }
        out.flush().await.map_err(|e| Try::io("writing", &e))?;
        match expect.size {
            // NB: a body cut short is a broken connection, retried; a
            // longer one is another object.
            Some(size) if bytes < size => Err(Try::Transient(format!("the body ended after {bytes} of {size} bytes"))),
            Some(size) if bytes > size => Err(Try::Final(changed(format!("it is over {size} bytes, its listed size")))),
            _ => Ok(bytes),
        }
    }
}

impl Fetcher {
    /// Uploads the files of `dir` (a delivery's local staging folder named
    /// `name`) to `upload`, the task's signed upload URL, within `limit`.
    pub async fn upload(&self, upload: &str, name: &str, dir: &Path, limit: Duration) -> Result<u64, OcrError> {
        let deadline = Instant::now() + limit;
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .map_err(|e| upload_error(format!("cannot list the staged files: {}", e.kind())))?
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        files.sort();
        let mut total = 0;
        for file in files {
            let query = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("name", name)
                .append_pair("file", &file)
                .finish();
            let url = format!("{upload}&{query}");
            let path = dir.join(&file);
            let mut wait = self.backoff;
            let mut tries = 0;
            loop {
                tries += 1;
                let left = deadline.saturating_duration_since(Instant::now());
                let failure = match tokio::time::timeout(left, self.put_once(&url, &path)).await {
                    Ok(Ok(n)) => {
                        total += n;
                        break;
                    }
                    Ok(Err(Try::Final(e))) => return Err(e.error),
                    Ok(Err(Try::Transient(m))) => m,
                    Err(_) => {
                        return Err(OcrError::new(
                            FailureReason::Timeout,
                            format!("the staged files were not uploaded within {}s", limit.as_secs()),
                        ));
                    }
                };
                if tries >= FETCH_TRIES || Instant::now() + wait >= deadline {
                    return Err(upload_error(format!(
                        "uploading {file} failed {tries} times; last: {failure}"
                    )));
                }
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
        }
        Ok(total)
    }

    async fn put_once(&self, url: &str, path: &Path) -> Result<u64, Try> {
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| Try::Final(error(format!("cannot read a staged file: {}", e.kind()))))?;
        let len = file
            .metadata()
            .await
            .map_err(|e| Try::Final(error(format!("cannot read a staged file: {}", e.kind()))))?
            .len();
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024));
        let res = self
            .client
            .put(url)
            .header(reqwest::header::CONTENT_LENGTH, len)
            .body(body)
            .send()
            .await
            .map_err(|e| Try::Transient(describe(e)))?;
        let status = res.status();
        if status.is_success() {
            return Ok(len);
        }
        let message = body_text(res).await;
        match status.as_u16() {
            408 | 429 | 500..=599 => Err(Try::Transient(format!("{status}: {message}"))),
            _ => Err(Try::Final(FetchError {
                error: upload_error(format!("the upload URL answered {status}: {message}")),
                result: "error",
            })),
        }
    }
}

fn upload_error(message: String) -> OcrError {
    OcrError::new(
        FailureReason::Unreadable,
        format!("uploading the staged files: {message}"),
    )
}

/// Whether a task's staged files go through its upload URL: the worker
/// reads through URLs, or (`auto`) cannot see the job's staging folder.
pub fn stage_remotely(access: FileAccess, task: &TaskMessage) -> bool {
    let (Some(_), Some(staging)) = (&task.upload, &task.staging) else {
        return false;
    };
    match access {
        FileAccess::Path => false,
        FileAccess::Url => true,
        FileAccess::Auto => !Path::new(staging).is_dir(),
    }
}

enum Try {
    Final(FetchError),
    Transient(String),
}

impl Try {
    fn io(what: &str, e: &std::io::Error) -> Self {
        Try::Final(error(format!("{what} the fetched file failed: {}", e.kind())))
    }
}

fn error(message: String) -> FetchError {
    FetchError {
        error: OcrError::new(FailureReason::Unreadable, message),
        result: "error",
    }
}

/// The object was replaced after the controller listed it.
fn changed(how: String) -> FetchError {
    FetchError {
        error: OcrError::new(
            FailureReason::Changed,
            format!("the file changed after the job listed it: {how}"),
        ),
        result: "changed",
    }
}

fn too_large(max: u64) -> FetchError {
    FetchError {
        error: OcrError::new(
            FailureReason::TooLarge,
            format!("the file is larger than this worker accepts ({max} bytes)"),
        ),
        result: "tooLarge",
    }
}

/// A reqwest error without its URL (the URL holds the signature).
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The first 512 bytes of an error body, as one line.
async fn body_text(res: reqwest::Response) -> String {
    let mut stream = res.bytes_stream();
    let mut buf = Vec::new();
    while buf.len() < 512 {
        match stream.next().await {
            Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
            _ => break,
        }
    }
    buf.truncate(512);
    let text = String::from_utf8_lossy(&buf);
    // NB: the controller's errors are JSON envelopes; keep their message.
    // An S3 server's are XML that may repeat the request (key id, string
    // to sign): only their code is kept.
    if text.contains("<Error>") {
        let code = text
            .split_once("<Code>")
            .and_then(|(_, rest)| rest.split_once("</Code>"))
            .map_or("unknown", |(code, _)| code);
        return format!("S3 error {}", code.chars().take(64).collect::<String>());
    }
    let message = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned))
        .unwrap_or_else(|| text.into_owned());
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}
