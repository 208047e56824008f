//! A borrowed view of a [`ReportMessage`]: the same fields, with `&str` instead of `String`.
//!
//! A consumer that reads a binary message ([`crate::binary::decode_view`]) and needs only some of
//! its fields, or needs them only once, reads them straight from the payload instead of copying
//! every string into a new allocation. [`ReportMessage::view`] gives the same view of an owned
//! message, so code that reads messages can take a view whatever the payload's format was.
//!
//! `details` is the one field that is parsed, not borrowed: the binary layout carries it as
//! JSON text, and the view decode parses it to refuse what the owned decode refuses (it is
//! `Details::None`, no allocation, for most kinds).

use std::borrow::Cow;

use serde_json::value::RawValue;

use crate::binary::BinaryError;
use crate::message::{DecodeError, MessageFormat, ReportMessage, MESSAGE_VERSION};
use crate::report::{
    BlockedClass, Details, Disposition, Extra, Report, ReportKind, WireFormat, FIXED_JSON_BYTES,
};

/// [`ReportMessage`] with borrowed strings.
#[derive(Debug, Clone)]
pub struct MessageView<'a> {
    pub v: u16,
    pub id: &'a str,
    pub received_at_ms: u64,
    pub project_id: u64,
    pub environment: Option<&'a str>,
    pub release: Option<&'a str>,
    pub client_ip: Option<&'a str>,
    pub request_user_agent: Option<&'a str>,
    pub fingerprint: &'a str,
    pub noise: Option<&'a str>,
    pub report: ReportView<'a>,
}

/// [`Report`] with borrowed strings.
#[derive(Debug, Clone)]
pub struct ReportView<'a> {
    pub kind: ReportKind,
    pub wire: WireFormat,
    pub report_type: Option<&'a str>,
    pub disposition: Option<Disposition>,
    pub document_url: Option<&'a str>,
    pub referrer: Option<&'a str>,
    pub blocked_url: Option<&'a str>,
    pub blocked_class: BlockedClass,
    pub effective_directive: Option<&'a str>,
    pub violated_directive: Option<&'a str>,
    pub source_file: Option<&'a str>,
    pub line_number: Option<u64>,
    pub column_number: Option<u64>,
    pub sample: Option<&'a str>,
    pub status_code: Option<u16>,
    pub original_policy: Option<&'a str>,
    pub age_ms: Option<u64>,
    pub user_agent: Option<&'a str>,
    pub details: Cow<'a, Details>,
    /// The unknown fields' JSON object text, `None` when there is none (as [`Extra`]).
    pub extra: Option<&'a RawValue>,
}

impl ReportMessage {
    /// This message as a view (no copy).
    pub fn view(&self) -> MessageView<'_> {
        let text = Option::as_deref;
        MessageView {
            v: self.v,
            id: &self.id,
            received_at_ms: self.received_at_ms,
            project_id: self.project_id,
            environment: text(&self.environment),
            release: text(&self.release),
            client_ip: text(&self.client_ip),
            request_user_agent: text(&self.request_user_agent),
            fingerprint: &self.fingerprint,
            noise: text(&self.noise),
            report: self.report.view(),
        }
    }
}

/// The [`ReportView`] of a report type with the normalised model's field names and text fields
/// that deref to `str` ([`Report`]'s `String`s, `ParsedReport`'s borrowed text): one list of
/// fields for both.
macro_rules! report_view {
    ($report:expr) => {{
        let text = Option::as_deref;
        $crate::view::ReportView {
            kind: $report.kind,
            wire: $report.wire,
            report_type: text(&$report.report_type),
            disposition: $report.disposition,
            document_url: text(&$report.document_url),
            referrer: text(&$report.referrer),
            blocked_url: text(&$report.blocked_url),
            blocked_class: $report.blocked_class,
            effective_directive: text(&$report.effective_directive),
            violated_directive: text(&$report.violated_directive),
            source_file: text(&$report.source_file),
            line_number: $report.line_number,
            column_number: $report.column_number,
            sample: text(&$report.sample),
            status_code: $report.status_code,
            original_policy: text(&$report.original_policy),
            age_ms: $report.age_ms,
            user_agent: text(&$report.user_agent),
            details: ::std::borrow::Cow::Borrowed(&$report.details),
            extra: $report.extra.raw(),
        }
    }};
}
pub(crate) use report_view;

impl Report {
    /// This report as a view (no copy).
    pub fn view(&self) -> ReportView<'_> {
        report_view!(self)
    }
}

impl ReportView<'_> {
    /// [`Report::json_len_bound`]: each byte of the common strings counted as 6 (serde_json's
    /// longest escape, `\u00XX`), field names, numbers and keywords as [`FIXED_JSON_BYTES`],
    /// `extra` as its text; only non-`None` details are serialised.
    pub fn json_len_bound(&self) -> usize {
        // Destructured so that a new field cannot be left out of the bound unnoticed.
        let ReportView {
            kind: _,
            wire: _,
            report_type,
            disposition: _,
            document_url,
            referrer,
            blocked_url,
            blocked_class: _,
            effective_directive,
            violated_directive,
            source_file,
            line_number: _,
            column_number: _,
            sample,
            status_code: _,
            original_policy,
            age_ms: _,
            user_agent,
            details,
            extra,
        } = self;
        let strings: usize = [
            report_type,
            document_url,
            referrer,
            blocked_url,
            effective_directive,
            violated_directive,
            source_file,
            sample,
            original_policy,
            user_agent,
        ]
        .iter()
        .map(|s| s.map_or(0, |s| s.len().saturating_mul(6)))
        .fold(0, usize::saturating_add);
        let details = match &**details {
            Details::None => 0,
            other => {
                let mut counter = crate::extra::ByteCounter::default();
                // Writing to a counter cannot fail: map keys are strings, details are objects.
                let _ = serde_json::to_writer(&mut counter, other);
                counter.bytes()
            }
        };
        FIXED_JSON_BYTES
            .saturating_add(strings)
            .saturating_add(details)
            .saturating_add(extra.map_or(0, |raw| raw.get().len()))
    }
}

impl MessageView<'_> {
    /// Appends the message to `out` in `format`: JSON ([`crate::json_layout`], the same bytes
    /// as `serde_json` gives for [`ReportMessage`]) or [`crate::binary`]. Ingest writes every
    /// message this way, from a view of the parsed report and the request's fields, so no
    /// string is copied into an owned message; an owned message encodes through its
    /// [`ReportMessage::view`], so both give the same bytes.
    pub fn encode_as(&self, format: MessageFormat, out: &mut Vec<u8>) {
        match format {
            MessageFormat::Json => crate::json_layout::encode_into(self, out),
            MessageFormat::Binary => crate::binary::encode_view(self, out),
        }
    }
}

impl<'a> MessageView<'a> {
    /// A binary message ([`crate::binary::decode_view`]), with the version rule of
    /// [`ReportMessage::decode`]: what [`ReportMessage::decode_binary`] refuses, this refuses.
    pub fn decode_binary(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let view = crate::binary::decode_view(bytes).map_err(|error| match error {
            BinaryError::UnsupportedLayout(layout) => DecodeError::UnsupportedLayout(layout),
            error => DecodeError::CorruptBinary(error),
        })?;
        if view.v == 0 || view.v > MESSAGE_VERSION {
            return Err(DecodeError::UnsupportedVersion(view.v.into()));
        }
        Ok(view)
    }

    /// The owned message (every string copied).
    pub fn into_owned(self) -> ReportMessage {
        let text = |s: Option<&str>| s.map(str::to_owned);
        let report = self.report;
        ReportMessage {
            v: self.v,
            id: self.id.to_owned(),
            received_at_ms: self.received_at_ms,
            project_id: self.project_id,
            environment: text(self.environment),
            release: text(self.release),
            client_ip: text(self.client_ip),
            request_user_agent: text(self.request_user_agent),
            fingerprint: self.fingerprint.to_owned(),
            noise: text(self.noise),
            report: Report {
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
                details: report.details.into_owned(),
                extra: report.extra.map(Extra::from_raw).unwrap_or_default(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message() -> ReportMessage {
        let json = r#"{"v":1,"id":"m","received_at_ms":5,"project_id":3,"client_ip":"192.0.2.0",
            "fingerprint":"00000000000000aa","report":{"kind":"network-error",
            "wire":"reporting-batch","blocked_class":"none","document_url":"https://a.example/",
            "age_ms":7,"details":{"type":"network-error","phase":"dns"},
            "extra":{"x-unknown":[1,{"b":"\u00e9"}]}}}"#;
        ReportMessage::decode(json.as_bytes()).expect("decodes")
    }

    #[test]
    fn a_binary_view_is_the_owned_message_borrowed() {
        let message = message();
        let bytes = crate::binary::encode(&message);
        let view = MessageView::decode_binary(&bytes).expect("decodes");
        assert_eq!(view.client_ip, Some("192.0.2.0"));
        assert_eq!(view.report.document_url, Some("https://a.example/"));
        assert_eq!(
            view.report.extra.map(RawValue::get),
            message.report.extra.raw().map(RawValue::get)
        );
        assert!(matches!(
            view.report.details,
            Cow::Owned(Details::NetworkError(_))
        ));
        assert_eq!(view.clone().into_owned(), message);
        assert_eq!(message.view().into_owned(), message);
        assert_eq!(
            ReportMessage::decode_binary(&bytes).expect("decodes"),
            message
        );
    }

    /// The view decode is the first step of the owned one: whatever bytes, both refuse or both
    /// accept (the processor dead-letters on the view's verdict).
    #[test]
    fn the_view_refuses_what_the_owned_decode_refuses() {
        let bytes = crate::binary::encode(&message());
        let same = |bytes: &[u8]| {
            let view = MessageView::decode_binary(bytes).map(MessageView::into_owned);
            let owned = ReportMessage::decode_binary(bytes);
            assert_eq!(view.is_ok(), owned.is_ok(), "{bytes:?}");
            if let (Ok(view), Ok(owned)) = (view, owned) {
                assert_eq!(view, owned);
            }
        };
        for end in 0..bytes.len() {
            same(&bytes[..end]);
        }
        for at in 0..bytes.len() {
            for value in [0x00, 0x01, 0x02, 0x22, 0x5b, 0x7b, 0x7f, 0x80, 0xff] {
                let mut changed = bytes.clone();
                changed[at] = value;
                same(&changed);
            }
        }
    }
}
