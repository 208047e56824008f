//! A cheap pass over the raw body before simd-json builds anything.
//!
//! simd-json's tree costs tens of bytes per value: a 4 KiB gzip body inflating to 4 MiB of
//! `[0,0,...]` is two million values, 100+ MiB, built before the batch length could be checked
//! (RELIABILITY.md). This scan counts, outside strings, the items of a top-level array and the
//! values of the whole body, and stops as soon as either passes its limit, so such a body is
//! refused having allocated nothing. It does not validate JSON (simd-json does that next); on
//! malformed input its counts are only approximate, which can only refuse earlier.

use super::{ParseError, ParseLimits};

/// Refuses `body` if a top-level array has more than `max_batch_len` items or the body more
/// than `max_values` values (see [`Scan`]).
pub(super) fn check(body: &[u8], limits: &ParseLimits) -> Result<(), ParseError> {
    if cannot_refuse(body, limits) {
        return Ok(());
    }
    Scan::new(limits).feed(body)
}

/// Whether [`Scan`] cannot refuse `body`, whatever its bytes: it counts at most one value per
/// byte (plus one), so a body of fewer than `max_values` bytes never holds too many; and it
/// counts batch items only in a top-level array, which a body whose first byte after
/// whitespace is `{` is not (the first `[` or `{` decides). A legacy CSP report (an object of
/// ~700 bytes) is never scanned, which was ~2,400 instructions per request (callgrind).
fn cannot_refuse(body: &[u8], limits: &ParseLimits) -> bool {
    let opens_object = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    opens_object && body.len() < limits.max_values
}

/// The scan, fed in pieces: ingest feeds it the output of gzip/deflate as it inflates, so a
/// compression bomb is refused after the first kilobytes instead of after the whole inflated
/// body. Values are counted as 1 + separators (`,` `:`) + opened arrays and objects: exact for
/// non-empty containers, one more per empty one. Top-level items are the separators of a
/// top-level array, plus one.
#[derive(Debug, Clone)]
pub struct Scan {
    max_batch_len: usize,
    max_values: usize,
    depth: usize,
    in_string: bool,
    escaped: bool,
    top_is_array: Option<bool>,
    top_separators: usize,
    values: usize,
}

impl Scan {
    pub fn new(limits: &ParseLimits) -> Self {
        Self {
            max_batch_len: limits.max_batch_len,
            max_values: limits.max_values,
            depth: 0,
            in_string: false,
            escaped: false,
            top_is_array: None,
            top_separators: 0,
            values: 1,
        }
    }

    /// Scans the next piece of the body; `Err` as soon as a limit is passed.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), ParseError> {
        let mut rest = bytes;
        while let Some((&byte, tail)) = rest.split_first() {
            rest = tail;
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if byte == b'\\' {
                    self.escaped = true;
                } else if byte == b'"' {
                    self.in_string = false;
                } else {
                    // Only a quote or a backslash changes anything inside a string: jump to the
                    // next one (most of a report's bytes are URLs inside strings).
                    let skip = memchr::memchr2(b'"', b'\\', rest).unwrap_or(rest.len());
                    rest = &rest[skip..];
                }
                continue;
            }
            match byte {
                b'"' => self.in_string = true,
                b'[' | b'{' => {
                    if self.depth == 0 && self.top_is_array.is_none() {
                        self.top_is_array = Some(byte == b'[');
                    }
                    self.depth += 1;
                    self.values += 1;
                }
                b']' | b'}' => self.depth = self.depth.saturating_sub(1),
                b',' | b':' => {
                    self.values += 1;
                    if self.depth == 1 && byte == b',' && self.top_is_array == Some(true) {
                        self.top_separators += 1;
                        if self.top_separators >= self.max_batch_len {
                            return Err(ParseError::BatchTooLong {
                                len: self.top_separators + 1,
                                limit: self.max_batch_len,
                            });
                        }
                    }
                }
                _ => {}
            }
            if self.values > self.max_values {
                return Err(ParseError::TooManyValues {
                    limit: self.max_values,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_batch_len: usize, max_values: usize) -> ParseLimits {
        ParseLimits {
            max_batch_len,
            max_values,
            ..ParseLimits::default()
        }
    }

    #[test]
    fn counts_top_level_items_only() {
        let body = br#"[{"a":[1,2,3],"b":"x,y,]"},{"c":1},{"d":"\",["}]"#;
        assert!(check(body, &limits(3, 100)).is_ok());
        assert!(matches!(
            check(body, &limits(2, 100)),
            Err(ParseError::BatchTooLong { len: 3, limit: 2 })
        ));
        // An object body's commas are not batch items.
        assert!(check(br#"{"a":1,"b":2,"c":3}"#, &limits(1, 100)).is_ok());
    }

    #[test]
    fn counts_values_in_any_shape() {
        // object, key a, array, 3 numbers = 6 values.
        let body = br#"{"a":[0,0,0]}"#;
        assert!(check(body, &limits(1, 6)).is_ok());
        assert!(matches!(
            check(body, &limits(1, 5)),
            Err(ParseError::TooManyValues { limit: 5 })
        ));
    }

    #[test]
    fn pieces_scan_like_the_whole() {
        let body = br#"[{"a":"x\\\",y"},{"b":[1,2]},3]"#;
        for split in 0..body.len() {
            let mut scan = Scan::new(&limits(2, 100));
            let first = scan.feed(&body[..split]);
            let result = first.and_then(|()| scan.feed(&body[split..]));
            assert!(
                matches!(result, Err(ParseError::BatchTooLong { len: 3, .. })),
                "split at {split}: {result:?}"
            );
        }
    }

    #[test]
    fn array_bomb_stops_at_the_limit() {
        let mut bomb = b"[".to_vec();
        bomb.extend(b"0,".repeat(1_000_000));
        bomb.extend_from_slice(b"0]");
        assert!(matches!(
            check(&bomb, &limits(100, 1_000_000_000)),
            Err(ParseError::BatchTooLong {
                len: 101,
                limit: 100
            })
        ));
    }

    /// At the edge of the shortcut: an object body made only of bytes the scan counts holds
    /// one value more than its length, so it is refused at `max_values = len` and skipped
    /// (it cannot be refused) from `len + 1`; `check` agrees with the full scan on each side.
    #[test]
    fn small_object_shortcut_stops_where_the_scan_could_refuse() {
        for head in [&b"{"[..], b" \n{"] {
            for commas in [0, 1, 5, 40] {
                let body = [head, &b",".repeat(commas)[..]].concat();
                for max_values in body.len().saturating_sub(2).max(1)..body.len() + 3 {
                    let limits = limits(1, max_values);
                    let full = byte_by_byte(&body, &limits).map(|_| ());
                    assert_eq!(
                        format!("{:?}", check(&body, &limits)),
                        format!("{full:?}"),
                        "{body:?} max_values {max_values}"
                    );
                }
                let refused = limits(1, commas + 1);
                assert!(
                    matches!(
                        check(&body, &refused),
                        Err(ParseError::TooManyValues { .. })
                    ),
                    "{body:?}"
                );
            }
        }
    }

    /// The scan as it was before strings were skipped with `memchr2`: one byte at a time.
    fn byte_by_byte(body: &[u8], limits: &ParseLimits) -> Result<(usize, usize), ParseError> {
        let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
        let (mut top_is_array, mut separators, mut values) = (None, 0usize, 1usize);
        for &byte in body {
            if in_string {
                if escaped {
                    escaped = false;
                } else if byte == b'\\' {
                    escaped = true;
                } else if byte == b'"' {
                    in_string = false;
                }
                continue;
            }
            match byte {
                b'"' => in_string = true,
                b'[' | b'{' => {
                    if depth == 0 && top_is_array.is_none() {
                        top_is_array = Some(byte == b'[');
                    }
                    depth += 1;
                    values += 1;
                }
                b']' | b'}' => depth = depth.saturating_sub(1),
                b',' | b':' => {
                    values += 1;
                    if depth == 1 && byte == b',' && top_is_array == Some(true) {
                        separators += 1;
                        if separators >= limits.max_batch_len {
                            return Err(ParseError::BatchTooLong {
                                len: separators + 1,
                                limit: limits.max_batch_len,
                            });
                        }
                    }
                }
                _ => {}
            }
            if values > limits.max_values {
                return Err(ParseError::TooManyValues {
                    limit: limits.max_values,
                });
            }
        }
        Ok((separators, values))
    }

    proptest::proptest! {
        /// Skipping string contents changes nothing: same verdict as the byte-by-byte scan, in
        /// one piece or two, on bodies made of the characters the scan looks at.
        #[test]
        fn skipping_strings_scans_like_byte_by_byte(
            body in proptest::collection::vec(
                proptest::sample::select(b"\"\\[]{},:a0 ".to_vec()), 0..200),
            split in 0usize..200,
            max_batch_len in 1usize..8,
            max_values in 1usize..60,
        ) {
            let limits = limits(max_batch_len, max_values);
            let split = split.min(body.len());
            let mut scan = Scan::new(&limits);
            let ours = scan
                .feed(&body[..split])
                .and_then(|()| scan.feed(&body[split..]))
                .map(|()| (scan.top_separators, scan.values));
            let reference = byte_by_byte(&body, &limits);
            proptest::prop_assert_eq!(format!("{ours:?}"), format!("{reference:?}"));
        }

        /// Skipping the scan of small object bodies changes no verdict: `check` refuses what
        /// the byte-by-byte scan refuses, with the same error, object or not, around the
        /// `max_values` bound.
        #[test]
        fn skipping_small_objects_refuses_what_the_scan_refuses(
            head in proptest::sample::select(vec![&b""[..], b"{", b" \n{", b"[", b"\"{\"["]),
            rest in proptest::collection::vec(
                proptest::sample::select(b"\"\\[]{},:a0 ".to_vec()), 0..200),
            max_batch_len in 1usize..8,
            extra_values in 0usize..4,
        ) {
            let body = [head, &rest[..]].concat();
            // `max_values` from below the body's length to just past it.
            let max_values = (body.len() + extra_values).saturating_sub(2).max(1);
            let limits = limits(max_batch_len, max_values);
            let ours = check(&body, &limits);
            let reference = byte_by_byte(&body, &limits).map(|_| ());
            proptest::prop_assert_eq!(format!("{ours:?}"), format!("{reference:?}"));
        }
    }
}
