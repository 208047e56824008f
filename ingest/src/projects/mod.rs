//! Tenants: the projects file (TOML) validated into an immutable [`Snapshot`] (projects, key
//! lookup map, quota limiters). [`Projects`] (the `reload` module) keeps the live one behind an `ArcSwap`.

mod matcher;
mod reload;

pub use matcher::HostMatcher;
pub use reload::Projects;

use std::path::PathBuf;
use std::sync::Arc;

use governor::{DefaultDirectRateLimiter, Quota};
use serde::Deserialize;

use crate::keyed_hash::{keyed_map, KeyedMap};

/// Why a projects file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ProjectsError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid projects file")]
    Toml(#[source] toml::de::Error),
    #[error("duplicate project id {0}")]
    DuplicateProject(u64),
    #[error("public key {0:?} is used twice")]
    DuplicateKey(String),
    #[error("public key {0:?} must be 1-64 ascii letters, digits, '-' or '_'")]
    BadKey(String),
    #[error("project {0}: quota per_second and burst must be at least 1")]
    ZeroQuota(u64),
    #[error("project {project}: bad host pattern {pattern:?}")]
    BadHostPattern { project: u64, pattern: String },
    #[error("project {0}: client_ip = \"hash\" needs a salt: --ip-hash-salt-file, PALISADE_IP_HASH_SALT or the project's ip_salt")]
    MissingSalt(u64),
    #[error("the file does not end with the line {END_MARKER:?} although the file in force does: written half-way? (replace it atomically: write a temporary file, then rename it)")]
    Incomplete,
}

/// The optional last line of a projects file. Once a file with it is in force, a file without
/// it is taken as cut short (a copy or write still in progress) and refused, so a prefix that
/// happens to be valid TOML never drops the rules after the cut.
pub const END_MARKER: &str = "# palisade:end";

/// Whether the last non-blank line of `text` is [`END_MARKER`].
pub fn ends_with_marker(text: &str) -> bool {
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(str::trim)
        == Some(END_MARKER)
}

/// The projects file. Unknown fields are errors so typos never silently disable a rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectsFile {
    #[serde(default, rename = "project")]
    pub projects: Vec<ProjectSpec>,
}

/// One project as written in the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectSpec {
    pub id: u64,
    pub name: String,
    pub keys: Vec<KeySpec>,
    pub quota: QuotaSpec,
    /// Hosts whose documents may report here: `example.com` (exact) or `*.example.com` (any
    /// subdomain, not the apex). Empty: any host.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    #[serde(default)]
    pub filters: FilterSpec,
    #[serde(default)]
    pub privacy: PrivacySpec,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySpec {
    pub public_key: String,
    #[serde(default)]
    pub state: KeyState,
}

/// What a key may do. Disabled answers 403 (browsers retry); revoked answers 410 (browsers
/// delete the endpoint for good).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyState {
    #[default]
    Active,
    Disabled,
    Revoked,
}

/// Reports (not requests) per second, and the burst above it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaSpec {
    pub per_second: u32,
    pub burst: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilterSpec {
    /// Drop the default noise (extensions, injected scripts, non-web documents). When off,
    /// noise is kept and tagged with its verdict in the message. Default on.
    pub default_noise: bool,
    /// Host patterns of blocked URLs to drop.
    pub ignore_blocked_hosts: Vec<String>,
    /// Host patterns of source files to drop.
    pub ignore_source_hosts: Vec<String>,
    /// Effective directives to drop (e.g. `font-src`).
    pub ignore_directives: Vec<String>,
    /// Host patterns of documents to drop.
    pub ignore_document_hosts: Vec<String>,
}

impl Default for FilterSpec {
    fn default() -> Self {
        Self {
            default_noise: true,
            ignore_blocked_hosts: Vec::new(),
            ignore_source_hosts: Vec::new(),
            ignore_directives: Vec::new(),
            ignore_document_hosts: Vec::new(),
        }
    }
}

/// What a project keeps of URLs and the client IP. Credentials (`user:pass@`) are removed from
/// every stored URL whatever this says.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrivacySpec {
    /// Remove `?query` from every stored URL (document, blocked, source file, referrer, and the
    /// URLs inside kind-specific fields). Default on.
    pub strip_query: bool,
    /// Remove `#fragment` from the same URLs. Default on.
    pub strip_fragment: bool,
    /// Drop the referrer entirely. Default off.
    pub drop_referrer: bool,
    /// What is stored of the client IP. Default `truncate`.
    pub client_ip: IpPolicy,
    /// This project's salt for `client_ip = "hash"`, instead of the process-wide
    /// `--ip-hash-salt-file`. At least 16 bytes, not a placeholder. Once loaded, holds the salt
    /// in force (the project's or the process-wide one).
    pub ip_salt: Option<crate::privacy::Salt>,
}

impl Default for PrivacySpec {
    fn default() -> Self {
        Self {
            strip_query: true,
            strip_fragment: true,
            drop_referrer: false,
            client_ip: IpPolicy::default(),
            ip_salt: None,
        }
    }
}

/// What is kept of the client IP.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IpPolicy {
    Full,
    /// IPv4 to its /24, IPv6 to its /48.
    #[default]
    Truncate,
    /// sha256(salt || ip), first 16 hex digits.
    Hash,
    Drop,
}

/// A host pattern: `example.com` exactly, or `*.example.com` for any subdomain of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    Exact(String),
    Suffix(String),
}

impl HostPattern {
    /// Parses a pattern; `None` when it is empty or has a wildcard anywhere but the front.
    pub fn parse(pattern: &str) -> Option<Self> {
        let p = pattern.trim().to_ascii_lowercase();
        match p.strip_prefix("*.") {
            Some(rest) if !rest.is_empty() && !rest.contains('*') => {
                Some(Self::Suffix(format!(".{rest}")))
            }
            Some(_) => None,
            None if p.is_empty() || p.contains('*') => None,
            None => Some(Self::Exact(p)),
        }
    }

    /// Whether `host` (already lowercase) matches.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            Self::Exact(h) => h == host,
            Self::Suffix(s) => host.len() > s.len() && host.ends_with(s.as_str()),
        }
    }
}

/// A validated project, with its quota limiter.
#[derive(Debug)]
pub struct Project {
    pub id: u64,
    pub name: String,
    pub quota: QuotaSpec,
    /// `quota` as a governor quota.
    pub rate: Quota,
    /// Counts reports; shared with the previous snapshot when the quota did not change, so a
    /// reload does not refill every bucket.
    pub limiter: Arc<DefaultDirectRateLimiter>,
    /// Document hosts allowed (empty: any), compiled when the file loads.
    pub allowed_hosts: HostMatcher,
    pub filters: Filters,
    pub privacy: PrivacySpec,
}

/// Validated filters.
#[derive(Debug, Clone)]
pub struct Filters {
    pub default_noise: bool,
    pub blocked_hosts: HostMatcher,
    pub source_hosts: HostMatcher,
    /// Lowercase.
    pub directives: Vec<String>,
    pub document_hosts: HostMatcher,
}

/// An immutable view of every project and the key lookup map. Every report request looks its
/// key and project up here: both maps hash with [`crate::keyed_hash`], not SipHash.
#[derive(Debug)]
pub struct Snapshot {
    projects: KeyedMap<u64, Arc<Project>>,
    keys: KeyedMap<String, (u64, KeyState)>,
    /// The file ended with [`END_MARKER`]: later files must too.
    pub ends_with_marker: bool,
}

impl Default for Snapshot {
    fn default() -> Self {
        Self {
            projects: keyed_map(),
            keys: keyed_map(),
            ends_with_marker: false,
        }
    }
}

impl Snapshot {
    /// Validates a parsed file. `previous` lends its limiters to unchanged quotas; `ip_salt` is
    /// the process-wide salt of projects that hash the client IP without their own.
    pub fn build(
        file: ProjectsFile,
        previous: Option<&Snapshot>,
        ip_salt: Option<&crate::privacy::Salt>,
    ) -> Result<Self, ProjectsError> {
        let mut snapshot = Snapshot::default();
        for spec in file.projects {
            let id = spec.id;
            if snapshot.projects.contains_key(&id) {
                return Err(ProjectsError::DuplicateProject(id));
            }
            for key in &spec.keys {
                let k = &key.public_key;
                let valid = (1..=64).contains(&k.len())
                    && k.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                if !valid {
                    return Err(ProjectsError::BadKey(k.clone()));
                }
                if snapshot.keys.insert(k.clone(), (id, key.state)).is_some() {
                    return Err(ProjectsError::DuplicateKey(k.clone()));
                }
            }
            let (Some(per_second), Some(burst)) = (
                std::num::NonZeroU32::new(spec.quota.per_second),
                std::num::NonZeroU32::new(spec.quota.burst),
            ) else {
                return Err(ProjectsError::ZeroQuota(id));
            };
            let patterns = |list: &[String]| -> Result<HostMatcher, ProjectsError> {
                let parsed = list
                    .iter()
                    .map(|p| {
                        HostPattern::parse(p).ok_or_else(|| ProjectsError::BadHostPattern {
                            project: id,
                            pattern: p.clone(),
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(HostMatcher::compile(&parsed))
            };
            let mut privacy = spec.privacy;
            if privacy.ip_salt.is_none() {
                privacy.ip_salt = ip_salt.cloned();
            }
            if privacy.client_ip == IpPolicy::Hash && privacy.ip_salt.is_none() {
                return Err(ProjectsError::MissingSalt(id));
            }
            let rate = Quota::per_second(per_second).allow_burst(burst);
            let limiter = previous
                .and_then(|p| p.projects.get(&id))
                .filter(|p| p.quota == spec.quota)
                .map(|p| Arc::clone(&p.limiter))
                .unwrap_or_else(|| Arc::new(governor::RateLimiter::direct(rate)));
            let project = Project {
                id,
                name: spec.name,
                quota: spec.quota,
                rate,
                limiter,
                allowed_hosts: patterns(&spec.allowed_hosts)?,
                filters: Filters {
                    default_noise: spec.filters.default_noise,
                    blocked_hosts: patterns(&spec.filters.ignore_blocked_hosts)?,
                    source_hosts: patterns(&spec.filters.ignore_source_hosts)?,
                    directives: spec
                        .filters
                        .ignore_directives
                        .iter()
                        .map(|d| d.to_ascii_lowercase())
                        .collect(),
                    document_hosts: patterns(&spec.filters.ignore_document_hosts)?,
                },
                privacy,
            };
            snapshot.projects.insert(id, Arc::new(project));
        }
        Ok(snapshot)
    }

    /// Parses and validates TOML text (without a process-wide salt).
    pub fn from_toml(text: &str, previous: Option<&Snapshot>) -> Result<Self, ProjectsError> {
        Self::from_toml_salted(text, previous, None)
    }

    /// Parses and validates TOML text; `ip_salt` as in [`Snapshot::build`].
    pub fn from_toml_salted(
        text: &str,
        previous: Option<&Snapshot>,
        ip_salt: Option<&crate::privacy::Salt>,
    ) -> Result<Self, ProjectsError> {
        let file: ProjectsFile = toml::from_str(text).map_err(ProjectsError::Toml)?;
        let mut snapshot = Self::build(file, previous, ip_salt)?;
        snapshot.ends_with_marker = ends_with_marker(text);
        Ok(snapshot)
    }

    /// The project and state owning `public_key`.
    pub fn key(&self, public_key: &str) -> Option<(u64, KeyState)> {
        self.keys.get(public_key).copied()
    }

    pub fn project(&self, id: u64) -> Option<&Arc<Project>> {
        self.projects.get(&id)
    }

    pub fn len(&self) -> usize {
        self.projects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.projects.is_empty()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
        [[project]]
        id = 1
        name = "shop"
        allowed_hosts = ["shop.example", "*.cdn.example"]
        quota = { per_second = 10, burst = 20 }
        keys = [{ public_key = "k1" }, { public_key = "k1-old", state = "revoked" }]
        filters = { default_noise = false, ignore_directives = ["font-src"] }
        privacy = { client_ip = "hash", ip_salt = "3b9f1e7c5a2d8046" }

        [[project]]
        id = 2
        name = "blog"
        quota = { per_second = 1, burst = 1 }
        keys = [{ public_key = "k2", state = "disabled" }]
    "#;

    #[test]
    fn parses_and_indexes_keys() {
        let s = Snapshot::from_toml(GOOD, None).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s.key("k1"), Some((1, KeyState::Active)));
        assert_eq!(s.key("k1-old"), Some((1, KeyState::Revoked)));
        assert_eq!(s.key("k2"), Some((2, KeyState::Disabled)));
        assert_eq!(s.key("nope"), None);
        let p = s.project(1).unwrap();
        assert!(!p.filters.default_noise);
        assert_eq!(p.privacy.client_ip, IpPolicy::Hash);
        assert!(
            s.project(2).unwrap().filters.default_noise,
            "noise filter defaults to on"
        );
        assert_eq!(s.project(2).unwrap().privacy.client_ip, IpPolicy::Truncate);
    }

    #[test]
    fn rejects_bad_files() {
        let cases = [
            ("[[project]]\nid=1\nname='a'\nquota={per_second=1,burst=1}\nkeys=[]\ntypo=1", "unknown field"),
            ("[[project]]\nid=1\nname='a'\nquota={per_second=0,burst=1}\nkeys=[]", "quota"),
            ("[[project]]\nid=1\nname='a'\nquota={per_second=1,burst=1}\nkeys=[{public_key='a b'}]", "public key"),
            ("[[project]]\nid=1\nname='a'\nquota={per_second=1,burst=1}\nkeys=[]\nallowed_hosts=['a.*.b']", "host pattern"),
            ("[[project]]\nid=1\nname='a'\nquota={per_second=1,burst=1}\nkeys=[]\nprivacy={client_ip='hash'}", "ip_salt"),
            ("[[project]]\nid=1\nname='a'\nquota={per_second=1,burst=1}\nkeys=[]\nprivacy={client_ip='hash',ip_salt='pepper'}", "at least 16"),
            ("[[project]]\nid=1\nname='a'\nquota={per_second=1,burst=1}\nkeys=[]\nprivacy={client_ip='hash',ip_salt='change-me-to-a-long-random-string'}", "placeholder"),
            ("[[project]]\nid=1\nname='a'\nquota={per_second=1,burst=1}\nkeys=[{public_key='k'}]\n[[project]]\nid=2\nname='b'\nquota={per_second=1,burst=1}\nkeys=[{public_key='k'}]", "twice"),
            ("[[project]]\nid=1\nname='a'\nquota={per_second=1,burst=1}\nkeys=[]\n[[project]]\nid=1\nname='b'\nquota={per_second=1,burst=1}\nkeys=[]", "duplicate project"),
        ];
        for (text, want) in cases {
            let err = Snapshot::from_toml(text, None).unwrap_err();
            let chain = schemas::error_chain(&err);
            assert!(chain.contains(want), "{text:?}: {chain}");
        }
    }

    #[test]
    fn example_files_in_deploy_are_valid() {
        let salt = crate::privacy::Salt::parse("3b9f1e7c5a2d8046").unwrap();
        let example = include_str!("../../../deploy/projects.example.toml");
        let kubernetes = include_str!("../../../deploy/kubernetes/projects.toml");
        for (text, salt) in [(example, None), (kubernetes, Some(&salt))] {
            let s = Snapshot::from_toml_salted(text, None, salt).unwrap();
            assert_eq!(s.len(), 2);
            assert_eq!(s.key("0ld0ld0ld0ld0ld0"), Some((1, KeyState::Revoked)));
            assert!(s.ends_with_marker, "the examples end with the marker");
        }
        // Kubernetes hashes project 2's client IPs with the salt of its Secret.
        let err = Snapshot::from_toml(kubernetes, None).unwrap_err();
        assert!(matches!(err, ProjectsError::MissingSalt(2)), "{err}");
    }

    /// Issue 10, item 7: privacy on by default, a project's own salt wins over the global one.
    #[test]
    fn privacy_defaults_and_salts() {
        let global = crate::privacy::Salt::parse("0123456789abcdef").unwrap();
        let s = Snapshot::from_toml_salted(GOOD, None, Some(&global)).unwrap();
        let own = &s.project(1).unwrap().privacy;
        assert_eq!(
            own.ip_salt,
            Some(crate::privacy::Salt::parse("3b9f1e7c5a2d8046").unwrap())
        );
        let default = &s.project(2).unwrap().privacy;
        assert!(default.strip_query && default.strip_fragment && !default.drop_referrer);
        assert_eq!(default.ip_salt, Some(global));
    }

    #[test]
    fn end_marker() {
        assert!(ends_with_marker("a = 1\n# palisade:end\n\n"));
        assert!(ends_with_marker("# palisade:end"));
        assert!(!ends_with_marker("# palisade:end\na = 1\n"));
        assert!(!ends_with_marker(""));
    }

    #[test]
    fn host_patterns() {
        let exact = HostPattern::parse("Shop.Example").unwrap();
        assert!(exact.matches("shop.example"));
        assert!(!exact.matches("www.shop.example"));
        let suffix = HostPattern::parse("*.shop.example").unwrap();
        assert!(suffix.matches("www.shop.example"));
        assert!(suffix.matches("a.b.shop.example"));
        assert!(
            !suffix.matches("shop.example"),
            "the apex is not a subdomain"
        );
        assert!(!suffix.matches("evilshop.example"));
        for bad in ["", "*", "*.", "a.*.b", "*.*.b"] {
            assert_eq!(HostPattern::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn reload_keeps_limiter_state_when_quota_is_unchanged() {
        let first = Snapshot::from_toml(GOOD, None).unwrap();
        let second = Snapshot::from_toml(GOOD, Some(&first)).unwrap();
        assert!(Arc::ptr_eq(
            &first.project(1).unwrap().limiter,
            &second.project(1).unwrap().limiter
        ));
        let changed = GOOD.replace("per_second = 10", "per_second = 11");
        let third = Snapshot::from_toml(&changed, Some(&second)).unwrap();
        assert!(!Arc::ptr_eq(
            &second.project(1).unwrap().limiter,
            &third.project(1).unwrap().limiter
        ));
    }
}
