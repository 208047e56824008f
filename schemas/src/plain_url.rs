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

/// Splits a plain URL (module docs); with `canonical_ipv4`, a host in the parser's own IPv4
/// spelling (`a.b.c.d`, see [`is_canonical_ipv4`]) counts as plain too.
pub fn split(url: &str, canonical_ipv4: bool) -> Option<PlainAuthority<'_>> {
    // The first `:` must open `://`: a later `://` would leave a `:` in the scheme, which is
    // none of the four (a memchr for `:` rather than a substring search set up per URL).
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
    let plain_host = is_plain_name(host) || (canonical_ipv4 && is_canonical_ipv4(host));
    if !plain_host {
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

/// Letters, digits and `-` in non-empty labels, no `xn--` label, the last label starting with
/// a letter (a last label starting with a digit may be an IPv4 address, or "ends in a number",
/// which the parser refuses).
fn is_plain_name(host: &str) -> bool {
    // Byte slices split on `.`: a str split by char costs a memchr set-up per label.
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
    starts_with_letter && labels().all(plain_label)
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
    use super::*;

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
