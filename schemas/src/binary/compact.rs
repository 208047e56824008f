//! A fast reader of the embedded JSON a binary message holds (`details`, `extra`) in the compact
//! form `serde_json` writes it, beside the serde path, never instead of it.
//!
//! Every binary message the processor consumes has its `details` checked when it arrives (a
//! message that joins an open window is dead-lettered if they are corrupt, exactly as one that
//! opens it), and going through serde for that (an internally tagged enum, buffered into
//! `Content` first, then floats parsed for `sampling_fraction`) was ~6,000 instructions per
//! network-error report. The texts ingest writes are always in one narrow form: no whitespace,
//! the tag first, every key once, strings without `\u` escapes, plain numbers. This module reads
//! exactly that form and answers `None` for anything else, including everything it merely does
//! not recognise (a key it does not know, a `\u` escape, an exponent, a duplicate, whitespace);
//! the caller then asks serde, which decides. So the answer "valid" from here is only ever given
//! for text serde accepts, and serde's verdict (and error) is unchanged for every other text.
//!
//! Why that holds, rule by rule (the tests hold each against serde over the corpora, the
//! fixtures and mutated texts):
//! - strings: `"` then bytes that are not control characters (< 0x20), `\` only as one of the
//!   escapes `\"`, `\\`, `\/`, `\b`, `\f`, `\n`, `\r`, `\t` (no `\u`: a lone surrogate is an
//!   error), then `"`. The input is `&str`, so the bytes are UTF-8; serde_json refuses only
//!   control characters and bad escapes inside a string. A string whose value is returned
//!   (`phase`, `error_type`, `server_ip`, `hostname`) has no escape at all: its bytes are its
//!   value.
//! - numbers: `-?(0|[1-9][0-9]*)(.[0-9]+)?`, at most [`MAX_NUMBER_BYTES`] bytes, no exponent:
//!   serde_json parses every such number into a finite `f64`/`i64`/`u64` (it refuses only
//!   out-of-range exponents). An unsigned field (`elapsed_time_ms`, `port`) takes only
//!   `0|[1-9][0-9]*` up to the field's maximum, as serde does for `u64`/`u16`.
//! - `true`, `false`, `null`; arrays and objects of the above, at most [`MAX_DEPTH`] deep
//!   (serde_json allows 128). In a free-form object (`fields`, a `body`, an SCT, `extra`) a key
//!   may repeat (`serde_json::Map` keeps the last); in `Details` itself it may not (serde's
//!   derived struct refuses a duplicate field, and this answers `None`).
//! - `Details`: `{"type":"<tag>"` first, then only the keys of that variant with the value
//!   types serde derives for them (`Option<String>`: a string, never `null` here; `Vec<String>`:
//!   an array of strings; `Value`: anything above), then `}` and the end of the text
//!   (`serde_json::from_str` allows trailing whitespace; this does not, and says `None`).
//!   A certificate needs its `hostname` (serde: missing field). `{"type":"none"}` has no key.

/// Longest number read here (no float of up to 24 characters without an exponent is out of
/// `f64`'s range).
pub const MAX_NUMBER_BYTES: usize = 24;

/// Deepest nesting of arrays and objects read here (the details object is depth 1).
pub const MAX_DEPTH: u32 = 32;

/// What the processor's row needs of details text: the variant, and the scalar fields that
/// have their own columns. Strings are the JSON strings' values (they had no escape).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Summary<'a> {
    None,
    NetworkError {
        phase: Option<&'a str>,
        error_type: Option<&'a str>,
        server_ip: Option<&'a str>,
        elapsed_time_ms: Option<u64>,
    },
    Certificate {
        hostname: &'a str,
        port: Option<u16>,
    },
    Fields,
    Unknown,
}

/// `details` text in the compact form serde_json writes (see the module doc), read without
/// serde; `None` when it is in any other form, valid or not (then ask serde).
pub fn details(text: &str) -> Option<Summary<'_>> {
    let mut s = Scan { text, at: 0 };
    s.literal("{\"type\":")?;
    let tag = s.string()?;
    let summary = match tag {
        "none" => Summary::None,
        "network-error" => network_error(&mut s)?,
        "certificate" => certificate(&mut s)?,
        "fields" => {
            s.members(|key| (key == "fields").then_some(0), |s, _| s.object(2))?;
            Summary::Fields
        }
        "unknown" => {
            s.members(|key| (key == "body").then_some(0), |s, _| s.value(2))?;
            Summary::Unknown
        }
        _ => return None,
    };
    if matches!(summary, Summary::None) {
        s.byte(b'}')?;
    }
    s.end()?;
    Some(summary)
}

/// Whether `text` is a JSON object in the compact form (see the module doc): then it is valid
/// JSON and an object, as `extra` must be. `false` says nothing (ask serde).
pub fn object(text: &str) -> bool {
    let mut s = Scan { text, at: 0 };
    s.object(1).is_some() && s.end().is_some()
}

fn network_error<'a>(s: &mut Scan<'a>) -> Option<Summary<'a>> {
    let index = |key: &str| match key {
        "phase" => Some(0),
        "error_type" => Some(1),
        "server_ip" => Some(2),
        "elapsed_time_ms" => Some(3),
        "method" => Some(4),
        "protocol" => Some(5),
        "sampling_fraction" => Some(6),
        _ => None,
    };
    let (mut phase, mut error_type, mut server_ip, mut elapsed_time_ms) = (None, None, None, None);
    s.members(index, |s, key| {
        match key {
            0 => phase = Some(s.string()?),
            1 => error_type = Some(s.string()?),
            2 => server_ip = Some(s.string()?),
            3 => elapsed_time_ms = Some(s.unsigned(u64::MAX)?),
            4 | 5 => {
                s.string_text()?;
            }
            _ => s.number()?,
        }
        Some(())
    })?;
    Some(Summary::NetworkError {
        phase,
        error_type,
        server_ip,
        elapsed_time_ms,
    })
}

fn certificate<'a>(s: &mut Scan<'a>) -> Option<Summary<'a>> {
    let index = |key: &str| match key {
        "hostname" => Some(0),
        "port" => Some(1),
        "date_time" => Some(2),
        "effective_expiration_date" => Some(3),
        "include_subdomains" => Some(4),
        "noted_hostname" => Some(5),
        "served_certificate_chain" => Some(6),
        "validated_certificate_chain" => Some(7),
        "known_pins" => Some(8),
        "scts" => Some(9),
        "response_status" => Some(10),
        "cert_status" => Some(11),
        _ => None,
    };
    let (mut hostname, mut port) = (None, None);
    s.members(index, |s, key| {
        match key {
            0 => hostname = Some(s.string()?),
            1 => port = Some(u16::try_from(s.unsigned(u16::MAX.into())?).ok()?),
            4 => s.literal("true").or_else(|| s.literal("false"))?,
            6..=8 => s.array(2, |s| s.string_text().map(drop))?,
            9 => s.array(2, |s| s.value(3))?,
            _ => {
                s.string_text()?;
            }
        }
        Some(())
    })?;
    Some(Summary::Certificate {
        hostname: hostname?,
        port,
    })
}

/// A position in compact JSON text. Every method reads one thing or answers `None` (and then
/// the whole read is abandoned, so where it stopped does not matter).
struct Scan<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Scan<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    fn byte(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.at += 1)
    }

    fn literal(&mut self, literal: &str) -> Option<()> {
        let rest = self.text.as_bytes().get(self.at..)?;
        rest.starts_with(literal.as_bytes())
            .then(|| self.at += literal.len())
    }

    fn end(&self) -> Option<()> {
        (self.at == self.text.len()).then_some(())
    }

    /// A string without escapes or control characters; its value.
    fn string(&mut self) -> Option<&'a str> {
        match self.string_text()? {
            (text, false) => Some(text),
            (_, true) => None,
        }
    }

    /// A string without control characters whose escapes are all one of `\"`, `\\`, `\/`,
    /// `\b`, `\f`, `\n`, `\r`, `\t` (serde_json accepts each; `\u` is left to it): its text
    /// between the quotes, escapes not undone, and whether it has any.
    fn string_text(&mut self) -> Option<(&'a str, bool)> {
        self.byte(b'"')?;
        let start = self.at;
        let bytes = self.text.as_bytes();
        let mut escaped = false;
        let mut at = start;
        loop {
            let stop = at
                + bytes
                    .get(at..)?
                    .iter()
                    .position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
            match bytes[stop] {
                b'"' => {
                    self.at = stop + 1;
                    // A `"` is ASCII, so both ends are character boundaries.
                    return Some((self.text.get(start..stop)?, escaped));
                }
                b'\\'
                    if matches!(
                        bytes.get(stop + 1),
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't')
                    ) =>
                {
                    escaped = true;
                    at = stop + 2;
                }
                _ => return None,
            }
        }
    }

    /// `0|[1-9][0-9]*` of at most `max`.
    fn unsigned(&mut self, max: u64) -> Option<u64> {
        let start = self.at;
        let digits = self.digits();
        if digits == 0 || (digits > 1 && self.text.as_bytes()[start] == b'0') {
            return None;
        }
        let value: u64 = self.text.get(start..self.at)?.parse().ok()?;
        (value <= max).then_some(value)
    }

    /// `-?(0|[1-9][0-9]*)(.[0-9]+)?` of at most [`MAX_NUMBER_BYTES`] bytes.
    fn number(&mut self) -> Option<()> {
        let start = self.at;
        let _ = self.byte(b'-');
        let int_start = self.at;
        let int = self.digits();
        if int == 0 || (int > 1 && self.text.as_bytes()[int_start] == b'0') {
            return None;
        }
        if self.byte(b'.').is_some() && self.digits() == 0 {
            return None;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) || self.at - start > MAX_NUMBER_BYTES {
            return None;
        }
        Some(())
    }

    fn digits(&mut self) -> usize {
        let start = self.at;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.at += 1;
        }
        self.at - start
    }

    /// Any value, at nesting depth `depth` if it is an array or object.
    fn value(&mut self, depth: u32) -> Option<()> {
        match self.peek()? {
            b'"' => self.string_text().map(drop),
            b'{' => self.object(depth),
            b'[' => self.array(depth, |s| s.value(depth + 1)),
            b't' => self.literal("true"),
            b'f' => self.literal("false"),
            b'n' => self.literal("null"),
            _ => self.number(),
        }
    }

    /// `{}` or `{"key":value,...}`, keys free and possibly repeated.
    fn object(&mut self, depth: u32) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.byte(b'{')?;
        if self.byte(b'}').is_some() {
            return Some(());
        }
        loop {
            self.string_text()?;
            self.byte(b':')?;
            self.value(depth + 1)?;
            if self.byte(b'}').is_some() {
                return Some(());
            }
            self.byte(b',')?;
        }
    }

    /// `[]` or `[item,...]`.
    fn array(&mut self, depth: u32, mut item: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.byte(b'[')?;
        if self.byte(b']').is_some() {
            return Some(());
        }
        loop {
            item(self)?;
            if self.byte(b']').is_some() {
                return Some(());
            }
            self.byte(b',')?;
        }
    }

    /// The rest of a `Details` object after its tag: `,"key":value` for the keys `index`
    /// knows (it numbers them from 0, below 32), each at most once, `value` reading the value
    /// of key number `index`; then `}`.
    fn members(
        &mut self,
        index: impl Fn(&str) -> Option<u32>,
        mut value: impl FnMut(&mut Self, u32) -> Option<()>,
    ) -> Option<()> {
        let mut seen = 0u32;
        while self.byte(b',').is_some() {
            let index = index(self.string()?)?;
            if seen & (1 << index) != 0 {
                return None;
            }
            seen |= 1 << index;
            self.byte(b':')?;
            value(self, index)?;
        }
        self.byte(b'}')
    }
}

#[cfg(test)]
mod tests;
