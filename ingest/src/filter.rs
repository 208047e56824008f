//! Which reports are kept: the project's document-host allow-list, the default noise
//! classifier (when on) and the project's ignore lists. Filtered reports are answered 2xx and
//! never consume quota.

use schemas::{NoiseReason, Report};

use crate::projects::{any_match, Project};

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
    // Only projects with an allow-list pay for parsing the document URL (a full URL parse is
    // the costliest step of judging a report).
    if !project.allowed_hosts.is_empty()
        && !document_host(report)
            .as_deref()
            .is_some_and(|h| any_match(&project.allowed_hosts, h))
    {
        return Verdict::HostNotAllowed;
    }
    let noise = schemas::noise::classify(report);
    let filters = &project.filters;
    if filters.default_noise {
        if let Some(reason) = noise {
            return Verdict::Filtered(reason.as_str());
        }
    }
    let listed = |patterns: &[crate::projects::HostPattern], url: Option<&str>| {
        !patterns.is_empty()
            && url
                .and_then(host_of)
                .is_some_and(|h| any_match(patterns, &h))
    };
    if listed(&filters.document_hosts, report.document_url.as_deref()) {
        return Verdict::Filtered("ignored_document_host");
    }
    if listed(&filters.blocked_hosts, report.blocked_url.as_deref()) {
        return Verdict::Filtered("ignored_blocked_host");
    }
    if let Some(directive) = &report.effective_directive {
        if filters
            .directives
            .iter()
            .any(|d| d.eq_ignore_ascii_case(directive))
        {
            return Verdict::Filtered("ignored_directive");
        }
    }
    if listed(&filters.source_hosts, report.source_file.as_deref()) {
        return Verdict::Filtered("ignored_source_host");
    }
    Verdict::Keep {
        noise: if filters.default_noise { None } else { noise },
    }
}

/// The host the report is about: the document URL's host, or the certificate report's hostname.
fn document_host(report: &Report) -> Option<String> {
    if let Some(host) = report.document_url.as_deref().and_then(host_of) {
        return Some(host);
    }
    match &report.details {
        schemas::Details::Certificate(c) if !c.hostname.is_empty() => {
            Some(c.hostname.to_ascii_lowercase())
        }
        _ => None,
    }
}

/// Lowercase host of a URL, or of a bare `host[:port][/path]` (normalised blocked URIs).
pub fn host_of(value: &str) -> Option<String> {
    if value.contains("://") {
        let url = url::Url::parse(value).ok()?;
        return url
            .host_str()
            .map(|h| h.trim_matches(['[', ']']).to_ascii_lowercase());
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
    valid.then(|| host.to_ascii_lowercase())
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
