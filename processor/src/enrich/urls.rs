//! URL enrichment: origin, host, path without query, scheme, registrable domain (Public Suffix
//! List via `psl`) and the first-party/third-party verdict.

use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::Arc;

use url::Url;

use super::cache::CountedLru;

/// Longest URL [`UrlCache`] keeps: longer ones rarely repeat, and this bounds an entry (the key
/// and five parts, each at most 3x this long once percent-encoded) to ~7 KiB.
pub const MAX_CACHED_URL_BYTES: usize = 512;

/// The parts of a URL the analysts group by. Empty strings when absent or unparsable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UrlParts {
    /// Scheme without `:` (`https`, `data`, `chrome-extension`).
    pub scheme: String,
    /// Lowercase host, without port.
    pub host: String,
    /// `scheme://host[:port]` for hierarchical URLs.
    pub origin: String,
    /// Path only: query and fragment dropped (they often carry tokens).
    pub path: String,
    /// Registrable domain (`cdn.example.co.uk` -> `example.co.uk`); IPs and single labels as is.
    pub domain: String,
}

/// Splits a URL. A bare `host[:port]` (how some relays reduce blocked URIs) is read as https.
pub fn parts(raw: &str) -> UrlParts {
    let raw = raw.trim();
    if let Some(parts) = plain_parts(raw) {
        return parts;
    }
    parsed_parts(raw)
}

/// [`parts`] by the WHATWG parser (`url::Url`) alone: what [`plain_parts`] must agree with.
fn parsed_parts(raw: &str) -> UrlParts {
    // `cdn.example.com:444` would parse as scheme `cdn.example.com`: read it as a host first.
    let url = if !raw.contains("://") && looks_like_host(raw) {
        Url::parse(&format!("https://{raw}")).ok()
    } else {
        Url::parse(raw).ok()
    };
    let Some(url) = url else {
        return UrlParts {
            scheme: bare_scheme(raw),
            ..UrlParts::default()
        };
    };
    let host = url
        .host_str()
        .unwrap_or_default()
        .trim_matches(['[', ']'])
        .to_ascii_lowercase();
    let origin = match url.origin() {
        origin @ url::Origin::Tuple(..) => origin.ascii_serialization(),
        url::Origin::Opaque(_) => String::new(),
    };
    let path = if url.cannot_be_a_base() {
        String::new()
    } else {
        url.path().to_owned()
    };
    UrlParts {
        scheme: url.scheme().to_owned(),
        domain: registrable_domain(&host),
        host,
        origin,
        path,
    }
}

/// [`parts`] of a plain http(s)/ws(s) URL without `url::Url`, which costs ~5,000 instructions
/// per URL, most of a row when document URLs do not repeat (every report's own session or
/// query string): `None` for anything the WHATWG parser might change or reject, which then
/// decides. Plain means: a plain authority (`schemas::plain_url`: an ASCII `host[:port]` of
/// letters, digits, `-` and `.` whose last label starts with a letter, no IP literal, no IDNA,
/// no userinfo, a valid port) and a
/// path (up to `?` or `#`) of unreserved and sub-delimiter characters, `:`, `@`, `/` and `%XX`
/// escapes, without `.`/`..` segments or escaped dots (the parser would resolve them) and
/// without backslashes. For those the parser only lowercases the scheme and host, drops a
/// default port and turns an empty path into `/`, which is what this does
/// (`tests::plain_urls_split_like_the_parser` checks it against the parser).
fn plain_parts(raw: &str) -> Option<UrlParts> {
    let schemas::plain_url::PlainAuthority {
        scheme,
        host,
        port,
        rest: after,
    } = schemas::plain_url::split(raw, false)?;
    let path_end = after.find(['?', '#']).unwrap_or(after.len());
    let path = &after[..path_end];
    if !plain_path(path) {
        return None;
    }
    let host = host.to_ascii_lowercase();
    let mut origin = String::with_capacity(scheme.len() + 3 + host.len() + 6);
    origin.push_str(scheme);
    origin.push_str("://");
    origin.push_str(&host);
    if let Some(port) = port {
        origin.push(':');
        origin.push_str(port);
    }
    Some(UrlParts {
        scheme: scheme.to_owned(),
        domain: registrable_domain(&host),
        host,
        origin,
        path: if path.is_empty() {
            "/".to_owned()
        } else {
            path.to_owned()
        },
    })
}

/// A path the WHATWG parser keeps byte for byte (see [`plain_parts`]).
fn plain_path(path: &str) -> bool {
    if path.is_empty() {
        return true;
    }
    let bytes = path.as_bytes();
    if bytes[0] != b'/' {
        return false;
    }
    for (at, &b) in bytes.iter().enumerate() {
        let allowed = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b':'
                    | b'@'
                    | b'/'
            );
        let escape = b == b'%'
            && bytes.get(at + 1).is_some_and(u8::is_ascii_hexdigit)
            && bytes.get(at + 2).is_some_and(u8::is_ascii_hexdigit)
            // `%2e` is a dot to the parser's dot-segment rule.
            && !(bytes[at + 1] == b'2' && bytes[at + 2].eq_ignore_ascii_case(&b'e'));
        if !allowed && !escape {
            return false;
        }
    }
    !path
        .split('/')
        .any(|segment| segment == "." || segment == "..")
}

/// [`parts`] behind a bounded LRU cache keyed by the URL itself: the reports of a site repeat the
/// same document, script and source URLs, and splitting one (`url::Url` and the public suffix
/// list, ~6,700 instructions) was most of a row's enrichment.
#[derive(Debug)]
pub struct UrlCache {
    /// Keyed by the URL's bytes, so a hit needs no UTF-8 check (the row writer reads URLs as
    /// bytes). Shared, so a hit costs a reference count, not five strings copied.
    cache: CountedLru<Vec<u8>, Arc<UrlParts>>,
}

impl UrlCache {
    /// Remembers the parts of the last `capacity` distinct URLs of at most
    /// [`MAX_CACHED_URL_BYTES`].
    pub fn new(capacity: NonZeroUsize) -> Self {
        Self {
            cache: CountedLru::new(capacity),
        }
    }

    /// The same as [`parts`] of `raw`, which is UTF-8 (every URL the processor reads was
    /// checked as such when its message arrived; other bytes would be read lossily).
    pub fn parts(&mut self, raw: &[u8]) -> Arc<UrlParts> {
        let key = cache_key(raw);
        if key.is_empty() || key.len() > MAX_CACHED_URL_BYTES {
            return Arc::new(parts_of_bytes(key));
        }
        self.cache
            .get_or_compute(key, || Arc::new(parts_of_bytes(key)))
    }

    /// `parts(raw).host` alone (the source file's host), without copying the other parts.
    pub fn host(&mut self, raw: &[u8]) -> String {
        let key = cache_key(raw);
        if key.is_empty() || key.len() > MAX_CACHED_URL_BYTES {
            return parts_of_bytes(key).host;
        }
        self.cache.read_or_compute(
            key,
            || Arc::new(parts_of_bytes(key)),
            |parts| parts.host.clone(),
        )
    }

    /// (hits, misses) since start, for metrics; URLs too long to cache are not counted.
    pub fn stats(&self) -> (u64, u64) {
        self.cache.stats()
    }
}

/// [`parts`] of UTF-8 bytes (a cache miss).
fn parts_of_bytes(raw: &[u8]) -> UrlParts {
    parts(&String::from_utf8_lossy(raw))
}

/// The part of `raw` its [`parts`] depend on, as the cache key: an http(s) URL without its
/// query and fragment. The WHATWG parser reads a special URL's scheme, authority and path
/// before the first `?` or `#` and never looks past it, and [`parts`] keeps none of the query,
/// so `parts(cache_key(raw)) == parts(raw)` (`tests::the_cache_key_keeps_what_decides_the_parts`).
/// Document URLs that differ only in a session or tracking query then share one entry instead
/// of each missing (benches/README.md, issue 13: URL parts were most of a row's instructions).
/// Not cut: other schemes, and a cut that would leave whitespace or a control character at the
/// end (trimmed away alone, kept and escaped inside the whole URL).
///
/// On the bytes of UTF-8 text, as the text itself would be cut (`str::trim`, then ASCII
/// bytes, which never occur inside a multi-byte character): a non-ASCII byte at either end or
/// before the cut is decided on the text (`tests::the_cache_key_of_bytes_is_the_key_of_text`).
fn cache_key(raw: &[u8]) -> &[u8] {
    let url = trim(raw);
    let special = [&b"http://"[..], b"https://"].iter().any(|scheme| {
        url.get(..scheme.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(scheme))
    });
    if !special {
        return url;
    }
    match url.iter().position(|&b| b == b'?' || b == b'#') {
        Some(cut) if !ends_in_space_or_control(&url[..cut]) => &url[..cut],
        _ => url,
    }
}

/// `str::trim` of UTF-8 bytes (unchanged if they are not UTF-8).
fn trim(raw: &[u8]) -> &[u8] {
    let kept = |b: Option<&u8>| b.is_some_and(|&b| b.is_ascii() && !char::from(b).is_whitespace());
    if kept(raw.first()) && kept(raw.last()) {
        return raw;
    }
    std::str::from_utf8(raw).map_or(raw, |text| text.trim().as_bytes())
}

/// Whether UTF-8 `text` ends with a whitespace or control character.
fn ends_in_space_or_control(text: &[u8]) -> bool {
    let odd = |c: char| c.is_whitespace() || c.is_control();
    match text.last() {
        None => false,
        Some(&b) if b.is_ascii() => odd(char::from(b)),
        Some(_) => std::str::from_utf8(text)
            .ok()
            .and_then(|text| text.chars().next_back())
            .is_some_and(odd),
    }
}

/// The registrable domain of a host; IP addresses and names without a public suffix stay whole.
pub fn registrable_domain(host: &str) -> String {
    let host = host.trim_end_matches('.');
    if host.is_empty() || host.parse::<IpAddr>().is_ok() {
        return host.to_owned();
    }
    psl::domain_str(host).unwrap_or(host).to_owned()
}

/// A blocked resource is third-party when its registrable domain differs from the document's.
/// Unknown on either side (keywords, opaque schemes) counts as first-party.
pub fn third_party(document_domain: &str, blocked_domain: &str) -> bool {
    !document_domain.is_empty() && !blocked_domain.is_empty() && document_domain != blocked_domain
}

fn looks_like_host(raw: &str) -> bool {
    !raw.is_empty()
        && raw.contains('.')
        && raw
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_'))
}

/// `chrome-extension` from `chrome-extension` or `chrome-extension:...`; empty otherwise.
fn bare_scheme(raw: &str) -> String {
    let scheme = raw.split(':').next().unwrap_or_default();
    let valid = scheme
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if valid && !looks_like_host(raw) {
        scheme.to_ascii_lowercase()
    } else {
        String::new()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn splits_a_full_url_and_drops_the_query() {
        let p = parts("https://Shop.Example.co.uk:8443/a/b.js?token=secret#frag");
        assert_eq!(p.scheme, "https");
        assert_eq!(p.host, "shop.example.co.uk");
        assert_eq!(p.origin, "https://shop.example.co.uk:8443");
        assert_eq!(p.path, "/a/b.js");
        assert_eq!(p.domain, "example.co.uk");
    }

    #[test]
    fn reads_a_bare_host_as_https() {
        let p = parts("cdn.example.com:444");
        assert_eq!(
            (p.scheme.as_str(), p.host.as_str()),
            ("https", "cdn.example.com")
        );
        assert_eq!(p.origin, "https://cdn.example.com:444");
        assert_eq!(p.domain, "example.com");
    }

    #[test]
    fn opaque_and_bare_schemes_keep_only_the_scheme() {
        assert_eq!(parts("data:image/png;base64,AAAA").scheme, "data");
        assert_eq!(parts("data:image/png;base64,AAAA").origin, "");
        assert_eq!(parts("chrome-extension").scheme, "chrome-extension");
        let ext = parts("chrome-extension://abcdef/inject.js");
        assert_eq!(
            (ext.scheme.as_str(), ext.host.as_str()),
            ("chrome-extension", "abcdef")
        );
        assert_eq!(parts("inline").scheme, "inline");
        assert_eq!(parts("").scheme, "");
        assert_eq!(parts("not a url").scheme, "");
    }

    #[test]
    fn registrable_domains_follow_the_public_suffix_list() {
        assert_eq!(registrable_domain("a.b.example.com"), "example.com");
        assert_eq!(registrable_domain("user.github.io"), "user.github.io");
        assert_eq!(registrable_domain("203.0.113.9"), "203.0.113.9");
        assert_eq!(registrable_domain("2001:db8::1"), "2001:db8::1");
        assert_eq!(parts("http://[2001:db8::1]:8080/x").domain, "2001:db8::1");
    }

    #[test]
    fn the_cache_answers_what_parts_answers_and_is_bounded() {
        let urls = [
            "https://cdn.example.co.uk:8443/a/b.js?token=1",
            "cdn.example.com:444",
            "data:text/plain,hi",
            "chrome-extension",
            "https://cdn.example.co.uk:8443/a/b.js?token=1",
            "",
        ];
        let mut cache = UrlCache::new(NonZeroUsize::new(2).unwrap());
        for url in urls {
            assert_eq!(*cache.parts(url.as_bytes()), parts(url), "{url}");
        }
        // Two distinct URLs came between the repeats, so capacity 2 evicted the first one.
        assert_eq!(cache.stats(), (0, 5), "the empty URL is not looked up");
        assert_eq!(cache.cache.len(), 2);
        assert_eq!(*cache.parts(b"chrome-extension"), parts("chrome-extension"));
        assert_eq!(cache.stats(), (1, 5));
        let long = format!("https://a.example/{}", "x".repeat(MAX_CACHED_URL_BYTES));
        assert_eq!(*cache.parts(long.as_bytes()), parts(&long));
        assert_eq!(cache.stats(), (1, 5), "too long to cache: not looked up");
        assert_eq!(cache.host(long.as_bytes()), parts(&long).host);
        assert_eq!(cache.host(b"chrome-extension"), "");
        assert_eq!(cache.stats(), (2, 5), "host() shares the cache");
        assert_eq!(cache.host(urls[1].as_bytes()), "cdn.example.com");
        assert_eq!(cache.stats(), (2, 6), "evicted earlier: a miss");
        assert_eq!(
            *cache.parts(urls[1].as_bytes()),
            parts(urls[1]),
            "host() cached all parts"
        );
        assert_eq!(cache.stats(), (3, 6));
    }

    /// Regression guard of the fast path: every URL it answers is split exactly as the parser
    /// splits it (scheme/host/port/path edge cases the parser normalises or refuses).
    #[test]
    fn plain_urls_split_like_the_parser() {
        let schemes = ["http", "https", "ws", "wss", "HTTPS", "Http", "ftp", "file"];
        let hosts = [
            "shop.example.com",
            "Shop.Example.CO.UK",
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
            "user.github.io",
        ];
        let ports = [
            "", ":80", ":443", ":8080", ":0", ":080", ":65535", ":65536", ":", ":8a", ":99999",
        ];
        let paths = [
            "",
            "/",
            "/page-1",
            "/a/b.js",
            "/a/./b",
            "/a/../b",
            "/a/.",
            "/a/..",
            "/.",
            "/..",
            "/a/%2e/b",
            "/a/%2E%2e/b",
            "/a/.%2e",
            "/%41%zz",
            "/%4",
            "/a%20b",
            "/a b",
            "/a\tb",
            "/a\nb",
            "\\x",
            "/a\\b",
            "/\u{e9}",
            "/a|b^c`d{e}f\"g<h>",
            "/~user/!$&'()*+,;=:@x",
            "/.hidden/..x/x..",
            "//double//slash",
        ];
        let tails = ["", "?q=1", "?session=9#frag", "#f", "?", "#", "?a b#c d"];
        let (mut answered, mut cases) = (0, 0);
        for scheme in schemes {
            for host in hosts {
                for port in ports {
                    for path in paths {
                        for tail in tails {
                            let url = format!("{scheme}://{host}{port}{path}{tail}");
                            cases += 1;
                            if let Some(fast) = plain_parts(&url) {
                                answered += 1;
                                assert_eq!(fast, parsed_parts(&url), "{url:?}");
                            }
                        }
                    }
                }
            }
        }
        assert!(answered > 1_000, "fast path answered {answered} of {cases}");
        let p = plain_parts("HTTPS://Shop.Example.co.uk:443/a/b.js?token=secret#frag").unwrap();
        assert_eq!(
            (p.scheme.as_str(), p.host.as_str(), p.origin.as_str()),
            ("https", "shop.example.co.uk", "https://shop.example.co.uk")
        );
        assert_eq!(
            (p.path.as_str(), p.domain.as_str()),
            ("/a/b.js", "example.co.uk")
        );
        assert_eq!(
            plain_parts("http://45.55.25.245/"),
            None,
            "IPv4: the parser decides"
        );
        assert_eq!(plain_parts("https://a.example/x/../y"), None);
    }

    #[test]
    fn the_cache_key_keeps_what_decides_the_parts() {
        let heads = [
            "https://shop.example.com/page-1",
            "HTTP://Shop.Example.co.uk:8443/a/b.js",
            "https://a.example",
            "https://a.example:443",
            "https://",
            "https:",
            "http://u:p@a.example/x",
            "http://u?p@a.example/x",
            "https://a.example/x ",
            "https://a.example/x\t",
            "https://a.example/x\u{1}",
            "https://a.example/x\u{3000}",
            " https://a.example/x",
            "https://a.example\\x\\y",
            "https://a.example/./../x",
            "https://a.example/%2e/x",
            "https://[::1]:80/x",
            "https://45.55.25.245/x",
            "https://b\u{e9}b\u{e9}.example/\u{e9}",
            "https://a.example:99999/x",
            "a.example:443",
            "data:text/html",
            "blob:https://a.example/uuid",
            "chrome-extension://abc/x.js",
            "ftp://a.example/x",
            "wss://a.example/x",
            "inline",
        ];
        let tails = [
            "",
            "?",
            "#",
            "?q=1",
            "#f",
            "?q=1#f",
            "?a?b#c#d",
            "? x",
            "?@evil.test/",
        ];
        let mut cut = 0;
        for head in heads {
            for tail in tails {
                let raw = format!("{head}{tail}");
                let key = std::str::from_utf8(cache_key(raw.as_bytes())).unwrap();
                cut += usize::from(key.len() < raw.trim().len());
                assert_eq!(parts(key), parts(&raw), "{raw:?} keyed as {key:?}");
            }
        }
        assert!(cut > 100, "the key drops queries: {cut}");
        let mut cache = UrlCache::new(NonZeroUsize::new(4).unwrap());
        for session in 0..10 {
            let url = format!("https://a.example/p?session={session}");
            assert_eq!(*cache.parts(url.as_bytes()), parts(&url));
        }
        assert_eq!(cache.stats(), (9, 1), "one entry for every session");
    }

    /// The key on text, as it was computed before URLs were read as bytes.
    fn cache_key_of_text(raw: &str) -> &str {
        let url = raw.trim();
        let special = ["http://", "https://"].iter().any(|scheme| {
            url.get(..scheme.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(scheme))
        });
        if !special {
            return url;
        }
        match url.find(['?', '#']) {
            Some(cut) if !url[..cut].ends_with(|c: char| c.is_whitespace() || c.is_control()) => {
                &url[..cut]
            }
            _ => url,
        }
    }

    /// Regression guard of the byte version: the same key for every text, whitespace and
    /// control characters (ASCII and not) at either end and before the cut included.
    #[test]
    fn the_cache_key_of_bytes_is_the_key_of_text() {
        let odd = [
            "",
            " ",
            "\t",
            "\u{b}",
            "\u{c}",
            "\r\n",
            "\u{1}",
            "\u{1f}",
            "\u{7f}",
            "\u{85}",
            "\u{a0}",
            "\u{2028}",
            "\u{3000}",
            "\u{e9}",
            "\u{1F600}",
            "x",
        ];
        let heads = [
            "https://a.example/p",
            "HTTP://A.example",
            "http:/",
            "https",
            "data:x",
            "",
        ];
        let tails = ["", "?q", "#f", "?q#f", "?", "#"];
        let mut cases = 0;
        for before in odd {
            for head in heads {
                for inner in odd {
                    for tail in tails {
                        for after in odd {
                            let raw = format!("{before}{head}{inner}{tail}{after}");
                            assert_eq!(
                                cache_key(raw.as_bytes()),
                                cache_key_of_text(&raw).as_bytes(),
                                "{raw:?}"
                            );
                            cases += 1;
                        }
                    }
                }
            }
        }
        assert!(cases > 100_000, "{cases}");
    }

    #[test]
    fn third_party_compares_registrable_domains() {
        let doc = parts("https://www.example.com/page").domain;
        assert!(!third_party(
            &doc,
            &parts("https://static.example.com/app.js").domain
        ));
        assert!(third_party(&doc, &parts("https://evil.test/x.js").domain));
        assert!(!third_party(&doc, ""), "keywords are not third-party");
    }
}
