//! Accepting connections: optional TLS ([`crate::tls`]), HTTP/1.1 and HTTP/2 via hyper-util's
//! auto builder, and the connection-level limits:
//!
//! - at most `max_connections` open connections: a semaphore permit is taken BEFORE `accept`,
//!   so at the cap we stop accepting and new clients wait in the kernel backlog;
//! - at most `max_connections_per_ip` of them from one client (a peer address's network,
//!   `client_keys`: IPv6 /64 by default): a connection
//!   over that share is closed as soon as it is accepted (counted in
//!   `ingest_connections_refused_total`), so one address cannot hold every slot; trusted
//!   proxies (`--trusted-proxies`) are exempt, their clients are held to per-client shares;
//! - at most `http2_max_concurrent_streams` requests at once on one HTTP/2 connection;
//! - `header_read_timeout` for the TLS handshake and each HTTP/1 request head (hyper starts
//!   that timer whenever it waits for a request);
//! - the first request must begin within `header_read_timeout` of the connection (TLS
//!   handshake excluded): hyper-util's HTTP/1-or-2 sniffing reads the first bytes with no timer
//!   of its own, so without this a silent connection (or a dribbled HTTP/2 preface) would hold
//!   a connection slot for the whole `idle_timeout`;
//! - `idle_timeout`: a connection with no request in flight for that long is closed;
//! - graceful shutdown with hyper-util's `GracefulShutdown`: stop accepting, let in-flight
//!   requests finish (HTTP/1 closes after the current response, HTTP/2 sends GOAWAY), give up
//!   after the drain timeout (logged).
//!
//! Every connection counts the bytes it receives ([`ReceivedBytes`], handed to the handler with
//! each request rather than as a request extension: an extension costs a map allocation per
//! request) for the minimum body rate of [`crate::body_rate`]. The per-request body read timeout lives in
//! [`crate::validate`]. Header sizes stay at hyper's bounded defaults (about 400 KiB of HTTP/1
//! read buffer).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::body_rate::ReceivedBytes;
use crate::client::TrustedProxies;
use crate::inflight::KeyedSlots;
use crate::limit::ClientKeys;
use crate::metrics;

/// Answers one request. Implemented by the public API and the admin endpoints.
pub trait Handler: Send + Sync + 'static {
    /// `peer` is the socket's peer; `received` counts the bytes its connection has received so
    /// far (the body-rate meter).
    fn handle(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
        received: ReceivedBytes,
    ) -> impl Future<Output = Response<Full<Bytes>>> + Send;
}

/// Connection limits of one listener.
#[derive(Clone)]
pub struct Settings {
    pub max_connections: usize,
    /// Open connections from one client (a peer IP's network, see `client_keys`).
    pub max_connections_per_ip: usize,
    /// Who one client is for `max_connections_per_ip` (`--ip-limit-ipv4-prefix`,
    /// `--ip-limit-ipv6-prefix`).
    pub client_keys: ClientKeys,
    /// Peers exempt from `max_connections_per_ip`: the trusted proxies (`--trusted-proxies`).
    pub proxies: TrustedProxies,
    pub http2_max_concurrent_streams: u32,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub drain_timeout: Duration,
    pub tls: Option<TlsAcceptor>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("max_connections", &self.max_connections)
            .field("max_connections_per_ip", &self.max_connections_per_ip)
            .field("client_keys", &self.client_keys)
            .field("proxies", &self.proxies)
            .field(
                "http2_max_concurrent_streams",
                &self.http2_max_concurrent_streams,
            )
            .field("header_read_timeout", &self.header_read_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("drain_timeout", &self.drain_timeout)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// Serves `listener` with `handler` until `shutdown`, then drains (bounded by the drain timeout).
pub async fn serve<H: Handler>(
    name: &'static str,
    listener: TcpListener,
    handler: Arc<H>,
    settings: Settings,
    shutdown: CancellationToken,
) {
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(settings.max_connections));
    // Entries exist only while a connection is open, so at most `max_connections` of them.
    let per_ip = KeyedSlots::new(settings.max_connections_per_ip);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(settings.http2_max_concurrent_streams);
    let builder = Arc::new(builder);
    loop {
        let permit = tokio::select! {
            () = shutdown.cancelled() => break,
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                // The semaphore is never closed.
                Err(_closed) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // EMFILE and friends: back off a little instead of spinning.
                    tracing::warn!(listener = name, %error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let ip_slot = if settings.proxies.is_proxy(peer.ip()) {
            None
        } else {
            let Some(slot) = per_ip.try_take(settings.client_keys.key(peer.ip())) else {
                // Dropping the stream closes it; the permit goes back with it.
                metrics::connection_refused("per_ip_cap");
                tracing::debug!(listener = name, "connection over the per-IP cap closed");
                continue;
            };
            Some(slot)
        };
        let _ = stream.set_nodelay(true);
        let connection = Connection {
            builder: Arc::clone(&builder),
            handler: Arc::clone(&handler),
            watcher: graceful.watcher(),
            settings: settings.clone(),
            peer,
        };
        tokio::spawn(async move {
            // The gauge is documented as open PUBLIC connections: the admin listener (scrapes,
            // probes) must not count against what the public cap is compared with.
            let counted = name == "public";
            if counted {
                metrics::connection_opened();
            }
            connection.run(stream).await;
            if counted {
                metrics::connection_closed();
            }
            drop(ip_slot);
            drop(permit);
        });
    }
    drop(listener);
    let open = graceful.count();
    tracing::info!(
        listener = name,
        open,
        "stopped accepting, draining connections"
    );
    tokio::select! {
        () = graceful.shutdown() => tracing::info!(listener = name, "connections drained"),
        () = tokio::time::sleep(settings.drain_timeout) => {
            tracing::warn!(listener = name, timeout_ms = settings.drain_timeout.as_millis() as u64, "drain timed out, abandoning open connections");
        }
    }
}

struct Connection<H> {
    builder: Arc<auto::Builder<TokioExecutor>>,
    handler: Arc<H>,
    watcher: Watcher,
    settings: Settings,
    peer: SocketAddr,
}

impl<H: Handler> Connection<H> {
    async fn run(self, stream: tokio::net::TcpStream) {
        let received = ReceivedBytes::default();
        let stream = Metered {
            io: stream,
            received: received.clone(),
        };
        match self.settings.tls.clone() {
            None => self.serve(stream, received).await,
            Some(acceptor) => match tokio::time::timeout(
                self.settings.header_read_timeout,
                acceptor.accept(stream),
            )
            .await
            {
                Ok(Ok(tls)) => self.serve(tls, received).await,
                Ok(Err(error)) => {
                    metrics::connection_error("tls_handshake");
                    tracing::debug!(%error, "tls handshake failed");
                }
                Err(_elapsed) => metrics::connection_error("tls_handshake_timeout"),
            },
        }
    }

    async fn serve<IO: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
        self,
        io: IO,
        received: ReceivedBytes,
    ) {
        let activity = Arc::new(Activity::new());
        let handler = self.handler;
        let peer = self.peer;
        let tracked = Arc::clone(&activity);
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let received = received.clone();
            let handler = Arc::clone(&handler);
            let guard = tracked.begin();
            async move {
                let response = handler.handle(request, peer, received).await;
                drop(guard);
                Ok::<_, Infallible>(response)
            }
        });
        let connection = self.builder.serve_connection(TokioIo::new(io), service);
        let connection = self.watcher.watch(connection);
        tokio::pin!(connection);
        let idle = self.settings.idle_timeout;
        let first_request = idle.min(self.settings.header_read_timeout);
        loop {
            let limit = if activity.has_begun() {
                idle
            } else {
                first_request
            };
            let wait = activity.idle_deadline(limit);
            match connection_or_timer(connection.as_mut(), tokio::time::sleep(wait)).await {
                Some(result) => {
                    if let Err(error) = result {
                        metrics::connection_error("protocol");
                        tracing::debug!(error = %error, "connection ended with an error");
                    }
                    return;
                }
                None => {
                    if activity.is_idle_for(limit) {
                        tracing::debug!(
                            first_request = !activity.has_begun(),
                            "closing idle connection"
                        );
                        return; // dropping the connection closes it; nothing is in flight
                    }
                }
            }
        }
    }
}

/// `connection`'s result, or `None` once `timer` has fired: `select!` on the two, except that the
/// timer is polled only to register it (first, or when the task's waker changed) and once it has
/// fired, not at every wake-up of the connection (a request wakes it about three times; each poll
/// of a registered timer re-checks its waker, about 120 instructions, callgrind). Between those
/// polls the timer keeps the waker it was registered with, which stays valid: a task keeps its
/// waker.
///
/// The timer is polled outside tokio's coop budget (`coop::unconstrained`, the pattern tokio's
/// `coop` docs give for a timeout): the connection may have spent the budget, and a timer polled
/// without budget returns `Pending` without registering at all, so it would never fire.
async fn connection_or_timer<C: Future>(
    mut connection: Pin<&mut C>,
    timer: tokio::time::Sleep,
) -> Option<C::Output> {
    tokio::pin!(timer);
    let mut timer_waker: Option<std::task::Waker> = None;
    std::future::poll_fn(|cx| {
        if let Poll::Ready(result) = connection.as_mut().poll(cx) {
            return Poll::Ready(Some(result));
        }
        let registered = timer_waker
            .as_ref()
            .is_some_and(|waker| waker.will_wake(cx.waker()));
        if !registered || timer.is_elapsed() {
            let unconstrained = std::pin::pin!(tokio::task::coop::unconstrained(timer.as_mut()));
            if unconstrained.poll(cx).is_ready() {
                return Poll::Ready(None);
            }
            timer_waker = Some(cx.waker().clone());
        }
        Poll::Pending
    })
    .await
}

/// A connection's socket, counting the bytes it receives.
struct Metered<IO> {
    io: IO,
    received: ReceivedBytes,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Metered<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        self.received.add(buf.filled().len().saturating_sub(before));
        polled
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Metered<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Requests in flight on a connection and when the last one ended.
#[derive(Debug)]
struct Activity {
    opened: Instant,
    in_flight: AtomicUsize,
    last_done_ms: AtomicU64,
    /// Whether any request has reached the handler.
    begun: AtomicBool,
}

impl Activity {
    fn new() -> Self {
        Self {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_done_ms: AtomicU64::new(0),
            begun: AtomicBool::new(false),
        }
    }

    fn begin(self: &Arc<Self>) -> ActivityGuard {
        self.begun.store(true, Ordering::SeqCst);
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        ActivityGuard(Arc::clone(self))
    }

    fn has_begun(&self) -> bool {
        self.begun.load(Ordering::SeqCst)
    }

    fn since_last_ms(&self) -> u64 {
        let now = self.opened.elapsed().as_millis() as u64;
        now.saturating_sub(self.last_done_ms.load(Ordering::SeqCst))
    }

    fn is_idle_for(&self, idle: Duration) -> bool {
        self.in_flight.load(Ordering::SeqCst) == 0
            && self.since_last_ms() >= idle.as_millis() as u64
    }

    /// How long to sleep before checking again.
    fn idle_deadline(&self, idle: Duration) -> Duration {
        let idle_ms = idle.as_millis() as u64;
        Duration::from_millis(idle_ms.saturating_sub(self.since_last_ms()).max(1))
    }
}

struct ActivityGuard(Arc<Activity>);

impl Drop for ActivityGuard {
    fn drop(&mut self) {
        let now = self.0.opened.elapsed().as_millis() as u64;
        self.0.last_done_ms.store(now, Ordering::SeqCst);
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Guards `connection_or_timer`'s skipped timer polls: a connection that keeps waking its
    /// task does not keep the idle timer from firing, and a connection that ends wins.
    #[tokio::test]
    async fn the_idle_timer_fires_however_often_the_connection_wakes() {
        let busy = std::pin::pin!(async {
            loop {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
        let started = Instant::now();
        let woke = tokio::time::timeout(
            Duration::from_secs(10),
            connection_or_timer(busy, tokio::time::sleep(Duration::from_millis(50))),
        )
        .await
        .expect("the idle timer fires long before 10 s");
        assert!(woke.is_none(), "the timer fired");
        assert!(started.elapsed() >= Duration::from_millis(50));

        let ends = std::pin::pin!(async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            7
        });
        let woke = connection_or_timer(ends, tokio::time::sleep(Duration::from_millis(50))).await;
        assert_eq!(woke, Some(7));
    }

    /// Regression: a connection that spends the task's whole coop budget at every poll (as a
    /// busy one can) must not keep the idle timer from registering. Polled with the budget
    /// spent, the timer returned `Pending` without registering and never fired: one idle
    /// connection in `slow_clients` outlived its timeouts.
    #[tokio::test]
    async fn the_idle_timer_registers_after_the_connection_spent_the_budget() {
        let greedy = std::pin::pin!(std::future::poll_fn(|cx| loop {
            let spend = std::pin::pin!(tokio::task::coop::consume_budget());
            if spend.poll(cx).is_pending() {
                return Poll::<()>::Pending;
            }
        }));
        let woke = tokio::time::timeout(
            Duration::from_secs(10),
            connection_or_timer(greedy, tokio::time::sleep(Duration::from_millis(50))),
        )
        .await
        .expect("the idle timer fires long before 10 s");
        assert!(woke.is_none());
    }

    #[test]
    fn activity_tracks_in_flight_requests() {
        let a = Arc::new(Activity::new());
        assert!(a.is_idle_for(Duration::ZERO));
        assert!(!a.has_begun());
        let guard = a.begin();
        assert!(a.has_begun());
        assert!(
            !a.is_idle_for(Duration::ZERO),
            "a request in flight is never idle"
        );
        drop(guard);
        assert!(a.is_idle_for(Duration::ZERO));
        assert!(
            !a.is_idle_for(Duration::from_secs(60)),
            "just finished a request"
        );
        assert!(a.idle_deadline(Duration::from_secs(60)) > Duration::from_secs(59));
    }
}
