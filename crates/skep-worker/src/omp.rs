//! Debian's Tesseract is built with OpenMP; left alone, every engine starts
//! a thread per core and engines on several threads oversubscribe the CPU
//! (4.5-5x slower measured on 2 cores). `OMP_THREAD_LIMIT=1` must be in the
//! environment before the first engine starts, and setting the environment
//! of a running multi-threaded process is unsound, so binaries re-execute
//! themselves with it instead.

use std::os::unix::process::CommandExt;

pub const OMP_ENV: &str = "OMP_THREAD_LIMIT";

/// Call first thing in `main`, before any thread starts. When
/// `OMP_THREAD_LIMIT` is unset this replaces the process with itself, same
/// arguments, with `OMP_THREAD_LIMIT=1`; it returns only when the variable
/// was already set (by the user, the image, or the re-execution) or when
/// re-executing failed, which it reports on stderr.
pub fn ensure_single_threaded_tesseract() {
    if std::env::var_os(OMP_ENV).is_some() {
        return;
    }
    let exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("warning: {OMP_ENV} is unset and the executable cannot be found ({e}); OCR will be slow");
            return;
        }
    };
    let err = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env(OMP_ENV, "1")
        .exec();
    eprintln!("warning: {OMP_ENV} is unset and re-executing with it failed ({err}); OCR will be slow");
}
