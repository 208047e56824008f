//! The authority of a *plain* special URL, split without the WHATWG parser (`url::Url`, about
//! 5,000 instructions per URL): the fast path that ingest's filter, the blocked-origin key and
//! the processor's URL parts share. Plain means what the parser would only lowercase: an
//! `http`, `https`, `ws` or `wss` scheme (any case), then an ASCII `host[:port]` authority of
//! letters, digits and `-` in non-empty labels whose last label starts with a letter (no IP
//! literal, no host ending in a number, no IDNA `xn--` label, no userinfo), and a port of 1-5
//! digits without a leading zero up to 65535. Anything else is `None`, and the parser decides.
//! Each caller checks its answers against the parser in its own tests.

/// A plain URL's scheme and authority, borrowed from the URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlainAuthority<'a> {
    /// The scheme, lowercased: `http`, `https`, `ws` or `wss`.
    pub scheme: &'static str,
    /// The host as written (the parser would lowercase it).
    pub host: &'a str,
    /// The port when it is not the scheme's default (the parser drops a default port).
    pub port: Option<&'a str>,
    /// What follows the authority: empty or starting with `/`, `?`, `#` or `\`.
    pub rest: &'a str,
}

impl PlainAuthority<'_> {
    /// Appends the URL's origin, `scheme://host[:port]` with the host lowercased: byte for byte
    /// what `Url::parse(url)?.origin().ascii_serialization()` gives for a plain URL
    /// (`blocked::origin_key` and the fingerprint's blocked origin write it).
    pub fn push_origin(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.scheme.as_bytes());
        out.extend_from_slice(b"://");
        let host_start = out.len();
        out.extend_from_slice(self.host.as_bytes());
        out[host_start..].make_ascii_lowercase();
        if let Some(port) = self.port {
            out.push(b':');
            out.extend_from_slice(port.as_bytes());
        }
    }
}

/// Splits a plain URL (module docs); with `canonical_ipv4`, a host in the parser's own IPv4
/// spelling (`a.b.c.d`, see [`is_canonical_ipv4`]) counts as plain too.
///
/// One pass over the authority, each byte classified by a table, without `str` searches:
/// ingest's filter, the fingerprint's blocked origin and the processor split one to three
/// URLs per report.
pub fn split(url: &str, canonical_ipv4: bool) -> Option<PlainAuthority<'_>> {
    let bytes = url.as_bytes();
    // The scheme ends at the first `:`, which must open `://` (a later `://` would leave a `:`
    // in the scheme, which is none of the four). `b | 0x20` is `b` lowercased exactly where it
    // is compared with a letter.
    let lower = |i: usize| bytes.get(i).map_or(0, |b| b | 0x20);
    let (scheme, default_port, colon) = match (lower(0), lower(1), lower(2), lower(3)) {
        (b'h', b't', b't', b'p') if lower(4) == b's' => ("https", 443, 5),
        (b'h', b't', b't', b'p') => ("http", 80, 4),
        (b'w', b's', b's', _) => ("wss", 443, 3),
        (b'w', b's', _, _) => ("ws", 80, 2),
        _ => return None,
    };
    if bytes.get(colon..colon + 3) != Some(b"://") {
        return None;
    }
    let start = colon + 3;
    // The authority ends at the first `/`, `?`, `#` or `\\`, the host at its first `:`. A host
    // byte that is not a letter, digit, `-` or `.`, an empty label or an IDNA label makes it
    // neither a plain name nor an IPv4 address (module docs): refused at once.
    let (mut end, mut host_end, mut label_start) = (bytes.len(), None, start);
    for (i, b) in bytes.iter().enumerate().skip(start) {
        match (AUTHORITY_BYTE[usize::from(*b)], host_end) {
            (Byte::End, _) => {
                end = i;
                break;
            }
            // In the port: checked below.
            (_, Some(_)) => {}
            (Byte::Name, None) => {}
            (Byte::Dot, None) => {
                if i == label_start || is_idna(&bytes[label_start..i]) {
                    return None;
                }
                label_start = i + 1;
            }
            (Byte::Colon, None) => host_end = Some(i),
            (Byte::Other, None) => return None,
        }
    }
    let host_end = host_end.unwrap_or(end);
    // Every boundary is an ASCII byte: the slices below are on char boundaries.
    let host = &url[start..host_end];
    // What is left of the plain-name rule: the last label starts with a letter, is not IDNA.
    let last = &bytes[label_start.min(host_end)..host_end];
    let plain_name = last.first().is_some_and(u8::is_ascii_alphabetic) && !is_idna(last);
    if !(plain_name || (canonical_ipv4 && is_canonical_ipv4(host))) {
        return None;
    }
    let port = match url.get(host_end + 1..end) {
        None => None,
        Some(port) => {
            let digits = port.as_bytes();
            if !(1..=5).contains(&digits.len()) || digits[0] == b'0' {
                return None;
            }
            let mut value = 0u32;
            for digit in digits {
                if !digit.is_ascii_digit() {
                    return None;
                }
                value = value * 10 + u32::from(digit - b'0');
            }
            if value > 65_535 {
                return None;
            }
            (value != default_port).then_some(port)
        }
    };
    Some(PlainAuthority {
        scheme,
        host,
        port,
        rest: &url[end..],
    })
}

/// What a byte is to [`split`]'s pass over the authority.
#[derive(Debug, Clone, Copy)]
enum Byte {
    /// A letter, a digit or `-`: allowed in a plain host's label.
    Name,
    Dot,
    Colon,
    /// `/`, `?`, `#` or `\\`: the end of the authority.
    End,
    Other,
}

static AUTHORITY_BYTE: [Byte; 256] = {
    let mut table = [Byte::Other; 256];
    let mut b = 0;
    while b < 256 {
        let byte = b as u8;
        table[b] = match byte {
            b'/' | b'?' | b'#' | b'\\' => Byte::End,
            b'.' => Byte::Dot,
            b':' => Byte::Colon,
            _ if byte.is_ascii_alphanumeric() || byte == b'-' => Byte::Name,
            _ => Byte::Other,
        };
        b += 1;
    }
    table
};

/// An IDNA label (`xn--`, any case), which the parser would decode.
fn is_idna(label: &[u8]) -> bool {
    label.len() >= 4 && label[..4].eq_ignore_ascii_case(b"xn--")
}

/// `a.b.c.d` with four decimal parts 0-255 without leading zeros: the parser's own output for
/// an IPv4 host, which it returns unchanged (other spellings, `0x7f.1` or `010.0.0.1`, are left
/// to it).
pub fn is_canonical_ipv4(host: &str) -> bool {
    let mut parts = 0;
    let canonical = host.split('.').all(|part| {
        parts += 1;
        let digits = !part.is_empty()
            && part.len() <= 3
            && part.bytes().all(|b| b.is_ascii_digit())
            && !(part.len() > 1 && part.starts_with('0'));
        digits && part.parse::<u16>().is_ok_and(|n| n <= 255)
    });
    canonical && parts == 4
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use proptest::prelude::*;
    use proptest::strategy::ValueTree;

    use super::*;

    /// `split` as it was (`str` searches, the host checked in two passes): the reference the
    /// one-pass `split` is held to.
    fn split_before(url: &str, canonical_ipv4: bool) -> Option<PlainAuthority<'_>> {
        let colon = url.find(':')?;
        let (scheme, after_scheme) = (&url[..colon], url[colon + 1..].strip_prefix("//")?);
        let (scheme, default_port) = match scheme.as_bytes() {
            s if s.eq_ignore_ascii_case(b"https") => ("https", 443),
            s if s.eq_ignore_ascii_case(b"http") => ("http", 80),
            s if s.eq_ignore_ascii_case(b"wss") => ("wss", 443),
            s if s.eq_ignore_ascii_case(b"ws") => ("ws", 80),
            _ => return None,
        };
        let end = after_scheme
            .bytes()
            .position(|b| matches!(b, b'/' | b'?' | b'#' | b'\\'))
            .unwrap_or(after_scheme.len());
        let (authority, rest) = after_scheme.split_at(end);
        let (host, port) = match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        };
        let labels = || host.as_bytes().split(|b| *b == b'.');
        let plain_label = |label: &[u8]| {
            !label.is_empty()
                && label
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
                && !(label.len() >= 4 && label[..4].eq_ignore_ascii_case(b"xn--"))
        };
        let starts_with_letter = labels()
            .next_back()
            .and_then(|last| last.first())
            .is_some_and(u8::is_ascii_alphabetic);
        let plain_name = starts_with_letter && labels().all(plain_label);
        if !(plain_name || (canonical_ipv4 && is_canonical_ipv4(host))) {
            return None;
        }
        let port = match port {
            None => None,
            Some(port) => {
                let digits = (1..=5).contains(&port.len())
                    && !port.starts_with('0')
                    && port.bytes().all(|b| b.is_ascii_digit());
                if !digits {
                    return None;
                }
                let value: u32 = port.parse().ok()?;
                if value > 65_535 {
                    return None;
                }
                (value != default_port).then_some(port)
            }
        };
        Some(PlainAuthority {
            scheme,
            host,
            port,
            rest,
        })
    }

    /// URLs near the plain ones: every scheme in mixed case and near misses, hosts of labels
    /// with the bytes that matter (`.`, `-`, `xn--`, digits, `@`, `[`, non-ASCII), ports and
    /// what may follow the authority.
    fn near_plain_url() -> impl Strategy<Value = String> {
        let scheme = prop_oneof![
            3 => prop::sample::select(vec!["http://", "HTTPS://", "hTtPs://", "ws://", "WSS://"]),
            1 => prop::sample::select(vec![
                "wss:/", "ftp://", "http:", "https//", "", "httpx://", "h://", "ws:///",
                "http:://", "ws://:",
            ]),
        ];
        let host = prop_oneof![
            3 => "[a-zA-Z][a-zA-Z0-9-]{0,4}(\\.[a-zA-Z][a-zA-Z0-9-]{0,4}){0,3}",
            1 => "[a-zA-Z0-9-]{0,3}(\\.[a-zA-Z0-9-]{0,3}){0,3}",
            2 => "([a-zA-Z0-9]{0,4}|xn--|XN--|-|1[0-9]{0,2}|256|0x7f|@|\\[::1\\]|\u{e9}|%41)(\\.([a-zA-Z0-9]{0,4}|xn--a|1[0-9]{0,2}|0|-|))*",
        ];
        let port = prop_oneof![
            2 => Just(String::new()),
            1 => "(:|:[0-9]{0,6}|:0[0-9]|:443|:80|:65535|:65536|:8a|::1)",
        ];
        let rest = "(|/|/p\\?q=1|\\?x|#f|\\\\x|/:80|:)";
        (scheme, host, port, rest)
            .prop_map(|(scheme, host, port, rest)| format!("{scheme}{host}{port}{rest}"))
    }

    proptest! {
        #[test]
        fn splits_as_before(url in near_plain_url(), ipv4 in any::<bool>()) {
            prop_assert_eq!(split(&url, ipv4), split_before(&url, ipv4));
        }

        #[test]
        fn splits_any_text_as_before(url in "\\PC{0,40}", ipv4 in any::<bool>()) {
            prop_assert_eq!(split(&url, ipv4), split_before(&url, ipv4));
        }
    }

    /// The generator reaches both answers, and every branch of the scheme.
    #[test]
    fn near_plain_urls_are_both_split_and_refused() {
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let (mut split_count, mut refused, mut schemes) = (0, 0, std::collections::BTreeSet::new());
        for _ in 0..2_000 {
            let url = near_plain_url().new_tree(&mut runner).unwrap().current();
            match split(&url, true) {
                Some(plain) => {
                    split_count += 1;
                    schemes.insert(plain.scheme);
                }
                None => refused += 1,
            }
        }
        assert!(
            split_count > 200 && refused > 200,
            "{split_count} {refused}"
        );
        assert_eq!(schemes.len(), 4, "{schemes:?}");
    }

    #[test]
    fn splits_plain_urls_and_refuses_the_rest() {
        let a = split("HTTPS://CDN.Example:443/a.js?x=1", false).unwrap();
        assert_eq!(
            a,
            PlainAuthority {
                scheme: "https",
                host: "CDN.Example",
                port: None,
                rest: "/a.js?x=1",
            }
        );
        let b = split("ws://a-b.example:8080", false).unwrap();
        assert_eq!((b.scheme, b.port, b.rest), ("ws", Some("8080"), ""));
        for refused in [
            "ftp://a.example/",
            "https://user@a.example/",
            "https://xn--bcher-kva.example/",
            "https://a..example/",
            "https://a.example:0443/",
            "https://a.example:65536/",
            "https://a.example:/",
            "https://a.123/",
            "https://[::1]/",
            "https://45.55.25.245/",
            "https:/a.example",
        ] {
            assert_eq!(split(refused, false), None, "{refused}");
        }
        assert_eq!(
            split("http://45.55.25.245/x", true).unwrap().host,
            "45.55.25.245"
        );
        assert_eq!(split("http://010.0.0.1/", true), None);
    }

    #[test]
    fn canonical_ipv4_is_the_parsers_spelling() {
        assert!(is_canonical_ipv4("192.0.2.1"));
        assert!(is_canonical_ipv4("0.0.0.0"));
        for other in [
            "1.2.3",
            "1.2.3.4.5",
            "01.2.3.4",
            "256.1.1.1",
            "0x7f.0.0.1",
            "a.b.c.d",
        ] {
            assert!(!is_canonical_ipv4(other), "{other}");
        }
    }
}
