//! The compact reader against serde: whatever it accepts, serde accepts with the same values.

use proptest::prelude::*;
use serde_json::json;
use serde_json::value::RawValue;

use super::*;
use crate::extra::object_text;
use crate::report::{CertificateDetails, Details, NetworkErrorDetails};
use crate::test_corpus::reports;

/// serde's verdict on details text, as the [`Summary`] of what it built.
fn serde_summary(text: &str) -> Option<Summary<'static>> {
    // Leaked: tests only, so the summary can borrow what serde built.
    let details: &'static Details = Box::leak(Box::new(serde_json::from_str(text).ok()?));
    Some(match details {
        Details::None => Summary::None,
        Details::NetworkError(nel) => Summary::NetworkError {
            phase: nel.phase.as_deref(),
            error_type: nel.error_type.as_deref(),
            server_ip: nel.server_ip.as_deref(),
            elapsed_time_ms: nel.elapsed_time_ms,
        },
        Details::Certificate(cert) => Summary::Certificate {
            hostname: &cert.hostname,
            port: cert.port,
        },
        Details::Fields(_) => Summary::Fields,
        Details::Unknown(_) => Summary::Unknown,
    })
}

/// serde's verdict on `extra` text (the rule of `binary::decode_view`).
fn serde_extra_ok(text: &str) -> bool {
    serde_json::from_str::<&RawValue>(text).is_ok_and(|raw| object_text(raw).is_ok())
}

/// The one property: an answer from the compact reader is serde's answer.
fn agrees(text: &str) {
    if let Some(summary) = details(text) {
        assert_eq!(Some(summary), serde_summary(text), "{text:?}");
    }
    if object(text) {
        assert!(serde_extra_ok(text), "{text:?}");
    }
}

/// Details of every kind, as the binary encoder writes them (serde_json).
fn written() -> Vec<String> {
    let mut texts: Vec<String> = [
        Details::None,
        Details::NetworkError(NetworkErrorDetails::default()),
        Details::NetworkError(NetworkErrorDetails {
            phase: Some("connection".into()),
            error_type: Some("tcp.timed_out".into()),
            server_ip: Some("203.0.113.7".into()),
            elapsed_time_ms: Some(u64::MAX),
            method: Some("GET".into()),
            protocol: Some("http/1.1".into()),
            sampling_fraction: Some(0.25),
        }),
        Details::Certificate(CertificateDetails {
            hostname: "a.example".into(),
            port: Some(u16::MAX),
            date_time: Some("2024-01-01T00:00:00Z".into()),
            include_subdomains: Some(false),
            served_certificate_chain: vec!["-----BEGIN".into(), String::new()],
            known_pins: vec!["pin-sha256=\"x\"".into()],
            scts: vec![json!({"version": 1, "status": "valid"}), json!([])],
            cert_status: Some("good".into()),
            ..Default::default()
        }),
        Details::Fields(
            json!({"id": "x", "n": -1.5, "deep": {"a": [1, null, true, {"b": []}]}})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        ),
        Details::Unknown(json!(null)),
        Details::Unknown(json!([1, "x", {"type": "inner"}])),
    ]
    .iter()
    .map(|d| serde_json::to_string(d).expect("serialises"))
    .collect();
    for report in reports() {
        texts.push(serde_json::to_string(&report.details).expect("serialises"));
        if let Some(raw) = report.extra.raw() {
            texts.push(raw.get().to_owned());
        }
    }
    texts.sort();
    texts.dedup();
    texts
}

/// What ingest writes is read here (not left to serde), with serde's values.
#[test]
fn reads_what_the_encoder_writes_as_serde_does() {
    let texts = written();
    let (mut details_read, mut objects_read, mut kinds) = (0, 0, std::collections::HashSet::new());
    for text in &texts {
        if text.starts_with("{\"type\":") {
            let summary = details(text);
            // `\u` escapes are left to serde.
            if !text.contains("\\u") {
                assert!(summary.is_some(), "not read: {text}");
            }
            if let Some(summary) = summary {
                assert_eq!(Some(summary), serde_summary(text), "{text}");
                kinds.insert(std::mem::discriminant(&summary));
                details_read += 1;
            }
        } else {
            assert!(object(text) || text.contains("\\u"), "not read: {text}");
            objects_read += usize::from(object(text));
        }
    }
    assert_eq!(kinds.len(), 5, "every variant read");
    assert!(
        details_read > 20 && objects_read > 5,
        "{details_read} {objects_read}"
    );
}

/// Every single-byte change, insertion and deletion of what the encoder writes: whatever the
/// compact reader still accepts, serde accepts with the same values.
#[test]
fn accepts_nothing_serde_refuses_over_every_small_change() {
    const BYTES: &[u8] = b"{}[],:\"\\ 0123456789-+.eEtfnulr\x01\x7fax";
    for text in written() {
        let bytes = text.as_bytes();
        for at in 0..=bytes.len() {
            if at < bytes.len() {
                let mut deleted = bytes.to_vec();
                deleted.remove(at);
                check_bytes(&deleted);
            }
            for &b in BYTES {
                let mut inserted = bytes.to_vec();
                inserted.insert(at, b);
                check_bytes(&inserted);
                if at < bytes.len() {
                    let mut changed = bytes.to_vec();
                    changed[at] = b;
                    check_bytes(&changed);
                }
            }
        }
    }
}

fn check_bytes(bytes: &[u8]) {
    if let Ok(text) = std::str::from_utf8(bytes) {
        agrees(text);
    }
}

/// Each rule of the module doc at its edge: valid text the reader leaves to serde, invalid
/// text it must not accept.
#[test]
fn leaves_every_other_form_to_serde() {
    let cases = [
        // Valid for serde, not in the compact form.
        (r#"{"type": "none"}"#, true),
        (r#"{"type":"none"} "#, true),
        (r#"{"type":"none","x":1}"#, true),
        (r#"{"phase":"dns","type":"network-error"}"#, true),
        (r#"{"type":"network-error","phase":null}"#, true),
        (r#"{"type":"network-error","phase":"d\u006es"}"#, true),
        (r#"{"type":"network-error","sampling_fraction":1e-5}"#, true),
        (r#"{"type":"network-error","extra_key":1}"#, true),
        (
            r#"{"type":"network-error","elapsed_time_ms":18446744073709551615}"#,
            false,
        ),
        (
            r#"{"type":"certificate","hostname":"a","port":65535}"#,
            false,
        ),
        (r#"{"type":"fields","fields":{"a":1,"a":2}}"#, false),
        (
            r#"{"type":"fields","fields":{"s":"\"\\\/\b\f\n\r\t"}}"#,
            false,
        ),
        (r#"{"type":"fields","fields":{"s":"\u00e9"}}"#, true),
        (r#"{"type":"network-error","phase":"\n"}"#, true),
        (r#"{"type":"unknown"}"#, false),
        (r#"{"type":"fields"}"#, false),
        // Refused by serde.
        (
            r#"{"type":"network-error","phase":"dns","phase":"dns"}"#,
            true,
        ),
        (
            r#"{"type":"network-error","elapsed_time_ms":18446744073709551616}"#,
            true,
        ),
        (r#"{"type":"network-error","elapsed_time_ms":1.0}"#, true),
        (r#"{"type":"network-error","elapsed_time_ms":-1}"#, true),
        (r#"{"type":"network-error","elapsed_time_ms":01}"#, true),
        (
            r#"{"type":"network-error","sampling_fraction":1e400}"#,
            true,
        ),
        (r#"{"type":"network-error","sampling_fraction":1.}"#, true),
        (r#"{"type":"network-error","sampling_fraction":-}"#, true),
        (
            r#"{"type":"certificate","hostname":"a","port":65536}"#,
            true,
        ),
        (r#"{"type":"certificate","port":1}"#, true),
        (
            r#"{"type":"certificate","hostname":"a","include_subdomains":1}"#,
            true,
        ),
        (
            r#"{"type":"certificate","hostname":"a","known_pins":[1]}"#,
            true,
        ),
        (r#"{"type":"fields","fields":[]}"#, true),
        (r#"{"type":"none","type":"none"}"#, true),
        (r#"{"type":"nothing"}"#, true),
        ("{\"type\":\"network-error\",\"phase\":\"a\u{1}\"}", true),
        (r#"{"type":"fields","fields":{"s":"\a"}}"#, true),
        (r#"{"type":"fields","fields":{"s":"\"}}"#, true),
        (r#"{"type":"none"}x"#, true),
        (r#"{"type":"none""#, true),
    ];
    for (text, left_to_serde) in cases {
        agrees(text);
        assert_eq!(details(text).is_none(), left_to_serde, "{text}");
    }
    let deep = format!(
        r#"{{"type":"unknown","body":{}{}}}"#,
        "[".repeat(MAX_DEPTH as usize),
        "]".repeat(MAX_DEPTH as usize)
    );
    assert!(details(&deep).is_none(), "deeper than MAX_DEPTH");
    assert!(serde_summary(&deep).is_some());
    let long = format!(
        r#"{{"type":"network-error","sampling_fraction":{}}}"#,
        "1".repeat(MAX_NUMBER_BYTES + 1)
    );
    assert!(details(&long).is_none());
    assert!(object("{}") && object(r#"{"a":[1,{"b":null}]}"#));
    for text in ["[]", "{} ", " {}", "{\"a\":1", "{\"a\":1e5}"] {
        assert!(!object(text), "{text}");
        agrees(text);
    }
}

/// Tokens that build texts near the compact form.
fn token() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "{",
        "}",
        "[",
        "]",
        ",",
        ":",
        "\"type\"",
        "\"none\"",
        "\"network-error\"",
        "\"certificate\"",
        "\"fields\"",
        "\"unknown\"",
        "\"phase\"",
        "\"error_type\"",
        "\"server_ip\"",
        "\"elapsed_time_ms\"",
        "\"sampling_fraction\"",
        "\"method\"",
        "\"hostname\"",
        "\"port\"",
        "\"include_subdomains\"",
        "\"known_pins\"",
        "\"scts\"",
        "\"body\"",
        "\"x\"",
        "\"\\n\"",
        "0",
        "1",
        "-1",
        "65536",
        "1.5",
        "1e5",
        "01",
        "18446744073709551616",
        "true",
        "false",
        "null",
        " ",
        "\"",
    ])
}

proptest! {
    #[test]
    fn random_token_texts_agree_with_serde(tokens in prop::collection::vec(token(), 0..24)) {
        let mut text = String::from("{\"type\":");
        text.extend(tokens);
        agrees(&text);
        agrees(&text[8..]);
    }
}
