//! Host patterns compiled once, when the projects file loads, into a [`HostMatcher`] that
//! judges a host without allocating: exact hosts and wildcard suffixes in two hash sets, the
//! host lowercased into a stack buffer, one set lookup for the host and one per label boundary.

use std::collections::HashSet;

use super::HostPattern;

/// Lists of at most this many patterns are scanned instead of hashed into.
const SCAN_AT_MOST: usize = 8;

/// Longest host lowercased on the stack; a longer one (no DNS name is) is lowercased on the heap.
const STACK_HOST_BYTES: usize = 256;

/// A project's list of [`HostPattern`]s, ready to match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostMatcher {
    /// `example.com` patterns, lowercase.
    exact: HashSet<Box<str>>,
    /// `*.example.com` patterns as `example.com`, lowercase: a host matches when it is a
    /// strict subdomain of one of them.
    suffixes: HashSet<Box<str>>,
}

impl HostMatcher {
    /// Compiles `patterns` (already validated and lowercased by [`HostPattern::parse`]).
    pub fn compile(patterns: &[HostPattern]) -> Self {
        let mut matcher = Self::default();
        for pattern in patterns {
            match pattern {
                HostPattern::Exact(host) => matcher.exact.insert(host.as_str().into()),
                HostPattern::Suffix(dot_suffix) => {
                    let suffix = dot_suffix.strip_prefix('.').unwrap_or(dot_suffix);
                    matcher.suffixes.insert(suffix.into())
                }
            };
        }
        matcher
    }

    /// No pattern at all (the list was empty or absent).
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.suffixes.is_empty()
    }

    /// Distinct patterns held.
    pub fn len(&self) -> usize {
        self.exact.len() + self.suffixes.len()
    }

    /// Whether `host` (any ASCII case) matches a pattern: the same answer as
    /// [`HostPattern::matches`] on the lowercased host for each pattern of the list.
    pub fn matches(&self, host: &str) -> bool {
        if self.is_empty() {
            return false;
        }
        let mut buffer = [0u8; STACK_HOST_BYTES];
        match buffer.get_mut(..host.len()) {
            Some(lower) => {
                lower.copy_from_slice(host.as_bytes());
                lower.make_ascii_lowercase();
                // ASCII lowercasing keeps UTF-8 valid, so this never falls through.
                std::str::from_utf8(lower).is_ok_and(|lower| self.matches_lowercase(lower))
            }
            None => self.matches_lowercase(&host.to_ascii_lowercase()),
        }
    }

    fn matches_lowercase(&self, host: &str) -> bool {
        // Short lists (what projects files hold) are cheaper to scan than to hash into.
        if self.exact.len() + self.suffixes.len() <= SCAN_AT_MOST {
            return self.exact.iter().any(|e| **e == *host)
                || self.suffixes.iter().any(|s| {
                    host.len() > s.len() + 1
                        && host.ends_with(&**s)
                        && host.as_bytes()[host.len() - s.len() - 1] == b'.'
                });
        }
        if self.exact.contains(host) {
            return true;
        }
        // `*.shop.example` matches `a.shop.example` and `a.b.shop.example`, never
        // `shop.example` itself nor `.shop.example`: a dot with at least one byte before it.
        !self.suffixes.is_empty()
            && host
                .match_indices('.')
                .any(|(dot, _)| dot > 0 && self.suffixes.contains(&host[dot + 1..]))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn matcher(patterns: &[&str]) -> (Vec<HostPattern>, HostMatcher) {
        let parsed: Vec<HostPattern> = patterns
            .iter()
            .map(|p| HostPattern::parse(p).unwrap())
            .collect();
        let compiled = HostMatcher::compile(&parsed);
        (parsed, compiled)
    }

    /// The compiled matcher answers exactly what the pattern list answers, pattern by pattern.
    #[test]
    fn agrees_with_the_patterns() {
        let (patterns, compiled) = matcher(&["Shop.Example", "*.cdn.example", "*.example", "a.b"]);
        let hosts = [
            "shop.example",
            "SHOP.EXAMPLE",
            "www.shop.example",
            "cdn.example",
            "x.cdn.example",
            "x.y.CDN.example",
            ".cdn.example",
            "example",
            ".example",
            "a..example",
            "a.b",
            "x.a.b",
            "",
            ".",
            "é.example",
            &"a".repeat(300),
            &format!("{}.example", "a".repeat(300)),
        ];
        for host in hosts {
            let lower = host.to_ascii_lowercase();
            let expected = patterns.iter().any(|p| p.matches(&lower));
            assert_eq!(compiled.matches(host), expected, "{host:?}");
        }
        // The same answers from the hashed path (more patterns than are scanned).
        let many: Vec<String> = (0..SCAN_AT_MOST)
            .map(|i| format!("filler{i}.invalid"))
            .chain(["Shop.Example", "*.cdn.example", "*.example", "a.b"].map(String::from))
            .collect();
        let many_refs: Vec<&str> = many.iter().map(String::as_str).collect();
        let (many_patterns, hashed) = matcher(&many_refs);
        assert!(hashed.len() > SCAN_AT_MOST);
        for host in hosts {
            let lower = host.to_ascii_lowercase();
            let expected = many_patterns.iter().any(|p| p.matches(&lower));
            assert_eq!(hashed.matches(host), expected, "{host:?}");
        }
        assert_eq!(compiled.len(), 4);
        assert!(!compiled.is_empty());
        assert!(HostMatcher::compile(&[]).is_empty());
        assert!(!HostMatcher::compile(&[]).matches("a.example"));
    }
}
