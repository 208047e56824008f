//! A report's unknown fields as bounded raw JSON text, and the byte estimates that bound memory.
//!
//! [`Extra`] keeps the fields a wire parser did not name as the JSON text of one object
//! (`serde_json`'s `RawValue`), not a `serde_json::Value` tree: a tree of small numbers costs
//! about 20 bytes of memory per byte of JSON (RELIABILITY.md), text costs one. The Kafka message
//! is unchanged by this: the text is written into the message verbatim, exactly where the object
//! used to be, and read back from it the same way, so old and new messages stay one format
//! (the compatibility rule of [`crate::message`]).

use std::fmt;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// Unknown fields of a report: the JSON text of one object, or nothing.
#[derive(Clone, Default)]
pub struct Extra(Option<Box<RawValue>>);

impl Extra {
    /// No unknown field.
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// Bytes of JSON text held (0 when empty).
    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |raw| raw.get().len())
    }

    /// The object's JSON text (`{}` when empty).
    pub fn as_json(&self) -> &str {
        self.0.as_ref().map_or("{}", |raw| raw.get())
    }

    /// The object's JSON text as a raw value, `None` when empty.
    pub fn raw(&self) -> Option<&RawValue> {
        self.0.as_deref()
    }

    /// The fields of `raw`, which [`object_text`] accepted and found non-empty.
    pub(crate) fn from_raw(raw: &RawValue) -> Self {
        Self(Some(raw.to_owned()))
    }

    /// The fields as a map (parsed on demand; for tests and tools, not the hot path).
    pub fn to_map(&self) -> Map<String, Value> {
        serde_json::from_str(self.as_json()).unwrap_or_default()
    }

    /// Adds the fields of `more` that are not present yet (a key already present wins).
    pub fn absorb(&mut self, more: Map<String, Value>) {
        if more.is_empty() {
            return;
        }
        let merged = if self.is_empty() {
            more
        } else {
            let mut merged = self.to_map();
            for (key, value) in more {
                merged.entry(key).or_insert(value);
            }
            merged
        };
        *self = Self::from(merged);
    }
}

impl From<Map<String, Value>> for Extra {
    fn from(map: Map<String, Value>) -> Self {
        if map.is_empty() {
            return Self(None);
        }
        // A map of strings to values always serialises, and its text is valid JSON.
        let text = serde_json::to_string(&map).unwrap_or_else(|_| "{}".to_owned());
        Self(RawValue::from_string(text).ok())
    }
}

/// The same fields with the same values, in any order (as `serde_json::Map` compares).
impl PartialEq for Extra {
    fn eq(&self, other: &Self) -> bool {
        self.as_json() == other.as_json() || self.to_map() == other.to_map()
    }
}

impl fmt::Debug for Extra {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_json())
    }
}

impl Serialize for Extra {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            Some(raw) => raw.serialize(s),
            None => Map::new().serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Extra {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(d)?;
        let nonempty = object_text(&raw).map_err(D::Error::custom)?.is_some();
        Ok(Self(nonempty.then_some(raw)))
    }
}

/// The rule for `extra`'s JSON: an object (`Err` otherwise); `None` when it has no field.
pub(crate) fn object_text(raw: &RawValue) -> Result<Option<&RawValue>, &'static str> {
    let text = raw.get().trim_start();
    if !text.starts_with('{') {
        return Err("extra must be a json object");
    }
    let empty = text[1..].trim_start().starts_with('}');
    Ok((!empty).then_some(raw))
}

/// A writer that only counts the bytes written to it.
#[derive(Debug, Default)]
pub(crate) struct ByteCounter(usize);

impl ByteCounter {
    pub(crate) fn bytes(&self) -> usize {
        self.0
    }
}

impl std::io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 = self.0.saturating_add(buf.len());
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Estimated heap bytes of a `serde_json` value: one `Value` per node, plus string bytes, plus
/// per map entry its key and index slot.
pub(crate) fn value_heap_bytes(value: &Value) -> usize {
    const NODE: usize = std::mem::size_of::<Value>();
    match value {
        Value::Null | Value::Bool(_) | Value::Number(_) => 0,
        Value::String(s) => s.len(),
        Value::Array(items) => items.iter().map(|v| NODE + value_heap_bytes(v)).sum(),
        Value::Object(map) => map_heap_bytes(map),
    }
}

/// [`value_heap_bytes`] of a map's entries.
pub(crate) fn map_heap_bytes(map: &Map<String, Value>) -> usize {
    const ENTRY: usize = std::mem::size_of::<(String, Value)>() + 2 * std::mem::size_of::<usize>();
    map.iter()
        .map(|(key, value)| ENTRY + key.len() + value_heap_bytes(value))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_round_trips_and_merges() {
        let mut extra = Extra::default();
        assert!(extra.is_empty());
        assert_eq!(serde_json::to_string(&extra).expect("json"), "{}");
        extra.absorb(
            json!({"b": [1, 2], "a": "x"})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        );
        extra.absorb(
            json!({"a": "lost", "c": null})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        );
        assert_eq!(extra.as_json(), r#"{"b":[1,2],"a":"x","c":null}"#);
        let back: Extra = serde_json::from_str(extra.as_json()).expect("object");
        assert_eq!(back, extra);
        let empty: Extra = serde_json::from_str(" { } ").expect("object");
        assert!(empty.is_empty());
        assert!(serde_json::from_str::<Extra>("[1]").is_err());
        assert_eq!(
            serde_json::to_value(&extra).expect("value"),
            json!({"b": [1, 2], "a": "x", "c": null})
        );
    }

    /// Regression guard for the estimate the processor's dedup bound relies on: a tree of small
    /// numbers is counted at many times its text.
    #[test]
    fn heap_estimate_counts_nodes() {
        let text = format!("[{}0]", "0,".repeat(999));
        let value: Value = serde_json::from_str(&text).expect("json");
        assert!(value_heap_bytes(&value) >= 1000 * std::mem::size_of::<Value>());
    }
}
