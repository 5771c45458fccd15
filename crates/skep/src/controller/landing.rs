//! Landing artefacts: moving what workers staged for a file to its final
//! names under the job's output folder.
//!
//! Workers write each delivery's artefacts into a folder of their own under
//! `<output>/.skep-staging/<job uid>/` (see `skep_worker::staging`). The
//! controller lands only the delivery whose result it accepted (the first
//! one; a duplicate's folder is removed unread), after all of a split
//! file's ranges are in: hOCR, ALTO and TSV are the header, the ranges'
//! pages in page order, and the footer; a searchable PDF is the staged one
//! (image inputs; ranges concatenated by `qpdf`), or, for a PDF input, the
//! source PDF untouched with the staged invisible text layers laid under
//! its OCR'd pages by `qpdf --underlay`. Every final file is written under
//! a temporary name in its folder and renamed, so no partial file is ever
//! visible under a final name, and landing again replaces a file whole.
//!
//! Landing is idempotent: staged folders are removed only after the store
//! has the result, so a crash in between lands the same files again.

use std::ffi::OsStr;
use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use skep_api::{Artefact, BulkJob, FailureReason, PageRange, STAGED_TEXT_FILE};
use skep_doc::layout::{alto, hocr, tsv};
use skep_doc::process::{self, Limits};

use super::safe_fs::{self, SafeDir};

/// Where a job reads and writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobPaths {
    /// The source folder; for an object source, a folder a copy of the
    /// one input a landing needs is fetched into (see [`source_copy`]).
    pub source: PathBuf,
    /// The source's objects, for a job reading object storage.
    pub object_source: Option<skep_api::ObjectUrl>,
    pub output: PathBuf,
    /// `<output>/.skep-staging/<job uid>`: the workers' staging folder.
    pub staging: PathBuf,
    /// The artefacts the job asks for.
    pub artefacts: Vec<Artefact>,
}

/// Name of the staging folder under a job's output folder.
pub const STAGING_DIR: &str = ".skep-staging";
/// Longest staged text the controller reads back into the store.
pub const MAX_STAGED_TEXT: u64 = 16 << 20;
/// The staged text layer of a PDF input (as `skep_worker::staging` names it).
const LAYER_FILE: &str = skep_api::STAGED_LAYER_FILE;

impl JobPaths {
    pub fn of(job: &BulkJob, default_output_root: &Path) -> Self {
        let output = super::output::output_dir(job, default_output_root);
        Self {
            source: PathBuf::from(&job.spec.source.path),
            object_source: job
                .spec
                .source
                .url
                .as_deref()
                .and_then(|u| skep_api::ObjectUrl::parse(u).ok()),
            staging: output.join(STAGING_DIR).join(job.uid()),
            output,
            artefacts: job.spec.output.formats.iter().filter_map(|f| f.artefact()).collect(),
        }
    }

    /// The staged folder `name`, if `name` is one plain folder name (it
    /// comes from a worker's message).
    fn staged(&self, name: &str) -> Result<PathBuf, LandError> {
        let mut parts = Path::new(name).components();
        match (parts.next(), parts.next()) {
            (Some(Component::Normal(_)), None) if !name.starts_with('.') => Ok(self.staging.join(name)),
            _ => Err(LandError::new(
                FailureReason::BadMessage,
                format!("staged folder name {name:?} is not a plain name"),
            )),
        }
    }

    /// The final path of `rel`'s artefact.
    pub fn final_path(&self, artefact: Artefact, rel: &str) -> PathBuf {
        self.output
            .join(artefact.folder())
            .join(format!("{rel}.{}", artefact.extension()))
    }
}

/// Why a file's artefacts could not be landed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct LandError {
    pub reason: FailureReason,
    pub message: String,
}

impl LandError {
    fn new(reason: FailureReason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }

    fn io(what: &str, path: &Path, e: &std::io::Error) -> Self {
        Self::new(FailureReason::Engine, format!("{what} {}: {e}", path.display()))
    }
}

/// One staged folder of a file: its name, and the pages it holds (`None`:
/// the whole file).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Staged {
    pub name: String,
    pub pages: Option<PageRange>,
}

/// `rel` is a plain relative path (no `..`, not absolute).
pub fn is_plain_relative(rel: &str) -> bool {
    !rel.is_empty() && Path::new(rel).components().all(|c| matches!(c, Component::Normal(_)))
}

/// Creates a job's staging folder. Workers of a swarm run as their own
/// user, so it is open to every user for creating folders (`1733`: write
/// and enter, no listing, sticky: nobody removes another's folder), like
/// `/tmp` without the listing.
/// Made through the output folder without following a symlink below it.
pub fn make_staging(paths: &JobPaths) -> std::io::Result<()> {
    let rel = paths
        .staging
        .strip_prefix(&paths.output)
        .map_err(std::io::Error::other)?;
    SafeDir::open(&paths.output, rel)?.set_mode(0o1733)
}

/// Reads a staged long text.
pub fn read_staged_text(paths: &JobPaths, name: &str) -> Result<String, LandError> {
    let path = paths.staged(name)?.join(STAGED_TEXT_FILE);
    let file = match safe_fs::open_staged(&path) {
        Ok(Some(f)) => f,
        Ok(None) => {
            let e = std::io::Error::from(std::io::ErrorKind::NotFound);
            return Err(LandError::io("cannot read", &path, &e));
        }
        Err(e) => return Err(LandError::new(FailureReason::BadMessage, e.to_string())),
    };
    let mut text = String::new();
    use std::io::Read;
    file.take(MAX_STAGED_TEXT + 1)
        .read_to_string(&mut text)
        .map_err(|e| LandError::io("cannot read", &path, &e))?;
    if text.len() as u64 > MAX_STAGED_TEXT {
        return Err(LandError::new(
            FailureReason::TooLarge,
            format!("the text is longer than {MAX_STAGED_TEXT} bytes"),
        ));
    }
    Ok(text)
}

/// Removes a staged folder (a duplicate delivery's, or one already landed).
pub fn discard(paths: &JobPaths, name: &str) {
    if let Ok(dir) = paths.staged(name)
        && let Err(e) = std::fs::remove_dir_all(&dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %dir.display(), error = %e, "cannot remove a staged folder");
    }
}

/// Removes the job's whole staging folder (the job finished; what is left
/// belongs to deliveries that never answered).
pub fn remove_staging(paths: &JobPaths) {
    if let Err(e) = std::fs::remove_dir_all(&paths.staging)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %paths.staging.display(), error = %e, "cannot remove the staging folder");
    }
    // The parent goes too when no other job stages there.
    let _ = std::fs::remove_dir(paths.output.join(STAGING_DIR));
}

/// Lands every artefact of the file `rel` from its staged folders, in page
/// order. A file read whole has one folder. `turned` lists the pages
/// (number, clockwise degrees) that were turned upright before OCR: a
/// searchable PDF made from a source PDF turns them too, so that their text
/// layer lies the right way.
pub fn land(
    paths: &JobPaths,
    rel: &str,
    staged: &[Staged],
    turned: &[(u32, u16)],
    deadline: Instant,
) -> Result<(), LandError> {
    if !is_plain_relative(rel) {
        return Err(LandError::new(
            FailureReason::Unsupported,
            format!("{rel:?} is not a plain relative path; its outputs cannot be placed"),
        ));
    }
    let dirs = staged
        .iter()
        .map(|s| paths.staged(&s.name))
        .collect::<Result<Vec<_>, _>>()?;
    for artefact in &paths.artefacts {
        let target = paths.final_path(*artefact, rel);
        match artefact {
            Artefact::Hocr => join_fragments(
                &paths.output,
                &dirs,
                artefact.staged_name(),
                &target,
                &hocr::header(rel),
                hocr::footer(),
            )?,
            Artefact::Alto => join_fragments(
                &paths.output,
                &dirs,
                artefact.staged_name(),
                &target,
                &alto::header(rel),
                alto::footer(),
            )?,
            Artefact::Tsv => join_fragments(&paths.output, &dirs, artefact.staged_name(), &target, tsv::header(), "")?,
            Artefact::Pdf => land_pdf(paths, rel, &dirs, turned, &target, deadline)?,
        }
    }
    Ok(())
}

/// The staged files `name` of `dirs` that exist, opened without following
/// symlinks (workers, and anyone who can write the staging folder, put
/// them there).
fn open_parts(dirs: &[PathBuf], name: &str) -> Result<Vec<std::fs::File>, LandError> {
    let mut parts = Vec::new();
    for d in dirs {
        let p = d.join(name);
        match safe_fs::open_staged(&p) {
            Ok(Some(f)) => parts.push(f),
            Ok(None) => {}
            Err(e) => return Err(LandError::new(FailureReason::BadMessage, e.to_string())),
        }
    }
    Ok(parts)
}

/// `header`, each folder's `name` in order, `footer`, into `target`; does
/// nothing when no folder holds `name` (the format did not apply).
fn join_fragments(
    root: &Path,
    dirs: &[PathBuf],
    name: &str,
    target: &Path,
    header: &str,
    footer: &str,
) -> Result<(), LandError> {
    let parts = open_parts(dirs, name)?;
    if parts.is_empty() {
        return Ok(());
    }
    if parts.len() != dirs.len() {
        return Err(LandError::new(
            FailureReason::Engine,
            format!("{name} is missing from some of the file's ranges"),
        ));
    }
    write_new(root, target, |out| {
        out.write_all(header.as_bytes())?;
        for mut f in parts {
            std::io::copy(&mut f, out)?;
        }
        out.write_all(footer.as_bytes())
    })
}

fn land_pdf(
    paths: &JobPaths,
    rel: &str,
    dirs: &[PathBuf],
    turned: &[(u32, u16)],
    target: &Path,
    deadline: Instant,
) -> Result<(), LandError> {
    let pages = open_parts(dirs, Artefact::Pdf.staged_name())?;
    let layers = open_parts(dirs, LAYER_FILE)?;
    // NB: helpers read the staged files through their open descriptors and
    // write into the target's folder through its descriptor: no name is
    // looked up again after it was checked.
    let (folder, name) =
        SafeDir::parent_of(&paths.output, target).map_err(|e| LandError::io("cannot create", target, &e))?;
    if !pages.is_empty() {
        if pages.len() != dirs.len() {
            return Err(LandError::new(FailureReason::Engine, "a range's PDF pages are missing"));
        }
        if let [one] = pages.as_slice() {
            let mut one = one;
            return write_into(&folder, &name, target, |out| std::io::copy(&mut one, out).map(|_| ()));
        }
        let tmp = SafeDir::temp_name(&name);
        let inputs: Vec<PathBuf> = pages.iter().map(safe_fs::fd_path).collect();
        let out = folder.join(&tmp);
        return qpdf(&concat_args(&inputs, &out), &out, deadline).and_then(|()| commit(&folder, &tmp, &name, target));
    }
    if layers.is_empty() {
        return Ok(());
    }
    if layers.len() != dirs.len() {
        return Err(LandError::new(FailureReason::Engine, "a range's text layer is missing"));
    }
    let mut cleanup = Vec::new();
    let result = (|| {
        // NB: Debian 12's qpdf (11.3) takes one --underlay per run, so the
        // ranges' layers (pages 1..N in order) are joined first.
        let layer = if let [one] = layers.as_slice() {
            safe_fs::fd_path(one)
        } else {
            let joined = folder.join(SafeDir::temp_name(&name));
            cleanup.push(joined.clone());
            let inputs: Vec<PathBuf> = layers.iter().map(safe_fs::fd_path).collect();
            qpdf(&concat_args(&inputs, &joined), &joined, deadline)?;
            joined
        };
        let mut source = paths.source.join(rel);
        if !turned.is_empty() {
            // Pages read after a turn get the same turn first; qpdf lays a
            // layer upright on a page as displayed.
            let rotated = folder.join(SafeDir::temp_name(&name));
            cleanup.push(rotated.clone());
            let turns: Vec<String> = turned
                .iter()
                .map(|(page, deg)| format!("--rotate=+{deg}:{page}"))
                .collect();
            let mut args: Vec<&OsStr> = vec!["--warning-exit-0".as_ref(), source.as_os_str()];
            args.extend(turns.iter().map(|t| OsStr::new(t.as_str())));
            args.extend(["--".as_ref(), rotated.as_os_str()]);
            qpdf(&args, &rotated, deadline)?;
            source = rotated;
        }
        let tmp = SafeDir::temp_name(&name);
        let out = folder.join(&tmp);
        let args: Vec<&OsStr> = vec![
            "--warning-exit-0".as_ref(),
            source.as_os_str(),
            "--underlay".as_ref(),
            layer.as_os_str(),
            "--".as_ref(),
            out.as_os_str(),
        ];
        qpdf(&args, &out, deadline)?;
        commit(&folder, &tmp, &name, target)
    })();
    for p in cleanup {
        let _ = std::fs::remove_file(p);
    }
    result
}

/// Largest input fetched from object storage for a landing.
pub const MAX_SOURCE_COPY: u64 = 4 << 30;
/// Longest such a fetch may take.
pub const SOURCE_COPY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// A copy of an object-storage input, in a new private folder under the
/// temporary folder, removed on drop.
#[derive(Debug)]
pub struct SourceCopy(PathBuf);

impl Drop for SourceCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The paths to land `rel` with. A searchable PDF of a PDF input is laid
/// over the input itself; when the input is an object, it is fetched
/// first into a fresh folder (the returned guard), which stands in for
/// the source folder. Everything else lands from the staged files alone.
pub async fn source_copy(
    objects: &crate::objects::ObjectStores,
    paths: &JobPaths,
    rel: &str,
    version: Option<&crate::store::ObjectVersion>,
) -> Result<(JobPaths, Option<SourceCopy>), LandError> {
    let Some(url) = &paths.object_source else {
        return Ok((paths.clone(), None));
    };
    if !paths.artefacts.contains(&Artefact::Pdf)
        || skep_api::formats::kind_by_name(rel) != Some(skep_api::formats::DocumentKind::Pdf)
        || !is_plain_relative(rel)
    {
        return Ok((paths.clone(), None));
    }
    // NB: not in the staging folder, which workers on a shared mount write
    // (a folder swapped for a symlink there would redirect the download):
    // a new folder only this process may enter.
    let dir = std::env::temp_dir().join(format!("skep-source-{}", uuid::Uuid::new_v4().simple()));
    let copy = SourceCopy(dir.clone());
    let target = dir.join(rel);
    let made = {
        let target = target.clone();
        tokio::task::spawn_blocking(move || {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)?;
            }
            Ok::<_, std::io::Error>(())
        })
        .await
    };
    match made {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            return Err(LandError::new(
                FailureReason::Engine,
                format!("cannot make a folder: {e}"),
            ));
        }
        Err(e) => return Err(LandError::new(FailureReason::Engine, e.to_string())),
    }
    let fetched = tokio::time::timeout(
        SOURCE_COPY_TIMEOUT,
        objects.download(&url.bucket, &url.key(rel), version, &target, MAX_SOURCE_COPY),
    )
    .await
    .unwrap_or_else(|_| {
        Err(crate::objects::ObjectError(format!(
            "not done within {SOURCE_COPY_TIMEOUT:?}"
        )))
    });
    // NB: the text was read from the listed version; laid under another
    // it would be wrong.
    fetched
        .map_err(|e| LandError::new(FailureReason::Unreadable, format!("fetching the input: {e}")))?
        .map_err(|how| {
            LandError::new(
                FailureReason::Changed,
                format!("the input changed after the job listed it: {how}"),
            )
        })?;
    let mut with = paths.clone();
    with.source = copy.0.clone();
    Ok((with, Some(copy)))
}

/// qpdf arguments that join `inputs`' pages, in order, into `out`.
fn concat_args<'a>(inputs: &'a [PathBuf], out: &'a Path) -> Vec<&'a OsStr> {
    let mut args: Vec<&OsStr> = vec!["--warning-exit-0".as_ref(), "--empty".as_ref(), "--pages".as_ref()];
    args.extend(inputs.iter().map(|p| p.as_os_str()));
    args.extend(["--".as_ref(), out.as_os_str()]);
    args
}

fn commit(folder: &SafeDir, tmp: &str, name: &OsStr, target: &Path) -> Result<(), LandError> {
    folder
        .commit(tmp, name)
        .map_err(|e| LandError::io("cannot move to", target, &e))
}

/// Runs qpdf, which writes `out`.
fn qpdf(args: &[&OsStr], out: &Path, deadline: Instant) -> Result<(), LandError> {
    let run = process::run("qpdf", args, Limits::new(deadline, 1 << 20)).map_err(|e| {
        let _ = std::fs::remove_file(out);
        LandError::new(e.reason(), e.to_string())
    })?;
    if !run.success() {
        let _ = std::fs::remove_file(out);
        let said: String = run
            .stderr
            .lines()
            .next()
            .unwrap_or("no message")
            .chars()
            .take(200)
            .collect();
        return Err(LandError::new(
            FailureReason::Corrupt,
            format!("qpdf could not make the searchable PDF: {said}"),
        ));
    }
    Ok(())
}

/// Writes `target` (under the output folder `root`) through a temporary
/// file created new (never an existing file or symlink) and a rename,
/// following no symlink below `root`.
fn write_new(
    root: &Path,
    target: &Path,
    fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<(), LandError> {
    let (folder, name) = SafeDir::parent_of(root, target).map_err(|e| LandError::io("cannot create", target, &e))?;
    write_into(&folder, &name, target, fill)
}

fn write_into(
    folder: &SafeDir,
    name: &OsStr,
    target: &Path,
    fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<(), LandError> {
    let (tmp, file) = folder
        .create_temp(name)
        .map_err(|e| LandError::io("cannot write", target, &e))?;
    let result = (|| {
        let mut out = std::io::BufWriter::new(file);
        fill(&mut out)?;
        out.flush()
    })();
    match result {
        Ok(()) => commit(folder, &tmp, name, target),
        Err(e) => {
            folder.discard(&tmp);
            Err(LandError::io("cannot write", target, &e))
        }
    }
}

/// The pages that were turned before OCR, as `land` takes them.
pub fn turned_pages(pages: &[skep_api::PageInfo]) -> Vec<(u32, u16)> {
    pages
        .iter()
        .filter(|p| p.rotation % 360 != 0)
        .map(|p| (p.number, p.rotation % 360))
        .collect()
}

/// How long landing one file may take: qpdf on a large PDF is linear in
/// its size.
pub fn deadline_for(pages: u32) -> Instant {
    Instant::now() + Duration::from_secs(60 + u64::from(pages))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(dir: &Path, artefacts: Vec<Artefact>) -> JobPaths {
        JobPaths {
            source: dir.join("in"),
            object_source: None,
            output: dir.join("out"),
            staging: dir.join("out").join(STAGING_DIR).join("uid"),
            artefacts,
        }
    }

    #[test]
    fn staged_names_must_be_plain() {
        let d = tempfile::tempdir().unwrap();
        let p = paths(d.path(), vec![]);
        for bad in ["../x", "a/b", "/etc", "..", ".", ".hidden", ""] {
            assert!(p.staged(bad).is_err(), "{bad:?}");
        }
        assert!(p.staged("3-0-1-w-0-ab").is_ok());
        assert!(!is_plain_relative("../a.png") && !is_plain_relative("/a.png") && is_plain_relative("a/b.png"));
    }

    #[test]
    fn fragments_are_joined_in_order_under_a_final_name() {
        let d = tempfile::tempdir().unwrap();
        let p = paths(d.path(), vec![Artefact::Tsv]);
        for (name, body) in [("r1", "a\n"), ("r2", "b\n")] {
            let dir = p.staging.join(name);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(Artefact::Tsv.staged_name()), body).unwrap();
        }
        let staged = [
            Staged {
                name: "r1".into(),
                pages: Some(PageRange { first: 1, last: 8 }),
            },
            Staged {
                name: "r2".into(),
                pages: Some(PageRange { first: 9, last: 9 }),
            },
        ];
        land(&p, "sub/doc.pdf", &staged, &[], deadline_for(9)).unwrap();
        let out = std::fs::read_to_string(p.output.join("tsv/sub/doc.pdf.tsv")).unwrap();
        assert_eq!(out, format!("{}a\nb\n", tsv::header()));
        // Nothing temporary is left beside it.
        let left: Vec<_> = std::fs::read_dir(p.output.join("tsv/sub")).unwrap().collect();
        assert_eq!(left.len(), 1);
        // A range without its fragment is an error, not a short file.
        std::fs::remove_file(p.staging.join("r2").join(Artefact::Tsv.staged_name())).unwrap();
        assert!(land(&p, "sub/doc.pdf", &staged, &[], deadline_for(9)).is_err());
    }

    #[test]
    fn a_staged_long_text_is_read_back_bounded() {
        let d = tempfile::tempdir().unwrap();
        let p = paths(d.path(), vec![]);
        let dir = p.staging.join("t");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(STAGED_TEXT_FILE), "long text").unwrap();
        assert_eq!(read_staged_text(&p, "t").unwrap(), "long text");
        assert!(read_staged_text(&p, "../t").is_err());
        assert!(read_staged_text(&p, "missing").is_err());
        discard(&p, "t");
        assert!(!dir.exists());
    }
}
