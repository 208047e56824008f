//! Helpers shared by the schemas integration tests: the Kafka message built around a parsed
//! report, and byte-level mutations of report bodies for the property tests.
#![allow(dead_code)]

pub mod mutation;

use schemas::{noise, Report, ReportMessage, MESSAGE_VERSION};

/// `report` as ingest would publish it for project 7 (fixed id and receive time), with the
/// fingerprint and noise class ingest computes.
pub fn message(report: Report) -> ReportMessage {
    let fingerprint = schemas::fingerprint(7, &report);
    ReportMessage {
        v: MESSAGE_VERSION,
        id: "0193a1f0-0000-7000-8000-000000000000".into(),
        received_at_ms: 1_700_000_000_000,
        project_id: 7,
        environment: Some("prod".into()),
        release: None,
        client_ip: Some("198.51.100.0".into()),
        request_user_agent: None,
        fingerprint: format!("{fingerprint:016x}"),
        noise: noise::classify(&report).map(|n| n.as_str().to_owned()),
        report,
    }
}
