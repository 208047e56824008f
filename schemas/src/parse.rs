//! Body-shape dispatch: one request body in, one or more normalised reports out.
//!
//! The shape of the JSON decides the wire format, never the `Content-Type`: browsers send the
//! same bodies under half a dozen media types (`application/csp-report`, `application/json`,
//! `application/reports+json`, `application/x-www-form-urlencoded` from Chrome 14-20 and Safari
//! 5.1-6.0, `text/plain`, or none; see `content_type` in `tests/corpus/browsers-2015.jsonl`).
//!
//! | body shape | wire format |
//! |---|---|
//! | array | Reporting API batch, one report per item |
//! | object with `csp-report` | legacy CSP |
//! | object with `type` and `body` | single Reporting API report (Safari) |
//! | object with `expect-ct-report` | Expect-CT |
//! | object with `expect-staple-report` | Expect-Staple |
//! | object with `known-pins` and `hostname` | HPKP |
//! | object with `document-uri`, `blocked-uri` or `violated-directive` | unwrapped legacy CSP |
//! | object with `xss-report` | XSS Auditor |
//! | anything else | [`ParseError::UnknownShape`] |
//!
//! Keys are matched ignoring case, `-` and `_`. simd-json validates UTF-8 and enforces
//! [`ParseLimits::max_depth`] while it builds the tape (stage 2), so a deep body is refused
//! before any value is built or normalised.

use simd_json::{Buffers, ErrorType, Tape};

use crate::report::{Report, ReportKind, WireFormat};
use crate::wire::fields::{key_matches, Fields};
use crate::wire::json::{Json, Members};
use crate::wire::{certificate, legacy_csp, reporting, xss};

mod report;
mod scan;

pub use report::{ParsedBody, ParsedReport};
pub use scan::Scan;

/// Bounds enforced while parsing. Defaults are documented on each field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseLimits {
    /// Deepest JSON nesting accepted, counting arrays and objects (`{}` is 1, a legacy CSP
    /// report `{"csp-report":{...}}` is 2). Default 32.
    pub max_depth: usize,
    /// Most reports accepted in one Reporting API batch. Default 100. Counted by a scan of the
    /// raw bytes before any value is built, so a `[0,0,...]` bomb costs no tree.
    pub max_batch_len: usize,
    /// Largest normalised report, in bytes of its JSON ([`Report::json_len`]); a bigger one is
    /// refused alone ([`ReportError::TooLarge`]). Default 65536 (64 KiB).
    pub max_report_bytes: usize,
    /// Most JSON values (scalars, arrays and objects, counted by the same scan) in one body;
    /// bounds the tree simd-json builds whatever the shape. Default 100000.
    pub max_values: usize,
}

impl Default for ParseLimits {
    fn default() -> Self {
        Self {
            max_depth: 32,
            max_batch_len: 100,
            max_report_bytes: 64 * 1024,
            max_values: 100_000,
        }
    }
}

/// Why a whole body was refused.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("body is empty")]
    Empty,
    #[error("body is not valid utf-8")]
    NotUtf8,
    #[error("body is not valid json")]
    NotJson(#[source] simd_json::Error),
    #[error("json nested deeper than {limit}")]
    TooDeep { limit: usize },
    /// `len` is the count when the scan stopped: at least `limit + 1`.
    #[error("batch of {len} or more reports exceeds {limit}")]
    BatchTooLong { len: usize, limit: usize },
    #[error("body holds more than {limit} json values")]
    TooManyValues { limit: usize },
    #[error("unrecognised report shape")]
    UnknownShape,
    #[error("no valid report in the body")]
    NoValidReport { first: ReportError },
}

impl ParseError {
    /// Stable, bounded label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Empty => "empty_body",
            Self::NotUtf8 => "invalid_utf8",
            Self::NotJson(_) => "invalid_json",
            Self::TooDeep { .. } => "too_deep",
            Self::BatchTooLong { .. } => "batch_too_long",
            Self::TooManyValues { .. } => "too_many_values",
            Self::UnknownShape => "unknown_shape",
            Self::NoValidReport { first } => first.reason(),
        }
    }
}

/// Why one report (one item of a batch, or the single report of a body) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    #[error("report is not a json object")]
    NotAnObject,
    #[error("missing required field {0}")]
    MissingField(&'static str),
    #[error("unknown csp directive {0:?}")]
    UnknownDirective(String),
    #[error("field {0} has the wrong type")]
    WrongType(&'static str),
    #[error("normalised report of {len} bytes exceeds {limit}")]
    TooLarge { len: usize, limit: usize },
}

impl ReportError {
    /// Stable, bounded label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NotAnObject => "not_an_object",
            Self::MissingField(_) => "missing_field",
            Self::UnknownDirective(_) => "unknown_directive",
            Self::WrongType(_) => "wrong_type",
            Self::TooLarge { .. } => "report_too_large",
        }
    }
}

/// The outcome of parsing one body: every item, good or bad, in order.
#[derive(Debug)]
pub struct Parsed {
    pub items: Vec<Result<Report, ReportError>>,
}

/// A reusable parser: holds simd-json scratch buffers so the hot path does not allocate them.
/// One per worker/task; not shared.
pub struct Parser {
    limits: ParseLimits,
    buffers: Buffers,
    /// simd-json's tape of the last body, emptied: its allocation is reused.
    tape: Tape<'static>,
}

impl std::fmt::Debug for Parser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parser")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// Initial capacity of the scratch buffers, in body bytes; they grow to the largest body seen
/// (itself bounded by the edge's body limit).
const INITIAL_BUFFER_BYTES: usize = 4096;

/// After a body larger than this (bytes), the scratch buffers are replaced by fresh ones, so an
/// idle parser keeps at most the buffers of a 64 KiB body, not of the largest body it ever saw.
pub const RETAINED_BUFFER_BYTES: usize = 64 * 1024;

impl Parser {
    pub fn new(limits: ParseLimits) -> Self {
        let buffers = Buffers::with_max_depth(INITIAL_BUFFER_BYTES, limits.max_depth);
        Self {
            limits,
            buffers,
            tape: Tape(Vec::new()),
        }
    }

    pub fn limits(&self) -> ParseLimits {
        self.limits
    }

    /// Parse a body (mutated in place by simd-json). `Err` only when the whole body is refused;
    /// a batch with some bad items is `Ok` with those items as `Err`. An empty batch (`[]`) is
    /// `Ok` with no items; a body whose every report is bad is [`ParseError::NoValidReport`].
    pub fn parse(&mut self, body: &mut [u8]) -> Result<Parsed, ParseError> {
        self.parse_borrowed(body).map(ParsedBody::into_owned)
    }

    /// [`Parser::parse`] with the reports' text borrowed from `body` ([`ParsedReport`]): the
    /// same answers, the same reports once [`ParsedBody::into_owned`], without a copy of each
    /// string. Ingest's path.
    pub fn parse_borrowed<'b>(&mut self, body: &'b mut [u8]) -> Result<ParsedBody<'b>, ParseError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err(ParseError::Empty);
        }
        scan::check(body, &self.limits)?;
        let body_len = body.len();
        let parsed = self.parse_checked(body);
        if body_len > RETAINED_BUFFER_BYTES {
            self.buffers = Buffers::with_max_depth(INITIAL_BUFFER_BYTES, self.limits.max_depth);
            self.tape = Tape(Vec::new());
        }
        parsed
    }

    fn parse_checked<'b>(&mut self, body: &'b mut [u8]) -> Result<ParsedBody<'b>, ParseError> {
        // The tape's allocation, emptied, lent to this body's lifetime and taken back emptied.
        let mut tape: Tape<'b> = std::mem::replace(&mut self.tape, Tape(Vec::new())).reset();
        let parsed = simd_json::fill_tape(body, &mut self.buffers, &mut tape)
            .map_err(|error| match error.error() {
                ErrorType::InvalidUtf8 => ParseError::NotUtf8,
                ErrorType::DepthLimitExceeded => ParseError::TooDeep {
                    limit: self.limits.max_depth,
                },
                _ => ParseError::NotJson(error),
            })
            .and_then(|()| self.reports(Json::root(&tape.0)));
        self.tape = tape.reset();
        parsed
    }

    /// The reports of a parsed body, each checked against `max_report_bytes`.
    fn reports<'b>(&self, root: Option<Json<'_, 'b>>) -> Result<ParsedBody<'b>, ParseError> {
        let root = root.ok_or(ParseError::UnknownShape)?;
        let items: Vec<Result<ParsedReport<'b>, ReportError>> =
            match (root.as_array(), root.as_object()) {
                (Some(items), _) => {
                    if items.len() > self.limits.max_batch_len {
                        return Err(ParseError::BatchTooLong {
                            len: items.len(),
                            limit: self.limits.max_batch_len,
                        });
                    }
                    items.map(reporting::parse_item).collect()
                }
                (None, Some(object)) => vec![parse_object(object)?],
                (None, None) => return Err(ParseError::UnknownShape),
            };
        let max = self.limits.max_report_bytes;
        let items = items
            .into_iter()
            .map(|item| {
                item.and_then(|report| {
                    // Serialising to measure costs as much as parsing: only when it may matter.
                    if report.json_len_bound() <= max {
                        return Ok(report);
                    }
                    match report.json_len() {
                        len if len > max => Err(ReportError::TooLarge { len, limit: max }),
                        _ => Ok(report),
                    }
                })
            })
            .collect();
        let parsed = ParsedBody { items };
        match parsed.items.iter().find_map(|item| item.as_ref().err()) {
            Some(first) if parsed.items.iter().all(Result::is_err) => {
                Err(ParseError::NoValidReport {
                    first: first.clone(),
                })
            }
            _ => Ok(parsed),
        }
    }
}

/// Whether `object` has a key matching `canonical` (see [`key_matches`]).
fn has(object: &Members<'_, '_>, canonical: &str) -> bool {
    object.clone().any(|(key, _)| key_matches(key, canonical))
}

/// Dispatches a single-object body on its shape. `Err(UnknownShape)` refuses the body; an
/// `Ok(Err(_))` is a recognised report that failed validation.
fn parse_object<'v>(
    object: Members<'_, 'v>,
) -> Result<Result<ParsedReport<'v>, ReportError>, ParseError> {
    let object = &object;
    if has(object, "cspreport") {
        return Ok(unwrap(object, "cspreport", |o| {
            legacy_csp::parse(o, WireFormat::LegacyCsp)
        }));
    }
    if has(object, "type") && has(object, "body") {
        return Ok(reporting::parse(
            object.clone(),
            WireFormat::ReportingSingle,
        ));
    }
    if has(object, "expectctreport") {
        return Ok(unwrap(object, "expectctreport", |o| {
            certificate::parse(o, ReportKind::ExpectCt, WireFormat::ExpectCt)
        }));
    }
    if has(object, "expectstaplereport") {
        return Ok(unwrap(object, "expectstaplereport", |o| {
            certificate::parse(o, ReportKind::ExpectStaple, WireFormat::ExpectStaple)
        }));
    }
    if has(object, "knownpins") && has(object, "hostname") {
        return Ok(certificate::parse(
            object.clone(),
            ReportKind::Hpkp,
            WireFormat::Hpkp,
        ));
    }
    if ["documenturi", "blockeduri", "violateddirective"]
        .iter()
        .any(|k| has(object, k))
    {
        return Ok(legacy_csp::parse(
            object.clone(),
            WireFormat::LegacyCspUnwrapped,
        ));
    }
    if has(object, "xssreport") {
        return Ok(unwrap(object, "xssreport", |o| Ok(xss::parse(o))));
    }
    Err(ParseError::UnknownShape)
}

/// Parses the object under the wrapper key `canonical` with `inner`, keeping any other
/// top-level keys of the body in the report's `extra`.
fn unwrap<'t, 'v>(
    object: &Members<'t, 'v>,
    canonical: &str,
    inner: impl FnOnce(Members<'t, 'v>) -> Result<ParsedReport<'v>, ReportError>,
) -> Result<ParsedReport<'v>, ReportError> {
    let mut outer = Fields::new(object.clone());
    let wrapped = outer.raw(&[canonical]).ok_or(ReportError::NotAnObject)?;
    let mut report = inner(wrapped.as_object().ok_or(ReportError::NotAnObject)?)?;
    report.extra.absorb(outer.into_map());
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_with(limits: ParseLimits, body: &str) -> Result<Parsed, ParseError> {
        Parser::new(limits).parse(&mut body.as_bytes().to_vec())
    }

    fn parse(body: &str) -> Result<Parsed, ParseError> {
        parse_with(ParseLimits::default(), body)
    }

    fn reason(body: &str) -> &'static str {
        match parse(body) {
            Err(error) => error.reason(),
            Ok(parsed) => panic!("accepted {parsed:?}"),
        }
    }

    fn nested(depth: usize) -> String {
        // A CSP report whose unknown field nests `depth - 2` arrays (wrapper + report = 2).
        format!(
            r#"{{"csp-report":{{"violated-directive":"img-src","x":{}0{}}}}}"#,
            "[".repeat(depth - 2),
            "]".repeat(depth - 2)
        )
    }

    #[test]
    fn depth_limit_is_exact() {
        let limits = ParseLimits {
            max_depth: 8,
            max_batch_len: 10,
            ..ParseLimits::default()
        };
        assert!(parse_with(limits, &nested(8)).is_ok());
        assert!(matches!(
            parse_with(limits, &nested(9)),
            Err(ParseError::TooDeep { limit: 8 })
        ));
    }

    #[test]
    fn batch_length_is_bounded() {
        let item = r#"{"type":"test","url":"https://a.example/","body":{}}"#;
        let limits = ParseLimits {
            max_depth: 8,
            max_batch_len: 3,
            ..ParseLimits::default()
        };
        let batch = |n: usize| format!("[{}]", vec![item; n].join(","));
        assert_eq!(parse_with(limits, &batch(3)).expect("3 fit").items.len(), 3);
        assert!(matches!(
            parse_with(limits, &batch(4)),
            Err(ParseError::BatchTooLong { len: 4, limit: 3 })
        ));
    }

    /// Regression (RELIABILITY.md, the processor memory attack): a report over
    /// `max_report_bytes` is refused alone; the rest of its batch is kept.
    #[test]
    fn oversized_reports_are_refused_alone() {
        let limits = ParseLimits {
            max_report_bytes: 1000,
            ..ParseLimits::default()
        };
        let small = r#"{"type":"deprecation","url":"https://a.example/","body":{"id":"x"}}"#;
        let big = format!(
            r#"{{"type":"deprecation","url":"https://a.example/","body":{{"id":"x","pad":[{}0]}}}}"#,
            "0,".repeat(600)
        );
        let parsed = parse_with(limits, &format!("[{small},{big},{small}]")).expect("kept");
        assert!(parsed.items[0].is_ok() && parsed.items[2].is_ok());
        assert!(matches!(
            parsed.items[1],
            Err(ReportError::TooLarge { limit: 1000, len }) if len > 1200
        ));
        let alone = parse_with(limits, &big).expect_err("refused");
        assert_eq!(alone.reason(), "report_too_large");
        let report = parse_with(limits, small)
            .expect("ok")
            .items
            .remove(0)
            .expect("ok");
        assert_eq!(
            report.json_len(),
            serde_json::to_vec(&report).expect("json").len()
        );
    }

    #[test]
    fn too_many_values_are_refused_before_parsing() {
        let limits = ParseLimits {
            max_values: 50,
            ..ParseLimits::default()
        };
        let body = format!(
            r#"{{"csp-report":{{"violated-directive":"img-src","x":[{}0]}}}}"#,
            "0,".repeat(60)
        );
        assert_eq!(
            parse_with(limits, &body).expect_err("refused").reason(),
            "too_many_values"
        );
    }

    #[test]
    fn refusals_have_reasons() {
        assert_eq!(reason(""), "empty_body");
        assert_eq!(reason(" \n"), "empty_body");
        assert_eq!(reason("{"), "invalid_json");
        assert_eq!(reason("{\"a\":1} x"), "invalid_json");
        assert_eq!(reason("\"csp\""), "unknown_shape");
        assert_eq!(reason("{\"hello\":1}"), "unknown_shape");
        assert_eq!(reason("{\"csp-report\":1}"), "not_an_object");
        assert_eq!(
            reason("{\"csp-report\":{\"violated-directive\":\"bogus-src\"}}"),
            "unknown_directive"
        );
        assert_eq!(
            reason("{\"csp-report\":{\"blocked-uri\":\"x\"}}"),
            "missing_field"
        );
        assert_eq!(
            reason("{\"expect-ct-report\":{\"port\":443}}"),
            "missing_field"
        );
        assert_eq!(
            reason("{\"expect-ct-report\":{\"hostname\":7}}"),
            "wrong_type"
        );
        assert_eq!(reason("[1, {\"body\":{}}]"), "not_an_object");
    }

    #[test]
    fn invalid_utf8_is_refused() {
        let mut body =
            b"{\"csp-report\":{\"violated-directive\":\"img-src\",\"x\":\"\xff\xfe\"}}".to_vec();
        let error = Parser::new(ParseLimits::default())
            .parse(&mut body)
            .expect_err("refused");
        assert!(matches!(error, ParseError::NotUtf8), "{error:?}");
    }

    #[test]
    fn batch_keeps_bad_items_in_order() {
        let parsed = parse(
            r#"[{"type":"test","body":{}}, 7, {"type":"csp-violation","body":{"effectiveDirective":"nope"}}]"#,
        )
        .expect("one good item");
        assert!(parsed.items[0].is_ok());
        assert_eq!(parsed.items[1], Err(ReportError::NotAnObject));
        assert_eq!(
            parsed.items[2],
            Err(ReportError::UnknownDirective("nope".into()))
        );
        assert!(parse("[]").expect("empty batch").items.is_empty());
    }

    #[test]
    fn dispatch_by_shape() {
        let wire = |body: &str| {
            parse(body).expect("ok").items[0]
                .as_ref()
                .expect("report")
                .wire
        };
        assert_eq!(
            wire(r#"{"csp-report":{"violated-directive":"img-src"}}"#),
            WireFormat::LegacyCsp
        );
        assert_eq!(
            wire(r#"{"type":"csp-violation","body":{"effectiveDirective":"img-src"}}"#),
            WireFormat::ReportingSingle
        );
        assert_eq!(
            wire(r#"[{"type":"test","body":{}}]"#),
            WireFormat::ReportingBatch
        );
        assert_eq!(
            wire(r#"{"expect-ct-report":{"hostname":"a.example"}}"#),
            WireFormat::ExpectCt
        );
        assert_eq!(
            wire(r#"{"expect-staple-report":{"hostname":"a.example"}}"#),
            WireFormat::ExpectStaple
        );
        assert_eq!(
            wire(r#"{"hostname":"a.example","known-pins":[]}"#),
            WireFormat::Hpkp
        );
        assert_eq!(
            wire(r#"{"blocked-uri":"data","violated-directive":"img-src"}"#),
            WireFormat::LegacyCspUnwrapped
        );
        assert_eq!(
            wire(r#"{"xss-report":{"request-url":"https://a.example/"}}"#),
            WireFormat::XssAuditor
        );
    }

    #[test]
    fn wrapper_siblings_are_kept() {
        let parsed = parse(
            r#"{"csp-report":{"violated-directive":"img-src"},"relay":"x","csp-report-2":1}"#,
        )
        .expect("ok");
        let report = parsed.items[0].as_ref().expect("report");
        let extra = report.extra.to_map();
        let keys: Vec<_> = extra.keys().map(String::as_str).collect();
        assert_eq!(keys, ["csp-report-2", "relay"]);
        assert!(matches!(
            parse(r#"{"csp-report":null}"#),
            Err(ParseError::NoValidReport {
                first: ReportError::NotAnObject
            })
        ));
    }

    proptest::proptest! {
        /// Reading the tape instead of simd-json's value tree changes no JSON-level answer: for
        /// any bytes (JSON-ish, invalid UTF-8 and deep nesting included), filling the tape and
        /// building the tree succeed or fail together, with the same error kind, and what they
        /// hold converts to the same value.
        #[test]
        fn the_tape_answers_as_the_value_tree(
            body in proptest::collection::vec(proptest::sample::select(
                b"{}[]\",:\\ 0-1.5eEtrunlfasx\xff\xc3\xa9".to_vec()), 0..48),
            depth in 1usize..6,
        ) {
            let mut buffers = Buffers::with_max_depth(64, depth);
            let mut by_tree = body.clone();
            let tree = simd_json::to_borrowed_value_with_buffers(&mut by_tree, &mut buffers)
                .map(|value| serde_json::to_value(&value).ok());
            let mut by_tape = body.clone();
            let mut tape = Tape(Vec::new());
            let filled = simd_json::fill_tape(&mut by_tape, &mut buffers, &mut tape)
                .map(|()| Json::root(&tape.0).map(crate::wire::json::to_json));
            match (tree, filled) {
                (Ok(tree), Ok(tape)) => proptest::prop_assert_eq!(
                    tree.map(|tree| crate::wire::json::sorted(&tree)),
                    tape
                ),
                (Err(a), Err(b)) => proptest::prop_assert_eq!(a.error(), b.error()),
                (a, b) => proptest::prop_assert!(false, "{a:?} {b:?}"),
            }
        }
    }

    /// JSON text of arbitrary values: every scalar type (negative, big and fractional numbers),
    /// escaped strings, nested arrays and objects whose keys may repeat.
    fn json_text() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let scalar = prop_oneof![
            Just("null".to_owned()),
            any::<bool>().prop_map(|b| b.to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<u64>().prop_map(|n| n.to_string()),
            (-1e6f64..1e6).prop_map(|f| format!("{f:?}")),
            "[a\"\\\n\u{e9} ]{0,6}".prop_map(|s| serde_json::to_string(&s).unwrap_or_default()),
        ];
        scalar.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4)
                    .prop_map(|items| format!("[{}]", items.join(","))),
                proptest::collection::vec(("[ab]{1,2}", inner), 0..4).prop_map(|pairs| {
                    let pairs: Vec<String> =
                        pairs.iter().map(|(k, v)| format!("{k:?}:{v}")).collect();
                    format!("{{{}}}", pairs.join(","))
                }),
            ]
        })
    }

    proptest::proptest! {
        /// For valid JSON of any shape, the tape holds what simd-json's value tree holds.
        #[test]
        fn the_tape_holds_the_value_tree(text in json_text()) {
            let mut buffers = Buffers::with_max_depth(64, 32);
            let mut by_tree = text.clone().into_bytes();
            let tree = simd_json::to_borrowed_value_with_buffers(&mut by_tree, &mut buffers)
                .map(|value| serde_json::to_value(&value).ok());
            let mut by_tape = text.clone().into_bytes();
            let mut tape = Tape(Vec::new());
            let filled = simd_json::fill_tape(&mut by_tape, &mut buffers, &mut tape)
                .map(|()| Json::root(&tape.0).map(crate::wire::json::to_json));
            proptest::prop_assert!(tree.is_ok() && filled.is_ok(), "{}", text);
            // Compared as text: the order of the keys is part of what `extra` stores.
            let text_of = |value: Option<serde_json::Value>| value.map(|v| v.to_string());
            proptest::prop_assert_eq!(
                text_of(tree.ok().flatten().map(|tree| crate::wire::json::sorted(&tree))),
                text_of(filled.ok().flatten()),
                "{}", text
            );
        }
    }

    #[test]
    fn parser_is_reusable_across_bodies() {
        let mut parser = Parser::new(ParseLimits::default());
        for _ in 0..3 {
            let mut big = format!(
                r#"{{"csp-report":{{"violated-directive":"img-src","x":"{}"}}}}"#,
                "a".repeat(10_000)
            )
            .into_bytes();
            assert!(parser.parse(&mut big).is_ok());
            let mut small = br#"{"csp-report":{"violated-directive":"img-src"}}"#.to_vec();
            assert!(parser.parse(&mut small).is_ok());
            let mut bad = b"[[[".to_vec();
            assert!(parser.parse(&mut bad).is_err());
        }
        // Over RETAINED_BUFFER_BYTES: the buffers are replaced afterwards, and the parser
        // still parses (the same results as a fresh one).
        let mut huge = format!(
            r#"{{"csp-report":{{"violated-directive":"img-src"}}}}{}"#,
            " ".repeat(RETAINED_BUFFER_BYTES + 1)
        )
        .into_bytes();
        assert!(parser.parse(&mut huge).is_ok());
        let mut small = br#"{"csp-report":{"violated-directive":"img-src"}}"#.to_vec();
        let reused = parser.parse(&mut small.clone()).expect("ok").items;
        let fresh = Parser::new(ParseLimits::default())
            .parse(&mut small)
            .expect("ok")
            .items;
        assert_eq!(reused, fresh);
    }
}
