//! Helpers shared by the schemas integration tests: the Kafka message built around a parsed
//! report, and byte-level mutations of report bodies for the property tests.
#![allow(dead_code)]

pub mod mutation;

use schemas::{noise, Report, ReportMessage};

/// `report` as ingest would publish it for project 7 (fixed id and receive time), with the
/// fingerprint and noise class ingest computes.
pub fn message(report: Report) -> ReportMessage {
    ReportMessage {
        environment: Some("prod".into()),
        client_ip: Some("198.51.100.0".into()),
        noise: noise::classify(&report).map(|n| n.as_str().to_owned()),
        ..ReportMessage::new(
            "0193a1f0-0000-7000-8000-000000000000".into(),
            1_700_000_000_000,
            7,
            report,
        )
    }
}
