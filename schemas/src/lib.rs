//! Palisade's contract: the wire formats of every browser security report, the normalised
//! [`Report`], the versioned Kafka [`ReportMessage`], the "same violation" [`fingerprint()`], the
//! default [`noise`] filters and the ClickHouse DDL (`sql/`). No I/O happens here.
//!
//! Map: [`parse`] (body shape dispatch, limits; [`parse::Scan`] counts items and values before
//! anything is built) -> [`wire`] (one module per wire format) -> [`report`] (the normalised
//! model; unknown fields as raw JSON text, [`Extra`]) -> [`blocked`] / [`directive`]
//! (normalisation helpers) -> [`noise`] / [`mod@fingerprint`] -> [`message`] (what goes to
//! Kafka; written by [`json_layout`] or [`binary`] from a borrowed [`view::MessageView`], which
//! is also how a consumer reads a binary message without copying its strings).
//!
//! Hot path, as ingest uses it: one [`Parser`] per worker (it keeps simd-json's scratch
//! buffers), `parse` a body into [`Parsed`] items, [`noise::classify`] each report,
//! [`fingerprint()`] it, [`dedup_key`] it with the client, wrap it in a [`ReportMessage`] and
//! [`ReportMessage::encode`] it.
//!
//! Shared by every binary besides: [`sql::is_identifier`] (the names that may be spliced into the
//! DDL) and [`error_chain`] (an error and its sources as one log line).

pub mod binary;
pub mod blocked;
pub mod directive;
mod errors;
mod extra;
pub mod fingerprint;
pub mod json_layout;
pub mod message;
pub mod noise;
pub mod parse;
pub mod plain_url;
pub mod report;
pub mod sql;
#[cfg(test)]
mod test_corpus;
pub mod view;
pub mod wire;

pub use errors::error_chain;
pub use fingerprint::{dedup_key, fingerprint};
pub use message::{DecodeError, MessageFormat, ReportMessage, MESSAGE_VERSION};
pub use noise::NoiseReason;
pub use parse::{ParseError, ParseLimits, Parsed, Parser, ReportError};
pub use report::{
    BlockedClass, CertificateDetails, Details, Disposition, Extra, NetworkErrorDetails, Report,
    ReportKind, WireFormat, MAX_AGE_MS,
};
pub use view::{MessageView, ReportView};
