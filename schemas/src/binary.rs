//! The compact binary layout of a [`ReportMessage`], beside the JSON one.
//!
//! JSON costs the processor more to decode than anything else it does per report (keys to
//! match, escapes to undo, numbers to parse); this layout is read with length-prefixed copies
//! and a few varints. Ingest writes it by default (`--kafka-message-format`, `json` otherwise), and
//! consumers tell the two apart by the first byte ([`MARKER`], never the first byte of JSON or of
//! any UTF-8 text), so old JSON messages, dead-lettered copies and replays without headers all
//! still decode. Ingest also names the layout in the `palisade-message-format` header.
//!
//! # Layout, version 1
//!
//! `varint` is unsigned LEB128 (7 bits per byte, low bits first, at most 10 bytes); `str` is a
//! varint byte length then that many bytes of UTF-8; `u8` is one byte.
//!
//! | field | type | meaning |
//! |---|---|---|
//! | marker | u8 | `0xB5` ([`MARKER`]) |
//! | layout | u8 | `1` ([`LAYOUT_VERSION`]); any other value is refused as an unsupported version |
//! | v | varint | the message version, as JSON's `v` ([`crate::MESSAGE_VERSION`]) |
//! | id | str | |
//! | received_at_ms | varint | |
//! | project_id | varint | |
//! | fingerprint | str | 16 lowercase hex digits |
//! | present | varint | bit 0 environment, 1 release, 2 client_ip, 3 request_user_agent, 4 noise |
//! | (each field whose bit is set, in bit order) | str | |
//! | kind, wire, blocked_class | u8 each | index in [`KINDS`], [`WIRES`], [`CLASSES`] |
//! | disposition | u8 | 0 absent, 1 `enforce`, 2 `report` |
//! | report present | varint | bit 0 report_type, 1 document_url, 2 referrer, 3 blocked_url, 4 effective_directive, 5 violated_directive, 6 source_file, 7 line_number, 8 column_number, 9 sample, 10 status_code, 11 original_policy, 12 age_ms, 13 user_agent, 14 extra |
//! | (each field whose bit is set, in bit order) | str, or varint for line_number, column_number, status_code and age_ms | `extra` is the JSON text of one object, as in the JSON message |
//! | details | u8 | 0 `none`; 1 followed by a str: the details' JSON text exactly as in the JSON message (`{"type":"network-error",...}`) |
//!
//! Nothing may follow. A set bit this version does not name, an index out of its table, bad
//! UTF-8, a truncated field or trailing bytes make the message corrupt.
//!
//! Changes: any change to this layout (even an added field) is a new layout version, decoded
//! beside the old ones; as with JSON, consumers are upgraded before ingest writes it. To read a
//! binary message by hand, `palisade-processor decode` is not needed: `kcat -C ... -s value=s`
//! shows the strings in order, and [`to_json`] (or the processor's dead-letter copy) gives the
//! JSON form.

use std::borrow::Cow;

use serde::de::Error as _;
use serde_json::value::RawValue;

use crate::extra::object_text;
use crate::message::{DecodeError, ReportMessage, MESSAGE_VERSION};
use crate::report::{BlockedClass, Details, Disposition, ReportKind, WireFormat};
use crate::view::{MessageView, ReportView};

pub mod compact;

/// First byte of every binary message: a UTF-8 continuation byte, so never the start of JSON.
pub const MARKER: u8 = 0xB5;

/// The layout this module writes and reads.
pub const LAYOUT_VERSION: u8 = 1;

/// Report kinds by their index in the layout (append only).
pub const KINDS: [ReportKind; 17] = ReportKind::ALL;

/// Wire formats by their index in the layout (append only).
pub const WIRES: [WireFormat; 8] = [
    WireFormat::LegacyCsp,
    WireFormat::LegacyCspUnwrapped,
    WireFormat::ReportingBatch,
    WireFormat::ReportingSingle,
    WireFormat::ExpectCt,
    WireFormat::Hpkp,
    WireFormat::ExpectStaple,
    WireFormat::XssAuditor,
];

/// Blocked classes by their index in the layout (append only).
pub const CLASSES: [BlockedClass; 12] = [
    BlockedClass::Url,
    BlockedClass::Inline,
    BlockedClass::Eval,
    BlockedClass::WasmEval,
    BlockedClass::Data,
    BlockedClass::Blob,
    BlockedClass::SelfOrigin,
    BlockedClass::Extension,
    BlockedClass::TrustedTypesPolicy,
    BlockedClass::TrustedTypesSink,
    BlockedClass::OtherScheme,
    BlockedClass::None,
];

/// Why bytes starting with [`MARKER`] are not a binary message.
#[derive(Debug, thiserror::Error)]
pub enum BinaryError {
    #[error("unsupported binary layout {0}")]
    UnsupportedLayout(u8),
    #[error("truncated at byte {0}")]
    Truncated(usize),
    #[error("bad varint at byte {0}")]
    Varint(usize),
    #[error("string at byte {0} is not utf-8")]
    Utf8(usize),
    #[error("{field} has no meaning for value {value}")]
    Invalid { field: &'static str, value: u64 },
    #[error("{0} bytes after the message")]
    Trailing(usize),
    #[error("embedded json is invalid")]
    Json(#[source] serde_json::Error),
}

/// Appends `message` in the binary layout to `out`.
pub fn encode_into(message: &ReportMessage, out: &mut Vec<u8>) {
    encode_view(&message.view(), out);
}

/// Appends the message `message` borrows in the binary layout to `out`.
pub fn encode_view(message: &MessageView<'_>, out: &mut Vec<u8>) {
    out.push(MARKER);
    out.push(LAYOUT_VERSION);
    varint(out, u64::from(message.v));
    string(out, message.id);
    varint(out, message.received_at_ms);
    varint(out, message.project_id);
    string(out, message.fingerprint);
    let optional = [
        message.environment,
        message.release,
        message.client_ip,
        message.request_user_agent,
        message.noise,
    ];
    optional_strings(out, &optional);
    let report = &message.report;
    out.push(kind_index(report.kind));
    out.push(wire_index(report.wire));
    out.push(class_index(report.blocked_class));
    out.push(match report.disposition {
        None => 0,
        Some(Disposition::Enforce) => 1,
        Some(Disposition::Report) => 2,
    });
    let mut present = 0u64;
    let fields = report_fields(report);
    for (bit, field) in fields.iter().enumerate() {
        if !matches!(field, Field::Absent) {
            present |= 1 << bit;
        }
    }
    varint(out, present);
    for field in fields {
        match field {
            Field::Absent => {}
            Field::Text(text) => string(out, text),
            Field::Number(n) => varint(out, n),
        }
    }
    match report.details.as_ref() {
        Details::None => out.push(0),
        details => {
            out.push(1);
            // Details serialise as a tagged object; writing to a Vec cannot fail.
            let text = serde_json::to_string(details).unwrap_or_default();
            string(out, &text);
        }
    }
}

/// The message in the binary layout.
pub fn encode(message: &ReportMessage) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    encode_into(message, &mut out);
    out
}

/// One optional field of a report, in layout order.
enum Field<'a> {
    Absent,
    Text(&'a str),
    Number(u64),
}

fn report_fields<'a>(report: &ReportView<'a>) -> [Field<'a>; 15] {
    let text = |t: Option<&'a str>| t.map_or(Field::Absent, Field::Text);
    let number = |n: Option<u64>| n.map_or(Field::Absent, Field::Number);
    [
        text(report.report_type),
        text(report.document_url),
        text(report.referrer),
        text(report.blocked_url),
        text(report.effective_directive),
        text(report.violated_directive),
        text(report.source_file),
        number(report.line_number),
        number(report.column_number),
        text(report.sample),
        number(report.status_code.map(u64::from)),
        text(report.original_policy),
        number(report.age_ms),
        text(report.user_agent),
        report
            .extra
            .map_or(Field::Absent, |raw| Field::Text(raw.get())),
    ]
}

/// Reads a binary message (`bytes` starts with [`MARKER`]): [`decode_view`] with every string
/// copied.
pub fn decode(bytes: &[u8]) -> Result<ReportMessage, BinaryError> {
    decode_view(bytes).map(MessageView::into_owned)
}

/// Reads a binary message as a view of `bytes`: the strings are borrowed, not copied. Refuses
/// exactly what [`decode`] refuses (it is [`decode`]'s first step): the embedded JSON of
/// `extra` and `details` is checked here too.
pub fn decode_view<'a>(bytes: &'a [u8]) -> Result<MessageView<'a>, BinaryError> {
    let Unparsed {
        mut view,
        details,
        extra,
    } = decode_unparsed(bytes)?;
    if let Some(text) = extra {
        view.report.extra = extra_text(text)?;
    }
    if let Some(text) = details {
        view.report.details =
            Cow::Owned(serde_json::from_str::<Details>(text).map_err(BinaryError::Json)?);
    }
    Ok(view)
}

/// `extra`'s JSON text as a raw value, `None` for an empty object: the rule `Extra`'s own
/// deserialisation applies, without copying the text.
fn extra_text(text: &str) -> Result<Option<&RawValue>, BinaryError> {
    let raw = serde_json::from_str::<&RawValue>(text).map_err(BinaryError::Json)?;
    object_text(raw).map_err(|message| BinaryError::Json(serde_json::Error::custom(message)))
}

/// Reads a binary message as [`MessageView::decode_binary`] does and refuses exactly what it
/// refuses, with the same error, but gives its fields with every string as bytes (each checked
/// as UTF-8) and the embedded JSON as text: checked, not built. For a consumer that needs a
/// few plain fields now and the rest at most as bytes (the processor's decode: a message that
/// joins an open dedup window is only counted).
///
/// The checks are [`decode_view`]'s, in its order (the walk, then `extra`, then `details`),
/// then the version rule of [`MessageView::decode_binary`]. Text in the compact form serde_json
/// writes is recognised by [`compact`] without serde; any other text goes through serde as in
/// [`decode_view`], which then decides (and gives the error).
pub fn decode_checked(bytes: &[u8]) -> Result<Fields<&[u8]>, DecodeError> {
    let corrupt = |error| match error {
        BinaryError::UnsupportedLayout(layout) => DecodeError::UnsupportedLayout(layout),
        error => DecodeError::CorruptBinary(error),
    };
    let fields = walk::<Checked>(bytes).map_err(corrupt)?;
    let text = |bytes| {
        std::str::from_utf8(bytes).expect("cannot fail: the walk checked every string as UTF-8")
    };
    if let Some(extra) = fields.extra.map(text) {
        if !compact::object(extra) {
            extra_text(extra).map_err(corrupt)?;
        }
    }
    if let Some(details) = fields.details.map(text) {
        if compact::details(details).is_none() {
            serde_json::from_str::<Details>(details)
                .map_err(|error| corrupt(BinaryError::Json(error)))?;
        }
    }
    if fields.v == 0 || fields.v > MESSAGE_VERSION {
        return Err(DecodeError::UnsupportedVersion(fields.v.into()));
    }
    Ok(fields)
}

/// A binary message whose embedded JSON (`details`, `extra`) is left as text: see
/// [`decode_unparsed`].
#[derive(Debug, Clone)]
pub struct Unparsed<'a> {
    /// Every field but the two below: here `report.details` is always `Details::None` and
    /// `report.extra` always `None`, whatever the message holds.
    pub view: MessageView<'a>,
    /// The details' JSON text (`{"type":...}`, as serde_json writes [`Details`]), `None` for
    /// `Details::None`.
    pub details: Option<&'a str>,
    /// The JSON object text of `extra`, `None` when there is none.
    pub extra: Option<&'a str>,
}

/// Reads a binary message as [`decode_view`] does, but without parsing the JSON of `details`
/// and `extra` (their text is returned as it is): for a reader that only copies them, once
/// [`decode_view`] has accepted the same bytes (it is [`decode_view`]'s first step, so it
/// refuses a subset of what that refuses: layout, UTF-8, tables, lengths, trailing bytes).
pub fn decode_unparsed<'a>(bytes: &'a [u8]) -> Result<Unparsed<'a>, BinaryError> {
    let f = walk::<AsStr>(bytes)?;
    let view = MessageView {
        v: f.v,
        id: f.id,
        received_at_ms: f.received_at_ms,
        project_id: f.project_id,
        environment: f.environment,
        release: f.release,
        client_ip: f.client_ip,
        request_user_agent: f.request_user_agent,
        fingerprint: f.fingerprint,
        noise: f.noise,
        report: ReportView {
            kind: f.kind,
            wire: f.wire,
            report_type: f.report_type,
            disposition: f.disposition,
            document_url: f.document_url,
            referrer: f.referrer,
            blocked_url: f.blocked_url,
            blocked_class: f.blocked_class,
            effective_directive: f.effective_directive,
            violated_directive: f.violated_directive,
            source_file: f.source_file,
            line_number: f.line_number,
            column_number: f.column_number,
            sample: f.sample,
            status_code: f.status_code,
            original_policy: f.original_policy,
            age_ms: f.age_ms,
            user_agent: f.user_agent,
            details: Cow::Owned(Details::None),
            extra: None,
        },
    };
    Ok(Unparsed {
        view,
        details: f.details,
        extra: f.extra,
    })
}

/// A binary message's fields in layout order, each string as `S`: `&str` (checked as UTF-8) or
/// `&[u8]` ([`decode_fields`]: not checked). `details` and `extra` are their JSON text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fields<S> {
    pub v: u16,
    pub id: S,
    pub received_at_ms: u64,
    pub project_id: u64,
    pub fingerprint: S,
    pub environment: Option<S>,
    pub release: Option<S>,
    pub client_ip: Option<S>,
    pub request_user_agent: Option<S>,
    pub noise: Option<S>,
    pub kind: ReportKind,
    pub wire: WireFormat,
    pub blocked_class: BlockedClass,
    pub disposition: Option<Disposition>,
    pub report_type: Option<S>,
    pub document_url: Option<S>,
    pub referrer: Option<S>,
    pub blocked_url: Option<S>,
    pub effective_directive: Option<S>,
    pub violated_directive: Option<S>,
    pub source_file: Option<S>,
    pub line_number: Option<u64>,
    pub column_number: Option<u64>,
    pub sample: Option<S>,
    pub status_code: Option<u16>,
    pub original_policy: Option<S>,
    pub age_ms: Option<u64>,
    pub user_agent: Option<S>,
    /// The JSON object text of `extra`, `None` when there is none.
    pub extra: Option<S>,
    /// The details' JSON text, `None` for `Details::None`.
    pub details: Option<S>,
}

/// Reads a binary message's fields with every string as bytes, NOT checked as UTF-8: for a
/// reader of bytes that [`decode_view`] (or [`decode_checked`]) already accepted, which copies
/// most strings as they are (the processor's row writer, when a dedup window closes).
/// Everything else is checked as [`decode_unparsed`] checks it (the same walk), so this
/// refuses a subset of what that refuses: all but bad UTF-8.
pub fn decode_fields(bytes: &[u8]) -> Result<Fields<&[u8]>, BinaryError> {
    walk::<Unchecked>(bytes)
}

/// How a walk reads the layout's strings.
trait Strings<'a> {
    type Text;
    /// `bytes` (which start at byte `at` of the message) as this kind of string.
    fn read(bytes: &'a [u8], at: usize) -> Result<Self::Text, BinaryError>;
}

/// As `&str`.
enum AsStr {}

impl<'a> Strings<'a> for AsStr {
    type Text = &'a str;
    fn read(bytes: &'a [u8], at: usize) -> Result<&'a str, BinaryError> {
        std::str::from_utf8(bytes).map_err(|_| BinaryError::Utf8(at))
    }
}

/// As bytes checked as UTF-8: the same verdict as [`AsStr`], but most strings are ASCII, and
/// `is_ascii` reads a word (or more) at a time where `from_utf8` starts byte by byte.
enum Checked {}

impl<'a> Strings<'a> for Checked {
    type Text = &'a [u8];
    fn read(bytes: &'a [u8], at: usize) -> Result<&'a [u8], BinaryError> {
        if bytes.is_ascii() || std::str::from_utf8(bytes).is_ok() {
            Ok(bytes)
        } else {
            Err(BinaryError::Utf8(at))
        }
    }
}

/// As bytes, not checked.
enum Unchecked {}

impl<'a> Strings<'a> for Unchecked {
    type Text = &'a [u8];
    fn read(bytes: &'a [u8], _at: usize) -> Result<&'a [u8], BinaryError> {
        Ok(bytes)
    }
}

/// The one walk over the layout behind [`decode_unparsed`], [`decode_checked`] and
/// [`decode_fields`].
fn walk<'a, S: Strings<'a>>(bytes: &'a [u8]) -> Result<Fields<S::Text>, BinaryError> {
    let mut r = Reader { bytes, at: 0 };
    let marker = r.byte()?;
    if marker != MARKER {
        return Err(BinaryError::Invalid {
            field: "marker",
            value: u64::from(marker),
        });
    }
    let layout = r.byte()?;
    if layout != LAYOUT_VERSION {
        return Err(BinaryError::UnsupportedLayout(layout));
    }
    let v = r.varint()?;
    let v = u16::try_from(v).map_err(|_| BinaryError::Invalid {
        field: "v",
        value: v,
    })?;
    let id = r.str::<S>()?;
    let received_at_ms = r.varint()?;
    let project_id = r.varint()?;
    let fingerprint = r.str::<S>()?;
    let present = r.mask(5, "message present")?;
    let mut optional = [None, None, None, None, None];
    for (bit, slot) in optional.iter_mut().enumerate() {
        if present & (1 << bit) != 0 {
            *slot = Some(r.str::<S>()?);
        }
    }
    let [environment, release, client_ip, request_user_agent, noise] = optional;
    let kind = *r.indexed(&KINDS, "kind")?;
    let wire = *r.indexed(&WIRES, "wire")?;
    let blocked_class = *r.indexed(&CLASSES, "blocked_class")?;
    let disposition = match r.byte()? {
        0 => None,
        1 => Some(Disposition::Enforce),
        2 => Some(Disposition::Report),
        other => {
            return Err(BinaryError::Invalid {
                field: "disposition",
                value: u64::from(other),
            })
        }
    };
    let present = r.mask(15, "report present")?;
    let has = |bit: u32| present & (1 << bit) != 0;
    let text = |r: &mut Reader<'a>, bit: u32| -> Result<Option<S::Text>, BinaryError> {
        if has(bit) {
            r.str::<S>().map(Some)
        } else {
            Ok(None)
        }
    };
    let number = |r: &mut Reader<'_>, bit: u32| -> Result<Option<u64>, BinaryError> {
        if has(bit) {
            r.varint().map(Some)
        } else {
            Ok(None)
        }
    };
    let report_type = text(&mut r, 0)?;
    let document_url = text(&mut r, 1)?;
    let referrer = text(&mut r, 2)?;
    let blocked_url = text(&mut r, 3)?;
    let effective_directive = text(&mut r, 4)?;
    let violated_directive = text(&mut r, 5)?;
    let source_file = text(&mut r, 6)?;
    let line_number = number(&mut r, 7)?;
    let column_number = number(&mut r, 8)?;
    let sample = text(&mut r, 9)?;
    let status_code = match number(&mut r, 10)? {
        None => None,
        Some(code) => Some(u16::try_from(code).map_err(|_| BinaryError::Invalid {
            field: "status_code",
            value: code,
        })?),
    };
    let original_policy = text(&mut r, 11)?;
    let age_ms = number(&mut r, 12)?;
    let user_agent = text(&mut r, 13)?;
    let extra = text(&mut r, 14)?;
    let details = match r.byte()? {
        0 => None,
        1 => Some(r.str::<S>()?),
        other => {
            return Err(BinaryError::Invalid {
                field: "details",
                value: u64::from(other),
            })
        }
    };
    if r.at != bytes.len() {
        return Err(BinaryError::Trailing(bytes.len() - r.at));
    }
    Ok(Fields {
        v,
        id,
        received_at_ms,
        project_id,
        fingerprint,
        environment,
        release,
        client_ip,
        request_user_agent,
        noise,
        kind,
        wire,
        blocked_class,
        disposition,
        report_type,
        document_url,
        referrer,
        blocked_url,
        effective_directive,
        violated_directive,
        source_file,
        line_number,
        column_number,
        sample,
        status_code,
        original_policy,
        age_ms,
        user_agent,
        extra,
        details,
    })
}

/// The JSON form of a binary message (for tools and people reading a topic by hand).
pub fn to_json(bytes: &[u8]) -> Result<String, BinaryError> {
    decode(bytes).map(|message| String::from_utf8(message.encode()).unwrap_or_default())
}

/// Appends `value` as an unsigned LEB128 varint: the layout's integers and string lengths, and
/// also ClickHouse RowBinary's `String` length (the processor's row writer calls this).
pub fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        // Low 7 bits with the continuation bit; the cast keeps exactly those bits.
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn string(out: &mut Vec<u8>, text: &str) {
    varint(out, text.len() as u64);
    out.extend_from_slice(text.as_bytes());
}

fn optional_strings(out: &mut Vec<u8>, fields: &[Option<&str>]) {
    let mut present = 0u64;
    for (bit, field) in fields.iter().enumerate() {
        if field.is_some() {
            present |= 1 << bit;
        }
    }
    varint(out, present);
    for text in fields.iter().flatten() {
        string(out, text);
    }
}

fn kind_index(kind: ReportKind) -> u8 {
    index_of(&KINDS, &kind)
}

fn wire_index(wire: WireFormat) -> u8 {
    index_of(&WIRES, &wire)
}

fn class_index(class: BlockedClass) -> u8 {
    index_of(&CLASSES, &class)
}

/// Position of `value` in `table`. Every variant is in its table (test
/// `tables_hold_every_variant`), so the fallback is never written.
fn index_of<T: PartialEq>(table: &[T], value: &T) -> u8 {
    let index = table
        .iter()
        .position(|t| t == value)
        .unwrap_or(u8::MAX.into());
    u8::try_from(index).unwrap_or(u8::MAX)
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, BinaryError> {
        let byte = *self
            .bytes
            .get(self.at)
            .ok_or(BinaryError::Truncated(self.at))?;
        self.at += 1;
        Ok(byte)
    }

    fn varint(&mut self) -> Result<u64, BinaryError> {
        let start = self.at;
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            let bits = u64::from(byte & 0x7f);
            if shift == 63 && bits > 1 {
                return Err(BinaryError::Varint(start));
            }
            value |= bits << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(BinaryError::Varint(start))
    }

    fn str<S: Strings<'a>>(&mut self) -> Result<S::Text, BinaryError> {
        let start = self.at;
        let len = usize::try_from(self.varint()?).map_err(|_| BinaryError::Truncated(start))?;
        let end = self
            .at
            .checked_add(len)
            .filter(|end| *end <= self.bytes.len())
            .ok_or(BinaryError::Truncated(self.at))?;
        let text = S::read(&self.bytes[self.at..end], self.at)?;
        self.at = end;
        Ok(text)
    }

    /// A presence mask with only the low `bits` bits allowed.
    fn mask(&mut self, bits: u32, field: &'static str) -> Result<u64, BinaryError> {
        let value = self.varint()?;
        if value >> bits != 0 {
            return Err(BinaryError::Invalid { field, value });
        }
        Ok(value)
    }

    fn indexed<T>(&mut self, table: &'a [T], field: &'static str) -> Result<&'a T, BinaryError> {
        let index = self.byte()?;
        table.get(usize::from(index)).ok_or(BinaryError::Invalid {
            field,
            value: u64::from(index),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{CertificateDetails, Extra, NetworkErrorDetails, Report};
    use serde_json::json;

    /// A new variant fails to compile here until it is appended to its table.
    #[test]
    fn tables_hold_every_variant() {
        let wire = |w: WireFormat| match w {
            WireFormat::LegacyCsp
            | WireFormat::LegacyCspUnwrapped
            | WireFormat::ReportingBatch
            | WireFormat::ReportingSingle
            | WireFormat::ExpectCt
            | WireFormat::Hpkp
            | WireFormat::ExpectStaple
            | WireFormat::XssAuditor => WIRES.contains(&w),
        };
        let class = |c: BlockedClass| match c {
            BlockedClass::Url
            | BlockedClass::Inline
            | BlockedClass::Eval
            | BlockedClass::WasmEval
            | BlockedClass::Data
            | BlockedClass::Blob
            | BlockedClass::SelfOrigin
            | BlockedClass::Extension
            | BlockedClass::TrustedTypesPolicy
            | BlockedClass::TrustedTypesSink
            | BlockedClass::OtherScheme
            | BlockedClass::None => CLASSES.contains(&c),
        };
        assert!(WIRES.iter().all(|w| wire(*w)));
        assert!(CLASSES.iter().all(|c| class(*c)));
        for (i, w) in WIRES.iter().enumerate() {
            assert_eq!(usize::from(wire_index(*w)), i);
        }
        for (i, c) in CLASSES.iter().enumerate() {
            assert_eq!(usize::from(class_index(*c)), i);
        }
        for (i, k) in KINDS.iter().enumerate() {
            assert_eq!(usize::from(kind_index(*k)), i);
        }
    }

    /// A v1 JSON message as ingest wrote it before the binary layout existed.
    const OLD_JSON: &str = r#"{"v":1,"id":"m","received_at_ms":1,"project_id":3,"fingerprint":"00000000000000aa","report":{"kind":"csp-violation","wire":"legacy-csp","blocked_class":"inline","details":{"type":"none"}}}"#;

    /// The documented layout, byte for byte, for the smallest message.
    #[test]
    fn layout_is_as_documented() {
        let message = ReportMessage::decode(OLD_JSON.as_bytes()).expect("old json decodes");
        let mut expected = vec![MARKER, LAYOUT_VERSION, 1, 1, b'm', 1, 3, 16];
        expected.extend_from_slice(b"00000000000000aa");
        // present; kind csp-violation, wire legacy-csp, class inline, no disposition;
        // report present; details none.
        expected.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(encode(&message), expected);
        assert_eq!(ReportMessage::decode(&expected).expect("decodes"), message);
        assert_eq!(to_json(&expected).expect("decodes"), OLD_JSON);
    }

    fn full_message(details: Details) -> ReportMessage {
        let extra: Extra =
            serde_json::from_str(r#"{"x-unknown":[1,{"b":"\u00e9\n"}],"n":-1.5}"#).expect("object");
        ReportMessage {
            v: 1,
            id: "0193a1f0-0000-7000-8000-000000000000".into(),
            received_at_ms: u64::MAX,
            project_id: 1 << 40,
            environment: Some("prod".into()),
            release: Some(String::new()),
            client_ip: Some("192.0.2.0".into()),
            request_user_agent: Some("Mozilla/5.0 \u{1F600}".into()),
            fingerprint: "0123456789abcdef".into(),
            noise: Some("extension".into()),
            report: Report {
                kind: ReportKind::NetworkError,
                wire: WireFormat::ReportingBatch,
                report_type: Some("network-error".into()),
                disposition: Some(Disposition::Report),
                document_url: Some("https://a.example/p?q#f".into()),
                referrer: Some("https://r.example/".into()),
                blocked_url: Some("https://b.example/x.js".into()),
                blocked_class: BlockedClass::None,
                effective_directive: Some("script-src-elem".into()),
                violated_directive: Some("script-src".into()),
                source_file: Some("https://s.example/app.js".into()),
                line_number: Some(0),
                column_number: Some(127),
                sample: Some("alert(\"x\")".into()),
                status_code: Some(u16::MAX),
                original_policy: Some("default-src 'self'".into()),
                age_ms: Some(128),
                user_agent: Some("UA".into()),
                details,
                extra,
            },
        }
    }

    #[test]
    fn round_trips_every_field_and_every_details_kind() {
        let cases = [
            Details::None,
            Details::NetworkError(NetworkErrorDetails {
                phase: Some("dns".into()),
                elapsed_time_ms: Some(12),
                sampling_fraction: Some(0.5),
                ..Default::default()
            }),
            Details::Certificate(CertificateDetails {
                hostname: "a.example".into(),
                port: Some(443),
                scts: vec![json!({"version": 1})],
                ..Default::default()
            }),
            Details::Fields(
                json!({"type": "corp", "id": 1})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            ),
            Details::Unknown(json!([1, "x", null])),
        ];
        for details in cases {
            let message = full_message(details);
            let bytes = encode(&message);
            let back = ReportMessage::decode(&bytes).expect("decodes");
            assert_eq!(back, message);
            assert_eq!(back.report.extra.as_json(), message.report.extra.as_json());
            // The JSON form of the binary message is the JSON message.
            assert_eq!(
                to_json(&bytes).expect("decodes").into_bytes(),
                message.encode()
            );
            assert!(bytes.len() < message.encode().len());
        }
    }

    /// The unparsed read is the view with `details` and `extra` left as the text the encoder
    /// wrote, and it accepts whatever the view accepts (the processor reads a held payload with
    /// it after the view accepted it).
    #[test]
    fn unparsed_is_the_view_with_its_json_left_as_text() {
        let nel = Details::NetworkError(NetworkErrorDetails {
            phase: Some("dns".into()),
            ..Default::default()
        });
        for details in [Details::None, nel] {
            let message = full_message(details);
            let bytes = encode(&message);
            let view = decode_view(&bytes).expect("decodes");
            let unparsed = decode_unparsed(&bytes).expect("decodes");
            let details_text = match &message.report.details {
                Details::None => None,
                details => Some(serde_json::to_string(details).expect("serialises")),
            };
            assert_eq!(unparsed.details, details_text.as_deref());
            assert_eq!(
                unparsed.extra,
                message.report.extra.raw().map(RawValue::get)
            );
            assert!(matches!(
                unparsed.view.report.details,
                Cow::Owned(Details::None)
            ));
            assert!(unparsed.view.report.extra.is_none());
            let mut filled = unparsed.view.clone();
            filled.report.details = view.report.details.clone();
            filled.report.extra = view.report.extra;
            assert_eq!(filled.into_owned(), message);
            for at in 0..bytes.len() {
                for value in [0x00, 0x01, 0x7f, 0x80, 0xff] {
                    let mut changed = bytes.clone();
                    changed[at] = value;
                    if decode_view(&changed).is_ok() {
                        assert!(decode_unparsed(&changed).is_ok(), "{at}: {value}");
                    }
                }
            }
        }
    }

    /// Messages with every details kind, `extra` or not, and embedded JSON the compact reader
    /// leaves to serde (escapes, whitespace, a float with an exponent).
    fn checked_cases() -> Vec<Vec<u8>> {
        let nel = Details::NetworkError(NetworkErrorDetails {
            phase: Some("dns".into()),
            error_type: Some("dns.name_not_resolved".into()),
            server_ip: Some("203.0.113.7".into()),
            elapsed_time_ms: Some(48),
            sampling_fraction: Some(1.0),
            ..Default::default()
        });
        let cert = Details::Certificate(CertificateDetails {
            hostname: "a.example".into(),
            port: Some(443),
            served_certificate_chain: vec!["-----BEGIN\nX".into()],
            ..Default::default()
        });
        let fields = Details::Fields(
            json!({"id": "x", "n": [1, 2.5]})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        );
        let mut cases = Vec::new();
        for details in [
            Details::None,
            nel,
            cert,
            fields,
            Details::Unknown(json!(null)),
        ] {
            let mut message = full_message(details);
            cases.push(encode(&message));
            message.report.extra = Extra::default();
            cases.push(encode(&message));
        }
        // Texts serde decides, valid and not, behind a valid binary message.
        let mut message = full_message(Details::None);
        message.report.extra = Extra::default();
        let bare = encode(&message);
        for text in [
            r#"{"type":"network-error","phase":"d\u006es","sampling_fraction":1e-5}"#,
            r#"{ "type": "network-error" }"#,
            r#"{"type":"network-error","phase":"dns","phase":"dns"}"#,
            r#"{"type":"network-error","sampling_fraction":1e400}"#,
            r#"{"type":"certificate","port":443}"#,
            r#"{"type":"nothing"}"#,
            "{",
        ] {
            let mut bytes = bare[..bare.len() - 1].to_vec();
            bytes.push(1);
            string(&mut bytes, text);
            cases.push(bytes);
        }
        cases
    }

    /// The processor's record-time read refuses exactly what the view refuses, with the same
    /// error, and gives the same fields (a dead letter's reason and detail come from it).
    #[test]
    fn checked_refuses_what_the_view_refuses_with_the_same_error() {
        let same = |bytes: &[u8]| {
            let checked = decode_checked(bytes);
            let view = MessageView::decode_binary(bytes);
            match (&checked, &view) {
                (Ok(checked), Ok(_)) => {
                    let fields = walk::<AsStr>(bytes).expect("the view accepted it");
                    assert_eq!(*checked, as_bytes(fields), "{bytes:?}");
                    return true;
                }
                (Err(a), Err(b)) => {
                    let chain = |e: &DecodeError| crate::error_chain(e);
                    assert_eq!(chain(a), chain(b), "{bytes:?}");
                }
                _ => panic!(
                    "{bytes:?}: {:?} against {:?}",
                    checked.is_ok(),
                    view.is_ok()
                ),
            }
            false
        };
        let (mut accepted, mut refused) = (0, 0);
        for bytes in checked_cases() {
            for end in 0..=bytes.len() {
                if same(&bytes[..end]) {
                    accepted += 1;
                } else {
                    refused += 1;
                }
            }
            for at in 0..bytes.len() {
                for value in [
                    0x00, 0x01, 0x20, 0x22, 0x2c, 0x31, 0x5c, 0x7b, 0x7d, 0x7f, 0x80, 0xff,
                ] {
                    let mut changed = bytes.clone();
                    changed[at] = value;
                    if same(&changed) {
                        accepted += 1;
                    } else {
                        refused += 1;
                    }
                }
            }
        }
        assert!(accepted > 1_000 && refused > 1_000, "{accepted} {refused}");
        let mut newer = encode(&full_message(Details::None));
        newer[2] = 2;
        assert!(matches!(
            decode_checked(&newer),
            Err(DecodeError::UnsupportedVersion(2))
        ));
    }

    fn as_bytes(text: Fields<&str>) -> Fields<&[u8]> {
        fn b(s: Option<&str>) -> Option<&[u8]> {
            s.map(str::as_bytes)
        }
        Fields {
            v: text.v,
            id: text.id.as_bytes(),
            received_at_ms: text.received_at_ms,
            project_id: text.project_id,
            fingerprint: text.fingerprint.as_bytes(),
            environment: b(text.environment),
            release: b(text.release),
            client_ip: b(text.client_ip),
            request_user_agent: b(text.request_user_agent),
            noise: b(text.noise),
            kind: text.kind,
            wire: text.wire,
            blocked_class: text.blocked_class,
            disposition: text.disposition,
            report_type: b(text.report_type),
            document_url: b(text.document_url),
            referrer: b(text.referrer),
            blocked_url: b(text.blocked_url),
            effective_directive: b(text.effective_directive),
            violated_directive: b(text.violated_directive),
            source_file: b(text.source_file),
            line_number: text.line_number,
            column_number: text.column_number,
            sample: b(text.sample),
            status_code: text.status_code,
            original_policy: b(text.original_policy),
            age_ms: text.age_ms,
            user_agent: b(text.user_agent),
            extra: b(text.extra),
            details: b(text.details),
        }
    }

    /// The unchecked walk gives the checked walk's fields as bytes, and refuses only what that
    /// refuses (the row writer re-reads a payload the checked walk accepted).
    #[test]
    fn fields_are_the_unparsed_fields_as_bytes() {
        for bytes in checked_cases() {
            let mut all = vec![bytes.clone()];
            for at in 0..bytes.len() {
                for value in [0x00, 0x01, 0x7f, 0x80, 0xc3, 0xff] {
                    let mut changed = bytes.clone();
                    changed[at] = value;
                    all.push(changed);
                }
            }
            for bytes in all {
                let Ok(text) = walk::<AsStr>(&bytes) else {
                    continue;
                };
                let raw = decode_fields(&bytes).expect("the checked walk accepted it");
                assert_eq!(raw, as_bytes(text));
            }
        }
        // Bad UTF-8 is the one thing only the checked walk refuses.
        let mut bytes = encode(&full_message(Details::None));
        let at = bytes.len() - 2;
        bytes[at] = 0xff;
        assert!(matches!(decode_unparsed(&bytes), Err(BinaryError::Utf8(_))));
        assert!(decode_fields(&bytes).is_ok());
    }

    #[test]
    fn refuses_what_it_does_not_understand() {
        let bytes = encode(&full_message(Details::None));
        for end in 0..bytes.len() {
            assert!(decode(&bytes[..end]).is_err(), "truncated at {end}");
        }
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(matches!(decode(&trailing), Err(BinaryError::Trailing(1))));
        let mut layout = bytes.clone();
        layout[1] = 2;
        assert!(matches!(
            ReportMessage::decode(&layout),
            Err(crate::DecodeError::UnsupportedLayout(2))
        ));
        let mut version = bytes.clone();
        version[2] = 2;
        assert!(matches!(
            ReportMessage::decode(&version),
            Err(crate::DecodeError::UnsupportedVersion(2))
        ));
        // Every single-byte change decodes to something or fails; it never panics.
        for at in 0..bytes.len() {
            for value in [0x00, 0x01, 0x7f, 0x80, 0xff] {
                let mut changed = bytes.clone();
                changed[at] = value;
                let _ = ReportMessage::decode(&changed);
            }
        }
        let mut varint_overflow = vec![MARKER, LAYOUT_VERSION];
        varint_overflow.extend_from_slice(&[0xff; 11]);
        assert!(matches!(
            decode(&varint_overflow),
            Err(BinaryError::Varint(2))
        ));
    }
}
