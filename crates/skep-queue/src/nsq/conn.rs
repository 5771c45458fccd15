//! One TCP connection to one nsqd: a handshake, then a writer task and a
//! reader task.
//!
//! The writer takes commands off a bounded queue and writes as many as are
//! waiting in one go, flushing when the queue is empty: no timer, so a lone
//! FIN leaves at once and a burst of them shares a write. Commands that nsqd
//! answers (SUB, MPUB, DPUB, CLS) carry a reply slot; nsqd answers them in
//! the order it read them, so the writer queues the slots in write order and
//! the reader fills them front to back. A connection that ends (EOF, a read
//! or write error, a fatal error frame, no frame for twice the heartbeat
//! interval, or [`Conn::close`]) fails every reply still waiting: a caller
//! never waits on a dead connection, and nothing it sent is reported as done
//! unless nsqd said so.
//!
//! Error frames for FIN, REQ and TOUCH of a message no longer in flight are
//! soft (nsqd keeps the connection); they are counted and logged at debug.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info_span, warn};

use super::protocol::{self, Command, Frame, Message};
use super::{NsqError, lock};

/// Interval of nsqd's heartbeats on our connections: a connection that
/// hears nothing for twice as long (plus [`READ_SLACK`]) is declared dead.
pub(super) const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);
const READ_SLACK: Duration = Duration::from_secs(2);
/// How long nsqd may hold delivered messages in its write buffer before it
/// flushes them. nsqd's default is 250 ms, which holds a lone message that
/// long; 25 ms is the least nsqd accepts by default
/// (`--min-output-buffer-timeout`; a smaller value fails IDENTIFY). It only
/// delays a consumer that has spare RDY while its channel runs dry: nsqd
/// flushes at once when a consumer's RDY is used up, and writes its
/// responses and heartbeats unbuffered.
pub(super) const OUTPUT_BUFFER_TIMEOUT_MS: u64 = 25;
/// Commands queued for the writer at most; senders wait beyond it.
const COMMAND_QUEUE: usize = 4096;
/// Bytes the writer gathers before it writes even if more commands wait.
const WRITE_BATCH: usize = 256 << 10;
/// A write that does not finish within this is a dead peer.
const WRITE_TIMEOUT: Duration = Duration::from_secs(15);
const READ_CHUNK: usize = 64 << 10;

/// Receives the messages of a subscribed connection.
pub(super) trait Inbox: Send + Sync + 'static {
    fn deliver(&self, conn: u64, msg: Message);
}

/// What nsqd agreed to in IDENTIFY.
#[derive(Clone, Copy, Debug)]
pub(super) struct Negotiated {
    /// Highest RDY nsqd accepts (`--max-rdy-count`).
    pub max_rdy_count: u32,
    /// Time a message stays in flight before nsqd hands it out again.
    pub msg_timeout: Duration,
    /// Longest a message may stay in flight, TOUCHes included.
    pub max_msg_timeout: Duration,
}

impl Negotiated {
    /// nsqd's defaults, for an nsqd that does not negotiate.
    const DEFAULT: Negotiated = Negotiated {
        max_rdy_count: 2500,
        msg_timeout: Duration::from_secs(60),
        max_msg_timeout: Duration::from_secs(15 * 60),
    };
}

/// How to open a connection.
pub(super) struct Dial<'a> {
    pub addr: &'a str,
    pub connect_timeout: Duration,
    /// A consumer's in-flight timeout; `None` keeps nsqd's `--msg-timeout`.
    pub msg_timeout: Option<Duration>,
    /// Topic and channel to SUB to, with the receiver of the messages.
    pub sub: Option<(&'a str, &'a str, Arc<dyn Inbox>)>,
    /// Soft errors (late FIN, REQ, TOUCH) of every connection of a queue.
    pub soft_errors: Arc<AtomicU64>,
}

type Reply = oneshot::Sender<Result<Bytes, NsqError>>;

struct Outgoing {
    cmd: Command,
    reply: Option<Reply>,
    /// The writer ends the connection once this command is written.
    last: bool,
}

/// Reply slots of commands written and not yet answered, in write order.
#[derive(Default)]
struct Pending {
    /// Set when the connection ended: later slots are failed at once.
    closed: bool,
    waiting: VecDeque<(&'static str, Reply)>,
}

pub(super) struct Conn {
    pub id: u64,
    pub addr: String,
    pub negotiated: Negotiated,
    tx: mpsc::Sender<Outgoing>,
    done: CancellationToken,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.done.cancel();
    }
}

static NEXT_CONN_ID: AtomicU64 = AtomicU64::new(1);

impl Conn {
    /// Connects, IDENTIFYs and (for a consumer) SUBs; then the connection
    /// runs until it fails or is closed or dropped.
    pub(super) async fn open(dial: Dial<'_>) -> Result<Arc<Conn>, NsqError> {
        let addr = dial.addr.to_owned();
        let id = NEXT_CONN_ID.fetch_add(1, Ordering::Relaxed);
        let opening = async {
            let stream = TcpStream::connect(&addr).await.map_err(|source| NsqError::Io {
                op: "connect to",
                addr: addr.clone(),
                source,
            })?;
            let _ = stream.set_nodelay(true);
            handshake(stream, &addr, &dial).await
        };
        let (stream, negotiated, leftover) = match tokio::time::timeout(dial.connect_timeout, opening).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(NsqError::Timeout {
                    op: "connect to",
                    addr,
                    after: dial.connect_timeout,
                });
            }
        };
        let (rd, wr) = stream.into_split();
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
        let done = CancellationToken::new();
        let pending = Arc::new(Mutex::new(Pending::default()));
        let span = info_span!("nsq", conn = id, %addr);
        let reader = Reader {
            id,
            addr: addr.clone(),
            pending: pending.clone(),
            inbox: dial.sub.map(|(_, _, inbox)| inbox),
            nop: tx.downgrade(),
            soft_errors: dial.soft_errors,
        };
        tokio::spawn(reader.run(rd, leftover, done.clone()).instrument(span.clone()));
        tokio::spawn(write_loop(wr, rx, pending, done.clone(), addr.clone()).instrument(span));
        debug!(conn = id, %addr, ?negotiated, "connected to nsqd");
        Ok(Arc::new(Conn {
            id,
            addr,
            negotiated,
            tx,
            done,
        }))
    }

    pub(super) fn is_alive(&self) -> bool {
        !self.done.is_cancelled()
    }

    /// Resolves once the connection has ended.
    pub(super) async fn closed(&self) {
        self.done.cancelled().await
    }

    /// Ends the connection now; replies still waiting fail.
    pub(super) fn close(&self) {
        self.done.cancel();
    }

    /// Queues a command nsqd does not answer when it succeeds (RDY, FIN,
    /// REQ, TOUCH, NOP). Fails only if the connection has ended.
    pub(super) async fn send(&self, cmd: Command) -> Result<(), NsqError> {
        debug_assert!(!cmd.expects_response(), "{} is answered: use request", cmd.name());
        let command = cmd.name();
        self.tx
            .send(Outgoing {
                cmd,
                reply: None,
                last: false,
            })
            .await
            .map_err(|_| self.lost(command))
    }

    /// [`send`](Self::send) without waiting: gives the command back if the
    /// queue is full or the connection has ended.
    pub(super) fn try_send(&self, cmd: Command) -> Result<(), Command> {
        debug_assert!(!cmd.expects_response(), "{} is answered: use request", cmd.name());
        let o = Outgoing {
            cmd,
            reply: None,
            last: false,
        };
        self.tx.try_send(o).map_err(|e| match e {
            mpsc::error::TrySendError::Full(o) | mpsc::error::TrySendError::Closed(o) => o.cmd,
        })
    }

    /// Queues a command nsqd answers; the returned receiver yields the
    /// answer (or the failure of the connection). Queueing several before
    /// awaiting any pipelines them.
    pub(super) async fn request(&self, cmd: Command) -> Result<oneshot::Receiver<Result<Bytes, NsqError>>, NsqError> {
        debug_assert!(cmd.expects_response(), "{} is not answered: use send", cmd.name());
        let command = cmd.name();
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Outgoing {
                cmd,
                reply: Some(reply),
                last: false,
            })
            .await
            .map_err(|_| self.lost(command))?;
        Ok(rx)
    }

    /// Ends the connection once every command queued before has been
    /// written (a FIN queued just before must reach nsqd), waiting `wait`
    /// at most.
    pub(super) async fn close_after_queued(&self, wait: Duration) {
        let last = Outgoing {
            cmd: Command::Nop,
            reply: None,
            last: true,
        };
        if let Ok(Ok(())) = tokio::time::timeout(wait, self.tx.send(last)).await {
            let _ = tokio::time::timeout(wait, self.closed()).await;
        }
        self.close();
    }

    pub(super) fn lost(&self, command: &'static str) -> NsqError {
        NsqError::Lost {
            addr: self.addr.clone(),
            command,
        }
    }
}

/// Reads the answer to the handshake's commands, answering heartbeats.
async fn handshake(
    mut stream: TcpStream,
    addr: &str,
    dial: &Dial<'_>,
) -> Result<(TcpStream, Negotiated, BytesMut), NsqError> {
    let io = |op: &'static str| {
        let addr = addr.to_owned();
        move |source| NsqError::Io { op, addr, source }
    };
    let mut out = BytesMut::new();
    out.extend_from_slice(protocol::MAGIC);
    Command::Identify(identify_body(dial.msg_timeout)).encode(&mut out);
    if let Some((topic, channel, _)) = &dial.sub {
        Command::Sub {
            topic: (*topic).to_owned(),
            channel: (*channel).to_owned(),
        }
        .encode(&mut out);
    }
    stream.write_all(&out).await.map_err(io("write to"))?;
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut expect: VecDeque<&'static str> = VecDeque::from(["IDENTIFY"]);
    if dial.sub.is_some() {
        expect.push_back("SUB");
    }
    let mut negotiated = Negotiated::DEFAULT;
    while let Some(command) = expect.front().copied() {
        let frame = match protocol::decode(&mut buf, protocol::MAX_FRAME_BYTES) {
            Ok(Some(f)) => f,
            Ok(None) => {
                if stream.read_buf(&mut buf).await.map_err(io("read from"))? == 0 {
                    return Err(NsqError::Protocol {
                        addr: addr.to_owned(),
                        what: format!("closed the connection before answering {command}"),
                    });
                }
                continue;
            }
            Err(e) => {
                return Err(NsqError::Protocol {
                    addr: addr.to_owned(),
                    what: e.to_string(),
                });
            }
        };
        match frame {
            Frame::Response(r) if r == protocol::HEARTBEAT => {
                let mut nop = BytesMut::new();
                Command::Nop.encode(&mut nop);
                stream.write_all(&nop).await.map_err(io("write to"))?;
            }
            Frame::Response(r) => {
                expect.pop_front();
                if command == "IDENTIFY" && r != protocol::OK {
                    negotiated = parse_identify(&r).map_err(|what| NsqError::Protocol {
                        addr: addr.to_owned(),
                        what,
                    })?;
                } else if r != protocol::OK {
                    return Err(NsqError::Protocol {
                        addr: addr.to_owned(),
                        what: format!("answered {command} with {:?}", String::from_utf8_lossy(&r)),
                    });
                }
            }
            Frame::Error(e) => {
                return Err(NsqError::Refused {
                    addr: addr.to_owned(),
                    command,
                    message: String::from_utf8_lossy(&e).into_owned(),
                });
            }
            Frame::Message(_) => {
                return Err(NsqError::Protocol {
                    addr: addr.to_owned(),
                    what: "sent a message before RDY".to_owned(),
                });
            }
        }
    }
    Ok((stream, negotiated, buf))
}

fn identify_body(msg_timeout: Option<Duration>) -> Bytes {
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".to_owned());
    let short = hostname.split('.').next().unwrap_or(&hostname).to_owned();
    let mut body = serde_json::json!({
        "client_id": short,
        "hostname": hostname,
        "user_agent": concat!("skep/", env!("CARGO_PKG_VERSION")),
        "feature_negotiation": true,
        "heartbeat_interval": HEARTBEAT_INTERVAL.as_millis() as u64,
        "output_buffer_timeout": OUTPUT_BUFFER_TIMEOUT_MS,
    });
    if let Some(t) = msg_timeout {
        body["msg_timeout"] = serde_json::json!(t.as_millis() as u64);
    }
    Bytes::from(body.to_string())
}

fn parse_identify(body: &[u8]) -> Result<Negotiated, String> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("answered IDENTIFY with invalid JSON: {e}"))?;
    let ms = |key: &str, default: Duration| {
        v.get(key)
            .and_then(serde_json::Value::as_u64)
            .map(Duration::from_millis)
            .unwrap_or(default)
    };
    let d = Negotiated::DEFAULT;
    Ok(Negotiated {
        max_rdy_count: v
            .get("max_rdy_count")
            .and_then(serde_json::Value::as_u64)
            .map(|n| n.clamp(1, u32::MAX.into()) as u32)
            .unwrap_or(d.max_rdy_count),
        // NB: bounded by what this client asks for: deadlines are computed
        // from them, and a huge value from the network would overflow.
        msg_timeout: ms("msg_timeout", d.msg_timeout).min(super::MAX_MSG_TIMEOUT),
        max_msg_timeout: ms("max_msg_timeout", d.max_msg_timeout).min(super::MAX_MSG_TIMEOUT),
    })
}

/// Fails every waiting reply and every later one.
fn fail_pending(pending: &Mutex<Pending>, addr: &str) {
    let waiting = {
        let mut p = lock(pending);
        p.closed = true;
        std::mem::take(&mut p.waiting)
    };
    for (command, reply) in waiting {
        let _ = reply.send(Err(NsqError::Lost {
            addr: addr.to_owned(),
            command,
        }));
    }
}

async fn write_loop(
    mut wr: OwnedWriteHalf,
    mut rx: mpsc::Receiver<Outgoing>,
    pending: Arc<Mutex<Pending>>,
    done: CancellationToken,
    addr: String,
) {
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    loop {
        let first = tokio::select! {
            _ = done.cancelled() => break,
            o = rx.recv() => match o {
                Some(o) => o,
                None => break,
            },
        };
        let mut next = Some(first);
        let mut last = false;
        while let Some(o) = next.take() {
            o.cmd.encode(&mut buf);
            last |= o.last;
            if let Some(reply) = o.reply {
                let mut p = lock(&pending);
                if p.closed {
                    drop(p);
                    let _ = reply.send(Err(NsqError::Lost {
                        addr: addr.clone(),
                        command: o.cmd.name(),
                    }));
                } else {
                    p.waiting.push_back((o.cmd.name(), reply));
                }
            }
            if buf.len() < WRITE_BATCH && !last {
                next = rx.try_recv().ok();
            }
        }
        let written = tokio::select! {
            _ = done.cancelled() => break,
            r = tokio::time::timeout(WRITE_TIMEOUT, wr.write_all(&buf)) => r,
        };
        match written {
            Ok(Ok(())) if last => break,
            Ok(Ok(())) => buf.clear(),
            Ok(Err(error)) => {
                debug!(%error, "writing to nsqd failed");
                break;
            }
            Err(_) => {
                warn!(after = ?WRITE_TIMEOUT, "a write to nsqd did not finish; dropping the connection");
                break;
            }
        }
    }
    done.cancel();
    fail_pending(&pending, &addr);
    let _ = wr.shutdown().await;
}

struct Reader {
    id: u64,
    addr: String,
    pending: Arc<Mutex<Pending>>,
    inbox: Option<Arc<dyn Inbox>>,
    /// For NOPs answering heartbeats; weak, so that the writer's queue
    /// closes when the last [`Conn`] handle is gone.
    nop: mpsc::WeakSender<Outgoing>,
    soft_errors: Arc<AtomicU64>,
}

impl Reader {
    async fn run(self, mut rd: OwnedReadHalf, mut buf: BytesMut, done: CancellationToken) {
        // NB: however the reader ends, a panic included, the connection
        // ends with it: its writer and its supervisor wait on `done`.
        let _ended = done.clone().drop_guard();
        let read_timeout = HEARTBEAT_INTERVAL * 2 + READ_SLACK;
        let why = loop {
            match protocol::decode(&mut buf, protocol::MAX_FRAME_BYTES) {
                Ok(Some(frame)) => {
                    if let Err(why) = self.handle(frame) {
                        break why;
                    }
                    continue;
                }
                Ok(None) => {}
                Err(e) => break format!("unreadable frame: {e}"),
            }
            if buf.capacity() - buf.len() < 1024 {
                buf.reserve(READ_CHUNK);
            }
            let read = tokio::select! {
                _ = done.cancelled() => break "closed".to_owned(),
                r = tokio::time::timeout(read_timeout, rd.read_buf(&mut buf)) => r,
            };
            match read {
                Ok(Ok(0)) => break "nsqd closed the connection".to_owned(),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => break format!("read failed: {e}"),
                Err(_) => break format!("nothing heard for {read_timeout:?}"),
            }
        };
        done.cancel();
        fail_pending(&self.pending, &self.addr);
        debug!(reason = %why, "nsqd connection ended");
    }

    /// Handles one frame; `Err` ends the connection.
    fn handle(&self, frame: Frame) -> Result<(), String> {
        match frame {
            Frame::Response(r) if r == protocol::HEARTBEAT => {
                if let Some(tx) = self.nop.upgrade() {
                    // NB: a full queue is writing anyway; nsqd only needs
                    // to hear something within two heartbeats.
                    let _ = tx.try_send(Outgoing {
                        cmd: Command::Nop,
                        reply: None,
                        last: false,
                    });
                }
                Ok(())
            }
            Frame::Response(r) => {
                let next = lock(&self.pending).waiting.pop_front();
                match next {
                    Some((_, reply)) => {
                        let _ = reply.send(Ok(r));
                        Ok(())
                    }
                    None => Err(format!(
                        "unexpected response {:?}",
                        String::from_utf8_lossy(&r[..r.len().min(64)])
                    )),
                }
            }
            Frame::Error(e) => {
                let code = protocol::error_code(&e);
                let message = String::from_utf8_lossy(&e).into_owned();
                if !protocol::is_fatal(code) {
                    let n = self.soft_errors.fetch_add(1, Ordering::Relaxed) + 1;
                    debug!(error = %message, soft_errors = n, "nsqd refused a late settle");
                    return Ok(());
                }
                // NB: every fatal error answers the oldest command still
                // waiting, if any; nsqd closes the connection after it.
                let next = lock(&self.pending).waiting.pop_front();
                if let Some((command, reply)) = next {
                    let _ = reply.send(Err(NsqError::Refused {
                        addr: self.addr.clone(),
                        command,
                        message: message.clone(),
                    }));
                } else {
                    warn!(error = %message, "nsqd closed the connection with an error");
                }
                Err(message)
            }
            Frame::Message(m) => match &self.inbox {
                Some(inbox) => {
                    inbox.deliver(self.id, m);
                    Ok(())
                }
                None => Err("a message on a connection that is not subscribed".to_owned()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identify_asks_for_what_the_backend_relies_on() {
        let body = identify_body(Some(Duration::from_millis(1500)));
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v["feature_negotiation"], true);
        assert_eq!(v["msg_timeout"], 1500);
        assert_eq!(v["heartbeat_interval"], 5000);
        assert_eq!(v["output_buffer_timeout"], OUTPUT_BUFFER_TIMEOUT_MS);
        assert!(v["user_agent"].as_str().is_some_and(|u| u.starts_with("skep/")));
        let producer: serde_json::Value = serde_json::from_slice(&identify_body(None)).expect("json");
        assert!(producer.get("msg_timeout").is_none());
    }

    #[test]
    fn identify_answers_are_read_with_defaults_for_what_is_missing() {
        let n =
            parse_identify(br#"{"max_rdy_count":100,"msg_timeout":3000,"max_msg_timeout":900000,"version":"1.3.0"}"#)
                .expect("parses");
        assert_eq!(n.max_rdy_count, 100);
        assert_eq!(n.msg_timeout, Duration::from_secs(3));
        assert_eq!(n.max_msg_timeout, Duration::from_secs(900));
        let d = parse_identify(b"{}").expect("parses");
        assert_eq!(d.max_rdy_count, 2500);
        assert!(parse_identify(b"not json").is_err());
    }
}
