//! `GET /files?path=…&expires=…&follow=…&sig=…`: one file of a folder
//! source, for a worker that has no mount of it (see [`crate::files`]).
//!
//! Not behind the API tokens: the URL's signature is the credential, and
//! it opens one file until it expires. A signed path is still checked
//! against `--allow-path` when it is served, and a job that does not follow
//! symlinks gets a file opened with `O_NOFOLLOW`. Whole files and single
//! byte ranges (`Range: bytes=…`), streamed; `HEAD` answers the length.
//!
//! `PUT /files/staged?…` is the other way: what a worker with no mount of
//! the output folder stages for a delivery (artefacts, a long text).

use std::io::SeekFrom;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use super::ApiState;
use super::error::ApiError;
use crate::controller::safe_fs::SafeDir;
use crate::files::{FileQuery, RangeAsk, Refusal, StageQuery, parse_range};

/// Bytes read from the file per chunk sent.
const CHUNK: usize = 256 * 1024;

/// The file endpoint's handler (GET and HEAD).
pub(super) async fn serve(
    State(state): State<ApiState>,
    method: Method,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let metrics = state.metrics().clone();
    let Some(key) = state.file_key() else {
        return ApiError::NotFound(
            "this controller serves no files (start it with --file-url-base to sign file URLs)".to_owned(),
        )
        .into_response();
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
    let path = granted.path.clone();
    let opened = tokio::task::spawn_blocking(move || open(&policy, Path::new(&path), granted.follow_symlinks)).await;
    let (file, len) = match opened {
        Ok(Ok(f)) => f,
        Ok(Err((result, e))) => {
            metrics.file_request(result);
            return e.into_response();
        }
        Err(e) => {
            metrics.file_request("error");
            return ApiError::Internal(format!("opening the file stopped: {e}")).into_response();
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

fn internal(message: String) -> Response {
    ApiError::Internal(message).into_response()
}

/// Opens a granted file: under the allowed paths, a regular file, not
/// through a final symlink unless the job follows them. The error carries
/// the metrics result.
fn open(
    policy: &crate::paths::PathPolicy,
    path: &Path,
    follow_symlinks: bool,
) -> Result<(std::fs::File, u64), (&'static str, ApiError)> {
    let not_found = || ("notFound", ApiError::NotFound(format!("no file {}", path.display())));
    if let Err(refused) = policy.check("file", path) {
        return Err(("notAllowed", ApiError::Forbidden(refused.0)));
    }
    // NB: O_NONBLOCK: opening a FIFO planted in the folder would wait for
    // a writer forever; it changes nothing for a regular file.
    let mut flags = rustix::fs::OFlags::NONBLOCK;
    if !follow_symlinks {
        flags |= rustix::fs::OFlags::NOFOLLOW;
    }
    let mut options = std::fs::OpenOptions::new();
    options.read(true).custom_flags(flags.bits() as i32);
    let file = match options.open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(not_found()),
        // NB: O_NOFOLLOW on a symlink fails with ELOOP.
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
            return Err((
                "notAllowed",
                ApiError::Forbidden(format!(
                    "{} is a symlink, and its job does not follow symlinks",
                    path.display()
                )),
            ));
        }
        Err(e) => {
            return Err((
                "error",
                ApiError::Internal(format!("cannot open {}: {}", path.display(), e.kind())),
            ));
        }
    };
    let meta = file.metadata().map_err(|e| {
        (
            "error",
            ApiError::Internal(format!("cannot read {}: {}", path.display(), e.kind())),
        )
    })?;
    if !meta.is_file() {
        return Err(not_found());
    }
    Ok((file, meta.len()))
}

/// Most bytes one staged file may have (a searchable PDF of a long scan is
/// large; nothing a worker stages comes near this).
pub const MAX_STAGED_BYTES: u64 = 4 << 30;
/// An upload not finished in this long is cut off (the connection's idle
/// timeout cuts a stalled one sooner).
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(600);
/// The longest delivery folder name accepted.
const MAX_NAME: usize = 200;

/// `PUT /files/staged?root=…&prefix=…&expires=…&sig=…&name=…&file=…`: one
/// file a worker staged (an artefact, a long text) for a delivery, from a
/// worker with no mount of the output folder. Written as workers write
/// staging on a mount: into the delivery's own folder under the job's
/// staging folder, reached without following symlinks, under a temporary
/// name renamed into place once whole (a retried upload replaces it).
pub(super) async fn receive(State(state): State<ApiState>, RawQuery(raw): RawQuery, body: Body) -> Response {
    let metrics = state.metrics().clone();
    let Some(key) = state.file_key() else {
        return ApiError::NotFound(
            "this controller takes no staged files (start it with --file-url-base to sign upload URLs)".to_owned(),
        )
        .into_response();
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
    let root = grant.root.clone();
    let opened = tokio::task::spawn_blocking(move || open_staging(&policy, Path::new(&root), &name, &file)).await;
    let (dir, tmp, out, file) = match opened {
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
            dir.discard(&tmp);
            metrics.staged_file_received(result, n);
            return e.into_response();
        }
        Err(_) => {
            dir.discard(&tmp);
            metrics.staged_file_received("error", 0);
            return ApiError::Timeout(format!(
                "the upload did not finish within {}s",
                UPLOAD_TIMEOUT.as_secs()
            ))
            .into_response();
        }
    };
    let committed = tokio::task::spawn_blocking(move || {
        out.try_into_std()
            .map_err(|_| std::io::Error::other("the file is still in use"))
            .and_then(|f| f.sync_all())?;
        dir.commit(&tmp, std::ffi::OsStr::new(&file))
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

/// The delivery folder and file names of an upload, checked: one plain
/// name starting with the granted prefix, and one of the names a worker
/// stages.
fn check_names(prefix: &str, name: Option<&str>, file: Option<&str>) -> Result<(String, String), String> {
    let (Some(name), Some(file)) = (name, file) else {
        return Err("an upload names its folder (name) and file (file)".to_owned());
    };
    let plain = name.len() <= MAX_NAME
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
    if !plain || !name.starts_with(prefix) || name.len() == prefix.len() {
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

type Refused = (&'static str, ApiError);

/// Opens (creating) the delivery's folder under the job's staging folder
/// and a new temporary file in it.
fn open_staging(
    policy: &crate::paths::PathPolicy,
    root: &Path,
    name: &str,
    file: &str,
) -> Result<(SafeDir, String, std::fs::File, String), Refused> {
    if let Err(refused) = policy.check("staging", root) {
        return Err(("notAllowed", ApiError::Forbidden(refused.0)));
    }
    // NB: the controller made the staging folder when it dispatched; gone
    // means the job ended (or was deleted): nothing is made anew.
    if !std::fs::symlink_metadata(root).is_ok_and(|m| m.is_dir()) {
        return Err((
            "gone",
            ApiError::NotFound("the job's staging folder is gone (the job ended or was deleted)".to_owned()),
        ));
    }
    let dir = SafeDir::open(root, Path::new(name)).map_err(|e| {
        (
            "error",
            ApiError::Internal(format!("cannot open the delivery's staging folder: {e}")),
        )
    })?;
    let (tmp, out) = dir.create_temp(std::ffi::OsStr::new(file)).map_err(|e| {
        (
            "error",
            ApiError::Internal(format!("cannot make a staged file: {}", e.kind())),
        )
    })?;
    Ok((dir, tmp, out, file.to_owned()))
}

/// Copies the body into `out`, at most [`MAX_STAGED_BYTES`]; the bytes
/// written.
async fn copy_bounded(body: Body, out: &mut tokio::fs::File) -> Result<u64, (&'static str, ApiError, u64)> {
    let mut stream = body.into_data_stream();
    let mut n = 0u64;
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
        out.write_all(&chunk).await.map_err(|e| {
            (
                "error",
                ApiError::Internal(format!("cannot write the staged file: {}", e.kind())),
                n,
            )
        })?;
    }
    out.flush().await.map_err(|e| {
        (
            "error",
            ApiError::Internal(format!("cannot write the staged file: {}", e.kind())),
            n,
        )
    })?;
    Ok(n)
}
