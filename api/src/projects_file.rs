//! The projects file ingest reads (`--projects-file`), rendered from the API's tables and written
//! atomically. The API does not depend on ingest: this module writes the TOML format ingest
//! documents (README, "Projects file"), and the e2e test loads the rendered file with the real
//! ingest. Every file ends with ingest's end marker, so ingest refuses a cut-short copy.

use std::io::Write as _;
use std::path::Path;

use crate::store::{KeyRow, ProjectRow};

/// The last line of every rendered file (ingest's `END_MARKER`).
pub const END_MARKER: &str = "# palisade:end";

/// Key states ingest knows, in its spelling.
pub const KEY_STATES: [&str; 3] = ["active", "disabled", "revoked"];

/// What is kept of the client IP (ingest's `client_ip`); `hash` is left out on purpose: it needs
/// a salt ingest may not have, and one such project would make ingest refuse the whole file.
pub const CLIENT_IP_POLICIES: [&str; 3] = ["truncate", "full", "drop"];

/// The complete projects file for `projects` and `keys` (keys of unknown projects are left out).
pub fn render(projects: &[ProjectRow], keys: &[KeyRow]) -> String {
    let mut out = String::from(
        "# Written by palisade-api from ClickHouse (api_projects, api_keys) after every change.\n\
         # Do not edit: manage projects and keys through the API (api/openapi.json).\n",
    );
    for project in projects {
        out.push_str("\n[[project]]\n");
        out.push_str(&format!("id = {}\n", project.project_id));
        out.push_str(&format!("name = {}\n", quoted(&project.name)));
        out.push_str(&format!(
            "quota = {{ per_second = {}, burst = {} }}\n",
            project.quota_per_second, project.quota_burst
        ));
        let hosts: Vec<String> = host_list(&project.allowed_hosts).map(quoted).collect();
        out.push_str(&format!("allowed_hosts = [{}]\n", hosts.join(", ")));
        out.push_str("keys = [\n");
        for key in keys.iter().filter(|k| k.project_id == project.project_id) {
            out.push_str(&format!(
                "  {{ public_key = {}, state = {} }},\n",
                quoted(&key.public_key),
                quoted(&key.state)
            ));
        }
        out.push_str("]\n");
        out.push_str(&format!(
            "filters = {{ default_noise = {} }}\n",
            project.default_noise != 0
        ));
        out.push_str(&format!(
            "privacy = {{ strip_query = {}, strip_fragment = {}, drop_referrer = {}, client_ip = {} }}\n",
            project.strip_query != 0,
            project.strip_fragment != 0,
            project.drop_referrer != 0,
            quoted(&project.client_ip)
        ));
    }
    out.push('\n');
    out.push_str(END_MARKER);
    out.push('\n');
    out
}

/// The host patterns of a stored `allowed_hosts` value.
pub fn host_list(stored: &str) -> impl Iterator<Item = &str> {
    stored.lines().map(str::trim).filter(|h| !h.is_empty())
}

/// Whether `pattern` is a host pattern ingest accepts: `example.com` or `*.example.com`
/// (a wildcard only as the whole first label), lowercase letters, digits, `-` and `.`.
pub fn valid_host_pattern(pattern: &str) -> bool {
    let host = pattern.strip_prefix("*.").unwrap_or(pattern);
    !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !host.starts_with('.')
        && !host.ends_with('.')
}

/// Whether `key` is a public key ingest accepts: 1-64 ASCII letters, digits, `-` or `_`.
pub fn valid_public_key(key: &str) -> bool {
    (1..=64).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A TOML basic string.
fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// What [`write_atomically`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// The file already held exactly this text.
    Unchanged,
    Replaced,
}

/// Replaces `path` with `text` atomically: a temporary file in the same directory, flushed to
/// disk, then renamed over `path`, so a reader sees the old file or the new one, never a part.
pub fn write_atomically(path: &Path, text: &str) -> std::io::Result<Written> {
    if std::fs::read_to_string(path).is_ok_and(|current| current == text) {
        return Ok(Written::Unchanged);
    }
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(".{name}.palisade-api.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temp, path)?;
        // The rename itself durable (best effort: not every filesystem syncs directories).
        if let Ok(dir) = std::fs::File::open(dir) {
            let _ = dir.sync_all();
        }
        Ok(Written::Replaced)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn project(id: u64, name: &str, hosts: &str) -> ProjectRow {
        ProjectRow {
            project_id: id,
            name: name.to_owned(),
            quota_per_second: 50,
            quota_burst: 100,
            allowed_hosts: hosts.to_owned(),
            strip_query: 1,
            strip_fragment: 1,
            drop_referrer: 0,
            client_ip: "truncate".to_owned(),
            default_noise: 1,
            created_at: 0,
            changed_at: 0,
        }
    }

    fn key(key: &str, project: u64, state: &str) -> KeyRow {
        KeyRow {
            public_key: key.to_owned(),
            project_id: project,
            state: state.to_owned(),
            created_at: 0,
            changed_at: 0,
        }
    }

    #[test]
    fn renders_every_project_and_key_and_ends_with_the_marker() {
        let text = render(
            &[
                project(1, "shop \"main\"\\x", "shop.example\n*.cdn.example"),
                project(2, "blog", ""),
            ],
            &[
                key("k1", 1, "active"),
                key("k2", 1, "revoked"),
                key("k3", 2, "disabled"),
                key("orphan", 9, "active"),
            ],
        );
        assert!(
            text.contains("name = \"shop \\\"main\\\"\\\\x\"\n"),
            "{text}"
        );
        assert!(text.contains("allowed_hosts = [\"shop.example\", \"*.cdn.example\"]\n"));
        assert!(text.contains("  { public_key = \"k2\", state = \"revoked\" },\n"));
        assert!(text.contains("id = 2\nname = \"blog\"\nquota = { per_second = 50, burst = 100 }\nallowed_hosts = []\nkeys = [\n  { public_key = \"k3\", state = \"disabled\" },\n]\n"));
        assert!(!text.contains("orphan"));
        assert!(text.ends_with("\n# palisade:end\n"));
        assert_eq!(text.matches("[[project]]").count(), 2);
    }

    #[test]
    fn patterns_and_keys_are_checked_like_ingest() {
        assert!(valid_host_pattern("shop.example"));
        assert!(valid_host_pattern("*.shop.example"));
        for bad in [
            "",
            "*",
            "*.",
            "a.*.b",
            "Shop.example",
            "sh op",
            "x\"y",
            ".a",
            "a.",
        ] {
            assert!(!valid_host_pattern(bad), "{bad:?}");
        }
        assert!(valid_public_key("demo-key_01"));
        assert!(!valid_public_key(""));
        assert!(!valid_public_key(&"k".repeat(65)));
        assert!(!valid_public_key("a b"));
    }

    #[test]
    fn writes_atomically_and_skips_identical_text() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("projects.toml");
        assert_eq!(write_atomically(&path, "a\n").unwrap(), Written::Replaced);
        assert_eq!(write_atomically(&path, "a\n").unwrap(), Written::Unchanged);
        assert_eq!(write_atomically(&path, "b\n").unwrap(), Written::Replaced);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "b\n");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file left behind");
    }
}
