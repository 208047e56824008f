//! URL enrichment: origin, host, path without query, scheme, registrable domain (Public Suffix
//! List via `psl`) and the first-party/third-party verdict.

use std::net::IpAddr;

use url::Url;

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
