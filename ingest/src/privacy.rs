//! The project's privacy settings applied to a report and the client IP before anything is
//! published: credentials (`user:pass@`) always removed from every URL, query strings and
//! fragments stripped (by default; a project may opt out), referrer optionally dropped, client
//! IP kept in full, truncated (/24, /48), hashed (salted sha256) or dropped.
//!
//! The hash salt ([`Salt`]) comes from `--ip-hash-salt-file` / `PALISADE_IP_HASH_SALT` (or a
//! project's own `ip_salt`); a short or placeholder salt is refused at start-up, because a
//! guessable salt makes the hashes of all 2^32 IPv4 addresses a table anyone can compute.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::{Digest, Sha256};

use schemas::parse::ParsedReport;

use crate::projects::{IpPolicy, PrivacySpec};

/// Fewest bytes a salt may have.
pub const MIN_SALT_BYTES: usize = 16;

/// Fewest distinct byte values a salt may have (`aaaaaaaaaaaaaaaa` is not a secret).
const MIN_DISTINCT_SALT_BYTES: usize = 6;

/// Words that mark a salt copied from an example rather than generated.
const PLACEHOLDERS: [&str; 11] = [
    "changeme",
    "change-me",
    "change_me",
    "replaceme",
    "replace-me",
    "placeholder",
    "example",
    "salt",
    "secret",
    "password",
    "default",
];

/// Why a salt was refused.
#[derive(Debug, thiserror::Error)]
pub enum SaltError {
    #[error("cannot read the ip hash salt file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the ip hash salt is {len} bytes, at least {MIN_SALT_BYTES} are needed (generate one: openssl rand -hex 32)")]
    TooShort { len: usize },
    #[error("the ip hash salt looks like a placeholder (it contains {0:?}); generate one: openssl rand -hex 32")]
    Placeholder(&'static str),
    #[error(
        "the ip hash salt has only {distinct} distinct bytes; generate one: openssl rand -hex 32"
    )]
    Repetitive { distinct: usize },
}

/// A salt for `client_ip = "hash"`, checked to be long and not a placeholder. Its `Debug`
/// never shows it.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct Salt(Vec<u8>);

impl std::fmt::Debug for Salt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Salt(<{} bytes>)", self.0.len())
    }
}

impl TryFrom<String> for Salt {
    type Error = SaltError;

    fn try_from(text: String) -> Result<Self, SaltError> {
        Self::new(text.into_bytes())
    }
}

impl Salt {
    /// Checks `bytes`: at least [`MIN_SALT_BYTES`], no placeholder word, not one repeated byte.
    pub fn new(bytes: Vec<u8>) -> Result<Self, SaltError> {
        if bytes.len() < MIN_SALT_BYTES {
            return Err(SaltError::TooShort { len: bytes.len() });
        }
        let lower = String::from_utf8_lossy(&bytes).to_ascii_lowercase();
        if let Some(word) = PLACEHOLDERS.iter().find(|w| lower.contains(*w)) {
            return Err(SaltError::Placeholder(word));
        }
        let mut seen = [false; 256];
        for b in &bytes {
            seen[usize::from(*b)] = true;
        }
        let distinct = seen.iter().filter(|s| **s).count();
        if distinct < MIN_DISTINCT_SALT_BYTES {
            return Err(SaltError::Repetitive { distinct });
        }
        Ok(Self(bytes))
    }

    /// For clap: `--ip-hash-salt` / `PALISADE_IP_HASH_SALT`.
    pub fn parse(text: &str) -> Result<Self, SaltError> {
        Self::new(text.as_bytes().to_vec())
    }

    /// Reads a salt file (e.g. a mounted Kubernetes Secret), without one trailing newline.
    pub fn from_file(path: &Path) -> Result<Self, SaltError> {
        let mut bytes = std::fs::read(path).map_err(|source| SaltError::Read {
            path: path.to_owned(),
            source,
        })?;
        if bytes.last() == Some(&b'\n') {
            bytes.pop();
            if bytes.last() == Some(&b'\r') {
                bytes.pop();
            }
        }
        Self::new(bytes)
    }

    fn bytes(&self) -> &[u8] {
        &self.0
    }
}

/// Cleans the report's URLs as the project asks: credentials always, query and fragment unless
/// the project opted out, referrer when asked. Covers the first-class URL fields and every
/// absolute URL inside the kind-specific and unknown fields. The report's text borrows the body:
/// a URL that only loses its end (query and fragment, the default) stays borrowed, shortened; a
/// URL is copied only when text must be cut out of its middle (credentials, or a query before a
/// kept fragment).
pub fn apply_parsed(privacy: &PrivacySpec, report: &mut ParsedReport<'_>) {
    if privacy.drop_referrer {
        report.referrer = None;
    }
    for url in [
        &mut report.document_url,
        &mut report.blocked_url,
        &mut report.source_file,
        &mut report.referrer,
    ]
    .into_iter()
    .flatten()
    {
        clean_text(privacy, url);
    }
    apply_nested(privacy, &mut report.details, &mut report.extra);
}

/// One URL field cleaned in place: credentials, then query and fragment as the project asks.
fn clean(privacy: &PrivacySpec, url: &mut String) {
    strip_credentials(url);
    strip_url(url, privacy.strip_query, privacy.strip_fragment);
}

/// [`clean`] of borrowed text, the same result: copied only when [`clean`] would cut text out
/// of its middle, sliced when it would only truncate it.
fn clean_text(privacy: &PrivacySpec, url: &mut Cow<'_, str>) {
    // Credentials need an `@` (see `strip_credentials`): rare enough to pay a copy.
    if memchr::memchr(b'@', url.as_bytes()).is_some() {
        strip_credentials(url.to_mut());
    }
    match kept_prefix(url, privacy.strip_query, privacy.strip_fragment) {
        Some(len) => match url {
            Cow::Borrowed(text) => *text = &text[..len],
            Cow::Owned(text) => text.truncate(len),
        },
        None => strip_url(url.to_mut(), privacy.strip_query, privacy.strip_fragment),
    }
}

/// How much of `url` [`strip_url`] keeps when all it does is truncate it (nothing to strip
/// included); `None` when it would remove a query before a fragment it keeps.
fn kept_prefix(url: &str, query: bool, fragment: bool) -> Option<usize> {
    if !query && !fragment {
        return Some(url.len());
    }
    let Some(first) = memchr::memchr2(b'?', b'#', url.as_bytes()) else {
        return Some(url.len());
    };
    if url.as_bytes()[first] == b'#' {
        // No query (a `?` after the `#` is the fragment's): only the fragment may go.
        return Some(if fragment { first } else { url.len() });
    }
    let hash = memchr::memchr(b'#', &url.as_bytes()[first..]).map(|i| first + i);
    match (query, fragment, hash) {
        (true, true, _) | (true, false, None) => Some(first),
        (false, true, Some(hash)) => Some(hash),
        (false, true, None) => Some(url.len()),
        (false, false, _) => Some(url.len()),
        (true, false, Some(_)) => None,
    }
}

/// The URLs inside the kind-specific and unknown fields, cleaned as [`clean`] does.
fn apply_nested(privacy: &PrivacySpec, details: &mut schemas::Details, extra: &mut schemas::Extra) {
    let clean = |url: &mut String| clean(privacy, url);
    match details {
        schemas::Details::Fields(fields) => fields.values_mut().for_each(|v| clean_urls(v, &clean)),
        schemas::Details::Unknown(body) => clean_urls(body, &clean),
        _ => {}
    }
    // Unknown fields are kept as JSON text (at most `--max-report-bytes` of report): only a text
    // that holds a URL at all is parsed, cleaned and written back.
    if extra.as_json().contains("://") {
        let mut fields = extra.to_map();
        fields.values_mut().for_each(|v| clean_urls(v, &clean));
        *extra = schemas::Extra::from(fields);
    }
}

/// Applies `clean` to every string in `value` that is an absolute URL (`scheme://...`). The
/// depth is bounded by the parser's `--max-json-depth`.
fn clean_urls(value: &mut Value, clean: &impl Fn(&mut String)) {
    match value {
        Value::String(s) if is_absolute_url(s) => clean(s),
        Value::Array(items) => items.iter_mut().for_each(|v| clean_urls(v, clean)),
        Value::Object(map) => map.values_mut().for_each(|v| clean_urls(v, clean)),
        _ => {}
    }
}

/// Whether `s` starts with `scheme://` (RFC 3986 scheme): a URL inside a free-form field.
fn is_absolute_url(s: &str) -> bool {
    s.find("://").is_some_and(|colon| {
        let scheme = &s[..colon];
        scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
    })
}

/// Where the authority starts: after the first `://`, or after a leading `//`.
fn authority_start(url: &str) -> Option<usize> {
    if url.starts_with("//") {
        return Some(2);
    }
    schemas::blocked::split_at_separator(url).map(|(before, _)| before.len() + "://".len())
}

/// Removes `user:pass@` (any userinfo) from a URL in place (whatever precedes its `://`: a
/// stored URL field never keeps credentials, even in a malformed URL). The authority ends at the
/// first `/`, `?`, `#` or backslash (WHATWG URL); the userinfo is everything before its last `@`.
pub fn strip_credentials(url: &mut String) {
    // Credentials need an `@`: one memchr spares most URLs the authority search.
    if memchr::memchr(b'@', url.as_bytes()).is_none() {
        return;
    }
    let Some(start) = authority_start(url) else {
        return;
    };
    let rest = &url[start..];
    let end = rest
        .bytes()
        .position(|b| matches!(b, b'/' | b'?' | b'#' | b'\\'))
        .unwrap_or(rest.len());
    if let Some(at) = rest[..end].rfind('@') {
        url.replace_range(start..=start + at, "");
    }
}

/// Removes `?query` and/or `#fragment` in place (plain string surgery: CSP URLs are not always
/// valid URLs, and a parse/serialise round trip would change them).
pub fn strip_url(url: &mut String, query: bool, fragment: bool) {
    if !query && !fragment {
        return;
    }
    // The first `?` or `#` (one memchr2): a `?` after the `#` belongs to the fragment.
    let Some(first) = memchr::memchr2(b'?', b'#', url.as_bytes()) else {
        return;
    };
    let (question, hash) = if url.as_bytes()[first] == b'#' {
        (None, Some(first))
    } else {
        let hash = memchr::memchr(b'#', &url.as_bytes()[first..]).map(|i| first + i);
        (Some(first), hash)
    };
    if fragment {
        if let Some(hash) = hash {
            url.truncate(hash);
        }
    }
    if query {
        if let Some(question) = question {
            let end = hash.unwrap_or(url.len()).min(url.len());
            url.replace_range(question..end, "");
        }
    }
}

/// The client IP as stored, after the project's policy.
pub fn client_ip(privacy: &PrivacySpec, ip: IpAddr) -> Option<String> {
    let ip = canonical(ip);
    match privacy.client_ip {
        IpPolicy::Full => Some(ip_text(ip)),
        IpPolicy::Truncate => Some(ip_text(truncate(ip))),
        // `Snapshot::build` refuses `hash` without a salt; an empty one is never used.
        IpPolicy::Hash => Some(hash(
            privacy.ip_salt.as_ref().map_or(&[][..], Salt::bytes),
            ip,
        )),
        IpPolicy::Drop => None,
    }
}

/// `ip` as text, the same as its `Display`; IPv4 without the formatting machinery (it was
/// about 1,400 instructions per request, `deploy/scripts/profile-ingest.sh`).
fn ip_text(ip: IpAddr) -> String {
    let IpAddr::V4(v4) = ip else {
        return ip.to_string();
    };
    let mut text = String::with_capacity(15);
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            text.push('.');
        }
        if octet >= 100 {
            text.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            text.push(char::from(b'0' + octet / 10 % 10));
        }
        text.push(char::from(b'0' + octet % 10));
    }
    text
}

/// IPv4-mapped IPv6 (`::ffff:1.2.3.4`, from dual-stack sockets) as plain IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// IPv4 to its /24, IPv6 to its /48.
pub fn truncate(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            IpAddr::V4(Ipv4Addr::new(a, b, c, 0))
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0))
        }
    }
}

/// First 16 hex digits of sha256(salt || ip).
pub fn hash(salt: &[u8], ip: IpAddr) -> String {
    let mut hasher = Sha256::new();
    hasher.update(salt);
    hasher.update(ip.to_string().as_bytes());
    let digest = hasher.finalize();
    hex::encode(&digest[..8])
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const SALT: &str = "8f0c3a9d2e7b4f61";

    fn spec(policy: IpPolicy) -> PrivacySpec {
        PrivacySpec {
            client_ip: policy,
            ip_salt: Some(Salt::parse(SALT).unwrap()),
            ..PrivacySpec::default()
        }
    }

    #[test]
    fn strips_query_and_fragment_independently() {
        let cases = [
            (
                "https://a.example/p?q=1#f",
                true,
                true,
                "https://a.example/p",
            ),
            (
                "https://a.example/p?q=1#f",
                true,
                false,
                "https://a.example/p#f",
            ),
            (
                "https://a.example/p?q=1#f",
                false,
                true,
                "https://a.example/p?q=1",
            ),
            (
                "https://a.example/p#f?notquery",
                true,
                false,
                "https://a.example/p#f?notquery",
            ),
            ("inline", true, true, "inline"),
        ];
        for (input, q, f, want) in cases {
            let mut s = input.to_owned();
            strip_url(&mut s, q, f);
            assert_eq!(s, want, "{input} q={q} f={f}");
        }
    }

    /// `strip_url` before it searched with memchr (three char searches): the reference.
    fn strip_url_before(url: &mut String, query: bool, fragment: bool) {
        let hash = url.find('#');
        if fragment {
            if let Some(i) = hash {
                url.truncate(i);
            }
        }
        if query {
            let end = url.find('#').unwrap_or(url.len());
            if let Some(q) = url[..end].find('?') {
                url.replace_range(q..end, "");
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn strip_url_as_before(url in "[a:/?#é]{0,12}", query: bool, fragment: bool) {
            let (mut ours, mut before) = (url.clone(), url);
            strip_url(&mut ours, query, fragment);
            strip_url_before(&mut before, query, fragment);
            proptest::prop_assert_eq!(ours, before);
        }
    }

    fn specs() -> impl Iterator<Item = PrivacySpec> {
        [(false, false), (false, true), (true, false), (true, true)]
            .into_iter()
            .map(|(strip_query, strip_fragment)| PrivacySpec {
                strip_query,
                strip_fragment,
                ..PrivacySpec::default()
            })
    }

    proptest::proptest! {
        /// The borrowed cleaning gives what the owned one gives, for any text and setting.
        #[test]
        fn clean_text_is_clean(url in "[a:/?#@é]{0,14}") {
            for privacy in specs() {
                let mut owned = url.clone();
                clean(&privacy, &mut owned);
                let mut text = Cow::Borrowed(url.as_str());
                clean_text(&privacy, &mut text);
                proptest::prop_assert_eq!(&*text, owned.as_str());
            }
        }
    }

    /// A URL that only loses its end stays borrowed (no copy); one that loses text from its
    /// middle is copied, with the same result as the owned cleaning.
    #[test]
    fn clean_text_copies_only_to_cut_the_middle() {
        for (url, query, fragment, want, borrowed) in [
            (
                "https://a.example/p?q=1#f",
                true,
                true,
                "https://a.example/p",
                true,
            ),
            (
                "https://a.example/p?q=1#f",
                false,
                true,
                "https://a.example/p?q=1",
                true,
            ),
            (
                "https://a.example/p?q=1#f",
                true,
                false,
                "https://a.example/p#f",
                false,
            ),
            (
                "https://a.example/p#f?q",
                true,
                false,
                "https://a.example/p#f?q",
                true,
            ),
            (
                "https://a.example/p",
                true,
                true,
                "https://a.example/p",
                true,
            ),
            (
                "https://u:p@a.example/p?q",
                true,
                true,
                "https://a.example/p",
                false,
            ),
        ] {
            let privacy = PrivacySpec {
                strip_query: query,
                strip_fragment: fragment,
                ..PrivacySpec::default()
            };
            let mut text = Cow::Borrowed(url);
            clean_text(&privacy, &mut text);
            assert_eq!(text, want, "{url} {query} {fragment}");
            assert_eq!(
                matches!(text, Cow::Borrowed(_)),
                borrowed,
                "{url} {query} {fragment}"
            );
        }
    }

    /// The reference `apply_parsed` is held to: the same cleaning on an owned report, every URL
    /// a `String` cleaned by `clean` (what ingest ran before reports borrowed the body).
    fn apply_owned_reference(privacy: &PrivacySpec, report: &mut schemas::Report) {
        if privacy.drop_referrer {
            report.referrer = None;
        }
        for url in [
            &mut report.document_url,
            &mut report.blocked_url,
            &mut report.source_file,
            &mut report.referrer,
        ]
        .into_iter()
        .flatten()
        {
            clean(privacy, url);
        }
        apply_nested(privacy, &mut report.details, &mut report.extra);
    }

    /// `apply_parsed` run on an owned report (its text owned by the parsed form).
    fn apply(privacy: &PrivacySpec, report: &mut schemas::Report) {
        let mut parsed = ParsedReport::from(report.clone());
        apply_parsed(privacy, &mut parsed);
        *report = parsed.into_owned();
    }

    /// `apply_parsed` on a parsed report is the reference cleaning on the owned one: every
    /// field, the nested URLs of details and extra included, whatever the settings.
    #[test]
    fn apply_parsed_is_apply() {
        let body = r#"{"csp-report":{"document-uri":"https://u:p@a.example/p?token=1#frag",
            "referrer":"https://r.example/?x#y","blocked-uri":"https://b.example/x.js?y#z",
            "source-file":"https://a.example/app.js?v=1","violated-directive":"script-src",
            "x-note":"https://u:p@n.example/?n#m"}}"#;
        for mut privacy in specs() {
            for drop_referrer in [false, true] {
                privacy.drop_referrer = drop_referrer;
                let mut bytes = body.as_bytes().to_vec();
                let mut parser = schemas::Parser::new(schemas::ParseLimits::default());
                let mut parsed = parser.parse_borrowed(&mut bytes).unwrap();
                let mut report = parsed.items.remove(0).unwrap();
                let mut owned = report.clone().into_owned();
                apply_owned_reference(&privacy, &mut owned);
                apply_parsed(&privacy, &mut report);
                assert_eq!(report.into_owned(), owned, "{privacy:?}");
            }
        }
    }

    #[test]
    fn ip_policies() {
        let v4: IpAddr = "203.0.113.77".parse().unwrap();
        let v6: IpAddr = "2001:db8:abcd:12::1".parse().unwrap();
        let mapped: IpAddr = "::ffff:203.0.113.77".parse().unwrap();
        assert_eq!(
            client_ip(&spec(IpPolicy::Full), v4).as_deref(),
            Some("203.0.113.77")
        );
        assert_eq!(
            client_ip(&spec(IpPolicy::Truncate), v4).as_deref(),
            Some("203.0.113.0")
        );
        assert_eq!(
            client_ip(&spec(IpPolicy::Truncate), mapped).as_deref(),
            Some("203.0.113.0")
        );
        assert_eq!(
            client_ip(&spec(IpPolicy::Truncate), v6).as_deref(),
            Some("2001:db8:abcd::")
        );
        assert_eq!(client_ip(&spec(IpPolicy::Drop), v4), None);
        let h = client_ip(&spec(IpPolicy::Hash), v4).unwrap();
        assert_eq!(h.len(), 16);
        assert!(h
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_eq!(h, hash(SALT.as_bytes(), v4), "stable");
        assert_ne!(h, hash(b"other", v4), "salted");
    }

    #[test]
    fn report_urls_are_stripped_and_referrer_dropped() {
        let mut report: schemas::Report = serde_json::from_value(serde_json::json!({
            "kind": "csp-violation", "wire": "legacy-csp", "blocked_class": "url",
            "document_url": "https://a.example/?token=secret", "referrer": "https://r.example/?x",
            "blocked_url": "https://b.example/x.js?y#z", "source_file": "https://a.example/app.js?v=1",
            "details": { "type": "none" }
        }))
        .unwrap();
        let privacy = PrivacySpec {
            strip_query: true,
            strip_fragment: true,
            drop_referrer: true,
            ..PrivacySpec::default()
        };
        apply(&privacy, &mut report);
        assert_eq!(report.document_url.as_deref(), Some("https://a.example/"));
        assert_eq!(
            report.blocked_url.as_deref(),
            Some("https://b.example/x.js")
        );
        assert_eq!(
            report.source_file.as_deref(),
            Some("https://a.example/app.js")
        );
        assert_eq!(report.referrer, None);
    }

    /// Regression (issue 10, item 7): credentials and tokens in URLs were stored unless the
    /// project asked for stripping, and `user:pass@` was never removed.
    #[test]
    fn by_default_credentials_queries_and_fragments_go_everywhere() {
        let mut report: schemas::Report = serde_json::from_value(serde_json::json!({
            "kind": "coop", "wire": "reporting-batch", "blocked_class": "none",
            "document_url": "https://user:pass@a.example/p?token=t1#f",
            "referrer": "https://u@r.example/?t=2",
            "blocked_url": "wss://x:y@b.example:8443/s?k=3",
            "source_file": "https://a:b@a.example/app.js?v=1",
            "details": { "type": "fields", "fields": {
                "previousResponseURL": "https://me:pw@prev.example/?session=4",
                "nested": [{ "u": "http://q:r@n.example#frag" }],
                "id": "not a url ?keep"
            }},
            "extra": { "otherURL": "ftp://anon:mail@f.example/x?y" }
        }))
        .unwrap();
        apply(&PrivacySpec::default(), &mut report);
        let text = serde_json::to_string(&report).unwrap();
        for secret in [
            "user", "pass", "token", "t=2", "k=3", "pw", "session", "#f", "frag", "mail", "?y",
        ] {
            assert!(!text.contains(secret), "{secret} left in {text}");
        }
        assert_eq!(report.document_url.as_deref(), Some("https://a.example/p"));
        assert_eq!(
            report.blocked_url.as_deref(),
            Some("wss://b.example:8443/s")
        );
        assert!(
            text.contains("not a url ?keep"),
            "non-URL strings untouched"
        );
    }

    #[test]
    fn a_project_may_keep_queries_but_never_credentials() {
        let privacy = PrivacySpec {
            strip_query: false,
            strip_fragment: false,
            ..PrivacySpec::default()
        };
        let mut report: schemas::Report = serde_json::from_value(serde_json::json!({
            "kind": "csp-violation", "wire": "legacy-csp", "blocked_class": "url",
            "document_url": "https://user:pass@a.example/p?q=1#f",
            "details": { "type": "none" }
        }))
        .unwrap();
        apply(&privacy, &mut report);
        assert_eq!(
            report.document_url.as_deref(),
            Some("https://a.example/p?q=1#f")
        );
    }

    #[test]
    fn credentials_only_in_the_authority() {
        let cases = [
            ("https://u:p@h.example/a@b", "https://h.example/a@b"),
            ("https://h.example/?mail=a@b", "https://h.example/?mail=a@b"),
            ("https://a@b@h.example:1/", "https://h.example:1/"),
            ("//u:p@h.example/x", "//h.example/x"),
            ("https://u:p@h.example", "https://h.example"),
            ("mailto:a@b.example", "mailto:a@b.example"),
            ("inline", "inline"),
            ("not a scheme://u@h/", "not a scheme://h/"),
            (
                "https://h.example/no-at-sign",
                "https://h.example/no-at-sign",
            ),
            ("https://@h.example/", "https://h.example/"),
        ];
        for (input, want) in cases {
            let mut s = input.to_owned();
            strip_credentials(&mut s);
            assert_eq!(s, want, "{input}");
        }
    }

    #[test]
    fn salts_must_be_long_and_not_placeholders() {
        assert!(Salt::parse("8f0c3a9d2e7b4f61").is_ok());
        for (bad, want) in [
            ("pepper", "at least 16"),
            ("change-me-to-a-long-random-string", "placeholder"),
            ("CHANGEME0123456789", "placeholder"),
            ("my-salt-1234567890", "placeholder"),
            ("aaaaaaaaaaaaaaaaaaaaaaaa", "distinct"),
        ] {
            let err = Salt::parse(bad).unwrap_err().to_string();
            assert!(err.contains(want), "{bad}: {err}");
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("salt");
        std::fs::write(&path, "8f0c3a9d2e7b4f61\n").unwrap();
        assert_eq!(Salt::from_file(&path).unwrap(), Salt::parse(SALT).unwrap());
        std::fs::write(&path, "short\n").unwrap();
        assert!(Salt::from_file(&path).is_err());
        assert!(Salt::from_file(&dir.path().join("missing")).is_err());
        assert_eq!(
            format!("{:?}", Salt::parse(SALT).unwrap()),
            "Salt(<16 bytes>)",
            "never logged"
        );
    }

    #[test]
    fn ip_text_is_display() {
        for a in [0u8, 1, 9, 10, 99, 100, 199, 200, 255] {
            for b in [0u8, 7, 42, 255] {
                let ip = IpAddr::V4(Ipv4Addr::new(a, b, a.wrapping_add(b), b.wrapping_mul(3)));
                assert_eq!(ip_text(ip), ip.to_string());
            }
        }
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(ip_text(v6), v6.to_string());
    }
}
