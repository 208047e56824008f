//! Chrome/Safari XSS Auditor reports: `{"xss-report": {"request-url", "request-body"}}`.
//!
//! The auditor is gone from every browser, but bots and old clients still replay these.

use simd_json::borrowed::Object;

use super::blank;
use super::fields::Fields;
use crate::report::{Report, ReportKind, WireFormat};

/// Parses the value of `xss-report`.
pub(crate) fn parse(object: &Object<'_>) -> Report {
    let mut fields = Fields::new(object);
    let mut report = blank(ReportKind::XssAuditor, WireFormat::XssAuditor);
    report.document_url = fields.string(&["requesturl", "documenturi", "documenturl"]);
    report.extra.absorb(fields.into_map());
    report
}
