//! Legacy CSP reports (`report-uri`): `{"csp-report": {...}}` or the same keys unwrapped.
//!
//! The CSP field mapping here is shared with Reporting API `csp-violation` bodies, whose keys
//! are the camelCase renames of the same fields.

use std::borrow::Cow;

use super::fields::Fields;
use super::json::Members;
use super::{keys, take_blocked, take_common};
use crate::directive;
use crate::parse::{ParsedReport, ReportError};
use crate::report::{BlockedClass, ReportKind, WireFormat};

/// Parses the object holding the CSP keys (the value of `csp-report`, or the whole body when
/// unwrapped).
pub(crate) fn parse<'v>(
    object: Members<'_, 'v>,
    wire: WireFormat,
) -> Result<ParsedReport<'v>, ReportError> {
    let mut fields = Fields::new(object);
    let mut report = ParsedReport::blank(ReportKind::CspViolation, wire);
    take_csp(&mut fields, &mut report)?;
    if report.document_url.is_none() {
        // Old Firefox (X-Content-Security-Policy era) sent `request: "GET <url> HTTP/1.1"`
        // instead of `document-uri`.
        report.document_url = fields.text(&["request"]).map(|request| match request {
            Cow::Borrowed(request) => Cow::Borrowed(request_target(request)),
            Cow::Owned(request) => Cow::Owned(request_target(&request).to_owned()),
        });
    }
    report.extra.absorb(fields.into_map());
    Ok(report)
}

/// Takes every CSP field into `report` and derives the effective directive, which must be a
/// known one. A missing blocked URI means the document's own origin (Relay does the same).
pub(crate) fn take_csp<'v>(
    fields: &mut Fields<'_, 'v>,
    report: &mut ParsedReport<'v>,
) -> Result<(), ReportError> {
    take_common(fields, report);
    take_blocked(fields, report, BlockedClass::SelfOrigin);
    let violated = fields.text(keys::VIOLATED);
    let effective = fields.text(keys::EFFECTIVE);
    report.effective_directive = Some(effective_directive(effective.as_ref(), violated.as_ref())?);
    report.violated_directive = violated;
    Ok(())
}

/// [`directive::effective`], borrowed from the body when the token it picks is already a known
/// directive in lowercase (what browsers send): `effective` lowercases the token and checks it
/// is known, so that token is its answer. Any other token goes through it (owned).
fn effective_directive<'v>(
    effective: Option<&Cow<'v, str>>,
    violated: Option<&Cow<'v, str>>,
) -> Result<Cow<'v, str>, ReportError> {
    let first_token = |text: &Cow<'v, str>| match text {
        Cow::Borrowed(text) => text.split_ascii_whitespace().next(),
        Cow::Owned(_) => None,
    };
    // The text `effective` takes its token from: `effective-directive` unless it is blank.
    let picked = match effective {
        Some(text) if text.split_ascii_whitespace().next().is_some() => Some(text),
        _ => violated,
    };
    match picked.and_then(first_token) {
        // The known names are lowercase: a token in any other case is not one of them.
        Some(token) if directive::is_known(token) => Ok(Cow::Borrowed(token)),
        _ => directive::effective(effective.map(|s| &**s), violated.map(|s| &**s)).map(Cow::Owned),
    }
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
    use super::*;

    /// The borrowed shortcut gives what `directive::effective` gives, answer and error alike,
    /// for every pairing of these values (known and unknown, any case, blank, padded, numbers
    /// sent as text).
    #[test]
    fn effective_directive_is_what_directive_effective_gives() {
        let values = [
            None,
            Some(""),
            Some("  "),
            Some("script-src"),
            Some("script-src 'self' https:"),
            Some("  img-src\t'none'"),
            Some("Script-Src"),
            Some("STYLE-SRC x"),
            Some("bogus-src"),
            Some("script-src-elem"),
            Some("\u{e9}-src"),
            Some("frame-ancestors"),
        ];
        let mut borrowed = 0;
        for owned_text in [false, true] {
            let text = |value: Option<&'static str>| {
                value.map(|s| {
                    if owned_text {
                        Cow::Owned(s.to_owned())
                    } else {
                        Cow::Borrowed(s)
                    }
                })
            };
            for effective in values {
                for violated in values {
                    let (e, v) = (text(effective), text(violated));
                    let got = effective_directive(e.as_ref(), v.as_ref());
                    assert_eq!(
                        got.clone().map(Cow::into_owned),
                        directive::effective(effective, violated),
                        "{effective:?} {violated:?}"
                    );
                    borrowed += usize::from(matches!(got, Ok(Cow::Borrowed(_))));
                }
            }
        }
        // The shortcut is taken (not only the fallback), for borrowed text only.
        assert!(borrowed > 20, "{borrowed}");
    }

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
