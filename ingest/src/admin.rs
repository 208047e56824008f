//! The admin listener: `/healthz` (the process serves), `/readyz` (Kafka answers a metadata
//! request in time) and `/metrics` (Prometheus text). Keep it off the public network.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::limit::IpLimiter;
use crate::metrics;
use crate::publish::Publisher;

/// State of the admin endpoints.
#[derive(Debug)]
pub struct Admin {
    pub publisher: Publisher,
    pub metrics: PrometheusHandle,
    pub ip_limiter: Arc<IpLimiter>,
    pub ready_timeout: Duration,
}

fn text(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

impl crate::server::Handler for Admin {
    async fn handle(
        &self,
        request: Request<Incoming>,
        _peer: SocketAddr,
        _received: crate::body_rate::ReceivedBytes,
    ) -> Response<Full<Bytes>> {
        if request.method() != Method::GET {
            let mut response = text(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                "method not allowed\n",
            );
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET"));
            return response;
        }
        match request.uri().path() {
            "/healthz" => text(StatusCode::OK, "text/plain", "ok\n"),
            "/readyz" => {
                if self.publisher.ready(self.ready_timeout).await {
                    text(StatusCode::OK, "text/plain", "ready\n")
                } else {
                    text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "text/plain",
                        "kafka not ready\n",
                    )
                }
            }
            "/metrics" => {
                // Gauges that are cheaper to sample at scrape time than to keep current.
                metrics::kafka_queue_depth(self.publisher.queue_depth());
                metrics::ip_limiter_tracked(self.ip_limiter.len());
                text(
                    StatusCode::OK,
                    "text/plain; version=0.0.4",
                    self.metrics.render(),
                )
            }
            _ => text(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
        }
    }
}
