//! The NSQ TCP protocol (V2), as nsqd 1.3 speaks it: pure encoding and
//! decoding, no I/O.
//!
//! The client writes the magic `"  V2"` once, then newline-terminated
//! commands, some followed by a body (a 4-byte big-endian size and the
//! bytes). nsqd answers with frames: a 4-byte size (of what follows), a
//! 4-byte type (response, error or message) and the data. A message frame's
//! data is an 8-byte timestamp (ns), a 2-byte attempt count, a 16-byte ASCII
//! id and the body. Every size read from the socket is checked against a
//! limit before anything is allocated for it.

use std::fmt;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// What a client writes first.
pub(super) const MAGIC: &[u8; 4] = b"  V2";
/// Length of a message id.
pub(super) const MSG_ID_LEN: usize = 16;
/// Timestamp, attempts and id in front of a message body.
const MESSAGE_HEADER_LEN: usize = 8 + 2 + MSG_ID_LEN;
/// The response nsqd sends to keep a connection alive; answer with NOP.
pub(super) const HEARTBEAT: &[u8] = b"_heartbeat_";
/// The success response of SUB, PUB, MPUB, DPUB and IDENTIFY without
/// feature negotiation.
pub(super) const OK: &[u8] = b"OK";
/// Largest frame accepted from nsqd: a message of up to 16 MiB (nsqd's
/// `--max-msg-size` is 1 MiB by default) with its headers. A larger size
/// in a frame header means a broken or hostile peer; the connection is
/// dropped rather than the memory allocated.
pub(super) const MAX_FRAME_BYTES: usize = (16 << 20) + 4 + MESSAGE_HEADER_LEN;

const FRAME_RESPONSE: u32 = 0;
const FRAME_ERROR: u32 = 1;
const FRAME_MESSAGE: u32 = 2;

/// The longest topic or channel name nsqd accepts.
pub(super) const MAX_NAME_LEN: usize = 64;
const EPHEMERAL_SUFFIX: &str = "#ephemeral";

/// Whether nsqd accepts `name` as a topic or channel name:
/// `[.a-zA-Z0-9_-]+`, optionally followed by `#ephemeral`, 64 bytes at most
/// in all.
pub(super) fn valid_name(name: &str) -> bool {
    let base = name.strip_suffix(EPHEMERAL_SUFFIX).unwrap_or(name);
    name.len() <= MAX_NAME_LEN
        && !base.is_empty()
        && base
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A message id as nsqd sends it (16 ASCII hex digits).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct MessageId([u8; MSG_ID_LEN]);

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.0))
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageId({self})")
    }
}

/// One message delivered to a subscribed connection.
#[derive(Debug)]
pub(super) struct Message {
    pub id: MessageId,
    /// 1 on the first delivery; nsqd counts every delivery.
    pub attempts: u16,
    pub body: Bytes,
}

/// One frame from nsqd.
#[derive(Debug)]
pub(super) enum Frame {
    Response(Bytes),
    /// `E_CODE description`.
    Error(Bytes),
    Message(Message),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(super) enum FrameError {
    #[error("frame of {size} bytes exceeds the limit of {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("frame of {size} bytes is too short for its type")]
    TooShort { size: usize },
    #[error("unknown frame type {0}")]
    UnknownType(u32),
}

/// Takes one whole frame off the front of `buf`; `None` while `buf` holds
/// less than a frame (it then has room reserved for the rest). Frames over
/// `limit` bytes are an error before their data is read.
pub(super) fn decode(buf: &mut BytesMut, limit: usize) -> Result<Option<Frame>, FrameError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let size = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if size > limit {
        return Err(FrameError::TooLarge { size, limit });
    }
    if size < 4 {
        return Err(FrameError::TooShort { size });
    }
    if buf.len() < 4 + size {
        buf.reserve(4 + size - buf.len());
        return Ok(None);
    }
    buf.advance(4);
    let mut data = buf.split_to(size);
    let kind = data.get_u32();
    match kind {
        FRAME_RESPONSE => Ok(Some(Frame::Response(data.freeze()))),
        FRAME_ERROR => Ok(Some(Frame::Error(data.freeze()))),
        FRAME_MESSAGE => {
            if data.len() < MESSAGE_HEADER_LEN {
                return Err(FrameError::TooShort { size });
            }
            let _timestamp_ns = data.get_u64();
            let attempts = data.get_u16();
            let mut id = [0u8; MSG_ID_LEN];
            data.copy_to_slice(&mut id);
            Ok(Some(Frame::Message(Message {
                id: MessageId(id),
                attempts,
                body: data.freeze(),
            })))
        }
        other => Err(FrameError::UnknownType(other)),
    }
}

/// The code of an error frame (`E_FIN_FAILED` of `E_FIN_FAILED FIN … failed`).
pub(super) fn error_code(data: &[u8]) -> &str {
    let end = data.iter().position(|b| *b == b' ').unwrap_or(data.len());
    std::str::from_utf8(&data[..end]).unwrap_or("E_UNKNOWN")
}

/// Whether nsqd keeps the connection open after this error: only the
/// settling of a message no longer in flight (a late FIN, REQ or TOUCH)
/// fails softly; nsqd closes the connection after every other error.
pub(super) fn is_fatal(code: &str) -> bool {
    !matches!(code, "E_FIN_FAILED" | "E_REQ_FAILED" | "E_TOUCH_FAILED")
}

/// One command to nsqd. Topic and channel names must be valid
/// ([`valid_name`]): they are written as they are.
#[derive(Debug, Clone)]
pub(super) enum Command {
    Identify(Bytes),
    Sub {
        topic: String,
        channel: String,
    },
    Rdy(u32),
    Fin(MessageId),
    /// Requeue after a delay (nsqd clamps it to its `--max-req-timeout`).
    Req(MessageId, Duration),
    Touch(MessageId),
    Mpub {
        topic: String,
        bodies: Vec<Bytes>,
    },
    /// Publish after a delay (nsqd refuses, fatally, one over its
    /// `--max-req-timeout`).
    Dpub {
        topic: String,
        delay: Duration,
        body: Bytes,
    },
    Nop,
    Cls,
}

impl Command {
    /// Whether nsqd answers it with a response frame when it succeeds (FIN,
    /// REQ, TOUCH, RDY and NOP are answered only when they fail).
    pub(super) fn expects_response(&self) -> bool {
        matches!(
            self,
            Command::Identify(_) | Command::Sub { .. } | Command::Mpub { .. } | Command::Dpub { .. } | Command::Cls
        )
    }

    /// The command's name, for logs and errors.
    pub(super) fn name(&self) -> &'static str {
        match self {
            Command::Identify(_) => "IDENTIFY",
            Command::Sub { .. } => "SUB",
            Command::Rdy(_) => "RDY",
            Command::Fin(_) => "FIN",
            Command::Req(..) => "REQ",
            Command::Touch(_) => "TOUCH",
            Command::Mpub { .. } => "MPUB",
            Command::Dpub { .. } => "DPUB",
            Command::Nop => "NOP",
            Command::Cls => "CLS",
        }
    }

    pub(super) fn encode(&self, out: &mut BytesMut) {
        match self {
            Command::Identify(json) => {
                out.put_slice(b"IDENTIFY\n");
                put_body(out, json);
            }
            Command::Sub { topic, channel } => line(out, &["SUB", topic, channel]),
            Command::Rdy(n) => line(out, &["RDY", &n.to_string()]),
            Command::Fin(id) => id_line(out, b"FIN ", id, None),
            Command::Req(id, delay) => id_line(out, b"REQ ", id, Some(millis(*delay))),
            Command::Touch(id) => id_line(out, b"TOUCH ", id, None),
            Command::Mpub { topic, bodies } => {
                line(out, &["MPUB", topic]);
                out.put_u32(mpub_body_len(bodies.iter().map(Bytes::len)) as u32);
                out.put_u32(bodies.len() as u32);
                for b in bodies {
                    put_body(out, b);
                }
            }
            Command::Dpub { topic, delay, body } => {
                line(out, &["DPUB", topic, &millis(*delay).to_string()]);
                put_body(out, body);
            }
            Command::Nop => out.put_slice(b"NOP\n"),
            Command::Cls => out.put_slice(b"CLS\n"),
        }
    }
}

/// Size of an MPUB body holding messages of these sizes: a count, then each
/// message with its size.
pub(super) fn mpub_body_len(sizes: impl Iterator<Item = usize>) -> usize {
    4 + sizes.map(|s| 4 + s).sum::<usize>()
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn line(out: &mut BytesMut, words: &[&str]) {
    for (i, w) in words.iter().enumerate() {
        if i > 0 {
            out.put_u8(b' ');
        }
        out.put_slice(w.as_bytes());
    }
    out.put_u8(b'\n');
}

fn id_line(out: &mut BytesMut, verb: &[u8], id: &MessageId, ms: Option<u64>) {
    out.put_slice(verb);
    out.put_slice(&id.0);
    if let Some(ms) = ms {
        out.put_u8(b' ');
        out.put_slice(ms.to_string().as_bytes());
    }
    out.put_u8(b'\n');
}

fn put_body(out: &mut BytesMut, body: &[u8]) {
    out.put_u32(body.len() as u32);
    out.put_slice(body);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u32, data: &[u8]) -> BytesMut {
        let mut b = BytesMut::new();
        b.put_u32(4 + data.len() as u32);
        b.put_u32(kind);
        b.put_slice(data);
        b
    }

    fn message(attempts: u16, id: &[u8; 16], body: &[u8]) -> BytesMut {
        let mut data = Vec::new();
        data.extend_from_slice(&1_700_000_000_000_000_000u64.to_be_bytes());
        data.extend_from_slice(&attempts.to_be_bytes());
        data.extend_from_slice(id);
        data.extend_from_slice(body);
        frame(FRAME_MESSAGE, &data)
    }

    #[test]
    fn decodes_the_three_frame_types_back_to_back() {
        let mut buf = frame(FRAME_RESPONSE, b"OK");
        buf.extend_from_slice(&frame(FRAME_ERROR, b"E_FIN_FAILED FIN x failed ID not in flight"));
        buf.extend_from_slice(&message(3, b"0123456789abcdef", b"hello"));
        match decode(&mut buf, MAX_FRAME_BYTES) {
            Ok(Some(Frame::Response(r))) => assert_eq!(&r[..], OK),
            other => panic!("{other:?}"),
        }
        match decode(&mut buf, MAX_FRAME_BYTES) {
            Ok(Some(Frame::Error(e))) => {
                assert_eq!(error_code(&e), "E_FIN_FAILED");
                assert!(!is_fatal(error_code(&e)));
            }
            other => panic!("{other:?}"),
        }
        match decode(&mut buf, MAX_FRAME_BYTES) {
            Ok(Some(Frame::Message(m))) => {
                assert_eq!(m.attempts, 3);
                assert_eq!(m.id.to_string(), "0123456789abcdef");
                assert_eq!(&m.body[..], b"hello");
            }
            other => panic!("{other:?}"),
        }
        assert!(buf.is_empty());
        assert!(matches!(decode(&mut buf, MAX_FRAME_BYTES), Ok(None)));
    }

    #[test]
    fn a_truncated_frame_waits_for_the_rest_byte_by_byte() {
        let whole = message(1, b"0123456789abcdef", b"body");
        let mut buf = BytesMut::new();
        for (i, byte) in whole.iter().enumerate() {
            assert!(
                matches!(decode(&mut buf, MAX_FRAME_BYTES), Ok(None)),
                "decoded after {i} bytes"
            );
            buf.put_u8(*byte);
        }
        assert!(matches!(decode(&mut buf, MAX_FRAME_BYTES), Ok(Some(Frame::Message(_)))));
    }

    #[test]
    fn oversized_frames_are_refused_from_their_header_alone() {
        let mut buf = BytesMut::new();
        buf.put_u32(u32::MAX);
        assert_eq!(
            decode(&mut buf, MAX_FRAME_BYTES).err(),
            Some(FrameError::TooLarge {
                size: u32::MAX as usize,
                limit: MAX_FRAME_BYTES
            })
        );
        let mut buf = frame(FRAME_RESPONSE, &[b'x'; 100]);
        assert!(matches!(
            decode(&mut buf, 64),
            Err(FrameError::TooLarge { size: 104, .. })
        ));
        // NB: nothing was reserved for the refused frame.
        let mut buf = BytesMut::new();
        buf.put_u32((MAX_FRAME_BYTES + 1) as u32);
        let _ = decode(&mut buf, MAX_FRAME_BYTES);
        assert!(buf.capacity() < 1024);
    }

    #[test]
    fn malformed_frames_are_errors() {
        let mut short = BytesMut::new();
        short.put_u32(2);
        short.put_u16(0);
        assert_eq!(
            decode(&mut short, MAX_FRAME_BYTES).err(),
            Some(FrameError::TooShort { size: 2 })
        );
        let mut headless = frame(FRAME_MESSAGE, b"too short for a message");
        assert!(matches!(
            decode(&mut headless, MAX_FRAME_BYTES),
            Err(FrameError::TooShort { .. })
        ));
        let mut unknown = frame(7, b"");
        assert_eq!(
            decode(&mut unknown, MAX_FRAME_BYTES).err(),
            Some(FrameError::UnknownType(7))
        );
    }

    #[test]
    fn only_late_settles_are_soft_errors() {
        for soft in ["E_FIN_FAILED", "E_REQ_FAILED", "E_TOUCH_FAILED"] {
            assert!(!is_fatal(soft));
        }
        for fatal in ["E_INVALID", "E_BAD_TOPIC", "E_MPUB_FAILED", "E_BAD_BODY", "E_UNKNOWN"] {
            assert!(is_fatal(fatal));
        }
        assert_eq!(error_code(b"E_INVALID"), "E_INVALID");
        assert_eq!(error_code(b"\xff\xfe broken"), "E_UNKNOWN");
    }

    fn encoded(c: Command) -> Vec<u8> {
        let mut out = BytesMut::new();
        c.encode(&mut out);
        out.to_vec()
    }

    #[test]
    fn commands_encode_as_nsqd_reads_them() {
        let id = MessageId(*b"0123456789abcdef");
        assert_eq!(
            encoded(Command::Sub {
                topic: "t".into(),
                channel: "c".into()
            }),
            b"SUB t c\n"
        );
        assert_eq!(encoded(Command::Rdy(250)), b"RDY 250\n");
        assert_eq!(encoded(Command::Fin(id)), b"FIN 0123456789abcdef\n");
        assert_eq!(
            encoded(Command::Req(id, Duration::from_millis(1500))),
            b"REQ 0123456789abcdef 1500\n"
        );
        assert_eq!(encoded(Command::Touch(id)), b"TOUCH 0123456789abcdef\n");
        assert_eq!(encoded(Command::Nop), b"NOP\n");
        assert_eq!(encoded(Command::Cls), b"CLS\n");
        assert_eq!(
            encoded(Command::Dpub {
                topic: "t".into(),
                delay: Duration::from_secs(2),
                body: Bytes::from_static(b"ab"),
            }),
            b"DPUB t 2000\n\x00\x00\x00\x02ab"
        );
        assert_eq!(
            encoded(Command::Mpub {
                topic: "t".into(),
                bodies: vec![Bytes::from_static(b"a"), Bytes::from_static(b"bc")],
            }),
            b"MPUB t\n\x00\x00\x00\x0f\x00\x00\x00\x02\x00\x00\x00\x01a\x00\x00\x00\x02bc"
        );
        assert_eq!(mpub_body_len([1usize, 2].into_iter()), 15);
        assert_eq!(
            encoded(Command::Identify(Bytes::from_static(b"{}"))),
            b"IDENTIFY\n\x00\x00\x00\x02{}"
        );
        assert!(
            Command::Mpub {
                topic: "t".into(),
                bodies: vec![]
            }
            .expects_response()
        );
        assert!(!Command::Fin(id).expects_response());
    }

    #[test]
    fn names_follow_nsqd_rules() {
        for ok in [
            "skep.tasks.default",
            "a",
            "A-b_c.9",
            "t#ephemeral",
            &"x".repeat(64),
            &format!("{}#ephemeral", "x".repeat(54)),
        ] {
            assert!(valid_name(ok), "{ok:?}");
        }
        for bad in [
            "",
            "#ephemeral",
            "a b",
            "a\nb",
            "tâche",
            "a/b",
            "a#b",
            &"x".repeat(65),
            &format!("{}#ephemeral", "x".repeat(55)),
        ] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }
}
