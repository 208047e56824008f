//! A small Content-Security-Policy parser and serializer, and the one edit the API makes to a
//! policy: add a source expression to a directive without changing what the policy allows for
//! anything else.
//!
//! Parsing follows CSP3 section 2.2.1 ("parse a serialized CSP"): directives split on `;`, the
//! name is the first token (ASCII-lowercased), a repeated directive is ignored, empty ones are
//! skipped. Order is kept, so the rendered header reads like the observed one.
//!
//! Adding a source to a directive the policy does not have must not widen or narrow what the
//! policy allows for the rest of that directive's fetches: the new directive starts as a copy of
//! the directive it falls back to today (CSP3 section 6.8.3, "effective directive fallback
//! list", e.g. `script-src-elem` -> `script-src` -> `default-src`), then gets the addition.

use serde::Serialize;

/// A parsed policy: directives in their order, each with its source list.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Policy {
    directives: Vec<Directive>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Directive {
    name: String,
    sources: Vec<String>,
}

/// What [`Policy::add_source`] changed in one directive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DirectiveChange {
    pub directive: String,
    /// The directive did not exist and was created.
    pub created: bool,
    /// When created: the directive whose sources it copied (the fallback in force), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub copied_from: Option<String>,
    /// Sources added, in order, without duplicates.
    pub added: Vec<String>,
}

impl Policy {
    /// Parses a serialized policy. Never fails: anything unparsable is dropped, like browsers do.
    /// Only the first policy of a comma-separated list is taken (one header value, one policy).
    pub fn parse(text: &str) -> Self {
        let first = text.split(',').next().unwrap_or("");
        let mut directives: Vec<Directive> = Vec::new();
        for token in first.split(';') {
            let mut words = token.split_ascii_whitespace();
            let Some(name) = words.next() else {
                continue;
            };
            let name = name.to_ascii_lowercase();
            if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                continue;
            }
            if directives.iter().any(|d| d.name == name) {
                continue; // CSP3: a repeated directive is ignored
            }
            directives.push(Directive {
                name,
                sources: words.map(str::to_owned).collect(),
            });
        }
        Self { directives }
    }

    /// The serialized policy: `name src src; name2 ...`.
    pub fn render(&self) -> String {
        self.directives
            .iter()
            .map(|d| {
                if d.sources.is_empty() {
                    d.name.clone()
                } else {
                    format!("{} {}", d.name, d.sources.join(" "))
                }
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    pub fn sources(&self, directive: &str) -> Option<&[String]> {
        self.directives
            .iter()
            .find(|d| d.name == directive)
            .map(|d| d.sources.as_slice())
    }

    /// Adds `source` to `directive` (created from its fallback when missing, see the module
    /// doc). Returns the change, or `None` when the source is already there. `'none'` is
    /// removed from a list that gains a source (a list with `'none'` and other sources is
    /// ambiguous; browsers ignore the `'none'`).
    pub fn add_source(&mut self, directive: &str, source: &str) -> Option<DirectiveChange> {
        let directive = directive.to_ascii_lowercase();
        let (index, created, copied_from) =
            match self.directives.iter().position(|d| d.name == directive) {
                Some(index) => (index, false, None),
                None => {
                    let fallback = fallback_list(&directive)
                        .iter()
                        .skip(1)
                        .find_map(|name| self.directives.iter().find(|d| d.name == *name));
                    let (sources, copied_from) = match fallback {
                        Some(d) => (d.sources.clone(), Some(d.name.clone())),
                        None => (Vec::new(), None),
                    };
                    self.directives.push(Directive {
                        name: directive.clone(),
                        sources,
                    });
                    (self.directives.len() - 1, true, copied_from)
                }
            };
        let entry = &mut self.directives[index];
        if entry.sources.iter().any(|s| same_source(s, source)) {
            if created {
                // Creating a copy of the fallback changes nothing; undo it.
                self.directives.pop();
            }
            return None;
        }
        entry.sources.retain(|s| !s.eq_ignore_ascii_case("'none'"));
        entry.sources.push(source.to_owned());
        Some(DirectiveChange {
            directive,
            created,
            copied_from,
            added: vec![source.to_owned()],
        })
    }
}

/// Whether two source expressions are the same. Keywords, schemes and hosts compare
/// ASCII-case-insensitively; hashes and nonces are base64 and compare exactly.
fn same_source(a: &str, b: &str) -> bool {
    let exact = |s: &str| {
        let lower = s.to_ascii_lowercase();
        lower.starts_with("'sha") || lower.starts_with("'nonce-")
    };
    if exact(a) || exact(b) {
        a == b
    } else {
        a.eq_ignore_ascii_case(b)
    }
}

/// CSP3 section 6.8.3: the directives consulted for `directive`, in order (itself first).
/// Directives that do not fall back (`base-uri`, `form-action`, `frame-ancestors`, ...) list
/// only themselves.
pub fn fallback_list(directive: &str) -> &'static [&'static str] {
    match directive {
        "script-src-elem" => &["script-src-elem", "script-src", "default-src"],
        "script-src-attr" => &["script-src-attr", "script-src", "default-src"],
        "style-src-elem" => &["style-src-elem", "style-src", "default-src"],
        "style-src-attr" => &["style-src-attr", "style-src", "default-src"],
        "worker-src" => &["worker-src", "child-src", "script-src", "default-src"],
        "frame-src" => &["frame-src", "child-src", "default-src"],
        "script-src" => &["script-src", "default-src"],
        "style-src" => &["style-src", "default-src"],
        "child-src" => &["child-src", "default-src"],
        "connect-src" => &["connect-src", "default-src"],
        "font-src" => &["font-src", "default-src"],
        "img-src" => &["img-src", "default-src"],
        "manifest-src" => &["manifest-src", "default-src"],
        "media-src" => &["media-src", "default-src"],
        "object-src" => &["object-src", "default-src"],
        "prefetch-src" => &["prefetch-src", "default-src"],
        "base-uri" => &["base-uri"],
        "form-action" => &["form-action"],
        "frame-ancestors" => &["frame-ancestors"],
        "navigate-to" => &["navigate-to"],
        _ => &[],
    }
}

/// The header a policy is delivered in, by the observed disposition (`report` or `enforce`).
pub fn header_name(disposition: &str) -> &'static str {
    if disposition == "report" {
        "Content-Security-Policy-Report-Only"
    } else {
        "Content-Security-Policy"
    }
}

/// Merges changes to the same directive (several resolutions adding to one directive).
pub fn merge_changes(changes: Vec<DirectiveChange>) -> Vec<DirectiveChange> {
    let mut merged: Vec<DirectiveChange> = Vec::new();
    for change in changes {
        match merged.iter_mut().find(|m| m.directive == change.directive) {
            Some(existing) => existing.added.extend(change.added),
            None => merged.push(change),
        }
    }
    merged
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parse_render_round_trip_keeps_order_and_drops_repeats() {
        let policy = Policy::parse(
            " Default-Src 'self';  script-src 'self' https://a.example ;; img-src *; script-src 'none'; report-uri /r",
        );
        assert_eq!(
            policy.render(),
            "default-src 'self'; script-src 'self' https://a.example; img-src *; report-uri /r"
        );
        assert_eq!(Policy::parse("").render(), "");
        assert_eq!(
            Policy::parse("upgrade-insecure-requests; default-src 'none'").render(),
            "upgrade-insecure-requests; default-src 'none'"
        );
        // Only the first policy of a comma-separated list.
        assert_eq!(
            Policy::parse("img-src 'self', script-src 'none'").render(),
            "img-src 'self'"
        );
    }

    #[test]
    fn adding_to_an_existing_directive_appends_once() {
        let mut policy = Policy::parse("default-src 'self'; script-src 'self'");
        let change = policy
            .add_source("script-src", "https://cdn.example")
            .unwrap();
        assert!(!change.created);
        assert_eq!(change.added, ["https://cdn.example"]);
        assert_eq!(policy.add_source("script-src", "HTTPS://CDN.EXAMPLE"), None);
        assert_eq!(
            policy.render(),
            "default-src 'self'; script-src 'self' https://cdn.example"
        );
    }

    #[test]
    fn a_missing_directive_copies_its_fallback() {
        let mut policy = Policy::parse("default-src 'self' https://x.example; img-src *");
        let change = policy
            .add_source("script-src-elem", "https://cdn.example")
            .unwrap();
        assert!(change.created);
        assert_eq!(change.copied_from.as_deref(), Some("default-src"));
        assert_eq!(
            policy.render(),
            "default-src 'self' https://x.example; img-src *; script-src-elem 'self' https://x.example https://cdn.example"
        );
        // script-src is nearer than default-src.
        let mut policy = Policy::parse("default-src 'none'; script-src 'self'");
        policy.add_source("script-src-attr", "'unsafe-hashes'");
        assert_eq!(
            policy.sources("script-src-attr").unwrap(),
            ["'self'", "'unsafe-hashes'"]
        );
        // No fallback (base-uri) and nothing to copy: just the addition.
        let mut policy = Policy::parse("default-src 'self'");
        let change = policy.add_source("base-uri", "https://b.example").unwrap();
        assert_eq!(change.copied_from, None);
        assert_eq!(
            policy.render(),
            "default-src 'self'; base-uri https://b.example"
        );
    }

    #[test]
    fn a_source_already_allowed_by_the_fallback_creates_nothing() {
        let mut policy = Policy::parse("default-src https://cdn.example");
        assert_eq!(policy.add_source("img-src", "https://cdn.example"), None);
        assert_eq!(policy.render(), "default-src https://cdn.example");
    }

    #[test]
    fn none_is_replaced_and_hashes_compare_exactly() {
        let mut policy = Policy::parse("object-src 'none'; script-src 'sha256-AbC='");
        policy.add_source("object-src", "data:");
        assert_eq!(policy.sources("object-src").unwrap(), ["data:"]);
        assert!(policy.add_source("script-src", "'sha256-abc='").is_some());
        assert_eq!(policy.add_source("script-src", "'sha256-AbC='"), None);
    }

    #[test]
    fn header_names_and_merging() {
        assert_eq!(header_name("report"), "Content-Security-Policy-Report-Only");
        assert_eq!(header_name("enforce"), "Content-Security-Policy");
        let change = |d: &str, s: &str| DirectiveChange {
            directive: d.into(),
            created: false,
            copied_from: None,
            added: vec![s.into()],
        };
        let merged = merge_changes(vec![
            change("script-src", "a"),
            change("img-src", "b"),
            change("script-src", "c"),
        ]);
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[0].added, ["a", "c"]);
    }
}
