//! Row building tests: one closed window per report kind.

use std::num::NonZeroUsize;

use serde_json::json;

use super::*;
use schemas::ReportMessage;

use crate::dedup::{row_id, CloseReason, Held};

const CHROME: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/121.0.0.0 Safari/537.36";

fn window(first: Held) -> ClosedWindow {
    ClosedWindow {
        partition: 0,
        dedup_key: 0xabc,
        window_start_ms: 1_700_000_040_000,
        first_offset: 10,
        last_offset: 20,
        occurrences: 7,
        first_seen_ms: 1_700_000_041_500,
        last_seen_ms: 1_700_000_099_999,
        first,
        reason: CloseReason::Watermark,
    }
}

/// The row of a window whose first message is `message`, held as a binary payload; the same
/// message held decoded (a JSON payload) must give the same row.
fn row_of(message: serde_json::Value) -> ReportRow {
    let message: ReportMessage = serde_json::from_value(message).unwrap();
    let binary = Held::Binary(schemas::binary::encode(&message).into_boxed_slice());
    let row = enricher().row(&window(binary));
    let owned = enricher().row(&window(Held::Owned(Box::new(message))));
    assert_eq!(
        row, owned,
        "a binary and a decoded first message give the same row"
    );
    row
}

fn enricher() -> Enricher {
    Enricher::new(
        NonZeroUsize::new(16).unwrap(),
        NonZeroUsize::new(16).unwrap(),
        Geo::default(),
    )
}

fn csp() -> serde_json::Value {
    json!({
        "v": 1, "id": "msg-1", "received_at_ms": 1_700_000_041_500u64, "project_id": 42,
        "environment": "prod", "client_ip": "203.0.113.0", "request_user_agent": "curl/8",
        "fingerprint": "00000000000000ff", "noise": "noise_scheme",
        "report": {
            "kind": "csp-violation", "wire": "reporting-batch", "report_type": "csp-violation",
            "disposition": "report",
            "document_url": "https://www.example.com/checkout?session=secret",
            "blocked_url": "https://cdn.tracker.test/pixel.js?u=1",
            "blocked_class": "url",
            "effective_directive": "script-src-elem",
            "violated_directive": "script-src-elem",
            "source_file": "https://static.example.com/app.js",
            "line_number": 12, "column_number": 99_999_999_999u64,
            "original_policy": "script-src 'self'; report-to default",
            "user_agent": CHROME,
            "details": {"type": "none"},
            "extra": {"effective-directive_full": "x"}
        }
    })
}

#[test]
fn a_csp_window_becomes_a_fully_enriched_row() {
    let row = row_of(csp());
    assert_eq!(row.row_id, row_id(0xabc, 1_700_000_040_000));
    assert_eq!((row.version, row.occurrences), (7, 7));
    assert_eq!((row.project_id, row.day), (42, 19_675));
    assert_eq!(
        (row.window_start, row.first_seen, row.last_seen),
        (1_700_000_040, 1_700_000_041, 1_700_000_099)
    );
    assert_eq!((row.fingerprint, row.dedup_key), (0xff, 0xabc));
    assert_eq!(row.message_id, "msg-1");
    assert_eq!(
        (row.kind.as_str(), row.wire.as_str()),
        ("csp-violation", "reporting-batch")
    );
    assert_eq!(
        (
            row.disposition.as_str(),
            row.environment.as_str(),
            row.release.as_str()
        ),
        ("report", "prod", "")
    );
    assert_eq!(row.document_origin, "https://www.example.com");
    assert_eq!(
        (row.document_host.as_str(), row.document_path.as_str()),
        ("www.example.com", "/checkout")
    );
    assert_eq!(
        (row.blocked_class.as_str(), row.blocked_scheme.as_str()),
        ("url", "https")
    );
    assert_eq!(
        (row.blocked_host.as_str(), row.blocked_domain.as_str()),
        ("cdn.tracker.test", "tracker.test")
    );
    assert_eq!(row.blocked_origin, "https://cdn.tracker.test");
    assert_eq!(row.third_party, 1);
    assert_eq!(
        (
            row.effective_directive.as_str(),
            row.directive_family.as_str()
        ),
        ("script-src-elem", "script-src")
    );
    assert_eq!(row.source_host, "static.example.com");
    assert_eq!((row.line_number, row.column_number), (12, u32::MAX));
    assert_eq!(
        row.policy_hash,
        xxhash_rust::xxh3::xxh3_64(b"script-src 'self'; report-to default")
    );
    assert_eq!(
        row.user_agent, CHROME,
        "the report's own user agent wins over the header"
    );
    assert_eq!(
        (
            row.ua_family.as_str(),
            row.ua_major.as_str(),
            row.device_class.as_str()
        ),
        ("Chrome", "121", "pc")
    );
    assert_eq!(
        (row.client_ip.as_str(), row.country.as_str()),
        ("203.0.113.0", "")
    );
    assert_eq!(row.noise, "noise_scheme");
    let details: serde_json::Value = serde_json::from_str(&row.details).unwrap();
    assert_eq!(details["extra"]["effective-directive_full"], "x");
}

#[test]
fn keywords_and_schemes_make_first_party_origins() {
    let mut message = csp();
    message["report"]["blocked_class"] = json!("inline");
    message["report"]["blocked_url"] = json!("inline");
    message["report"]
        .as_object_mut()
        .unwrap()
        .remove("user_agent");
    message["report"].as_object_mut().unwrap().remove("extra");
    let row = row_of(message.clone());
    assert_eq!(
        (row.blocked_origin.as_str(), row.blocked_scheme.as_str()),
        ("inline", "")
    );
    assert_eq!(row.third_party, 0);
    assert_eq!(row.user_agent, "curl/8", "falls back to the request header");
    assert_eq!(row.details, "", "nothing beyond the common fields");

    message["report"]["blocked_class"] = json!("data");
    message["report"]["blocked_url"] = json!("data");
    let row = row_of(message);
    assert_eq!(
        (row.blocked_origin.as_str(), row.blocked_scheme.as_str()),
        ("data:", "data")
    );
}

#[test]
fn nel_fields_come_from_the_details() {
    let message = json!({
        "v": 1, "id": "nel", "received_at_ms": 1u64, "project_id": 1, "fingerprint": "zz",
        "report": {
            "kind": "network-error", "wire": "reporting-batch", "blocked_class": "none",
            "document_url": "https://api.example.com/v1",
            "details": {"type": "network-error", "phase": "connection", "error_type": "tcp.timed_out",
                        "server_ip": "198.51.100.7", "elapsed_time_ms": 5000}
        }
    });
    let row = row_of(message);
    assert_eq!(
        (row.nel_phase.as_str(), row.nel_type.as_str()),
        ("connection", "tcp.timed_out")
    );
    assert_eq!(
        (row.server_ip.as_str(), row.elapsed_ms),
        ("198.51.100.7", 5000)
    );
    assert_eq!(
        row.fingerprint, 0,
        "an unparsable fingerprint is 0, not an error"
    );
    assert_eq!(
        (row.blocked_origin.as_str(), row.disposition.as_str()),
        ("none", "")
    );
    assert!(row.details.contains("tcp.timed_out"));
}

#[test]
fn certificate_fields_come_from_the_details() {
    let message = json!({
        "v": 1, "id": "ct", "received_at_ms": 1u64, "project_id": 1, "fingerprint": "1",
        "report": {
            "kind": "expect-ct", "wire": "expect-ct", "blocked_class": "none",
            "details": {"type": "certificate", "hostname": "shop.example.com", "port": 443}
        }
    });
    let row = row_of(message);
    assert_eq!(
        (row.cert_hostname.as_str(), row.cert_port),
        ("shop.example.com", 443)
    );
    assert_eq!(row.kind, "expect-ct");
}

#[test]
fn a_flood_through_decode_dedup_and_enrich_is_one_row() {
    use std::time::{Duration, Instant};

    use crate::dedup::{Dedup, DedupConfig};

    let t0 = Instant::now();
    for binary in [false, true] {
        let mut dedup = Dedup::new(DedupConfig {
            window: Duration::from_secs(60),
            grace: Duration::from_secs(5),
            idle_close: Duration::from_secs(90),
            max_open_windows: NonZeroUsize::new(10).unwrap(),
            max_bytes: NonZeroUsize::new(usize::MAX).unwrap(),
        });
        let mut base: ReportMessage = serde_json::from_value(csp()).unwrap();
        for offset in 0..40i64 {
            base.id = format!("msg-{offset}");
            base.received_at_ms = 1_700_000_041_500 + offset as u64 * 100;
            let payload = if binary {
                schemas::binary::encode(&base)
            } else {
                base.encode()
            };
            let decoded = crate::decode::decode(Some(&payload), Some(b"0000000000000abc")).unwrap();
            let incoming = decoded.message.into_incoming();
            dedup.observe(3, offset, decoded.dedup_key, incoming, t0);
        }
        let closed = dedup.drain_closed(t0 + Duration::from_secs(90));
        assert_eq!(closed.len(), 1);
        let row = enricher().row(&closed[0]);
        assert_eq!(
            (row.occurrences, row.version, row.dedup_key),
            (40, 40, 0xabc)
        );
        assert_eq!(
            (row.message_id.as_str(), row.window_start),
            ("msg-0", 1_700_000_040)
        );
        assert_eq!(
            (row.first_seen, row.last_seen),
            (1_700_000_041, 1_700_000_045)
        );
        assert_eq!(dedup.commit_offset(3), Some(40));
    }
}

/// The NEL and certificate columns read from held details text are what serde's details give,
/// whether the text is in the compact form (read without serde) or not (parsed).
#[test]
fn details_columns_from_text_are_the_parsed_details_columns() {
    let texts = [
        r#"{"type":"network-error","phase":"dns","error_type":"dns.name_not_resolved","server_ip":"203.0.113.7","elapsed_time_ms":4294967296,"sampling_fraction":1.0}"#,
        r#"{"type":"network-error"}"#,
        // Left to serde: an escape in a column's value, whitespace, an exponent.
        r#"{"type":"network-error","phase":"d\u006es","server_ip":"a\"b"}"#,
        r#"{ "type": "network-error", "elapsed_time_ms": 12 }"#,
        r#"{"type":"network-error","elapsed_time_ms":5,"sampling_fraction":1e-5}"#,
        r#"{"type":"certificate","hostname":"a.example","port":8443}"#,
        r#"{"type":"certificate","port":443,"hostname":"b\/c"}"#,
        r#"{"type":"fields","fields":{"phase":"x"}}"#,
        r#"{"type":"unknown","body":{"hostname":"x"}}"#,
        r#"{"type":"none"}"#,
    ];
    let mut filled = 0;
    for text in texts {
        let details: Details = serde_json::from_str(text).unwrap();
        let expected = DetailsColumns::of(&details);
        let mut parsed = None;
        let read = DetailsColumns::read(text.as_bytes(), &mut parsed);
        assert_eq!(read, expected, "{text}");
        filled += usize::from(read != DetailsColumns::default());
    }
    assert_eq!(filled, 6);
}

/// The fingerprint column reads the message's text as `u64::from_str_radix(_, 16)` did, also
/// for text that is not 16 hex digits.
#[test]
fn the_fingerprint_column_reads_hex_as_before() {
    for text in [
        "0123456789abcdef",
        "FFFFFFFFFFFFFFFF",
        "00000000000000aA",
        "+123456789abcdef",
        "+ff",
        "ff",
        "",
        "+",
        "-1",
        "0123456789abcdefa",
        "00000000000000000001",
        "0123456789abcdeg",
        "\u{e9}123456789abcde",
    ] {
        let expected = u64::from_str_radix(text, 16).unwrap_or(0);
        assert_eq!(fingerprint(text.as_bytes()), expected, "{text}");
    }
}
