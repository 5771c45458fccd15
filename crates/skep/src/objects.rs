//! Object storage (S3 and S3-compatible servers) for job sources: the
//! controller's connection settings, a streamed and paged listing, and
//! presigned GETs that let a worker read one object with no credentials.
//!
//! Endpoint, region and keys are the controller's (`--s3-*` flags, env,
//! `*_FILE` secrets), never a job's: a job names only `s3://BUCKET/PREFIX`,
//! and a controller reads only the buckets and prefixes `--allow-s3`
//! allows. The requests go through `object_store` with skep's own reqwest
//! client (rustls with ring), so no second TLS stack is built.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::BodyExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::client::{
    ClientOptions, HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpResponse, HttpResponseBody,
    HttpService,
};
use object_store::list::{PaginatedListOptions, PaginatedListStore};
use object_store::signer::Signer;
use object_store::{RetryConfig, path::Path as ObjectPath};
use skep_api::ObjectUrl;

/// Keys asked for per listing page. S3 answers at most 1,000 whatever is
/// asked; servers that walk the whole bucket per page (s3s-fs) are ten
/// times faster with bigger pages.
pub const LIST_PAGE: usize = 10_000;
/// Time for one request to connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a response may go without a byte.
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Time one listing page may take, retries included.
const PAGE_TIMEOUT: Duration = Duration::from_secs(120);
/// Time one output file's upload may take.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Longest ETag kept (S3's are 34–50 bytes).
const MAX_ETAG: usize = 200;
/// Bytes buffered per upload before it turns into a multipart upload.
const UPLOAD_BUFFER: usize = 8 << 20;

/// An object listed under a source prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    /// The key with the source's prefix taken off, `/`-separated.
    pub rel: String,
    pub size: u64,
    pub etag: Option<String>,
}

/// A failed object-storage call; never holds a credential.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ObjectError(pub String);

/// How the controller reaches object storage.
#[derive(Clone)]
pub struct S3Settings {
    /// `None`: AWS itself (the region's endpoint).
    pub endpoint: Option<String>,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
    /// Bucket in the host name (AWS's default) rather than in the path
    /// (what most self-hosted servers want).
    pub virtual_hosted: bool,
}

impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &"<redacted>")
            .field("secret_access_key", &"<redacted>")
            .field("virtual_hosted", &self.virtual_hosted)
            .finish()
    }
}

/// The controller's object stores, one client per bucket, made on first
/// use. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct ObjectStores {
    settings: Option<Arc<S3Settings>>,
    stores: Arc<Mutex<HashMap<String, Arc<AmazonS3>>>>,
}

impl ObjectStores {
    /// No object storage: jobs with an `s3://` source are failed.
    pub fn none() -> Self {
        Self::default()
    }

    pub fn new(settings: S3Settings) -> Self {
        Self {
            settings: Some(Arc::new(settings)),
            stores: Arc::default(),
        }
    }

    pub fn configured(&self) -> bool {
        self.settings.is_some()
    }

    fn store(&self, bucket: &str) -> Result<Arc<AmazonS3>, ObjectError> {
        let Some(s) = &self.settings else {
            return Err(ObjectError(
                "this controller has no object storage (start it with --s3-access-key-id-file and \
                 --s3-secret-access-key-file, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
                    .to_owned(),
            ));
        };
        let mut stores = self.stores.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(store) = stores.get(bucket) {
            return Ok(store.clone());
        }
        let mut b = AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_region(&s.region)
            .with_access_key_id(&s.access_key_id)
            .with_secret_access_key(&s.secret_access_key)
            .with_virtual_hosted_style_request(s.virtual_hosted)
            .with_http_connector(Connector)
            .with_retry(RetryConfig {
                max_retries: 3,
                retry_timeout: Duration::from_secs(30),
                ..RetryConfig::default()
            });
        if let Some(token) = &s.session_token {
            b = b.with_token(token);
        }
        if let Some(endpoint) = &s.endpoint {
            b = b
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        let store = Arc::new(b.build().map_err(|e| ObjectError(format!("bucket {bucket}: {e}")))?);
        // NB: bounded by the buckets jobs may name (`--allow-s3`), and by
        // the jobs themselves with `--allow-any-path`.
        stores.insert(bucket.to_owned(), store.clone());
        Ok(store)
    }

    /// A listing of the objects under `url`, read a page at a time in key
    /// order (only one page is held). With `recursive` false, only the
    /// objects right under the prefix.
    pub fn lister(&self, url: &ObjectUrl, recursive: bool) -> Result<Lister, ObjectError> {
        Ok(Lister {
            store: self.store(&url.bucket)?,
            url: url.clone(),
            recursive,
            token: None,
            done: false,
        })
    }

    /// A URL that GETs `key` of `bucket` with no credentials until
    /// `expires_in` has passed.
    pub async fn presign_get(&self, bucket: &str, key: &str, expires_in: Duration) -> Result<String, ObjectError> {
        let store = self.store(bucket)?;
        let path = object_path(key)?;
        store
            .signed_url(http::Method::GET, &path, expires_in)
            .await
            .map(String::from)
            .map_err(|e| ObjectError(format!("signing a URL for s3://{bucket}/{key}: {}", clean(&e))))
    }

    /// Writes object `key` of `bucket` to a new file at `to` (it must not
    /// exist), `max_bytes` at most; a partial file is removed. With a
    /// `version`, another version of the object is `Ok(Err(how))`.
    pub async fn download(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&crate::store::ObjectVersion>,
        to: &std::path::Path,
        max_bytes: u64,
    ) -> Result<Result<u64, String>, ObjectError> {
        use futures::StreamExt;
        use object_store::ObjectStore;
        use tokio::io::AsyncWriteExt;
        let store = self.store(bucket)?;
        let path = object_path(key)?;
        let options = object_store::GetOptions {
            if_match: version.and_then(|v| v.etag.clone()),
            ..object_store::GetOptions::default()
        };
        let got = match store.get_opts(&path, options).await {
            Ok(got) => got,
            Err(object_store::Error::Precondition { .. }) => {
                return Ok(Err("its ETag is no longer the listed one".into()));
            }
            Err(e) => return Err(ObjectError(format!("s3://{bucket}/{key}: {}", clean(&e)))),
        };
        if let Some(v) = version {
            if got.meta.size != v.size {
                return Ok(Err(format!("it is {} bytes, listed as {}", got.meta.size, v.size)));
            }
            // NB: checked here too, for a server that ignores `If-Match`
            // on a GET (s3s-fs does).
            if let (Some(listed), Some(served)) = (&v.etag, &got.meta.e_tag)
                && !skep_api::same_etag(listed.as_bytes(), served.as_bytes())
            {
                return Ok(Err("its ETag is no longer the listed one".into()));
            }
        }
        if got.meta.size > max_bytes {
            return Err(ObjectError(format!(
                "s3://{bucket}/{key} is {} bytes, over {max_bytes}",
                got.meta.size
            )));
        }
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(to)
            .await
            .map_err(|e| ObjectError(format!("{}: {e}", to.display())))?;
        let written = async {
            let mut stream = got.into_stream();
            let mut n = 0u64;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| ObjectError(format!("s3://{bucket}/{key}: {}", clean(&e))))?;
                n += chunk.len() as u64;
                if n > max_bytes {
                    return Err(ObjectError(format!("s3://{bucket}/{key} is over {max_bytes} bytes")));
                }
                file.write_all(&chunk)
                    .await
                    .map_err(|e| ObjectError(format!("{}: {e}", to.display())))?;
            }
            file.flush()
                .await
                .map_err(|e| ObjectError(format!("{}: {e}", to.display())))?;
            Ok(n)
        }
        .await;
        // NB: a body of another length than listed is another object
        // (hyper reports a short one as an error already).
        let changed = match (&written, version) {
            (Ok(n), Some(v)) if *n != v.size => Some(format!("{n} bytes came, listed as {}", v.size)),
            _ => None,
        };
        if written.is_err() || changed.is_some() {
            let _ = tokio::fs::remove_file(to).await;
        }
        match changed {
            Some(how) => Ok(Err(how)),
            None => written.map(Ok),
        }
    }

    /// Writes `bytes` as object `key` of `bucket`.
    pub async fn put(&self, bucket: &str, key: &str, bytes: Bytes) -> Result<(), ObjectError> {
        use object_store::ObjectStoreExt;
        let store = self.store(bucket)?;
        let path = object_path(key)?;
        store
            .put(&path, bytes.into())
            .await
            .map(|_| ())
            .map_err(|e| ObjectError(format!("s3://{bucket}/{key}: {}", clean(&e))))
    }

    /// Uploads the regular files under `dir` (symlinks are not followed,
    /// top-level entries named in `skip` left out) as `prefix` + their
    /// path below `dir`, `last` (a top-level file name) once all others
    /// are up. Each object appears whole or not at all (a single PUT, or a
    /// multipart upload completed at the end). The folder is walked as it
    /// is uploaded (one folder's names read at a time), [`UPLOAD_PARALLEL`]
    /// files at a time, and each file is removed once its object is up, so a repeated call (after a failure,
    /// or a restart) uploads only what is left. Returns the files uploaded.
    pub async fn upload_tree(
        &self,
        url: &ObjectUrl,
        dir: &std::path::Path,
        skip: &[&str],
        last: &str,
    ) -> Result<u64, CallError> {
        use futures::StreamExt;
        let store = self.store(&url.bucket).map_err(|e| CallError::Refused(e.0))?;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (tx, rx) = tokio::sync::mpsc::channel(UPLOAD_PARALLEL * 4);
        let walker = {
            let (root, stop) = (dir.to_path_buf(), stop.clone());
            let mut left_out: Vec<String> = skip.iter().map(|s| s.to_string()).collect();
            left_out.push(last.to_owned());
            tokio::task::spawn_blocking(move || walk_outputs(&root, &left_out, &stop, &tx))
        };
        let upload = |rel: Result<String, ObjectError>| {
            let (store, stop) = (store.clone(), stop.clone());
            async move {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    return Ok(false);
                }
                let rel = rel.map_err(|e| CallError::Failed(e.0))?;
                upload_file(&store, url, dir, &rel).await.map(|()| true)
            }
        };
        let mut uploads = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|r| (r, rx)) })
            .map(upload)
            .buffer_unordered(UPLOAD_PARALLEL)
            .boxed();
        let mut n = 0u64;
        let mut failed = None;
        // NB: after a failure the uploads under way finish (a writer is
        // never dropped half-shut) and the rest are passed over.
        while let Some(done) = uploads.next().await {
            match done {
                Ok(up) => n += u64::from(up),
                Err(e) => {
                    stop.store(true, std::sync::atomic::Ordering::Relaxed);
                    failed.get_or_insert(e);
                }
            }
        }
        walker.await.map_err(|e| CallError::Failed(e.to_string()))?;
        if let Some(e) = failed {
            return Err(e);
        }
        let at = dir.join(last);
        let kind = tokio::task::spawn_blocking(move || std::fs::symlink_metadata(at).map(|m| m.is_file()))
            .await
            .map_err(|e| CallError::Failed(e.to_string()))?;
        match kind {
            Ok(true) => {
                upload_file(&store, url, dir, last).await?;
                n += 1;
            }
            Ok(false) => {
                return Err(CallError::Refused(format!(
                    "{} is not a regular file",
                    dir.join(last).display()
                )));
            }
            Err(_) => {}
        }
        Ok(n)
    }
}

/// Files uploaded at a time by [`ObjectStores::upload_tree`]; each buffers
/// up to [`UPLOAD_BUFFER`], so at most 64 MiB are held.
pub const UPLOAD_PARALLEL: usize = 8;

/// Sends the relative path of every regular file under `root` to `tx`, in
/// name order, the top-level entries named in `left_out` excepted; stops
/// at `stop` or once nobody listens.
fn walk_outputs(
    root: &std::path::Path,
    left_out: &[String],
    stop: &std::sync::atomic::AtomicBool,
    tx: &tokio::sync::mpsc::Sender<Result<String, ObjectError>>,
) {
    let walk = walkdir::WalkDir::new(root)
        .follow_links(false)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| !(e.depth() == 1 && left_out.iter().any(|s| e.file_name() == s.as_str())));
    for e in walk {
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        let item = match e {
            Err(e) => Err(ObjectError(format!("reading the outputs: {e}"))),
            Ok(e) if !e.file_type().is_file() => continue,
            Ok(e) => e
                .path()
                .strip_prefix(root)
                .ok()
                .and_then(|r| r.to_str())
                .map(|r| r.replace(std::path::MAIN_SEPARATOR, "/"))
                .ok_or_else(|| ObjectError(format!("{} is not a UTF-8 name", e.path().display()))),
        };
        if tx.blocking_send(item).is_err() {
            return;
        }
    }
}

/// Uploads `dir/rel` as `url`'s key for `rel`, then removes the file.
async fn upload_file(
    store: &Arc<AmazonS3>,
    url: &ObjectUrl,
    dir: &std::path::Path,
    rel: &str,
) -> Result<(), CallError> {
    use crate::controller::safe_fs::{SafeDir, open_staged};
    let key = url.key(rel);
    let object = object_path(&key).map_err(|e| CallError::Refused(e.0))?;
    // NB: the walk saw a regular file, but workers on a shared mount could
    // swap a folder or the file for a symlink since: the chain is opened
    // again without following any.
    let (root, rel_path) = (dir.to_path_buf(), std::path::PathBuf::from(rel));
    let opened = tokio::task::spawn_blocking(move || {
        let parent = rel_path.parent().unwrap_or(std::path::Path::new(""));
        let folder = SafeDir::open_existing(&root, parent)?;
        let name = rel_path.file_name().unwrap_or_default().to_owned();
        let file = open_staged(&folder.join(&name))?.ok_or_else(|| std::io::Error::other("gone"))?;
        Ok::<_, std::io::Error>((folder, name, file))
    })
    .await
    .map_err(|e| CallError::Failed(e.to_string()))?;
    let (folder, name, file) = opened.map_err(|e| CallError::Failed(format!("{}: {e}", dir.join(rel).display())))?;
    let mut file = tokio::fs::File::from_std(file);
    let dyn_store: Arc<dyn object_store::ObjectStore> = store.clone();
    let mut writer = object_store::buffered::BufWriter::with_capacity(dyn_store, object, UPLOAD_BUFFER);
    // NB: a writer is aborted only before its shutdown began (object_store
    // panics on an abort after one); one dropped mid-upload leaves its
    // multipart parts to the bucket's lifecycle rule.
    let copied = tokio::time::timeout(UPLOAD_TIMEOUT, async {
        if let Err(e) = tokio::io::copy(&mut file, &mut writer).await {
            let _ = writer.abort().await;
            return Err(e);
        }
        tokio::io::AsyncWriteExt::shutdown(&mut writer).await
    })
    .await
    .unwrap_or_else(|_| Err(std::io::Error::other(format!("not done within {UPLOAD_TIMEOUT:?}"))));
    if let Err(e) = copied {
        let what = format!("uploading s3://{}/{key}", url.bucket);
        // NB: object_store's error rides inside the io::Error.
        return Err(match e.get_ref() {
            Some(inner) => classify(&what, inner),
            None => CallError::Failed(format!("{what}: {e}")),
        });
    }
    drop(file);
    // NB: what is up leaves the working folder, so a repeated upload
    // sends only the rest.
    tokio::task::spawn_blocking(move || folder.remove(&name))
        .await
        .map_err(|e| CallError::Failed(e.to_string()))?
        .map_err(|e| CallError::Failed(format!("removing {} after its upload: {e}", dir.join(rel).display())))
}

/// `key` as `object_store` names it (it refuses empty, `.` and `..`
/// segments and control characters).
fn object_path(key: &str) -> Result<ObjectPath, ObjectError> {
    ObjectPath::parse(key).map_err(|e| ObjectError(format!("key {key:?}: {e}")))
}

/// A paged listing (see [`ObjectStores::lister`]).
pub struct Lister {
    store: Arc<AmazonS3>,
    url: ObjectUrl,
    recursive: bool,
    token: Option<String>,
    done: bool,
}

/// Why a listing or an upload failed.
#[derive(Debug)]
pub enum CallError {
    /// No such bucket, keys that may not use it, a key that cannot be
    /// named: the job is wrong (or the controller's keys are), retrying
    /// will not help.
    Refused(String),
    /// Anything else (the server out of reach, a timeout): worth a retry.
    Failed(String),
}

impl Lister {
    /// The next page's objects, prefix taken off; `None` after the last.
    pub async fn next_page(&mut self) -> Result<Option<Vec<Listed>>, CallError> {
        if self.done {
            return Ok(None);
        }
        let url = &self.url;
        let asked = self.token.clone();
        let call = self.store.list_paginated(
            (!url.prefix.is_empty()).then_some(url.prefix.as_str()),
            PaginatedListOptions {
                delimiter: (!self.recursive).then_some("/".into()),
                max_keys: Some(LIST_PAGE),
                page_token: self.token.take(),
                ..PaginatedListOptions::default()
            },
        );
        let page = tokio::time::timeout(PAGE_TIMEOUT, call)
            .await
            .map_err(|_| CallError::Failed(format!("listing {url}: no page within {PAGE_TIMEOUT:?}")))?
            .map_err(|e| classify(&format!("listing {url}"), &e))?;
        match page.page_token {
            // NB: a server that hands back the token it was given would
            // list the same page forever.
            Some(t) if asked.as_deref() == Some(t.as_str()) => {
                return Err(CallError::Failed(format!(
                    "listing {url}: the server repeated a page token"
                )));
            }
            Some(t) if !t.is_empty() => self.token = Some(t),
            _ => self.done = true,
        }
        Ok(Some(
            page.result
                .objects
                .into_iter()
                .filter_map(|o| {
                    let rel = o.location.as_ref().strip_prefix(url.prefix.as_str())?.to_owned();
                    Some(Listed {
                        rel,
                        size: o.size,
                        etag: o.e_tag.filter(|t| usable_etag(t)),
                    })
                })
                .collect(),
        ))
    }
}

/// Whether a listed ETag can go into a worker's `If-Match` header as it
/// is: visible ASCII, short. Another is dropped (the size still checks).
fn usable_etag(tag: &str) -> bool {
    !tag.is_empty() && tag.len() <= MAX_ETAG && tag.bytes().all(|b| b.is_ascii_graphic())
}

/// The text of an `object_store` error without an S3 error document's
/// body (which may repeat the request: key id, string to sign): its code
/// only.
pub fn clean(e: &dyn std::fmt::Display) -> String {
    let text = e.to_string();
    let Some(at) = text.find("<?xml").or_else(|| text.find("<Error>")) else {
        return text;
    };
    let code = text[at..]
        .split_once("<Code>")
        .and_then(|(_, rest)| rest.split_once("</Code>"))
        .map_or("", |(code, _)| code);
    let head = text[..at].trim_end().trim_end_matches(':');
    format!("{head} (S3 error {})", code.chars().take(64).collect::<String>())
}

/// Sorts a failed call into the job's fault and the rest. NB:
/// `object_store` reports a list request's 404 and 403 as generic errors
/// (its status-carrying error type is private), so the S3 error code in
/// the response, part of S3's API, is read from the message.
fn classify(what: &str, e: &(dyn std::error::Error + 'static)) -> CallError {
    let text = clean(e);
    let raw = e.to_string();
    let code = |c: &str| raw.contains(&format!("<Code>{c}</Code>"));
    let status = |s: &str| raw.contains(&format!("status code: {s}"));
    let store_error = e.downcast_ref::<object_store::Error>();
    if matches!(store_error, Some(object_store::Error::InvalidPath { .. })) {
        return CallError::Refused(format!("{what}: a key cannot be named: {text}"));
    }
    if code("RequestTimeTooSkewed") {
        return CallError::Failed(format!("{what}: this host's clock is off: {text}"));
    }
    if matches!(store_error, Some(object_store::Error::NotFound { .. })) || code("NoSuchBucket") || status("404") {
        return CallError::Refused(format!("{what}: no such bucket"));
    }
    let denied = [
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AllAccessDisabled",
    ]
    .into_iter()
    .find(|c| code(c));
    if matches!(
        store_error,
        Some(object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. })
    ) || denied.is_some()
        || status("403")
    {
        return CallError::Refused(format!(
            "{what}: the controller's keys may not do it ({})",
            denied.unwrap_or("403")
        ));
    }
    if status("400") || status("301") {
        return CallError::Refused(format!(
            "{what}: the server refused the request (a wrong region or endpoint?): {text}"
        ));
    }
    CallError::Failed(format!("{what}: {text}"))
}

/// `object_store`'s HTTP client: skep's reqwest 0.12.
#[derive(Debug)]
struct Connector;

impl HttpConnector for Connector {
    fn connect(&self, _options: &ClientOptions) -> object_store::Result<HttpClient> {
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| object_store::Error::Generic {
                store: "S3",
                source: Box::new(e),
            })?;
        Ok(HttpClient::new(Reqwest(client)))
    }
}

#[derive(Debug)]
struct Reqwest(reqwest::Client);

fn http_error(e: reqwest::Error) -> HttpError {
    let kind = if e.is_connect() {
        HttpErrorKind::Connect
    } else if e.is_timeout() {
        HttpErrorKind::Timeout
    } else if e.is_body() || e.is_request() {
        HttpErrorKind::Request
    } else if e.is_decode() {
        HttpErrorKind::Decode
    } else {
        HttpErrorKind::Unknown
    };
    HttpError::new(kind, e.without_url())
}

#[async_trait]
impl HttpService for Reqwest {
    async fn call(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        let (parts, body) = req.into_parts();
        let body: Bytes = match body.as_bytes() {
            Some(b) => b.clone(),
            None => body.collect().await?.to_bytes(),
        };
        let url = reqwest::Url::parse(&parts.uri.to_string()).map_err(|e| HttpError::new(HttpErrorKind::Unknown, e))?;
        let response = self
            .0
            .request(parts.method, url)
            .headers(parts.headers)
            .body(body)
            .send()
            .await
            .map_err(http_error)?;
        let response: http::Response<reqwest::Body> = response.into();
        let (parts, body) = response.into_parts();
        Ok(HttpResponse::from_parts(
            parts,
            HttpResponseBody::new(body.map_err(http_error)),
        ))
    }
}

/// Reads a secret from `file` (trailing newline dropped), else from the
/// environment variable `var`.
pub fn secret(file: Option<&PathBuf>, var: &str, flag: &str) -> Result<Option<String>, String> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{flag}: {}: {}", path.display(), e.kind()))?;
        let text = text.trim_end_matches(['\n', '\r']).to_owned();
        if text.is_empty() {
            return Err(format!("{flag}: {} is empty", path.display()));
        }
        return Ok(Some(text));
    }
    Ok(std::env::var(var).ok().filter(|v| !v.is_empty()))
}
