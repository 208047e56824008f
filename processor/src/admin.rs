//! The admin listener: `/healthz` (the process serves), `/readyz` (ClickHouse answers a ping and
//! the consumer has partitions) and `/metrics` (Prometheus text). Keep it off the public network.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::run::Status;
use crate::write::Writer;

/// What the endpoints read.
#[derive(Debug, Clone)]
pub struct Admin {
    pub metrics: PrometheusHandle,
    pub status: Arc<Status>,
    pub writer: Writer,
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
    async fn handle(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        if request.method() != Method::GET {
            return text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        }
        match request.uri().path() {
            "/healthz" => text(StatusCode::OK, "ok\n"),
            "/readyz" => {
                if self.status.assigned() == 0 {
                    text(StatusCode::SERVICE_UNAVAILABLE, "no partition assigned\n")
                } else if !self.writer.ping().await {
                    text(StatusCode::SERVICE_UNAVAILABLE, "clickhouse not ready\n")
                } else {
                    text(StatusCode::OK, "ready\n")
                }
            }
            "/metrics" => text(StatusCode::OK, self.metrics.render()),
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        }
    }

    /// Serve on `listener` until `shutdown`; connections are closed at shutdown.
    pub async fn serve(self, listener: TcpListener, shutdown: CancellationToken) {
        let tracker = TaskTracker::new();
        loop {
            let accepted = tokio::select! {
                () = shutdown.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "admin accept failed");
                    continue;
                }
            };
            let admin = self.clone();
            let stop = shutdown.clone();
            tracker.spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let admin = admin.clone();
                    async move { Ok::<_, Infallible>(admin.handle(request).await) }
                });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let connection = builder.serve_connection(TokioIo::new(stream), service);
                tokio::select! {
                    _ = connection => {}
                    () = stop.cancelled() => {}
                }
            });
        }
        tracker.close();
        tracker.wait().await;
    }
}
