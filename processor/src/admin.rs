//! The admin listener: `/healthz` (the process serves), `/readyz` (the consumer has partitions,
//! writes and dead letters are not blocked, ClickHouse answers a ping) and `/metrics`
//! (Prometheus text). Keep it off the public network (see `deploy/kubernetes/` and
//! `docker-compose.yml`).
//!
//! Bounded like ingest's admin listener, so a scanner or a stuck scraper cannot exhaust it:
//! - at most `--admin-max-connections` open connections: a permit is taken BEFORE `accept`, so
//!   at the cap new clients wait in the kernel backlog (`processor_admin_connections`);
//! - `--admin-header-read-timeout-ms` for each request head, and for the first request of a
//!   connection to begin (hyper-util's HTTP/1-or-2 sniffing has no timer of its own);
//! - `--admin-idle-timeout-ms`: a connection with no request in flight for that long is closed.
//!
//! `/readyz` reuses its ClickHouse ping for `--readyz-cache-ms` (one ping at a time; every
//! concurrent probe waits for it), so probes cannot turn into a ClickHouse query each
//! (`processor_readyz_probes_total` counts the pings).

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::metrics;
use crate::run::Status;
use crate::write::Writer;

/// Connection limits and the readiness cache; the binary's `Config` fills them.
#[derive(Debug, Clone, Copy)]
pub struct AdminSettings {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    /// How long a ClickHouse ping answer is reused by `/readyz`.
    pub readyz_cache: Duration,
}

/// What the endpoints read.
#[derive(Debug, Clone)]
pub struct Admin {
    pub metrics: PrometheusHandle,
    pub status: Arc<Status>,
    pub writer: Writer,
    pub settings: AdminSettings,
    /// The last ping's time and answer (the lock is held during a ping).
    pub ping_cache: Arc<tokio::sync::Mutex<Option<(Instant, bool)>>>,
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

impl Admin {
    /// Endpoints over `writer` and `status` with `settings`.
    pub fn new(
        metrics: PrometheusHandle,
        status: Arc<Status>,
        writer: Writer,
        settings: AdminSettings,
    ) -> Self {
        Self {
            metrics,
            status,
            writer,
            settings,
            ping_cache: Arc::default(),
        }
    }

    async fn handle(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        if request.method() != Method::GET {
            let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET"));
            return response;
        }
        match request.uri().path() {
            "/healthz" => text(StatusCode::OK, "ok\n"),
            "/readyz" => {
                let unavailable = |why: &'static str| text(StatusCode::SERVICE_UNAVAILABLE, why);
                if self.status.assigned() == 0 {
                    unavailable("no partition assigned\n")
                } else if self.status.write_blocked() {
                    unavailable("clickhouse refuses the batch: fix the table or settings\n")
                } else if self.status.dead_letters_failing() {
                    unavailable("dead-letter deliveries failing\n")
                } else if !self.clickhouse_ready().await {
                    unavailable("clickhouse not ready\n")
                } else {
                    text(StatusCode::OK, "ready\n")
                }
            }
            "/metrics" => text(StatusCode::OK, self.metrics.render()),
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        }
    }

    /// ClickHouse's answer to a ping, reused for `readyz_cache`.
    async fn clickhouse_ready(&self) -> bool {
        let mut cache = self.ping_cache.lock().await;
        if let Some((at, ready)) = *cache {
            if at.elapsed() < self.settings.readyz_cache {
                return ready;
            }
        }
        metrics::readyz_probe();
        let ready = self.writer.ping().await;
        *cache = Some((Instant::now(), ready));
        ready
    }

    /// Serve on `listener` until `shutdown`; connections are closed at shutdown.
    pub async fn serve(self, listener: TcpListener, shutdown: CancellationToken) {
        let tracker = TaskTracker::new();
        let permits = Arc::new(Semaphore::new(self.settings.max_connections));
        let open = Arc::new(AtomicUsize::new(0));
        let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.settings.header_read_timeout);
        builder.http2().timer(TokioTimer::new());
        let builder = Arc::new(builder);
        metrics::admin_connections(0);
        loop {
            let permit = tokio::select! {
                () = shutdown.cancelled() => break,
                permit = Arc::clone(&permits).acquire_owned() => match permit {
                    Ok(permit) => permit,
                    // The semaphore is never closed.
                    Err(_closed) => break,
                },
            };
            let stream = tokio::select! {
                () = shutdown.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(error) => {
                        // EMFILE and friends: back off a little instead of spinning.
                        tracing::warn!(%error, "admin accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let (admin, stop, builder, open) = (
                self.clone(),
                shutdown.clone(),
                Arc::clone(&builder),
                Arc::clone(&open),
            );
            metrics::admin_connections(open.fetch_add(1, Ordering::SeqCst) + 1);
            tracker.spawn(async move {
                tokio::select! {
                    () = admin.connection(stream, &builder) => {}
                    () = stop.cancelled() => {}
                }
                metrics::admin_connections(open.fetch_sub(1, Ordering::SeqCst) - 1);
                drop(permit);
            });
        }
        tracker.close();
        tracker.wait().await;
    }

    /// Serve one connection until it ends, its first request does not begin within the header
    /// timeout, or it stays idle for the idle timeout.
    async fn connection(
        self,
        stream: tokio::net::TcpStream,
        builder: &hyper_util::server::conn::auto::Builder<TokioExecutor>,
    ) {
        let (header_timeout, idle) = (
            self.settings.header_read_timeout,
            self.settings.idle_timeout,
        );
        let activity = Arc::new(Activity::new());
        let tracked = Arc::clone(&activity);
        let service = hyper::service::service_fn(move |request| {
            let admin = self.clone();
            let guard = tracked.begin();
            async move {
                let response = admin.handle(request).await;
                drop(guard);
                Ok::<_, Infallible>(response)
            }
        });
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        tokio::pin!(connection);
        loop {
            let limit = if activity.has_begun() {
                idle
            } else {
                idle.min(header_timeout)
            };
            tokio::select! {
                _ = &mut connection => return,
                () = tokio::time::sleep(activity.idle_deadline(limit)) => {
                    if activity.is_idle_for(limit) {
                        tracing::debug!(first_request = !activity.has_begun(), "closing idle admin connection");
                        return;
                    }
                }
            }
        }
    }
}

/// Requests in flight on a connection and when the last one ended (as in ingest's server).
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn activity_tracks_in_flight_requests() {
        let a = Arc::new(Activity::new());
        assert!(a.is_idle_for(Duration::ZERO) && !a.has_begun());
        let guard = a.begin();
        assert!(a.has_begun() && !a.is_idle_for(Duration::ZERO));
        drop(guard);
        assert!(a.is_idle_for(Duration::ZERO));
        assert!(!a.is_idle_for(Duration::from_secs(60)));
    }
}
