//! One module per wire format, plus the lenient field helpers they share.
//!
//! Each parser takes an already-parsed JSON object (simd-json borrowed value) and returns one
//! normalised [`Report`] or a [`crate::ReportError`]; dispatch on body shape is in [`crate::parse`].

pub(crate) mod certificate;
pub(crate) mod fields;
pub(crate) mod legacy_csp;
pub(crate) mod reporting;
pub(crate) mod xss;

use crate::blocked;
use crate::report::{BlockedClass, Details, Disposition, Report, ReportKind, WireFormat};
use fields::Fields;

/// Canonical spellings (lowercase, no separators) of the keys common to CSP and most
/// Reporting API bodies. Legacy CSP is kebab-case, the Reporting API camelCase with renamed
/// keys (`documentURL`, `blockedURL`, `sample`), some relays snake_case.
pub(crate) mod keys {
    pub const DOCUMENT: &[&str] = &["documenturi", "documenturl"];
    pub const REFERRER: &[&str] = &["referrer"];
    pub const BLOCKED: &[&str] = &["blockeduri", "blockedurl"];
    pub const VIOLATED: &[&str] = &["violateddirective"];
    pub const EFFECTIVE: &[&str] = &["effectivedirective"];
    pub const POLICY: &[&str] = &["originalpolicy"];
    pub const DISPOSITION: &[&str] = &["disposition"];
    pub const STATUS: &[&str] = &["statuscode"];
    pub const SOURCE: &[&str] = &["sourcefile"];
    pub const LINE: &[&str] = &["linenumber", "lineno"];
    pub const COLUMN: &[&str] = &["columnnumber", "colno"];
    pub const SAMPLE: &[&str] = &["scriptsample", "sample"];
}

/// An empty report of `kind` carried by `wire`, to be filled in by a wire parser.
pub(crate) fn blank(kind: ReportKind, wire: WireFormat) -> Report {
    Report {
        kind,
        wire,
        report_type: None,
        disposition: None,
        document_url: None,
        referrer: None,
        blocked_url: None,
        blocked_class: BlockedClass::None,
        effective_directive: None,
        violated_directive: None,
        source_file: None,
        line_number: None,
        column_number: None,
        sample: None,
        status_code: None,
        original_policy: None,
        age_ms: None,
        user_agent: None,
        details: Details::None,
        extra: crate::report::Extra::default(),
    }
}

/// `enforce` -> Enforce, `report`/`reporting` -> Report (any case); other values stay in extra.
pub(crate) fn take_disposition(fields: &mut Fields<'_, '_>) -> Option<Disposition> {
    fields.take_with(keys::DISPOSITION, |value| {
        let text = fields::as_str(value)?;
        match text.trim().to_ascii_lowercase().as_str() {
            "enforce" => Some(Disposition::Enforce),
            "report" | "reporting" => Some(Disposition::Report),
            _ => None,
        }
    })
}

/// Takes the fields shared by CSP and the other Reporting API bodies into `report`:
/// document URL, referrer, source location, sample, disposition, status code, policy.
/// The blocked URL is left to the caller (its absence means different things per kind).
pub(crate) fn take_common(fields: &mut Fields<'_, '_>, report: &mut Report) {
    report.document_url = fields.string(keys::DOCUMENT);
    report.referrer = fields.string(keys::REFERRER);
    report.source_file = fields.string(keys::SOURCE);
    report.line_number = fields.u64(keys::LINE);
    report.column_number = fields.u64(keys::COLUMN);
    report.sample = fields.string(keys::SAMPLE);
    report.disposition = take_disposition(fields);
    report.status_code = fields.u16(keys::STATUS);
    report.original_policy = fields.string(keys::POLICY);
}

/// Takes the blocked URL, if any, and classifies it; `absent` is the class when it is missing.
pub(crate) fn take_blocked(fields: &mut Fields<'_, '_>, report: &mut Report, absent: BlockedClass) {
    match fields.string_keep_empty(keys::BLOCKED) {
        Some(raw) => {
            let (class, url) = blocked::classify(Some(&raw));
            report.blocked_class = class;
            report.blocked_url = url;
        }
        None => report.blocked_class = absent,
    }
}
