//! The `api_projects` and `api_keys` queries (migration 007): projects and their public keys,
//! the source of the projects file the API renders for ingest; and `project_storage` (migration
//! 008): each project's storage bound, read by the processor's retention job. Read with
//! `argMax(x, version)` grouped by the key (the latest write wins), written as a new version.

use serde::Deserialize;

use super::{now_secs, Store};
use crate::error::ApiError;

/// A project as stored (latest version).
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Deserialize)]
pub struct ProjectRow {
    pub project_id: u64,
    pub name: String,
    pub quota_per_second: u32,
    pub quota_burst: u32,
    /// Newline-separated host patterns; empty: any host.
    pub allowed_hosts: String,
    pub strip_query: u8,
    pub strip_fragment: u8,
    pub drop_referrer: u8,
    /// `truncate`, `full` or `drop`.
    pub client_ip: String,
    pub default_noise: u8,
    pub created_at: u32,
    pub changed_at: u32,
}

/// A public key as stored (latest version).
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Deserialize)]
pub struct KeyRow {
    pub public_key: String,
    pub project_id: u64,
    /// `active`, `disabled` or `revoked`.
    pub state: String,
    pub created_at: u32,
    pub changed_at: u32,
}

const PROJECT_COLUMNS: &str = "project_id, argMax(name, version), \
     argMax(quota_per_second, version), argMax(quota_burst, version), \
     argMax(allowed_hosts, version), argMax(strip_query, version), \
     argMax(strip_fragment, version), argMax(drop_referrer, version), \
     argMax(client_ip, version), argMax(default_noise, version), \
     toUInt32(argMax(created_at, version)), toUInt32(argMax(changed_at, version))";

const KEY_COLUMNS: &str = "public_key, argMax(project_id, version) AS project, \
     argMax(state, version), toUInt32(argMax(created_at, version)) AS created, \
     toUInt32(argMax(changed_at, version))";

impl Store {
    /// Every project, by id (at most `limit`).
    pub async fn projects(&self, limit: usize) -> Result<Vec<ProjectRow>, ApiError> {
        let sql = format!(
            "SELECT {PROJECT_COLUMNS} FROM api_projects GROUP BY project_id \
             ORDER BY project_id LIMIT ?"
        );
        let query = self.client.query(&sql).bind(limit as u64);
        self.timed("reading projects", query.fetch_all()).await
    }

    /// One project, `None` when it does not exist.
    pub async fn project(&self, project: u64) -> Result<Option<ProjectRow>, ApiError> {
        let sql = format!(
            "SELECT {PROJECT_COLUMNS} FROM api_projects WHERE project_id = ? GROUP BY project_id"
        );
        let query = self.client.query(&sql).bind(project);
        let rows: Vec<ProjectRow> = self.timed("reading a project", query.fetch_all()).await?;
        Ok(rows.into_iter().next())
    }

    /// The highest project id in use (0 when there is none).
    pub async fn max_project_id(&self) -> Result<u64, ApiError> {
        let query = self
            .client
            .query("SELECT max(project_id) FROM api_projects");
        self.timed("reading the highest project id", query.fetch_one::<u64>())
            .await
    }

    /// Writes a new version of `row` (`created_at` kept as given, `changed_at` now).
    pub async fn put_project(&self, row: &ProjectRow) -> Result<(), ApiError> {
        let sql = "INSERT INTO api_projects (project_id, name, quota_per_second, quota_burst, \
                   allowed_hosts, strip_query, strip_fragment, drop_referrer, client_ip, \
                   default_noise, created_at, changed_at, version) \
                   SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, toDateTime(?), toDateTime(?), ?";
        let query = self
            .client
            .query(sql)
            .bind(row.project_id)
            .bind(&row.name)
            .bind(row.quota_per_second)
            .bind(row.quota_burst)
            .bind(&row.allowed_hosts)
            .bind(row.strip_query)
            .bind(row.strip_fragment)
            .bind(row.drop_referrer)
            .bind(&row.client_ip)
            .bind(row.default_noise)
            .bind(row.created_at)
            .bind(now_secs())
            .bind(self.next_version());
        self.timed("writing a project", query.execute()).await
    }

    /// Every public key, by project (at most `limit`).
    pub async fn keys(&self, limit: usize) -> Result<Vec<KeyRow>, ApiError> {
        let sql = format!(
            "SELECT {KEY_COLUMNS} FROM api_keys GROUP BY public_key \
             ORDER BY project, created, public_key LIMIT ?"
        );
        let query = self.client.query(&sql).bind(limit as u64);
        self.timed("reading public keys", query.fetch_all()).await
    }

    /// The public keys of `project` (revoked ones too), oldest first.
    pub async fn project_keys(&self, project: u64, limit: usize) -> Result<Vec<KeyRow>, ApiError> {
        let sql = format!(
            "SELECT {KEY_COLUMNS} FROM api_keys GROUP BY public_key HAVING project = ? \
             ORDER BY created, public_key LIMIT ?"
        );
        let query = self.client.query(&sql).bind(project).bind(limit as u64);
        self.timed("reading a project's keys", query.fetch_all())
            .await
    }

    /// One public key (of any project), `None` when it was never created.
    pub async fn key(&self, public_key: &str) -> Result<Option<KeyRow>, ApiError> {
        let sql =
            format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE public_key = ? GROUP BY public_key");
        let query = self.client.query(&sql).bind(public_key);
        let rows: Vec<KeyRow> = self.timed("reading a key", query.fetch_all()).await?;
        Ok(rows.into_iter().next())
    }

    /// Writes a new version of `row` (`created_at` kept as given, `changed_at` now).
    pub async fn put_key(&self, row: &KeyRow) -> Result<(), ApiError> {
        let sql = "INSERT INTO api_keys \
                   (public_key, project_id, state, created_at, changed_at, version) \
                   SELECT ?, ?, ?, toDateTime(?), toDateTime(?), ?";
        let query = self
            .client
            .query(sql)
            .bind(&row.public_key)
            .bind(row.project_id)
            .bind(&row.state)
            .bind(row.created_at)
            .bind(now_secs())
            .bind(self.next_version());
        self.timed("writing a key", query.execute()).await
    }
}

/// A project's storage bound (`project_storage`, migration 008), enforced by the processor's
/// retention job; 0 means "the processor's default" (`--retention-days`,
/// `--project-max-rows`). A project without a stored row has both at 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clickhouse::Row, Deserialize)]
pub struct StorageRow {
    pub project_id: u64,
    pub retention_days: u32,
    pub max_rows: u64,
}

const STORAGE_COLUMNS: &str =
    "project_id, argMax(retention_days, version), argMax(max_rows, version)";

impl Store {
    /// Every stored storage bound, by project id (at most `limit`).
    pub async fn storage_bounds(&self, limit: usize) -> Result<Vec<StorageRow>, ApiError> {
        let sql = format!(
            "SELECT {STORAGE_COLUMNS} FROM project_storage GROUP BY project_id \
             ORDER BY project_id LIMIT ?"
        );
        let query = self.client.query(&sql).bind(limit as u64);
        self.timed("reading storage bounds", query.fetch_all())
            .await
    }

    /// `project`'s storage bound (both 0 when none was stored).
    pub async fn storage_bound(&self, project: u64) -> Result<StorageRow, ApiError> {
        let sql = format!(
            "SELECT {STORAGE_COLUMNS} FROM project_storage WHERE project_id = ? \
             GROUP BY project_id"
        );
        let query = self.client.query(&sql).bind(project);
        let rows: Vec<StorageRow> = self
            .timed("reading a storage bound", query.fetch_all())
            .await?;
        Ok(rows.into_iter().next().unwrap_or(StorageRow {
            project_id: project,
            ..StorageRow::default()
        }))
    }

    /// Writes a new version of `row`; the processor's next retention run applies it.
    pub async fn put_storage_bound(&self, row: &StorageRow) -> Result<(), ApiError> {
        let sql = "INSERT INTO project_storage \
                   (project_id, retention_days, max_rows, changed_at, version) \
                   SELECT ?, ?, ?, toDateTime(?), ?";
        let query = self
            .client
            .query(sql)
            .bind(row.project_id)
            .bind(row.retention_days)
            .bind(row.max_rows)
            .bind(now_secs())
            .bind(self.next_version());
        self.timed("writing a storage bound", query.execute()).await
    }
}
