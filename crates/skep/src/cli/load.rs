//! Reading a BulkJob file the way `skep apply` and `skep run` do: parse,
//! validate, then resolve relative paths against the file's folder so that
//! the stored spec means the same thing wherever the controller runs.

use std::io::Read;
use std::path::{Path, PathBuf};

use skep_api::{BulkJob, ParseError, parse_job};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Invalid {
        path: String,
        #[source]
        source: ParseError,
    },
}

/// Parses and validates the file (`-` for stdin) and makes its paths
/// absolute; nothing is stored.
pub fn load_job_file(path: &Path) -> Result<BulkJob, LoadError> {
    let shown = path.display().to_string();
    let (text, base) = if path == Path::new("-") {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|source| LoadError::Read {
                path: "stdin".into(),
                source,
            })?;
        (s, std::env::current_dir().unwrap_or_default())
    } else {
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
            path: shown.clone(),
            source,
        })?;
        let base = std::path::absolute(path)
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_default();
        (text, base)
    };
    let mut job = parse_job(&text).map_err(|source| LoadError::Invalid { path: shown, source })?;
    resolve_paths(&mut job, &base);
    Ok(job)
}

/// Makes `source.path` (when set) and `output.path` absolute against `base`; an
/// unset output path becomes `<base>/skep-output/<name>` (unless the
/// outputs go to object storage).
pub fn resolve_paths(job: &mut BulkJob, base: &Path) {
    let abs = |p: &str| -> String {
        let p = PathBuf::from(p);
        let joined = if p.is_absolute() { p } else { base.join(p) };
        std::path::absolute(&joined)
            .unwrap_or(joined)
            .to_string_lossy()
            .into_owned()
    };
    // NB: an object source has no path; an empty one stays empty, for
    // validation to name whichever is missing.
    if !job.spec.source.path.is_empty() {
        job.spec.source.path = abs(&job.spec.source.path);
    }
    if job.spec.output.url.is_some() {
        return;
    }
    let out = match &job.spec.output.path {
        Some(p) => abs(p),
        None => abs(&format!("skep-output/{}", job.metadata.name)),
    };
    job.spec.output.path = Some(out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use skep_api::BulkJobSpec;

    #[test]
    fn relative_paths_resolve_against_the_file() {
        let mut job = BulkJob::new("scans", BulkJobSpec::for_path("pages"));
        resolve_paths(&mut job, Path::new("/jobs"));
        assert_eq!(job.spec.source.path, "/jobs/pages");
        assert_eq!(job.spec.output.path.as_deref(), Some("/jobs/skep-output/scans"));
        let mut job = BulkJob::new("scans", BulkJobSpec::for_path("/abs/in"));
        job.spec.output.path = Some("../out".into());
        resolve_paths(&mut job, Path::new("/jobs/x"));
        assert_eq!(job.spec.source.path, "/abs/in");
        assert_eq!(job.spec.output.path.as_deref(), Some("/jobs/x/../out"));
    }

    #[test]
    fn errors_name_the_file_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("job.yaml");
        std::fs::write(
            &p,
            "apiVersion: skep.dev/v1\nkind: BulkJob\nmetadata: {name: a}\nspec:\n  source: {path: x}\n  maxAttempts: 0\n",
        )
        .unwrap();
        let e = load_job_file(&p).unwrap_err().to_string();
        assert!(
            e.ends_with("job.yaml: spec.maxAttempts: must be between 1 and 100, got 0"),
            "{e}"
        );
        let e = load_job_file(&dir.path().join("nope.yaml")).unwrap_err().to_string();
        assert!(e.starts_with("cannot read "), "{e}");
    }
}
