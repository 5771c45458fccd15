//! The accept loop, with the limits that keep a hostile or broken client
//! from exhausting the controller: a cap on open connections (over it, a
//! new connection is closed at once), a deadline for a request's headers
//! (slow-header clients), an idle deadline (no byte read or written, such
//! as a keep-alive connection nobody uses or a stream nobody reads), and a
//! deadline for each request's handler, body included (see
//! [`request_deadline`]).
//!
//! HTTP/1.1 only, as before (no TLS: put a proxy in front for it).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// Default `--http-max-connections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 2048;
/// Default `--http-header-timeout-seconds`.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `--http-idle-timeout-seconds`.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default `--http-request-timeout-seconds`.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// After shutdown, connections get this long to finish their requests.
const DRAIN: Duration = Duration::from_secs(5);

/// The server's limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Open connections at most; more are closed as soon as accepted.
    pub max_connections: usize,
    /// A request's headers must arrive within this after the connection
    /// opens (or the previous response ends).
    pub header_timeout: Duration,
    /// A connection with no byte read or written for this long is closed.
    pub idle_timeout: Duration,
    /// A handler (reading the body included) must produce its response
    /// head within this; event streams then stream under the idle timeout.
    pub request_timeout: Duration,
    /// Event streams open at most, and per token.
    pub max_streams: usize,
    pub max_streams_per_token: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_streams: super::events::DEFAULT_MAX_STREAMS,
            max_streams_per_token: super::events::DEFAULT_MAX_STREAMS_PER_TOKEN,
        }
    }
}

/// Serves `app` on `listener` within `limits` until `shutdown`, then lets
/// the requests in flight finish for a few seconds (event streams end with
/// the same token).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    metrics: Metrics,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let connections = tokio_util::task::TaskTracker::new();
    let clock = tokio::time::Instant::now();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        let (stream, _) = match accepted {
            Ok(a) => a,
            Err(e) if is_per_connection(&e) => continue,
            Err(e) => {
                // NB: out of file descriptors, say: back off instead of
                // spinning; the connections that hold them end in time.
                tracing::warn!(error = %e, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            metrics.http_connection_refused();
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        // NB: a new connection starts active now, not at the server's start.
        let activity = Arc::new(AtomicU64::new(clock.elapsed().as_millis() as u64));
        let io = TokioIo::new(Watched {
            inner: stream,
            activity: activity.clone(),
            clock,
        });
        let service = TowerToHyperService::new(app.clone());
        let shutdown = shutdown.clone();
        let metrics = metrics.clone();
        connections.spawn(async move {
            let _permit = permit;
            metrics.http_connections(1);
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .serve_connection(io, service)
                .with_upgrades();
            let mut conn = std::pin::pin!(conn);
            let mut tick = tokio::time::interval(Duration::from_secs(1).min(limits.idle_timeout));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut draining: Option<tokio::time::Instant> = None;
            loop {
                tokio::select! {
                    _ = conn.as_mut() => break,
                    _ = shutdown.cancelled(), if draining.is_none() => {
                        conn.as_mut().graceful_shutdown();
                        draining = Some(tokio::time::Instant::now() + DRAIN);
                    }
                    _ = tick.tick() => {
                        let last = Duration::from_millis(activity.load(Ordering::Relaxed));
                        let idle = clock.elapsed().saturating_sub(last);
                        if idle >= limits.idle_timeout {
                            metrics.http_connection_timed_out();
                            break;
                        }
                        if draining.is_some_and(|d| tokio::time::Instant::now() >= d) {
                            break;
                        }
                    }
                }
            }
            metrics.http_connections(-1);
        });
    }
    drop(listener);
    connections.close();
    connections.wait().await;
    Ok(())
}

/// Errors of `accept` that concern one connection only.
fn is_per_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted
    )
}

/// A connection's stream that records when a byte last moved.
struct Watched<T> {
    inner: T,
    /// Milliseconds since `clock` of the last read or write.
    activity: Arc<AtomicU64>,
    clock: tokio::time::Instant,
}

impl<T> Watched<T> {
    fn touch(&self) {
        self.activity
            .store(self.clock.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.touch();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
