//! `GET /files?root=…&path=…&expires=…&follow=…&sig=…`: one file of a
//! folder source, for a worker that has no mount of it (see
//! [`crate::files`]).
//!
//! Not behind the API tokens: the URL's signature is the credential, and
//! it opens one file until it expires. The file is opened below the job's
//! source folder one folder at a time, without following a symlink when
//! the job does not follow them; then where it really is (the kernel's
//! name of the open file) must lie under `--allow-path`, so a symlink
//! swapped in between a check and the open gains nothing. Only regular
//! files are served, whole or by one byte range (`Range: bytes=…`),
//! streamed; `HEAD` answers the length.
//!
//! `PUT /files/staged?…` is the other way: what a worker with no mount of
//! the output folder stages for a delivery (artefacts, a long text).

use std::io::SeekFrom;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use rustix::fs::{Mode, OFlags};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use super::ApiState;
use super::error::ApiError;
use crate::controller::landing::STAGING_DIR;
use crate::controller::safe_fs::{self, SafeDir};
use crate::files::{FileQuery, RangeAsk, Refusal, StageQuery, parse_range};
use crate::paths::PathPolicy;

/// Bytes read from the file per chunk sent.
const CHUNK: usize = 256 * 1024;

/// A refusal with its metrics result.
type Refused = (&'static str, ApiError);

/// The file endpoint's handler (GET and HEAD).
pub(super) async fn serve(
    State(state): State<ApiState>,
    method: Method,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let metrics = state.metrics().clone();
    let Some(key) = state.file_key() else {
        return no_key("serves no files", "file URLs");
    };
    let query = FileQuery::parse(raw.as_deref().unwrap_or(""));
    let granted = match key.verify(&query, chrono::Utc::now().timestamp()) {
        Ok(g) => g,
        Err(refusal) => {
            metrics.file_request(if refusal == Refusal::Expired {
                "expired"
            } else {
                "refused"
            });
            return ApiError::Forbidden(refusal.to_string()).into_response();
        }
    };
    let policy = state.paths().clone();
    let opened = tokio::task::spawn_blocking(move || {
        open_source_file(
            &policy,
            Path::new(&granted.root),
            &granted.path,
            granted.follow_symlinks,
        )
    })
    .await;
    let (file, len) = match opened {
        Ok(Ok(f)) => f,
        Ok(Err((result, e))) => {
            metrics.file_request(result);
            return e.into_response();
        }
        Err(e) => {
            metrics.file_request("error");
            return internal(format!("opening the file stopped: {e}"));
        }
    };
    let range = parse_range(headers.get(header::RANGE).and_then(|v| v.to_str().ok()), len);
    let (status, start, end) = match range {
        RangeAsk::Whole => (StatusCode::OK, 0, len),
        RangeAsk::Part(r) => (StatusCode::PARTIAL_CONTENT, r.start, r.end),
        RangeAsk::Unsatisfiable => {
            metrics.file_request("ok");
            return (
                StatusCode::RANGE_NOT_SATISFIABLE,
                [(header::CONTENT_RANGE, format!("bytes */{len}"))],
            )
                .into_response();
        }
    };
    let mut res = Response::builder()
        .status(status)
        .header(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        )
        .header(header::CONTENT_LENGTH, end - start)
        .header(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"))
        .header(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if status == StatusCode::PARTIAL_CONTENT {
        res = res.header(header::CONTENT_RANGE, format!("bytes {start}-{}/{len}", end - 1));
    }
    metrics.file_request("ok");
    if method == Method::HEAD || start == end {
        return res.body(Body::empty()).unwrap_or_else(|e| internal(e.to_string()));
    }
    let mut file = tokio::fs::File::from_std(file);
    if start > 0
        && let Err(e) = file.seek(SeekFrom::Start(start)).await
    {
        return internal(format!("cannot seek in the file: {}", e.kind()));
    }
    let stream = tokio_util::io::ReaderStream::with_capacity(file.take(end - start), CHUNK).map(move |chunk| {
        if let Ok(bytes) = &chunk {
            metrics.file_bytes_sent(bytes.len() as u64);
        }
        chunk
    });
    res.body(Body::from_stream(stream))
        .unwrap_or_else(|e| internal(e.to_string()))
}

/// 404 from a controller that signs no URLs.
fn no_key(what: &str, urls: &str) -> Response {
    ApiError::NotFound(format!(
        "this controller {what} (start it with --file-url-base to sign {urls})"
    ))
    .into_response()
}

fn internal(message: String) -> Response {
    ApiError::Internal(message).into_response()
}

/// Opens `rel` (`/`-separated) below the source folder `root`: folder by
/// folder without following a symlink unless the job follows them, never
/// waiting on a FIFO; then the open file must be a regular file whose real
/// place is under the allowed folders.
fn open_source_file(
    policy: &PathPolicy,
    root: &Path,
    rel: &str,
    follow_symlinks: bool,
) -> Result<(std::fs::File, u64), Refused> {
    let not_found = || {
        (
            "notFound",
            ApiError::NotFound(format!("no file {rel} in {}", root.display())),
        )
    };
    let refused_link = || {
        (
            "notAllowed",
            ApiError::Forbidden(format!(
                "{rel} in {} goes through a symlink, and its job does not follow symlinks",
                root.display()
            )),
        )
    };
    let parts: Vec<&str> = rel.split('/').collect();
    if !root.is_absolute() || parts.iter().any(|p| p.is_empty() || *p == "." || *p == "..") {
        return Err((
            "notAllowed",
            ApiError::Forbidden(format!("{rel:?} is not a plain path below an absolute folder")),
        ));
    }
    let io_error = |e: rustix::io::Errno| -> Refused {
        match e {
            rustix::io::Errno::NOENT => not_found(),
            rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR if !follow_symlinks => refused_link(),
            rustix::io::Errno::NOTDIR => not_found(),
            e => (
                "error",
                ApiError::Internal(format!("cannot open {rel}: {}", std::io::Error::from(e).kind())),
            ),
        }
    };
    let dir_flags = OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC;
    // NB: O_NONBLOCK: opening a FIFO planted in the folder would wait for
    // a writer forever; it changes nothing for a regular file.
    let file_flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let mut dir: OwnedFd = rustix::fs::open(root, dir_flags, Mode::empty()).map_err(io_error)?;
    let fd = if follow_symlinks {
        rustix::fs::openat(&dir, rel, file_flags, Mode::empty()).map_err(io_error)?
    } else {
        let (last, folders) = parts.split_last().expect("split yields one part at least");
        for folder in folders {
            dir = rustix::fs::openat(&dir, *folder, dir_flags | OFlags::NOFOLLOW, Mode::empty()).map_err(io_error)?;
        }
        rustix::fs::openat(&dir, *last, file_flags | OFlags::NOFOLLOW, Mode::empty()).map_err(io_error)?
    };
    let real = safe_fs::real_path_of(&fd).map_err(|e| {
        (
            "error",
            ApiError::Internal(format!("cannot tell where {rel} is: {}", e.kind())),
        )
    })?;
    if !policy.allows_real(&real) {
        return Err((
            "notAllowed",
            ApiError::Forbidden(format!(
                "{rel} in {} is not under a path this controller allows",
                root.display()
            )),
        ));
    }
    let file = std::fs::File::from(fd);
    let meta = file
        .metadata()
        .map_err(|e| ("error", ApiError::Internal(format!("cannot read {rel}: {}", e.kind()))))?;
    if !meta.is_file() {
        return Err(not_found());
    }
    Ok((file, meta.len()))
}

/// Most bytes one staged file may have (a searchable PDF of a task's pages
/// is tens of MB; nothing a worker stages comes near this).
pub const MAX_STAGED_BYTES: u64 = 1 << 30;
/// Most delivery folders of one task attempt (a redelivery makes a new
/// one): an upload URL cannot be used to fill the disk with folders.
pub const MAX_DELIVERIES_PER_TASK: usize = 4;
/// An upload not finished in this long is cut off (the connection's idle
/// timeout cuts a stalled one sooner).
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(600);
/// The longest delivery folder name accepted.
const MAX_NAME: usize = 200;

/// A temporary file being uploaded; removed when dropped unless it was
/// renamed into place (a handler dropped mid-upload leaves nothing).
struct Pending {
    dir: Arc<SafeDir>,
    tmp: Option<String>,
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(tmp) = self.tmp.take() {
            self.dir.discard(&tmp);
        }
    }
}

/// `PUT /files/staged?output=…&job=…&prefix=…&expires=…&sig=…&name=…&file=…`:
/// one file a worker staged (an artefact, a long text) for a delivery, from
/// a worker with no mount of the output folder. Written as workers write
/// staging on a mount: into the delivery's own folder under the job's
/// staging folder, reached from the output folder without following a
/// symlink, under a temporary name renamed into place once whole (a
/// retried upload replaces it).
pub(super) async fn receive(State(state): State<ApiState>, RawQuery(raw): RawQuery, body: Body) -> Response {
    let metrics = state.metrics().clone();
    let Some(key) = state.file_key() else {
        return no_key("takes no staged files", "upload URLs");
    };
    let query = StageQuery::parse(raw.as_deref().unwrap_or(""));
    let grant = match key.verify_stage(&query, chrono::Utc::now().timestamp()) {
        Ok(g) => g,
        Err(refusal) => {
            metrics.staged_file_received(
                if refusal == Refusal::Expired {
                    "expired"
                } else {
                    "refused"
                },
                0,
            );
            return ApiError::Forbidden(refusal.to_string()).into_response();
        }
    };
    let (name, file) = match check_names(&grant.prefix, query.name.as_deref(), query.file.as_deref()) {
        Ok(n) => n,
        Err(message) => {
            metrics.staged_file_received("badRequest", 0);
            return ApiError::BadRequest(message).into_response();
        }
    };
    let policy = state.paths().clone();
    let staged_name = file.clone();
    let opened = tokio::task::spawn_blocking(move || {
        open_delivery(
            &policy,
            Path::new(&grant.output),
            &grant.job,
            &grant.prefix,
            &name,
            &staged_name,
        )
    })
    .await;
    let (pending, out) = match opened {
        Ok(Ok(o)) => o,
        Ok(Err((result, e))) => {
            metrics.staged_file_received(result, 0);
            return e.into_response();
        }
        Err(e) => {
            metrics.staged_file_received("error", 0);
            return internal(format!("opening the staging folder stopped: {e}"));
        }
    };
    let mut out = tokio::fs::File::from_std(out);
    let copied = tokio::time::timeout(UPLOAD_TIMEOUT, copy_bounded(body, &mut out)).await;
    let written = match copied {
        Ok(Ok(n)) => n,
        Ok(Err((result, e, n))) => {
            metrics.staged_file_received(result, n);
            return e.into_response();
        }
        Err(_) => {
            metrics.staged_file_received("error", 0);
            return ApiError::Timeout(format!(
                "the upload did not finish within {}s",
                UPLOAD_TIMEOUT.as_secs()
            ))
            .into_response();
        }
    };
    let committed = tokio::task::spawn_blocking(move || {
        let mut pending = pending;
        out.try_into_std()
            .map_err(|_| std::io::Error::other("the file is still in use"))
            .and_then(|f| f.sync_all())?;
        let tmp = pending.tmp.take().unwrap_or_default();
        pending.dir.commit(&tmp, std::ffi::OsStr::new(&file))
    })
    .await;
    match committed {
        Ok(Ok(())) => {
            metrics.staged_file_received("ok", written);
            (
                StatusCode::CREATED,
                axum::Json(serde_json::json!({"success": true, "data": {"bytes": written}})),
            )
                .into_response()
        }
        Ok(Err(e)) => {
            metrics.staged_file_received("error", written);
            internal(format!("cannot keep the staged file: {}", e.kind()))
        }
        Err(e) => {
            metrics.staged_file_received("error", written);
            internal(format!("keeping the staged file stopped: {e}"))
        }
    }
}

/// A plain name: letters, digits, `. _ -`, not starting with a dot.
fn plain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// The delivery folder and file names of an upload, checked: one plain
/// name starting with the granted prefix, and one of the names a worker
/// stages.
fn check_names(prefix: &str, name: Option<&str>, file: Option<&str>) -> Result<(String, String), String> {
    let (Some(name), Some(file)) = (name, file) else {
        return Err("an upload names its folder (name) and file (file)".to_owned());
    };
    if !plain(name) || !name.starts_with(prefix) || name.len() == prefix.len() {
        return Err(format!(
            "name: a delivery folder is one plain name (letters, digits, . _ -) starting with {prefix:?}"
        ));
    }
    if !skep_api::STAGED_FILES.contains(&file) {
        return Err(format!(
            "file: {file:?} is not a file workers stage ({})",
            skep_api::STAGED_FILES.join(", ")
        ));
    }
    Ok((name.to_owned(), file.to_owned()))
}

/// Opens the job's staging folder (which must exist: the controller makes
/// it before dispatching, and a job that ended has none) from the output
/// folder without following a symlink, checks where it really is, makes
/// the delivery's folder in it (at most [`MAX_DELIVERIES_PER_TASK`] per
/// task attempt) and a new temporary file there.
fn open_delivery(
    policy: &PathPolicy,
    output: &Path,
    job: &str,
    prefix: &str,
    name: &str,
    file: &str,
) -> Result<(Pending, std::fs::File), Refused> {
    let error = |what: &str, e: std::io::Error| ("error", ApiError::Internal(format!("{what}: {e}")));
    if !output.is_absolute() || !plain(job) {
        return Err((
            "notAllowed",
            ApiError::Forbidden("the grant names no plain staging folder".to_owned()),
        ));
    }
    let staging = match SafeDir::open_existing(output, &Path::new(STAGING_DIR).join(job)) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err((
                "gone",
                ApiError::NotFound("the job's staging folder is gone (the job ended or was deleted)".to_owned()),
            ));
        }
        Err(e) => return Err(error("cannot open the job's staging folder", e)),
    };
    let real = staging
        .real_path()
        .map_err(|e| error("cannot tell where the staging folder is", e))?;
    if !policy.allows_real(&real) {
        return Err((
            "notAllowed",
            ApiError::Forbidden("the job's staging folder is not under a path this controller allows".to_owned()),
        ));
    }
    let exists = std::fs::symlink_metadata(staging.join(name)).is_ok();
    if !exists {
        let deliveries = std::fs::read_dir(staging.join("."))
            .map_err(|e| error("cannot list the staging folder", e))?
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_str().is_some_and(|n| n.starts_with(prefix)))
            .count();
        if deliveries >= MAX_DELIVERIES_PER_TASK {
            return Err((
                "badRequest",
                ApiError::Conflict(format!(
                    "this task attempt has {deliveries} delivery folders already (at most {MAX_DELIVERIES_PER_TASK})"
                )),
            ));
        }
    }
    let delivery = staging.create_child(std::ffi::OsStr::new(name)).map_err(|e| {
        (
            "notAllowed",
            ApiError::Forbidden(format!("cannot open the delivery's staging folder: {e}")),
        )
    })?;
    let (tmp, out) = delivery
        .create_temp(std::ffi::OsStr::new(file))
        .map_err(|e| error("cannot make a staged file", e))?;
    Ok((
        Pending {
            dir: Arc::new(delivery),
            tmp: Some(tmp),
        },
        out,
    ))
}

/// Copies the body into `out`, at most [`MAX_STAGED_BYTES`]; the bytes
/// written.
async fn copy_bounded(body: Body, out: &mut tokio::fs::File) -> Result<u64, (&'static str, ApiError, u64)> {
    let mut stream = body.into_data_stream();
    let mut n = 0u64;
    let write_error = |e: std::io::Error, n| {
        (
            "error",
            ApiError::Internal(format!("cannot write the staged file: {}", e.kind())),
            n,
        )
    };
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ("error", ApiError::BadRequest(format!("the upload broke off: {e}")), n))?;
        n += chunk.len() as u64;
        if n > MAX_STAGED_BYTES {
            return Err((
                "tooLarge",
                ApiError::TooLarge(format!("a staged file is at most {MAX_STAGED_BYTES} bytes")),
                n,
            ));
        }
        out.write_all(&chunk).await.map_err(|e| write_error(e, n))?;
    }
    out.flush().await.map_err(|e| write_error(e, n))?;
    Ok(n)
}
