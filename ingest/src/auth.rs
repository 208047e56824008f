//! Who is reporting: the Sentry-style public key (from the query, the path, or the
//! `X-Sentry-Auth` / `Authorization: Sentry ...` headers) looked up in the projects snapshot.

use std::borrow::Cow;
use std::sync::Arc;

use http::HeaderMap;

use crate::projects::{KeyState, Project, Snapshot};
use crate::rejection::Rejection;

/// Parameters of the query string we use, borrowed from it unless decoding changed them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct QueryParams<'a> {
    pub sentry_key: Option<Cow<'a, str>>,
    pub environment: Option<Cow<'a, str>>,
    pub release: Option<Cow<'a, str>>,
}

/// Longest environment/release kept (they end up in every message).
const MAX_TAG_LEN: usize = 200;

impl<'a> QueryParams<'a> {
    pub fn parse(query: Option<&'a str>) -> Self {
        let mut params = Self::default();
        let query = query.unwrap_or("");
        if needs_decoding(query) {
            for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
                params.take(&name, value);
            }
        } else {
            for (name, value) in plain_pairs(query) {
                params.take(name, Cow::Borrowed(value));
            }
        }
        params
    }

    /// Keeps `value` if `name` is one of ours and not set yet (the first one wins).
    fn take(&mut self, name: &str, value: Cow<'a, str>) {
        let slot = match name {
            "sentry_key" => &mut self.sentry_key,
            "sentry_environment" => &mut self.environment,
            "sentry_release" => &mut self.release,
            _ => return,
        };
        if slot.is_none() && !value.is_empty() {
            *slot = Some(truncate(value, MAX_TAG_LEN));
        }
    }
}

/// Whether `application/x-www-form-urlencoded` decoding would change anything in `query`:
/// only `%` escapes and `+` (a space) do.
fn needs_decoding(query: &str) -> bool {
    // memchr2, not a byte loop: about 100 fewer instructions for a `?sentry_key=...` query.
    memchr::memchr2(b'%', b'+', query.as_bytes()).is_some()
}

/// The `name=value` pairs of a query that [`needs_decoding`] says nothing in, borrowed: what
/// `url::form_urlencoded::parse` yields for it (pairs split at `&`, empty ones skipped, the
/// name ending at the first `=`), without its per-byte decoding (about 700 instructions of
/// every request's `?sentry_key=...`, callgrind).
fn plain_pairs(query: &str) -> impl Iterator<Item = (&str, &str)> {
    // memchr, not `split('&')` and `split_once('=')`: a `str` char search costs about 100
    // instructions to set up, twice per pair.
    let mut rest = Some(query);
    std::iter::from_fn(move || {
        let text = rest?;
        Some(match memchr::memchr(b'&', text.as_bytes()) {
            Some(at) => {
                rest = Some(&text[at + 1..]);
                &text[..at]
            }
            None => {
                rest = None;
                text
            }
        })
    })
    .filter(|pair| !pair.is_empty())
    .map(|pair| match memchr::memchr(b'=', pair.as_bytes()) {
        Some(at) => (&pair[..at], &pair[at + 1..]),
        None => (pair, ""),
    })
}

/// `s` cut to at most `max` bytes, at a character boundary (a borrowed value stays borrowed).
fn truncate(s: Cow<'_, str>, max: usize) -> Cow<'_, str> {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    match s {
        Cow::Borrowed(s) => Cow::Borrowed(&s[..end]),
        Cow::Owned(mut s) => {
            s.truncate(end);
            Cow::Owned(s)
        }
    }
}

/// `sentry_key` from a `Sentry sentry_key=..., sentry_version=7` header value.
pub fn key_from_auth_header(value: &str) -> Option<&str> {
    let (scheme, rest) = value.trim().split_once(char::is_whitespace)?;
    if !scheme.eq_ignore_ascii_case("sentry") {
        return None;
    }
    rest.split(',').find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        (name.trim() == "sentry_key" && !value.trim().is_empty()).then(|| value.trim())
    })
}

/// The public key of a request: the path key, then `?sentry_key=`, then `X-Sentry-Auth`, then
/// `Authorization`.
pub fn find_key<'a>(
    path_key: Option<&'a str>,
    query: &'a QueryParams<'_>,
    headers: &'a HeaderMap,
) -> Option<&'a str> {
    path_key.or(query.sentry_key.as_deref()).or_else(|| {
        ["x-sentry-auth", "authorization"]
            .into_iter()
            .filter_map(|name| headers.get(name)?.to_str().ok())
            .find_map(key_from_auth_header)
    })
}

/// The project allowed to report to `/api/{project_id}/...` with `key`.
pub fn authorize(
    snapshot: &Snapshot,
    project_id: u64,
    key: Option<&str>,
) -> Result<Arc<Project>, Rejection> {
    // `let else`, not `ok_or(Rejection::..)?`: `ok_or` builds and drops a `Rejection` on every
    // accepted request.
    let Some(key) = key else {
        return Err(Rejection::MissingKey);
    };
    let Some((owner, state)) = snapshot.key(key) else {
        return Err(Rejection::UnknownKey);
    };
    if owner != project_id {
        return Err(Rejection::WrongProject);
    }
    match state {
        KeyState::Active => {}
        KeyState::Disabled => return Err(Rejection::KeyDisabled),
        KeyState::Revoked => return Err(Rejection::KeyRevoked),
    }
    // The key index and the project map come from the same file, so the owner exists.
    match snapshot.project(project_id) {
        Some(project) => Ok(Arc::clone(project)),
        None => Err(Rejection::UnknownKey),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn query_params() {
        let q = QueryParams::parse(Some(
            "sentry_key=abc&sentry_environment=prod&sentry_release=1%2E2&x=1",
        ));
        assert_eq!(q.sentry_key.as_deref(), Some("abc"));
        assert_eq!(q.environment.as_deref(), Some("prod"));
        assert_eq!(q.release.as_deref(), Some("1.2"));
        assert_eq!(QueryParams::parse(None), QueryParams::default());
        assert_eq!(QueryParams::parse(Some("sentry_key=")).sentry_key, None);
        let long = format!("sentry_release={}", "é".repeat(300));
        assert!(QueryParams::parse(Some(&long)).release.unwrap().len() <= MAX_TAG_LEN);
    }

    /// The borrowed split gives what `form_urlencoded` gives wherever it is used (no `%`,
    /// no `+`), and `needs_decoding` sends every query with either to `form_urlencoded`.
    #[test]
    fn plain_pairs_are_what_form_urlencoded_gives() {
        for query in [
            "",
            "sentry_key=abc",
            "sentry_key=abc&sentry_environment=prod&x=1",
            "&&a=1&&b&=c&d=e=f&",
            "sentry_key&sentry_key=k&sentry_key=j",
            "\u{e9}=\u{e8}&a==",
        ] {
            assert!(!needs_decoding(query), "{query}");
            let decoded: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
                .map(|(n, v)| (n.into_owned(), v.into_owned()))
                .collect();
            let plain: Vec<(String, String)> = plain_pairs(query)
                .map(|(n, v)| (n.to_owned(), v.to_owned()))
                .collect();
            assert_eq!(plain, decoded, "{query}");
        }
        assert!(needs_decoding("sentry_release=1%2E2"));
        assert!(needs_decoding("sentry_environment=a+b"));
        assert_eq!(
            QueryParams::parse(Some("sentry_environment=a+b&sentry_key=k")),
            QueryParams {
                sentry_key: Some("k".into()),
                environment: Some("a b".into()),
                release: None,
            }
        );
    }

    #[test]
    fn auth_headers() {
        assert_eq!(
            key_from_auth_header("Sentry sentry_key=abc, sentry_version=7"),
            Some("abc")
        );
        assert_eq!(
            key_from_auth_header("sentry sentry_version=7,sentry_key=abc"),
            Some("abc")
        );
        assert_eq!(key_from_auth_header("Bearer sentry_key=abc"), None);
        assert_eq!(key_from_auth_header("Sentry sentry_key="), None);
        assert_eq!(key_from_auth_header("Sentry"), None);
    }

    #[test]
    fn key_precedence() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "authorization",
            HeaderValue::from_static("Sentry sentry_key=fromauth"),
        );
        let none = QueryParams::default();
        assert_eq!(find_key(None, &none, &headers), Some("fromauth"));
        headers.insert(
            "x-sentry-auth",
            HeaderValue::from_static("Sentry sentry_key=fromx"),
        );
        assert_eq!(find_key(None, &none, &headers), Some("fromx"));
        let q = QueryParams {
            sentry_key: Some("fromquery".into()),
            ..QueryParams::default()
        };
        assert_eq!(find_key(None, &q, &headers), Some("fromquery"));
        assert_eq!(find_key(Some("frompath"), &q, &headers), Some("frompath"));
        assert_eq!(find_key(None, &none, &HeaderMap::new()), None);
    }

    #[test]
    fn authorize_maps_key_states() {
        let s = Snapshot::from_toml(
            r#"
            [[project]]
            id = 1
            name = "a"
            quota = { per_second = 1, burst = 1 }
            keys = [{ public_key = "on" }, { public_key = "off", state = "disabled" }, { public_key = "gone", state = "revoked" }]
            [[project]]
            id = 2
            name = "b"
            quota = { per_second = 1, burst = 1 }
            keys = [{ public_key = "other" }]
            "#,
            None,
        )
        .unwrap();
        assert_eq!(authorize(&s, 1, Some("on")).unwrap().id, 1);
        let reason = |id, key| authorize(&s, id, key).unwrap_err().reason();
        assert_eq!(reason(1, None), "missing_key");
        assert_eq!(reason(1, Some("nope")), "unknown_key");
        assert_eq!(reason(1, Some("other")), "wrong_project");
        assert_eq!(reason(3, Some("on")), "wrong_project");
        assert_eq!(reason(1, Some("off")), "key_disabled");
        assert_eq!(reason(1, Some("gone")), "key_revoked");
    }
}
