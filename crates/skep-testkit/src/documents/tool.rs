//! Running an external tool (qpdf, poppler, tesseract) with a time limit and
//! bounded output.

use std::ffi::OsStr;
use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Most bytes kept of a tool's stdout or stderr; the rest is read and dropped
/// so the tool never blocks on a full pipe.
const MAX_OUTPUT: u64 = 64 << 20;
/// How often a running tool is polled for exit.
const POLL: Duration = Duration::from_millis(5);

/// An external tool could not be run to completion.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// The program is not installed (not on `PATH`).
    #[error("{program} is not installed ({hint})")]
    Missing { program: String, hint: &'static str },
    /// The program exists but could not be started or waited for.
    #[error("running {program}")]
    Io {
        program: String,
        #[source]
        source: std::io::Error,
    },
    /// The program ran longer than allowed and was killed.
    #[error("{program} did not finish within {seconds:.1} s and was killed")]
    Timeout { program: String, seconds: f64 },
}

/// What a finished tool returned.
#[derive(Debug)]
pub struct ToolOutput {
    pub status: ExitStatus,
    /// At most [`MAX_OUTPUT`] bytes.
    pub stdout: Vec<u8>,
    /// At most [`MAX_OUTPUT`] bytes.
    pub stderr: Vec<u8>,
}

impl ToolOutput {
    /// Stderr as lossy UTF-8 (for test diagnostics; tools print no file
    /// contents there).
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// Runs `program args...` with no stdin, kills it if it runs longer than
/// `timeout`, and returns its exit status and (bounded) output. A non-zero
/// exit is not an error here: callers decide what the status means.
/// `hint` says how to install the program, for the [`ToolError::Missing`]
/// message.
pub fn run_tool<S: AsRef<OsStr>>(
    program: &str,
    args: &[S],
    timeout: Duration,
    hint: &'static str,
) -> Result<ToolOutput, ToolError> {
    let io_err = |source| ToolError::Io {
        program: program.to_string(),
        source,
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                ToolError::Missing {
                    program: program.to_string(),
                    hint,
                }
            } else {
                io_err(source)
            }
        })?;
    let stdout = child.stdout.take().map(drain);
    let stderr = child.stderr.take().map(drain);
    let status = wait_with_deadline(&mut child, timeout).map_err(io_err)?;
    let stdout = join(stdout);
    let stderr = join(stderr);
    match status {
        Some(status) => Ok(ToolOutput { status, stdout, stderr }),
        None => Err(ToolError::Timeout {
            program: program.to_string(),
            seconds: timeout.as_secs_f64(),
        }),
    }
}

/// Waits for `child` until `timeout`; on timeout kills and reaps it and
/// returns `None`.
fn wait_with_deadline(child: &mut Child, timeout: Duration) -> std::io::Result<Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            // NB: the kill can race with a normal exit; either way the child is reaped below.
            let _ = child.kill();
            child.wait()?;
            return Ok(None);
        }
        std::thread::sleep(POLL);
    }
}

/// Reads a pipe to its end on a thread, keeping the first [`MAX_OUTPUT`] bytes.
fn drain<R: Read + Send + 'static>(mut pipe: R) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        let _ = (&mut pipe).take(MAX_OUTPUT).read_to_end(&mut kept);
        let _ = std::io::copy(&mut pipe, &mut std::io::sink());
        kept
    })
}

fn join(handle: Option<JoinHandle<Vec<u8>>>) -> Vec<u8> {
    handle.and_then(|h| h.join().ok()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tool_that_runs_too_long_is_killed() {
        let start = Instant::now();
        let err =
            run_tool("sleep", &["30"], Duration::from_millis(200), "coreutils").expect_err("sleep 30 must time out");
        assert!(matches!(err, ToolError::Timeout { .. }), "{err}");
        assert!(start.elapsed() < Duration::from_secs(5), "{:?}", start.elapsed());
    }

    #[test]
    fn a_missing_tool_is_reported_with_its_hint() {
        let err = run_tool("skep-no-such-tool", &["x"], Duration::from_secs(5), "install it")
            .expect_err("the tool does not exist");
        assert!(matches!(err, ToolError::Missing { .. }), "{err}");
        assert!(err.to_string().contains("install it"));
    }

    #[test]
    fn output_and_exit_status_are_returned() -> anyhow::Result<()> {
        let out = run_tool(
            "sh",
            &["-c", "printf hello; printf oops >&2; exit 3"],
            Duration::from_secs(10),
            "",
        )?;
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(out.stdout, b"hello");
        assert_eq!(out.stderr_text(), "oops");
        Ok(())
    }
}
