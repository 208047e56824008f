//! What a dedup window keeps of its first message, and what dedup needs of every message.
//!
//! A window keeps its first message until it closes (the row's descriptive fields come from
//! it); every later message of the window only adds to its counters. So a message is held in
//! the cheapest form that still gives the row back:
//! - a binary payload (`schemas::binary`) is held as its raw bytes, one allocation, and read
//!   again when the row is built ([`Held::first`]: a [`MessageView`] whose embedded JSON is
//!   left as text, which the row copies). It was fully decoded (and so validated) when it
//!   arrived, so a corrupt record is still dead-lettered at once, never at row time;
//! - a JSON payload has to be decoded into a [`ReportMessage`] to be validated anyway (serde
//!   builds it), so that message is held, boxed so a window stays small. Re-encoding it into the
//!   binary layout would add work on the JSON path and a second place a message could change.
//!
//! A message that joins an open window is never copied: [`Incoming`] borrows the payload and
//! only a window that opens takes a copy of it.

use schemas::view::MessageView;
use schemas::ReportMessage;

/// A window's first message, as held until the window closes.
#[derive(Debug, Clone)]
pub enum Held {
    /// A binary payload that [`MessageView::decode_binary`] accepted.
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

/// A window's first message as the row writer reads it ([`Held::first`]).
#[derive(Debug)]
pub struct FirstMessage<'a> {
    /// The message. Read from a binary payload, its `report.details` and `report.extra` are
    /// left out (`Details::None`, `None`): they are in `json`.
    pub message: MessageView<'a>,
    pub json: HeldJson<'a>,
}

/// Where a first message's `details` and `extra` are.
#[derive(Debug, Clone, Copy)]
pub enum HeldJson<'a> {
    /// In the message (a decoded JSON payload).
    InMessage,
    /// Their JSON text as the binary payload holds it (`None`: `Details::None`, no extra).
    Text {
        details: Option<&'a str>,
        extra: Option<&'a str>,
    },
}

impl Held {
    /// The held message for the row writer: a binary payload is read again without parsing
    /// its embedded JSON (`schemas::binary::decode_unparsed`), which the row only copies.
    pub fn first(&self) -> FirstMessage<'_> {
        match self {
            Self::Binary(payload) => {
                let unparsed = schemas::binary::decode_unparsed(payload).expect(
                    "cannot fail: these bytes were decoded in full when the window opened, \
                     this read refuses a subset of what that decode refuses, and both are pure \
                     functions of the bytes",
                );
                FirstMessage {
                    message: unparsed.view,
                    json: HeldJson::Text {
                        details: unparsed.details,
                        extra: unparsed.extra,
                    },
                }
            }
            Self::Owned(message) => FirstMessage {
                message: message.view(),
                json: HeldJson::InMessage,
            },
        }
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
    /// A binary message: `view` is `payload` decoded by [`MessageView::decode_binary`].
    pub fn binary(view: &MessageView<'_>, payload: &'a [u8]) -> Self {
        Self {
            received_at_ms: view.received_at_ms,
            age_ms: view.report.age_ms,
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
        Self {
            received_at_ms: message.received_at_ms,
            age_ms: message.report.age_ms,
            first: First::Owned(Box::new(message)),
        }
    }
}
