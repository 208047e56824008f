//! Request inputs and their wire forms: the listing's query parameters, the opaque pagination
//! cursor, fingerprints as 16 hex digits (JSON numbers lose precision above 2^53) and times as
//! RFC 3339 UTC text next to Unix seconds.

use crate::error::ApiError;

/// A fingerprint as it appears in paths and answers: 16 lowercase hex digits.
pub fn fingerprint_text(fingerprint: u64) -> String {
    format!("{fingerprint:016x}")
}

pub fn parse_fingerprint(text: &str) -> Result<u64, ApiError> {
    // `from_str_radix` alone would accept a leading `+`.
    if text.len() != 16 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(invalid("fingerprint", "expected 16 hex digits"));
    }
    u64::from_str_radix(text, 16).map_err(|_| invalid("fingerprint", "expected 16 hex digits"))
}

/// Where the next page starts: strictly after (`last_seen`, `fingerprint`) in the order
/// `last_seen DESC, fingerprint DESC`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub last_seen: u32,
    pub fingerprint: u64,
}

impl Cursor {
    /// 24 hex digits. Opaque to clients: only [`Cursor::decode`] reads it.
    pub fn encode(self) -> String {
        format!("{:08x}{:016x}", self.last_seen, self.fingerprint)
    }

    pub fn decode(text: &str) -> Result<Self, ApiError> {
        if text.len() != 24 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ApiError::InvalidCursor);
        }
        let last_seen = u32::from_str_radix(&text[..8], 16).map_err(|_| ApiError::InvalidCursor)?;
        let fingerprint =
            u64::from_str_radix(&text[8..], 16).map_err(|_| ApiError::InvalidCursor)?;
        Ok(Self {
            last_seen,
            fingerprint,
        })
    }
}

/// The filters of `GET /v1/projects/{id}/violations`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupFilter {
    /// Window start at or after, Unix seconds.
    pub since: u32,
    /// Window start before, Unix seconds (no bound when absent).
    pub until: Option<u32>,
    pub kind: Option<String>,
    pub directive: Option<String>,
    pub host: Option<String>,
    /// Case-insensitive substring of the blocked URL, document URL, source file or sample.
    pub q: Option<String>,
    pub cursor: Option<Cursor>,
    pub limit: u32,
    pub include_muted: bool,
}

/// Bounds and defaults [`parse_group_filter`] applies.
#[derive(Debug, Clone, Copy)]
pub struct FilterDefaults {
    pub now: u32,
    pub default_range_secs: u32,
    pub default_limit: u32,
    pub max_limit: u32,
    /// Longest `q`, in bytes.
    pub max_search_bytes: usize,
    /// Longest `kind`, `directive` or `host`, in bytes.
    pub max_filter_bytes: usize,
}

/// Parses the listing's query string. Unknown parameters are refused (a typo must not silently
/// widen a query).
pub fn parse_group_filter(
    query: Option<&str>,
    defaults: FilterDefaults,
) -> Result<GroupFilter, ApiError> {
    let mut filter = GroupFilter {
        since: defaults.now.saturating_sub(defaults.default_range_secs),
        limit: defaults.default_limit,
        ..GroupFilter::default()
    };
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        let value = value.into_owned();
        match name.as_ref() {
            "since" => filter.since = parse_time("since", &value)?,
            "until" => filter.until = Some(parse_time("until", &value)?),
            "kind" => filter.kind = Some(bounded("kind", value, defaults.max_filter_bytes)?),
            "directive" => {
                filter.directive = Some(bounded("directive", value, defaults.max_filter_bytes)?)
            }
            "host" => filter.host = Some(bounded("host", value, defaults.max_filter_bytes)?),
            "q" => filter.q = Some(bounded("q", value, defaults.max_search_bytes)?),
            "cursor" => filter.cursor = Some(Cursor::decode(&value)?),
            "limit" => {
                let limit: u32 = value
                    .parse()
                    .map_err(|_| invalid("limit", "expected a positive integer"))?;
                if limit == 0 || limit > defaults.max_limit {
                    return Err(invalid(
                        "limit",
                        format!("must be between 1 and {}", defaults.max_limit),
                    ));
                }
                filter.limit = limit;
            }
            "include_muted" => filter.include_muted = parse_bool("include_muted", &value)?,
            _ => {
                return Err(ApiError::InvalidParameter {
                    name: "query",
                    reason: format!("unknown parameter {name:?}"),
                })
            }
        }
    }
    Ok(filter)
}

/// `since` for endpoints that take only that: Unix seconds, or the default range before now.
pub fn parse_since(query: Option<&str>, defaults: FilterDefaults) -> Result<u32, ApiError> {
    let mut since = defaults.now.saturating_sub(defaults.default_range_secs);
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match name.as_ref() {
            "since" => since = parse_time("since", &value)?,
            _ => {
                return Err(ApiError::InvalidParameter {
                    name: "query",
                    reason: format!("unknown parameter {name:?}"),
                })
            }
        }
    }
    Ok(since)
}

fn parse_time(name: &'static str, value: &str) -> Result<u32, ApiError> {
    value
        .parse()
        .map_err(|_| invalid(name, "expected Unix seconds (0 to 4294967295)"))
}

fn parse_bool(name: &'static str, value: &str) -> Result<bool, ApiError> {
    match value {
        "true" | "1" => Ok(true),
        "false" | "0" | "" => Ok(false),
        _ => Err(invalid(name, "expected true or false")),
    }
}

fn bounded(name: &'static str, value: String, max: usize) -> Result<String, ApiError> {
    if value.len() > max {
        return Err(invalid(name, format!("longer than {max} bytes")));
    }
    Ok(value)
}

fn invalid(name: &'static str, reason: impl Into<String>) -> ApiError {
    ApiError::InvalidParameter {
        name,
        reason: reason.into(),
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` of Unix seconds (UTC; the civil-from-days algorithm of Howard
/// Hinnant's `chrono`-compatible date library, valid for every `u32`).
pub fn rfc3339(unix: u32) -> String {
    let secs = i64::from(unix);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const DEFAULTS: FilterDefaults = FilterDefaults {
        now: 1_000_000,
        default_range_secs: 3600,
        default_limit: 50,
        max_limit: 500,
        max_search_bytes: 200,
        max_filter_bytes: 255,
    };

    #[test]
    fn cursor_round_trips_and_refuses_garbage() {
        let cursor = Cursor {
            last_seen: 1_700_000_000,
            fingerprint: u64::MAX - 5,
        };
        assert_eq!(Cursor::decode(&cursor.encode()).unwrap(), cursor);
        for bad in ["", "zz", &"g".repeat(24), &"0".repeat(23)] {
            assert!(matches!(Cursor::decode(bad), Err(ApiError::InvalidCursor)));
        }
    }

    #[test]
    fn fingerprints_are_sixteen_hex_digits() {
        assert_eq!(fingerprint_text(255), "00000000000000ff");
        assert_eq!(parse_fingerprint("00000000000000ff").unwrap(), 255);
        assert!(parse_fingerprint("ff").is_err());
        assert!(parse_fingerprint("+000000000000ff0").is_err());
        assert!(parse_fingerprint("zzzzzzzzzzzzzzzz").is_err());
    }

    #[test]
    fn filter_defaults_bounds_and_unknown_names() {
        let filter = parse_group_filter(None, DEFAULTS).unwrap();
        assert_eq!(filter.since, 1_000_000 - 3600);
        assert_eq!(filter.limit, 50);
        assert!(!filter.include_muted);
        let filter = parse_group_filter(
            Some("since=5&until=9&kind=csp-violation&q=cdn%20x&limit=2&include_muted=true"),
            DEFAULTS,
        )
        .unwrap();
        assert_eq!((filter.since, filter.until), (5, Some(9)));
        assert_eq!(filter.q.as_deref(), Some("cdn x"));
        assert_eq!(filter.limit, 2);
        assert!(filter.include_muted);
        assert!(parse_group_filter(Some("limit=501"), DEFAULTS).is_err());
        assert!(parse_group_filter(Some("limit=0"), DEFAULTS).is_err());
        assert!(parse_group_filter(Some("sinse=1"), DEFAULTS).is_err());
        assert!(parse_group_filter(Some("since=-1"), DEFAULTS).is_err());
        let long = format!("q={}", "a".repeat(201));
        assert!(parse_group_filter(Some(&long), DEFAULTS).is_err());
        let long = format!("host={}", "a".repeat(256));
        assert!(parse_group_filter(Some(&long), DEFAULTS).is_err());
    }

    #[test]
    fn rfc3339_of_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_006_400), "2023-11-15T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(u32::MAX), "2106-02-07T06:28:15Z");
    }
}
