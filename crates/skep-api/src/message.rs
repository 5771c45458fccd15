//! The wire format between the controller and the workers: one
//! [`TaskMessage`] per file on the pool's task topic, one [`ResultMessage`]
//! per processed delivery on the results topic. JSON with a version field
//! `v`; a reader rejects a version it does not know instead of guessing.

use serde::{Deserialize, Serialize};

/// The wire version this build writes and reads.
pub const WIRE_VERSION: u16 = 1;

/// Topic the workers of `pool` consume.
pub fn task_topic(pool: &str) -> String {
    format!("skep.tasks.{pool}")
}

/// Topic every worker publishes results to and the controller consumes.
pub const RESULTS_TOPIC: &str = "skep.results";

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("malformed message: {0}")]
    Malformed(#[source] serde_json::Error),
    #[error("unsupported wire version {found} (this build reads {WIRE_VERSION})")]
    Version { found: u16 },
}

/// One file to recognise.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskMessage {
    pub v: u16,
    pub job: String,
    pub job_uid: String,
    /// The file's index in the job (stable across restarts).
    pub index: u64,
    /// Absolute path, the same on every worker node.
    pub path: String,
    /// 1-based attempt the controller dispatched.
    pub attempt: u32,
    pub max_attempts: u32,
    pub timeout_ms: u64,
    pub languages: Vec<String>,
    pub page_seg_mode: u8,
    pub dpi: u32,
}

/// The outcome of one delivery of a task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResultMessage {
    pub v: u16,
    pub job: String,
    pub job_uid: String,
    pub index: u64,
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
        text: String,
        /// Mean Tesseract confidence over the file's pages, 0-100.
        confidence: f32,
        pages: u32,
        words: u64,
    },
    #[serde(rename_all = "camelCase")]
    Failed { reason: FailureReason, error: String },
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
    /// It could not be read (permissions, I/O error).
    Unreadable,
    /// Zero bytes.
    Empty,
    /// Not an image format the engine reads.
    Unsupported,
    /// A known format whose data does not decode.
    Corrupt,
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
            FailureReason::Unreadable => "unreadable",
            FailureReason::Empty => "empty",
            FailureReason::Unsupported => "unsupported",
            FailureReason::Corrupt => "corrupt",
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

const ALL_REASONS: [FailureReason; 10] = [
    FailureReason::NotFound,
    FailureReason::Unreadable,
    FailureReason::Empty,
    FailureReason::Unsupported,
    FailureReason::Corrupt,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn task() -> TaskMessage {
        TaskMessage {
            v: WIRE_VERSION,
            job: "j".into(),
            job_uid: "u".into(),
            index: 7,
            path: "/data/a.png".into(),
            attempt: 1,
            max_attempts: 3,
            timeout_ms: 1000,
            languages: vec!["eng".into()],
            page_seg_mode: 6,
            dpi: 300,
        }
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
