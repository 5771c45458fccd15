//! `skep-bench scan`: skep's folder scan (the walk the controller runs to
//! find a job's files) against `find DIR -type f -name '*.png'`, on a tree
//! of empty `.png` files, with the page cache hot.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::builder::RangedU64ValueParser;
use serde::Serialize;
use skep_api::SourceSpec;

use crate::stats::{Rate, Samples, ratio};

pub const DEFAULT_FILES: usize = 100_000;
pub const DEFAULT_REPEATS: usize = 3;
/// Sub-folders the files are spread over.
pub const FOLDERS: usize = 100;
/// Written into a tree this bench made, so a later run can reuse it.
const MARKER: &str = ".skep-bench-tree";

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// `--dir` holds something this bench did not make, or a tree of
    /// another size.
    #[error("{dir} is not empty and holds no tree of {files} files made by skep-bench; give an empty or new folder")]
    Foreign { dir: String, files: usize },
    /// skep's scan failed.
    #[error("skep's scan of {dir} failed: {message}")]
    Scan { dir: String, message: String },
    /// `find` could not run or failed.
    #[error("find failed: {0}")]
    Find(String),
    /// A scan did not find every file of the tree.
    #[error("{who} found {found} files, the tree has {files}")]
    Miscount {
        who: &'static str,
        found: usize,
        files: usize,
    },
}

/// `skep-bench scan` options.
#[derive(Clone, Debug, clap::Args)]
pub struct ScanOptions {
    /// Empty `.png` files in the tree.
    #[arg(long, default_value_t = DEFAULT_FILES, env = "SKEP_BENCH_FILES",
          value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    pub files: usize,
    /// Folder for the tree: reused when an earlier run made one of the same
    /// size there, made there when empty or missing; default: a temporary
    /// folder.
    #[arg(long, env = "SKEP_BENCH_DIR")]
    pub dir: Option<PathBuf>,
    /// Timed scans of each kind, interleaved, after one warm-up of each.
    #[arg(long, default_value_t = DEFAULT_REPEATS, env = "SKEP_BENCH_REPEATS",
          value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    pub repeats: usize,
}

impl Default for ScanOptions {
    fn default() -> Self {
        Self {
            files: DEFAULT_FILES,
            dir: None,
            repeats: DEFAULT_REPEATS,
        }
    }
}

/// Makes (or reuses) the tree, warms both scans once, then times them
/// `repeats` times each, interleaved. Blocking; progress goes to stderr.
pub fn run(opts: &ScanOptions) -> Result<ScanReport> {
    let (dir, _temp) = match &opts.dir {
        Some(d) => (d.clone(), None),
        None => {
            let t = tempfile::Builder::new()
                .prefix("skep-bench-scan-")
                .tempdir()
                .map_err(|e| io_error(Path::new("(temporary folder)"), e))?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    let started = Instant::now();
    let made = ensure_tree(&dir, opts.files)?;
    let made_s = made.then(|| started.elapsed().as_secs_f64());
    if let Some(s) = made_s {
        eprintln!("scan: made {} empty files in {s:.1} s", opts.files);
    }

    let mut skep = Samples::default();
    let mut find = Samples::default();
    for i in 0..=opts.repeats {
        let s = time_skep(&dir, opts.files)?;
        let f = time_find(&dir, opts.files)?;
        if i == 0 {
            eprintln!(
                "scan: warm-up: skep {:.3} s, find {:.3} s",
                s.as_secs_f64(),
                f.as_secs_f64()
            );
            continue;
        }
        eprintln!(
            "scan: run {i}/{}: skep {:.3} s, find {:.3} s",
            opts.repeats,
            s.as_secs_f64(),
            f.as_secs_f64()
        );
        skep.push(s);
        find.push(f);
    }
    let skep = skep.rate(opts.files as f64);
    let find = find.rate(opts.files as f64);
    Ok(ScanReport {
        bench: "scan",
        dir: dir.display().to_string(),
        files: opts.files,
        folders: FOLDERS,
        made_tree_s: made_s,
        repeats: opts.repeats,
        skep_vs_find: ratio(skep.per_s, find.per_s),
        skep,
        find,
    })
}

/// Makes a tree of `files` empty `.png` files over [`FOLDERS`] sub-folders
/// in `dir`, unless a tree of that size made by this bench is there.
/// Returns whether it made one.
pub(crate) fn ensure_tree(dir: &Path, files: usize) -> Result<bool> {
    let marker = dir.join(MARKER);
    let expected = format!("files={files} folders={FOLDERS}\n");
    if let Ok(found) = std::fs::read_to_string(&marker) {
        if found == expected {
            return Ok(false);
        }
        return Err(Error::Foreign {
            dir: dir.display().to_string(),
            files,
        });
    }
    std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
    let mut entries = std::fs::read_dir(dir).map_err(|e| io_error(dir, e))?;
    if entries.next().is_some() {
        return Err(Error::Foreign {
            dir: dir.display().to_string(),
            files,
        });
    }
    for folder in 0..FOLDERS {
        let sub = dir.join(format!("d{folder:03}"));
        std::fs::create_dir(&sub).map_err(|e| io_error(&sub, e))?;
    }
    for i in 0..files {
        let path = dir.join(format!("d{:03}/f{i:07}.png", i % FOLDERS));
        std::fs::File::create(&path).map_err(|e| io_error(&path, e))?;
    }
    // NB: the marker goes last, so an interrupted run is not reused.
    std::fs::write(&marker, expected).map_err(|e| io_error(&marker, e))?;
    Ok(true)
}

fn time_skep(dir: &Path, files: usize) -> Result<Duration> {
    let source = SourceSpec {
        path: dir.display().to_string(),
        url: None,
        recursive: true,
        include: Vec::new(),
        exclude: Vec::new(),
        follow_symlinks: false,
    };
    let started = Instant::now();
    let found = skep::controller::scan::list_files(dir, &source).map_err(|message| Error::Scan {
        dir: dir.display().to_string(),
        message,
    })?;
    let elapsed = started.elapsed();
    check_count("skep", found.len(), files)?;
    Ok(elapsed)
}

pub(crate) fn time_find(dir: &Path, files: usize) -> Result<Duration> {
    let started = Instant::now();
    let out = Command::new("find")
        .arg(dir)
        .args(["-type", "f", "-name", "*.png"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::Find(e.to_string()))?;
    let found = out.stdout.iter().filter(|&&b| b == b'\n').count();
    let elapsed = started.elapsed();
    if !out.status.success() {
        return Err(Error::Find(format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    check_count("find", found, files)?;
    Ok(elapsed)
}

fn check_count(who: &'static str, found: usize, files: usize) -> Result<()> {
    if found != files {
        return Err(Error::Miscount { who, found, files });
    }
    Ok(())
}

fn io_error(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The result of `skep-bench scan`; rates are files per second.
#[derive(Debug, Serialize)]
pub struct ScanReport {
    pub bench: &'static str,
    pub dir: String,
    pub files: usize,
    pub folders: usize,
    /// Seconds spent making the tree; `None` when an earlier one was reused.
    pub made_tree_s: Option<f64>,
    pub repeats: usize,
    /// `skep::controller::scan::list_files`.
    pub skep: Rate,
    /// `find DIR -type f -name '*.png'`, its output lines counted.
    pub find: Rate,
    pub skep_vs_find: f64,
}

impl fmt::Display for ScanReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tree = match self.made_tree_s {
            Some(s) => format!("made in {s:.1} s"),
            None => "reused".to_owned(),
        };
        writeln!(
            f,
            "scan: {} empty .png files in {} folders ({tree}) under {}, median of {} after one warm-up each",
            self.files, self.folders, self.dir, self.repeats
        )?;
        writeln!(
            f,
            "  {:<6} {:>10} {:>9} {:>8} {:>8}",
            "scan", "files/s", "median s", "min s", "max s"
        )?;
        for (name, r) in [("skep", &self.skep), ("find", &self.find)] {
            writeln!(
                f,
                "  {:<6} {:>10.0} {:>9.4} {:>8.4} {:>8.4}",
                name, r.per_s, r.median_s, r.min_s, r.max_s
            )?;
        }
        write!(f, "  skep/find: {:.3}", self.skep_vs_find)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_scans_count_every_file_and_the_tree_is_reused() {
        let d = tempfile::tempdir().expect("tempdir");
        let dir = d.path().join("tree");
        let opts = ScanOptions {
            files: 1_234,
            dir: Some(dir.clone()),
            repeats: 1,
        };
        let first = run(&opts).expect("first scan");
        assert!(first.made_tree_s.is_some());
        assert!(first.skep.per_s > 0.0 && first.find.per_s > 0.0);
        let second = run(&opts).expect("second scan");
        assert_eq!(second.made_tree_s, None, "the tree is reused");
    }

    #[test]
    fn a_folder_of_something_else_is_refused() {
        let d = tempfile::tempdir().expect("tempdir");
        std::fs::write(d.path().join("precious.txt"), b"keep me").expect("write");
        let opts = ScanOptions {
            files: 10,
            dir: Some(d.path().to_path_buf()),
            repeats: 1,
        };
        assert!(matches!(run(&opts), Err(Error::Foreign { .. })));
        let other_size = tempfile::tempdir().expect("tempdir");
        let mut o = opts.clone();
        o.dir = Some(other_size.path().to_path_buf());
        run(&o).expect("made");
        o.files = 11;
        assert!(matches!(run(&o), Err(Error::Foreign { .. })), "a tree of another size");
    }
}
