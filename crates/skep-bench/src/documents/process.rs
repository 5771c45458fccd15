//! The programs the documents bench runs (`skep`, `ocrmypdf`, Poppler's),
//! each with a time limit and a cap on the output kept, so a program that
//! hangs or floods its pipes costs one killed process, never the bench.
//!
//! Every program gets `OMP_THREAD_LIMIT=1`, as the OCR bench's do: one
//! Tesseract thread per page, so that parallelism is the tool's own.

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use skep_worker::OMP_ENV;

use super::{Error, Result};

/// Most standard error kept, from its end (where programs say why they
/// failed).
const MAX_STDERR: usize = 16 * 1024;
/// How often a running program is checked against its limit.
const POLL: Duration = Duration::from_millis(2);
/// How long the pipes may stay open after the program exited (a child it
/// left behind may hold them) before the bench stops reading them.
const PIPE_GRACE: Duration = Duration::from_secs(5);
/// Longest message taken from a program's standard error.
const MAX_SAID: usize = 200;

/// What a finished program left.
#[derive(Debug)]
pub struct Finished {
    /// From start to exit.
    pub elapsed: Duration,
    pub status: ExitStatus,
    /// The first bytes of its standard output, up to the cap asked for.
    pub stdout: Vec<u8>,
    /// Whether it wrote more than the cap.
    pub stdout_truncated: bool,
    /// The end of its standard error, lossily decoded.
    pub stderr: String,
}

impl Finished {
    /// `Ok(self)` when the program exited 0, else [`Error::Failed`] with the
    /// last line it wrote to standard error.
    pub fn checked(self, program: &str) -> Result<Self> {
        if self.status.success() {
            return Ok(self);
        }
        Err(Error::Failed {
            program: program.to_owned(),
            status: self.status.to_string(),
            said: last_line(&self.stderr),
        })
    }
}

/// Runs `cmd` with no standard input and `OMP_THREAD_LIMIT=1`, keeping at
/// most `keep_stdout` bytes of its output (the rest is read and dropped).
/// Killed, and [`Error::Timeout`], when it runs longer than `limit`. A
/// program that cannot be found is [`Error::NotInstalled`] with `hint`.
pub fn run(mut cmd: Command, limit: Duration, keep_stdout: usize, hint: &str) -> Result<Finished> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env(OMP_ENV, "1");
    let started = Instant::now();
    let mut child = cmd.spawn().map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => Error::NotInstalled {
            program: program.clone(),
            hint: hint.to_owned(),
        },
        _ => Error::Spawn {
            program: program.clone(),
            source,
        },
    })?;
    let (tx, rx) = mpsc::channel();
    if let Some(out) = child.stdout.take() {
        let tx = tx.clone();
        std::thread::spawn(move || tx.send(Stream::Out(drain_head(out, keep_stdout))));
    }
    if let Some(err) = child.stderr.take() {
        std::thread::spawn(move || tx.send(Stream::Err(drain_tail(err, MAX_STDERR))));
    } else {
        drop(tx);
    }
    let status = wait(&mut child, started, limit, &program)?;
    let elapsed = started.elapsed();
    let (mut stdout, mut stdout_truncated, mut stderr) = (Vec::new(), false, Vec::new());
    let grace = Instant::now() + PIPE_GRACE;
    loop {
        let left = grace.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Stream::Out((bytes, truncated))) => (stdout, stdout_truncated) = (bytes, truncated),
            Ok(Stream::Err((bytes, _))) => stderr = bytes,
            // NB: both readers are done, or a child the program left
            // behind still holds a pipe: what was read so far is kept.
            Err(_) => break,
        }
    }
    Ok(Finished {
        elapsed,
        status,
        stdout,
        stdout_truncated,
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    })
}

enum Stream {
    Out((Vec<u8>, bool)),
    Err((Vec<u8>, bool)),
}

fn wait(child: &mut Child, started: Instant, limit: Duration, program: &str) -> Result<ExitStatus> {
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status),
            Ok(None) if started.elapsed() >= limit => {
                // NB: only the program itself is killed; a child it started
                // (a tesseract of OCRmyPDF's) finishes its page and exits.
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::Timeout {
                    program: program.to_owned(),
                    limit,
                });
            }
            Ok(None) => std::thread::sleep(POLL),
            Err(source) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::Spawn {
                    program: program.to_owned(),
                    source,
                });
            }
        }
    }
}

/// Reads `r` to its end, keeping the first `keep` bytes; says whether
/// there were more.
fn drain_head(mut r: impl Read, keep: usize) -> (Vec<u8>, bool) {
    let mut kept = Vec::new();
    let mut truncated = false;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match r.read(&mut buf) {
            Ok(0) | Err(_) => return (kept, truncated),
            Ok(n) => {
                let room = keep.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
                truncated |= n > room;
            }
        }
    }
}

/// Reads `r` to its end, keeping the last `keep` bytes.
fn drain_tail(mut r: impl Read, keep: usize) -> (Vec<u8>, bool) {
    let mut kept = Vec::new();
    let mut truncated = false;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match r.read(&mut buf) {
            Ok(0) | Err(_) => return (kept, truncated),
            Ok(n) => {
                kept.extend_from_slice(&buf[..n]);
                if kept.len() > 2 * keep {
                    kept.drain(..kept.len() - keep);
                    truncated = true;
                }
            }
        }
    }
}

/// The last non-blank line of `text`, cut to [`MAX_SAID`] characters.
fn last_line(text: &str) -> String {
    let line = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no message");
    line.trim().chars().take(MAX_SAID).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut c = Command::new("sh");
        c.arg("-c").arg(script);
        c
    }

    #[test]
    fn a_program_past_its_limit_is_killed() {
        let started = Instant::now();
        let err = run(sh("sleep 30"), Duration::from_millis(200), 0, "").expect_err("killed");
        assert!(matches!(err, Error::Timeout { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    }

    #[test]
    fn output_past_the_cap_is_dropped_not_kept() {
        let f = run(sh("head -c 3000000 /dev/zero"), Duration::from_secs(30), 1000, "").expect("runs");
        assert_eq!(f.stdout.len(), 1000);
        assert!(f.stdout_truncated);
        let f = run(sh("printf abc"), Duration::from_secs(30), 1000, "").expect("runs");
        assert_eq!((f.stdout.as_slice(), f.stdout_truncated), (&b"abc"[..], false));
    }

    #[test]
    fn only_the_end_of_stderr_is_kept_and_a_failure_says_its_last_line() {
        let script = "head -c 200000 /dev/zero | tr '\\0' x; echo; echo 'the real reason' >&2; exit 3";
        let f = run(sh(&format!("({script}) 1>&2")), Duration::from_secs(30), 0, "").expect("runs");
        assert!(f.stderr.len() <= 2 * MAX_STDERR, "{}", f.stderr.len());
        let err = f.checked("sh").expect_err("exit 3");
        let Error::Failed { said, status, .. } = &err else {
            panic!("{err}")
        };
        assert_eq!(said, "the real reason");
        assert!(status.contains('3'), "{status}");
    }

    #[test]
    fn a_missing_program_says_how_to_install_it() {
        let err = run(
            Command::new("skep-bench-no-such-program"),
            Duration::from_secs(5),
            0,
            "apt-get install it",
        )
        .expect_err("missing");
        assert!(err.to_string().contains("apt-get install it"), "{err}");
    }

    #[test]
    fn programs_get_one_tesseract_thread() {
        let f = run(sh("printf %s \"$OMP_THREAD_LIMIT\""), Duration::from_secs(30), 100, "").expect("runs");
        assert_eq!(f.stdout, b"1");
    }
}
