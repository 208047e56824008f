//! The normalised report: one model for every kind of browser security report.
//!
//! Parsers in [`crate::wire`] turn each wire format into a [`Report`]; everything downstream
//! (filters, the Kafka message, the processor) works on this type only.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

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
    /// Fields the browser sent that the model does not name, preserved verbatim.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub extra: Map<String, Value>,
}

/// Kind-specific fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Details {
    /// CSP, XSS Auditor and other kinds whose fields are all common ones.
    None,
    Certificate(CertificateDetails),
    NetworkError(NetworkErrorDetails),
    /// deprecation, intervention, permissions/document policy, coop, coep, crash, integrity: the
    /// named fields of their bodies that are not common ones.
    Fields(Map<String, Value>),
    /// An unknown Reporting API type: its whole body.
    Unknown(Value),
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
