//! Accepting connections (HTTP/1.1 and HTTP/2 via hyper-util's auto builder) with the same
//! connection limits as ingest's listener (see `ingest/src/server.rs`, whose pattern this
//! follows; the crates share no code by design):
//!
//! - at most `max_connections` open connections (a permit is taken BEFORE `accept`);
//! - `header_read_timeout` for each HTTP/1 request head, and for the first request of a
//!   connection;
//! - `idle_timeout`: a connection with no request in flight for that long is closed;
//! - graceful shutdown: stop accepting, let in-flight requests finish, give up after the drain
//!   timeout (logged).

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Answers one request.
pub trait Handler: Send + Sync + 'static {
    fn handle(
        &self,
        request: Request<Incoming>,
    ) -> impl Future<Output = Response<Full<Bytes>>> + Send;
}

/// Connection limits.
#[derive(Debug, Clone)]
pub struct Settings {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub drain_timeout: Duration,
}

/// Serves `listener` with `handler` until `shutdown`, then drains (bounded by the drain timeout).
pub async fn serve<H: Handler>(
    listener: TcpListener,
    handler: Arc<H>,
    settings: Settings,
    shutdown: CancellationToken,
) {
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(settings.max_connections));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    loop {
        let permit = tokio::select! {
            () = shutdown.cancelled() => break,
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_closed) => break, // the semaphore is never closed
            },
        };
        let (stream, _peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // EMFILE and friends: back off a little instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let builder = Arc::clone(&builder);
        let handler = Arc::clone(&handler);
        let watcher = graceful.watcher();
        let settings = settings.clone();
        tokio::spawn(async move {
            let activity = Arc::new(Activity::new());
            let tracked = Arc::clone(&activity);
            let service = hyper::service::service_fn(move |request| {
                let handler = Arc::clone(&handler);
                let guard = tracked.begin();
                async move {
                    let response = handler.handle(request).await;
                    drop(guard);
                    Ok::<_, Infallible>(response)
                }
            });
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            let connection = watcher.watch(connection);
            tokio::pin!(connection);
            let first_request = settings.idle_timeout.min(settings.header_read_timeout);
            loop {
                let limit = if activity.has_begun() {
                    settings.idle_timeout
                } else {
                    first_request
                };
                tokio::select! {
                    result = &mut connection => {
                        if let Err(error) = result {
                            tracing::debug!(%error, "connection ended with an error");
                        }
                        break;
                    }
                    () = tokio::time::sleep(activity.idle_deadline(limit)) => {
                        if activity.is_idle_for(limit) {
                            break; // dropping the connection closes it; nothing is in flight
                        }
                    }
                }
            }
            drop(permit);
        });
    }
    drop(listener);
    tracing::info!(
        open = graceful.count(),
        "stopped accepting, draining connections"
    );
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("connections drained"),
        () = tokio::time::sleep(settings.drain_timeout) => {
            tracing::warn!(timeout_ms = settings.drain_timeout.as_millis() as u64, "drain timed out, abandoning open connections");
        }
    }
}

/// Requests in flight on a connection and when the last one ended.
#[derive(Debug)]
struct Activity {
    opened: Instant,
    in_flight: AtomicUsize,
    last_done_ms: AtomicU64,
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
