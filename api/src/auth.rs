//! Who is calling: `Authorization: Bearer <token>`, hashed with SHA-256 and compared in constant
//! time against every known token hash (admin tokens from the config, project tokens from the
//! `api_tokens` table). Only hashes are held and stored; a token is shown once, when created.
//!
//! Scope: an admin token manages every project; a project token reads and changes only its own
//! project. A project token on another project's path is answered 403 `wrong_project` whatever
//! that project holds (no existence oracle); see [`Principal::may_access`].

use std::fmt;

use http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;

/// Prefix of generated tokens, so a leaked one is recognisable (secret scanners, logs).
pub const TOKEN_PREFIX: &str = "pal_";
/// Random bytes in a generated token (256 bits).
const TOKEN_RANDOM_BYTES: usize = 32;

/// The SHA-256 of a token.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    pub fn of(token: &str) -> Self {
        Self(Sha256::digest(token.as_bytes()).into())
    }

    /// 64 lowercase hex digits, as stored in `api_tokens.token_hash`.
    pub fn to_hex(self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(text: &str) -> Option<Self> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes).ok()?;
        Some(Self(bytes))
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A hash is not a secret, but keep logs short.
        write!(f, "TokenHash({}..)", &self.to_hex()[..8])
    }
}

/// A new random token: `pal_` + 64 hex digits.
pub fn generate_token() -> Result<String, ApiError> {
    let mut bytes = [0u8; TOKEN_RANDOM_BYTES];
    getrandom::fill(&mut bytes).map_err(ApiError::Random)?;
    Ok(format!("{TOKEN_PREFIX}{}", hex::encode(bytes)))
}

/// What an authenticated caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Principal {
    Admin,
    Project(u64),
}

impl Principal {
    /// Whether this caller may read and change `project`.
    pub fn may_access(self, project: u64) -> Result<(), ApiError> {
        match self {
            Self::Admin => Ok(()),
            Self::Project(own) if own == project => Ok(()),
            Self::Project(_) => Err(ApiError::WrongProject { project }),
        }
    }

    pub fn require_admin(self) -> Result<(), ApiError> {
        match self {
            Self::Admin => Ok(()),
            Self::Project(_) => Err(ApiError::AdminRequired),
        }
    }

    /// Who did it, for the audit log and `changed_by` columns (never the token).
    pub fn actor(self) -> String {
        match self {
            Self::Admin => "admin".to_owned(),
            Self::Project(id) => format!("project-token:{id}"),
        }
    }
}

/// Every token hash the API accepts, with what it grants.
#[derive(Debug, Clone, Default)]
pub struct TokenSet {
    entries: Vec<(TokenHash, Principal)>,
}

impl TokenSet {
    /// Admin tokens (hashed here) plus the project tokens read from ClickHouse.
    pub fn new(admin_tokens: &[String], projects: Vec<(TokenHash, u64)>) -> Self {
        let admins = admin_tokens
            .iter()
            .map(|token| (TokenHash::of(token.trim()), Principal::Admin));
        let projects = projects
            .into_iter()
            .map(|(hash, project)| (hash, Principal::Project(project)));
        Self {
            entries: admins.chain(projects).collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The principal of `token`. Every entry is compared, in constant time each, whatever
    /// matches: the time taken depends on the number of tokens, not on which one matched or
    /// how many leading bytes a guess got right.
    pub fn authenticate(&self, token: &str) -> Option<Principal> {
        let presented = TokenHash::of(token);
        let mut found = None;
        for (hash, principal) in &self.entries {
            if bool::from(hash.0.ct_eq(&presented.0)) {
                found = Some(*principal);
            }
        }
        found
    }
}

/// The bearer token of a request: `Authorization: Bearer <token>` (scheme case-insensitive).
pub fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    let value = headers
        .get(http::header::AUTHORIZATION)
        .ok_or(ApiError::MissingToken)?;
    let value = value.to_str().map_err(|_| ApiError::BadToken)?.trim();
    let (scheme, token) = value
        .split_once(char::is_whitespace)
        .ok_or(ApiError::BadToken)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(ApiError::BadToken);
    }
    Ok(token)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn tokens_authenticate_by_hash_and_scope() {
        let admin = "a".repeat(40);
        let project = generate_token().unwrap();
        assert!(project.starts_with(TOKEN_PREFIX) && project.len() == 4 + 64);
        let set = TokenSet::new(
            std::slice::from_ref(&admin),
            vec![(TokenHash::of(&project), 7)],
        );
        assert_eq!(set.authenticate(&admin), Some(Principal::Admin));
        assert_eq!(set.authenticate(&project), Some(Principal::Project(7)));
        assert_eq!(set.authenticate("pal_guess"), None);
        assert_eq!(set.authenticate(""), None);
        Principal::Project(7).may_access(7).unwrap();
        assert!(matches!(
            Principal::Project(7).may_access(8),
            Err(ApiError::WrongProject { project: 8 })
        ));
        Principal::Admin.may_access(8).unwrap();
        assert!(Principal::Project(7).require_admin().is_err());
    }

    #[test]
    fn hashes_round_trip_through_hex() {
        let hash = TokenHash::of("x");
        assert_eq!(TokenHash::from_hex(&hash.to_hex()), Some(hash));
        assert_eq!(TokenHash::from_hex("zz"), None);
    }

    #[test]
    fn bearer_header_parsing() {
        let mut headers = HeaderMap::new();
        assert!(matches!(bearer(&headers), Err(ApiError::MissingToken)));
        headers.insert("authorization", "Bearer  tok ".parse().unwrap());
        assert_eq!(bearer(&headers).unwrap(), "tok");
        headers.insert("authorization", "bearer tok".parse().unwrap());
        assert_eq!(bearer(&headers).unwrap(), "tok");
        headers.insert("authorization", "Basic dXNlcg==".parse().unwrap());
        assert!(matches!(bearer(&headers), Err(ApiError::BadToken)));
        headers.insert("authorization", "Bearer".parse().unwrap());
        assert!(matches!(bearer(&headers), Err(ApiError::BadToken)));
    }
}
