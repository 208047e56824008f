//! One module per wire format, plus the lenient field helpers they share.
//!
//! Each parser takes an already-parsed JSON object (simd-json borrowed value) and returns one
//! normalised [`ParsedReport`] (its text borrowed from the body) or a [`crate::ReportError`]; dispatch on body shape is in [`crate::parse`].

pub(crate) mod certificate;
pub(crate) mod fields;
pub(crate) mod json;
pub(crate) mod legacy_csp;
pub(crate) mod reporting;
pub(crate) mod xss;

use std::borrow::Cow;

use crate::blocked;
use crate::parse::ParsedReport;
use crate::report::{BlockedClass, Disposition};
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

/// `enforce` -> Enforce, `report`/`reporting` -> Report (any case); other values stay in extra.
pub(crate) fn take_disposition(fields: &mut Fields<'_, '_>) -> Option<Disposition> {
    fields.take_with(keys::DISPOSITION, |value| {
        let text = value.as_str()?;
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
pub(crate) fn take_common<'v>(fields: &mut Fields<'_, 'v>, report: &mut ParsedReport<'v>) {
    report.document_url = fields.text(keys::DOCUMENT);
    report.referrer = fields.text(keys::REFERRER);
    report.source_file = fields.text(keys::SOURCE);
    report.line_number = fields.u64(keys::LINE);
    report.column_number = fields.u64(keys::COLUMN);
    report.sample = fields.text(keys::SAMPLE);
    report.disposition = take_disposition(fields);
    report.status_code = fields.u16(keys::STATUS);
    report.original_policy = fields.text(keys::POLICY);
}

/// Takes the blocked URL, if any, and classifies it; `absent` is the class when it is missing.
pub(crate) fn take_blocked<'v>(
    fields: &mut Fields<'_, 'v>,
    report: &mut ParsedReport<'v>,
    absent: BlockedClass,
) {
    let (class, url) = match fields.text_keep_empty(keys::BLOCKED) {
        None => (absent, None),
        // The stored value borrows the body when it is the value as sent (trimmed).
        Some(Cow::Borrowed(raw)) => blocked::classify_text(raw),
        // A number or boolean's text (`blocked-uri: 5`): owned already.
        Some(Cow::Owned(raw)) => {
            let (class, url) = blocked::classify_text(&raw);
            (class, url.map(|url| Cow::Owned(url.into_owned())))
        }
    };
    report.blocked_class = class;
    report.blocked_url = url;
}
