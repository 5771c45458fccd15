//! Signed file URLs: how a worker with no shared mount reads one file of a
//! folder source from the controller (`GET /files?…`), and hands back what
//! it stages for a delivery (`PUT /files/staged?…`).
//!
//! The controller signs, per dispatched task, the job's source folder, the
//! file's path in it, an expiry (the task's dispatch lease) and whether the
//! job follows symlinks, with HMAC-SHA256 under a key only controllers
//! hold. The URL carries those fields and the signature; the server
//! recomputes it and compares in constant time, so a URL opens exactly one
//! file, until it expires, and a changed byte anywhere refuses it. Nothing
//! is looked up to check a URL: serving a file costs a few opens, like
//! reading it from a mount. An upload URL is signed the same way, for a
//! kind of its own (a read grant never passes for an upload grant), over
//! the job's output folder, its uid and the task's `index-part-attempt-`
//! prefix of delivery folder names.
//!
//! The key comes from `--file-url-key-file` (several controllers, or a
//! controller restart with tasks in the queue, need the same key); without
//! one each process makes its own, and URLs of an earlier process are
//! refused (the worker reports the file `unreadable`, which is retried with
//! a fresh URL).

use std::collections::HashMap;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The fewest key bytes accepted from a key file.
pub const MIN_KEY_BYTES: usize = 32;

/// The path of the file endpoint.
pub const FILES_PATH: &str = "/files";

/// The path of the upload endpoint.
pub const STAGED_PATH: &str = "/files/staged";

/// The secret that signs and checks file URLs. Its `Debug` shows nothing.
#[derive(Clone)]
pub struct FileKey(std::sync::Arc<[u8]>);

impl std::fmt::Debug for FileKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FileKey(…)")
    }
}

/// Why a file URL is refused. The messages name no key material.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the URL's signature does not match it (changed, or signed by another key)")]
    BadSignature,
    #[error("the URL has expired")]
    Expired,
    #[error("the URL lacks a field its signature covers")]
    Incomplete,
}

/// The pairs of a raw query string, or `None` when a key comes twice (no
/// guessing which one was signed).
fn query_pairs(raw: &str) -> Option<HashMap<String, String>> {
    let mut pairs = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(raw.as_bytes()) {
        if pairs.insert(k.into_owned(), v.into_owned()).is_some() {
            return None;
        }
    }
    Some(pairs)
}

/// `expires` of a query: missing or malformed is `None`.
fn expiry(pairs: &HashMap<String, String>) -> Option<i64> {
    pairs.get("expires").and_then(|v| v.parse().ok())
}

/// The fields of a file URL's query.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileQuery {
    /// The job's source folder.
    pub root: Option<String>,
    /// The file's path in it, `/`-separated.
    pub path: Option<String>,
    pub expires: Option<i64>,
    /// `1` when the job follows symlinks, `0` otherwise.
    pub follow: Option<u8>,
    pub sig: Option<String>,
}

impl FileQuery {
    /// The fields of a raw query string; unknown keys are ignored, a
    /// malformed number is missing, and a repeated key makes the query
    /// incomplete.
    pub fn parse(raw: &str) -> Self {
        let Some(mut p) = query_pairs(raw) else {
            return FileQuery::default();
        };
        FileQuery {
            expires: expiry(&p),
            // NB: a malformed flag is kept as one no signature covers.
            follow: p.get("follow").map(|v| v.parse().unwrap_or(u8::MAX)),
            root: p.remove("root"),
            path: p.remove("path"),
            sig: p.remove("sig"),
        }
    }
}

/// A checked file URL: what the server may open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Granted {
    pub root: String,
    pub path: String,
    pub follow_symlinks: bool,
}

/// The fields of an upload URL's query (`PUT /files/staged?…`): the
/// signed grant, then the folder and file the worker names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StageQuery {
    /// The job's output folder.
    pub output: Option<String>,
    /// The job's uid: its staging folder is `<output>/.skep-staging/<uid>`.
    pub job: Option<String>,
    pub prefix: Option<String>,
    pub expires: Option<i64>,
    pub sig: Option<String>,
    /// The delivery's folder: one plain name starting with the prefix.
    pub name: Option<String>,
    /// One of the names a worker stages.
    pub file: Option<String>,
}

impl StageQuery {
    /// As [`FileQuery::parse`].
    pub fn parse(raw: &str) -> Self {
        let Some(mut p) = query_pairs(raw) else {
            return StageQuery::default();
        };
        StageQuery {
            expires: expiry(&p),
            output: p.remove("output"),
            job: p.remove("job"),
            prefix: p.remove("prefix"),
            sig: p.remove("sig"),
            name: p.remove("name"),
            file: p.remove("file"),
        }
    }
}

/// A checked upload URL: where its files may go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StageGrant {
    pub output: String,
    pub job: String,
    pub prefix: String,
}

impl FileKey {
    /// A fresh random key, for a controller given none.
    pub fn random() -> Self {
        let bytes: [u8; 32] = rand::random();
        FileKey(bytes.to_vec().into())
    }

    /// The key in `text` (a key file's content, surrounding white space
    /// ignored).
    pub fn from_text(text: &[u8]) -> Result<Self, String> {
        let trimmed = text.trim_ascii();
        if trimmed.len() < MIN_KEY_BYTES {
            return Err(format!(
                "the key has {} bytes; at least {MIN_KEY_BYTES} are needed (e.g. `head -c 32 /dev/urandom | base64`)",
                trimmed.len()
            ));
        }
        Ok(FileKey(trimmed.to_vec().into()))
    }

    /// The key held in the file at `path` (a Docker secret).
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let text = std::fs::read(path).map_err(|e| format!("cannot read {}: {}", path.display(), e.kind()))?;
        Self::from_text(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The MAC of one grant: its kind (a read URL never passes for an
    /// upload URL), expiry and fields.
    fn mac(&self, kind: &[u8], expires: i64, fields: &[&str]) -> HmacSha256 {
        // NB: length-prefixed fields: no two different grants sign the same
        // bytes.
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        mac.update(b"skep-file-url-v1\n");
        mac.update(&(kind.len() as u64).to_be_bytes());
        mac.update(kind);
        mac.update(&expires.to_be_bytes());
        for f in fields {
            mac.update(&(f.len() as u64).to_be_bytes());
            mac.update(f.as_bytes());
        }
        mac
    }

    fn read_mac(&self, root: &str, path: &str, expires: i64, follow: bool) -> HmacSha256 {
        self.mac(b"read", expires, &[root, path, if follow { "1" } else { "0" }])
    }

    fn stage_mac(&self, output: &str, job: &str, prefix: &str, expires: i64) -> HmacSha256 {
        self.mac(b"stage", expires, &[output, job, prefix])
    }

    fn encode(mac: HmacSha256) -> String {
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    /// Whether `sig` (URL-safe base64) is `mac`, in constant time.
    fn matches(mac: HmacSha256, sig: &str) -> Result<(), Refusal> {
        let sig = URL_SAFE_NO_PAD.decode(sig).map_err(|_| Refusal::BadSignature)?;
        mac.verify_slice(&sig).map_err(|_| Refusal::BadSignature)
    }

    /// The signature of a read grant of `path` in `root`.
    pub fn sign(&self, root: &str, path: &str, expires: i64, follow: bool) -> String {
        Self::encode(self.read_mac(root, path, expires, follow))
    }

    /// The signature of an upload grant: files into new folders named
    /// `prefix…` of the staging folder of job `job` in `output`.
    pub fn sign_stage(&self, output: &str, job: &str, prefix: &str, expires: i64) -> String {
        Self::encode(self.stage_mac(output, job, prefix, expires))
    }

    /// Checks a URL's query at `now` (Unix seconds); the comparison of the
    /// signature takes the same time wherever it differs. The expiry is
    /// checked after the signature: a forged URL learns nothing from which
    /// check refused it.
    pub fn verify(&self, q: &FileQuery, now: i64) -> Result<Granted, Refusal> {
        let (Some(root), Some(path), Some(expires), Some(follow), Some(sig)) =
            (&q.root, &q.path, q.expires, q.follow, &q.sig)
        else {
            return Err(Refusal::Incomplete);
        };
        if follow > 1 {
            return Err(Refusal::BadSignature);
        }
        Self::matches(self.read_mac(root, path, expires, follow == 1), sig)?;
        if now >= expires {
            return Err(Refusal::Expired);
        }
        Ok(Granted {
            root: root.clone(),
            path: path.clone(),
            follow_symlinks: follow == 1,
        })
    }

    /// Checks an upload URL's query at `now` (see [`FileKey::verify`]).
    pub fn verify_stage(&self, q: &StageQuery, now: i64) -> Result<StageGrant, Refusal> {
        let (Some(output), Some(job), Some(prefix), Some(expires), Some(sig)) =
            (&q.output, &q.job, &q.prefix, q.expires, &q.sig)
        else {
            return Err(Refusal::Incomplete);
        };
        Self::matches(self.stage_mac(output, job, prefix, expires), sig)?;
        if now >= expires {
            return Err(Refusal::Expired);
        }
        Ok(StageGrant {
            output: output.clone(),
            job: job.clone(),
            prefix: prefix.clone(),
        })
    }
}

/// What the controller puts in tasks: the base URL workers reach it at,
/// and the key.
#[derive(Clone, Debug)]
pub struct FileUrls {
    base: String,
    key: FileKey,
}

impl FileUrls {
    /// `base` is how workers reach this controller's HTTP server
    /// (`http://skep-controller:8080`, or `https://…` through a TLS proxy);
    /// it has no query, fragment or credentials.
    pub fn new(base: &str, key: FileKey) -> Result<Self, String> {
        let shown = skep_queue::redact(base);
        let url = url::Url::parse(base).map_err(|e| format!("{shown:?} is not a URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("{shown}: the file URL base must be http:// or https://"));
        }
        if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() || url.password().is_some() {
            return Err(format!(
                "{shown}: the file URL base takes no query, fragment or credentials"
            ));
        }
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            key,
        })
    }

    /// The URL a worker uploads a delivery's staged files to: new folders
    /// `prefix…` of the staging folder of job `job` in `output`, until
    /// `expires`. The worker appends `&name=FOLDER&file=FILE`.
    pub fn upload_url(&self, output: &str, job: &str, prefix: &str, expires: i64) -> String {
        let sig = self.key.sign_stage(output, job, prefix, expires);
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("output", output)
            .append_pair("job", job)
            .append_pair("prefix", prefix)
            .append_pair("expires", &expires.to_string())
            .append_pair("sig", &sig)
            .finish();
        format!("{}{STAGED_PATH}?{query}", self.base)
    }

    /// The URL that reads `path` (`/`-separated) in the source folder
    /// `root` until `expires` (Unix seconds).
    pub fn url(&self, root: &str, path: &str, expires: i64, follow_symlinks: bool) -> String {
        let sig = self.key.sign(root, path, expires, follow_symlinks);
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("root", root)
            .append_pair("path", path)
            .append_pair("expires", &expires.to_string())
            .append_pair("follow", if follow_symlinks { "1" } else { "0" })
            .append_pair("sig", &sig)
            .finish();
        format!("{}{FILES_PATH}?{query}", self.base)
    }
}

/// One byte range of a file, `start..end` (end exclusive).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

/// What a `Range` header asks of a file of `len` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeAsk {
    /// No usable range: the whole file (a malformed or multi-range header is
    /// ignored, as RFC 9110 allows).
    Whole,
    Part(ByteRange),
    /// No byte of the file is in the range (416).
    Unsatisfiable,
}

/// Parses a `Range` header for a file of `len` bytes: one range,
/// `bytes=A-B`, `bytes=A-` or `bytes=-N`.
pub fn parse_range(header: Option<&str>, len: u64) -> RangeAsk {
    // NB: the unit is case-insensitive (RFC 9110).
    let Some(spec) = header
        .map(str::trim)
        .and_then(|h| h.get(..6).filter(|u| u.eq_ignore_ascii_case("bytes=")).map(|_| &h[6..]))
    else {
        return RangeAsk::Whole;
    };
    if spec.contains(',') {
        return RangeAsk::Whole;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeAsk::Whole;
    };
    let num = |s: &str| -> Option<u64> {
        if s.is_empty() || s.len() > 20 || !s.bytes().all(|c| c.is_ascii_digit()) {
            None
        } else {
            s.parse().ok()
        }
    };
    match (a.is_empty(), b.is_empty()) {
        (true, true) => RangeAsk::Whole,
        // The last N bytes.
        (true, false) => match num(b) {
            None => RangeAsk::Whole,
            Some(0) => RangeAsk::Unsatisfiable,
            Some(_) if len == 0 => RangeAsk::Unsatisfiable,
            Some(n) => RangeAsk::Part(ByteRange {
                start: len.saturating_sub(n),
                end: len,
            }),
        },
        (false, _) => {
            let Some(start) = num(a) else {
                return RangeAsk::Whole;
            };
            let last = if b.is_empty() {
                u64::MAX
            } else {
                match num(b) {
                    Some(last) if last >= start => last,
                    _ => return RangeAsk::Whole,
                }
            };
            if start >= len {
                return RangeAsk::Unsatisfiable;
            }
            RangeAsk::Part(ByteRange {
                start,
                end: last.saturating_add(1).min(len),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> FileKey {
        FileKey::from_text(b"0123456789abcdef0123456789abcdef\n").unwrap()
    }

    fn query_of(url: &str) -> FileQuery {
        FileQuery::parse(url::Url::parse(url).unwrap().query().unwrap())
    }

    #[test]
    fn a_url_opens_its_file_until_it_expires() {
        let urls = FileUrls::new("http://ctl:8080/", key()).unwrap();
        let url = urls.url("/data/in", "a b&c=d.png", 1_000, false);
        assert!(
            url.starts_with("http://ctl:8080/files?root=%2Fdata%2Fin&path=a+b%26c%3Dd.png&expires=1000&follow=0&sig="),
            "{url}"
        );
        let q = query_of(&url);
        let granted = key().verify(&q, 999).unwrap();
        assert_eq!(
            (granted.root.as_str(), granted.path.as_str()),
            ("/data/in", "a b&c=d.png")
        );
        assert!(!granted.follow_symlinks);
        assert_eq!(key().verify(&q, 1_000), Err(Refusal::Expired));
    }

    #[test]
    fn any_changed_field_or_another_key_is_refused() {
        let urls = FileUrls::new("http://ctl:8080", key()).unwrap();
        let q = query_of(&urls.url("/data/in", "a.png", 1_000, false));
        let other_file = FileQuery {
            path: Some("b.png".into()),
            ..q.clone()
        };
        let other_root = FileQuery {
            root: Some("/etc".into()),
            ..q.clone()
        };
        // The same bytes cut differently between root and path.
        let shifted = FileQuery {
            root: Some("/data/in/a".into()),
            path: Some(".png".into()),
            ..q.clone()
        };
        let later = FileQuery {
            expires: Some(2_000),
            ..q.clone()
        };
        let follow = FileQuery {
            follow: Some(1),
            ..q.clone()
        };
        let mut flipped = q.sig.clone().unwrap().into_bytes();
        flipped[3] = if flipped[3] == b'A' { b'B' } else { b'A' };
        let tampered = FileQuery {
            sig: Some(String::from_utf8(flipped).unwrap()),
            ..q.clone()
        };
        let short = FileQuery {
            sig: Some(q.sig.clone().unwrap()[..10].to_owned()),
            ..q.clone()
        };
        let garbage = FileQuery {
            sig: Some("not base64 !".into()),
            ..q.clone()
        };
        for (what, bad) in [
            ("another file", other_file),
            ("another root", other_root),
            ("root and path cut elsewhere", shifted),
            ("a later expiry", later),
            ("symlinks followed", follow),
            ("a changed byte", tampered),
            ("a cut signature", short),
            ("not base64", garbage),
        ] {
            assert_eq!(key().verify(&bad, 0), Err(Refusal::BadSignature), "{what}");
        }
        // Even an expired forged URL is refused for its signature.
        let expired_forgery = FileQuery {
            path: Some("shadow".into()),
            ..q.clone()
        };
        assert_eq!(key().verify(&expired_forgery, 5_000), Err(Refusal::BadSignature));
        let other_key = FileKey::from_text(b"another key of thirty-two bytes!!").unwrap();
        assert_eq!(other_key.verify(&q, 0), Err(Refusal::BadSignature));
        assert_eq!(
            key().verify(&FileQuery { sig: None, ..q.clone() }, 0),
            Err(Refusal::Incomplete)
        );
    }

    #[test]
    fn a_repeated_or_malformed_field_makes_the_query_incomplete() {
        let urls = FileUrls::new("http://ctl", key()).unwrap();
        let url = urls.url("/r", "a", 1_000, false);
        let raw = url::Url::parse(&url).unwrap().query().unwrap().to_owned();
        assert_eq!(key().verify(&FileQuery::parse(&raw), 0).unwrap().path, "a");
        for bad in [
            format!("{raw}&path=b"),
            format!("path=b&{raw}"),
            raw.replace("expires=1000", "expires=1e3"),
            raw.replace("follow=0", "follow=x"),
        ] {
            assert!(key().verify(&FileQuery::parse(&bad), 0).is_err(), "{bad}");
        }
        assert_eq!(key().verify(&FileQuery::parse(""), 0), Err(Refusal::Incomplete));
    }

    #[test]
    fn an_upload_grant_is_not_a_read_grant_and_the_reverse() {
        let urls = FileUrls::new("http://ctl", key()).unwrap();
        let up = url::Url::parse(&urls.upload_url("/out", "uid", "3-0-1-", 1_000)).unwrap();
        let stage = StageQuery::parse(up.query().unwrap());
        let grant = key().verify_stage(&stage, 0).unwrap();
        assert_eq!(
            (grant.output.as_str(), grant.job.as_str(), grant.prefix.as_str()),
            ("/out", "uid", "3-0-1-")
        );
        assert_eq!(key().verify_stage(&stage, 1_000), Err(Refusal::Expired));
        for (what, bad) in [
            (
                "another prefix",
                StageQuery {
                    prefix: Some("3-0-2-".into()),
                    ..stage.clone()
                },
            ),
            (
                "another job",
                StageQuery {
                    job: Some("uid2".into()),
                    ..stage.clone()
                },
            ),
            (
                "another output",
                StageQuery {
                    output: Some("/etc".into()),
                    ..stage.clone()
                },
            ),
        ] {
            assert_eq!(key().verify_stage(&bad, 0), Err(Refusal::BadSignature), "{what}");
        }
        // The same signature presented as a read.
        let as_read = FileQuery {
            root: stage.output.clone(),
            path: stage.job.clone(),
            expires: stage.expires,
            follow: Some(0),
            sig: stage.sig.clone(),
        };
        assert_eq!(key().verify(&as_read, 0), Err(Refusal::BadSignature));
        let read = query_of(&urls.url("/out", "uid", 1_000, false));
        let as_stage = StageQuery {
            output: read.root.clone(),
            job: read.path.clone(),
            prefix: Some("0".into()),
            expires: read.expires,
            sig: read.sig.clone(),
            ..StageQuery::default()
        };
        assert_eq!(key().verify_stage(&as_stage, 0), Err(Refusal::BadSignature));
    }

    #[test]
    fn keys_and_bases_are_checked() {
        assert!(FileKey::from_text(b"short").unwrap_err().contains("at least 32"));
        assert!(FileKey::from_text(b"   \n").is_err());
        assert!(!format!("{:?}", key()).contains("0123"), "Debug hides the key");
        assert!(FileUrls::new("ftp://x", key()).is_err());
        assert!(FileUrls::new("https://x:8443", key()).is_ok());
        assert!(FileUrls::new("http://x/?a=b", key()).is_err());
        for bad in ["http://user:secret@x", "ftp://user:secret@x", "https://user:secret@x"] {
            let e = FileUrls::new(bad, key()).unwrap_err();
            assert!(!e.contains("secret"), "{e}");
        }
        assert!(FileUrls::new("not a url", key()).is_err());
        let a = FileKey::random();
        let b = FileKey::random();
        assert_ne!(a.sign("/r", "x", 1, false), b.sign("/r", "x", 1, false));
    }

    #[test]
    fn ranges() {
        use RangeAsk::*;
        let part = |start, end| Part(ByteRange { start, end });
        assert_eq!(parse_range(None, 100), Whole);
        assert_eq!(parse_range(Some("bytes=0-9"), 100), part(0, 10));
        assert_eq!(parse_range(Some("Bytes=0-9"), 100), part(0, 10));
        assert_eq!(parse_range(Some("bytes=90-"), 100), part(90, 100));
        assert_eq!(parse_range(Some("bytes=90-500"), 100), part(90, 100));
        assert_eq!(parse_range(Some("bytes=-10"), 100), part(90, 100));
        assert_eq!(parse_range(Some("bytes=-500"), 100), part(0, 100));
        assert_eq!(parse_range(Some("bytes=100-"), 100), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=-0"), 100), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=-5"), 0), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=5-1"), 100), Whole);
        assert_eq!(parse_range(Some("bytes=0-1,5-6"), 100), Whole);
        assert_eq!(parse_range(Some("items=0-1"), 100), Whole);
        assert_eq!(parse_range(Some("bytes=x-1"), 100), Whole);
        assert_eq!(parse_range(Some("bytes=-"), 100), Whole);
        assert_eq!(parse_range(Some("bytes"), 100), Whole);
        assert_eq!(parse_range(Some("bytes=99999999999999999999999-"), 100), Whole);
        assert_eq!(parse_range(Some("bytes=0-18446744073709551615"), 100), part(0, 100));
    }
}
