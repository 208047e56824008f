//! CSP directive families: the `-elem`/`-attr` split directives and their fallbacks grouped under
//! the directive a policy author edits.

use std::borrow::Cow;

/// The family of an effective directive: `script-src-elem`/`script-src-attr` -> `script-src`,
/// `style-src-elem`/`style-src-attr` -> `style-src`, anything else lowercased as is.
///
/// CSP3 section 6.8.3 ("Get the effective directive for request") lets `script-src-elem` and
/// `script-src-attr` fall back to `script-src`, so allow-list changes land there.
///
/// Borrowed unless the directive has upper-case letters (browsers send it lower-case).
pub fn family(effective_directive: &str) -> Cow<'_, str> {
    let trimmed = effective_directive.trim();
    let directive = if trimmed.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(trimmed.to_ascii_lowercase())
    } else {
        Cow::Borrowed(trimmed)
    };
    match &*directive {
        "script-src-elem" | "script-src-attr" => Cow::Borrowed("script-src"),
        "style-src-elem" | "style-src-attr" => Cow::Borrowed("style-src"),
        _ => directive,
    }
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
        assert_eq!(family("Img-Src"), "img-src");
    }
}
