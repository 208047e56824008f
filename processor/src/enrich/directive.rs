//! CSP directive families: the `-elem`/`-attr` split directives and their fallbacks grouped under
//! the directive a policy author edits.

/// The family of an effective directive: `script-src-elem`/`script-src-attr` -> `script-src`,
/// `style-src-elem`/`style-src-attr` -> `style-src`, anything else lowercased as is.
///
/// CSP3 section 6.8.3 ("Get the effective directive for request") lets `script-src-elem` and
/// `script-src-attr` fall back to `script-src`, so allow-list changes land there.
pub fn family(effective_directive: &str) -> String {
    let directive = effective_directive.trim().to_ascii_lowercase();
    let family = match directive.as_str() {
        "script-src-elem" | "script-src-attr" => "script-src",
        "style-src-elem" | "style-src-attr" => "style-src",
        _ => return directive,
    };
    family.to_owned()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::family;

    #[test]
    fn split_directives_join_their_family() {
        assert_eq!(family("script-src-elem"), "script-src");
        assert_eq!(family("script-src-attr"), "script-src");
        assert_eq!(family("Style-Src-Attr "), "style-src");
        assert_eq!(family("style-src-elem"), "style-src");
    }

    #[test]
    fn other_directives_are_their_own_family() {
        assert_eq!(family("img-src"), "img-src");
        assert_eq!(family("script-src"), "script-src");
        assert_eq!(family("frame-ancestors"), "frame-ancestors");
        assert_eq!(family(""), "");
    }
}
