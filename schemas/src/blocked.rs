//! Blocked-URI normalisation and classification.
//!
//! CSP reduces many blocked resources to keywords or bare schemes (CSP3, "obtain the blockedURI
//! of a violation's resource", <https://w3c.github.io/webappsec-csp/#obtain-violation-blocked-uri>);
//! the classes follow Sentry Relay's normalisation so groups match what Sentry users expect:
//!
//! | sent | class | stored `blocked_url` |
//! |---|---|---|
//! | missing, `""`, `self`, `'self'` | `SelfOrigin` | none |
//! | `inline`, `eval`, `wasm-eval`, `trusted-types-policy`, `trusted-types-sink` | keyword class | the keyword |
//! | `data`, `data:...` | `Data` | `data:` or the URL as sent |
//! | `blob`, `blob:...` | `Blob` | `blob:` or the URL as sent |
//! | extension schemes | `Extension` | `scheme:` or the URL as sent |
//! | `http(s)://`, `ws(s)://` | `Url` | the URL as sent |
//! | `null` (Chrome 21-26 hid the blocked URL) | `None` | none |
//! | any other bare word | `OtherScheme` | `word:` |
//! | any other value | `OtherScheme` | as sent |
//!
//! Firefox before 43 sent `self` for inline code and old Chrome/Safari sent `""`; like Relay we
//! cannot tell those from a same-origin block and fold them into `SelfOrigin`.

use std::borrow::Cow;

use crate::report::BlockedClass;

/// Schemes of browser extensions (their own class: always noise, never a policy gap).
pub const EXTENSION_SCHEMES: &[&str] = &[
    "chrome-extension",
    "moz-extension",
    "safari-extension",
    "safari-web-extension",
    "ms-browser-extension",
    "webkit-masked-url",
];

/// Classifies a blocked URI as sent (`None` when the field was missing).
/// Returns the class and the value to store in `Report::blocked_url`.
pub fn classify(raw: Option<&str>) -> (BlockedClass, Option<String>) {
    match raw {
        None => (BlockedClass::SelfOrigin, None),
        Some(raw) => {
            let (class, stored) = classify_text(raw);
            (class, stored.map(Cow::into_owned))
        }
    }
}

/// [`classify`] of a blocked URI that was sent: the stored value borrowed from `raw` when it is
/// `raw` trimmed (URLs, most values), owned when normalisation rewrites it (a keyword
/// lowercased, a bare scheme as `scheme:`).
pub fn classify_text(raw: &str) -> (BlockedClass, Option<Cow<'_, str>>) {
    let raw = raw.trim();
    // Compared without lowercasing first: most values are URLs, and this runs for every report.
    let is = |word: &str| raw.eq_ignore_ascii_case(word);
    if is("") || is("self") || is("'self'") {
        return (BlockedClass::SelfOrigin, None);
    }
    if is("null") {
        return (BlockedClass::None, None);
    }
    let keyword = KEYWORDS
        .iter()
        .find(|(spellings, _)| spellings.iter().any(|word| is(word)));
    if let Some((_, class)) = keyword {
        return (*class, Some(Cow::Owned(raw.to_ascii_lowercase())));
    }
    match raw_scheme(raw) {
        Some(scheme) => (class_of_scheme(scheme), Some(Cow::Borrowed(raw))),
        None if is_scheme_word(raw) => {
            // A bare scheme (`data`, `about`, `chrome-extension`): store it as `scheme:`.
            let lower = raw.to_ascii_lowercase();
            let class = class_of_scheme(&lower);
            (class, Some(Cow::Owned(format!("{lower}:"))))
        }
        None => (BlockedClass::OtherScheme, Some(Cow::Borrowed(raw))),
    }
}

/// Keyword spellings (any ASCII case) and their class; the stored value is the spelling
/// lowercased.
const KEYWORDS: &[(&[&str], BlockedClass)] = &[
    (&["inline", "'unsafe-inline'"], BlockedClass::Inline),
    (&["eval", "'unsafe-eval'"], BlockedClass::Eval),
    (&["wasm-eval", "'wasm-unsafe-eval'"], BlockedClass::WasmEval),
    (&["trusted-types-policy"], BlockedClass::TrustedTypesPolicy),
    (&["trusted-types-sink"], BlockedClass::TrustedTypesSink),
];

/// `scheme` in any ASCII case.
fn class_of_scheme(scheme: &str) -> BlockedClass {
    let is = |word: &str| scheme.eq_ignore_ascii_case(word);
    if is("http") || is("https") || is("ws") || is("wss") {
        BlockedClass::Url
    } else if is("data") {
        BlockedClass::Data
    } else if is("blob") {
        BlockedClass::Blob
    } else if EXTENSION_SCHEMES.iter().any(|s| is(s)) {
        BlockedClass::Extension
    } else {
        BlockedClass::OtherScheme
    }
}

/// Whether `word` has the syntax of a URI scheme (RFC 3986: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )).
pub fn is_scheme_word(word: &str) -> bool {
    let mut bytes = word.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

/// The lowercase scheme of `value` when it starts with `scheme:`.
pub fn scheme_of(value: &str) -> Option<String> {
    raw_scheme(value).map(str::to_ascii_lowercase)
}

/// The scheme of `value` as written (any case) when it starts with `scheme:`.
pub fn raw_scheme(value: &str) -> Option<&str> {
    // memchr rather than `split_once(':')`, whose char searcher costs ~150 instructions to set
    // up; the noise filter and the blocked-URI classifier look at two or three values per report.
    let colon = memchr::memchr(b':', value.as_bytes())?;
    let scheme = &value[..colon];
    is_scheme_word(scheme).then_some(scheme)
}

/// The scheme of `value`, or the whole value lowercased when it is a bare scheme word.
pub fn scheme_or_word(value: &str) -> Option<String> {
    raw_scheme_or_word(value).map(str::to_ascii_lowercase)
}

/// [`scheme_or_word`] as written (any case), without a copy.
pub fn raw_scheme_or_word(value: &str) -> Option<&str> {
    let value = value.trim();
    raw_scheme(value).or_else(|| is_scheme_word(value).then_some(value))
}

/// The lowercase host of an absolute hierarchical URL (`scheme://[user@]host[:port]/...`).
pub fn host_of(value: &str) -> Option<String> {
    raw_host(value).map(str::to_ascii_lowercase)
}

/// [`host_of`] as written (any case), without a copy.
pub fn raw_host(value: &str) -> Option<&str> {
    let (_, rest) = split_at_separator(value.trim())?;
    // One pass over the authority (it ends at the first `/`, `?` or `#`), remembering where
    // the host starts (after the last `@`) and the first `:` after that: the noise filter looks
    // at up to two URLs per report, and the `str` searches this replaced cost ~650 instructions
    // per URL (`deploy/scripts/profile-ingest.sh`).
    let bytes = rest.as_bytes();
    let (mut start, mut colon, mut end) = (0, None, bytes.len());
    for (i, b) in bytes.iter().enumerate() {
        match b {
            b'/' | b'?' | b'#' => {
                end = i;
                break;
            }
            b'@' => (start, colon) = (i + 1, None),
            b':' if colon.is_none() => colon = Some(i),
            _ => {}
        }
    }
    let host_port = &rest[start..end];
    let host = match host_port.strip_prefix('[') {
        Some(v6) => memchr::memchr(b']', v6.as_bytes()).map_or(v6, |close| &v6[..close]),
        None => colon.map_or(host_port, |colon| &rest[start..colon]),
    };
    (!host.is_empty()).then_some(host)
}

/// `value.split_once("://")`, looking at each `:` (memchr) rather than setting up a substring
/// search per URL.
pub fn split_at_separator(value: &str) -> Option<(&str, &str)> {
    let bytes = value.as_bytes();
    let mut from = 0;
    while let Some(colon) = memchr::memchr(b':', &bytes[from..]).map(|i| from + i) {
        if let Some(rest) = value[colon + 1..].strip_prefix("//") {
            return Some((&value[..colon], rest));
        }
        from = colon + 1;
    }
    None
}

/// The grouping key of a blocked resource: `scheme://host[:port]` for URLs, the class
/// keyword otherwise (`scheme:` for extensions and other schemes, so `about:` and
/// `filesystem:` stay apart).
pub fn origin_key(class: BlockedClass, blocked_url: Option<&str>) -> String {
    match (class, blocked_url) {
        (BlockedClass::Url, Some(url)) => {
            plain_url_origin(url).unwrap_or_else(|| match url::Url::parse(url) {
                Ok(parsed) if parsed.has_host() => parsed.origin().ascii_serialization(),
                _ => strip_query(url).to_owned(),
            })
        }
        (BlockedClass::Extension | BlockedClass::OtherScheme, Some(url)) => {
            match scheme_or_word(url) {
                Some(scheme) => format!("{scheme}:"),
                None => strip_query(url).to_owned(),
            }
        }
        (class, _) => class.as_str().to_owned(),
    }
}

/// `scheme://host[:port]` (port only when not the scheme's default) of a plain http(s)/ws(s)
/// URL, computed without [`url::Url::parse`]; `None` when the authority is anything but plain
/// ASCII `host[:port]` (then the parser decides). Byte for byte what
/// `Url::parse(url)?.origin().ascii_serialization()` gives for the URLs it accepts: the WHATWG
/// parser only lowercases such a host and drops a default port. It refuses what the parser
/// would change or reject: userinfo, IP literals and hosts ending in a number (IPv4 parsing),
/// `xn--` labels (IDNA), empty labels, percent-escapes, backslashes, whitespace, odd ports.
fn plain_url_origin(url: &str) -> Option<String> {
    let plain = crate::plain_url::split(url, false)?;
    let mut origin = Vec::with_capacity(plain.scheme.len() + 3 + plain.host.len() + 6);
    plain.push_origin(&mut origin);
    // Always UTF-8: a plain authority is ASCII.
    String::from_utf8(origin).ok()
}

/// `url` without its query string and fragment.
pub fn strip_query(url: &str) -> &str {
    // One memchr2 (the fingerprint cuts two URLs per report) instead of a char-set search.
    memchr::memchr2(b'?', b'#', url.as_bytes()).map_or(url, |end| &url[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `raw_host` as it was (three `str` searches), the reference of the one-pass version.
    fn raw_host_before(value: &str) -> Option<&str> {
        let (_, rest) = split_at_separator(value.trim())?;
        let end = rest
            .bytes()
            .position(|b| matches!(b, b'/' | b'?' | b'#'))
            .unwrap_or(rest.len());
        let authority = &rest[..end];
        let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let host = if let Some(v6) = host_port.strip_prefix('[') {
            v6.split(']').next().unwrap_or(v6)
        } else {
            host_port.split(':').next().unwrap_or(host_port)
        };
        (!host.is_empty()).then_some(host)
    }

    proptest::proptest! {
        /// The memchr searches cut where the `str` searches they replaced cut.
        #[test]
        fn separators_are_found_as_before(value in "[a:/é ]{0,12}") {
            let split_before = |value: &str| {
                let mut from = 0;
                while let Some(colon) = value[from..].find(':').map(|i| from + i) {
                    if let Some(rest) = value[colon + 1..].strip_prefix("//") {
                        return Some((value[..colon].to_owned(), rest.to_owned()));
                    }
                    from = colon + 1;
                }
                None
            };
            let split = split_at_separator(&value).map(|(a, b)| (a.to_owned(), b.to_owned()));
            proptest::prop_assert_eq!(split, split_before(&value));
            let scheme_before = value
                .split_once(':')
                .map(|(scheme, _)| scheme)
                .filter(|scheme| is_scheme_word(scheme));
            proptest::prop_assert_eq!(raw_scheme(&value), scheme_before);
        }
    }

    proptest::proptest! {
        /// The one-pass `raw_host` finds the host the searches found, for any text made of the
        /// bytes that matter (separators, `@`, `:`, brackets, multi-byte text).
        #[test]
        fn raw_host_is_what_it_was(url in "(https?://)?[a.:@/?#\\[\\]é ]{0,16}") {
            proptest::prop_assert_eq!(raw_host(&url), raw_host_before(&url));
        }
    }

    #[test]
    fn raw_host_cases() {
        for (url, want) in [
            (
                "https://Tracker.Example.net/t.js",
                Some("Tracker.Example.net"),
            ),
            ("https://u:p@a.example:8443/x", Some("a.example")),
            ("https://a@b@c.example:1?q#f", Some("c.example")),
            ("https://[2001:db8::1]:443/", Some("2001:db8::1")),
            ("https://[2001:db8::1", Some("2001:db8::1")),
            ("wss://a.example", Some("a.example")),
            ("https://:80/", None),
            ("https:///p", None),
            ("a.example/x", None),
        ] {
            assert_eq!(raw_host(url), want, "{url}");
            assert_eq!(raw_host_before(url), want, "{url}");
        }
    }

    /// `strip_query` cuts where the char-set split it replaced cut (multi-byte text included).
    #[test]
    fn strip_query_cuts_at_the_first_question_mark_or_hash() {
        for url in [
            "https://a.example/p?q=1#f",
            "https://a.example/p#f?q",
            "https://a.example/p",
            "?",
            "#",
            "",
            "https://\u{e9}.example/\u{1f600}?x",
        ] {
            let before = url.split(['?', '#']).next().unwrap_or(url);
            assert_eq!(strip_query(url), before, "{url:?}");
        }
        assert_eq!(strip_query("https://a.example/p?q"), "https://a.example/p");
    }

    #[test]
    fn classifies_like_relay() {
        let cases: &[(Option<&str>, BlockedClass, Option<&str>)] = &[
            (None, BlockedClass::SelfOrigin, None),
            (Some(""), BlockedClass::SelfOrigin, None),
            (Some("self"), BlockedClass::SelfOrigin, None),
            (Some("'self'"), BlockedClass::SelfOrigin, None),
            (Some("null"), BlockedClass::None, None),
            (Some("inline"), BlockedClass::Inline, Some("inline")),
            (Some("eval"), BlockedClass::Eval, Some("eval")),
            (Some("wasm-eval"), BlockedClass::WasmEval, Some("wasm-eval")),
            (
                Some("trusted-types-sink"),
                BlockedClass::TrustedTypesSink,
                Some("trusted-types-sink"),
            ),
            (
                Some("trusted-types-policy"),
                BlockedClass::TrustedTypesPolicy,
                Some("trusted-types-policy"),
            ),
            (Some("data"), BlockedClass::Data, Some("data:")),
            (
                Some("data:image/png;base64,AA"),
                BlockedClass::Data,
                Some("data:image/png;base64,AA"),
            ),
            (Some("blob"), BlockedClass::Blob, Some("blob:")),
            (
                Some("blob:https://a.example/1"),
                BlockedClass::Blob,
                Some("blob:https://a.example/1"),
            ),
            (
                Some("chrome-extension"),
                BlockedClass::Extension,
                Some("chrome-extension:"),
            ),
            (
                Some("moz-extension://abc/x.js"),
                BlockedClass::Extension,
                Some("moz-extension://abc/x.js"),
            ),
            (Some("about"), BlockedClass::OtherScheme, Some("about:")),
            (
                Some("android-webview"),
                BlockedClass::OtherScheme,
                Some("android-webview:"),
            ),
            (
                Some("https://cdn.example/a.js?x=1"),
                BlockedClass::Url,
                Some("https://cdn.example/a.js?x=1"),
            ),
            (
                Some("WSS://live.example/"),
                BlockedClass::Url,
                Some("WSS://live.example/"),
            ),
            (
                Some("[anonymised]"),
                BlockedClass::OtherScheme,
                Some("[anonymised]"),
            ),
        ];
        for (raw, class, stored) in cases {
            assert_eq!(
                classify(*raw),
                (*class, stored.map(str::to_owned)),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn origin_keys() {
        let key = |raw| {
            let (class, url) = classify(Some(raw));
            origin_key(class, url.as_deref())
        };
        assert_eq!(
            key("https://cdn.example:443/a.js?x=1"),
            "https://cdn.example"
        );
        assert_eq!(
            key("http://cdn.example:8080/a.js"),
            "http://cdn.example:8080"
        );
        assert_eq!(key("inline"), "inline");
        assert_eq!(key("data:image/png;base64,AA"), "data");
        assert_eq!(key("about"), "about:");
        assert_eq!(key("chrome-extension://abc/x.js"), "chrome-extension:");
        assert_eq!(key(""), "self-origin");
    }

    /// Guards the fast path of `origin_key`: wherever `plain_url_origin` answers, it answers
    /// exactly what the WHATWG parser does (the fingerprint depends on it), and it does answer
    /// for the common plain URLs.
    #[test]
    fn plain_origins_match_the_url_parser() {
        let by_parser = |url: &str| match url::Url::parse(url) {
            Ok(parsed) if parsed.has_host() => Some(parsed.origin().ascii_serialization()),
            _ => None,
        };
        let schemes = [
            "http",
            "https",
            "ws",
            "wss",
            "HTTPS",
            "Http",
            "ftp",
            "file",
            "blob:https",
        ];
        let hosts = [
            "cdn.example",
            "CDN.Example.COM",
            "a-b.c-d.example",
            "localhost",
            "x",
            "45.55.25.245",
            "1.2.3.04",
            "example.1",
            "example.0x1f",
            "a..b",
            ".a.b",
            "a.b.",
            "xn--nxasmq6b.example",
            "XN--abc.example",
            "b\u{e9}b\u{e9}.example",
            "a%41.example",
            "[::1]",
            "u:p@host.example",
            "a b.example",
            "a\tb.example",
            "a_b.example",
            "",
            "host.example\n",
        ];
        let ports = [
            "", ":80", ":443", ":8080", ":0", ":080", ":65535", ":65536", ":", ":8a", ":99999",
        ];
        let rests = [
            "",
            "/",
            "/a.js?x=1#f",
            "?q",
            "#f",
            "\\x",
            "/%zz/ \u{e9}",
            "/a\tb",
        ];
        let mut answered = 0;
        let mut cases = 0;
        for scheme in schemes {
            for host in hosts {
                for port in ports {
                    for rest in rests {
                        let url = format!("{scheme}://{host}{port}{rest}");
                        cases += 1;
                        if let Some(fast) = plain_url_origin(&url) {
                            answered += 1;
                            assert_eq!(Some(fast), by_parser(&url), "{url:?}");
                        }
                    }
                }
            }
        }
        assert!(answered > 0, "fast path answered {answered} of {cases}");
        assert_eq!(
            plain_url_origin("https://CDN.example:443/a.js?x=1").as_deref(),
            Some("https://cdn.example")
        );
        assert_eq!(
            plain_url_origin("http://cdn.example:8080").as_deref(),
            Some("http://cdn.example:8080")
        );
        assert_eq!(plain_url_origin("http://45.55.25.245/"), None);
    }

    #[test]
    fn hosts() {
        assert_eq!(
            host_of("https://u:p@Example.COM:8443/x").as_deref(),
            Some("example.com")
        );
        assert_eq!(host_of("http://[::1]:80/").as_deref(), Some("::1"));
        assert_eq!(host_of("about:blank"), None);
        assert_eq!(host_of("https:///x"), None);
    }
}
