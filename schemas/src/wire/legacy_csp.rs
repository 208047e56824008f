//! Legacy CSP reports (`report-uri`): `{"csp-report": {...}}` or the same keys unwrapped.
//!
//! The CSP field mapping here is shared with Reporting API `csp-violation` bodies, whose keys
//! are the camelCase renames of the same fields.

use simd_json::borrowed::Object;

use super::fields::Fields;
use super::{blank, keys, take_blocked, take_common};
use crate::directive;
use crate::parse::ReportError;
use crate::report::{BlockedClass, Report, ReportKind, WireFormat};

/// Parses the object holding the CSP keys (the value of `csp-report`, or the whole body when
/// unwrapped).
pub(crate) fn parse(object: &Object<'_>, wire: WireFormat) -> Result<Report, ReportError> {
    let mut fields = Fields::new(object);
    let mut report = blank(ReportKind::CspViolation, wire);
    take_csp(&mut fields, &mut report)?;
    if report.document_url.is_none() {
        // Old Firefox (X-Content-Security-Policy era) sent `request: "GET <url> HTTP/1.1"`
        // instead of `document-uri`.
        if let Some(request) = fields.string(&["request"]) {
            report.document_url = Some(request_target(&request).to_owned());
        }
    }
    report.extra.absorb(fields.into_map());
    Ok(report)
}

/// Takes every CSP field into `report` and derives the effective directive, which must be a
/// known one. A missing blocked URI means the document's own origin (Relay does the same).
pub(crate) fn take_csp(
    fields: &mut Fields<'_, '_>,
    report: &mut Report,
) -> Result<(), ReportError> {
    take_common(fields, report);
    take_blocked(fields, report, BlockedClass::SelfOrigin);
    let violated = fields.string(keys::VIOLATED);
    let effective = fields.string(keys::EFFECTIVE);
    report.effective_directive = Some(directive::effective(
        effective.as_deref(),
        violated.as_deref(),
    )?);
    report.violated_directive = violated;
    Ok(())
}

/// The URL of an HTTP request line (`GET http://a.example/ HTTP/1.1`), or the value as is.
fn request_target(request: &str) -> &str {
    let mut tokens = request.split_ascii_whitespace();
    match (tokens.next(), tokens.next(), tokens.next(), tokens.next()) {
        (Some(method), Some(target), Some(version), None)
            if method.bytes().all(|b| b.is_ascii_uppercase()) && version.starts_with("HTTP/") =>
        {
            target
        }
        _ => request,
    }
}

#[cfg(test)]
mod tests {
    use super::request_target;

    #[test]
    fn request_line_target() {
        assert_eq!(
            request_target("GET http://a.example/x?y=1 HTTP/1.1"),
            "http://a.example/x?y=1"
        );
        assert_eq!(request_target("http://a.example/"), "http://a.example/");
        assert_eq!(request_target("get x HTTP/1.1"), "get x HTTP/1.1");
    }
}
