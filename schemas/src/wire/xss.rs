//! Chrome/Safari XSS Auditor reports: `{"xss-report": {"request-url", "request-body"}}`.
//!
//! The auditor is gone from every browser, but bots and old clients still replay these.

use super::fields::Fields;
use super::json::Members;
use crate::parse::ParsedReport;
use crate::report::{ReportKind, WireFormat};

/// Parses the value of `xss-report`.
pub(crate) fn parse<'v>(object: Members<'_, 'v>) -> ParsedReport<'v> {
    let mut fields = Fields::new(object);
    let mut report = ParsedReport::blank(ReportKind::XssAuditor, WireFormat::XssAuditor);
    report.document_url = fields.text(&["requesturl", "documenturi", "documenturl"]);
    report.extra.absorb(fields.into_map());
    report
}
