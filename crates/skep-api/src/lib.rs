//! The `BulkJob` API of skep: the Kubernetes-shaped document a user applies,
//! its JSON Schema, validation with path-qualified messages, and the
//! versioned wire format of the task and result messages that travel
//! between the controller and the workers.
//!
//! This crate knows nothing of stores, brokers or Docker: every backend
//! depends on it, never the reverse.

pub mod formats;
mod job;
mod message;
mod object_url;
mod parse;
mod validate;

pub use job::*;
pub use message::*;
pub use object_url::{MAX_KEY_BYTES, ObjectUrl, check_key};
pub use parse::{MAX_DEPTH, ParseError, check_depth, parse_job};
pub use validate::{FieldError, ValidationErrors, is_dns_label, validate_job};

/// The JSON Schema of a `BulkJob` document, as committed in
/// `crds/bulkjob.schema.json`.
pub fn schema() -> serde_json::Value {
    let schema = schemars::schema_for!(BulkJob);
    serde_json::to_value(&schema).unwrap_or_default()
}

/// The schema pretty-printed with keys sorted and a trailing newline, byte for
/// byte what `skep crd` prints and what `crds/bulkjob.schema.json` holds.
///
/// Keys are sorted here rather than left to `serde_json`: another crate in a
/// build may turn on its `preserve_order` feature, which would change the
/// output with the set of crates built.
pub fn schema_pretty() -> String {
    let mut out = serde_json::to_string_pretty(&sorted(schema())).unwrap_or_default();
    out.push('\n');
    out
}

fn sorted(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}
