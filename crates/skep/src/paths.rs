//! Which folders a controller may read and write for jobs:
//! `skep controller --allow-path DIR` (repeatable; `SKEP_ALLOW_PATHS`,
//! colon-separated). A job's source and output must lie under one of them
//! once `.`/`..` and symlinks are resolved; otherwise the API refuses it at
//! apply (400) and the controller fails it (`PathNotAllowed`) without
//! touching the path. `skep run` (the user's own process) allows any path.
//!
//! The refusal reads the same whether the path exists or not, so it cannot
//! be used to probe the controller's filesystem.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use skep_api::BulkJob;

/// Where jobs may point.
#[derive(Clone, Debug)]
pub enum PathPolicy {
    /// Anywhere (`skep run`, `--allow-any-path`).
    Any,
    /// Under one of these folders (resolved when the controller starts). An
    /// empty list allows nothing.
    Under(Arc<Vec<PathBuf>>),
}

/// A path outside the allowed folders; the message names the field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PathRefused(pub String);

impl PathPolicy {
    /// A policy allowing `roots`: each must be an existing folder.
    pub fn under(roots: &[PathBuf]) -> Result<Self, String> {
        let mut resolved = Vec::new();
        for r in roots {
            if !r.is_absolute() {
                return Err(format!("{} is relative; allowed paths must be absolute", r.display()));
            }
            let c = std::fs::canonicalize(r).map_err(|e| format!("{}: {}", r.display(), e.kind()))?;
            if !c.is_dir() {
                return Err(format!("{} is not a folder", r.display()));
            }
            resolved.push(c);
        }
        Ok(PathPolicy::Under(Arc::new(resolved)))
    }

    /// Checks one path of a job. Reads the filesystem (symlinks): call it
    /// off the async threads.
    pub fn check(&self, field: &str, path: &Path) -> Result<(), PathRefused> {
        let PathPolicy::Under(roots) = self else {
            return Ok(());
        };
        let refused = || {
            let allowed = roots
                .iter()
                .map(|r| r.display().to_string())
                .collect::<Vec<_>>()
                .join(", ");
            PathRefused(if roots.is_empty() {
                format!(
                    "{field}: this controller allows no job paths (start it with --allow-path DIR, or --allow-any-path)"
                )
            } else {
                format!(
                    "{field}: {} is not under a path this controller allows ({allowed})",
                    path.display()
                )
            })
        };
        match resolve(path) {
            Some(real) if roots.iter().any(|r| real.starts_with(r)) => Ok(()),
            _ => Err(refused()),
        }
    }

    /// Whether `real`, a path the kernel gave for an open file (no `..`, no
    /// symlink left in it), lies under an allowed folder. Nothing is read:
    /// the check cannot be raced by a swapped symlink.
    pub fn allows_real(&self, real: &Path) -> bool {
        match self {
            PathPolicy::Any => true,
            PathPolicy::Under(roots) => real.is_absolute() && roots.iter().any(|r| real.starts_with(r)),
        }
    }

    /// Checks a job's source and output folders (`default_output_root` is
    /// the controller's own choice for jobs that name none, always
    /// allowed).
    pub fn check_job(&self, job: &BulkJob) -> Result<(), PathRefused> {
        self.check("spec.source.path", Path::new(&job.spec.source.path))?;
        if let Some(out) = &job.spec.output.path {
            self.check("spec.output.path", Path::new(out))?;
        }
        Ok(())
    }
}

/// Where `path` really leads: its longest existing ancestor with symlinks
/// resolved, followed by the rest of its components. `None` for a
/// relative path, or a `..` in the part that does not exist yet (it could
/// climb out once created).
fn resolve(path: &Path) -> Option<PathBuf> {
    if !path.is_absolute() {
        return None;
    }
    let parts: Vec<Component> = path.components().collect();
    for keep in (1..=parts.len()).rev() {
        let prefix: PathBuf = parts[..keep].iter().collect();
        if let Ok(real) = std::fs::canonicalize(&prefix) {
            let mut out = real;
            for c in &parts[keep..] {
                match c {
                    Component::Normal(name) => out.push(name),
                    _ => return None,
                }
            }
            return Some(out);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_under_the_roots_pass_and_others_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data");
        std::fs::create_dir_all(root.join("scans")).unwrap();
        std::fs::create_dir_all(dir.path().join("secret")).unwrap();
        let p = PathPolicy::under(std::slice::from_ref(&root)).unwrap();
        p.check("f", &root.join("scans")).unwrap();
        p.check("f", &root.join("not-yet/made")).unwrap();
        p.check("f", &root).unwrap();
        let outside = p.check("spec.source.path", &dir.path().join("secret")).unwrap_err();
        assert!(outside.0.starts_with("spec.source.path: "), "{outside}");
        // Climbing out, by `..` or a symlink, is outside.
        p.check("f", &root.join("scans/../../secret")).unwrap_err();
        p.check("f", &root.join("nope/../../secret")).unwrap_err();
        std::os::unix::fs::symlink(dir.path().join("secret"), root.join("link")).unwrap();
        p.check("f", &root.join("link")).unwrap_err();
        p.check("f", &root.join("link/inner")).unwrap_err();
        p.check("f", Path::new("relative/path")).unwrap_err();
        // A sibling whose name starts like the root is not under it.
        std::fs::create_dir_all(dir.path().join("data-other")).unwrap();
        p.check("f", &dir.path().join("data-other")).unwrap_err();
    }

    #[test]
    fn a_refusal_reads_the_same_whether_the_path_exists_or_not() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(dir.path().join("there")).unwrap();
        std::fs::write(dir.path().join("file"), b"x").unwrap();
        let p = PathPolicy::under(std::slice::from_ref(&root)).unwrap();
        let shape = |path: &Path| {
            p.check("f", path)
                .unwrap_err()
                .0
                .replace(&path.display().to_string(), "PATH")
        };
        let a = shape(&dir.path().join("there"));
        assert_eq!(a, shape(&dir.path().join("not-there")));
        assert_eq!(a, shape(&dir.path().join("file")));
    }

    #[test]
    fn no_roots_allow_nothing_and_any_allows_all() {
        let none = PathPolicy::under(&[]).unwrap();
        let e = none.check("spec.source.path", Path::new("/tmp")).unwrap_err();
        assert!(e.0.contains("--allow-path"), "{e}");
        PathPolicy::Any.check("f", Path::new("/etc")).unwrap();
        assert!(PathPolicy::under(&[PathBuf::from("rel")]).is_err());
        assert!(PathPolicy::under(&[PathBuf::from("/nonexistent/skep-root")]).is_err());
    }
}
