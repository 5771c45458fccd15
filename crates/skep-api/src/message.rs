//! The wire format between the controller and the workers: one
//! [`TaskMessage`] per file or page range on the pool's task topic, one
//! [`ResultMessage`] per processed delivery on the results topic. JSON with
//! a version field `v`; a reader rejects a version it does not know instead
//! of guessing.
//!
//! Version 2 (page ranges, PDF/Office options, artefacts) replaced version
//! 1; a v2 worker answers a v1 task with a `badMessage` failure that says
//! to upgrade the controller.

use serde::{Deserialize, Serialize};

use crate::PdfMode;

/// The wire version this build writes and reads.
pub const WIRE_VERSION: u16 = 2;

/// Topic the workers of `pool` consume.
pub fn task_topic(pool: &str) -> String {
    format!("skep.tasks.{pool}")
}

/// Topic every worker publishes results to and the controller consumes.
pub const RESULTS_TOPIC: &str = "skep.results";

/// Largest text a result message carries inline; a longer one is written
/// to the task's staging folder as [`STAGED_TEXT_FILE`]. Well under NSQ's
/// default 1 MiB message limit.
pub const MAX_INLINE_TEXT: usize = 256 * 1024;
/// The file a worker writes a text longer than [`MAX_INLINE_TEXT`] to.
pub const STAGED_TEXT_FILE: &str = "text.txt";
/// The staged text layer of a PDF input.
pub const STAGED_LAYER_FILE: &str = "layer.pdf";
/// Every name a worker stages in a delivery's folder.
pub const STAGED_FILES: [&str; 6] = [
    "out.hocr",
    "out.xml",
    "out.tsv",
    "out.pdf",
    STAGED_LAYER_FILE,
    STAGED_TEXT_FILE,
];

/// Whether two ETags name the same version: a weak `W/` mark and the
/// quotes aside (stores differ in what they quote where).
pub fn same_etag(a: &[u8], b: &[u8]) -> bool {
    let bare = |t: &[u8]| {
        let t = t.strip_prefix(b"W/").unwrap_or(t);
        let t = t.strip_prefix(b"\"").unwrap_or(t);
        t.strip_suffix(b"\"").unwrap_or(t).to_vec()
    };
    bare(a) == bare(b)
}

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("malformed message: {0}")]
    Malformed(#[source] serde_json::Error),
    #[error("unsupported wire version {found} (this build reads {WIRE_VERSION})")]
    Version { found: u16 },
}

/// Pages `first..=last` of a file, 1-based.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageRange {
    pub first: u32,
    pub last: u32,
}

impl PageRange {
    pub fn len(&self) -> u32 {
        self.last.saturating_sub(self.first) + 1
    }

    pub fn is_empty(&self) -> bool {
        self.last < self.first
    }

    /// `pages` pages cut into ranges of `per_task` pages.
    pub fn split(pages: u32, per_task: u32) -> Vec<PageRange> {
        let per = per_task.max(1);
        (0..pages.div_ceil(per))
            .map(|i| PageRange {
                first: i * per + 1,
                last: ((i + 1) * per).min(pages),
            })
            .collect()
    }
}

impl std::fmt::Display for PageRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

/// A per-file output a worker makes (into the task's staging folder) and
/// the controller lands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Artefact {
    Hocr,
    Alto,
    Tsv,
    Pdf,
}

impl Artefact {
    pub const ALL: [Artefact; 4] = [Artefact::Hocr, Artefact::Alto, Artefact::Tsv, Artefact::Pdf];

    /// Sub-folder of the output folder.
    pub fn folder(self) -> &'static str {
        match self {
            Artefact::Hocr => "hocr",
            Artefact::Alto => "alto",
            Artefact::Tsv => "tsv",
            Artefact::Pdf => "pdf",
        }
    }

    /// Extension appended to the file's relative path.
    pub fn extension(self) -> &'static str {
        match self {
            Artefact::Hocr => "hocr",
            Artefact::Alto => "xml",
            Artefact::Tsv => "tsv",
            Artefact::Pdf => "pdf",
        }
    }

    /// The file's name in a staging folder.
    pub fn staged_name(self) -> &'static str {
        match self {
            Artefact::Hocr => "out.hocr",
            Artefact::Alto => "out.xml",
            Artefact::Tsv => "out.tsv",
            Artefact::Pdf => "out.pdf",
        }
    }
}

/// One file, or one page range of a file, to read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskMessage {
    pub v: u16,
    pub job: String,
    pub job_uid: String,
    /// The file's index in the job (stable across restarts).
    pub index: u64,
    /// 0 for a whole file; 1.. for the ranges of a split file.
    pub part: u32,
    /// The pages to read (a range task), or `None` for the whole file: a
    /// whole file with more than `pagesPerTask` pages is answered with
    /// [`Outcome::Split`] instead of being read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pages: Option<PageRange>,
    /// Absolute path, the same on every worker node that mounts the source.
    pub path: String,
    /// A URL that reads the same file, for a worker that cannot see `path`
    /// (signed by the controller, expiring; `None` when the controller
    /// signs none). Older workers ignore it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Where a worker that cannot see `staging` uploads what it stages
    /// (a signed URL; it appends `&name=FOLDER&file=FILE`); `None` when
    /// the controller signs none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload: Option<String>,
    /// The object's size as listed (object sources): a worker fails a read
    /// of any other size as `changed`. Older workers ignore it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// The object's ETag as listed: a worker fetches with `If-Match`, so a
    /// replaced object is never read as the listed one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// 1-based attempt the controller dispatched.
    pub attempt: u32,
    pub max_attempts: u32,
    pub timeout_ms: u64,
    pub languages: Vec<String>,
    pub page_seg_mode: u8,
    pub dpi: u32,
    pub pages_per_task: u32,
    pub pdf: PdfMode,
    pub auto_rotate: bool,
    /// Artefacts to make for this task, into a new folder under `staging`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artefacts: Vec<Artefact>,
    /// The job's staging folder (absolute, shared with the controller):
    /// the worker makes one new folder in it per delivery for artefacts
    /// and long texts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staging: Option<String>,
}

impl TaskMessage {
    /// A first attempt at the whole file `path` with every job default
    /// (English, no artefacts, no staging folder); set what differs.
    pub fn for_file(job: &str, job_uid: &str, index: u64, path: impl Into<String>) -> Self {
        Self {
            v: WIRE_VERSION,
            job: job.to_owned(),
            job_uid: job_uid.to_owned(),
            index,
            part: 0,
            pages: None,
            path: path.into(),
            url: None,
            upload: None,
            size: None,
            etag: None,
            attempt: 1,
            max_attempts: crate::DEFAULT_MAX_ATTEMPTS,
            timeout_ms: crate::DEFAULT_FILE_TIMEOUT_SECONDS * 1000,
            languages: vec!["eng".to_owned()],
            page_seg_mode: crate::DEFAULT_PAGE_SEG_MODE,
            dpi: crate::DEFAULT_DPI,
            pages_per_task: crate::DEFAULT_PAGES_PER_TASK,
            pdf: PdfMode::Auto,
            auto_rotate: true,
            artefacts: Vec::new(),
            staging: None,
        }
    }
}

/// The outcome of one delivery of a task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResultMessage {
    pub v: u16,
    pub job: String,
    pub job_uid: String,
    pub index: u64,
    pub part: u32,
    /// The attempt of the task message this answers.
    pub attempt: u32,
    pub outcome: Outcome,
    pub duration_ms: u64,
    pub worker: WorkerRef,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "status")]
pub enum Outcome {
    #[serde(rename_all = "camelCase")]
    Succeeded {
        /// The text, pages joined by a form feed line (`"\n\x0c\n"`);
        /// empty when `textStaged`.
        text: String,
        /// Mean confidence over the pages that had text, 0-100.
        confidence: f32,
        /// Pages read (of the range, for a range task).
        pages: u32,
        words: u64,
        /// Per page, in page order.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        page_info: Vec<PageInfo>,
        /// The folder (a name in the task's staging folder) holding this
        /// delivery's artefacts, and the text when `textStaged`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        staged: Option<String>,
        /// The text was longer than [`MAX_INLINE_TEXT`] and is in
        /// `staged/`[`STAGED_TEXT_FILE`].
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        text_staged: bool,
    },
    #[serde(rename_all = "camelCase")]
    Failed { reason: FailureReason, error: String },
    /// The whole file has this many pages, more than `pagesPerTask`: the
    /// controller dispatches it as page ranges. Nothing was read.
    #[serde(rename_all = "camelCase")]
    Split { pages: u32 },
}

/// Where a page's text came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PageSource {
    /// The PDF's own text layer (or an Office document's text).
    Text,
    /// OCR.
    Ocr,
}

/// What happened to one page.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PageInfo {
    /// 1-based page number in the file.
    pub number: u32,
    pub source: PageSource,
    /// Mean word confidence, 0-100 (100 for text-layer pages).
    pub confidence: f32,
    /// Clockwise degrees the page was turned before OCR: 0, 90, 180, 270.
    pub rotation: u16,
}

/// Which worker produced a result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkerRef {
    pub id: String,
    pub node: String,
}

/// Why a file failed. A closed set, so it can label metrics and reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FailureReason {
    /// The file is not there (moved or deleted after the scan).
    NotFound,
    /// An object replaced after the scan listed it (another size or ETag):
    /// the listed version is gone, so no attempt can read it.
    Changed,
    /// It could not be read (permissions, I/O error).
    Unreadable,
    /// Zero bytes.
    Empty,
    /// Not an image format the engine reads.
    Unsupported,
    /// A known format whose data does not decode.
    Corrupt,
    /// A password-protected or encrypted document (PDF, Office).
    Encrypted,
    /// Larger than the worker accepts.
    TooLarge,
    /// Recognition took longer than the job's `fileTimeoutSeconds`.
    Timeout,
    /// The engine could not start or failed (missing language data, ...).
    Engine,
    /// Delivered more often than `maxAttempts` without a result (a worker
    /// died on it each time) or its dispatch lease ran out too often.
    AttemptsExceeded,
    /// The task message itself was unreadable.
    BadMessage,
}

impl FailureReason {
    /// Whether another attempt could succeed. Permanent failures end the
    /// file at once, whatever attempts remain.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            FailureReason::Unreadable | FailureReason::Timeout | FailureReason::Engine
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::NotFound => "notFound",
            FailureReason::Changed => "changed",
            FailureReason::Unreadable => "unreadable",
            FailureReason::Empty => "empty",
            FailureReason::Unsupported => "unsupported",
            FailureReason::Corrupt => "corrupt",
            FailureReason::Encrypted => "encrypted",
            FailureReason::TooLarge => "tooLarge",
            FailureReason::Timeout => "timeout",
            FailureReason::Engine => "engine",
            FailureReason::AttemptsExceeded => "attemptsExceeded",
            FailureReason::BadMessage => "badMessage",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        ALL_REASONS.iter().copied().find(|r| r.as_str() == s)
    }
}

/// Every reason, for metrics that pre-register their labels.
pub const ALL_REASONS: [FailureReason; 12] = [
    FailureReason::NotFound,
    FailureReason::Changed,
    FailureReason::Unreadable,
    FailureReason::Empty,
    FailureReason::Unsupported,
    FailureReason::Corrupt,
    FailureReason::Encrypted,
    FailureReason::TooLarge,
    FailureReason::Timeout,
    FailureReason::Engine,
    FailureReason::AttemptsExceeded,
    FailureReason::BadMessage,
];

impl std::fmt::Display for FailureReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Deserialize)]
struct VersionProbe {
    v: u16,
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, WireError> {
    let probe: VersionProbe = serde_json::from_slice(bytes).map_err(WireError::Malformed)?;
    if probe.v != WIRE_VERSION {
        return Err(WireError::Version { found: probe.v });
    }
    serde_json::from_slice(bytes).map_err(WireError::Malformed)
}

impl TaskMessage {
    pub fn encode(&self) -> Vec<u8> {
        // NB: serialising these plain structs to JSON cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        decode(bytes)
    }
}

impl ResultMessage {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        decode(bytes)
    }
}

/// Topic every worker publishes its heartbeat to (an ephemeral topic: a
/// broker keeps only fresh beats while no controller reads them).
pub const WORKERS_TOPIC: &str = "skep.workers.beats";

/// How often a worker says it is alive.
pub const BEAT_INTERVAL_MS: u64 = 10_000;

/// A worker's heartbeat: who it is, where, how many files it reads at
/// once and has read. The controller sizes a pool's dispatch window by the
/// slots of the workers beating on it, and lists them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkerBeat {
    pub v: u16,
    pub id: String,
    pub node: String,
    pub pool: String,
    pub slots: u32,
    /// The worker's version (its crate version).
    pub version: String,
    pub succeeded: u64,
    pub failed: u64,
    /// Tasks being read now.
    pub in_flight: u32,
    /// The worker's next beat is due within this (the controller marks it
    /// stale after three missed beats).
    pub interval_ms: u64,
    /// The last beat of a worker that is stopping.
    #[serde(default)]
    pub leaving: bool,
    /// When the worker sent it (Unix milliseconds, its own clock); 0 when
    /// unknown. A beat much older than its interval (read from a backlog)
    /// says nothing about the worker now.
    #[serde(default)]
    pub sent_ms: i64,
}

impl WorkerBeat {
    /// A beat of a worker that has read nothing yet, every `interval_ms`.
    pub fn new(id: &str, node: &str, pool: &str, slots: u32, interval_ms: u64) -> Self {
        Self {
            v: WIRE_VERSION,
            id: id.to_owned(),
            node: node.to_owned(),
            pool: pool.to_owned(),
            slots,
            version: String::new(),
            succeeded: 0,
            failed: 0,
            in_flight: 0,
            interval_ms,
            leaving: false,
            sent_ms: 0,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        decode(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_beat_round_trips() {
        let beat = WorkerBeat {
            version: "0.1.0".into(),
            succeeded: 10,
            failed: 1,
            in_flight: 3,
            ..WorkerBeat::new("w1", "host-a", "tesseract", 4, BEAT_INTERVAL_MS)
        };
        assert_eq!(WorkerBeat::decode(&beat.encode()).unwrap(), beat);
    }

    fn task() -> TaskMessage {
        TaskMessage {
            v: WIRE_VERSION,
            job: "j".into(),
            job_uid: "u".into(),
            index: 7,
            part: 0,
            pages: None,
            path: "/data/a.png".into(),
            url: None,
            upload: None,
            size: None,
            etag: None,
            attempt: 1,
            max_attempts: 3,
            timeout_ms: 1000,
            languages: vec!["eng".into()],
            page_seg_mode: 6,
            dpi: 300,
            pages_per_task: 8,
            pdf: PdfMode::Auto,
            auto_rotate: true,
            artefacts: vec![Artefact::Hocr],
            staging: Some("/out/.skep-staging/u".into()),
        }
    }

    #[test]
    fn every_staged_name_is_one_an_upload_may_carry() {
        for a in Artefact::ALL {
            assert!(STAGED_FILES.contains(&a.staged_name()), "{a:?}");
        }
        assert!(STAGED_FILES.contains(&STAGED_TEXT_FILE));
    }

    #[test]
    fn task_round_trips() {
        let t = task();
        assert_eq!(TaskMessage::decode(&t.encode()).unwrap(), t);
    }

    #[test]
    fn result_round_trips_with_tagged_outcome() {
        let r = ResultMessage {
            v: WIRE_VERSION,
            job: "j".into(),
            job_uid: "u".into(),
            index: 1,
            part: 0,
            attempt: 2,
            outcome: Outcome::Failed {
                reason: FailureReason::Corrupt,
                error: "bad png".into(),
            },
            duration_ms: 5,
            worker: WorkerRef {
                id: "w".into(),
                node: "n".into(),
            },
        };
        let bytes = r.encode();
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(json["outcome"]["status"], "failed");
        assert_eq!(json["outcome"]["reason"], "corrupt");
        assert_eq!(ResultMessage::decode(&bytes).unwrap(), r);
    }

    #[test]
    fn unknown_version_is_rejected() {
        let mut t = task();
        t.v = 99;
        let err = TaskMessage::decode(&t.encode()).unwrap_err();
        assert!(matches!(err, WireError::Version { found: 99 }), "{err}");
    }

    #[test]
    fn split_and_range_results_round_trip() {
        let mut t = task();
        t.part = 3;
        t.pages = Some(PageRange { first: 17, last: 24 });
        assert_eq!(TaskMessage::decode(&t.encode()).unwrap(), t);
        let split = Outcome::Split { pages: 700 };
        let json = serde_json::to_value(&split).unwrap();
        assert_eq!(json, serde_json::json!({"status": "split", "pages": 700}));
        let ok = Outcome::Succeeded {
            text: String::new(),
            confidence: 90.0,
            pages: 1,
            words: 3,
            page_info: vec![PageInfo {
                number: 17,
                source: PageSource::Ocr,
                confidence: 90.0,
                rotation: 90,
            }],
            staged: Some("17-3-1-w".into()),
            text_staged: true,
        };
        let back: Outcome = serde_json::from_value(serde_json::to_value(&ok).unwrap()).unwrap();
        assert_eq!(back, ok);
    }

    #[test]
    fn ranges_cover_every_page_once() {
        let r = PageRange::split(20, 8);
        assert_eq!(
            r,
            vec![
                PageRange { first: 1, last: 8 },
                PageRange { first: 9, last: 16 },
                PageRange { first: 17, last: 20 }
            ]
        );
        assert_eq!(r.iter().map(PageRange::len).sum::<u32>(), 20);
        assert_eq!(PageRange::split(8, 8).len(), 1);
        assert!(PageRange::split(0, 8).is_empty());
        assert_eq!(PageRange::split(3, 0).len(), 3, "a zero range size counts as 1");
    }

    #[test]
    fn version_1_tasks_are_refused() {
        let v1 = br#"{"v":1,"job":"j","jobUid":"u","index":0,"path":"/a.png","attempt":1,"maxAttempts":3,"timeoutMs":1,"languages":["eng"],"pageSegMode":6,"dpi":300}"#;
        assert!(matches!(TaskMessage::decode(v1), Err(WireError::Version { found: 1 })));
    }

    #[test]
    fn garbage_is_malformed() {
        assert!(matches!(TaskMessage::decode(b"not json"), Err(WireError::Malformed(_))));
    }

    #[test]
    fn reasons_parse_back() {
        for r in ALL_REASONS {
            assert_eq!(FailureReason::parse(r.as_str()), Some(r));
        }
        assert!(FailureReason::Timeout.is_retryable());
        assert!(!FailureReason::Corrupt.is_retryable());
    }
}
