//! Kafka record -> [`Message`] and its dedup key, or a [`DecodeFailure`] for the
//! dead-letter topic. Never panics, whatever the bytes.

use std::borrow::Cow;

use schemas::{DecodeError, ReportMessage};

use crate::dedup::Incoming;

/// A decoded record.
#[derive(Debug, Clone)]
pub struct Decoded<'a> {
    pub message: Message<'a>,
    pub dedup_key: u64,
    /// Whether the key was read from the record key or recomputed from the message.
    pub key_source: KeySource,
}

/// A decoded payload: a binary one is read in place (checked, nothing copied or built), a JSON
/// one is decoded into an owned message (serde has to build it to validate it).
#[derive(Debug, Clone)]
pub enum Message<'a> {
    /// What dedup and the key need of a binary payload that `schemas::binary::decode_checked`
    /// accepted (every string checked as UTF-8, `details` and `extra` checked, not built).
    Binary {
        received_at_ms: u64,
        age_ms: Option<u64>,
        fingerprint: &'a [u8],
        client_ip: Option<&'a [u8]>,
        payload: &'a [u8],
    },
    /// Boxed here already: the box is what a dedup window holds.
    Json(Box<ReportMessage>),
}

impl<'a> Message<'a> {
    /// The fingerprint and the client IP (empty when absent): what a missing or malformed
    /// record key is recomputed from.
    pub fn key_fields(&self) -> (Cow<'_, str>, Cow<'_, str>) {
        match self {
            // Checked as UTF-8: borrowed, never replaced.
            Self::Binary {
                fingerprint,
                client_ip,
                ..
            } => (
                String::from_utf8_lossy(fingerprint),
                String::from_utf8_lossy(client_ip.unwrap_or_default()),
            ),
            Self::Json(message) => (
                Cow::Borrowed(&message.fingerprint),
                Cow::Borrowed(message.client_ip.as_deref().unwrap_or_default()),
            ),
        }
    }

    /// What dedup counts (and holds, if the message opens a window).
    pub fn into_incoming(self) -> Incoming<'a> {
        match self {
            Self::Binary {
                received_at_ms,
                age_ms,
                payload,
                ..
            } => Incoming::binary(received_at_ms, age_ms, payload),
            Self::Json(message) => message.into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    /// The record key: 16 hex digits of `schemas::dedup_key`, set by ingest.
    RecordKey,
    /// Missing or malformed key: recomputed from the fingerprint and client IP.
    Recomputed,
}

/// Why a record goes to the dead-letter topic: a bounded reason label and a human detail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct DecodeFailure {
    /// One of [`DecodeFailure::REASONS`].
    pub reason: &'static str,
    pub detail: String,
}

impl DecodeFailure {
    /// Every reason label, for metric pre-registration.
    pub const REASONS: [&'static str; 4] =
        ["empty", "unsupported_version", "corrupt", "no_dedup_key"];

    fn new(reason: &'static str, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }
}

/// Decodes a record's payload and key.
pub fn decode<'a>(
    payload: Option<&'a [u8]>,
    key: Option<&[u8]>,
) -> Result<Decoded<'a>, DecodeFailure> {
    let payload = payload
        .filter(|p| !p.is_empty())
        .ok_or_else(|| DecodeFailure::new("empty", "record has no payload"))?;
    let message = decode_message(payload)?;
    if let Some(dedup_key) = key.and_then(parse_key) {
        return Ok(Decoded {
            message,
            dedup_key,
            key_source: KeySource::RecordKey,
        });
    }
    let (fingerprint, client_ip) = message.key_fields();
    let fingerprint = u64::from_str_radix(&fingerprint, 16).map_err(|_| {
        DecodeFailure::new(
            "no_dedup_key",
            format!("bad key and bad fingerprint {fingerprint:?}"),
        )
    })?;
    let dedup_key = schemas::dedup_key(fingerprint, &client_ip);
    Ok(Decoded {
        message,
        dedup_key,
        key_source: KeySource::Recomputed,
    })
}

/// [`ReportMessage::decode`] with one JSON pass instead of two in the common case.
///
/// `ReportMessage::decode` reads the version first (a whole pass over the payload) so that a
/// newer format is reported as such rather than as corruption, then parses again; that probe
/// was a third of the processor's CPU per report (callgrind, `palisade-processor-bench`). Here
/// the full parse comes first and the version is checked on its result with the same rule;
/// only a payload that does not parse goes through `ReportMessage::decode`, whose probe then
/// tells an unsupported version from corruption exactly as before.
///
/// The payload is checked as UTF-8 once and parsed with `from_str`: `from_slice` validates
/// every string (keys included) separately, which cost more than the one whole-buffer check.
///
/// A payload starting with [`schemas::binary::MARKER`] is the compact binary layout (written by
/// ingest with `--kafka-message-format binary`): one pass, read in place, its embedded JSON
/// checked but not built ([`schemas::binary::decode_checked`] refuses exactly what
/// [`MessageView::decode_binary`] and [`ReportMessage::decode_binary`] refuse, with the same
/// error, so the dead-letter reason and detail are theirs).
fn decode_message(payload: &[u8]) -> Result<Message<'_>, DecodeFailure> {
    if payload.first() == Some(&schemas::binary::MARKER) {
        let fields = schemas::binary::decode_checked(payload).map_err(failure)?;
        return Ok(Message::Binary {
            received_at_ms: fields.received_at_ms,
            age_ms: fields.age_ms,
            fingerprint: fields.fingerprint,
            client_ip: fields.client_ip,
            payload,
        });
    }
    let parsed = std::str::from_utf8(payload)
        .ok()
        .and_then(|text| serde_json::from_str::<ReportMessage>(text).ok());
    if let Some(message) = parsed {
        if message.v == 0 || message.v > schemas::MESSAGE_VERSION {
            return Err(DecodeFailure::new(
                "unsupported_version",
                format!("message version {}", message.v),
            ));
        }
        return Ok(Message::Json(Box::new(message)));
    }
    ReportMessage::decode(payload)
        .map(|message| Message::Json(Box::new(message)))
        .map_err(failure)
}

/// The dead-letter reason of a message that did not decode.
fn failure(error: DecodeError) -> DecodeFailure {
    match error {
        DecodeError::UnsupportedVersion(v) => {
            DecodeFailure::new("unsupported_version", format!("message version {v}"))
        }
        DecodeError::UnsupportedLayout(layout) => {
            DecodeFailure::new("unsupported_version", format!("binary layout {layout}"))
        }
        DecodeError::Corrupt(source) => DecodeFailure::new("corrupt", source.to_string()),
        DecodeError::CorruptBinary(source) => DecodeFailure::new("corrupt", source.to_string()),
    }
}

/// Exactly 16 hex digits, as ingest writes them.
pub fn parse_key(key: &[u8]) -> Option<u64> {
    hex16(key)
}

/// Exactly 16 hex digits (either case) as a `u64`; `None` for anything else. What
/// `u64::from_str_radix(_, 16)` reads from such text, without its UTF-8 check and per-digit
/// overflow checks (16 digits always fit).
pub(crate) fn hex16(digits: &[u8]) -> Option<u64> {
    let digits: &[u8; 16] = digits.try_into().ok()?;
    let mut value = 0u64;
    for &digit in digits {
        let nibble = match digit {
            b'0'..=b'9' => digit - b'0',
            b'a'..=b'f' => digit - b'a' + 10,
            b'A'..=b'F' => digit - b'A' + 10,
            _ => return None,
        };
        value = value << 4 | u64::from(nibble);
    }
    Some(value)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn payload(fingerprint: &str, client_ip: Option<&str>) -> Vec<u8> {
        let mut message = serde_json::json!({
            "v": 1, "id": "m", "received_at_ms": 1u64, "project_id": 3, "fingerprint": fingerprint,
            "report": {"kind": "csp-violation", "wire": "legacy-csp", "blocked_class": "inline",
                       "details": {"type": "none"}}
        });
        if let Some(ip) = client_ip {
            message["client_ip"] = ip.into();
        }
        serde_json::to_vec(&message).unwrap()
    }

    #[test]
    fn reads_the_dedup_key_from_the_record_key() {
        let bytes = payload("00000000000000aa", None);
        let decoded = decode(Some(&bytes), Some(b"00000000000000FF")).unwrap();
        assert_eq!(
            (decoded.dedup_key, decoded.key_source),
            (0xff, KeySource::RecordKey)
        );
        assert!(matches!(decoded.message, Message::Json(m) if m.project_id == 3));
    }

    #[test]
    fn recomputes_a_missing_or_malformed_key() {
        let expected = schemas::dedup_key(0xaa, "198.51.100.0");
        for key in [
            None,
            Some(&b"xyz"[..]),
            Some(&b"0000000000000aa"[..]),
            Some(&b"+000000000000aa0"[..]),
        ] {
            let bytes = payload("00000000000000aa", Some("198.51.100.0"));
            let decoded = decode(Some(&bytes), key).unwrap();
            assert_eq!(
                (decoded.dedup_key, decoded.key_source),
                (expected, KeySource::Recomputed),
                "{key:?}"
            );
        }
        let bytes = payload("aa", None);
        let no_ip = decode(Some(&bytes), None).unwrap();
        assert_eq!(no_ip.dedup_key, schemas::dedup_key(0xaa, ""));
    }

    #[test]
    fn classifies_undecodable_records() {
        let reason =
            |payload: Option<&[u8]>, key: Option<&[u8]>| decode(payload, key).unwrap_err().reason;
        assert_eq!(reason(None, None), "empty");
        assert_eq!(reason(Some(b""), None), "empty");
        assert_eq!(reason(Some(b"{not json"), None), "corrupt");
        assert_eq!(reason(Some(br#"{"v": 1, "id": "x"}"#), None), "corrupt");
        assert_eq!(reason(Some(br#"{"v": 99}"#), None), "unsupported_version");
        // A newer (or zero) version whose body happens to parse as v1 is still refused: the
        // single-pass fast path checks the version after parsing.
        for version in [0, u64::from(schemas::MESSAGE_VERSION) + 1] {
            let mut message: serde_json::Value =
                serde_json::from_slice(&payload("00000000000000aa", None)).unwrap();
            message["v"] = version.into();
            let bytes = serde_json::to_vec(&message).unwrap();
            assert_eq!(
                reason(Some(&bytes), None),
                "unsupported_version",
                "v{version}"
            );
        }
        assert_eq!(
            reason(Some(&payload("not-hex", None)), None),
            "no_dedup_key"
        );
        for (failure, expected) in [(reason(None, None), 0), (reason(Some(b"["), None), 2)] {
            assert_eq!(failure, DecodeFailure::REASONS[expected]);
        }
    }

    /// The binary layout decodes to the same message and key as JSON; its failures get the
    /// same dead-letter reasons.
    #[test]
    fn binary_payloads_decode_like_json() {
        let json = payload("00000000000000aa", Some("198.51.100.0"));
        let message = schemas::ReportMessage::decode(&json).unwrap();
        let binary = schemas::binary::encode(&message);
        assert_eq!(binary[0], schemas::binary::MARKER);
        for key in [Some(&b"00000000000000FF"[..]), None] {
            let from_json = decode(Some(&json), key).unwrap();
            let from_binary = decode(Some(&binary), key).unwrap();
            assert_eq!(
                from_binary.message.key_fields(),
                from_json.message.key_fields()
            );
            let (
                Message::Binary {
                    received_at_ms,
                    age_ms,
                    ..
                },
                Message::Json(json),
            ) = (&from_binary.message, &from_json.message)
            else {
                panic!("binary read as JSON or the other way round");
            };
            assert_eq!(
                (*received_at_ms, *age_ms),
                (json.received_at_ms, json.report.age_ms)
            );
            assert_eq!(
                (from_binary.dedup_key, from_binary.key_source),
                (from_json.dedup_key, from_json.key_source)
            );
        }
        let reason = |payload: &[u8]| decode(Some(payload), None).unwrap_err().reason;
        assert_eq!(reason(&binary[..binary.len() - 1]), "corrupt");
        assert_eq!(reason(&[schemas::binary::MARKER]), "corrupt");
        let mut later_layout = binary.clone();
        later_layout[1] = schemas::binary::LAYOUT_VERSION + 1;
        assert_eq!(reason(&later_layout), "unsupported_version");
        let newer = schemas::ReportMessage {
            v: schemas::MESSAGE_VERSION + 1,
            ..message
        };
        assert_eq!(
            reason(&schemas::binary::encode(&newer)),
            "unsupported_version"
        );
    }

    /// `hex16` reads exactly 16 hex digits, as `from_str_radix` reads them, and nothing else.
    #[test]
    fn hex16_reads_sixteen_hex_digits_as_from_str_radix() {
        let expected = |digits: &[u8]| {
            let text = std::str::from_utf8(digits).ok()?;
            if text.len() != 16 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            u64::from_str_radix(text, 16).ok()
        };
        for text in [
            "0123456789abcdef",
            "FFFFFFFFFFFFFFFF",
            "00000000000000aA",
            "+123456789abcdef",
            "0123456789abcde",
            "0123456789abcdef0",
            " 123456789abcdef",
            "",
        ] {
            assert_eq!(hex16(text.as_bytes()), expected(text.as_bytes()), "{text}");
        }
        let mut accepted = 0;
        for at in [0, 7, 15] {
            for byte in 0..=u8::MAX {
                let mut digits = *b"0123456789abcdef";
                digits[at] = byte;
                assert_eq!(hex16(&digits), expected(&digits), "{digits:?}");
                accepted += usize::from(hex16(&digits).is_some());
            }
        }
        assert_eq!(accepted, 3 * 22);
    }

    #[test]
    fn never_panics_on_arbitrary_bytes() {
        let mut state = 7u64;
        for len in 0..300 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                    (state >> 56) as u8
                })
                .collect();
            let _ = decode(Some(&bytes), Some(&bytes));
            // The same bytes behind the binary marker and layout.
            let binary: Vec<u8> = [schemas::binary::MARKER, schemas::binary::LAYOUT_VERSION]
                .into_iter()
                .chain(bytes.iter().copied())
                .collect();
            let _ = decode(Some(&binary), None);
        }
    }
}
