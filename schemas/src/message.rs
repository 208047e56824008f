//! The versioned Kafka message carrying one normalised report.
//!
//! # Format
//!
//! One JSON object per Kafka message (UTF-8; the bytes `serde_json` produces for
//! [`ReportMessage`], written by [`crate::json_layout`]), one report per
//! message, keyed by ingest with [`crate::dedup_key`]. The same message may instead be written in
//! the compact binary layout of [`crate::binary`] ([`MessageFormat::Binary`]); its first byte
//! ([`crate::binary::MARKER`]) never starts JSON, so [`ReportMessage::decode`] reads either. Fields are those of [`ReportMessage`];
//! optional fields are omitted when absent. `v` is the format version, [`MESSAGE_VERSION`].
//! The report's unknown fields (`report.extra`) are one JSON object, written and read back as
//! raw text ([`crate::Extra`]); its size is bounded by ingest's per-report cap
//! ([`crate::ParseLimits::max_report_bytes`]), not by this format.
//!
//! # Compatibility rule
//!
//! - Within a version, changes are additive only: a new field is optional (`#[serde(default)]`)
//!   and consumers ignore fields they do not know (no `deny_unknown_fields` anywhere in the
//!   message), so old processors read new messages and new processors read old ones.
//! - Anything else (removing or renaming a field, changing a type or meaning, changing the
//!   [`crate::fingerprint()`] encoding) is breaking and bumps `v`.
//! - [`ReportMessage::decode`] refuses a version it does not know
//!   ([`DecodeError::UnsupportedVersion`]); the processor dead-letters such messages (and
//!   corrupt ones) and commits past them, so a rollout that bumps `v` must upgrade consumers
//!   first.

use serde::{Deserialize, Serialize};

use crate::report::Report;

/// First allocation of [`ReportMessage::encode`]: most messages fit.
const ENCODE_CAPACITY: usize = 1536;

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
    /// [`crate::fingerprint()`] as 16 lowercase hex digits.
    pub fingerprint: String,
    /// Default noise verdict label, if any (kept when a project opts out of dropping noise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noise: Option<String>,
    pub report: Report,
}

/// How a [`ReportMessage`] is written into a Kafka payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageFormat {
    /// One JSON object (what consumers outside Palisade read most easily).
    Json,
    /// The compact layout of [`crate::binary`]: what ingest writes unless told otherwise.
    Binary,
}

impl MessageFormat {
    /// Stable name (`json` or `binary`): the value of ingest's `palisade-message-format`
    /// header and of its `--kafka-message-format` flag.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Binary => "binary",
        }
    }
}

impl std::str::FromStr for MessageFormat {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "json" => Ok(Self::Json),
            "binary" => Ok(Self::Binary),
            other => Err(format!("unknown message format {other:?} (json or binary)")),
        }
    }
}

/// Just the version, read before the rest so a newer format is reported as such rather
/// than as corruption.
#[derive(Deserialize)]
struct VersionProbe {
    v: u64,
}

impl ReportMessage {
    /// The current version's message of `project_id` for `report`, with the fingerprint ingest
    /// computes and every optional field empty (set them with struct update syntax).
    pub fn new(id: String, received_at_ms: u64, project_id: u64, report: Report) -> Self {
        Self {
            v: MESSAGE_VERSION,
            id,
            received_at_ms,
            project_id,
            environment: None,
            release: None,
            client_ip: None,
            request_user_agent: None,
            fingerprint: format!("{:016x}", crate::fingerprint(project_id, &report)),
            noise: None,
            report,
        }
    }

    /// Estimated heap bytes this message holds once decoded (its strings and the report's
    /// [`Report::heap_bytes`]), plus its own size: what a consumer keeping it in memory pays.
    pub fn heap_bytes(&self) -> usize {
        let opt = |s: &Option<String>| s.as_ref().map_or(0, String::len);
        std::mem::size_of::<Self>()
            + self.id.len()
            + self.fingerprint.len()
            + opt(&self.environment)
            + opt(&self.release)
            + opt(&self.client_ip)
            + opt(&self.request_user_agent)
            + opt(&self.noise)
            + self.report.heap_bytes()
    }

    /// The message as JSON bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(ENCODE_CAPACITY);
        self.encode_into(&mut out);
        out
    }

    /// Appends the message as JSON to `out` (reserve its size first to spare reallocations).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        self.view().encode_as(MessageFormat::Json, out);
    }

    /// Appends the message to `out` in `format`.
    pub fn encode_as(&self, format: MessageFormat, out: &mut Vec<u8>) {
        self.view().encode_as(format, out);
    }

    /// Parses a message in either format, checking its version first (see the module docs).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.first() == Some(&crate::binary::MARKER) {
            return Self::decode_binary(bytes);
        }
        let probe: VersionProbe = serde_json::from_slice(bytes).map_err(DecodeError::Corrupt)?;
        if probe.v == 0 || probe.v > u64::from(MESSAGE_VERSION) {
            return Err(DecodeError::UnsupportedVersion(probe.v));
        }
        serde_json::from_slice(bytes).map_err(DecodeError::Corrupt)
    }

    /// A binary message ([`crate::binary`]), with the same version rule as JSON.
    pub fn decode_binary(bytes: &[u8]) -> Result<Self, DecodeError> {
        crate::view::MessageView::decode_binary(bytes).map(crate::view::MessageView::into_owned)
    }
}

/// Why a Kafka payload could not be turned into a [`ReportMessage`].
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("unsupported message version {0}")]
    UnsupportedVersion(u64),
    #[error("corrupt message")]
    Corrupt(#[source] serde_json::Error),
    #[error("unsupported binary layout {0}")]
    UnsupportedLayout(u8),
    #[error("corrupt binary message")]
    CorruptBinary(#[source] crate::binary::BinaryError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ParseLimits, Parser};

    fn message() -> ReportMessage {
        let mut body =
            br#"{"csp-report":{"document-uri":"https://a.example/","blocked-uri":"inline",
            "violated-directive":"script-src","x-unknown":[1,{"b":2}]}}"#
                .to_vec();
        let report = Parser::new(ParseLimits::default())
            .parse(&mut body)
            .expect("valid")
            .items
            .remove(0)
            .expect("valid");
        ReportMessage {
            environment: Some("prod".into()),
            client_ip: Some("192.0.2.0".into()),
            ..ReportMessage::new(
                "0193a1f0-0000-7000-8000-000000000000".into(),
                1_700_000_000_000,
                42,
                report,
            )
        }
    }

    #[test]
    fn round_trips() {
        let message = message();
        assert_eq!(
            ReportMessage::decode(&message.encode()).expect("decodes"),
            message
        );
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let mut value: serde_json::Value =
            serde_json::from_slice(&message().encode()).expect("json");
        value["added_later"] = serde_json::json!({"x": 1});
        value["report"]["added_later"] = serde_json::json!(true);
        let bytes = serde_json::to_vec(&value).expect("json");
        assert_eq!(ReportMessage::decode(&bytes).expect("decodes"), message());
    }

    #[test]
    fn refuses_newer_versions_and_corruption() {
        let mut value: serde_json::Value =
            serde_json::from_slice(&message().encode()).expect("json");
        value["v"] = serde_json::json!(u64::from(MESSAGE_VERSION) + 1);
        let bytes = serde_json::to_vec(&value).expect("json");
        assert!(matches!(
            ReportMessage::decode(&bytes),
            Err(DecodeError::UnsupportedVersion(2))
        ));
        assert!(matches!(
            ReportMessage::decode(b"{\"v\":1}"),
            Err(DecodeError::Corrupt(_))
        ));
        assert!(matches!(
            ReportMessage::decode(b"not json"),
            Err(DecodeError::Corrupt(_))
        ));
        assert!(matches!(
            ReportMessage::decode(b"{}"),
            Err(DecodeError::Corrupt(_))
        ));
    }
}
