//! Lenient field lookup on a parsed JSON object: key spelling, numeric strings, leftovers.
//!
//! Browsers, relays and old captures spell the same key `document-uri`, `documentURI`,
//! `documentURL` or `document_uri`, and send numbers as strings (`"status-code": "200"`). A
//! [`Fields`] view lets a wire parser *take* each field it knows by a list of canonical names
//! (lowercase, without `-`/`_`); whatever it did not take (unknown keys, or values of a type
//! we could not use) is handed back verbatim as [`Fields::into_map`] so nothing is lost.

use std::borrow::Cow;

use serde_json::{Map, Number, Value as JsonValue};
use simd_json::{BorrowedValue, StaticNode};

/// A JSON object being taken apart field by field.
#[derive(Debug)]
pub(crate) struct Fields<'a, 'v> {
    entries: Vec<Entry<'a, 'v>>,
}

#[derive(Debug)]
struct Entry<'a, 'v> {
    key: &'a str,
    /// The first byte of `key`'s canonical spelling, computed once: a wire parser looks up
    /// about fifteen aliases, each against every entry, and this and the key's length tell
    /// most pairs apart before [`key_matches`] compares them byte by byte.
    first: Option<u8>,
    value: &'a BorrowedValue<'v>,
    taken: bool,
}

/// The first byte of `key` lowercased, skipping `-` and `_` (the first byte [`key_matches`]
/// compares).
fn canonical_first(key: &str) -> Option<u8> {
    key.bytes()
        .find(|b| *b != b'-' && *b != b'_')
        .map(|b| b.to_ascii_lowercase())
}

/// Whether `key`, whose [`canonical_first`] is `first`, can match `canonical` at all: their
/// first bytes agree and `key` is not shorter (dropping separators only shortens a key).
/// Never false where [`key_matches`] is true; it only spares the byte-by-byte comparison.
fn may_match(key: &str, first: Option<u8>, canonical: &str) -> bool {
    first == canonical.bytes().next() && key.len() >= canonical.len()
}

/// Whether `key` equals `canonical` ignoring ASCII case and the separators `-` and `_`.
/// `canonical` must already be lowercase without separators (`"documenturi"`).
pub(crate) fn key_matches(key: &str, canonical: &str) -> bool {
    let mut wanted = canonical.bytes();
    for b in key.bytes().filter(|b| *b != b'-' && *b != b'_') {
        if wanted.next() != Some(b.to_ascii_lowercase()) {
            return false;
        }
    }
    wanted.next().is_none()
}

impl<'a, 'v> Fields<'a, 'v> {
    /// A view with no fields (a Reporting API item without `body`).
    pub(crate) fn empty() -> Self {
        Self {
            entries: Vec::new(),
        }
    }

    pub(crate) fn new(object: &'a simd_json::borrowed::Object<'v>) -> Self {
        let mut entries: Vec<Entry<'a, 'v>> = object
            .iter()
            .map(|(key, value)| Entry {
                key: key.as_ref(),
                first: canonical_first(key),
                value,
                taken: false,
            })
            .collect();
        // Deterministic order whatever the map's iteration order: leftovers and lookups of
        // duplicate spellings (`document-uri` and `documentURI` both present) are stable.
        entries.sort_by(|a, b| a.key.cmp(b.key));
        // The same key twice: the last occurrence wins, as in `JSON.parse`, whatever the
        // object's size. simd-json keeps every duplicate of objects up to 32 keys, in body
        // order (the stable sort keeps that order), and only the last of bigger, hash-backed
        // ones.
        entries.dedup_by(|later, earlier| {
            let same = later.key == earlier.key;
            if same {
                std::mem::swap(later, earlier);
            }
            same
        });
        Self { entries }
    }

    /// Takes the first value matching `aliases` (in alias order) that `convert` accepts.
    /// `null` values are taken and skipped; values `convert` refuses are left for `extra`.
    pub(crate) fn take_with<T>(
        &mut self,
        aliases: &[&str],
        mut convert: impl FnMut(&'a BorrowedValue<'v>) -> Option<T>,
    ) -> Option<T> {
        for alias in aliases {
            for entry in self.entries.iter_mut().filter(|e| !e.taken) {
                if !may_match(entry.key, entry.first, alias) || !key_matches(entry.key, alias) {
                    continue;
                }
                if matches!(entry.value, BorrowedValue::Static(StaticNode::Null)) {
                    entry.taken = true;
                    continue;
                }
                if let Some(found) = convert(entry.value) {
                    entry.taken = true;
                    return Some(found);
                }
            }
        }
        None
    }

    /// The raw value of the first key matching `aliases`, taken whatever its type.
    pub(crate) fn raw(&mut self, aliases: &[&str]) -> Option<&'a BorrowedValue<'v>> {
        self.take_with(aliases, Some)
    }

    /// A string field; numbers and booleans are accepted as their JSON text. An empty
    /// string is taken and reported as absent.
    pub(crate) fn string(&mut self, aliases: &[&str]) -> Option<String> {
        self.take_with(aliases, |v| scalar_text(v).map(|s| s.into_owned()))
            .filter(|s| !s.is_empty())
    }

    /// [`Fields::string`] borrowed from the parsed body (owned only for a number or boolean's
    /// text): what the report's own fields take.
    pub(crate) fn text(&mut self, aliases: &[&str]) -> Option<Cow<'v, str>> {
        self.text_keep_empty(aliases).filter(|s| !s.is_empty())
    }

    /// A string field kept even when empty (`blocked-uri: ""` means something), borrowed as
    /// [`Fields::text`].
    pub(crate) fn text_keep_empty(&mut self, aliases: &[&str]) -> Option<Cow<'v, str>> {
        self.take_with(aliases, scalar_text)
    }

    /// A non-negative integer; accepts numeric strings and integral floats.
    pub(crate) fn u64(&mut self, aliases: &[&str]) -> Option<u64> {
        self.take_with(aliases, lenient_u64)
    }

    /// A non-negative integer that fits in `u16` (status codes, ports).
    pub(crate) fn u16(&mut self, aliases: &[&str]) -> Option<u16> {
        self.take_with(aliases, |v| {
            lenient_u64(v).and_then(|n| u16::try_from(n).ok())
        })
    }

    /// A signed integer, for values that may legitimately be negative (`age` in the wild).
    pub(crate) fn i64(&mut self, aliases: &[&str]) -> Option<i64> {
        self.take_with(aliases, lenient_i64)
    }

    /// A float; accepts numeric strings.
    pub(crate) fn f64(&mut self, aliases: &[&str]) -> Option<f64> {
        self.take_with(aliases, |v| match v {
            BorrowedValue::Static(StaticNode::F64(f)) => Some(*f),
            BorrowedValue::Static(StaticNode::U64(n)) => Some(*n as f64),
            BorrowedValue::Static(StaticNode::I64(n)) => Some(*n as f64),
            BorrowedValue::String(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
            _ => None,
        })
    }

    /// A boolean; accepts `"true"`/`"false"` strings.
    pub(crate) fn bool(&mut self, aliases: &[&str]) -> Option<bool> {
        self.take_with(aliases, |v| match v {
            BorrowedValue::Static(StaticNode::Bool(b)) => Some(*b),
            BorrowedValue::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
            BorrowedValue::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
            _ => None,
        })
    }

    /// An array whose every element is a string (certificate chains, pins).
    pub(crate) fn strings(&mut self, aliases: &[&str]) -> Option<Vec<String>> {
        self.take_with(aliases, |v| match v {
            BorrowedValue::Array(items) => items
                .iter()
                .map(|item| as_str(item).map(str::to_owned))
                .collect::<Option<Vec<_>>>(),
            _ => None,
        })
    }

    /// An array of arbitrary values, converted as sent (SCTs).
    pub(crate) fn values(&mut self, aliases: &[&str]) -> Option<Vec<JsonValue>> {
        self.take_with(aliases, |v| match v {
            BorrowedValue::Array(items) => Some(items.iter().map(to_json).collect()),
            _ => None,
        })
    }

    /// Everything not taken, keys as sent, sorted by key.
    pub(crate) fn into_map(self) -> Map<String, JsonValue> {
        let mut map = Map::new();
        self.drain_into(&mut map);
        map
    }

    /// Adds everything not taken to `map`; a key already present there wins.
    pub(crate) fn drain_into(self, map: &mut Map<String, JsonValue>) {
        for entry in self.entries.into_iter().filter(|e| !e.taken) {
            if !map.contains_key(entry.key) {
                map.insert(entry.key.to_owned(), to_json(entry.value));
            }
        }
    }
}

/// The text of a JSON string value.
pub(crate) fn as_str<'x>(value: &'x BorrowedValue<'_>) -> Option<&'x str> {
    match value {
        BorrowedValue::String(s) => Some(s.as_ref()),
        _ => None,
    }
}

/// The text of a JSON string value, borrowed from the parsed body (simd-json unescapes strings
/// in place, so a string value is a slice of the body; cloning the `Cow` copies no text then).
pub(crate) fn as_text<'v>(value: &BorrowedValue<'v>) -> Option<Cow<'v, str>> {
    match value {
        BorrowedValue::String(s) => Some(s.clone()),
        _ => None,
    }
}

/// The text of a string, number or boolean; a string borrowed as in [`as_text`].
fn scalar_text<'v>(value: &BorrowedValue<'v>) -> Option<Cow<'v, str>> {
    match value {
        BorrowedValue::String(s) => Some(s.clone()),
        BorrowedValue::Static(StaticNode::U64(n)) => Some(Cow::Owned(n.to_string())),
        BorrowedValue::Static(StaticNode::I64(n)) => Some(Cow::Owned(n.to_string())),
        BorrowedValue::Static(StaticNode::F64(f)) => Some(Cow::Owned(f.to_string())),
        BorrowedValue::Static(StaticNode::Bool(b)) => Some(Cow::Owned(b.to_string())),
        _ => None,
    }
}

/// Largest float that converts to `u64`/`i64` without saturating (2^63).
const FLOAT_INT_BOUND: f64 = 9_223_372_036_854_775_808.0;

fn float_to_i64(f: f64) -> Option<i64> {
    (f.is_finite() && f.fract() == 0.0 && f.abs() < FLOAT_INT_BOUND).then_some(f as i64)
}

fn lenient_i64(value: &BorrowedValue<'_>) -> Option<i64> {
    match value {
        BorrowedValue::Static(StaticNode::I64(n)) => Some(*n),
        BorrowedValue::Static(StaticNode::U64(n)) => i64::try_from(*n).ok(),
        BorrowedValue::Static(StaticNode::F64(f)) => float_to_i64(*f),
        BorrowedValue::String(s) => {
            let s = s.trim();
            s.parse::<i64>()
                .ok()
                .or_else(|| s.parse::<f64>().ok().and_then(float_to_i64))
        }
        _ => None,
    }
}

fn lenient_u64(value: &BorrowedValue<'_>) -> Option<u64> {
    match value {
        BorrowedValue::Static(StaticNode::U64(n)) => Some(*n),
        BorrowedValue::String(s) => s
            .trim()
            .parse::<u64>()
            .ok()
            .or_else(|| lenient_i64(value).and_then(|n| u64::try_from(n).ok())),
        _ => lenient_i64(value).and_then(|n| u64::try_from(n).ok()),
    }
}

/// Converts a borrowed simd-json value to an owned `serde_json` value, object keys sorted so
/// the output does not depend on hash-map iteration order.
pub(crate) fn to_json(value: &BorrowedValue<'_>) -> JsonValue {
    match value {
        BorrowedValue::Static(StaticNode::Null) => JsonValue::Null,
        BorrowedValue::Static(StaticNode::Bool(b)) => JsonValue::Bool(*b),
        BorrowedValue::Static(StaticNode::I64(n)) => JsonValue::Number((*n).into()),
        BorrowedValue::Static(StaticNode::U64(n)) => JsonValue::Number((*n).into()),
        BorrowedValue::Static(StaticNode::F64(f)) => {
            Number::from_f64(*f).map_or(JsonValue::Null, JsonValue::Number)
        }
        BorrowedValue::String(s) => JsonValue::String(s.to_string()),
        BorrowedValue::Array(items) => JsonValue::Array(items.iter().map(to_json).collect()),
        BorrowedValue::Object(object) => {
            let mut pairs: Vec<_> = object.iter().collect();
            pairs.sort_by(|a, b| a.0.cmp(b.0));
            JsonValue::Object(
                pairs
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), to_json(v)))
                    .collect(),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use simd_json::prelude::ValueAsObject;

    fn parse(text: &str) -> BorrowedValue<'static> {
        let mut bytes = text.as_bytes().to_vec();
        let value = simd_json::to_borrowed_value(&mut bytes).expect("valid json in test");
        value.into_static()
    }

    #[test]
    fn key_spellings_match() {
        for key in [
            "document-uri",
            "documentURI",
            "document_uri",
            "DOCUMENT-URI",
        ] {
            assert!(key_matches(key, "documenturi"), "{key}");
        }
        assert!(!key_matches("documentURL", "documenturi"));
        assert!(!key_matches("document-uri-x", "documenturi"));
        assert!(!key_matches("document", "documenturi"));
    }

    /// The pre-check never refuses a pair `key_matches` accepts (it only skips comparisons,
    /// it never decides a match).
    #[test]
    fn pre_check_never_refuses_a_match() {
        let keys = [
            "document-uri",
            "documentURI",
            "Document_URI",
            "document-uri-x",
            "DOCUMENT-URL",
            "",
            "-_",
            "\u{e9}-URI",
            "_-lineNo",
        ];
        let canonical = [
            "documenturi",
            "documenturl",
            "documenturix",
            "",
            "\u{e9}uri",
            "lineno",
        ];
        let mut matched = 0;
        for key in keys {
            for wanted in canonical {
                if key_matches(key, wanted) {
                    matched += 1;
                    assert!(
                        may_match(key, canonical_first(key), wanted),
                        "{key:?} {wanted:?}"
                    );
                }
            }
        }
        assert_eq!(matched, 9);
        assert!(!may_match(
            "document-uri",
            canonical_first("document-uri"),
            "blockeduri"
        ));
        assert!(!may_match(
            "lineno",
            canonical_first("lineno"),
            "linenumber"
        ));
    }

    #[test]
    fn numbers_are_lenient() {
        let value = parse(
            r#"{"a":"200","b":12.0,"c":-1,"d":"x","e":" 7 ","f":1.5,"g":18446744073709551615}"#,
        );
        let object = value.as_object().expect("object");
        let mut fields = Fields::new(object);
        assert_eq!(fields.u16(&["a"]), Some(200));
        assert_eq!(fields.u64(&["b"]), Some(12));
        assert_eq!(fields.u64(&["c"]), None);
        assert_eq!(fields.u64(&["d"]), None);
        assert_eq!(fields.u64(&["e"]), Some(7));
        assert_eq!(fields.u64(&["f"]), None);
        assert_eq!(fields.u64(&["g"]), Some(u64::MAX));
        let extra = fields.into_map();
        let keys: Vec<_> = extra.keys().map(String::as_str).collect();
        assert_eq!(keys, ["c", "d", "f"], "refused values are kept verbatim");
    }

    #[test]
    fn null_and_empty_are_absent_and_aliases_are_ordered() {
        let value = parse(r#"{"document-uri":null,"request":"GET / HTTP/1.1","referrer":""}"#);
        let object = value.as_object().expect("object");
        let mut fields = Fields::new(object);
        assert_eq!(fields.string(&["documenturi"]), None);
        assert_eq!(fields.string(&["referrer"]), None);
        assert_eq!(
            fields.string(&["request"]).as_deref(),
            Some("GET / HTTP/1.1")
        );
        assert!(fields.into_map().is_empty());
    }
}
