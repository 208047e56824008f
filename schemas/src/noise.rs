//! Default noise filters (browser extensions, injected scripts, non-web documents).
//!
//! The filters that peer collectors (Sentry Relay, go-csp-collector) apply by default, in this
//! order: a noise scheme on `blocked_url` or `source_file` (as `scheme:`/`scheme://` prefix or
//! as a bare value, plus exactly `data:text/html,chromewebdata`), then an injector host (suffix match on the host of either),
//! then an injected-script sample when the blocked URI is inline/self/empty, then a document
//! URL with a scheme other than http(s). `data:` and `blob:` are real policy gaps, never noise.
//! Per-tenant host lists are opt-ins that live elsewhere, never here.

use crate::blocked::{raw_host, raw_scheme, raw_scheme_or_word};
use crate::report::{BlockedClass, Report};
use crate::view::ReportView;

/// Why a report is noise. Each variant is a bounded metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NoiseReason {
    /// blocked-uri or source-file has a browser/extension/webview scheme.
    NoiseScheme,
    /// blocked-uri or source-file host is an injector (AV, proxies, localhost).
    NoiseHost,
    /// inline/self block whose sample is an injected script.
    InjectedSample,
    /// the document is not http(s) (`about:blank`, ...).
    NonWebDocument,
}

impl NoiseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoiseScheme => "noise_scheme",
            Self::NoiseHost => "noise_host",
            Self::InjectedSample => "injected_sample",
            Self::NonWebDocument => "non_web_document",
        }
    }

    /// Every reason, for metric pre-registration and exhaustive tests.
    pub const ALL: [NoiseReason; 4] = [
        Self::NoiseScheme,
        Self::NoiseHost,
        Self::InjectedSample,
        Self::NonWebDocument,
    ];
}

/// Schemes of extensions, browser internals and in-app webviews.
pub const NOISE_SCHEMES: &[&str] = &[
    "chrome-extension",
    "moz-extension",
    "safari-extension",
    "safari-web-extension",
    "ms-browser-extension",
    "webkit-masked-url",
    "chrome",
    "chrome-error",
    "chromenull",
    "chromeinvoke",
    "chromeinvokeimmediate",
    "resource",
    "jar",
    "about",
    "view-source",
    "opera",
    "safari-resource",
    "res",
    "ms-appx",
    "ms-appx-web",
    "android-webview",
    "android-webview-video-poster",
    "mx",
    "mxjscall",
    "mxaddon-pkg",
    "se-extension",
    "gsa",
    "sinaweibo",
    "sraf",
    "symres",
    "tmtbff",
    "mbinit",
    "none",
    "webviewprogress",
    "webviewprogressproxy",
    "wvjbscheme",
    "nativebaiduhd",
    "bdvideo",
];

/// Chrome's own error page, reported as a blocked data URL.
const CHROME_WEB_DATA: &str = "data:text/html,chromewebdata";

/// Hosts of AV products, ad injectors and TLS-inspecting proxies; matched as the host itself
/// or any subdomain of it.
pub const NOISE_HOST_SUFFIXES: &[&str] = &[
    "kaspersky-labs.com",
    "superfish.com",
    "metrext.com",
    "tlscdn.com",
    "injections.adguard.com",
    "gateway.zscaler.net",
    "gateway.zscalertwo.net",
    "localhost",
    "127.0.0.1",
];

/// A bare value (not a URL) some injector reports as blocked.
const NOISE_BARE_VALUE: &str = "nikkomsgchannel";

/// Substrings of samples that extensions and injectors put into pages.
pub const INJECTED_SAMPLE_MARKERS: &[&str] = &[
    "moz-extension://",
    "chrome-extension://",
    "safari-extension://",
    "webkit-masked-url://",
    "AG_onLoad=",
    "installGlobalHook(window)",
    "var lastpass_it",
];

/// The default noise verdict for a report (the order is in the module doc), `None` when it looks
/// real.
pub fn classify(report: &Report) -> Option<NoiseReason> {
    classify_view(&report.view())
}

/// [`classify`] of a borrowed report (ingest's parsed reports).
pub fn classify_view(report: &ReportView<'_>) -> Option<NoiseReason> {
    let locations = || {
        [report.blocked_url, report.source_file]
            .into_iter()
            .flatten()
    };

    if locations().any(has_noise_scheme) {
        return Some(NoiseReason::NoiseScheme);
    }
    if locations().any(has_noise_host) {
        return Some(NoiseReason::NoiseHost);
    }
    let inline_or_self = matches!(
        report.blocked_class,
        BlockedClass::Inline | BlockedClass::SelfOrigin
    ) || report.blocked_url.is_some_and(|b| b.trim().is_empty());
    if inline_or_self
        && report
            .sample
            .is_some_and(|sample| INJECTED_SAMPLE_MARKERS.iter().any(|m| sample.contains(m)))
    {
        return Some(NoiseReason::InjectedSample);
    }
    if report
        .document_url
        .and_then(raw_scheme)
        .is_some_and(|scheme| !is_web_scheme(scheme))
    {
        return Some(NoiseReason::NonWebDocument);
    }
    None
}

fn has_noise_scheme(value: &str) -> bool {
    let value = value.trim();
    if value.eq_ignore_ascii_case(CHROME_WEB_DATA) {
        return true;
    }
    // Compared in any ASCII case rather than lowercased into a new string (one allocation per
    // URL and per report, `report/noise_classify` in benches/README.md).
    raw_scheme_or_word(value).is_some_and(|scheme| {
        // Most locations are web URLs: `http` and `https` are not noise schemes
        // (`tests::web_schemes_are_not_noise_schemes`), so they skip the list.
        !is_web_scheme(scheme)
            && NOISE_SCHEMES
                .iter()
                .any(|noise| noise.eq_ignore_ascii_case(scheme))
    })
}

/// `http` or `https`, any ASCII case.
fn is_web_scheme(scheme: &str) -> bool {
    scheme.eq_ignore_ascii_case("https") || scheme.eq_ignore_ascii_case("http")
}

fn has_noise_host(value: &str) -> bool {
    let value = value.trim();
    let bare = value.strip_suffix(':').unwrap_or(value);
    if bare.eq_ignore_ascii_case(NOISE_BARE_VALUE) {
        return true;
    }
    raw_host(value).is_some_and(|host| {
        NOISE_HOST_SUFFIXES
            .iter()
            .any(|suffix| is_host_or_subdomain(host, suffix))
    })
}

/// Whether `host` (any ASCII case) is `suffix` (lowercase ASCII) or a subdomain of it.
fn is_host_or_subdomain(host: &str, suffix: &str) -> bool {
    let (host, suffix) = (host.as_bytes(), suffix.as_bytes());
    let Some(head_len) = host.len().checked_sub(suffix.len()) else {
        return false;
    };
    host[head_len..].eq_ignore_ascii_case(suffix) && (head_len == 0 || host[head_len - 1] == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blocked;
    use crate::report::{ReportKind, WireFormat};

    fn csp(
        blocked: Option<&str>,
        source: Option<&str>,
        sample: Option<&str>,
        document: &str,
    ) -> Report {
        let mut report =
            crate::parse::ParsedReport::blank(ReportKind::CspViolation, WireFormat::LegacyCsp)
                .into_owned();
        let (class, url) = blocked::classify(blocked);
        report.blocked_class = class;
        report.blocked_url = url;
        report.source_file = source.map(str::to_owned);
        report.sample = sample.map(str::to_owned);
        report.document_url = Some(document.to_owned());
        report
    }

    const DOC: &str = "https://site.example/page";

    /// The shortcut of `has_noise_scheme` holds only while no web scheme is a noise scheme.
    #[test]
    fn web_schemes_are_not_noise_schemes() {
        for scheme in ["http", "https", "HTTPS", "Http"] {
            assert!(is_web_scheme(scheme));
            assert!(!NOISE_SCHEMES.iter().any(|s| s.eq_ignore_ascii_case(scheme)));
        }
        assert!(!is_web_scheme("chrome") && !is_web_scheme("https-x"));
    }

    #[test]
    fn schemes_as_prefix_and_bare_on_blocked_and_source() {
        for blocked in [
            "chrome-extension",
            "chrome-extension://abc/x.js",
            "moz-extension:",
            "about",
            "about:blank",
            "safari-web-extension://x",
            "webkit-masked-url://hidden/",
            "ms-appx-web:///x",
            "data:text/html,chromewebdata",
            "gsa://onpageload",
            "none",
        ] {
            assert_eq!(
                classify(&csp(Some(blocked), None, None, DOC)),
                Some(NoiseReason::NoiseScheme),
                "{blocked}"
            );
        }
        let report = csp(
            Some("https://cdn.example/a.js"),
            Some("chrome-extension://abc/content.js"),
            None,
            DOC,
        );
        assert_eq!(classify(&report), Some(NoiseReason::NoiseScheme));
        let report = csp(Some("inline"), Some("safari-extension"), None, DOC);
        assert_eq!(classify(&report), Some(NoiseReason::NoiseScheme));
    }

    #[test]
    fn data_and_blob_are_not_noise() {
        for blocked in [
            "data",
            "data:image/png;base64,AA",
            "blob",
            "blob:https://site.example/1",
            "data:text/html,other",
        ] {
            assert_eq!(
                classify(&csp(Some(blocked), None, None, DOC)),
                None,
                "{blocked}"
            );
        }
    }

    #[test]
    fn injector_hosts_by_suffix() {
        for blocked in [
            "https://gc.kis.v2.scr.kaspersky-labs.com/x.js",
            "http://localhost:8080/x",
            "http://127.0.0.1/x",
            "https://injections.adguard.com/x",
            "nikkomsgchannel",
        ] {
            assert_eq!(
                classify(&csp(Some(blocked), None, None, DOC)),
                Some(NoiseReason::NoiseHost),
                "{blocked}"
            );
        }
        for blocked in [
            "https://notkaspersky-labs.com/x",
            "https://localhost.example/x",
        ] {
            assert_eq!(
                classify(&csp(Some(blocked), None, None, DOC)),
                None,
                "{blocked}"
            );
        }
    }

    #[test]
    fn injected_samples_only_for_inline_self_or_empty() {
        let sample = Some("(function(){var lastpass_it = 1");
        assert_eq!(
            classify(&csp(Some("inline"), None, sample, DOC)),
            Some(NoiseReason::InjectedSample)
        );
        assert_eq!(
            classify(&csp(Some(""), None, sample, DOC)),
            Some(NoiseReason::InjectedSample)
        );
        assert_eq!(
            classify(&csp(None, None, Some("AG_onLoad=function"), DOC)),
            Some(NoiseReason::InjectedSample)
        );
        assert_eq!(
            classify(&csp(Some("https://cdn.example/a.js"), None, sample, DOC)),
            None
        );
        assert_eq!(
            classify(&csp(Some("inline"), None, Some("alert(1)"), DOC)),
            None
        );
    }

    #[test]
    fn non_web_documents() {
        let report = csp(Some("https://cdn.example/a.js"), None, None, "about:blank");
        assert_eq!(classify(&report), Some(NoiseReason::NonWebDocument));
        let report = csp(
            Some("https://cdn.example/a.js"),
            None,
            None,
            "HTTPS://site.example/",
        );
        assert_eq!(classify(&report), None);
        let mut report = csp(Some("https://cdn.example/a.js"), None, None, DOC);
        report.document_url = None;
        assert_eq!(
            classify(&report),
            None,
            "no document URL (certificate reports) is not noise"
        );
    }
}
