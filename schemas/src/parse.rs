//! Body-shape dispatch: one request body in, one or more normalised reports out.
//! (API fixed by the integrator; bodies implemented by the schemas work.)

use crate::report::Report;

/// Bounds enforced while parsing. Defaults are documented on each field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseLimits {
    /// Deepest JSON nesting accepted (arrays and objects). Default 32.
    pub max_depth: usize,
    /// Most reports accepted in one Reporting API batch. Default 100.
    pub max_batch_len: usize,
}

impl Default for ParseLimits {
    fn default() -> Self {
        Self { max_depth: 32, max_batch_len: 100 }
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
    #[error("batch of {len} reports exceeds {limit}")]
    BatchTooLong { len: usize, limit: usize },
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
}

impl ReportError {
    /// Stable, bounded label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NotAnObject => "not_an_object",
            Self::MissingField(_) => "missing_field",
            Self::UnknownDirective(_) => "unknown_directive",
            Self::WrongType(_) => "wrong_type",
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
#[derive(Debug)]
pub struct Parser {
    limits: ParseLimits,
}

impl Parser {
    pub fn new(limits: ParseLimits) -> Self {
        Self { limits }
    }

    pub fn limits(&self) -> ParseLimits {
        self.limits
    }

    /// Parse a body (mutated in place by simd-json). `Err` only when the whole body is refused;
    /// a batch with some bad items is `Ok` with those items as `Err`.
    pub fn parse(&mut self, body: &mut [u8]) -> Result<Parsed, ParseError> {
        let _ = body;
        Err(ParseError::UnknownShape)
    }
}
