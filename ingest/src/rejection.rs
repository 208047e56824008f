//! Every refusal of the edge: one variant, one status code, one bounded metric label, and the
//! JSON answer `{"error": "<label>", "detail": "..."}`.
//!
//! Status choice follows the browsers' uploader (Reporting API, "attempt to deliver reports to
//! endpoint", <https://w3c.github.io/reporting/#try-delivery>, and Chromium's uploader, which
//! retries up to 5 times within 15 minutes): 2xx means delivered, 410 deletes the endpoint,
//! anything else is retried. So only `KeyRevoked` answers 410, and client faults that a retry
//! cannot fix still get a 4xx (retried a few times, then dropped by the browser) because that is
//! what Sentry-compatible clients expect.

use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::Full;

use crate::publish::PublishError;

/// Why a request (or all the reports of it) was refused.
#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    #[error("no route for this path")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("no sentry_key in the query, path, X-Sentry-Auth or Authorization header")]
    MissingKey,
    #[error("unknown public key")]
    UnknownKey,
    #[error("the public key belongs to another project")]
    WrongProject,
    #[error("the public key is disabled")]
    KeyDisabled,
    #[error("the public key is revoked; remove this reporting endpoint")]
    KeyRevoked,
    #[error("the document host is not allowed for this project")]
    HostNotAllowed,
    #[error("body larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("decompressed body larger than {limit} bytes")]
    DecompressedTooLarge { limit: usize },
    #[error("content-encoding must be gzip, deflate or identity")]
    UnsupportedEncoding,
    #[error("body is not valid gzip/deflate")]
    BadCompression(#[source] std::io::Error),
    #[error("body not received in time")]
    BodyTimeout,
    /// The connection delivered the body slower than `--min-body-bytes-per-second`.
    #[error("body arrived slower than {min_bytes_per_second} bytes per second")]
    BodyTooSlow { min_bytes_per_second: u64 },
    #[error("body could not be read")]
    BodyRead(#[source] hyper::Error),
    #[error("malformed report")]
    Malformed(#[source] schemas::ParseError),
    #[error("too many requests from this client, retry in {retry_after:?}")]
    IpRateLimited { retry_after: Duration },
    #[error("project quota exceeded, retry in {retry_after:?}")]
    QuotaExceeded { retry_after: Duration },
    #[error("too many requests in flight, retry in {retry_after:?}")]
    Overloaded { retry_after: Duration },
    #[error("this client already has {limit} requests in flight, retry in {retry_after:?}")]
    ClientInFlight { limit: usize, retry_after: Duration },
    #[error("this project already has {limit} requests in flight, retry in {retry_after:?}")]
    ProjectInFlight { limit: usize, retry_after: Duration },
    #[error("reports could not be queued, retry in {retry_after:?}")]
    Unavailable {
        retry_after: Duration,
        #[source]
        source: PublishError,
    },
    /// A report of the body is too large for one Kafka message; final, so no `Retry-After`.
    #[error("a report is too large for one kafka message")]
    MessageTooLarge(#[source] PublishError),
    #[error("internal error: the parsing task failed")]
    Worker(#[source] tokio::task::JoinError),
}

impl Rejection {
    /// The one status code of this refusal.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            // Relay answers 401 for missing or bad auth; a key of another project is bad auth too.
            Self::MissingKey | Self::UnknownKey | Self::WrongProject => StatusCode::UNAUTHORIZED,
            Self::KeyDisabled | Self::HostNotAllowed => StatusCode::FORBIDDEN,
            Self::KeyRevoked => StatusCode::GONE,
            Self::PayloadTooLarge { .. } | Self::DecompressedTooLarge { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            Self::UnsupportedEncoding => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::BadCompression(_) | Self::BodyRead(_) => StatusCode::BAD_REQUEST,
            Self::BodyTimeout | Self::BodyTooSlow { .. } => StatusCode::REQUEST_TIMEOUT,
            Self::Malformed(
                schemas::ParseError::BatchTooLong { .. }
                | schemas::ParseError::TooManyValues { .. }
                | schemas::ParseError::NoValidReport {
                    first: schemas::ReportError::TooLarge { .. },
                },
            ) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Malformed(_) => StatusCode::BAD_REQUEST,
            Self::IpRateLimited { .. }
            | Self::QuotaExceeded { .. }
            | Self::ClientInFlight { .. }
            | Self::ProjectInFlight { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::MessageTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Overloaded { .. } | Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Worker(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Stable label for `ingest_rejections_total{reason}` and the `error` field of the answer.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::MissingKey => "missing_key",
            Self::UnknownKey => "unknown_key",
            Self::WrongProject => "wrong_project",
            Self::KeyDisabled => "key_disabled",
            Self::KeyRevoked => "key_revoked",
            Self::HostNotAllowed => "host_not_allowed",
            Self::PayloadTooLarge { .. } => "body_too_large",
            Self::DecompressedTooLarge { .. } => "decompressed_too_large",
            Self::UnsupportedEncoding => "unsupported_encoding",
            Self::BadCompression(_) => "bad_compression",
            Self::BodyTimeout => "body_timeout",
            Self::BodyTooSlow { .. } => "body_too_slow",
            Self::BodyRead(_) => "body_read_error",
            Self::Malformed(e) => e.reason(),
            Self::IpRateLimited { .. } => "ip_rate_limited",
            Self::QuotaExceeded { .. } => "quota_exceeded",
            Self::Overloaded { .. } => "overloaded",
            Self::ClientInFlight { .. } => "client_in_flight",
            Self::ProjectInFlight { .. } => "project_in_flight",
            Self::MessageTooLarge(_) => "message_too_large",
            Self::Unavailable { source, .. } => source.reason(),
            Self::Worker(_) => "internal",
        }
    }

    /// `Retry-After`, whole seconds rounded up, when the client should come back later.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Self::IpRateLimited { retry_after }
            | Self::QuotaExceeded { retry_after }
            | Self::Overloaded { retry_after }
            | Self::ClientInFlight { retry_after, .. }
            | Self::ProjectInFlight { retry_after, .. }
            | Self::Unavailable { retry_after, .. } => Some(ceil_secs(*retry_after)),
            _ => None,
        }
    }

    /// Whether this is the server's fault (logged at error) rather than the client's (debug).
    pub fn is_server_fault(&self) -> bool {
        self.status().is_server_error()
    }

    /// The answer sent to the client.
    pub fn into_response(self) -> Response<Full<Bytes>> {
        let body = serde_json::json!({ "error": self.reason(), "detail": detail(&self) });
        let mut response = json_response(self.status(), &body);
        if let Some(secs) = self.retry_after() {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if matches!(self, Self::MethodNotAllowed) {
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST, OPTIONS"));
        }
        response
    }
}

/// The error's message and its sources, `a: b`.
fn detail(rejection: &Rejection) -> String {
    schemas::error_chain(rejection)
}

/// Whole seconds, rounded up, at least 1 (a `Retry-After: 0` invites an immediate retry storm).
pub fn ceil_secs(d: Duration) -> u64 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    secs.max(1)
}

/// A JSON answer (the caller adds CORS headers).
pub fn json_response<T: serde::Serialize + ?Sized>(
    status: StatusCode,
    body: &T,
) -> Response<Full<Bytes>> {
    json_bytes_response(status, serde_json::to_vec(body).unwrap_or_default())
}

/// A response of JSON already written: `bytes` as the body, with `status` and the JSON content
/// type (what [`json_response`] gives once it has serialised its body).
pub fn json_bytes_response(status: StatusCode, bytes: Vec<u8>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(bytes)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rdkafka::error::{KafkaError, RDKafkaErrorCode};

    #[test]
    fn every_refusal_has_one_status_and_label() {
        let cases: Vec<(Rejection, u16, &str)> = vec![
            (Rejection::NotFound, 404, "not_found"),
            (Rejection::MethodNotAllowed, 405, "method_not_allowed"),
            (Rejection::MissingKey, 401, "missing_key"),
            (Rejection::UnknownKey, 401, "unknown_key"),
            (Rejection::WrongProject, 401, "wrong_project"),
            (Rejection::KeyDisabled, 403, "key_disabled"),
            (Rejection::KeyRevoked, 410, "key_revoked"),
            (Rejection::HostNotAllowed, 403, "host_not_allowed"),
            (
                Rejection::PayloadTooLarge { limit: 1 },
                413,
                "body_too_large",
            ),
            (
                Rejection::DecompressedTooLarge { limit: 1 },
                413,
                "decompressed_too_large",
            ),
            (Rejection::UnsupportedEncoding, 415, "unsupported_encoding"),
            (Rejection::BodyTimeout, 408, "body_timeout"),
            (
                Rejection::BodyTooSlow {
                    min_bytes_per_second: 1,
                },
                408,
                "body_too_slow",
            ),
            (
                Rejection::ClientInFlight {
                    limit: 1,
                    retry_after: Duration::from_secs(1),
                },
                429,
                "client_in_flight",
            ),
            (
                Rejection::ProjectInFlight {
                    limit: 1,
                    retry_after: Duration::from_secs(1),
                },
                429,
                "project_in_flight",
            ),
            (
                Rejection::Malformed(schemas::ParseError::NotUtf8),
                400,
                "invalid_utf8",
            ),
            (
                Rejection::Malformed(schemas::ParseError::TooDeep { limit: 1 }),
                400,
                "too_deep",
            ),
            (
                Rejection::Malformed(schemas::ParseError::BatchTooLong { len: 2, limit: 1 }),
                413,
                "batch_too_long",
            ),
            (
                Rejection::Malformed(schemas::ParseError::TooManyValues { limit: 1 }),
                413,
                "too_many_values",
            ),
            (
                Rejection::Malformed(schemas::ParseError::NoValidReport {
                    first: schemas::ReportError::TooLarge { len: 2, limit: 1 },
                }),
                413,
                "report_too_large",
            ),
            (
                Rejection::IpRateLimited {
                    retry_after: Duration::from_millis(1),
                },
                429,
                "ip_rate_limited",
            ),
            (
                Rejection::QuotaExceeded {
                    retry_after: Duration::from_secs(2),
                },
                429,
                "quota_exceeded",
            ),
            (
                Rejection::Overloaded {
                    retry_after: Duration::from_secs(1),
                },
                503,
                "overloaded",
            ),
            (
                Rejection::Unavailable {
                    retry_after: Duration::from_secs(30),
                    source: PublishError::QueueFull,
                },
                503,
                "kafka_queue_full",
            ),
            (
                Rejection::MessageTooLarge(PublishError::MessageTooLarge(
                    KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge),
                )),
                413,
                "message_too_large",
            ),
            (
                Rejection::Unavailable {
                    retry_after: Duration::from_secs(30),
                    source: PublishError::Unavailable(KafkaError::MessageProduction(
                        RDKafkaErrorCode::BrokerTransportFailure,
                    )),
                },
                503,
                "kafka_unavailable",
            ),
        ];
        for (rejection, status, reason) in cases {
            assert_eq!(rejection.status().as_u16(), status, "{rejection:?}");
            assert_eq!(rejection.reason(), reason, "{rejection:?}");
            let has_retry = rejection.retry_after().is_some();
            assert_eq!(has_retry, status == 429 || status == 503, "{rejection:?}");
        }
    }

    #[test]
    fn retry_after_rounds_up_to_at_least_one_second() {
        assert_eq!(ceil_secs(Duration::from_millis(1)), 1);
        assert_eq!(ceil_secs(Duration::ZERO), 1);
        assert_eq!(ceil_secs(Duration::from_millis(2001)), 3);
        assert_eq!(ceil_secs(Duration::from_secs(2)), 2);
    }

    #[test]
    fn answer_is_json_with_reason_and_retry_after() {
        let r = Rejection::QuotaExceeded {
            retry_after: Duration::from_millis(1500),
        }
        .into_response();
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()[header::RETRY_AFTER], "2");
        let allow = Rejection::MethodNotAllowed.into_response();
        assert_eq!(allow.headers()[header::ALLOW], "POST, OPTIONS");
    }
}
