//! Byte-level edits of a report body: the mutations the property tests apply to valid bodies
//! to reach the parser's error paths.

use proptest::prelude::*;

/// One edit applied to a body. Positions are taken modulo the body's length when applied, so
/// any generated value is meaningful for any body.
#[derive(Debug, Clone)]
pub enum Mutation {
    Flip { at: usize, bit: u8 },
    Insert { at: usize, bytes: Vec<u8> },
    Delete { at: usize, len: usize },
    Truncate { at: usize },
    Duplicate { from: usize, len: usize, to: usize },
}

/// Mutations biased towards JSON's syntax bytes, escapes, invalid UTF-8 and NUL.
pub fn mutation() -> impl Strategy<Value = Mutation> {
    let json_bytes = prop::collection::vec(
        prop::sample::select(b"{}[]\",:0123456789-.eE \\u\xff\x00\xc3abtnrfl".to_vec()),
        1..8,
    );
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        (any::<usize>(), json_bytes).prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        (any::<usize>(), 1usize..16).prop_map(|(at, len)| Mutation::Delete { at, len }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        (any::<usize>(), 1usize..32, any::<usize>())
            .prop_map(|(from, len, to)| Mutation::Duplicate { from, len, to }),
    ]
}

/// Applies `mutation` to `body` in place; an empty body stays empty.
pub fn apply(body: &mut Vec<u8>, mutation: &Mutation) {
    if body.is_empty() {
        return;
    }
    match mutation {
        Mutation::Flip { at, bit } => {
            let i = at % body.len();
            body[i] ^= 1 << bit;
        }
        Mutation::Insert { at, bytes } => {
            let i = at % (body.len() + 1);
            body.splice(i..i, bytes.iter().copied());
        }
        Mutation::Delete { at, len } => {
            let i = at % body.len();
            let end = (i + len).min(body.len());
            body.drain(i..end);
        }
        Mutation::Truncate { at } => body.truncate(at % body.len()),
        Mutation::Duplicate { from, len, to } => {
            let i = from % body.len();
            let end = (i + len).min(body.len());
            let chunk = body[i..end].to_vec();
            let at = to % (body.len() + 1);
            body.splice(at..at, chunk);
        }
    }
}
