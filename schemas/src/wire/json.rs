//! Read access to a JSON value on simd-json's tape, without building a value tree.
//!
//! simd-json's stage 2 writes a body as a flat tape of [`Node`]s (an object or array node
//! counts the nodes of its members, which follow it; a string node borrows its text from the
//! body, unescaped in place). Its `to_borrowed_value` then copies that tape into a tree of boxed
//! vectors and hash maps, which the wire parsers read once and drop; they read the tape instead.
//! [`Json`] is one value's nodes; objects keep every key as sent, duplicates included, in body
//! order ([`super::fields::Fields`] lets the last of a duplicated key win, as `JSON.parse`).

use serde_json::{Map, Number, Value as JsonValue};
use simd_json::{Node, StaticNode};

/// One JSON value: its node, followed by its members' nodes for an array or an object.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Json<'t, 'b>(&'t [Node<'b>]);

/// How many nodes the value starting at `nodes[0]` spans (1 for a scalar or a string).
fn span(node: &Node<'_>) -> usize {
    match node {
        Node::Object { count, .. } | Node::Array { count, .. } => count.saturating_add(1),
        Node::String(_) | Node::Static(_) => 1,
    }
}

impl<'t, 'b> Json<'t, 'b> {
    /// The value at the start of a filled tape; `None` for an empty one.
    pub(crate) fn root(tape: &'t [Node<'b>]) -> Option<Self> {
        let first = tape.first()?;
        tape.get(..span(first)).map(Self)
    }

    fn node(self) -> Node<'b> {
        // A `Json` is never empty: `root` and the iterators build it from a node's span.
        self.0
            .first()
            .copied()
            .unwrap_or(Node::Static(StaticNode::Null))
    }

    /// The value's scalar (`null`, a boolean or a number), if it is one.
    pub(crate) fn scalar(self) -> Option<StaticNode> {
        match self.node() {
            Node::Static(scalar) => Some(scalar),
            _ => None,
        }
    }

    pub(crate) fn is_null(self) -> bool {
        matches!(self.node(), Node::Static(StaticNode::Null))
    }

    /// The text of a string value, borrowed from the body.
    pub(crate) fn as_str(self) -> Option<&'b str> {
        match self.node() {
            Node::String(text) => Some(text),
            _ => None,
        }
    }

    /// The members of an object value, in body order.
    pub(crate) fn as_object(self) -> Option<Members<'t, 'b>> {
        match self.node() {
            Node::Object { len, .. } => Some(Members {
                rest: self.0.get(1..).unwrap_or_default(),
                left: len,
            }),
            _ => None,
        }
    }

    /// The items of an array value, in order.
    pub(crate) fn as_array(self) -> Option<Items<'t, 'b>> {
        match self.node() {
            Node::Array { len, .. } => Some(Items {
                rest: self.0.get(1..).unwrap_or_default(),
                left: len,
            }),
            _ => None,
        }
    }

    /// Splits the value at the start of `nodes` from the nodes after it.
    fn split(nodes: &'t [Node<'b>]) -> Option<(Self, &'t [Node<'b>])> {
        let len = span(nodes.first()?);
        (len <= nodes.len()).then(|| {
            let (value, rest) = nodes.split_at(len);
            (Self(value), rest)
        })
    }
}

/// An object's key-value pairs, in body order.
#[derive(Debug, Clone)]
pub(crate) struct Members<'t, 'b> {
    rest: &'t [Node<'b>],
    left: usize,
}

impl<'t, 'b> Members<'t, 'b> {
    /// The number of keys (duplicates included).
    pub(crate) fn len(&self) -> usize {
        self.left
    }
}

impl<'t, 'b> Iterator for Members<'t, 'b> {
    type Item = (&'b str, Json<'t, 'b>);

    fn next(&mut self) -> Option<Self::Item> {
        self.left = self.left.checked_sub(1)?;
        let (key, after) = self.rest.split_first()?;
        let Node::String(key) = key else {
            return None;
        };
        let (value, rest) = Json::split(after)?;
        self.rest = rest;
        Some((key, value))
    }
}

/// An array's items, in order.
#[derive(Debug, Clone)]
pub(crate) struct Items<'t, 'b> {
    rest: &'t [Node<'b>],
    left: usize,
}

impl<'t, 'b> Items<'t, 'b> {
    /// The number of items.
    pub(crate) fn len(&self) -> usize {
        self.left
    }
}

impl<'t, 'b> Iterator for Items<'t, 'b> {
    type Item = Json<'t, 'b>;

    fn next(&mut self) -> Option<Self::Item> {
        self.left = self.left.checked_sub(1)?;
        let (value, rest) = Json::split(self.rest)?;
        self.rest = rest;
        Some(value)
    }
}

/// Converts a value to an owned `serde_json` value, object keys sorted (stably: of a key sent
/// twice the last value wins, as `JSON.parse`), so the output does not depend on the order of
/// the body's keys.
pub(crate) fn to_json(value: Json<'_, '_>) -> JsonValue {
    match value.node() {
        Node::Static(StaticNode::Null) => JsonValue::Null,
        Node::Static(StaticNode::Bool(b)) => JsonValue::Bool(b),
        Node::Static(StaticNode::I64(n)) => JsonValue::Number(n.into()),
        Node::Static(StaticNode::U64(n)) => JsonValue::Number(n.into()),
        Node::Static(StaticNode::F64(f)) => {
            Number::from_f64(f).map_or(JsonValue::Null, JsonValue::Number)
        }
        Node::String(s) => JsonValue::String(s.to_owned()),
        Node::Array { .. } => JsonValue::Array(
            value
                .as_array()
                .into_iter()
                .flatten()
                .map(to_json)
                .collect(),
        ),
        Node::Object { .. } => {
            let mut pairs: Vec<_> = value.as_object().into_iter().flatten().collect();
            pairs.sort_by(|a, b| a.0.cmp(b.0));
            let mut map = Map::with_capacity(pairs.len());
            for (key, value) in pairs {
                map.insert(key.to_owned(), to_json(value));
            }
            JsonValue::Object(map)
        }
    }
}

/// `value` with every object's keys sorted (serde_json with `preserve_order` keeps body order;
/// [`to_json`] sorts): the reference the tests compare [`to_json`] with.
#[cfg(test)]
pub(crate) fn sorted(value: &JsonValue) -> JsonValue {
    match value {
        JsonValue::Object(map) => {
            let mut pairs: Vec<_> = map.iter().collect();
            pairs.sort_by(|a, b| a.0.cmp(b.0));
            JsonValue::Object(
                pairs
                    .into_iter()
                    .map(|(k, v)| (k.clone(), sorted(v)))
                    .collect(),
            )
        }
        JsonValue::Array(items) => JsonValue::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tape(text: &str) -> simd_json::Tape<'static> {
        let bytes: &'static mut [u8] = Box::leak(text.as_bytes().to_vec().into_boxed_slice());
        simd_json::to_tape(bytes).expect("valid json in test")
    }

    /// Reading the tape gives what simd-json's own value tree holds, converted the way the wire
    /// parsers converted that tree before: nested objects and arrays, every scalar type, escapes,
    /// and a key sent twice (the last value wins).
    #[test]
    fn to_json_is_serde_json_of_the_body() {
        for text in [
            r#"{"b":[1,-2,3.5,true,null,"x\"y"],"a":{"z":{},"y":[]},"c":"\u00e9"}"#,
            r#"[{"k":1,"k":2},[[]],{},"",18446744073709551615,-9223372036854775808]"#,
            r#""alone""#,
            "7",
        ] {
            let tape = tape(text);
            let root = Json::root(&tape.0).expect("a value");
            let want: JsonValue = serde_json::from_str(text).expect("valid json");
            assert_eq!(to_json(root), sort_keys(want), "{text}");
        }
    }

    fn sort_keys(value: JsonValue) -> JsonValue {
        sorted(&value)
    }

    #[test]
    fn members_and_items_walk_nested_values() {
        let tape = tape(r#"{"a":{"x":[1,{"y":2}]},"b":[[],{}],"c":3}"#);
        let root = Json::root(&tape.0).expect("a value");
        let members: Vec<_> = root.as_object().expect("object").collect();
        let keys: Vec<_> = members.iter().map(|(key, _)| *key).collect();
        assert_eq!(keys, ["a", "b", "c"]);
        assert_eq!(members[2].1.scalar(), Some(StaticNode::U64(3)));
        let b = members[1].1.as_array().expect("array");
        assert_eq!(b.len(), 2);
        assert!(root.as_array().is_none() && root.as_str().is_none());
    }
}
