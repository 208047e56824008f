//! The policy change that would allow a violation group (TYPO3's "resolution"), decided from the
//! group's facts alone, and whether its evidence is strong enough to propose it unasked.
//!
//! | blocked | proposed source, added to the effective directive |
//! |---|---|
//! | a URL (`https://cdn.example/x.js`) | its origin, `https://cdn.example` (scheme, host, port) |
//! | inline code with a complete sample | `'sha256-<base64>'` of the sample; on `*-attr` directives also `'unsafe-hashes'` (hashes match event handlers and style attributes only with it) |
//! | inline code with a truncated sample | nothing: browsers send at most the first 40 characters (CSP3 section 5.3, "obtain the deprecated ... sample"), so the hash of the full code is unknown |
//! | `eval` | `'unsafe-eval'` |
//! | `wasm-eval` | `'wasm-unsafe-eval'` |
//! | `data:` / `blob:` | `data:` / `blob:` |
//! | the page's own origin | `'self'` |
//! | extensions, Trusted Types, unknown schemes, non-CSP reports | nothing (not a policy gap) |
//!
//! `'unsafe-inline'` is never proposed: it would allow every injected script, which is what the
//! policy exists to stop.
//!
//! **Qualifies** (proposed in the policy without a human applying it) needs at least
//! `min_occurrences` occurrences AND at least `min_client_networks` distinct client networks,
//! so one sender replaying reports cannot get `https://evil.example` proposed for `script-src`.

use base64::Engine as _;
use schemas::BlockedClass;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// Longest script sample a browser sends (CSP3 section 5.3): a sample this long may be cut.
pub const SAMPLE_LIMIT_CHARS: usize = 40;

/// What the decision needs to know about a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupFacts {
    pub kind: String,
    pub effective_directive: String,
    pub blocked_class: String,
    pub blocked_origin: String,
    pub sample: String,
    pub noise: String,
}

/// How much a resolution is supported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Evidence {
    pub occurrences: u64,
    pub distinct_pages: u64,
    pub distinct_client_networks: u64,
}

/// Thresholds of [`Evidence`] for a resolution to qualify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    pub min_occurrences: u64,
    pub min_client_networks: u64,
}

/// A proposed policy change for one group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Proposal {
    pub directive: String,
    /// Source expressions to add, in order (empty: no change can be proposed).
    pub sources: Vec<String>,
    /// Why this change (or why none).
    pub explanation: String,
}

impl Proposal {
    fn none(directive: &str, explanation: impl Into<String>) -> Self {
        Self {
            directive: directive.to_owned(),
            sources: Vec::new(),
            explanation: explanation.into(),
        }
    }

    fn add(directive: &str, sources: Vec<String>, explanation: impl Into<String>) -> Self {
        Self {
            directive: directive.to_owned(),
            sources,
            explanation: explanation.into(),
        }
    }
}

/// The change that would allow the group (see the module table).
pub fn propose(facts: &GroupFacts) -> Proposal {
    let directive = facts.effective_directive.to_ascii_lowercase();
    if facts.kind != schemas::ReportKind::CspViolation.as_str() {
        return Proposal::none(&directive, "only CSP violations have a policy resolution");
    }
    if !facts.noise.is_empty() {
        return Proposal::none(
            &directive,
            format!(
                "classified as noise ({}): not caused by the site's policy",
                facts.noise
            ),
        );
    }
    if directive.is_empty() {
        return Proposal::none(&directive, "the report names no effective directive");
    }
    let class = facts.blocked_class.as_str();
    let is = |c: BlockedClass| class == c.as_str();
    if is(BlockedClass::Url) {
        if facts.blocked_origin.contains("://") {
            return Proposal::add(
                &directive,
                vec![facts.blocked_origin.clone()],
                format!(
                    "allow the origin {} (scheme, host and port; not the path) in {directive}",
                    facts.blocked_origin
                ),
            );
        }
        return Proposal::none(&directive, "the blocked URL has no origin");
    }
    if is(BlockedClass::Inline) {
        return propose_inline(&directive, &facts.sample);
    }
    if is(BlockedClass::Eval) {
        return Proposal::add(
            &directive,
            vec!["'unsafe-eval'".to_owned()],
            "the page calls eval() or a string-to-code API; 'unsafe-eval' allows it (better: remove the eval)",
        );
    }
    if is(BlockedClass::WasmEval) {
        return Proposal::add(
            &directive,
            vec!["'wasm-unsafe-eval'".to_owned()],
            "the page compiles WebAssembly; 'wasm-unsafe-eval' allows that without allowing JavaScript eval",
        );
    }
    if is(BlockedClass::Data) || is(BlockedClass::Blob) {
        let scheme = if is(BlockedClass::Data) {
            "data:"
        } else {
            "blob:"
        };
        return Proposal::add(
            &directive,
            vec![scheme.to_owned()],
            format!("allow {scheme} URLs in {directive}"),
        );
    }
    if is(BlockedClass::SelfOrigin) {
        return Proposal::add(
            &directive,
            vec!["'self'".to_owned()],
            format!("allow the page's own origin in {directive}"),
        );
    }
    Proposal::none(
        &directive,
        format!("a {class} block is not a policy gap (extension, Trusted Types or unknown scheme)"),
    )
}

fn propose_inline(directive: &str, sample: &str) -> Proposal {
    let attr = directive.ends_with("-attr");
    if sample.is_empty() {
        return Proposal::none(
            directive,
            "inline code without a sample: add 'report-sample' to the directive to learn the code; \
             'unsafe-inline' is never proposed",
        );
    }
    if sample.chars().count() >= SAMPLE_LIMIT_CHARS {
        return Proposal::none(
            directive,
            format!(
                "the sample may be truncated (browsers send at most {SAMPLE_LIMIT_CHARS} characters), so the \
                 hash of the full code is unknown: hash the code from the page source, move it to a file, \
                 or use a nonce; 'unsafe-inline' is never proposed"
            ),
        );
    }
    let hash = sha256_source(sample);
    if attr {
        Proposal::add(
            directive,
            vec!["'unsafe-hashes'".to_owned(), hash],
            "an inline event handler or style attribute with a complete sample: its hash, with \
             'unsafe-hashes' (without which hashes do not apply to attributes); 'unsafe-inline' is never proposed",
        )
    } else {
        Proposal::add(
            directive,
            vec![hash],
            "an inline script or style with a complete sample: the hash of exactly that code \
             (check it against the page: whitespace matters); 'unsafe-inline' is never proposed",
        )
    }
}

/// `'sha256-<base64>'` of `code`, the CSP hash source that allows exactly that inline code.
pub fn sha256_source(code: &str) -> String {
    let digest = Sha256::digest(code.as_bytes());
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// Whether `evidence` is strong enough to propose `proposal` unasked; `Err` says why not.
pub fn qualifies(
    proposal: &Proposal,
    evidence: &Evidence,
    thresholds: &Thresholds,
) -> Result<(), String> {
    if proposal.sources.is_empty() {
        return Err("no source to add".to_owned());
    }
    let mut missing = Vec::new();
    if evidence.occurrences < thresholds.min_occurrences {
        missing.push(format!(
            "{} occurrences < {}",
            evidence.occurrences, thresholds.min_occurrences
        ));
    }
    if evidence.distinct_client_networks < thresholds.min_client_networks {
        missing.push(format!(
            "{} client networks < {}",
            evidence.distinct_client_networks, thresholds.min_client_networks
        ));
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(missing.join(", "))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn facts(class: &str, directive: &str, origin: &str, sample: &str) -> GroupFacts {
        GroupFacts {
            kind: "csp-violation".into(),
            effective_directive: directive.into(),
            blocked_class: class.into(),
            blocked_origin: origin.into(),
            sample: sample.into(),
            noise: String::new(),
        }
    }

    #[test]
    fn external_origins_are_proposed_as_origins() {
        let p = propose(&facts(
            "url",
            "script-src-elem",
            "https://cdn.example:8443",
            "",
        ));
        assert_eq!(p.directive, "script-src-elem");
        assert_eq!(p.sources, ["https://cdn.example:8443"]);
    }

    #[test]
    fn inline_code_gets_a_hash_only_with_a_complete_sample() {
        let p = propose(&facts("inline", "script-src-elem", "inline", "alert(1)"));
        // sha256("alert(1)"), base64: echo -n 'alert(1)' | openssl dgst -sha256 -binary | base64
        assert_eq!(
            p.sources,
            ["'sha256-bhHHL3z2vDgxUt0W3dWQOrprscmda2Y5pLsLg4GF+pI='"]
        );
        let p = propose(&facts("inline", "script-src-attr", "inline", "go()"));
        assert_eq!(p.sources[0], "'unsafe-hashes'");
        assert_eq!(p.sources.len(), 2);
        let truncated = "x".repeat(SAMPLE_LIMIT_CHARS);
        let p = propose(&facts("inline", "script-src-elem", "inline", &truncated));
        assert!(p.sources.is_empty());
        assert!(p.explanation.contains("truncated"));
        let p = propose(&facts("inline", "style-src-elem", "inline", ""));
        assert!(p.sources.is_empty());
        for class in ["inline", "url", "eval", "data", "blob", "self-origin"] {
            let p = propose(&facts(class, "script-src", "https://a.example", "a()"));
            assert!(!p.sources.iter().any(|s| s == "'unsafe-inline'"));
        }
    }

    #[test]
    fn keywords_schemes_and_non_gaps() {
        let one = |class: &str| propose(&facts(class, "script-src", class, "")).sources;
        assert_eq!(one("eval"), ["'unsafe-eval'"]);
        assert_eq!(one("wasm-eval"), ["'wasm-unsafe-eval'"]);
        assert_eq!(one("data"), ["data:"]);
        assert_eq!(one("blob"), ["blob:"]);
        assert_eq!(one("self-origin"), ["'self'"]);
        assert!(one("extension").is_empty());
        assert!(one("trusted-types-sink").is_empty());
        let mut noisy = facts("url", "script-src", "https://a.example", "");
        noisy.noise = "extension".into();
        assert!(propose(&noisy).sources.is_empty());
        let mut nel = facts("url", "script-src", "https://a.example", "");
        nel.kind = "network-error".into();
        assert!(propose(&nel).sources.is_empty());
    }

    #[test]
    fn qualifying_needs_occurrences_and_networks() {
        let p = propose(&facts("url", "script-src", "https://evil.example", ""));
        let thresholds = Thresholds {
            min_occurrences: 10,
            min_client_networks: 3,
        };
        let one_sender = Evidence {
            occurrences: 10_000,
            distinct_pages: 50,
            distinct_client_networks: 1,
        };
        let reason = qualifies(&p, &one_sender, &thresholds).unwrap_err();
        assert!(reason.contains("1 client networks < 3"), "{reason}");
        let few = Evidence {
            occurrences: 9,
            distinct_pages: 1,
            distinct_client_networks: 5,
        };
        assert!(qualifies(&p, &few, &thresholds).is_err());
        let enough = Evidence {
            occurrences: 10,
            distinct_pages: 1,
            distinct_client_networks: 3,
        };
        qualifies(&p, &enough, &thresholds).unwrap();
    }
}
