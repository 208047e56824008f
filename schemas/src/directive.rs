//! CSP directive names: the known set and effective-directive derivation.
//!
//! Like Relay, a CSP report must name a known directive: the first token of
//! `effective-directive`, else of `violated-directive` (Firefox before 108 sends no
//! `effective-directive`, and CSP2 browsers put the whole directive with its source list in
//! `violated-directive`, e.g. `"img-src 'none'"`). Anything else is refused: it is not a
//! browser talking.

use crate::parse::ReportError;

/// Every directive name a browser may report: CSP Level 3, Trusted Types, Fenced Frames,
/// WebRTC, and the legacy ones still seen from old browsers (`X-Content-Security-Policy`'s
/// `allow`/`options`/`xhr-src`, CSP1's `report-uri`, CSP2's `plugin-types`/`referrer`/
/// `reflected-xss`, `require-sri-for`, `block-all-mixed-content`, `navigate-to`,
/// `prefetch-src`, `disown-opener`).
pub const KNOWN_DIRECTIVES: &[&str] = &[
    "base-uri",
    "block-all-mixed-content",
    "child-src",
    "connect-src",
    "default-src",
    "fenced-frame-src",
    "font-src",
    "form-action",
    "frame-ancestors",
    "frame-src",
    "img-src",
    "manifest-src",
    "media-src",
    "navigate-to",
    "object-src",
    "plugin-types",
    "prefetch-src",
    "report-to",
    "report-uri",
    "require-trusted-types-for",
    "sandbox",
    "script-src",
    "script-src-attr",
    "script-src-elem",
    "style-src",
    "style-src-attr",
    "style-src-elem",
    "trusted-types",
    "upgrade-insecure-requests",
    "webrtc",
    "worker-src",
    // legacy
    "allow",
    "disown-opener",
    "options",
    "referrer",
    "reflected-xss",
    "require-sri-for",
    "treat-as-public-address",
    "xhr-src",
];

/// Longest directive token echoed back in [`ReportError::UnknownDirective`].
const MAX_ECHO: usize = 64;

/// Whether `name` (lowercase) is a known directive.
pub fn is_known(name: &str) -> bool {
    KNOWN_DIRECTIVES.contains(&name)
}

/// The first whitespace-separated token of `value`, lowercased; `None` when blank.
fn first_token(value: &str) -> Option<String> {
    value
        .split_ascii_whitespace()
        .next()
        .map(str::to_ascii_lowercase)
}

/// Derives the effective directive from `effective-directive` (preferred) or
/// `violated-directive` and checks it is known.
pub fn effective(
    effective_directive: Option<&str>,
    violated_directive: Option<&str>,
) -> Result<String, ReportError> {
    let token = effective_directive
        .and_then(first_token)
        .or_else(|| violated_directive.and_then(first_token))
        .ok_or(ReportError::MissingField("violated-directive"))?;
    if is_known(&token) {
        Ok(token)
    } else {
        let mut echo = token;
        if echo.len() > MAX_ECHO {
            let mut cut = MAX_ECHO;
            while !echo.is_char_boundary(cut) {
                cut -= 1;
            }
            echo.truncate(cut);
        }
        Err(ReportError::UnknownDirective(echo))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefers_effective_then_first_token_of_violated() {
        assert_eq!(
            effective(Some("script-src-elem"), Some("script-src 'self'")),
            Ok("script-src-elem".into())
        );
        assert_eq!(
            effective(None, Some("img-src 'none'")),
            Ok("img-src".into())
        );
        assert_eq!(
            effective(Some("  "), Some("Style-Src x")),
            Ok("style-src".into())
        );
        assert_eq!(
            effective(None, None),
            Err(ReportError::MissingField("violated-directive"))
        );
    }

    #[test]
    fn refuses_unknown_and_bounds_the_echo() {
        assert_eq!(
            effective(Some("script-source"), None),
            Err(ReportError::UnknownDirective("script-source".into()))
        );
        let long = "é".repeat(100);
        match effective(Some(&long), None) {
            Err(ReportError::UnknownDirective(echo)) => assert!(echo.len() <= MAX_ECHO),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn knows_the_csp3_list() {
        for name in [
            "script-src-elem",
            "style-src-attr",
            "trusted-types",
            "require-trusted-types-for",
            "frame-ancestors",
            "base-uri",
            "form-action",
            "navigate-to",
            "prefetch-src",
            "manifest-src",
            "worker-src",
            "report-to",
            "sandbox",
            "upgrade-insecure-requests",
            "block-all-mixed-content",
            "plugin-types",
            "fenced-frame-src",
            "webrtc",
            "script-src-attr",
            "frame-src",
            "child-src",
            "object-src",
            "media-src",
            "img-src",
            "font-src",
            "connect-src",
            "default-src",
        ] {
            assert!(is_known(name), "{name}");
        }
    }
}
