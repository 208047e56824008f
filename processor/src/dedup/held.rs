//! What a dedup window keeps of its first message, and what dedup needs of every message.
//!
//! A window keeps its first message until it closes (the row's descriptive fields come from
//! it); every later message of the window only adds to its counters. So a message is held in
//! the cheapest form that still gives the row back:
//! - a binary payload (`schemas::binary`) is held as its raw bytes, one allocation, and read
//!   again when the row is built ([`Held::first`]: its fields as bytes, the embedded JSON left
//!   as text, all of which the row copies). It was fully checked when it arrived, so a
//!   corrupt record is still dead-lettered at once, never at row time;
//! - a JSON payload has to be decoded into a [`ReportMessage`] to be validated anyway (serde
//!   builds it), so that message is held, boxed so a window stays small. Re-encoding it into the
//!   binary layout would add work on the JSON path and a second place a message could change.
//!
//! A message that joins an open window is never copied: [`Incoming`] borrows the payload and
//! only a window that opens takes a copy of it.

use schemas::binary::Fields;
use schemas::view::MessageView;
use schemas::{Details, ReportMessage};
use serde_json::value::RawValue;

/// A window's first message, as held until the window closes.
#[derive(Debug, Clone)]
pub enum Held {
    /// A binary payload that `schemas::binary::decode_checked` accepted.
    Binary(Box<[u8]>),
    /// A decoded JSON payload.
    Owned(Box<ReportMessage>),
}

impl Held {
    /// The held message.
    pub fn view(&self) -> MessageView<'_> {
        match self {
            Self::Binary(payload) => MessageView::decode_binary(payload).expect(
                "cannot fail: these bytes were decoded when the window opened, and decoding is \
                 a pure function of them",
            ),
            Self::Owned(message) => message.view(),
        }
    }
}

/// A window's first message as the row writer reads it ([`Held::first`]): its fields in the
/// binary layout's order, every string as bytes (the row copies most of them as they are;
/// RowBinary strings are bytes).
#[derive(Debug)]
pub struct FirstMessage<'a> {
    /// The fields. From a binary payload, `details` and `extra` are the payload's JSON texts;
    /// from a decoded JSON message they are `None` and the message's are in `json`.
    pub fields: Fields<&'a [u8]>,
    pub json: HeldJson<'a>,
}

/// Where a first message's `details` and `extra` are.
#[derive(Debug, Clone, Copy)]
pub enum HeldJson<'a> {
    /// In the decoded JSON message.
    InMessage {
        details: &'a Details,
        extra: Option<&'a RawValue>,
    },
    /// Their JSON text as the binary payload holds it, in [`FirstMessage::fields`] (`None`:
    /// `Details::None`, no extra).
    Text,
}

impl Held {
    /// The held message for the row writer. A binary payload is walked again
    /// (`schemas::binary::decode_fields`) without checking its strings as UTF-8 or parsing its
    /// embedded JSON: both were checked when the window opened, and the row copies them as
    /// bytes.
    pub fn first(&self) -> FirstMessage<'_> {
        match self {
            Self::Binary(payload) => FirstMessage {
                fields: schemas::binary::decode_fields(payload).expect(
                    "cannot fail: these bytes were decoded in full when the window opened, \
                     this walk refuses a subset of what that decode refuses, and both are pure \
                     functions of the bytes",
                ),
                json: HeldJson::Text,
            },
            Self::Owned(message) => FirstMessage {
                fields: fields_of(message),
                json: HeldJson::InMessage {
                    details: &message.report.details,
                    extra: message.report.extra.raw(),
                },
            },
        }
    }
}

/// A decoded message's fields as the binary layout orders them, strings as bytes, without
/// `details` and `extra` (see [`FirstMessage::fields`]).
fn fields_of<'a>(message: &'a ReportMessage) -> Fields<&'a [u8]> {
    let text = |s: &'a Option<String>| s.as_deref().map(str::as_bytes);
    let report = &message.report;
    Fields {
        v: message.v,
        id: message.id.as_bytes(),
        received_at_ms: message.received_at_ms,
        project_id: message.project_id,
        fingerprint: message.fingerprint.as_bytes(),
        environment: text(&message.environment),
        release: text(&message.release),
        client_ip: text(&message.client_ip),
        request_user_agent: text(&message.request_user_agent),
        noise: text(&message.noise),
        kind: report.kind,
        wire: report.wire,
        blocked_class: report.blocked_class,
        disposition: report.disposition,
        report_type: text(&report.report_type),
        document_url: text(&report.document_url),
        referrer: text(&report.referrer),
        blocked_url: text(&report.blocked_url),
        effective_directive: text(&report.effective_directive),
        violated_directive: text(&report.violated_directive),
        source_file: text(&report.source_file),
        line_number: report.line_number,
        column_number: report.column_number,
        sample: text(&report.sample),
        status_code: report.status_code,
        original_policy: text(&report.original_policy),
        age_ms: report.age_ms,
        user_agent: text(&report.user_agent),
        extra: None,
        details: None,
    }
}

/// One message as dedup needs it: its times, and what to hold if it opens a window.
#[derive(Debug)]
pub struct Incoming<'a> {
    pub received_at_ms: u64,
    /// The report's `age` (Reporting API), if any.
    pub age_ms: Option<u64>,
    first: First<'a>,
}

#[derive(Debug)]
enum First<'a> {
    Binary(&'a [u8]),
    /// Boxed here already: the box is what a window holds.
    Owned(Box<ReportMessage>),
}

impl<'a> Incoming<'a> {
    /// A binary message, `payload`, which `schemas::binary::decode_checked` accepted, and its
    /// times.
    pub fn binary(received_at_ms: u64, age_ms: Option<u64>, payload: &'a [u8]) -> Self {
        Self {
            received_at_ms,
            age_ms,
            first: First::Binary(payload),
        }
    }

    /// Bytes counted against the partition's `max_bytes` if this message opens a window:
    /// what [`Self::hold`] allocates (the payload, or the decoded message's estimate).
    pub fn held_bytes(&self) -> usize {
        match &self.first {
            First::Binary(payload) => payload.len(),
            First::Owned(message) => message.heap_bytes(),
        }
    }

    /// What a window opened by this message keeps.
    pub fn hold(self) -> Held {
        match self.first {
            First::Binary(payload) => Held::Binary(payload.into()),
            First::Owned(message) => Held::Owned(message),
        }
    }
}

impl From<ReportMessage> for Incoming<'_> {
    fn from(message: ReportMessage) -> Self {
        Box::new(message).into()
    }
}

impl From<Box<ReportMessage>> for Incoming<'_> {
    fn from(message: Box<ReportMessage>) -> Self {
        Self {
            received_at_ms: message.received_at_ms,
            age_ms: message.report.age_ms,
            first: First::Owned(message),
        }
    }
}
