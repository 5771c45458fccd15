//! Queue statistics from RabbitMQ's management plugin, the only place that
//! reports un-acked (in-flight) counts of a queue over all consumers: AMQP's
//! `queue.declare-ok` carries only the ready count.
//!
//! A deliberately small HTTP/1.1 client (one GET per connection, plain HTTP,
//! basic auth, bounded response) so that this optional feature pulls in no
//! HTTP stack. The management listener is meant to be reached on a trusted
//! network (loopback in the tests).
//!
//! The numbers lag: a quorum queue reports its counts on its Ra tick
//! (`quorum_tick_interval`, 5 s by default) and the plugin refreshes them
//! every `collect_statistics_interval` (5 s by default); a queue declared a
//! moment ago has no counts yet (read as zero).

use std::time::Duration;

use base64::Engine;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::AmqpError;

/// Largest response read; a queue listing of a few hundred delay queues
/// fits many times over.
const MAX_RESPONSE: usize = 4 << 20;
/// Delay queues of one topic counted at most.
const MAX_QUEUES: usize = 500;

pub(super) struct Management {
    host: String,
    port: u16,
    authorization: String,
    /// The vhost, percent-encoded for a path segment.
    vhost: String,
    timeout: Duration,
}

/// One queue's counts, as far as the broker has refreshed them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct QueueStats {
    pub ready: u64,
    pub unacked: u64,
}

impl Management {
    pub(super) fn new(host: &str, port: u16, user: &str, password: &str, vhost: &str, timeout: Duration) -> Self {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        Self {
            host: host.to_owned(),
            port,
            authorization: format!("Basic {token}"),
            vhost: encode(vhost),
            timeout,
        }
    }

    /// The counts of one queue; `None` when it does not exist.
    pub(super) async fn queue(&self, name: &str) -> Result<Option<QueueStats>, AmqpError> {
        let path = format!("/api/queues/{}/{}", self.vhost, encode(name));
        match self.get(&path).await? {
            (200, body) => Ok(Some(stats(&parse(&body)?))),
            (404, _) => Ok(None),
            (status, _) => Err(AmqpError::Management(format!("GET {path} answered {status}"))),
        }
    }

    /// The summed counts of the queues whose names start with `prefix`.
    pub(super) async fn queues_with_prefix(&self, prefix: &str) -> Result<QueueStats, AmqpError> {
        let pattern = format!("^{}", regex_escape(prefix));
        let path = format!(
            "/api/queues/{}?page=1&page_size={MAX_QUEUES}&use_regex=true&name={}&columns=name,messages_ready,messages_unacknowledged",
            self.vhost,
            encode(&pattern)
        );
        let (status, body) = self.get(&path).await?;
        if status != 200 {
            return Err(AmqpError::Management(format!("GET {path} answered {status}")));
        }
        let doc = parse(&body)?;
        let items = doc
            .get("items")
            .and_then(Value::as_array)
            .ok_or_else(|| AmqpError::Management("queue listing without items (pagination unsupported?)".to_owned()))?;
        Ok(items.iter().map(stats).fold(QueueStats::default(), |a, s| QueueStats {
            ready: a.ready + s.ready,
            unacked: a.unacked + s.unacked,
        }))
    }

    async fn get(&self, path: &str) -> Result<(u16, Vec<u8>), AmqpError> {
        let fut = async {
            let mut stream = TcpStream::connect((self.host.as_str(), self.port)).await?;
            let request = format!(
                "GET {path} HTTP/1.1\r\nHost: {}:{}\r\nAuthorization: {}\r\nAccept: application/json\r\nConnection: close\r\n\r\n",
                self.host, self.port, self.authorization
            );
            stream.write_all(request.as_bytes()).await?;
            let mut raw = Vec::new();
            (&mut stream)
                .take(MAX_RESPONSE as u64 + 1)
                .read_to_end(&mut raw)
                .await?;
            Ok::<_, std::io::Error>(raw)
        };
        let raw = match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(raw)) => raw,
            Ok(Err(e)) => return Err(AmqpError::Management(format!("GET {path}: {e}"))),
            Err(_) => {
                return Err(AmqpError::Timeout {
                    op: "management api",
                    after: self.timeout,
                });
            }
        };
        if raw.len() > MAX_RESPONSE {
            return Err(AmqpError::Management(format!(
                "GET {path}: response over {MAX_RESPONSE} bytes"
            )));
        }
        parse_response(&raw).map_err(|e| AmqpError::Management(format!("GET {path}: {e}")))
    }
}

fn parse(body: &[u8]) -> Result<Value, AmqpError> {
    serde_json::from_slice(body).map_err(|e| AmqpError::Management(format!("unreadable answer: {e}")))
}

fn stats(v: &Value) -> QueueStats {
    let n = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
    QueueStats {
        ready: n("messages_ready"),
        unacked: n("messages_unacknowledged"),
    }
}

/// Splits a complete HTTP/1.1 response into its status and (de-chunked) body.
fn parse_response(raw: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let head_end = find(raw, b"\r\n\r\n").ok_or("no end of headers")?;
    let head = std::str::from_utf8(&raw[..head_end]).map_err(|_| "headers are not utf-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or("empty response")?;
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut chunked = false;
    let mut length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") && value.eq_ignore_ascii_case("chunked") {
            chunked = true;
        } else if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse::<usize>().map_err(|_| "bad content-length")?);
        }
    }
    let rest = &raw[head_end + 4..];
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(n) = length {
        rest.get(..n).ok_or("body shorter than its content-length")?.to_vec()
    } else {
        rest.to_vec()
    };
    Ok((status, body))
}

fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let line_end = find(rest, b"\r\n").ok_or("truncated chunk size")?;
        let size_field = std::str::from_utf8(&rest[..line_end]).map_err(|_| "bad chunk size")?;
        let size_hex = size_field.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16).map_err(|_| format!("bad chunk size {size_hex:?}"))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        let chunk = rest.get(..size).ok_or("truncated chunk")?;
        body.extend_from_slice(chunk);
        rest = rest.get(size + 2..).ok_or("truncated chunk end")?;
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 2);
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_plain_and_a_chunked_response() {
        let plain = b"HTTP/1.1 200 OK\r\ncontent-length: 7\r\ncontent-type: application/json\r\n\r\n{\"a\":1}";
        assert_eq!(parse_response(plain), Ok((200, b"{\"a\":1}".to_vec())));
        let chunked =
            b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n4;x=y\r\n\":1}\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked), Ok((404, b"{\"a\":1}".to_vec())));
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n{}").is_err());
    }

    #[test]
    fn encodes_vhosts_and_names_for_a_path() {
        assert_eq!(encode("/"), "%2F");
        assert_eq!(encode("skep.tasks.a-b_c~"), "skep.tasks.a-b_c~");
        assert_eq!(encode("^a b"), "%5Ea%20b");
        assert_eq!(regex_escape("skep.t(1)"), "skep\\.t\\(1\\)");
    }

    #[test]
    fn missing_counts_read_as_zero() {
        let v: Value = serde_json::json!({"messages_ready": 3});
        assert_eq!(stats(&v), QueueStats { ready: 3, unacked: 0 });
    }
}
