//! The `BulkJob` API of skep: the Kubernetes-shaped document a user applies,
//! its JSON Schema, validation with path-qualified messages, and the
//! versioned wire format of the task and result messages that travel
//! between the controller and the workers.
//!
//! This crate knows nothing of stores, brokers or Docker: every backend
//! depends on it, never the reverse.

mod job;
mod message;
mod parse;
mod validate;

pub use job::*;
pub use message::*;
pub use parse::{ParseError, parse_job};
pub use validate::{FieldError, ValidationErrors, is_dns_label, validate_job};

/// The JSON Schema of a `BulkJob` document, as committed in
/// `crds/bulkjob.schema.json`.
pub fn schema() -> serde_json::Value {
    let schema = schemars::schema_for!(BulkJob);
    serde_json::to_value(&schema).unwrap_or_default()
}

/// The schema pretty-printed with a trailing newline, byte for byte what
/// `skep crd` prints and what `crds/bulkjob.schema.json` holds.
pub fn schema_pretty() -> String {
    let mut out = serde_json::to_string_pretty(&schema()).unwrap_or_default();
    out.push('\n');
    out
}
