//! The JSON layout of a message, written by hand: byte for byte what `serde_json` makes of a
//! [`ReportMessage`](crate::ReportMessage) (its field order, `None`s omitted, the same escapes),
//! without serde's per-field calls and per-byte escape loop, which were about 10,000
//! instructions of ingest's ~60,000 per legacy CSP report (callgrind, benches/README.md
//! "Ingest against the Kafka floor"). Strings are scanned eight bytes at a time for the bytes
//! JSON escapes. `details` other than `none` still go through `serde_json` (they are rare and
//! hold trees); `extra` is raw JSON text already.
//!
//! `tests::same_bytes_as_serde_json` holds the two to the same bytes over the repository's
//! corpora and hostile strings; the processor reads either.

use crate::report::{BlockedClass, Details, Disposition};
use crate::view::{MessageView, ReportView};

/// Appends `message` as JSON to `out`.
pub fn encode_into(message: &MessageView<'_>, out: &mut Vec<u8>) {
    let mut json = Json(out);
    json.raw(b"{\"v\":");
    json.number(u64::from(message.v));
    json.raw(b",\"id\":");
    json.string(message.id);
    json.raw(b",\"received_at_ms\":");
    json.number(message.received_at_ms);
    json.raw(b",\"project_id\":");
    json.number(message.project_id);
    json.optional_string(b",\"environment\":", message.environment);
    json.optional_string(b",\"release\":", message.release);
    json.optional_string(b",\"client_ip\":", message.client_ip);
    json.optional_string(b",\"request_user_agent\":", message.request_user_agent);
    json.raw(b",\"fingerprint\":");
    json.string(message.fingerprint);
    json.optional_string(b",\"noise\":", message.noise);
    json.raw(b",\"report\":");
    report(&mut json, &message.report);
    json.raw(b"}");
}

/// A [`crate::Report`] as its derived `Serialize` writes it.
fn report(json: &mut Json<'_>, report: &ReportView<'_>) {
    json.raw(b"{\"kind\":");
    json.string(report.kind.as_str());
    json.raw(b",\"wire\":");
    json.string(report.wire.as_str());
    json.optional_string(b",\"report_type\":", report.report_type);
    json.optional_string(
        b",\"disposition\":",
        report.disposition.map(Disposition::as_str),
    );
    json.optional_string(b",\"document_url\":", report.document_url);
    json.optional_string(b",\"referrer\":", report.referrer);
    json.optional_string(b",\"blocked_url\":", report.blocked_url);
    json.raw(b",\"blocked_class\":");
    json.string(BlockedClass::as_str(report.blocked_class));
    json.optional_string(b",\"effective_directive\":", report.effective_directive);
    json.optional_string(b",\"violated_directive\":", report.violated_directive);
    json.optional_string(b",\"source_file\":", report.source_file);
    json.optional_number(b",\"line_number\":", report.line_number);
    json.optional_number(b",\"column_number\":", report.column_number);
    json.optional_string(b",\"sample\":", report.sample);
    json.optional_number(b",\"status_code\":", report.status_code.map(u64::from));
    json.optional_string(b",\"original_policy\":", report.original_policy);
    json.optional_number(b",\"age_ms\":", report.age_ms);
    json.optional_string(b",\"user_agent\":", report.user_agent);
    json.raw(b",\"details\":");
    match report.details.as_ref() {
        Details::None => json.raw(b"{\"type\":\"none\"}"),
        details => serde_json::to_writer(&mut *json.0, details).expect(
            "cannot fail: writing to a Vec, map keys are strings, tagged details are objects",
        ),
    }
    if let Some(extra) = report.extra {
        json.raw(b",\"extra\":");
        json.raw(extra.get().as_bytes());
    }
    json.raw(b"}");
}

/// Appends JSON pieces to a buffer.
struct Json<'a>(&'a mut Vec<u8>);

impl Json<'_> {
    fn raw(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }

    /// `n` in decimal, as `serde_json` (itoa) writes it.
    fn number(&mut self, n: u64) {
        let mut digits = [0u8; 20];
        self.raw(crate::fingerprint::decimal(n, &mut digits));
    }

    fn optional_string(&mut self, key: &[u8], value: Option<&str>) {
        if let Some(value) = value {
            self.raw(key);
            self.string(value);
        }
    }

    fn optional_number(&mut self, key: &[u8], value: Option<u64>) {
        if let Some(value) = value {
            self.raw(key);
            self.number(value);
        }
    }

    /// `text` quoted, escaped as `serde_json` escapes: `"`, `\` and the control bytes below
    /// 0x20 (`\b \t \n \f \r` by name, the others as `\u00XX` in lowercase hex); nothing else.
    fn string(&mut self, text: &str) {
        let bytes = text.as_bytes();
        self.0.reserve(bytes.len() + 2);
        self.0.push(b'"');
        let mut clean_from = 0;
        let mut at = 0;
        while at < bytes.len() {
            if let Some(word) = bytes.get(at..at + 8) {
                let word = u64::from_le_bytes(word.try_into().expect("cannot fail: 8 bytes"));
                if !any_escaped(word) {
                    at += 8;
                    continue;
                }
            } else {
                // Fewer than 8 bytes left: one test of them padded with spaces (never escaped)
                // instead of one byte at a time; a clean tail is copied below with the rest.
                let mut tail = [b' '; 8];
                tail[..bytes.len() - at].copy_from_slice(&bytes[at..]);
                if !any_escaped(u64::from_le_bytes(tail)) {
                    break;
                }
            }
            let byte = bytes[at];
            if let Some((escape, len)) = escape(byte) {
                self.raw(&bytes[clean_from..at]);
                self.raw(&escape[..len]);
                clean_from = at + 1;
            }
            at += 1;
        }
        self.raw(&bytes[clean_from..]);
        self.0.push(b'"');
    }
}

/// Whether any of the 8 bytes of `word` is `"`, `\` or below 0x20. Exact when none is (the
/// classic "has zero byte" test never misses one and has no false positive then); a hit is
/// looked at byte by byte.
fn any_escaped(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let zero_byte = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS;
    let quote = zero_byte(word ^ (ONES * u64::from(b'"')));
    let backslash = zero_byte(word ^ (ONES * u64::from(b'\\')));
    let control = word.wrapping_sub(ONES * 0x20) & !word & HIGHS;
    quote | backslash | control != 0
}

/// The escape `serde_json` writes for `byte` (`\"`, `\\`, `\b \t \n \f \r`, else `\u00XX`
/// below 0x20) and its length, `None` when the byte is written as is.
fn escape(byte: u8) -> Option<([u8; 6], usize)> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let short = |letter: u8| Some(([b'\\', letter, 0, 0, 0, 0], 2));
    match byte {
        b'"' | b'\\' => short(byte),
        0x08 => short(b'b'),
        0x0c => short(b'f'),
        b'\n' => short(b'n'),
        b'\r' => short(b'r'),
        b'\t' => short(b't'),
        0x00..=0x1f => {
            let (high, low) = (HEX[usize::from(byte >> 4)], HEX[usize::from(byte & 0xf)]);
            Some(([b'\\', b'u', b'0', b'0', high, low], 6))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::ReportMessage;
    use crate::report::Report;
    use crate::test_corpus::reports;

    fn message(report: Report, optional: Option<&str>) -> ReportMessage {
        let text = optional.map(str::to_owned);
        ReportMessage {
            environment: text.clone(),
            release: text.clone(),
            client_ip: text.clone(),
            request_user_agent: text.clone(),
            noise: text,
            ..ReportMessage::new(
                "0193a1f0-0000-7000-8000-000000000000".into(),
                1_700_000_000_000,
                u64::MAX,
                report,
            )
        }
    }

    fn serde_bytes(message: &ReportMessage) -> Vec<u8> {
        serde_json::to_vec(message).expect("serialises")
    }

    #[test]
    fn same_bytes_as_serde_json() {
        let reports = reports();
        assert!(reports.len() > 3000, "{} reports", reports.len());
        let kinds: std::collections::HashSet<_> = reports.iter().map(|r| r.kind).collect();
        assert!(kinds.len() > 8, "every kind of the fixtures: {kinds:?}");
        for report in reports {
            for optional in [None, Some("prod \"eu\"\n")] {
                let message = message(report.clone(), optional);
                let ours = message.encode();
                assert_eq!(
                    String::from_utf8_lossy(&ours),
                    String::from_utf8_lossy(&serde_bytes(&message))
                );
            }
        }
    }

    #[test]
    fn escapes_as_serde_json() {
        let mut report = reports().remove(0);
        let every_ascii: String = (0u8..=0x7f).map(char::from).collect();
        let texts = [
            String::new(),
            every_ascii.clone(),
            every_ascii.repeat(3)[5..].to_owned(),
            "h\u{e9}llo \u{1F600} \"q\" \\ \u{7f}\u{80}\u{2028}".to_owned(),
            "12345678\"".to_owned(),
            "1234567\u{1f}x".to_owned(),
        ];
        for text in texts {
            report.document_url = Some(text.clone());
            report.sample = Some(format!("{text}{text}"));
            report.line_number = Some(0);
            report.status_code = Some(u16::MAX);
            let message = message(report.clone(), Some(&text));
            assert_eq!(message.encode(), serde_bytes(&message), "{text:?}");
        }
    }

    #[test]
    fn the_word_test_finds_every_escaped_byte() {
        for escaped in (0u8..0x20).chain([b'"', b'\\']) {
            for at in 0..8 {
                let mut word = *b"abcdefgh";
                word[at] = escaped;
                assert!(any_escaped(u64::from_le_bytes(word)), "{escaped} at {at}");
            }
        }
        for clean in (0x20u8..=0xff).filter(|b| !matches!(b, b'"' | b'\\')) {
            assert!(!any_escaped(u64::from_le_bytes([clean; 8])), "{clean}");
        }
    }
}
