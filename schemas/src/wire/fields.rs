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

mod names;

/// A JSON object being taken apart field by field.
#[derive(Debug)]
pub(crate) struct Fields<'a, 'v> {
    /// In body order, unless [`Fields::new`] had to sort them (see there).
    entries: Vec<Entry<'a, 'v>>,
    /// The names some entry spells: a lookup of a name no key spells stops here.
    present: names::IdSet,
}

#[derive(Debug)]
struct Entry<'a, 'v> {
    key: &'a str,
    /// The name `key` spells ([`names::id_of_key`]), classified once: the wire parsers look up
    /// about fifteen names, and comparing ids spares comparing every key with every alias.
    id: Option<names::Id>,
    value: Json<'a, 'v>,
    taken: bool,
}

/// Whether `key` equals `canonical` ignoring ASCII case and the separators `-` and `_`.
/// `canonical` must already be lowercase without separators (`"documenturi"`). A `const fn`:
/// [`names`] checks its table with it at compile time.
pub(crate) const fn key_matches(key: &str, canonical: &str) -> bool {
    let (key, canonical) = (key.as_bytes(), canonical.as_bytes());
    let (mut k, mut c) = (0, 0);
    while k < key.len() {
        let b = key[k];
        k += 1;
        if b == b'-' || b == b'_' {
            continue;
        }
        if c == canonical.len() || b.to_ascii_lowercase() != canonical[c] {
            return false;
        }
        c += 1;
    }
    c == canonical.len()
}

impl<'a, 'v> Fields<'a, 'v> {
    /// A view with no fields (a Reporting API item without `body`).
    pub(crate) fn empty() -> Self {
        Self {
            entries: Vec::new(),
            present: 0,
        }
    }

    pub(crate) fn new(object: Members<'a, 'v>) -> Self {
        let mut entries: Vec<Entry<'a, 'v>> = Vec::with_capacity(object.len());
        let (mut present, mut repeated, mut unnamed) = (0, false, 0);
        for (key, value) in object {
            let id = names::id_of_key(key);
            match id {
                Some(id) => {
                    repeated |= present & names::bit(id) != 0;
                    present |= names::bit(id);
                }
                None => unnamed += 1,
            }
            entries.push(Entry {
                key,
                id,
                value,
                taken: false,
            });
        }
        // Lookups see the keys spelling one name in key order (`document-uri` before
        // `documentURI`), whatever the body's order, and of a key sent twice only the last
        // occurrence, as `JSON.parse` (the tape keeps every duplicate in body order; the stable
        // sort keeps that order). When no name is spelled twice and at most one key spells
        // none (what browsers send), every lookup has one candidate at most and no key is
        // duplicated: the order does not matter and the sort is skipped ([`Fields::drain_into`]
        // sorts what is left).
        if repeated || unnamed > 1 {
            entries.sort_by(|a, b| a.key.cmp(b.key));
            entries.dedup_by(|later, earlier| {
                let same = later.key == earlier.key;
                if same {
                    std::mem::swap(later, earlier);
                }
                same
            });
        }
        Self { entries, present }
    }

    /// Takes the first value matching `aliases` (in alias order) that `convert` accepts.
    /// `null` values are taken and skipped; values `convert` refuses are left for `extra`.
    /// It and the getters the wire parsers call are inlined, so that the ids of their
    /// constant aliases are folded at compile time.
    #[inline]
    pub(crate) fn take_with<T>(
        &mut self,
        aliases: &[&str],
        mut convert: impl FnMut(Json<'a, 'v>) -> Option<T>,
    ) -> Option<T> {
        for alias in aliases {
            // A name's canonical spelling (what the wire parsers pass) is matched by id; any
            // other alias byte by byte.
            let id = names::id_of_canonical(alias);
            if id.is_some_and(|id| self.present & names::bit(id) == 0) {
                continue;
            }
            let matches = |entry: &Entry<'_, '_>| match id {
                Some(id) => entry.id == Some(id),
                None => key_matches(entry.key, alias),
            };
            for entry in self.entries.iter_mut().filter(|e| !e.taken) {
                if !matches(entry) {
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
    #[inline]
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
    #[inline]
    pub(crate) fn text(&mut self, aliases: &[&str]) -> Option<Cow<'v, str>> {
        self.text_keep_empty(aliases).filter(|s| !s.is_empty())
    }

    /// A string field kept even when empty (`blocked-uri: ""` means something), borrowed as
    /// [`Fields::text`].
    #[inline]
    pub(crate) fn text_keep_empty(&mut self, aliases: &[&str]) -> Option<Cow<'v, str>> {
        self.take_with(aliases, scalar_text)
    }

    /// A non-negative integer; accepts numeric strings and integral floats.
    #[inline]
    pub(crate) fn u64(&mut self, aliases: &[&str]) -> Option<u64> {
        self.take_with(aliases, lenient_u64)
    }

    /// A non-negative integer that fits in `u16` (status codes, ports).
    #[inline]
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
        let mut left: Vec<_> = self.entries.into_iter().filter(|e| !e.taken).collect();
        // Entries [`Fields::new`] did not sort have distinct keys: sorted, they are in the
        // order the sorted ones are.
        left.sort_by(|a, b| a.key.cmp(b.key));
        for entry in left {
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

    /// `Fields` as it was before names were classified (every entry sorted by key and
    /// deduplicated, every alias compared with every key byte by byte): the reference
    /// `same_answers_as_comparing_every_key` holds `Fields` to.
    struct Reference<'a, 'v> {
        entries: Vec<(&'a str, Json<'a, 'v>, bool)>,
    }

    impl<'a, 'v> Reference<'a, 'v> {
        fn new(object: Members<'a, 'v>) -> Self {
            let mut entries: Vec<_> = object.map(|(key, value)| (key, value, false)).collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            entries.dedup_by(|later, earlier| {
                let same = later.0 == earlier.0;
                if same {
                    std::mem::swap(later, earlier);
                }
                same
            });
            Self { entries }
        }

        fn take_with<T>(
            &mut self,
            aliases: &[&str],
            mut convert: impl FnMut(Json<'a, 'v>) -> Option<T>,
        ) -> Option<T> {
            for alias in aliases {
                for entry in self.entries.iter_mut().filter(|e| !e.2) {
                    if !key_matches(entry.0, alias) {
                        continue;
                    }
                    if entry.1.is_null() {
                        entry.2 = true;
                        continue;
                    }
                    if let Some(found) = convert(entry.1) {
                        entry.2 = true;
                        return Some(found);
                    }
                }
            }
            None
        }

        fn into_map(self) -> Map<String, JsonValue> {
            let mut map = Map::new();
            for (key, value, _) in self.entries.into_iter().filter(|e| !e.2) {
                if !map.contains_key(key) {
                    map.insert(key.to_owned(), to_json(value));
                }
            }
            map
        }
    }

    /// Lookups the wire parsers make (canonical names, one or several), and aliases the table
    /// does not hold (compared byte by byte).
    const LOOKUPS: &[&[&str]] = &[
        super::super::keys::DOCUMENT,
        super::super::keys::BLOCKED,
        super::super::keys::LINE,
        super::super::keys::SAMPLE,
        &["violateddirective"],
        &["effectivedirective"],
        &["statuscode"],
        &["request"],
        &["requesturl", "documenturi", "documenturl"],
        &["type"],
        &["cspreport"],
        &["a"],
        &["zz", "documenturi"],
        &["document-uri"],
        &["documentURI"],
    ];

    /// Keys that spell the same names several ways, exact duplicates, names the table holds
    /// under spellings it does not list, and unknown keys.
    const KEYS: &[&str] = &[
        "document-uri",
        "documentURI",
        "document_uri",
        "DOCUMENT-URI",
        "documentURL",
        "blocked-uri",
        "blockedURL",
        "-blocked-uri",
        "line-number",
        "lineno",
        "LineNo",
        "script-sample",
        "sample",
        "violated-directive",
        "effective-directive",
        "status-code",
        "request",
        "request-url",
        "type",
        "csp-report",
        "a",
        "A",
        "zz",
        "z-z",
        "",
    ];

    const VALUES: &[&str] = &[
        "null",
        "\"\"",
        "\"x\"",
        "\"7\"",
        "5",
        "-1",
        "1.5",
        "true",
        "[1]",
        "{\"k\":1}",
    ];

    /// One lookup of `Fields` and of the reference, through each kind of conversion.
    fn both<'a, 'v>(
        fields: &mut Fields<'a, 'v>,
        reference: &mut Reference<'a, 'v>,
        aliases: &[&str],
        conversion: u8,
    ) -> (String, String) {
        match conversion % 3 {
            0 => (
                format!("{:?}", fields.take_with(aliases, scalar_text)),
                format!("{:?}", reference.take_with(aliases, scalar_text)),
            ),
            1 => (
                format!("{:?}", fields.take_with(aliases, lenient_u64)),
                format!("{:?}", reference.take_with(aliases, lenient_u64)),
            ),
            _ => (
                format!("{:?}", fields.take_with(aliases, |v| Some(to_json(v)))),
                format!("{:?}", reference.take_with(aliases, |v| Some(to_json(v)))),
            ),
        }
    }

    proptest::proptest! {
        /// Every lookup answers what comparing every key with every alias answered, in any
        /// order of lookups, and the same keys are left over, in the same order.
        #[test]
        fn same_answers_as_comparing_every_key(
            members in proptest::collection::vec(
                (proptest::sample::select(KEYS), proptest::sample::select(VALUES)),
                0..12,
            ),
            lookups in proptest::collection::vec(
                (proptest::sample::select(LOOKUPS), proptest::num::u8::ANY),
                0..12,
            ),
        ) {
            let body = members
                .iter()
                .map(|(key, value)| format!("{}:{value}", JsonValue::from(*key)))
                .collect::<Vec<_>>()
                .join(",");
            let tape = parse(&format!("{{{body}}}"));
            let mut fields = Fields::new(object(&tape));
            let mut reference = Reference::new(object(&tape));
            for (aliases, conversion) in lookups {
                let (got, want) = both(&mut fields, &mut reference, aliases, conversion);
                proptest::prop_assert_eq!(got, want, "{:?}", aliases);
            }
            let (got, want) = (fields.into_map(), reference.into_map());
            // Compared as text: the maps keep insertion order.
            proptest::prop_assert_eq!(
                serde_json::to_string(&got).expect("a map serialises"),
                serde_json::to_string(&want).expect("a map serialises")
            );
        }
    }
}
