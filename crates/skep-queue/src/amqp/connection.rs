//! One lazily (re)established AMQP connection.
//!
//! No automatic recovery inside lapin: a dead connection fails the calls
//! that were on it (publishes return an error the caller retries,
//! subscriptions end so the caller subscribes again), and the next call
//! connects anew. That keeps every delivery tag tied to the one channel
//! that issued it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use lapin::uri::AMQPUri;
use lapin::{Connection, ConnectionProperties};
use tokio::sync::Semaphore;
use tracing::{debug, info};

use super::{AmqpError, lock};

pub(super) struct ConnSlot {
    /// `publish` or `consume`, for the broker's connection list and logs.
    role: &'static str,
    uri: AMQPUri,
    connect_timeout: Duration,
    current: Mutex<Option<Arc<Connection>>>,
    /// One connect attempt at a time; the others wait for its outcome.
    gate: Semaphore,
}

impl ConnSlot {
    pub(super) fn new(role: &'static str, uri: AMQPUri, connect_timeout: Duration) -> Self {
        Self {
            role,
            uri,
            connect_timeout,
            current: Mutex::new(None),
            gate: Semaphore::new(1),
        }
    }

    fn healthy(&self) -> Option<Arc<Connection>> {
        lock(&self.current).as_ref().filter(|c| c.status().connected()).cloned()
    }

    /// The connection, connecting first if there is none or it died.
    pub(super) async fn get(&self) -> Result<Arc<Connection>, AmqpError> {
        if let Some(c) = self.healthy() {
            return Ok(c);
        }
        let _permit = self.gate.acquire().await.map_err(|_| AmqpError::Closed)?;
        if let Some(c) = self.healthy() {
            return Ok(c);
        }
        let props = ConnectionProperties::default()
            .with_connection_name(format!("skep-queue {} (pid {})", self.role, std::process::id()).into());
        let conn =
            match tokio::time::timeout(self.connect_timeout, Connection::connect_uri(self.uri.clone(), props)).await {
                Ok(Ok(c)) => Arc::new(c),
                Ok(Err(source)) => return Err(AmqpError::Broker { op: "connect", source }),
                Err(_) => {
                    return Err(AmqpError::Timeout {
                        op: "connect",
                        after: self.connect_timeout,
                    });
                }
            };
        let replaced = lock(&self.current).replace(conn.clone()).is_some();
        if replaced {
            info!(role = self.role, "reconnected to the broker");
        } else {
            debug!(role = self.role, "connected to the broker");
        }
        Ok(conn)
    }

    /// Closes the connection, if any, politely.
    pub(super) async fn close(&self) {
        let conn = lock(&self.current).take();
        if let Some(c) = conn
            && c.status().connected()
        {
            let _ = tokio::time::timeout(self.connect_timeout, c.close(200, "closing".into())).await;
        }
    }
}
