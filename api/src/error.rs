//! Every refusal and failure of the API: one variant, one status code, one bounded metric label,
//! and the JSON answer `{"error": "<label>", "detail": "..."}` (the shape of ingest's refusals).

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::Full;

/// Why a request was not answered with its data.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("no route for this path")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("missing `Authorization: Bearer <token>` header")]
    MissingToken,
    #[error("unknown or revoked token")]
    BadToken,
    /// A project token used on another project's path. Always 403, whether or not that
    /// project exists or has data, so a token learns nothing about other projects.
    #[error("this token may not access project {project}")]
    WrongProject { project: u64 },
    #[error("this endpoint needs an admin token")]
    AdminRequired,
    #[error("invalid parameter {name}: {reason}")]
    InvalidParameter { name: &'static str, reason: String },
    #[error("invalid cursor")]
    InvalidCursor,
    #[error("invalid JSON body")]
    InvalidBody(#[source] serde_json::Error),
    #[error("body larger than {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("body not received in time")]
    BodyTimeout,
    #[error("body could not be read")]
    BodyRead(#[source] hyper::Error),
    #[error("no violation group {fingerprint} in this project")]
    GroupNotFound { fingerprint: String },
    #[error("no token {token_id} in this project")]
    TokenNotFound { token_id: String },
    #[error("no CSP policy observed for this project yet")]
    NoPolicyObserved,
    #[error("no applied resolution for group {fingerprint}")]
    NotApplied { fingerprint: String },
    #[error("no policy change can allow this violation: {reason}")]
    NoResolution { reason: String },
    #[error("the evidence does not qualify ({reason}); send {{\"force\": true}} to apply anyway")]
    NotQualified { reason: String },
    #[error("clickhouse query failed while {step}")]
    Storage {
        step: &'static str,
        #[source]
        source: clickhouse::error::Error,
    },
    #[error("clickhouse did not answer in time while {step}")]
    StorageTimeout { step: &'static str },
    #[error("too many active tokens ({count} > {limit})")]
    TooManyTokens { count: usize, limit: usize },
    #[error("no randomness available for a new token")]
    Random(#[source] getrandom::Error),
    #[error("cannot encode the answer")]
    Encode(#[source] serde_json::Error),
    // --- key management (control plane) ---
    #[error("no project {project}")]
    ProjectNotFound { project: u64 },
    #[error("project {project} exists already")]
    ProjectExists { project: u64 },
    #[error("no such public key in this project")]
    KeyNotFound,
    #[error("this public key is taken")]
    KeyExists,
    #[error("the public key is revoked for good; create or rotate to a new one")]
    KeyRevoked,
    #[error("too many {what} (limit {limit})")]
    LimitReached { what: &'static str, limit: usize },
    #[error("stored, but the projects file for ingest could not be written (retried every --projects-file-refresh-secs)")]
    ProjectsFile(#[source] std::io::Error),
}

impl ApiError {
    /// The one status code of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NotFound
            | Self::GroupNotFound { .. }
            | Self::TokenNotFound { .. }
            | Self::NoPolicyObserved
            | Self::NotApplied { .. }
            | Self::ProjectNotFound { .. }
            | Self::KeyNotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::MissingToken | Self::BadToken => StatusCode::UNAUTHORIZED,
            Self::WrongProject { .. } | Self::AdminRequired => StatusCode::FORBIDDEN,
            Self::InvalidParameter { .. }
            | Self::InvalidCursor
            | Self::InvalidBody(_)
            | Self::BodyRead(_) => StatusCode::BAD_REQUEST,
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::NoResolution { .. }
            | Self::NotQualified { .. }
            | Self::ProjectExists { .. }
            | Self::KeyExists
            | Self::KeyRevoked
            | Self::LimitReached { .. } => StatusCode::CONFLICT,
            Self::Storage { .. } | Self::StorageTimeout { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::TooManyTokens { .. }
            | Self::Random(_)
            | Self::Encode(_)
            | Self::ProjectsFile(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Stable label for `api_errors_total{reason}` and the `error` field of the answer.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::MissingToken => "missing_token",
            Self::BadToken => "bad_token",
            Self::WrongProject { .. } => "wrong_project",
            Self::AdminRequired => "admin_required",
            Self::InvalidParameter { .. } => "invalid_parameter",
            Self::InvalidCursor => "invalid_cursor",
            Self::InvalidBody(_) => "invalid_body",
            Self::BodyTooLarge { .. } => "body_too_large",
            Self::BodyTimeout => "body_timeout",
            Self::BodyRead(_) => "body_read_error",
            Self::GroupNotFound { .. } => "group_not_found",
            Self::TokenNotFound { .. } => "token_not_found",
            Self::NoPolicyObserved => "no_policy_observed",
            Self::NotApplied { .. } => "not_applied",
            Self::NoResolution { .. } => "no_resolution",
            Self::NotQualified { .. } => "not_qualified",
            Self::Storage { .. } => "storage_error",
            Self::StorageTimeout { .. } => "storage_timeout",
            Self::TooManyTokens { .. } => "too_many_tokens",
            Self::Random(_) => "no_randomness",
            Self::Encode(_) => "encode_error",
            Self::ProjectNotFound { .. } => "project_not_found",
            Self::ProjectExists { .. } => "project_exists",
            Self::KeyNotFound => "key_not_found",
            Self::KeyExists => "key_exists",
            Self::KeyRevoked => "key_revoked",
            Self::LimitReached { .. } => "limit_reached",
            Self::ProjectsFile(_) => "projects_file_error",
        }
    }

    /// Whether this is the server's fault (logged at error) rather than the client's (debug).
    pub fn is_server_fault(&self) -> bool {
        self.status().is_server_error()
    }

    /// The answer sent to the client. Storage details stay in the log, not in the answer.
    pub fn into_response(self) -> Response<Full<Bytes>> {
        let detail = if self.is_server_fault() {
            self.to_string()
        } else {
            schemas::error_chain(&self)
        };
        let body = serde_json::json!({ "error": self.reason(), "detail": detail });
        let mut response = json_response(self.status(), &body);
        if matches!(self, Self::MissingToken | Self::BadToken) {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"palisade\""),
            );
        }
        response
    }
}

/// A JSON answer with `status`.
pub fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<Full<Bytes>> {
    // Serialising a `Value` cannot fail (string keys only).
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(bytes)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn refusals_render_error_and_detail() {
        let response = ApiError::WrongProject { project: 9 }.into_response();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        let unauthorized = ApiError::MissingToken.into_response();
        assert_eq!(unauthorized.status(), StatusCode::UNAUTHORIZED);
        assert!(unauthorized
            .headers()
            .contains_key(header::WWW_AUTHENTICATE));
    }
}
