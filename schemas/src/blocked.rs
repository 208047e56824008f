//! Blocked-URI normalisation and classification.
//!
//! CSP reduces many blocked resources to keywords or bare schemes (REFERENCE section 1 and 3,
//! following Sentry Relay's normalisation so groups match what Sentry users expect):
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
    let Some(raw) = raw.map(str::trim) else {
        return (BlockedClass::SelfOrigin, None);
    };
    let lower = raw.to_ascii_lowercase();
    let keyword = match lower.as_str() {
        "" | "self" | "'self'" => return (BlockedClass::SelfOrigin, None),
        "null" => return (BlockedClass::None, None),
        "inline" | "'unsafe-inline'" => Some(BlockedClass::Inline),
        "eval" | "'unsafe-eval'" => Some(BlockedClass::Eval),
        "wasm-eval" | "'wasm-unsafe-eval'" => Some(BlockedClass::WasmEval),
        "trusted-types-policy" => Some(BlockedClass::TrustedTypesPolicy),
        "trusted-types-sink" => Some(BlockedClass::TrustedTypesSink),
        _ => None,
    };
    if let Some(class) = keyword {
        return (class, Some(lower));
    }
    match scheme_of(raw) {
        Some(scheme) => {
            let class = class_of_scheme(&scheme);
            (class, Some(raw.to_owned()))
        }
        None if is_scheme_word(raw) => {
            // A bare scheme (`data`, `about`, `chrome-extension`): store it as `scheme:`.
            let class = class_of_scheme(&lower);
            (class, Some(format!("{lower}:")))
        }
        None => (BlockedClass::OtherScheme, Some(raw.to_owned())),
    }
}

fn class_of_scheme(scheme: &str) -> BlockedClass {
    match scheme {
        "http" | "https" | "ws" | "wss" => BlockedClass::Url,
        "data" => BlockedClass::Data,
        "blob" => BlockedClass::Blob,
        s if EXTENSION_SCHEMES.contains(&s) => BlockedClass::Extension,
        _ => BlockedClass::OtherScheme,
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
    let (scheme, _) = value.split_once(':')?;
    is_scheme_word(scheme).then(|| scheme.to_ascii_lowercase())
}

/// The scheme of `value`, or the whole value lowercased when it is a bare scheme word.
pub fn scheme_or_word(value: &str) -> Option<String> {
    let value = value.trim();
    scheme_of(value).or_else(|| is_scheme_word(value).then(|| value.to_ascii_lowercase()))
}

/// The lowercase host of an absolute hierarchical URL (`scheme://[user@]host[:port]/...`).
pub fn host_of(value: &str) -> Option<String> {
    let (_, rest) = value.trim().split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next().unwrap_or(v6)
    } else {
        host_port.split(':').next().unwrap_or(host_port)
    };
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

/// The grouping key of a blocked resource: `scheme://host[:port]` for URLs, the class
/// keyword otherwise (`scheme:` for extensions and other schemes, so `about:` and
/// `filesystem:` stay apart).
pub fn origin_key(class: BlockedClass, blocked_url: Option<&str>) -> String {
    match (class, blocked_url) {
        (BlockedClass::Url, Some(url)) => match url::Url::parse(url) {
            Ok(parsed) if parsed.has_host() => parsed.origin().ascii_serialization(),
            _ => strip_query(url).to_owned(),
        },
        (BlockedClass::Extension | BlockedClass::OtherScheme, Some(url)) => {
            match scheme_or_word(url) {
                Some(scheme) => format!("{scheme}:"),
                None => strip_query(url).to_owned(),
            }
        }
        (class, _) => class.as_str().to_owned(),
    }
}

/// `url` without its query string and fragment.
pub fn strip_query(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}

#[cfg(test)]
mod tests {
    use super::*;

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
