//! Publishing: one connection per nsqd, shared by every publish of the
//! queue object, with commands pipelined on it.
//!
//! A batch goes out as MPUB commands within nsqd's limits ([`batches`]) and
//! is `Ok` only once nsqd answered `OK` to each of them. Commands that were
//! not confirmed (the connection died, nsqd refused) are sent once more, on
//! a fresh connection to the next nsqd (the same one if there is only one);
//! if that fails too the publish fails. A failed connection is dropped, so
//! the next publish connects anew.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::future::join_all;
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

use super::conn::{Conn, Dial};
use super::protocol::{self, Command};
use super::url::Nsqd;
use super::{NsqError, lock};

/// Publishes in progress at once per queue object; more wait.
const MAX_CONCURRENT_PUBLISHES: usize = 64;
/// Attempts of each command: the first and one retry.
const ATTEMPTS: usize = 2;

/// Splits messages into MPUB batches whose bodies stay within `max_body`
/// bytes (nsqd's `--max-body-size`). Every message must fit on its own
/// (the caller checked it against the message limit).
pub(super) fn batches(messages: Vec<Bytes>, max_body: usize) -> Vec<Vec<Bytes>> {
    let mut out = Vec::new();
    let mut current: Vec<Bytes> = Vec::new();
    let mut size = protocol::mpub_body_len(std::iter::empty());
    for m in messages {
        let add = 4 + m.len();
        if !current.is_empty() && size + add > max_body {
            out.push(std::mem::take(&mut current));
            size = protocol::mpub_body_len(std::iter::empty());
        }
        size += add;
        current.push(m);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

pub(super) struct Producer {
    connect_timeout: Duration,
    soft_errors: Arc<AtomicU64>,
    slots: Mutex<HashMap<String, Arc<Slot>>>,
    /// Spreads publishes over the nsqds.
    next: AtomicUsize,
    permits: Semaphore,
}

/// The connection to one nsqd, connected on first use.
struct Slot {
    current: Mutex<Option<Arc<Conn>>>,
    /// One connect at a time; the others wait for its outcome.
    gate: tokio::sync::Semaphore,
}

impl Producer {
    pub(super) fn new(connect_timeout: Duration, soft_errors: Arc<AtomicU64>) -> Self {
        Self {
            connect_timeout,
            soft_errors,
            slots: Mutex::new(HashMap::new()),
            next: AtomicUsize::new(0),
            permits: Semaphore::new(MAX_CONCURRENT_PUBLISHES),
        }
    }

    fn slot(&self, addr: &str) -> Arc<Slot> {
        lock(&self.slots)
            .entry(addr.to_owned())
            .or_insert_with(|| {
                Arc::new(Slot {
                    current: Mutex::new(None),
                    gate: tokio::sync::Semaphore::new(1),
                })
            })
            .clone()
    }

    /// The live connection to `addr`, connecting if there is none.
    pub(super) async fn conn(&self, addr: &str) -> Result<Arc<Conn>, NsqError> {
        let slot = self.slot(addr);
        let live = |slot: &Slot| lock(&slot.current).as_ref().filter(|c| c.is_alive()).cloned();
        if let Some(c) = live(&slot) {
            return Ok(c);
        }
        let _permit = slot.gate.acquire().await.map_err(|_| NsqError::Closed)?;
        if let Some(c) = live(&slot) {
            return Ok(c);
        }
        let conn = Conn::open(Dial {
            addr,
            connect_timeout: self.connect_timeout,
            msg_timeout: None,
            sub: None,
            soft_errors: self.soft_errors.clone(),
        })
        .await?;
        if lock(&slot.current).replace(conn.clone()).is_some() {
            info!(nsqd = addr, "reconnected to nsqd for publishing");
        }
        Ok(conn)
    }

    /// Drops the connection to `addr` if it is still `conn`.
    fn forget(&self, addr: &str, conn: &Conn) {
        let slot = self.slot(addr);
        let mut current = lock(&slot.current);
        if current.as_ref().is_some_and(|c| c.id == conn.id) {
            conn.close();
            *current = None;
        }
    }

    /// Sends `commands` (MPUB, DPUB) to one of `nsqds` and waits for each
    /// `OK`; retries what was not confirmed once, on the next nsqd.
    pub(super) async fn publish(&self, nsqds: &[Nsqd], commands: Vec<Command>) -> Result<(), NsqError> {
        let _permit = self.permits.acquire().await.map_err(|_| NsqError::Closed)?;
        if nsqds.is_empty() {
            return Err(NsqError::NoNodes);
        }
        let first = self.next.fetch_add(1, Ordering::Relaxed);
        let mut left = commands;
        let mut last_error = None;
        for attempt in 0..ATTEMPTS {
            let nsqd = &nsqds[(first + attempt) % nsqds.len()];
            match self.publish_on(&nsqd.tcp, left).await {
                Ok(()) => return Ok(()),
                Err((unconfirmed, error)) => {
                    if attempt + 1 < ATTEMPTS {
                        debug!(nsqd = %nsqd.tcp, %error, unconfirmed = unconfirmed.len(), "publish failed; retrying on a fresh connection");
                    } else {
                        warn!(nsqd = %nsqd.tcp, %error, unconfirmed = unconfirmed.len(), "publish failed");
                    }
                    left = unconfirmed;
                    last_error = Some(error);
                }
            }
        }
        Err(last_error.unwrap_or(NsqError::NoNodes))
    }

    /// Pipelines `commands` on the connection to `addr`; on failure, the
    /// commands that were not confirmed and why.
    async fn publish_on(&self, addr: &str, commands: Vec<Command>) -> Result<(), (Vec<Command>, NsqError)> {
        let conn = match self.conn(addr).await {
            Ok(c) => c,
            Err(e) => return Err((commands, e)),
        };
        let mut replies = Vec::with_capacity(commands.len());
        for cmd in &commands {
            replies.push(conn.request(cmd.clone()).await);
        }
        let answers = join_all(replies.into_iter().map(|r| async move {
            match r {
                Ok(rx) => rx.await.unwrap_or_else(|_| Err(NsqError::Closed)),
                Err(e) => Err(e),
            }
        }))
        .await;
        let mut unconfirmed = Vec::new();
        let mut error = None;
        for (cmd, answer) in commands.into_iter().zip(answers) {
            match answer {
                Ok(r) if r == protocol::OK => {}
                Ok(r) => {
                    error.get_or_insert(NsqError::Protocol {
                        addr: addr.to_owned(),
                        what: format!("answered {} with {:?}", cmd.name(), String::from_utf8_lossy(&r)),
                    });
                    unconfirmed.push(cmd);
                }
                Err(e) => {
                    error.get_or_insert(e);
                    unconfirmed.push(cmd);
                }
            }
        }
        match error {
            None => Ok(()),
            Some(e) => {
                self.forget(addr, &conn);
                Err((unconfirmed, e))
            }
        }
    }

    /// Closes every connection.
    pub(super) fn close(&self) {
        for slot in lock(&self.slots).values() {
            if let Some(c) = lock(&slot.current).take() {
                c.close();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes(b: &[Vec<Bytes>]) -> Vec<usize> {
        b.iter().map(Vec::len).collect()
    }

    #[test]
    fn batches_stay_within_the_body_limit() {
        let msgs = |n: usize, len: usize| (0..n).map(|_| Bytes::from(vec![b'x'; len])).collect::<Vec<_>>();
        assert!(batches(Vec::new(), 100).is_empty());
        // 4 + 3 * (4 + 10) = 46 fits in 46, not in 45.
        assert_eq!(sizes(&batches(msgs(3, 10), 46)), vec![3]);
        assert_eq!(sizes(&batches(msgs(3, 10), 45)), vec![2, 1]);
        let max = 5 << 20;
        let big = batches(msgs(12, 1 << 20), max);
        assert_eq!(sizes(&big), vec![4, 4, 4]);
        for b in &big {
            assert!(protocol::mpub_body_len(b.iter().map(Bytes::len)) <= max);
        }
        let small = batches(msgs(10_000, 100), max);
        assert_eq!(small.iter().map(Vec::len).sum::<usize>(), 10_000);
        assert_eq!(small.len(), 1);
    }
}
