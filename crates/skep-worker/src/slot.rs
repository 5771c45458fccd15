//! An OCR slot: one OS thread that owns Tesseract engines and reads one task
//! (a file or a page range) at a time, driven from async code with a
//! per-task time limit.
//!
//! Tesseract cannot be interrupted from safe code, so a file that runs past
//! its limit is answered at once with reason `timeout` and its thread is
//! abandoned: it finishes that page in the background and exits, and the
//! slot starts a fresh thread for the next file. At most
//! [`MAX_ABANDONED`] such threads per slot run at a time; past that the slot
//! waits for one to end before it takes more work, so a stream of
//! pathological files cannot pile up threads.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use skep_api::FailureReason;
use tokio::sync::oneshot;

use crate::document::{self, ReadOutput, ReadRequest};
use crate::engine::{Engine, OcrError};

/// Abandoned (timed-out) threads one slot lets run before it waits.
pub const MAX_ABANDONED: usize = 1;
/// Engines (one per language set) a slot thread keeps warm.
const ENGINES_PER_THREAD: usize = 2;

struct Job {
    request: ReadRequest,
    reply: oneshot::Sender<Result<ReadOutput, OcrError>>,
}

struct SlotThread {
    tx: mpsc::Sender<Job>,
    handle: JoinHandle<()>,
}

/// See the module docs. Not `Clone`: a slot runs one file at a time.
pub struct OcrSlot {
    name: String,
    thread: Option<SlotThread>,
    abandoned: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for OcrSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OcrSlot")
            .field("name", &self.name)
            .field("abandoned", &self.abandoned.len())
            .finish()
    }
}

impl OcrSlot {
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            thread: None,
            abandoned: Vec::new(),
        }
    }

    /// Reads a task, giving up after `timeout` (helper processes the task
    /// starts are killed by then too: the request's deadline is set here).
    pub async fn read(&mut self, mut request: ReadRequest, timeout: Duration) -> Result<ReadOutput, OcrError> {
        self.wait_for_abandoned().await;
        request.deadline = std::time::Instant::now() + timeout;
        let (reply, rx) = oneshot::channel();
        let job = Job { request, reply };
        let sent = self.thread()?.tx.send(job).is_ok();
        if !sent {
            self.thread = None;
            return Err(OcrError::new(FailureReason::Engine, "the OCR thread stopped"));
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => {
                self.thread = None;
                Err(OcrError::new(FailureReason::Engine, "the OCR thread died"))
            }
            Err(_) => {
                if let Some(t) = self.thread.take() {
                    drop(t.tx);
                    self.abandoned.push(t.handle);
                }
                Err(OcrError::new(
                    FailureReason::Timeout,
                    format!("recognition took longer than {}s", timeout.as_secs_f64()),
                ))
            }
        }
    }

    fn thread(&mut self) -> Result<&SlotThread, OcrError> {
        if self.thread.as_ref().is_some_and(|t| t.handle.is_finished()) {
            self.thread = None;
        }
        if self.thread.is_none() {
            let (tx, rx) = mpsc::channel();
            let handle = std::thread::Builder::new()
                .name(format!("ocr-{}", self.name))
                .spawn(move || slot_thread(rx))
                .map_err(|e| OcrError::new(FailureReason::Engine, format!("cannot start an OCR thread: {e}")))?;
            self.thread = Some(SlotThread { tx, handle });
        }
        self.thread
            .as_ref()
            .ok_or_else(|| OcrError::new(FailureReason::Engine, "no OCR thread"))
    }

    async fn wait_for_abandoned(&mut self) {
        loop {
            self.abandoned.retain(|h| !h.is_finished());
            if self.abandoned.len() < MAX_ABANDONED {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Threads still finishing a timed-out file.
    pub fn abandoned(&self) -> usize {
        self.abandoned.iter().filter(|h| !h.is_finished()).count()
    }
}

fn slot_thread(rx: mpsc::Receiver<Job>) {
    let mut engines: Vec<Engine> = Vec::new();
    for job in rx {
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
            // NB: only for a file that needs one: a run of empty or
            // unreadable files loads no engine.
            let engines = &mut engines;
            document::read_with(|| engine_for(engines, &job.request.config.languages), &job.request)
        }));
        let result = result.unwrap_or_else(|panic| {
            // NB: after a panic inside the binding the engine's state is
            // unknown; start afresh.
            engines.clear();
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            Err(OcrError::new(
                FailureReason::Engine,
                format!("the engine panicked: {what}"),
            ))
        });
        // The receiver is gone when the file timed out; nothing to tell.
        let _ = job.reply.send(result);
    }
}

fn engine_for<'a>(engines: &'a mut Vec<Engine>, languages: &str) -> Result<&'a mut Engine, OcrError> {
    if let Some(i) = engines.iter().position(|e| e.languages() == languages) {
        // Most recently used goes last.
        let e = engines.remove(i);
        engines.push(e);
    } else {
        let e = Engine::new(languages)?;
        if engines.len() >= ENGINES_PER_THREAD {
            engines.remove(0);
        }
        engines.push(e);
    }
    engines
        .last_mut()
        .ok_or_else(|| OcrError::new(FailureReason::Engine, "no engine"))
}
