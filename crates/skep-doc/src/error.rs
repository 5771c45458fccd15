use skep_api::FailureReason;

/// Why a document could not be read or written. The reason is a closed set
/// (it labels metrics and reports); the message is for people and never
/// holds more than the caller gave (no file contents).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct DocError {
    pub reason: FailureReason,
    pub message: String,
}

impl DocError {
    pub fn new(reason: FailureReason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }

    pub fn corrupt(message: impl Into<String>) -> Self {
        Self::new(FailureReason::Corrupt, message)
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(FailureReason::TooLarge, message)
    }

    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(FailureReason::Unsupported, message)
    }
}
