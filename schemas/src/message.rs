//! The versioned Kafka message carrying one normalised report.

use serde::{Deserialize, Serialize};

use crate::report::Report;

/// Current message format version.
pub const MESSAGE_VERSION: u16 = 1;

/// One report as published to Kafka (JSON, one report per message).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportMessage {
    /// Format version; see the compatibility rule in the module docs.
    pub v: u16,
    /// Unique id chosen by ingest (UUID v7, hyphenated) for this report.
    pub id: String,
    /// When ingest received the request, Unix milliseconds.
    pub received_at_ms: u64,
    pub project_id: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
    /// Client IP after the project's privacy setting (full, truncated, hashed or absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<String>,
    /// The request's `User-Agent` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_user_agent: Option<String>,
    /// [`crate::fingerprint`] as 16 lowercase hex digits.
    pub fingerprint: String,
    /// Default noise verdict label, if any (kept when a project opts out of dropping noise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noise: Option<String>,
    pub report: Report,
}

/// Why a Kafka payload could not be turned into a [`ReportMessage`].
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("unsupported message version {0}")]
    UnsupportedVersion(u64),
    #[error("corrupt message")]
    Corrupt(#[source] serde_json::Error),
}
