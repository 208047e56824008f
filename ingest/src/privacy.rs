//! The project's privacy settings applied to a report and the client IP before anything is
//! published: query strings and fragments stripped from URLs, referrer dropped, client IP kept
//! in full, truncated (/24, /48), hashed (salted sha256) or dropped.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use sha2::{Digest, Sha256};

use crate::projects::{IpPolicy, PrivacySpec};

/// Strips what the project asked for from the report's URLs.
pub fn apply(privacy: &PrivacySpec, report: &mut schemas::Report) {
    if privacy.drop_referrer {
        report.referrer = None;
    }
    if !privacy.strip_query && !privacy.strip_fragment {
        return;
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
        strip_url(url, privacy.strip_query, privacy.strip_fragment);
    }
}

/// Removes `?query` and/or `#fragment` in place (plain string surgery: CSP URLs are not always
/// valid URLs, and a parse/serialise round trip would change them).
pub fn strip_url(url: &mut String, query: bool, fragment: bool) {
    let hash = url.find('#');
    if fragment {
        if let Some(i) = hash {
            url.truncate(i);
        }
    }
    if query {
        let hash = url.find('#');
        let end = hash.unwrap_or(url.len());
        if let Some(q) = url[..end].find('?') {
            url.replace_range(q..end, "");
        }
    }
}

/// The client IP as stored, after the project's policy.
pub fn client_ip(privacy: &PrivacySpec, ip: IpAddr) -> Option<String> {
    let ip = canonical(ip);
    match privacy.client_ip {
        IpPolicy::Full => Some(ip.to_string()),
        IpPolicy::Truncate => Some(truncate(ip).to_string()),
        IpPolicy::Hash => Some(hash(privacy.ip_salt.as_deref().unwrap_or_default(), ip)),
        IpPolicy::Drop => None,
    }
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
pub fn hash(salt: &str, ip: IpAddr) -> String {
    let mut hasher = Sha256::new();
    hasher.update(salt.as_bytes());
    hasher.update(ip.to_string().as_bytes());
    let digest = hasher.finalize();
    hex::encode(&digest[..8])
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn spec(policy: IpPolicy) -> PrivacySpec {
        PrivacySpec {
            client_ip: policy,
            ip_salt: Some("salt".into()),
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
        assert_eq!(h, hash("salt", v4), "stable");
        assert_ne!(h, hash("other", v4), "salted");
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
}
