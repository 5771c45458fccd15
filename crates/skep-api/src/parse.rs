use crate::{BulkJob, ValidationErrors, validate_job};

/// Why a document was refused. Every message names the field it is about.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// Not YAML/JSON, or a field of the wrong type or name.
    #[error("{}", display_syntax(.path, .message))]
    Syntax { path: String, message: String },
    /// Well-formed, but against the rules of a BulkJob.
    #[error(transparent)]
    Invalid(#[from] ValidationErrors),
}

fn display_syntax(path: &str, message: &str) -> String {
    if path.is_empty() || path == "." {
        message.to_owned()
    } else {
        format!("{path}: {message}")
    }
}

/// Parses and validates one BulkJob document (YAML or JSON).
pub fn parse_job(text: &str) -> Result<BulkJob, ParseError> {
    if text.trim().is_empty() {
        return Err(ParseError::Syntax {
            path: String::new(),
            message: "the document is empty".to_owned(),
        });
    }
    let de = serde_yaml::Deserializer::from_str(text);
    let job: BulkJob = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        // NB: serde_yaml already prefixes most messages with the path it knows
        // (for an unknown field, the parent's); keep its form then.
        match message.split_once(": ") {
            Some((prefix, rest)) if path.starts_with(prefix) => ParseError::Syntax {
                path: prefix.to_owned(),
                message: rest.to_owned(),
            },
            _ => ParseError::Syntax { path, message },
        }
    })?;
    validate_job(&job)?;
    Ok(job)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "
apiVersion: skep.dev/v1
kind: BulkJob
metadata:
  name: scans
spec:
  source:
    path: /data/scans
";

    #[test]
    fn minimal_document_gets_defaults() {
        let job = parse_job(GOOD).unwrap();
        assert_eq!(job.spec.scaling.files_per_worker, 100);
        assert_eq!(job.spec.scaling.max_replicas, 10);
        assert_eq!(job.spec.engine.languages, vec!["eng"]);
        assert_eq!(job.spec.engine.page_seg_mode, 6);
        assert!(job.spec.source.recursive);
    }

    #[test]
    fn wrong_type_names_the_field() {
        let doc = format!("{GOOD}  scaling:\n    maxReplicas: many\n");
        let err = parse_job(&doc).unwrap_err().to_string();
        assert!(err.starts_with("spec.scaling.maxReplicas: invalid type"), "{err}");
    }

    #[test]
    fn unknown_field_names_the_field() {
        let doc = format!("{GOOD}  scaling:\n    maxReplica: 3\n");
        let err = parse_job(&doc).unwrap_err().to_string();
        assert!(err.starts_with("spec.scaling: unknown field `maxReplica`"), "{err}");
    }

    #[test]
    fn missing_required_field() {
        let err = parse_job("apiVersion: skep.dev/v1\nkind: BulkJob\nmetadata: {name: a}\nspec: {}\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("spec: missing field `source`"), "{err}");
    }

    #[test]
    fn empty_and_garbage_documents() {
        assert_eq!(parse_job("  \n").unwrap_err().to_string(), "the document is empty");
        assert!(parse_job("a: [").is_err());
    }

    #[test]
    fn validation_runs_after_parsing() {
        let doc = format!("{GOOD}  scaling:\n    minReplicas: 5\n    maxReplicas: 2\n");
        let err = parse_job(&doc).unwrap_err().to_string();
        assert_eq!(err, "spec.scaling.maxReplicas: must be >= minReplicas (5)");
    }
}
