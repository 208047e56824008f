//! The ClickHouse `reports` row: one deduplicated (dedup key, window) with its enrichments.
//!
//! The field order and types are the contract with `schemas/sql/` (RowBinary is positional):
//! change both together. `Date` is days since the Unix epoch (u16), `DateTime` seconds (u32).
//! Batches hold their rows already in RowBinary ([`rowbinary::Rows`]); [`ReportRow`] is the
//! typed form, for reading rows back, dead letters, replays and tests.

pub mod rowbinary;

use serde::{Deserialize, Serialize};

pub use rowbinary::{RowBinaryError, RowKey, RowWriter, Rows};

/// One row of the `reports` table (`ReplacingMergeTree(version)`, keyed by `row_id`).
#[derive(Debug, Clone, PartialEq, Default, clickhouse::Row, Serialize, Deserialize)]
pub struct ReportRow {
    /// xxh3 of (dedup key, window start): the same window always gets the same id.
    pub row_id: u64,
    /// = occurrences: the fullest count of a re-emitted row wins the merge.
    pub version: u64,
    pub project_id: u64,
    /// `Date`: days since 1970-01-01 of `window_start` (partition key).
    pub day: u16,
    /// `DateTime` columns: Unix seconds.
    pub window_start: u32,
    pub first_seen: u32,
    pub last_seen: u32,
    pub occurrences: u32,
    pub fingerprint: u64,
    pub dedup_key: u64,
    pub message_id: String,
    pub kind: String,
    pub report_type: String,
    pub wire: String,
    pub disposition: String,
    pub environment: String,
    pub release: String,
    pub document_url: String,
    pub document_origin: String,
    pub document_host: String,
    pub document_path: String,
    pub referrer: String,
    pub blocked_url: String,
    pub blocked_class: String,
    pub blocked_scheme: String,
    pub blocked_host: String,
    pub blocked_domain: String,
    pub blocked_origin: String,
    pub third_party: u8,
    pub effective_directive: String,
    pub directive_family: String,
    pub violated_directive: String,
    pub source_file: String,
    pub source_host: String,
    pub line_number: u32,
    pub column_number: u32,
    pub sample: String,
    pub status_code: u16,
    pub policy_hash: u64,
    pub original_policy: String,
    pub user_agent: String,
    pub ua_family: String,
    pub ua_major: String,
    pub os_family: String,
    pub device_class: String,
    pub client_ip: String,
    pub country: String,
    pub noise: String,
    pub nel_phase: String,
    pub nel_type: String,
    pub server_ip: String,
    pub elapsed_ms: u32,
    pub cert_hostname: String,
    pub cert_port: u16,
    /// JSON of the report's `details` and `extra`.
    pub details: String,
}

/// The `reports` columns in RowBinary order.
pub const COLUMNS: &[&str] = &[
    "row_id",
    "version",
    "project_id",
    "day",
    "window_start",
    "first_seen",
    "last_seen",
    "occurrences",
    "fingerprint",
    "dedup_key",
    "message_id",
    "kind",
    "report_type",
    "wire",
    "disposition",
    "environment",
    "release",
    "document_url",
    "document_origin",
    "document_host",
    "document_path",
    "referrer",
    "blocked_url",
    "blocked_class",
    "blocked_scheme",
    "blocked_host",
    "blocked_domain",
    "blocked_origin",
    "third_party",
    "effective_directive",
    "directive_family",
    "violated_directive",
    "source_file",
    "source_host",
    "line_number",
    "column_number",
    "sample",
    "status_code",
    "policy_hash",
    "original_policy",
    "user_agent",
    "ua_family",
    "ua_major",
    "os_family",
    "device_class",
    "client_ip",
    "country",
    "noise",
    "nel_phase",
    "nel_type",
    "server_ip",
    "elapsed_ms",
    "cert_hostname",
    "cert_port",
    "details",
];

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use clickhouse::Row;

    use super::*;

    #[test]
    fn columns_match_the_derived_row_in_order() {
        assert_eq!(COLUMNS, <ReportRow as Row>::COLUMN_NAMES);
        assert_eq!(COLUMNS.len(), 55);
    }
}
