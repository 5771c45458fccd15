//! Helper processes (Poppler's `pdfinfo`, `pdftotext`, `pdftoppm`, and
//! `qpdf`) run with hard bounds: a deadline after which the process is
//! killed, a cap on the output kept (a process that writes more is killed),
//! and, where util-linux's `prlimit` is installed, an address-space and
//! CPU-time limit set before the program starts. A parser that loops or
//! allocates without end on a hostile document costs one killed process,
//! never the worker.
//!
//! Poppler is GPL: skep only ever runs it as a separate program.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use skep_api::FailureReason;

use crate::DocError;

/// Default address-space limit of a helper process.
pub const DEFAULT_MEMORY_LIMIT: u64 = 2 << 30;
/// Most stderr kept (for error messages).
const MAX_STDERR: usize = 16 * 1024;
/// How often a running process is checked against its deadline.
const POLL: Duration = Duration::from_millis(2);

/// The bounds of one run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Killed when still running at this instant.
    pub deadline: Instant,
    /// Killed when its standard output grows past this.
    pub max_output: usize,
    /// Address space, in bytes (through `prlimit`, when installed).
    pub memory: u64,
}

impl Limits {
    pub fn new(deadline: Instant, max_output: usize) -> Self {
        Self {
            deadline,
            max_output,
            memory: DEFAULT_MEMORY_LIMIT,
        }
    }
}

/// What a finished process left.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    /// Its standard error, lossily decoded and cut to 16 KiB.
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status.success()
    }
}

/// Why a run did not finish by itself.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{program} is not installed")]
    NotInstalled { program: String },
    #[error("{program} could not start: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{program} ran past its deadline and was killed")]
    Timeout { program: String },
    #[error("{program} wrote more than {limit} bytes and was killed")]
    OutputTooLarge { program: String, limit: usize },
    #[error("{program} failed: {source}")]
    Io {
        program: String,
        #[source]
        source: std::io::Error,
    },
}

impl RunError {
    /// The failure reason a document gets when its helper process failed
    /// this way.
    pub fn reason(&self) -> FailureReason {
        match self {
            RunError::NotInstalled { .. } | RunError::Spawn { .. } | RunError::Io { .. } => FailureReason::Engine,
            RunError::Timeout { .. } => FailureReason::Timeout,
            RunError::OutputTooLarge { .. } => FailureReason::TooLarge,
        }
    }
}

impl From<RunError> for DocError {
    fn from(e: RunError) -> Self {
        DocError::new(e.reason(), e.to_string())
    }
}

/// Whether util-linux's `prlimit` can wrap programs here (looked up once).
fn prlimit() -> Option<&'static Path> {
    static FOUND: OnceLock<Option<&'static Path>> = OnceLock::new();
    *FOUND.get_or_init(|| {
        ["/usr/bin/prlimit", "/bin/prlimit"]
            .into_iter()
            .map(Path::new)
            .find(|p| p.exists())
    })
}

/// Runs `program args…` with no standard input, within `limits`.
pub fn run(program: &str, args: &[&std::ffi::OsStr], limits: Limits) -> Result<Output, RunError> {
    let now = Instant::now();
    if now >= limits.deadline {
        return Err(RunError::Timeout {
            program: program.to_owned(),
        });
    }
    let mut cmd = match prlimit() {
        Some(prlimit) => {
            let cpu = limits.deadline.duration_since(now).as_secs().max(1) + 1;
            let mut c = Command::new(prlimit);
            c.arg(format!("--as={}", limits.memory))
                .arg(format!("--cpu={cpu}"))
                .arg("--")
                .arg(program);
            c
        }
        None => Command::new(program),
    };
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // NB: Poppler reads no config that matters, but a locale changes
        // its messages, which error mapping reads.
        .env("LC_ALL", "C");
    let mut child = cmd.spawn().map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            RunError::NotInstalled {
                program: program.to_owned(),
            }
        } else {
            RunError::Spawn {
                program: program.to_owned(),
                source,
            }
        }
    })?;
    let result = supervise(&mut child, program, limits);
    if result.is_err() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let out = result?;
    // NB: prlimit execs the program, so a missing program shows as
    // prlimit's own failure to run it.
    if prlimit().is_some()
        && matches!(out.status.code(), Some(126 | 127))
        && out.stdout.is_empty()
        && out.stderr.contains("failed to execute")
    {
        return Err(RunError::NotInstalled {
            program: program.to_owned(),
        });
    }
    Ok(out)
}

fn supervise(child: &mut Child, program: &str, limits: Limits) -> Result<Output, RunError> {
    let io = |source| RunError::Io {
        program: program.to_owned(),
        source,
    };
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let max = limits.max_output;
    // Readers on their own threads, so neither pipe can fill and stall the
    // child; each stops keeping bytes past its cap.
    let out_reader = std::thread::Builder::new()
        .name("helper-stdout".to_owned())
        .spawn(move || read_capped(stdout, max))
        .map_err(io)?;
    let err_reader = std::thread::Builder::new()
        .name("helper-stderr".to_owned())
        .spawn(move || read_capped(stderr, MAX_STDERR))
        .map_err(io)?;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(io)? {
            break status;
        }
        if Instant::now() >= limits.deadline {
            let _ = child.kill();
            let _ = child.wait();
            let _ = out_reader.join();
            let _ = err_reader.join();
            return Err(RunError::Timeout {
                program: program.to_owned(),
            });
        }
        std::thread::sleep(POLL);
    };
    let (stdout, overflowed) = out_reader.join().unwrap_or_default();
    let (stderr, _) = err_reader.join().unwrap_or_default();
    if overflowed {
        return Err(RunError::OutputTooLarge {
            program: program.to_owned(),
            limit: max,
        });
    }
    Ok(Output {
        status,
        stdout,
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    })
}

/// Reads a pipe to its end, keeping at most `cap` bytes; says whether more
/// came. Reading on past the cap (and dropping it) lets the writer finish
/// or block until it is killed.
fn read_capped(pipe: Option<impl Read>, cap: usize) -> (Vec<u8>, bool) {
    let Some(mut pipe) = pipe else {
        return (Vec::new(), false);
    };
    let mut kept = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut overflowed = false;
    loop {
        match pipe.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if kept.len() + n > cap {
                    overflowed = true;
                    // NB: closing our end makes the writer fail with EPIPE
                    // rather than be killed later.
                    break;
                }
                kept.extend_from_slice(&buf[..n]);
            }
        }
    }
    (kept, overflowed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    fn limits(secs: u64, max_output: usize) -> Limits {
        Limits::new(Instant::now() + Duration::from_secs(secs), max_output)
    }

    #[test]
    fn output_and_status_come_back() {
        let out = run(
            "sh",
            &[OsStr::new("-c"), OsStr::new("printf hi; echo oops >&2; exit 3")],
            limits(10, 1024),
        )
        .expect("runs");
        assert_eq!(out.stdout, b"hi");
        assert_eq!(out.stderr.trim(), "oops");
        assert_eq!(out.status.code(), Some(3));
    }

    #[test]
    fn a_process_past_its_deadline_is_killed() {
        let started = Instant::now();
        let err = run("sleep", &[OsStr::new("30")], limits(1, 1024)).expect_err("killed");
        assert!(matches!(err, RunError::Timeout { .. }), "{err}");
        assert_eq!(err.reason(), FailureReason::Timeout);
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    }

    #[test]
    fn too_much_output_is_refused() {
        let err = run("yes", &[], limits(10, 100_000)).expect_err("capped");
        assert!(matches!(err, RunError::OutputTooLarge { limit: 100_000, .. }), "{err}");
        assert_eq!(err.reason(), FailureReason::TooLarge);
    }

    #[test]
    fn a_missing_program_says_so() {
        let err = run("skep-no-such-program", &[], limits(10, 100)).expect_err("missing");
        assert!(matches!(err, RunError::NotInstalled { .. }), "{err}");
    }

    #[test]
    fn memory_is_limited_where_prlimit_exists() {
        if prlimit().is_none() {
            eprintln!("note: no prlimit here; the memory limit is not applied");
            return;
        }
        let mut l = limits(20, 1 << 20);
        l.memory = 64 << 20;
        // NB: python allocating 512 MiB under a 64 MiB address-space limit
        // fails with MemoryError (exit 1) instead of growing.
        let script = "b = bytearray(512 * 1024 * 1024); print(len(b))";
        let out = run("python3", &[OsStr::new("-c"), OsStr::new(script)], l).expect("runs");
        assert!(!out.success(), "allocated past the limit: {:?}", out.stdout);
        assert!(out.stderr.contains("MemoryError"), "{}", out.stderr);
    }
}
