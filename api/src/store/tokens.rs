//! The `api_tokens` queries: active project tokens (for authentication), a project's tokens
//! (for listing), creating and revoking. Read with `argMax(x, version)` grouped by the hash:
//! `revoked` changes between versions, so it is never filtered before the latest is chosen.

use serde::Deserialize;

use super::{now_secs, Store};
use crate::auth::TokenHash;
use crate::error::ApiError;

/// A project token as stored (latest version).
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Deserialize)]
pub struct TokenRow {
    pub token_hash: String,
    pub created_at: u32,
    pub revoked: u8,
    pub changed_at: u32,
}

impl Store {
    /// Active project tokens: `(hash, project)`.
    pub async fn project_tokens(&self) -> Result<Vec<(TokenHash, u64)>, ApiError> {
        #[derive(Debug, clickhouse::Row, Deserialize)]
        struct Row {
            token_hash: String,
            project_id: u64,
        }
        let sql = "SELECT token_hash, argMax(project_id, version) FROM api_tokens \
                   GROUP BY token_hash \
                   HAVING argMax(revoked, version) = 0 AND argMax(kind, version) = 'project'";
        let rows: Vec<Row> = self
            .timed("reading api tokens", self.client.query(sql).fetch_all())
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|row| Some((TokenHash::from_hex(&row.token_hash)?, row.project_id)))
            .collect())
    }

    /// The project's tokens (revoked ones too), newest first.
    pub async fn project_token_rows(
        &self,
        project: u64,
        limit: usize,
    ) -> Result<Vec<TokenRow>, ApiError> {
        let sql = "SELECT token_hash, toUInt32(argMax(created_at, version)) AS created, \
                   argMax(revoked, version), toUInt32(argMax(changed_at, version)) \
                   FROM api_tokens GROUP BY token_hash \
                   HAVING argMax(project_id, version) = ? AND argMax(kind, version) = 'project' \
                   ORDER BY created DESC, token_hash LIMIT ?";
        let query = self.client.query(sql).bind(project).bind(limit as u64);
        self.timed("listing tokens", query.fetch_all()).await
    }

    /// Writes the revoked version of `row`.
    pub async fn revoke_token(&self, row: &TokenRow, project: u64) -> Result<(), ApiError> {
        let sql = "INSERT INTO api_tokens \
                   (token_hash, project_id, kind, created_at, revoked, changed_at, version) \
                   SELECT ?, ?, 'project', toDateTime(?), 1, toDateTime(?), ?";
        let query = self
            .client
            .query(sql)
            .bind(&row.token_hash)
            .bind(project)
            .bind(row.created_at)
            .bind(now_secs())
            .bind(self.next_version());
        self.timed("revoking a token", query.execute()).await
    }

    pub async fn insert_token(&self, hash: TokenHash, project: u64) -> Result<(), ApiError> {
        let now = now_secs();
        let sql = "INSERT INTO api_tokens \
                   (token_hash, project_id, kind, created_at, revoked, changed_at, version) \
                   SELECT ?, ?, 'project', toDateTime(?), 0, toDateTime(?), ?";
        let query = self
            .client
            .query(sql)
            .bind(hash.to_hex())
            .bind(project)
            .bind(now)
            .bind(now)
            .bind(self.next_version());
        self.timed("creating a token", query.execute()).await
    }
}
