use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Artefact;

/// `apiVersion` of every BulkJob document.
pub const API_VERSION: &str = "skep.dev/v1";
/// `kind` of every BulkJob document.
pub const KIND: &str = "BulkJob";
/// The finalizer the controller puts on every job it has started to act on.
/// While it is present, deleting the job only marks it; the controller
/// cleans up (stops dispatch, scales back, purges tasks) and then removes it.
pub const FINALIZER: &str = "skep.dev/cleanup";

pub const DEFAULT_POOL: &str = "tesseract";
pub const DEFAULT_FILES_PER_WORKER: u32 = 100;
pub const DEFAULT_MIN_REPLICAS: u32 = 1;
pub const DEFAULT_MAX_REPLICAS: u32 = 10;
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
pub const DEFAULT_FILE_TIMEOUT_SECONDS: u64 = 300;
/// Tesseract page segmentation mode 6, "assume a single uniform block of
/// text": on noisy scans the CLI's default (3, automatic layout) lost whole
/// lines in our measurements, so skep defaults to 6 and lets a job choose.
pub const DEFAULT_PAGE_SEG_MODE: u8 = 6;
pub const DEFAULT_DPI: u32 = 300;
/// A PDF or multi-page TIFF with more pages than this is split into page
/// ranges of this many pages, one task each.
pub const DEFAULT_PAGES_PER_TASK: u32 = 8;
/// Most pages in one range (a task must finish within its timeout).
pub const MAX_PAGES_PER_TASK: u32 = 1_000;

/// A bulk OCR job: every supported file (images, PDFs, Office documents)
/// under `spec.source.path` (or object under `spec.source.url`) is read
/// once, with its text, the formats asked for and a report written to the
/// output folder (or uploaded under `spec.output.url`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(title = "BulkJob")]
pub struct BulkJob {
    /// Always `skep.dev/v1`.
    #[schemars(extend("const" = "skep.dev/v1"))]
    pub api_version: String,
    /// Always `BulkJob`.
    #[schemars(extend("const" = "BulkJob"))]
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: BulkJobSpec,
    /// Written by the controller; ignored when a document is applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<BulkJobStatus>,
}

impl BulkJob {
    /// A job with the given name and spec, as a user would write it.
    pub fn new(name: impl Into<String>, spec: BulkJobSpec) -> Self {
        Self {
            api_version: API_VERSION.to_owned(),
            kind: KIND.to_owned(),
            metadata: ObjectMeta {
                name: name.into(),
                ..ObjectMeta::default()
            },
            spec,
            status: None,
        }
    }

    pub fn name(&self) -> &str {
        &self.metadata.name
    }

    /// The store-assigned identity; empty before the job is first stored.
    pub fn uid(&self) -> &str {
        self.metadata.uid.as_deref().unwrap_or_default()
    }

    pub fn generation(&self) -> i64 {
        self.metadata.generation.unwrap_or(0)
    }

    pub fn status(&self) -> BulkJobStatus {
        self.status.clone().unwrap_or_default()
    }

    pub fn is_finished(&self) -> bool {
        self.status.as_ref().is_some_and(|s| s.phase.is_finished())
    }

    pub fn is_deleting(&self) -> bool {
        self.metadata.deletion_timestamp.is_some()
    }

    pub fn has_finalizer(&self) -> bool {
        self.metadata.finalizers.iter().any(|f| f == FINALIZER)
    }
}

/// Kubernetes-style object metadata. Only `name`, `labels` and
/// `annotations` are the user's; the store sets the rest.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectMeta {
    /// Unique name of the job: a lowercase RFC 1123 label (`a-z`, `0-9`,
    /// `-`; at most 63 characters).
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub name: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Set by the store when the job is created; a job deleted and applied
    /// again gets a new uid, and nothing of the old one leaks into it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// Incremented by the store when, and only when, the spec changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<DateTime<Utc>>,
    /// Set when deletion was requested; the job stays until its finalizers
    /// are gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_timestamp: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finalizers: Vec<String>,
}

/// What the user asks for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BulkJobSpec {
    pub source: SourceSpec,
    #[serde(default)]
    pub engine: EngineSpec,
    #[serde(default)]
    pub output: OutputSpec,
    #[serde(default)]
    pub scaling: ScalingSpec,
    /// How many times a file is tried before it is marked failed. A file
    /// whose error is permanent (empty, corrupt, unsupported) fails at once.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Per-file OCR time limit; a file that takes longer fails with reason
    /// `timeout` (and is retried while attempts remain).
    #[serde(default = "default_file_timeout_seconds")]
    pub file_timeout_seconds: u64,
    /// While true no new file is dispatched and the job asks for no workers;
    /// files already in flight finish.
    #[serde(default)]
    pub suspend: bool,
    /// Wall-clock limit from the job's start; past it the job fails with
    /// reason `DeadlineExceeded`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_deadline_seconds: Option<u64>,
    /// When set, a finished job (and its stored results) is deleted this many
    /// seconds after it finished. Output files stay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds_after_finished: Option<u64>,
    /// Higher runs first when jobs compete for the same workers.
    #[serde(default)]
    pub priority: i32,
    /// Who the job is for; jobs of one tenant share that tenant's weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(default)]
    pub plan: Plan,
    #[serde(default)]
    pub failure_policy: FailurePolicy,
    /// A PDF or multi-page TIFF with more pages than this becomes one task
    /// per range of this many pages, so that one long document spreads over
    /// every worker. Retries are per range. Default 8.
    #[serde(default = "default_pages_per_task")]
    #[schemars(range(min = 1, max = 1000))]
    pub pages_per_task: u32,
}

fn default_pages_per_task() -> u32 {
    DEFAULT_PAGES_PER_TASK
}

fn default_max_attempts() -> u32 {
    DEFAULT_MAX_ATTEMPTS
}
fn default_file_timeout_seconds() -> u64 {
    DEFAULT_FILE_TIMEOUT_SECONDS
}
fn default_true() -> bool {
    true
}

impl BulkJobSpec {
    /// A spec with every default, reading `path`.
    pub fn for_path(path: impl Into<String>) -> Self {
        Self {
            source: SourceSpec {
                path: path.into(),
                url: None,
                recursive: true,
                include: Vec::new(),
                exclude: Vec::new(),
                follow_symlinks: false,
            },
            engine: EngineSpec::default(),
            output: OutputSpec::default(),
            scaling: ScalingSpec::default(),
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            file_timeout_seconds: DEFAULT_FILE_TIMEOUT_SECONDS,
            suspend: false,
            active_deadline_seconds: None,
            ttl_seconds_after_finished: None,
            priority: 0,
            tenant: None,
            plan: Plan::default(),
            failure_policy: FailurePolicy::default(),
            pages_per_task: DEFAULT_PAGES_PER_TASK,
        }
    }
}

/// Where the files are: a folder (`path`) or an object-storage prefix
/// (`url`), exactly one of them. Workers read a folder's files at the same
/// path where they see it (a shared mount), else through the controller's
/// signed URLs; an object's through a presigned URL.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SourceSpec {
    /// Folder to scan. `skep apply` and `skep run` resolve a relative path
    /// against the folder of the YAML file.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    /// `s3://BUCKET/PREFIX`: the objects under the prefix (taken as a
    /// folder: `s3://b/scans` lists `scans/...`). Endpoint, region and
    /// credentials are the controller's (`--s3-*`), never the job's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Descend into subfolders.
    #[serde(default = "default_true")]
    pub recursive: bool,
    /// Globs (relative to `path`) a file must match; empty means all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<String>,
    /// Globs (relative to `path`) that exclude a file or a whole folder.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
    #[serde(default)]
    pub follow_symlinks: bool,
}

/// The OCR engine and how it reads a page.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EngineSpec {
    #[serde(default)]
    pub kind: EngineKind,
    /// Tesseract language codes, tried together (`eng`, `deu`, `chi_sim`).
    /// Each needs its traineddata on the worker nodes.
    #[serde(default = "default_languages")]
    #[schemars(length(min = 1), inner(regex(pattern = r"^[A-Za-z0-9_]{1,32}$")))]
    pub languages: Vec<String>,
    /// Tesseract page segmentation mode, 3-13 (3 automatic layout, 4 one
    /// column, 6 one uniform block, 11 sparse text). Default 6.
    #[serde(default = "default_page_seg_mode")]
    #[schemars(range(min = 3, max = 13))]
    pub page_seg_mode: u8,
    /// Resolution PDF pages are rasterised at for OCR, and assumed for
    /// images that do not record one. Default 300.
    #[serde(default = "default_dpi")]
    #[schemars(range(min = 70, max = 2400))]
    pub dpi: u32,
    /// How PDF pages are read: `auto` (default) takes a page's text layer
    /// when it has real text and OCRs the pages that have none, `ocr` OCRs
    /// every page, `text` never OCRs (pages without text come out empty).
    #[serde(default)]
    pub pdf: PdfMode,
    /// Detect pages scanned sideways or upside down (Tesseract's orientation
    /// detection) and turn them before OCR. Default true.
    #[serde(default = "default_true")]
    pub auto_rotate: bool,
}

/// How the pages of a PDF are read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum PdfMode {
    /// The text layer where a page has one, OCR where it has none.
    #[default]
    Auto,
    /// OCR every page, whatever text it has.
    Ocr,
    /// Never OCR: text layers only.
    Text,
}

impl PdfMode {
    /// The name a job document uses.
    pub fn as_str(self) -> &'static str {
        match self {
            PdfMode::Auto => "auto",
            PdfMode::Ocr => "ocr",
            PdfMode::Text => "text",
        }
    }
}

fn default_languages() -> Vec<String> {
    vec!["eng".to_owned()]
}
fn default_page_seg_mode() -> u8 {
    DEFAULT_PAGE_SEG_MODE
}
fn default_dpi() -> u32 {
    DEFAULT_DPI
}

impl Default for EngineSpec {
    fn default() -> Self {
        Self {
            kind: EngineKind::default(),
            languages: default_languages(),
            page_seg_mode: DEFAULT_PAGE_SEG_MODE,
            dpi: DEFAULT_DPI,
            pdf: PdfMode::default(),
            auto_rotate: true,
        }
    }
}

impl EngineSpec {
    /// The language string Tesseract takes (`eng+deu`).
    pub fn language_string(&self) -> String {
        self.languages.join("+")
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum EngineKind {
    #[default]
    Tesseract,
}

/// Where results go. `results.jsonl` (one line per file) is always written.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OutputSpec {
    /// Output folder; default `skep-output/<job name>` beside the YAML file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `s3://BUCKET/PREFIX` instead of a folder: the outputs are made in a
    /// working folder of the controller's and uploaded under the prefix
    /// (the same names as in a folder) when the job finishes, each object
    /// whole; `results.jsonl` last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Outputs besides `results.jsonl`, each under the output folder with
    /// the file's relative path and the format's extension appended:
    /// `txt` (`text/<path>.txt`), `hocr` (`hocr/<path>.hocr`), `alto`
    /// (`alto/<path>.xml`, ALTO v4), `tsv` (`tsv/<path>.tsv`, Tesseract's
    /// columns), `pdf` (`pdf/<path>.pdf`, a searchable PDF) and `report`
    /// (`report.json`, the aggregate). Default `[txt, report]`.
    #[serde(default = "default_formats")]
    pub formats: Vec<OutputFormat>,
}

fn default_formats() -> Vec<OutputFormat> {
    vec![OutputFormat::Txt, OutputFormat::Report]
}

impl Default for OutputSpec {
    fn default() -> Self {
        Self {
            path: None,
            url: None,
            formats: default_formats(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum OutputFormat {
    Txt,
    Hocr,
    Alto,
    Tsv,
    Pdf,
    Report,
}

impl OutputFormat {
    /// The per-file artefacts a worker makes for this format (`txt` and
    /// `report` come from the stored results instead).
    pub fn artefact(self) -> Option<Artefact> {
        match self {
            OutputFormat::Hocr => Some(Artefact::Hocr),
            OutputFormat::Alto => Some(Artefact::Alto),
            OutputFormat::Tsv => Some(Artefact::Tsv),
            OutputFormat::Pdf => Some(Artefact::Pdf),
            OutputFormat::Txt | OutputFormat::Report => None,
        }
    }
}

/// How many workers the job asks for. The controller wants
/// `ceil(remaining files / filesPerWorker)` replicas, clamped to
/// `[minReplicas, maxReplicas]`, summed with the other jobs on the same pool
/// and capped by the pool's capacity; when no work is left it scales the pool
/// to `scaleBackTo`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScalingSpec {
    /// Worker pool (swarm service `skep-worker-<pool>`).
    #[serde(default = "default_pool")]
    pub pool: String,
    #[serde(default = "default_files_per_worker")]
    pub files_per_worker: u32,
    #[serde(default = "default_min_replicas")]
    pub min_replicas: u32,
    #[serde(default = "default_max_replicas")]
    pub max_replicas: u32,
    #[serde(default)]
    pub scale_back_to: u32,
}

fn default_pool() -> String {
    DEFAULT_POOL.to_owned()
}
fn default_files_per_worker() -> u32 {
    DEFAULT_FILES_PER_WORKER
}
fn default_min_replicas() -> u32 {
    DEFAULT_MIN_REPLICAS
}
fn default_max_replicas() -> u32 {
    DEFAULT_MAX_REPLICAS
}

impl Default for ScalingSpec {
    fn default() -> Self {
        Self {
            pool: default_pool(),
            files_per_worker: DEFAULT_FILES_PER_WORKER,
            min_replicas: DEFAULT_MIN_REPLICAS,
            max_replicas: DEFAULT_MAX_REPLICAS,
            scale_back_to: 0,
        }
    }
}

/// A tenant's service plan; it weights the job's share of shared workers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Plan {
    Free,
    #[default]
    Standard,
    Premium,
}

impl Plan {
    /// Relative share of workers when jobs compete.
    pub fn weight(self) -> u32 {
        match self {
            Plan::Free => 1,
            Plan::Standard => 2,
            Plan::Premium => 4,
        }
    }
}

/// When failed files fail the whole job. With neither field set a job whose
/// files all ran ends `Succeeded`, with a `FilesFailed` condition when some
/// files failed. Once a limit is exceeded the job stops dispatching and ends
/// `Failed` with reason `TooManyFailures`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FailurePolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_failed_files: Option<u64>,
    /// Fraction of all files, 0.0-1.0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_failed_ratio: Option<f64>,
}

/// What the controller observed and did.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BulkJobStatus {
    #[serde(default)]
    pub phase: Phase,
    /// The generation the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default)]
    pub files: FileCounts,
    /// Pages of the job's files; see [`PageCounts`].
    #[serde(default)]
    pub pages: PageCounts,
    #[serde(default)]
    pub replicas: ReplicaStatus,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes_used: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<JobReport>,
    /// The value of the `skep.dev/retry` annotation the controller last
    /// acted on (by putting the failed files back to pending).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retried: Option<String>,
}

/// Setting this annotation to a new value (the API's retry uses the time)
/// asks the controller to run the job's failed files again; a finished job
/// runs again.
pub const RETRY_ANNOTATION: &str = "skep.dev/retry";

impl BulkJobStatus {
    /// Drops the condition `type_`.
    pub fn clear_condition(&mut self, type_: &str) {
        self.conditions.retain(|c| c.type_ != type_);
    }

    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }

    pub fn is_true(&self, type_: &str) -> bool {
        self.condition(type_).is_some_and(|c| c.status == ConditionStatus::True)
    }

    /// Sets a condition; `lastTransitionTime` only moves when the status
    /// flips, as in Kubernetes.
    pub fn set_condition(
        &mut self,
        type_: &str,
        status: ConditionStatus,
        reason: &str,
        message: impl Into<String>,
        now: DateTime<Utc>,
    ) {
        let message = message.into();
        if let Some(c) = self.conditions.iter_mut().find(|c| c.type_ == type_) {
            if c.status != status {
                c.last_transition_time = now;
            }
            c.status = status;
            c.reason = reason.to_owned();
            c.message = message;
        } else {
            self.conditions.push(Condition {
                type_: type_.to_owned(),
                status,
                reason: reason.to_owned(),
                message,
                last_transition_time: now,
            });
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Phase {
    /// Accepted; the folder is not scanned yet.
    #[default]
    Pending,
    /// Files are being dispatched and recognised.
    Running,
    /// `spec.suspend` is true.
    Suspended,
    /// Every file ran; some may have failed (see the `FilesFailed` condition).
    Succeeded,
    /// The job as a whole failed (deadline, failure policy, bad source).
    Failed,
}

impl Phase {
    pub fn is_finished(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Failed)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Running => "Running",
            Phase::Suspended => "Suspended",
            Phase::Succeeded => "Succeeded",
            Phase::Failed => "Failed",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Condition types the controller sets.
pub mod condition {
    /// The source folder was scanned and every file has a task.
    pub const SCANNED: &str = "Scanned";
    /// Files are moving.
    pub const PROGRESSING: &str = "Progressing";
    /// Every file has a final result.
    pub const COMPLETE: &str = "Complete";
    /// At least one file failed for good.
    pub const FILES_FAILED: &str = "FilesFailed";
    /// The job as a whole failed.
    pub const FAILED: &str = "Failed";
    pub const SUSPENDED: &str = "Suspended";
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: ConditionStatus,
    pub reason: String,
    #[serde(default)]
    pub message: String,
    pub last_transition_time: DateTime<Utc>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

/// File counts; `pending + dispatched + succeeded + failed == total`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileCounts {
    pub total: u64,
    pub pending: u64,
    pub dispatched: u64,
    pub succeeded: u64,
    pub failed: u64,
}

impl FileCounts {
    pub fn finished(&self) -> u64 {
        self.succeeded + self.failed
    }

    pub fn remaining(&self) -> u64 {
        self.total.saturating_sub(self.finished())
    }
}

/// Page counts. A file's page count is known once a worker has opened it;
/// until then it counts as one page, so `total` grows while documents are
/// opened and settles once every file has been.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PageCounts {
    pub total: u64,
    /// Pages of finished files and of finished ranges of split files.
    pub done: u64,
}

impl PageCounts {
    pub fn remaining(&self) -> u64 {
        self.total.saturating_sub(self.done)
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaStatus {
    /// What this job asks of its pool.
    pub desired: u32,
    /// Workers running in the pool (shared with other jobs on it).
    pub running: u32,
}

/// The aggregate written to `report.json` and kept in the status.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobReport {
    pub files: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub pages: u64,
    pub words: u64,
    /// Mean Tesseract confidence (0-100) over succeeded pages.
    pub mean_confidence: f64,
    /// Failed files by reason (`corrupt`, `empty`, `timeout`, ...).
    pub failures_by_reason: BTreeMap<String, u64>,
    pub wall_seconds: f64,
    /// Sum of per-file OCR time over all workers.
    pub ocr_seconds: f64,
    pub files_per_second: f64,
    pub pages_per_second: f64,
}
