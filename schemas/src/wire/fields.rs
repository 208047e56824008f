//! Lenient field lookup on a parsed JSON object: key spelling, numeric strings, leftovers.
//!
//! Browsers, relays and old captures spell the same key `document-uri`, `documentURI`,
//! `documentURL` or `document_uri`, and send numbers as strings (`"status-code": "200"`). A
//! [`Fields`] view lets a wire parser *take* each field it knows by a list of canonical names
//! (lowercase, without `-`/`_`); whatever it did not take (unknown keys, or values of a type
//! we could not use) is handed back verbatim as [`Fields::into_map`] so nothing is lost.

use std::borrow::Cow;

use serde_json::{Map, Value as JsonValue};
use simd_json::StaticNode;

use super::json::{to_json, Json, Members};

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
    value: Json<'a, 'v>,
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

    pub(crate) fn new(object: Members<'a, 'v>) -> Self {
        let mut entries: Vec<Entry<'a, 'v>> = Vec::with_capacity(object.len());
        entries.extend(object.map(|(key, value)| Entry {
            key,
            first: canonical_first(key),
            value,
            taken: false,
        }));
        // Deterministic order whatever the map's iteration order: leftovers and lookups of
        // duplicate spellings (`document-uri` and `documentURI` both present) are stable.
        entries.sort_by(|a, b| a.key.cmp(b.key));
        // The same key twice: the last occurrence wins, as in `JSON.parse`, whatever the
        // object's size. The tape keeps every duplicate in body order (the stable sort keeps
        // that order).
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
        mut convert: impl FnMut(Json<'a, 'v>) -> Option<T>,
    ) -> Option<T> {
        for alias in aliases {
            for entry in self.entries.iter_mut().filter(|e| !e.taken) {
                if !may_match(entry.key, entry.first, alias) || !key_matches(entry.key, alias) {
                    continue;
                }
                if entry.value.is_null() {
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
    pub(crate) fn raw(&mut self, aliases: &[&str]) -> Option<Json<'a, 'v>> {
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
        self.take_with(aliases, |v| match (v.scalar(), v.as_str()) {
            (Some(StaticNode::F64(f)), _) => Some(f),
            (Some(StaticNode::U64(n)), _) => Some(n as f64),
            (Some(StaticNode::I64(n)), _) => Some(n as f64),
            (_, Some(s)) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
            _ => None,
        })
    }

    /// A boolean; accepts `"true"`/`"false"` strings.
    pub(crate) fn bool(&mut self, aliases: &[&str]) -> Option<bool> {
        self.take_with(aliases, |v| match (v.scalar(), v.as_str()) {
            (Some(StaticNode::Bool(b)), _) => Some(b),
            (_, Some(s)) if s.eq_ignore_ascii_case("true") => Some(true),
            (_, Some(s)) if s.eq_ignore_ascii_case("false") => Some(false),
            _ => None,
        })
    }

    /// An array whose every element is a string (certificate chains, pins).
    pub(crate) fn strings(&mut self, aliases: &[&str]) -> Option<Vec<String>> {
        self.take_with(aliases, |v| {
            v.as_array()?
                .map(|item| item.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
        })
    }

    /// An array of arbitrary values, converted as sent (SCTs).
    pub(crate) fn values(&mut self, aliases: &[&str]) -> Option<Vec<JsonValue>> {
        self.take_with(aliases, |v| Some(v.as_array()?.map(to_json).collect()))
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

/// The text of a string, number or boolean; a string borrowed from the body.
fn scalar_text<'v>(value: Json<'_, 'v>) -> Option<Cow<'v, str>> {
    if let Some(text) = value.as_str() {
        return Some(Cow::Borrowed(text));
    }
    match value.scalar()? {
        StaticNode::U64(n) => Some(Cow::Owned(n.to_string())),
        StaticNode::I64(n) => Some(Cow::Owned(n.to_string())),
        StaticNode::F64(f) => Some(Cow::Owned(f.to_string())),
        StaticNode::Bool(b) => Some(Cow::Owned(b.to_string())),
        StaticNode::Null => None,
    }
}

/// Largest float that converts to `u64`/`i64` without saturating (2^63).
const FLOAT_INT_BOUND: f64 = 9_223_372_036_854_775_808.0;

fn float_to_i64(f: f64) -> Option<i64> {
    (f.is_finite() && f.fract() == 0.0 && f.abs() < FLOAT_INT_BOUND).then_some(f as i64)
}

fn lenient_i64(value: Json<'_, '_>) -> Option<i64> {
    if let Some(s) = value.as_str() {
        let s = s.trim();
        return s
            .parse::<i64>()
            .ok()
            .or_else(|| s.parse::<f64>().ok().and_then(float_to_i64));
    }
    match value.scalar()? {
        StaticNode::I64(n) => Some(n),
        StaticNode::U64(n) => i64::try_from(n).ok(),
        StaticNode::F64(f) => float_to_i64(f),
        StaticNode::Bool(_) | StaticNode::Null => None,
    }
}

fn lenient_u64(value: Json<'_, '_>) -> Option<u64> {
    if let Some(s) = value.as_str() {
        return s
            .trim()
            .parse::<u64>()
            .ok()
            .or_else(|| lenient_i64(value).and_then(|n| u64::try_from(n).ok()));
    }
    match value.scalar()? {
        StaticNode::U64(n) => Some(n),
        _ => lenient_i64(value).and_then(|n| u64::try_from(n).ok()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> simd_json::Tape<'static> {
        let bytes: &'static mut [u8] = Box::leak(text.as_bytes().to_vec().into_boxed_slice());
        simd_json::to_tape(bytes).expect("valid json in test")
    }

    fn object<'t>(tape: &'t simd_json::Tape<'static>) -> Members<'t, 'static> {
        Json::root(&tape.0)
            .and_then(Json::as_object)
            .expect("object")
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
        let mut fields = Fields::new(object(&value));
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
        let mut fields = Fields::new(object(&value));
        assert_eq!(fields.string(&["documenturi"]), None);
        assert_eq!(fields.string(&["referrer"]), None);
        assert_eq!(
            fields.string(&["request"]).as_deref(),
            Some("GET / HTTP/1.1")
        );
        assert!(fields.into_map().is_empty());
    }
}
