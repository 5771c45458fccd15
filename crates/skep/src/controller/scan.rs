//! Finding a job's files: a walk of the source folder, in a stable order
//! (sorted by name within each folder) so that a file's index does not
//! change between scans of an unchanged folder. Only files with an
//! extension of a format skep reads (`skep_api::formats`: images, PDFs,
//! Office documents) are taken; `include` and `exclude` globs match paths
//! relative to the source folder.

use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::Utc;
use globset::{Glob, GlobSet, GlobSetBuilder};
use skep_api::{BulkJob, BulkJobStatus, ConditionStatus, ObjectUrl, SourceSpec, condition};
use tokio::sync::mpsc;
use tracing::warn;

use super::{Context, Error, Result};
use crate::objects::CallError;
use crate::store::{NewTask, ObjectVersion};

/// Files inserted into the store per batch while scanning.
pub const SCAN_BATCH: usize = 5_000;
/// How often a scan writes how many files it has found so far (by
/// default: `ControllerConfig::scan_progress_every`).
pub const SCAN_PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// The count of files a scan has found so far, written into the job's
/// status (`files.total`, and the `Scanned` condition False with reason
/// `Scanning`) at most every `scan_progress_every`: a scan of a million
/// files shows from its first second, not once it ends.
pub struct ScanProgress {
    status: BulkJobStatus,
    last: Instant,
}

impl ScanProgress {
    /// From the status the job had when its scan started.
    pub fn new(status: &BulkJobStatus) -> Self {
        Self {
            status: status.clone(),
            last: Instant::now(),
        }
    }

    async fn found(&mut self, ctx: &Context, job: &BulkJob, n: u64) -> Result<()> {
        if self.last.elapsed() < ctx.cfg.scan_progress_every {
            return Ok(());
        }
        self.status.files.total = n;
        self.status.files.pending = n;
        self.status.set_condition(
            condition::SCANNED,
            ConditionStatus::False,
            "Scanning",
            format!("{n} files found so far"),
            Utc::now(),
        );
        ctx.store_call(ctx.store.update_status(job.name(), job.uid(), &self.status))
            .await?;
        self.last = Instant::now();
        Ok(())
    }
}

/// Why a scan cannot start: the job itself is wrong, not the machine.
#[derive(Debug)]
pub struct SourceProblem(pub String);

/// Matches paths against the source's filters.
#[derive(Debug)]
pub struct Filter {
    include: Option<GlobSet>,
    exclude: GlobSet,
}

fn globset(globs: &[String]) -> std::result::Result<GlobSet, String> {
    let mut b = GlobSetBuilder::new();
    for g in globs {
        b.add(Glob::new(g).map_err(|e| format!("invalid glob {g:?}: {e}"))?);
    }
    b.build().map_err(|e| e.to_string())
}

impl Filter {
    pub fn new(source: &SourceSpec) -> std::result::Result<Self, String> {
        Ok(Self {
            include: if source.include.is_empty() {
                None
            } else {
                Some(globset(&source.include)?)
            },
            exclude: globset(&source.exclude)?,
        })
    }

    /// Whether the file at `rel` (relative, `/`-separated) is taken.
    pub fn accepts(&self, rel: &str) -> bool {
        let ext_ok = skep_api::formats::kind_by_name(rel).is_some();
        ext_ok && self.include.as_ref().is_none_or(|i| i.is_match(rel)) && !self.exclude.is_match(rel)
    }

    /// Whether the object at `rel` (a key below the source prefix) is
    /// taken: as [`Filter::accepts`], and no folder above it excluded.
    pub fn accepts_key(&self, rel: &str) -> bool {
        self.accepts(rel) && !rel.match_indices('/').any(|(i, _)| self.excludes_dir(&rel[..i]))
    }

    /// Whether a whole folder is excluded (its relative path, or anything
    /// under it, matches an exclude glob written for the folder).
    fn excludes_dir(&self, rel: &str) -> bool {
        self.exclude.is_match(rel) || self.exclude.is_match(format!("{rel}/"))
    }
}

/// Walks `root`, calling `emit` with batches of relative paths in a stable
/// order; stops early when `emit` returns false. Returns how many files
/// were emitted. Unreadable sub-folders are skipped with a warning; an
/// unreadable root is an error.
pub fn walk(
    root: &Path,
    source: &SourceSpec,
    batch: usize,
    mut emit: impl FnMut(Vec<String>) -> bool,
) -> std::result::Result<u64, String> {
    let filter = Filter::new(source)?;
    let max_depth = if source.recursive { usize::MAX } else { 1 };
    let walker = walkdir::WalkDir::new(root)
        .follow_links(source.follow_symlinks)
        .max_depth(max_depth)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| {
            if e.depth() == 0 || !e.file_type().is_dir() {
                return true;
            }
            relative(root, e.path()).is_none_or(|rel| !filter.excludes_dir(&rel))
        });
    let mut buf = Vec::with_capacity(batch);
    let mut total = 0u64;
    for entry in walker {
        let entry = match entry {
            Ok(e) => e,
            Err(e) if e.depth() == 0 => return Err(e.to_string()),
            Err(e) => {
                warn!(error = %e, "skipping what cannot be read");
                continue;
            }
        };
        if !(entry.file_type().is_file() || source.follow_symlinks && entry.path().is_file()) {
            continue;
        }
        let Some(rel) = relative(root, entry.path()) else {
            warn!(path = %entry.path().display(), "skipping a path that is not valid UTF-8");
            continue;
        };
        if !filter.accepts(&rel) {
            continue;
        }
        buf.push(rel);
        total += 1;
        if buf.len() >= batch && !emit(std::mem::replace(&mut buf, Vec::with_capacity(batch))) {
            return Ok(total);
        }
    }
    if !buf.is_empty() {
        emit(buf);
    }
    Ok(total)
}

/// `path` relative to `root`, `/`-separated; `None` when not UTF-8.
fn relative(root: &Path, path: &Path) -> Option<String> {
    let rel = path.strip_prefix(root).ok()?;
    let mut parts = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_str()?),
            _ => return None,
        }
    }
    Some(parts.join("/"))
}

/// Every file the source takes, in scan order (for tools and benchmarks).
pub fn list_files(root: &Path, source: &SourceSpec) -> std::result::Result<Vec<String>, String> {
    let mut all = Vec::new();
    walk(root, source, SCAN_BATCH, |b| {
        all.extend(b);
        true
    })?;
    Ok(all)
}

/// Scans a job's source into task records from scratch (tasks of an
/// earlier, unfinished scan are removed first). `Ok(Err(..))` is a problem
/// with the job's source that retrying will not fix.
pub async fn scan_job(
    ctx: &Context,
    job: &BulkJob,
    progress: &mut ScanProgress,
) -> Result<std::result::Result<u64, SourceProblem>> {
    if let Some(url) = &job.spec.source.url {
        return scan_objects(ctx, job, url, progress).await;
    }
    let root = PathBuf::from(&job.spec.source.path);
    match tokio::fs::metadata(&root).await {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Ok(Err(SourceProblem(format!(
                "spec.source.path: {} is not a folder",
                root.display()
            ))));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Err(SourceProblem(format!(
                "spec.source.path: no folder at {}",
                root.display()
            ))));
        }
        Err(e) => {
            return Err(Error::Scan {
                path: root.display().to_string(),
                message: e.to_string(),
            });
        }
    }
    let uid = job.uid().to_owned();
    start_scan(ctx, job).await?;
    let (tx, mut rx) = mpsc::channel::<Vec<String>>(4);
    let source = job.spec.source.clone();
    let walk_root = root.clone();
    let walker = tokio::task::spawn_blocking(move || {
        walk(&walk_root, &source, SCAN_BATCH, |batch| tx.blocking_send(batch).is_ok())
    });
    let mut next_index = 0u64;
    while let Some(batch) = rx.recv().await {
        let tasks: Vec<NewTask> = batch
            .into_iter()
            .map(|path| {
                let t = NewTask::file(next_index, path);
                next_index += 1;
                t
            })
            .collect();
        ctx.store_call(ctx.store.insert_tasks(&uid, tasks)).await?;
        progress.found(ctx, job, next_index).await?;
    }
    let total = walker
        .await
        .map_err(|e| Error::TaskEnded(e.to_string()))?
        .map_err(|message| Error::Scan {
            path: root.display().to_string(),
            message,
        })?;
    Ok(Ok(total))
}

/// What every scan does first: tasks of an earlier, unfinished scan
/// removed, the workers' staging folder (artefacts, long texts) made.
async fn start_scan(ctx: &Context, job: &BulkJob) -> Result<()> {
    ctx.store_call(ctx.store.delete_tasks(job.uid())).await?;
    let paths = super::landing::JobPaths::of(job, &ctx.cfg.default_output_root);
    let made =
        tokio::task::spawn_blocking(move || super::landing::make_staging(&paths).map_err(|e| (paths.staging, e)))
            .await
            .map_err(|e| Error::TaskEnded(e.to_string()))?;
    made.map_err(|(staging, e)| Error::Output {
        path: staging.display().to_string(),
        source: e,
    })
}

/// Scans an object-storage source: its listing, a page at a time, into
/// task records in key order.
async fn scan_objects(
    ctx: &Context,
    job: &BulkJob,
    url: &str,
    progress: &mut ScanProgress,
) -> Result<std::result::Result<u64, SourceProblem>> {
    let problem = |m: String| Ok(Err(SourceProblem(format!("spec.source.url: {m}"))));
    let url = match ObjectUrl::parse(url) {
        Ok(u) => u,
        Err(e) => return problem(e),
    };
    let filter = match Filter::new(&job.spec.source) {
        Ok(f) => f,
        Err(e) => return Ok(Err(SourceProblem(e))),
    };
    let mut lister = match ctx.cfg.objects.lister(&url, job.spec.source.recursive) {
        Ok(l) => l,
        Err(e) => return problem(e.0),
    };
    start_scan(ctx, job).await?;
    let mut next_index = 0u64;
    loop {
        let page = match lister.next_page().await {
            Ok(Some(page)) => page,
            Ok(None) => return Ok(Ok(next_index)),
            Err(CallError::Refused(m)) => return problem(m),
            Err(CallError::Failed(message)) => {
                return Err(Error::Scan {
                    path: url.to_string(),
                    message,
                });
            }
        };
        let tasks: Vec<NewTask> = page
            .into_iter()
            .filter(|o| filter.accepts_key(&o.rel))
            .map(|o| {
                let version = ObjectVersion {
                    size: o.size,
                    etag: o.etag,
                };
                let t = NewTask::object(next_index, o.rel, version);
                next_index += 1;
                t
            })
            .collect();
        if !tasks.is_empty() {
            ctx.store_call(ctx.store.insert_tasks(job.uid(), tasks)).await?;
            progress.found(ctx, job, next_index).await?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(include: &[&str], exclude: &[&str], recursive: bool) -> SourceSpec {
        SourceSpec {
            path: String::new(),
            url: None,
            recursive,
            include: include.iter().map(|s| s.to_string()).collect(),
            exclude: exclude.iter().map(|s| s.to_string()).collect(),
            follow_symlinks: false,
        }
    }

    fn tree() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for f in [
            "b.png",
            "a.PNG",
            "notes.txt",
            "c.jpg",
            "sub/d.tif",
            "sub/deep/e.png",
            "drafts/x.png",
            "docs/a.PDF",
            "docs/b.docx",
            "docs/c.odt",
        ] {
            let p = d.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b"x").unwrap();
        }
        d
    }

    #[test]
    fn takes_what_skep_reads_in_a_stable_order() {
        let d = tree();
        let files = list_files(d.path(), &source(&[], &[], true)).unwrap();
        assert_eq!(
            files,
            vec![
                "a.PNG",
                "b.png",
                "c.jpg",
                "docs/a.PDF",
                "docs/b.docx",
                "docs/c.odt",
                "drafts/x.png",
                "sub/d.tif",
                "sub/deep/e.png"
            ]
        );
    }

    #[test]
    fn include_exclude_and_depth() {
        let d = tree();
        let files = list_files(d.path(), &source(&["**/*.png"], &["drafts/**"], true)).unwrap();
        assert_eq!(files, vec!["b.png", "sub/deep/e.png"]);
        let files = list_files(d.path(), &source(&[], &["drafts"], true)).unwrap();
        assert!(!files.iter().any(|f| f.starts_with("drafts/")), "{files:?}");
        let files = list_files(d.path(), &source(&[], &["docs/**"], false)).unwrap();
        assert_eq!(files, vec!["a.PNG", "b.png", "c.jpg"]);
    }

    #[test]
    fn batches_cover_everything_once() {
        let d = tree();
        let mut batches = Vec::new();
        let n = walk(d.path(), &source(&[], &[], true), 4, |b| {
            batches.push(b.len());
            true
        })
        .unwrap();
        assert_eq!(n, 9);
        assert_eq!(batches, vec![4, 4, 1]);
    }

    #[test]
    fn missing_root_is_an_error() {
        assert!(list_files(Path::new("/no/such/dir/skep"), &source(&[], &[], true)).is_err());
    }
}
