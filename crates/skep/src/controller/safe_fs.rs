//! Writing into a job's output folder without following symlinks.
//!
//! The output folder itself is reached as the allowed-path check resolved
//! it; every folder below it is opened one component at a time with
//! `O_NOFOLLOW`, created if missing, and refused if it is a symlink (a
//! `text/` swapped for a link to `/etc` is an error, not a redirect). Files
//! are then named through the open folder's descriptor
//! (`/proc/PID/fd/N/NAME`), so the folder chain is never looked up again
//! between the check and the write. Temporary files are created new
//! (`O_EXCL`, never an existing file or link) under a random name, and
//! renamed over the final name (a rename replaces a link, never writes
//! through it). Files read from the staging folder, which workers write,
//! are opened `O_NOFOLLOW` too.

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{Mode, OFlags};

/// An open folder under a job's output folder, reached without symlinks.
#[derive(Debug)]
pub struct SafeDir {
    fd: OwnedFd,
    /// Its path, for messages.
    shown: PathBuf,
}

fn refused_link(path: &Path) -> std::io::Error {
    std::io::Error::other(format!(
        "{} is a symlink or not a folder; skep does not write through symlinks",
        path.display()
    ))
}

impl SafeDir {
    /// Opens `root` (created if missing), then each folder of `rel` below
    /// it, creating the missing ones, never following a symlink.
    pub fn open(root: &Path, rel: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(root)?;
        Self::walk(root, rel, true)
    }

    /// Opens `root` (which must exist; a symlink there is followed, as the
    /// allowed-path check resolved it) and each folder of `rel` below it,
    /// never following a symlink and creating nothing.
    pub fn open_existing(root: &Path, rel: &Path) -> std::io::Result<Self> {
        Self::walk(root, rel, false)
    }

    fn walk(root: &Path, rel: &Path, create: bool) -> std::io::Result<Self> {
        let fd = rustix::fs::open(
            root,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let mut dir = SafeDir {
            fd,
            shown: root.to_path_buf(),
        };
        for c in rel.components() {
            let Component::Normal(name) = c else {
                return Err(std::io::Error::other(format!(
                    "{} is not a plain relative folder",
                    rel.display()
                )));
            };
            dir = dir.child(name, create)?;
        }
        Ok(dir)
    }

    /// Where this folder really is (the kernel's name of the open folder,
    /// whatever was swapped on the way since).
    pub fn real_path(&self) -> std::io::Result<PathBuf> {
        real_path_of(&self.fd)
    }

    /// The folder `name` in this one, created if missing, never through a
    /// symlink.
    pub fn create_child(self, name: &std::ffi::OsStr) -> std::io::Result<Self> {
        self.child(name, true)
    }

    /// The folder `name` in this one (created if missing and `create`).
    fn child(self, name: &std::ffi::OsStr, create: bool) -> std::io::Result<Self> {
        let shown = self.shown.join(name);
        if create {
            match rustix::fs::mkdirat(&self.fd, name, Mode::from_raw_mode(0o755)) {
                Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let fd = rustix::fs::openat(
            &self.fd,
            name,
            OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| match e {
            rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR => refused_link(&shown),
            e => e.into(),
        })?;
        Ok(SafeDir { fd, shown })
    }

    /// The folder of `path` relative to `root` (its parent), opened as
    /// [`SafeDir::open`] does, and the file name.
    pub fn parent_of(root: &Path, path: &Path) -> std::io::Result<(Self, std::ffi::OsString)> {
        let rel = path
            .strip_prefix(root)
            .map_err(|_| std::io::Error::other(format!("{} is outside {}", path.display(), root.display())))?;
        let name = rel
            .file_name()
            .ok_or_else(|| std::io::Error::other(format!("{} names no file", path.display())))?
            .to_owned();
        let dir = SafeDir::open(root, rel.parent().unwrap_or(Path::new("")))?;
        Ok((dir, name))
    }

    /// `name` in this folder, as a path through its descriptor (valid while
    /// `self` lives, in this process and its helper processes).
    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        through_fd(self.fd.as_raw_fd()).join(name)
    }

    /// Sets this folder's permission bits (through its descriptor).
    pub fn set_mode(&self, mode: u32) -> std::io::Result<()> {
        rustix::fs::fchmod(&self.fd, Mode::from_raw_mode(mode)).map_err(Into::into)
    }

    /// A new temporary name for `name` in this folder (not created).
    pub fn temp_name(name: &std::ffi::OsStr) -> String {
        format!(".{}.{}.tmp-skep", name.to_string_lossy(), uuid::Uuid::new_v4().simple())
    }

    /// Creates a new temporary file for `name` (never an existing file or
    /// link); its name and the open file.
    pub fn create_temp(&self, name: &std::ffi::OsStr) -> std::io::Result<(String, File)> {
        let tmp = Self::temp_name(name);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(OFlags::NOFOLLOW.bits() as i32)
            .mode(0o644)
            .open(self.join(&tmp))?;
        Ok((tmp, file))
    }

    /// Renames `tmp` over `name`, both in this folder; removes `tmp` if
    /// that fails.
    pub fn commit(&self, tmp: &str, name: &std::ffi::OsStr) -> std::io::Result<()> {
        rustix::fs::renameat(&self.fd, tmp, &self.fd, name).map_err(|e| {
            let _ = rustix::fs::unlinkat(&self.fd, tmp, rustix::fs::AtFlags::empty());
            std::io::Error::from(e)
        })
    }

    /// Removes `tmp` from this folder (after a failure).
    pub fn discard(&self, tmp: &str) {
        let _ = rustix::fs::unlinkat(&self.fd, tmp, rustix::fs::AtFlags::empty());
    }

    /// Removes the file `name` from this folder (a link is removed, never
    /// followed).
    pub fn remove(&self, name: &std::ffi::OsStr) -> std::io::Result<()> {
        rustix::fs::unlinkat(&self.fd, name, rustix::fs::AtFlags::empty()).map_err(Into::into)
    }

    /// Writes `bytes` as `name` in this folder: a new temporary file, then a
    /// rename.
    pub fn write_atomically(&self, name: &std::ffi::OsStr, bytes: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        let (tmp, mut file) = self.create_temp(name)?;
        if let Err(e) = file.write_all(bytes).and_then(|()| file.flush()) {
            self.discard(&tmp);
            return Err(e);
        }
        drop(file);
        self.commit(&tmp, name)
    }
}

/// Opens a file that workers wrote (in the staging folder) for reading,
/// refusing a symlink: `None` when it is missing.
pub fn open_staged(path: &Path) -> std::io::Result<Option<File>> {
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags((OFlags::NOFOLLOW | OFlags::NONBLOCK).bits() as i32)
        .open(path);
    match opened {
        Ok(f) => {
            if !f.metadata()?.is_file() {
                return Err(std::io::Error::other(format!(
                    "{} is not a regular file",
                    path.display()
                )));
            }
            Ok(Some(f))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => Err(std::io::Error::other(
            format!("{} is a symlink; staged files must be plain files", path.display()),
        )),
        Err(e) => Err(e),
    }
}

/// The path of an open file through its descriptor (for a helper process
/// that reads it: the name is not looked up again).
pub fn fd_path(file: &File) -> PathBuf {
    through_fd(file.as_raw_fd())
}

/// `/proc/PID/fd/N` of this process: `self` would mean a helper process's
/// own table when a helper reads it (descriptors are not inherited).
/// Where an open file or folder really is: the kernel's name for it.
pub fn real_path_of(fd: &impl AsRawFd) -> std::io::Result<PathBuf> {
    std::fs::read_link(through_fd(fd.as_raw_fd()))
}

fn through_fd(fd: std::os::fd::RawFd) -> PathBuf {
    PathBuf::from(format!("/proc/{}/fd/{fd}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_are_made_and_symlinked_ones_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("out");
        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir_all(&elsewhere).unwrap();
        let d = SafeDir::open(&root, Path::new("text/a/b")).unwrap();
        d.write_atomically("x.txt".as_ref(), b"hello").unwrap();
        assert_eq!(std::fs::read(root.join("text/a/b/x.txt")).unwrap(), b"hello");
        // A folder swapped for a symlink is refused, not followed.
        std::os::unix::fs::symlink(&elsewhere, root.join("hocr")).unwrap();
        let err = SafeDir::open(&root, Path::new("hocr/a")).unwrap_err();
        assert!(err.to_string().contains("symlink"), "{err}");
        assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
        assert!(SafeDir::open(&root, Path::new("../x")).is_err());
    }

    #[test]
    fn a_planted_link_at_the_final_name_is_replaced_not_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("out");
        std::fs::create_dir_all(&root).unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"keep me").unwrap();
        std::os::unix::fs::symlink(&victim, root.join("results.jsonl")).unwrap();
        std::os::unix::fs::symlink(&victim, root.join("results.jsonl.tmp-skep")).unwrap();
        let d = SafeDir::open(&root, Path::new("")).unwrap();
        d.write_atomically("results.jsonl".as_ref(), b"new").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep me");
        assert_eq!(std::fs::read(root.join("results.jsonl")).unwrap(), b"new");
        assert!(!root.join("results.jsonl").is_symlink());
    }

    #[test]
    fn staged_symlinks_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("secret"), b"s").unwrap();
        std::fs::write(dir.path().join("plain"), b"p").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), dir.path().join("link")).unwrap();
        assert!(open_staged(&dir.path().join("plain")).unwrap().is_some());
        assert!(open_staged(&dir.path().join("missing")).unwrap().is_none());
        let err = open_staged(&dir.path().join("link")).unwrap_err();
        assert!(err.to_string().contains("symlink"), "{err}");
    }
}
