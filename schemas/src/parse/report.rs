//! [`ParsedReport`]: a normalised report whose text borrows from the request body.
//!
//! simd-json unescapes strings in place, inside the body it parses, so every string of a parsed
//! body is a slice of that body. A wire parser hands those slices on instead of copying each
//! one into a `String` of a [`Report`] that ingest would drop a few microseconds later: ingest
//! filters, cleans (privacy), fingerprints and encodes the message from the borrowed fields, and
//! only the few values normalisation rewrites (a lowercased keyword, a number sent as text, a
//! URL whose credentials are removed) are owned. [`ParsedReport::into_owned`] gives the
//! [`Report`] [`crate::Parser::parse`] returns, field for field the same.

use std::borrow::Cow;

use crate::report::{BlockedClass, Details, Disposition, Extra, Report, ReportKind, WireFormat};
use crate::view::ReportView;

use super::{Parsed, ReportError};

/// [`Report`] with its text borrowed from the parsed body where normalisation kept it as sent.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedReport<'b> {
    pub kind: ReportKind,
    pub wire: WireFormat,
    pub report_type: Option<Cow<'b, str>>,
    pub disposition: Option<Disposition>,
    pub document_url: Option<Cow<'b, str>>,
    pub referrer: Option<Cow<'b, str>>,
    pub blocked_url: Option<Cow<'b, str>>,
    pub blocked_class: BlockedClass,
    pub effective_directive: Option<Cow<'b, str>>,
    pub violated_directive: Option<Cow<'b, str>>,
    pub source_file: Option<Cow<'b, str>>,
    pub line_number: Option<u64>,
    pub column_number: Option<u64>,
    pub sample: Option<Cow<'b, str>>,
    pub status_code: Option<u16>,
    pub original_policy: Option<Cow<'b, str>>,
    pub age_ms: Option<u64>,
    pub user_agent: Option<Cow<'b, str>>,
    pub details: Details,
    pub extra: Extra,
}

/// Every item of one body, good or bad, in order: [`Parsed`] with borrowed reports.
#[derive(Debug)]
pub struct ParsedBody<'b> {
    pub items: Vec<Result<ParsedReport<'b>, ReportError>>,
}

impl<'b> ParsedReport<'b> {
    /// An empty report of `kind` carried by `wire`, to be filled in by a wire parser.
    pub(crate) fn blank(kind: ReportKind, wire: WireFormat) -> Self {
        Self {
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
            extra: Extra::default(),
        }
    }

    /// The owned report (every borrowed string copied).
    pub fn into_owned(self) -> Report {
        let text = |s: Option<Cow<'_, str>>| s.map(Cow::into_owned);
        Report {
            kind: self.kind,
            wire: self.wire,
            report_type: text(self.report_type),
            disposition: self.disposition,
            document_url: text(self.document_url),
            referrer: text(self.referrer),
            blocked_url: text(self.blocked_url),
            blocked_class: self.blocked_class,
            effective_directive: text(self.effective_directive),
            violated_directive: text(self.violated_directive),
            source_file: text(self.source_file),
            line_number: self.line_number,
            column_number: self.column_number,
            sample: text(self.sample),
            status_code: self.status_code,
            original_policy: text(self.original_policy),
            age_ms: self.age_ms,
            user_agent: text(self.user_agent),
            details: self.details,
            extra: self.extra,
        }
    }

    /// This report as a view (no copy): what the fingerprint, the noise verdict and the
    /// message encoders read.
    pub fn view(&self) -> ReportView<'_> {
        crate::view::report_view!(self)
    }

    /// [`Report::json_len_bound`] of this report.
    pub fn json_len_bound(&self) -> usize {
        self.view().json_len_bound()
    }

    /// [`Report::json_len`] of this report.
    pub fn json_len(&self) -> usize {
        self.clone().into_owned().json_len()
    }
}

impl From<Report> for ParsedReport<'static> {
    /// An owned report as a parsed one (every string moved, none copied).
    fn from(report: Report) -> Self {
        let text = |s: Option<String>| s.map(Cow::Owned);
        Self {
            kind: report.kind,
            wire: report.wire,
            report_type: text(report.report_type),
            disposition: report.disposition,
            document_url: text(report.document_url),
            referrer: text(report.referrer),
            blocked_url: text(report.blocked_url),
            blocked_class: report.blocked_class,
            effective_directive: text(report.effective_directive),
            violated_directive: text(report.violated_directive),
            source_file: text(report.source_file),
            line_number: report.line_number,
            column_number: report.column_number,
            sample: text(report.sample),
            status_code: report.status_code,
            original_policy: text(report.original_policy),
            age_ms: report.age_ms,
            user_agent: text(report.user_agent),
            details: report.details,
            extra: report.extra,
        }
    }
}

impl ParsedBody<'_> {
    /// The owned outcome (every report's strings copied).
    pub fn into_owned(self) -> Parsed {
        Parsed {
            items: self
                .items
                .into_iter()
                .map(|item| item.map(ParsedReport::into_owned))
                .collect(),
        }
    }
}

impl From<Parsed> for ParsedBody<'static> {
    /// An owned outcome as a parsed one (strings moved, not copied).
    fn from(parsed: Parsed) -> Self {
        Self {
            items: parsed
                .items
                .into_iter()
                .map(|item| item.map(ParsedReport::from))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{ParseLimits, Parser};

    /// Every string of a legacy CSP report the parser keeps as sent is a slice of the body,
    /// not a copy; the ones normalisation rewrites are owned.
    #[test]
    fn text_kept_as_sent_borrows_the_body() {
        let mut body = br#"{"csp-report":{"document-uri":"https://a.example/p?q=1",
            "referrer":"https://r.example/","violated-directive":"script-src 'self'",
            "effective-directive":"script-src","original-policy":"script-src 'self'",
            "blocked-uri":"https://cdn.example/x.js","source-file":"https://a.example/app.js",
            "script-sample":"alert(1)","line-number":"7","status-code":200}}"#
            .to_vec();
        let range = body.as_ptr_range();
        let inside = |text: &Cow<'_, str>| match text {
            Cow::Borrowed(s) => range.contains(&s.as_ptr()),
            Cow::Owned(_) => false,
        };
        let mut parser = Parser::new(ParseLimits::default());
        let mut parsed = parser.parse_borrowed(&mut body).expect("parses");
        let report = parsed.items.remove(0).expect("valid");
        for (name, text) in [
            ("document", &report.document_url),
            ("referrer", &report.referrer),
            ("violated", &report.violated_directive),
            ("effective", &report.effective_directive),
            ("policy", &report.original_policy),
            ("blocked", &report.blocked_url),
            ("source", &report.source_file),
            ("sample", &report.sample),
        ] {
            assert!(text.as_ref().is_some_and(inside), "{name}: {text:?}");
        }
        assert_eq!(report.line_number, Some(7));
        assert_eq!(report.effective_directive.as_deref(), Some("script-src"));

        // A keyword is stored lowercased, a directive named in capitals too: both owned.
        let mut body =
            br#"{"csp-report":{"violated-directive":"Script-Src","blocked-uri":"INLINE"}}"#
                .to_vec();
        let mut parsed = parser.parse_borrowed(&mut body).expect("parses");
        let report = parsed.items.remove(0).expect("valid");
        assert_eq!(
            report.effective_directive,
            Some(Cow::<str>::Owned("script-src".into()))
        );
        assert_eq!(report.blocked_url, Some(Cow::<str>::Owned("inline".into())));
    }

    /// `From<Report>` then `into_owned` gives the report back.
    #[test]
    fn an_owned_report_round_trips() {
        let mut body = br#"{"type":"network-error","url":"https://a.example/","age":5,
            "body":{"phase":"dns","type":"dns.name_not_resolved","x":1}}"#
            .to_vec();
        let report = Parser::new(ParseLimits::default())
            .parse(&mut body)
            .expect("parses")
            .items
            .remove(0)
            .expect("valid");
        assert_eq!(ParsedReport::from(report.clone()).into_owned(), report);
    }
}
