//! Which reports are kept: the project's document-host allow-list, the default noise
//! classifier (when on) and the project's ignore lists. Filtered reports are answered 2xx and
//! never consume quota.
//!
//! Judging a report allocates nothing in the common case: the host lists are compiled into
//! [`HostMatcher`]s when the projects file loads, and a plain `http(s)://host[:port]/...` URL's
//! host is borrowed from the report as written ([`plain_url_host`]); only other URLs go through
//! the WHATWG parser (`url::Url`), which decides what their host is.

use std::borrow::Cow;

use schemas::{NoiseReason, Report, ReportView};

use crate::projects::{HostMatcher, Project};

/// What happens to one parsed report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Publish it; `noise` is the default verdict when the project keeps noise.
    Keep { noise: Option<NoiseReason> },
    /// Drop it and answer 2xx; the label is the reason.
    Filtered(&'static str),
    /// The document host is not on the project's allow-list (refused, 403 if nothing else).
    HostNotAllowed,
}

/// Decides one report's fate for `project`.
pub fn judge(project: &Project, report: &Report) -> Verdict {
    judge_view(project, &report.view())
}

/// [`judge`] of a borrowed report (ingest's parsed reports).
pub fn judge_view(project: &Project, report: &ReportView<'_>) -> Verdict {
    // Only projects with an allow-list look at the document URL.
    if !project.allowed_hosts.is_empty()
        && !document_host(report).is_some_and(|h| project.allowed_hosts.matches(&h))
    {
        return Verdict::HostNotAllowed;
    }
    let noise = schemas::noise::classify_view(report);
    let filters = &project.filters;
    if filters.default_noise {
        if let Some(reason) = noise {
            return Verdict::Filtered(reason.as_str());
        }
    }
    let listed = |matcher: &HostMatcher, url: Option<&str>| {
        !matcher.is_empty() && url.and_then(host_in).is_some_and(|h| matcher.matches(&h))
    };
    if listed(&filters.document_hosts, report.document_url) {
        return Verdict::Filtered("ignored_document_host");
    }
    if listed(&filters.blocked_hosts, report.blocked_url) {
        return Verdict::Filtered("ignored_blocked_host");
    }
    if let Some(directive) = report.effective_directive {
        // `directives` were lowercased when the projects file loaded.
        if filters
            .directives
            .iter()
            .any(|d| d.eq_ignore_ascii_case(directive))
        {
            return Verdict::Filtered("ignored_directive");
        }
    }
    if listed(&filters.source_hosts, report.source_file) {
        return Verdict::Filtered("ignored_source_host");
    }
    Verdict::Keep {
        noise: if filters.default_noise { None } else { noise },
    }
}

/// The host the report is about (any ASCII case): the document URL's host, or the certificate
/// report's hostname.
fn document_host<'r>(report: &'r ReportView<'_>) -> Option<Cow<'r, str>> {
    if let Some(host) = report.document_url.and_then(host_in) {
        return Some(host);
    }
    match &*report.details {
        schemas::Details::Certificate(c) if !c.hostname.is_empty() => {
            Some(Cow::Borrowed(c.hostname.as_str()))
        }
        _ => None,
    }
}

/// Lowercase host of a URL, or of a bare `host[:port][/path]` (normalised blocked URIs).
pub fn host_of(value: &str) -> Option<String> {
    host_in(value).map(|host| host.to_ascii_lowercase())
}

/// [`host_of`] without lowercasing and, for plain URLs and bare hosts, without allocating:
/// the host as written in `value` (the matchers compare in any ASCII case).
fn host_in(value: &str) -> Option<Cow<'_, str>> {
    if value.contains("://") {
        if let Some(host) = plain_url_host(value) {
            return Some(Cow::Borrowed(host));
        }
        let url = url::Url::parse(value).ok()?;
        return url
            .host_str()
            .map(|h| Cow::Owned(h.trim_matches(['[', ']']).to_ascii_lowercase()));
    }
    let authority = value.split(['/', '?', '#']).next()?;
    let host = match authority.rsplit_once(':') {
        Some((h, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => authority,
    };
    let valid = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    valid.then_some(Cow::Borrowed(host))
}

/// The host of a plain `http(s)://` or `ws(s)://` URL as written, when the WHATWG parser would
/// only lowercase it (`schemas::plain_url`, canonical IPv4 hosts included). `None` for anything
/// else, which the parser then decides.
fn plain_url_host(url: &str) -> Option<&str> {
    schemas::plain_url::split(url, true).map(|plain| plain.host)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::projects::Snapshot;

    fn project(extra: &str) -> std::sync::Arc<Project> {
        let text = format!(
            "[[project]]\nid = 1\nname = 'a'\nquota = {{ per_second = 1, burst = 1 }}\nkeys = []\n{extra}"
        );
        Snapshot::from_toml(&text, None)
            .unwrap()
            .project(1)
            .unwrap()
            .clone()
    }

    fn report(document: &str, blocked: &str, directive: &str) -> Report {
        serde_json::from_value(serde_json::json!({
            "kind": "csp-violation", "wire": "legacy-csp", "blocked_class": "url",
            "document_url": document, "blocked_url": blocked, "effective_directive": directive,
            "source_file": "https://static.example/app.js",
            "details": { "type": "none" }
        }))
        .unwrap()
    }

    /// What `host_of` answered for URLs before the fast path: always the WHATWG parser.
    fn host_by_url_crate(value: &str) -> Option<String> {
        let url = url::Url::parse(value).ok()?;
        url.host_str()
            .map(|h| h.trim_matches(['[', ']']).to_ascii_lowercase())
    }

    #[test]
    fn plain_url_hosts_are_what_the_parser_says() {
        let cases = [
            "https://WWW.Example.com:8443/x?y",
            "https://a.example",
            "https://a.example:/",
            "https://a.example:080/",
            "https://a.example:65536/",
            "https://a.example:99999999/",
            "https://u:p@a.example/",
            "https://a.example./",
            "https://a..example/",
            "https://xn--bcher-kva.example/",
            "https://B\u{fc}cher.example/",
            "https://127.0.0.1/",
            "https://45.55.25.245:8080/x",
            "https://01.2.3.4/",
            "https://256.1.1.1/",
            "https://1.2.3/",
            "https://1.2.3.4.5/",
            "https://0.0.0.0/",
            "https://0x7f.1/",
            "https://a.123/",
            "https://a.example\\x",
            "https:///a.example/",
            "https://a%41.example/",
            "https://a.exa mple/",
            "HTTPS://A.EXAMPLE/",
            "wss://a.example:443/socket",
            "ftp://a.example/",
            "chrome-extension://abcdef/x.js",
            "https://[::1]:80/",
            "https://-a.example/",
        ];
        for url in cases {
            assert_eq!(host_of(url), host_by_url_crate(url), "{url}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_url_host_is_what_the_parser_says(
            url in r"(https?|wss?|HTTP|ftp|x-y)://([a-zA-Z0-9.@:%\\_\[\] -]|xn--){0,24}([/?#][a-z/]{0,4})?"
        ) {
            proptest::prop_assert_eq!(host_of(&url), host_by_url_crate(&url), "{}", url);
        }
    }

    #[test]
    fn hosts_are_extracted_from_urls_and_bare_authorities() {
        assert_eq!(
            host_of("https://WWW.Example.com:8443/x?y").as_deref(),
            Some("www.example.com")
        );
        assert_eq!(host_of("cdn.example:443").as_deref(), Some("cdn.example"));
        assert_eq!(host_of("cdn.example/path").as_deref(), Some("cdn.example"));
        assert_eq!(host_of("http://[::1]/").as_deref(), Some("::1"));
        assert_eq!(host_of("inline"), Some("inline".into()));
        assert_eq!(host_of("'self'"), None);
        assert_eq!(host_of("data:"), None);
    }

    #[test]
    fn allow_list() {
        let p = project("allowed_hosts = ['shop.example', '*.shop.example']");
        let keep = Verdict::Keep { noise: None };
        assert_eq!(
            judge(
                &p,
                &report("https://shop.example/", "https://x.example/", "script-src")
            ),
            keep
        );
        assert_eq!(
            judge(
                &p,
                &report(
                    "https://www.shop.example/",
                    "https://x.example/",
                    "script-src"
                )
            ),
            keep
        );
        assert_eq!(
            judge(
                &p,
                &report("https://evil.example/", "https://x.example/", "script-src")
            ),
            Verdict::HostNotAllowed
        );
        let any = project("");
        assert_eq!(
            judge(
                &any,
                &report("https://evil.example/", "https://x.example/", "script-src")
            ),
            keep
        );
    }

    #[test]
    fn ignore_lists() {
        let p = project(
            "[project.filters]\nignore_blocked_hosts = ['*.ads.example']\nignore_directives = ['font-src']\n\
             ignore_document_hosts = ['staging.example']\nignore_source_hosts = ['static.example']",
        );
        let r = |d: &str, b: &str, dir: &str| judge(&p, &report(d, b, dir));
        assert_eq!(
            r("https://a.example/", "https://t.ads.example/x", "img-src"),
            Verdict::Filtered("ignored_blocked_host")
        );
        assert_eq!(
            r("https://a.example/", "https://ok.example/", "FONT-SRC"),
            Verdict::Filtered("ignored_directive")
        );
        assert_eq!(
            r("https://staging.example/", "https://ok.example/", "img-src"),
            Verdict::Filtered("ignored_document_host")
        );
        assert_eq!(
            r("https://a.example/", "https://ok.example/", "img-src"),
            Verdict::Filtered("ignored_source_host")
        );
    }
}
