//! The stable fingerprint of "the same violation", and the dedup key that routes it in Kafka.
//!
//! # Canonical encoding (version 1)
//!
//! The fingerprint is `xxh3_64` (seed 0) of a byte string built as:
//!
//! 1. the ASCII tag `palisade-fp-v1`;
//! 2. `project_id` as 8 bytes little-endian;
//! 3. a sequence of fields, each a one-byte field number followed by either `0xFF` (absent) or
//!    `0x00`, the value's length as 4 bytes little-endian and its UTF-8 bytes (integers are
//!    written in decimal). Length prefixes make the encoding unambiguous.
//!
//! Fields, by kind:
//!
//! - every kind: 1 `kind` ([`ReportKind::as_str`]); 2 `report_type`, only for `Unknown`.
//! - certificate kinds (Expect-CT, HPKP, Expect-Staple): 3 hostname (lowercase), 4 port.
//! - NEL: 5 the URL's origin and path (no query, no fragment), 6 phase, 7 error type.
//! - everything else (CSP, XSS Auditor, the other Reporting API types): 8 disposition,
//!   9 effective directive, 10 blocked origin ([`crate::blocked::origin_key`]: `scheme://host[:port]`
//!   for URLs, the class keyword otherwise), 11 document URL without query and fragment,
//!   12 source file without query and fragment, 13 line, 14 column, 15 subject: the first of
//!   `id`, `policyId`, `featureId`, `type`, `reason` found in [`Details::Fields`] (what a
//!   deprecation, permissions-policy, coep/coop or crash report is *about*).
//!
//! Changing any of this changes every fingerprint: that is a breaking change of the message
//! format (bump [`crate::MESSAGE_VERSION`]). `tests::pinned_values` guards it.

use xxhash_rust::xxh3::xxh3_64;

use crate::blocked::{origin_key, strip_query};
use crate::plain_url;
use crate::report::{BlockedClass, Details, Report, ReportKind};
use crate::view::ReportView;

const TAG: &[u8] = b"palisade-fp-v1";

/// Keys of [`Details::Fields`] that name what a non-CSP report is about, in priority order.
const SUBJECT_KEYS: &[&str] = &["id", "policyId", "featureId", "type", "reason"];

struct Encoder(Vec<u8>);

impl Encoder {
    fn field(&mut self, number: u8, value: Option<&str>) {
        self.bytes(number, value.map(str::as_bytes));
    }

    fn bytes(&mut self, number: u8, value: Option<&[u8]>) {
        self.0.push(number);
        match value {
            None => self.0.push(0xFF),
            Some(value) => {
                self.0.push(0x00);
                // Values come from bodies bounded far below 4 GiB; saturate rather than wrap.
                let len = u32::try_from(value.len()).unwrap_or(u32::MAX);
                self.0.extend_from_slice(&len.to_le_bytes());
                self.0.extend_from_slice(value);
            }
        }
    }

    /// [`origin_key`] of a blocked resource; a plain URL's (most of them) written straight
    /// into the buffer, without the `String` `origin_key` builds: the same bytes
    /// (`tests::blocked_origin_is_origin_key`).
    fn blocked_origin(&mut self, number: u8, class: BlockedClass, url: Option<&str>) {
        let plain = match (class, url) {
            (BlockedClass::Url, Some(url)) => plain_url::split(url, false),
            _ => None,
        };
        let Some(plain) = plain else {
            return self.field(number, Some(&origin_key(class, url)));
        };
        self.0.push(number);
        self.0.push(0x00);
        // The length is known once the origin is written: its place is filled in after.
        let len_at = self.0.len();
        self.0.extend_from_slice(&[0; 4]);
        plain.push_origin(&mut self.0);
        let len = u32::try_from(self.0.len() - len_at - 4).unwrap_or(u32::MAX);
        self.0[len_at..len_at + 4].copy_from_slice(&len.to_le_bytes());
    }

    /// `value` in decimal, formatted on the stack (the same bytes as `to_string`, without an
    /// allocation per field).
    fn number(&mut self, number: u8, value: Option<u64>) {
        let Some(n) = value else {
            return self.bytes(number, None);
        };
        let mut digits = [0u8; 20];
        self.bytes(number, Some(decimal(n, &mut digits)));
    }
}

/// Stable 64-bit fingerprint of a report for a project. Stable across releases: changing the
/// inputs or the hash is a breaking change of the message format.
pub fn fingerprint(project_id: u64, report: &Report) -> u64 {
    fingerprint_view(project_id, &report.view())
}

/// [`fingerprint`] of a borrowed report (ingest's parsed reports).
pub fn fingerprint_view(project_id: u64, report: &ReportView<'_>) -> u64 {
    let mut enc = Encoder(Vec::with_capacity(256));
    enc.0.extend_from_slice(TAG);
    enc.0.extend_from_slice(&project_id.to_le_bytes());
    enc.field(1, Some(report.kind.as_str()));
    if report.kind == ReportKind::Unknown {
        enc.field(2, report.report_type);
    }
    match (&*report.details, report.kind) {
        (Details::Certificate(cert), _) => {
            enc.field(3, Some(&cert.hostname.to_ascii_lowercase()));
            enc.number(4, cert.port.map(u64::from));
        }
        (details, ReportKind::NetworkError) => {
            enc.field(5, report.document_url.map(strip_query));
            let nel = match details {
                Details::NetworkError(nel) => Some(nel),
                _ => None,
            };
            enc.field(6, nel.and_then(|n| n.phase.as_deref()));
            enc.field(7, nel.and_then(|n| n.error_type.as_deref()));
        }
        (details, _) => {
            enc.field(8, report.disposition.map(|d| d.as_str()));
            enc.field(9, report.effective_directive);
            enc.blocked_origin(10, report.blocked_class, report.blocked_url);
            enc.field(11, report.document_url.map(strip_query));
            enc.field(12, report.source_file.map(strip_query));
            enc.number(13, report.line_number);
            enc.number(14, report.column_number);
            let subject = match details {
                Details::Fields(fields) => SUBJECT_KEYS
                    .iter()
                    .find_map(|key| fields.get(*key))
                    .map(|value| match value {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    }),
                _ => None,
            };
            enc.field(15, subject.as_deref());
        }
    }
    xxh3_64(&enc.0)
}

/// The key reports are deduplicated by downstream: same fingerprint from the same client.
/// `xxh3_64` of the fingerprint's 8 little-endian bytes followed by the client's bytes.
pub fn dedup_key(fingerprint: u64, client: &str) -> u64 {
    // The client is an IP address's text (at most 45 bytes) or its hash (64 hex digits): the
    // bytes fit on the stack, without an allocation per report; a longer client gets one.
    let mut stack = [0u8; 8 + 64];
    let bytes = match stack.get_mut(..8 + client.len()) {
        Some(bytes) => bytes,
        None => return xxh3_64(&[&fingerprint.to_le_bytes()[..], client.as_bytes()].concat()),
    };
    bytes[..8].copy_from_slice(&fingerprint.to_le_bytes());
    bytes[8..].copy_from_slice(client.as_bytes());
    xxh3_64(bytes)
}

/// `n` in decimal (the bytes of `n.to_string()` and of serde_json's itoa), written into `digits`
/// (a `u64` has at most 20 decimal digits) without an allocation.
pub fn decimal(mut n: u64, digits: &mut [u8; 20]) -> &[u8] {
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &digits[start..]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ParseLimits, Parser};

    fn parse_one(body: &str) -> Report {
        let mut bytes = body.as_bytes().to_vec();
        let mut parsed = Parser::new(ParseLimits::default())
            .parse(&mut bytes)
            .expect("valid body");
        parsed.items.remove(0).expect("valid report")
    }

    fn csp(document: &str, blocked: &str, source: &str) -> Report {
        parse_one(&format!(
            r#"{{"csp-report":{{"document-uri":"{document}","blocked-uri":"{blocked}",
            "effective-directive":"script-src-elem","violated-directive":"script-src-elem",
            "disposition":"enforce","source-file":"{source}","line-number":3,"column-number":7}}}}"#
        ))
    }

    /// Guards the canonical encoding: if one of these changes, every stored fingerprint and
    /// dedup key changes with it (a breaking change of the message format).
    #[test]
    fn pinned_values() {
        let report = csp(
            "https://site.example/p",
            "https://cdn.example/a.js",
            "https://site.example/app.js",
        );
        assert_eq!(fingerprint(42, &report), 0x07c3_ddb5_baea_4c08);
        let nel = parse_one(
            r#"[{"type":"network-error","age":1,"url":"https://site.example/x?q=1","body":
            {"phase":"connection","type":"tcp.timed_out","status_code":0}}]"#,
        );
        assert_eq!(fingerprint(42, &nel), 0x1fd1_6b65_ca6d_d7db);
        let hpkp = parse_one(r#"{"hostname":"Site.example","port":443,"known-pins":[]}"#);
        assert_eq!(fingerprint(42, &hpkp), 0x5ce4_6904_7f5c_5a0b);
        assert_eq!(
            dedup_key(0x0123_4567_89ab_cdef, "192.0.2.1"),
            0xf222_ea02_a421_bdd5
        );
    }

    #[test]
    fn query_strings_and_fragments_do_not_matter() {
        let a = csp(
            "https://site.example/p?a=1#x",
            "https://cdn.example/a.js?v=1",
            "https://site.example/app.js?v=2",
        );
        let b = csp(
            "https://site.example/p?a=2",
            "https://cdn.example/b.js",
            "https://site.example/app.js?v=3#y",
        );
        assert_eq!(fingerprint(1, &a), fingerprint(1, &b));
    }

    #[test]
    fn what_matters_does() {
        let base = csp(
            "https://site.example/p",
            "https://cdn.example/a.js",
            "https://site.example/app.js",
        );
        let fp = fingerprint(1, &base);
        assert_ne!(fp, fingerprint(2, &base), "project");
        assert_ne!(
            fp,
            fingerprint(
                1,
                &csp(
                    "https://site.example/q",
                    "https://cdn.example/a.js",
                    "https://site.example/app.js"
                )
            ),
            "document path"
        );
        assert_ne!(
            fp,
            fingerprint(
                1,
                &csp(
                    "https://site.example/p",
                    "https://other.example/a.js",
                    "https://site.example/app.js"
                )
            ),
            "blocked origin"
        );
        assert_ne!(
            fp,
            fingerprint(
                1,
                &csp(
                    "https://site.example/p",
                    "inline",
                    "https://site.example/app.js"
                )
            ),
            "blocked class"
        );
        let mut report = base.clone();
        report.line_number = Some(4);
        assert_ne!(fp, fingerprint(1, &report), "line");
        let mut report = base.clone();
        report.disposition = Some(crate::Disposition::Report);
        assert_ne!(fp, fingerprint(1, &report), "disposition");
        let mut report = base;
        report.user_agent = Some("other".into());
        report.age_ms = Some(5);
        assert_eq!(
            fp,
            fingerprint(1, &report),
            "per-delivery fields are not part of it"
        );
    }

    /// Guards the blocked origin written without `origin_key`'s `String`: the same bytes as
    /// the field of `origin_key`'s answer, for every blocked URL of the corpora and fixtures
    /// and for URLs that are not plain or not URLs, in every class.
    #[test]
    fn blocked_origin_is_origin_key() {
        let mut urls: Vec<String> = crate::test_corpus::reports()
            .into_iter()
            .filter_map(|report| report.blocked_url)
            .collect();
        let plain = urls.len();
        urls.extend(
            [
                "HTTPS://CDN.Example:443/a.js?x=1",
                "http://cdn.example:8080",
                "wss://A.example:444/x",
                "http://45.55.25.245/",
                "https://xn--bcher-kva.example/",
                "https://user@a.example/",
                "http://a.example:0/",
                "inline",
                "data:",
                "",
            ]
            .map(String::from),
        );
        assert!(plain > 1_000, "{plain} blocked URLs in the corpora");
        let classes = [
            BlockedClass::Url,
            BlockedClass::Extension,
            BlockedClass::OtherScheme,
            BlockedClass::SelfOrigin,
            BlockedClass::Inline,
        ];
        for url in urls.iter().map(|url| Some(url.as_str())).chain([None]) {
            for class in classes {
                let mut fast = Encoder(Vec::new());
                fast.blocked_origin(10, class, url);
                let mut reference = Encoder(Vec::new());
                reference.field(10, Some(&origin_key(class, url)));
                assert_eq!(fast.0, reference.0, "{class:?} {url:?}");
            }
        }
    }

    /// Guards the stack formatting of numbers: the same bytes as `to_string`.
    #[test]
    fn numbers_are_decimal() {
        for n in [0, 7, 10, 99, 12_345, u64::from(u32::MAX), u64::MAX] {
            let mut stack = Encoder(Vec::new());
            stack.number(13, Some(n));
            let mut text = Encoder(Vec::new());
            text.field(13, Some(&n.to_string()));
            assert_eq!(stack.0, text.0, "{n}");
        }
    }

    #[test]
    fn dedup_key_is_the_hash_of_the_fingerprint_and_the_client_whatever_their_length() {
        for len in [0, 1, 45, 63, 64, 65, 200] {
            let client = "c".repeat(len);
            let mut bytes = 7u64.to_le_bytes().to_vec();
            bytes.extend_from_slice(client.as_bytes());
            assert_eq!(dedup_key(7, &client), xxh3_64(&bytes), "{len}");
        }
    }

    #[test]
    fn dedup_key_depends_on_both() {
        assert_ne!(dedup_key(1, "a"), dedup_key(1, "b"));
        assert_ne!(dedup_key(1, "a"), dedup_key(2, "a"));
        assert_eq!(dedup_key(1, "a"), dedup_key(1, "a"));
    }
}
