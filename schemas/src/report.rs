//! The normalised report: one model for every kind of browser security report.
//!
//! Parsers in [`crate::wire`] turn each wire format into a [`Report`]; everything downstream
//! (filters, the Kafka message, the processor) works on this type only.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use crate::extra::Extra;

/// What kind of report this is, whichever wire format carried it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReportKind {
    /// CSP violation (legacy `report-uri` or Reporting API `csp-violation`).
    CspViolation,
    /// Network Error Logging (`network-error`).
    NetworkError,
    Deprecation,
    Intervention,
    Crash,
    Coep,
    Coop,
    PermissionsPolicyViolation,
    PotentialPermissionsPolicyViolation,
    DocumentPolicyViolation,
    IntegrityViolation,
    /// Reporting API `test` report (DevTools "Generate test report").
    Test,
    /// RFC 9163 Expect-CT failure.
    ExpectCt,
    /// RFC 7469 HPKP failure (`Public-Key-Pins` and `-Report-Only` send the same body).
    Hpkp,
    /// Chrome's Expect-Staple experiment.
    ExpectStaple,
    /// Chrome/Safari XSS Auditor (dead, still replayed).
    XssAuditor,
    /// A Reporting API `type` we do not know: kept with its body.
    Unknown,
}

impl ReportKind {
    /// Stable label for metrics and the ClickHouse `kind` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CspViolation => "csp-violation",
            Self::NetworkError => "network-error",
            Self::Deprecation => "deprecation",
            Self::Intervention => "intervention",
            Self::Crash => "crash",
            Self::Coep => "coep",
            Self::Coop => "coop",
            Self::PermissionsPolicyViolation => "permissions-policy-violation",
            Self::PotentialPermissionsPolicyViolation => "potential-permissions-policy-violation",
            Self::DocumentPolicyViolation => "document-policy-violation",
            Self::IntegrityViolation => "integrity-violation",
            Self::Test => "test",
            Self::ExpectCt => "expect-ct",
            Self::Hpkp => "hpkp",
            Self::ExpectStaple => "expect-staple",
            Self::XssAuditor => "xss-auditor",
            Self::Unknown => "unknown",
        }
    }

    /// Every kind, for metric pre-registration and exhaustive tests.
    pub const ALL: [ReportKind; 17] = [
        Self::CspViolation,
        Self::NetworkError,
        Self::Deprecation,
        Self::Intervention,
        Self::Crash,
        Self::Coep,
        Self::Coop,
        Self::PermissionsPolicyViolation,
        Self::PotentialPermissionsPolicyViolation,
        Self::DocumentPolicyViolation,
        Self::IntegrityViolation,
        Self::Test,
        Self::ExpectCt,
        Self::Hpkp,
        Self::ExpectStaple,
        Self::XssAuditor,
        Self::Unknown,
    ];
}

/// Which wire format carried the report (useful to analysts and for debugging quirks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WireFormat {
    /// `{"csp-report": {...}}` from `report-uri`.
    LegacyCsp,
    /// Legacy CSP keys at the top level, without the wrapper (old WebKit, proxies).
    LegacyCspUnwrapped,
    /// One item of a Reporting API JSON array.
    ReportingBatch,
    /// A single Reporting API object (Safari 16.4+).
    ReportingSingle,
    ExpectCt,
    Hpkp,
    ExpectStaple,
    XssAuditor,
}

impl WireFormat {
    /// The serde name (`legacy-csp`), without serde: the JSON message and the ClickHouse `wire`
    /// column write it per report.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LegacyCsp => "legacy-csp",
            Self::LegacyCspUnwrapped => "legacy-csp-unwrapped",
            Self::ReportingBatch => "reporting-batch",
            Self::ReportingSingle => "reporting-single",
            Self::ExpectCt => "expect-ct",
            Self::Hpkp => "hpkp",
            Self::ExpectStaple => "expect-staple",
            Self::XssAuditor => "xss-auditor",
        }
    }
}

/// Enforced or only reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Disposition {
    Enforce,
    Report,
}

/// What a blocked URL really is: CSP reduces many things to keywords or bare schemes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BlockedClass {
    /// An http(s)/ws(s) URL.
    Url,
    Inline,
    Eval,
    WasmEval,
    Data,
    Blob,
    /// The document's own origin (`self`, `'self'`, empty, or missing).
    SelfOrigin,
    /// A browser-extension scheme (chrome-extension, moz-extension, safari-extension, ...).
    Extension,
    TrustedTypesPolicy,
    TrustedTypesSink,
    /// Any other non-http scheme (`about`, `filesystem`, `android-webview`, ...).
    OtherScheme,
    /// Nothing was blocked or the report kind has no blocked URL.
    None,
}

impl BlockedClass {
    /// Stable keyword (same as the serde name) for grouping, metrics and ClickHouse.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Url => "url",
            Self::Inline => "inline",
            Self::Eval => "eval",
            Self::WasmEval => "wasm-eval",
            Self::Data => "data",
            Self::Blob => "blob",
            Self::SelfOrigin => "self-origin",
            Self::Extension => "extension",
            Self::TrustedTypesPolicy => "trusted-types-policy",
            Self::TrustedTypesSink => "trusted-types-sink",
            Self::OtherScheme => "other-scheme",
            Self::None => "none",
        }
    }
}

impl Disposition {
    /// Stable label (`enforce` or `report`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enforce => "enforce",
            Self::Report => "report",
        }
    }
}

/// Upper bound of [`Report::age_ms`]: 24 hours. Reporting API uploads are retried for minutes,
/// not days; a larger `age` is a broken clock or a replay, and an unbounded one would let a
/// client place its event time anywhere in the past.
pub const MAX_AGE_MS: u64 = 24 * 60 * 60 * 1000;

/// What a [`Report`]'s JSON holds besides its strings, `details` and `extra` text, at most:
/// every field name with its quotes, colon and comma, the quotes of every string, numbers at 20
/// digits, keywords at their longest, `"details":{"type":"none"}`, braces (about 600 bytes;
/// `tests::json_len_bound_is_an_upper_bound` checks the worst case).
pub const FIXED_JSON_BYTES: usize = 1024;

/// One normalised browser security report.
///
/// Common fields are first-class; kind-specific fields live in [`Details`]. Fields the browser
/// sent that we do not model are kept in `extra` so nothing is lost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub kind: ReportKind,
    pub wire: WireFormat,
    /// The Reporting API `type` as sent (for `Unknown` this is the only way to know it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disposition: Option<Disposition>,
    /// The document the report is about (CSP `document-uri`/`documentURL`, Reporting API `url`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referrer: Option<String>,
    /// The blocked URL, normalised (`'self'` etc. kept as the class).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked_url: Option<String>,
    pub blocked_class: BlockedClass,
    /// Effective directive, derived from `violated-directive` when missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_directive: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub violated_directive: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line_number: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column_number: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_policy: Option<String>,
    /// Milliseconds between generation and upload (Reporting API `age`), clamped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age_ms: Option<u64>,
    /// The per-report `user_agent` of the Reporting API (more precise than the request header).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    pub details: Details,
    /// Fields the browser sent that the model does not name, preserved verbatim as the JSON text
    /// of one object (not a parsed tree, so what it costs to hold is its length).
    #[serde(default, skip_serializing_if = "Extra::is_empty")]
    pub extra: Extra,
}

impl Report {
    /// Length in bytes of this report's JSON (as it appears inside the Kafka message), without
    /// building it: the size ingest's `max_report_bytes` cap is checked against.
    pub fn json_len(&self) -> usize {
        let mut counter = crate::extra::ByteCounter::default();
        // Writing to a counter cannot fail: map keys are strings, tagged details are objects.
        let _ = serde_json::to_writer(&mut counter, self);
        counter.bytes()
    }

    /// An upper bound of [`Report::json_len`] that does not serialise the common strings: each
    /// of their bytes counted as 6 (serde_json's longest escape, `\u00XX`), field names, numbers
    /// and keywords as [`FIXED_JSON_BYTES`], `extra` as its text; only non-`None` details are
    /// serialised. The parser checks the exact length only when this bound is over the cap.
    pub fn json_len_bound(&self) -> usize {
        self.view().json_len_bound()
    }

    /// Estimated heap bytes held by this report once decoded (strings, the `extra` text and
    /// the `details` tree, node by node). Deterministic: the same report always gives the same
    /// figure, so a bound on it behaves the same on a replay.
    pub fn heap_bytes(&self) -> usize {
        let strings = [
            &self.report_type,
            &self.document_url,
            &self.referrer,
            &self.blocked_url,
            &self.effective_directive,
            &self.violated_directive,
            &self.source_file,
            &self.sample,
            &self.original_policy,
            &self.user_agent,
        ];
        let text: usize = strings
            .iter()
            .map(|s| s.as_ref().map_or(0, String::len))
            .sum();
        text + self.extra.len() + self.details.heap_bytes()
    }
}

/// Kind-specific fields.
///
/// Serialised internally tagged, `{"type": "<variant>", ...}`. The map of `Fields` and the
/// body of `Unknown` are nested under `fields` and `body`: flattened, a body's own `type` key
/// (coep, coop) would collide with the tag, and an unknown body that is not an object could
/// not be serialised at all.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Details {
    /// CSP, XSS Auditor and other kinds whose fields are all common ones.
    None,
    Certificate(CertificateDetails),
    NetworkError(NetworkErrorDetails),
    /// deprecation, intervention, permissions/document policy, coop, coep, crash, integrity: the
    /// named fields of their bodies that are not common ones. `{"type": "fields", "fields": {..}}`.
    Fields(#[serde(with = "nested_fields")] Map<String, Value>),
    /// An unknown Reporting API type: its whole body. `{"type": "unknown", "body": ..}`.
    Unknown(#[serde(with = "nested_body")] Value),
}

impl Details {
    /// Estimated heap bytes of the details (see [`Report::heap_bytes`]).
    pub fn heap_bytes(&self) -> usize {
        use crate::extra::{map_heap_bytes, value_heap_bytes};
        let opt = |s: &Option<String>| s.as_ref().map_or(0, String::len);
        match self {
            Self::None => 0,
            Self::Fields(fields) => map_heap_bytes(fields),
            Self::Unknown(body) => value_heap_bytes(body),
            Self::NetworkError(nel) => {
                opt(&nel.phase)
                    + opt(&nel.error_type)
                    + opt(&nel.server_ip)
                    + opt(&nel.method)
                    + opt(&nel.protocol)
            }
            Self::Certificate(cert) => {
                let list = |items: &[String]| {
                    items
                        .iter()
                        .map(|s| s.len() + std::mem::size_of::<String>())
                        .sum::<usize>()
                };
                cert.hostname.len()
                    + opt(&cert.date_time)
                    + opt(&cert.effective_expiration_date)
                    + opt(&cert.noted_hostname)
                    + opt(&cert.response_status)
                    + opt(&cert.cert_status)
                    + list(&cert.served_certificate_chain)
                    + list(&cert.validated_certificate_chain)
                    + list(&cert.known_pins)
                    + cert.scts.iter().map(value_heap_bytes).sum::<usize>()
            }
        }
    }
}

/// `Details::Fields` as `{"fields": {...}}` inside the tagged object.
mod nested_fields {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use serde_json::{Map, Value};

    #[derive(Serialize)]
    struct Out<'a> {
        fields: &'a Map<String, Value>,
    }

    #[derive(Deserialize)]
    struct In {
        #[serde(default)]
        fields: Map<String, Value>,
    }

    pub fn serialize<S: Serializer>(fields: &Map<String, Value>, s: S) -> Result<S::Ok, S::Error> {
        Out { fields }.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Map<String, Value>, D::Error> {
        In::deserialize(d).map(|nested| nested.fields)
    }
}

/// `Details::Unknown` as `{"body": ...}` inside the tagged object.
mod nested_body {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use serde_json::Value;

    #[derive(Serialize)]
    struct Out<'a> {
        body: &'a Value,
    }

    #[derive(Deserialize)]
    struct In {
        #[serde(default)]
        body: Value,
    }

    pub fn serialize<S: Serializer>(body: &Value, s: S) -> Result<S::Ok, S::Error> {
        Out { body }.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
        In::deserialize(d).map(|nested| nested.body)
    }
}

/// Expect-CT, HPKP and Expect-Staple failure details.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CertificateDetails {
    pub hostname: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_expiration_date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_subdomains: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noted_hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub served_certificate_chain: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub validated_certificate_chain: Vec<String>,
    /// HPKP `known-pins` entries as sent (`pin-sha256="..."`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub known_pins: Vec<String>,
    /// Expect-CT SCTs, each `{version, status, source, serialized_sct}` as sent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scts: Vec<Value>,
    /// Expect-Staple `response-status`, `cert-status`, `ocsp-response`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_status: Option<String>,
}

/// Network Error Logging body (snake_case on the wire).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct NetworkErrorDetails {
    /// `dns`, `connection` or `application`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// e.g. `tcp.timed_out`, `http.error`, `ok`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elapsed_time_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampling_fraction: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// `WireFormat::as_str` is the serde name, for every variant (`binary::WIRES` holds them
    /// all: `binary::tests::tables_hold_every_variant`).
    #[test]
    fn wire_names_are_the_serde_names() {
        for wire in crate::binary::WIRES {
            assert_eq!(json!(wire), json!(wire.as_str()));
        }
    }

    /// The parser skips the exact size check when the bound is under the cap: the bound must
    /// never be below the exact length, whatever the keywords, numbers and string contents.
    #[test]
    fn json_len_bound_is_an_upper_bound() {
        let worst = "\u{1}".repeat(50);
        let some = || Some(worst.clone());
        for kind in crate::binary::KINDS {
            for wire in crate::binary::WIRES {
                for blocked_class in crate::binary::CLASSES {
                    for disposition in [None, Some(Disposition::Enforce), Some(Disposition::Report)]
                    {
                        let mut report = Report {
                            kind,
                            wire,
                            report_type: some(),
                            disposition,
                            document_url: some(),
                            referrer: some(),
                            blocked_url: some(),
                            blocked_class,
                            effective_directive: some(),
                            violated_directive: some(),
                            source_file: some(),
                            line_number: Some(u64::MAX),
                            column_number: Some(u64::MAX),
                            sample: some(),
                            status_code: Some(u16::MAX),
                            original_policy: some(),
                            age_ms: Some(u64::MAX),
                            user_agent: some(),
                            details: Details::None,
                            extra: Extra::from(
                                json!({"x": worst.clone()})
                                    .as_object()
                                    .cloned()
                                    .unwrap_or_default(),
                            ),
                        };
                        assert!(report.json_len_bound() >= report.json_len(), "{report:?}");
                        // Every string empty: the fixed part alone.
                        for field in [
                            &mut report.report_type,
                            &mut report.document_url,
                            &mut report.referrer,
                            &mut report.blocked_url,
                            &mut report.effective_directive,
                            &mut report.violated_directive,
                            &mut report.source_file,
                            &mut report.sample,
                            &mut report.original_policy,
                            &mut report.user_agent,
                        ] {
                            *field = Some(String::new());
                        }
                        report.details = Details::NetworkError(NetworkErrorDetails {
                            phase: Some(worst.clone()),
                            ..Default::default()
                        });
                        assert!(report.json_len_bound() >= report.json_len(), "{report:?}");
                    }
                }
            }
        }
    }

    /// Regression: a body's own `type` key (coep, coop) must not collide with the tag, and an
    /// unknown body that is not an object must serialise (it used to make `encode` panic).
    #[test]
    fn details_round_trip_whatever_the_body() {
        let cases = [
            Details::None,
            Details::Fields(
                json!({"type": "corp", "id": 1})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            ),
            Details::Unknown(json!([1, "x", null])),
            Details::Unknown(Value::Null),
            Details::Unknown(json!({"type": "inner"})),
            Details::NetworkError(NetworkErrorDetails {
                phase: Some("dns".into()),
                ..Default::default()
            }),
            Details::Certificate(CertificateDetails {
                hostname: "a.example".into(),
                ..Default::default()
            }),
        ];
        for details in cases {
            let text = serde_json::to_string(&details).expect("serialises");
            let back: Details = serde_json::from_str(&text).expect("deserialises");
            assert_eq!(back, details, "{text}");
        }
        assert_eq!(
            serde_json::to_value(Details::Fields(Map::new())).expect("serialises"),
            json!({"type": "fields", "fields": {}})
        );
        assert_eq!(
            serde_json::to_value(Details::NetworkError(NetworkErrorDetails::default()))
                .expect("serialises"),
            json!({"type": "network-error"})
        );
    }
}
