//! The other baseline: the `tesseract` command, one process per page,
//! `threads` processes at a time, as a shell script would run it.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use skep_worker::OMP_ENV;
use tracing::warn;

use super::corpus::Page;
use super::{Error, Result, Round, Settings};
use crate::load::Meter;

/// The program run; found on `PATH`.
pub const TESSERACT: &str = "tesseract";

/// Reads every page once with `settings.threads` processes at a time, after
/// one untimed process per thread (the warm-up rule: it loads the program
/// and its language data into the page cache, as in steady use). Each
/// timed process pays its own engine start-up: that is the cost of the
/// command line, and part of what is measured.
pub fn run(pages: &[Page], settings: &Settings) -> Result<Round> {
    let threads = settings.threads.max(1);
    std::thread::scope(|s| {
        let warm: Vec<_> = (0..threads)
            .map(|t| s.spawn(move || recognize(&pages[t % pages.len()].path, settings)))
            .collect();
        for h in warm {
            h.join().map_err(|_| Error::Panicked("a tesseract warm-up thread"))??;
        }
        Ok::<_, Error>(())
    })?;

    let next = AtomicUsize::new(0);
    let (started, meter) = (Instant::now(), Meter::start());
    let joined: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let next = &next;
                s.spawn(move || {
                    let mut read = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(page) = pages.get(i) else { break };
                        read.push((i, recognize(&page.path, settings)?));
                    }
                    Ok::<_, Error>(read)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join()).collect()
    });
    let (elapsed, others) = (started.elapsed(), meter.others());
    let mut texts = vec![None; pages.len()];
    for outcome in joined {
        for (i, text) in outcome.map_err(|_| Error::Panicked("a tesseract thread"))?? {
            texts[i] = text;
        }
    }
    Ok(Round { elapsed, texts, others })
}

/// The text `tesseract FILE - --psm N` prints, `None` (with a warning) when
/// it fails on the file; an error when it cannot be started at all.
fn recognize(path: &Path, settings: &Settings) -> Result<Option<String>> {
    let out = Command::new(TESSERACT)
        .arg(path)
        .arg("-")
        .arg("--psm")
        .arg(settings.psm.to_string())
        .arg("-l")
        .arg(&settings.languages)
        .env(OMP_ENV, "1")
        .stdin(Stdio::null())
        .output()
        .map_err(Error::Tesseract)?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        warn!(path = %path.display(), status = %out.status, stderr = %stderr.trim(), "tesseract failed on a page");
        return Ok(None);
    }
    Ok(Some(String::from_utf8_lossy(&out.stdout).into_owned()))
}
