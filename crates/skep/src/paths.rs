//! Which folders a controller may read and write for jobs:
//! `skep controller --allow-path DIR` (repeatable; `SKEP_ALLOW_PATHS`,
//! colon-separated), and which object-storage prefixes
//! (`--allow-s3 s3://BUCKET[/PREFIX]`). A job's source and output must lie under one of them
//! once `.`/`..` and symlinks are resolved; otherwise the API refuses it at
//! apply (400) and the controller fails it (`PathNotAllowed`) without
//! touching the path. `skep run` (the user's own process) allows any path.
//!
//! The refusal reads the same whether the path exists or not, so it cannot
//! be used to probe the controller's filesystem.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use skep_api::{BulkJob, ObjectUrl};

/// Where jobs may point.
#[derive(Clone, Debug)]
pub enum PathPolicy {
    /// Anywhere (`skep run`, `--allow-any-path`).
    Any,
    /// Under one of these folders (resolved when the controller starts) or
    /// object prefixes. Empty lists allow nothing.
    Under(Arc<Vec<PathBuf>>, Arc<ObjectPrefixes>),
}

/// The object-storage prefixes jobs may read (sources) and write
/// (outputs): `--allow-s3` and `--allow-s3-output`.
#[derive(Clone, Debug, Default)]
pub struct ObjectPrefixes {
    pub read: Vec<ObjectUrl>,
    pub write: Vec<ObjectUrl>,
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
        Ok(PathPolicy::Under(Arc::new(resolved), Arc::default()))
    }

    /// This policy, also allowing the objects under `prefixes`.
    pub fn with_objects(self, prefixes: ObjectPrefixes) -> Self {
        match self {
            PathPolicy::Any => PathPolicy::Any,
            PathPolicy::Under(dirs, _) => PathPolicy::Under(dirs, Arc::new(prefixes)),
        }
    }

    /// Checks an object-storage URL of a job, read from or (`write`)
    /// written to.
    pub fn check_object(&self, field: &str, url: &ObjectUrl, write: bool) -> Result<(), PathRefused> {
        let PathPolicy::Under(_, prefixes) = self else {
            return Ok(());
        };
        let (allowed, flag) = if write {
            (&prefixes.write, "--allow-s3-output")
        } else {
            (&prefixes.read, "--allow-s3")
        };
        if allowed.iter().any(|a| a.covers(url)) {
            return Ok(());
        }
        Err(PathRefused(if allowed.is_empty() {
            format!("{field}: this controller allows no object storage here (start it with {flag} s3://BUCKET/PREFIX)")
        } else {
            let list = allowed.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", ");
            format!("{field}: {url} is not under a prefix this controller allows ({list})")
        }))
    }

    /// Checks one path of a job. Reads the filesystem (symlinks): call it
    /// off the async threads.
    pub fn check(&self, field: &str, path: &Path) -> Result<(), PathRefused> {
        let PathPolicy::Under(roots, _) = self else {
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
            PathPolicy::Under(roots, _) => real.is_absolute() && roots.iter().any(|r| real.starts_with(r)),
        }
    }

    /// Checks a job's source and output folders (`default_output_root` is
    /// the controller's own choice for jobs that name none, always
    /// allowed).
    pub fn check_job(&self, job: &BulkJob) -> Result<(), PathRefused> {
        match &job.spec.source.url {
            Some(url) => {
                let url = ObjectUrl::parse(url).map_err(|e| PathRefused(format!("spec.source.url: {e}")))?;
                self.check_object("spec.source.url", &url, false)?;
            }
            None => self.check("spec.source.path", Path::new(&job.spec.source.path))?,
        }
        if let Some(out) = &job.spec.output.path {
            self.check("spec.output.path", Path::new(out))?;
        }
        if let Some(url) = &job.spec.output.url {
            let url = ObjectUrl::parse(url).map_err(|e| PathRefused(format!("spec.output.url: {e}")))?;
            self.check_object("spec.output.url", &url, true)?;
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

    #[test]
    fn object_prefixes_are_allowed_by_prefix_and_bucket() {
        let u = |s: &str| ObjectUrl::parse(s).unwrap();
        let p = PathPolicy::under(&[]).unwrap().with_objects(ObjectPrefixes {
            read: vec![u("s3://scans/2024")],
            write: vec![u("s3://results")],
        });
        p.check_object("f", &u("s3://scans/2024/may"), false).unwrap();
        p.check_object("f", &u("s3://scans/2024"), false).unwrap();
        let e = p.check_object("f", &u("s3://scans/2025"), false).unwrap_err();
        assert!(e.0.contains("not under a prefix"), "{e}");
        p.check_object("f", &u("s3://scans"), false).unwrap_err();
        p.check_object("f", &u("s3://other/2024"), false).unwrap_err();
        // Reading does not grant writing, nor the reverse.
        p.check_object("f", &u("s3://scans/2024"), true).unwrap_err();
        p.check_object("f", &u("s3://results/x"), true).unwrap();
        p.check_object("f", &u("s3://results/x"), false).unwrap_err();
        let none = PathPolicy::under(&[]).unwrap();
        let e = none.check_object("f", &u("s3://scans"), false).unwrap_err();
        assert!(e.0.contains("--allow-s3 "), "{e}");
        let e = none.check_object("f", &u("s3://scans"), true).unwrap_err();
        assert!(e.0.contains("--allow-s3-output"), "{e}");
        PathPolicy::Any.check_object("f", &u("s3://scans"), true).unwrap();
        let mut job = BulkJob::new("j", skep_api::BulkJobSpec::for_path(""));
        job.spec.source.url = Some("s3://scans/2024/x".into());
        p.check_job(&job).unwrap();
        job.spec.output.url = Some("s3://scans/2024/out".into());
        assert!(p.check_job(&job).unwrap_err().0.starts_with("spec.output.url: "));
        job.spec.output.url = Some("s3://results/out".into());
        p.check_job(&job).unwrap();
        job.spec.source.url = Some("s3://scans/x".into());
        assert!(p.check_job(&job).unwrap_err().0.starts_with("spec.source.url: "));
    }
}
