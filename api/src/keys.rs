//! The control plane: projects, their public keys (the `sentry_key`s ingest accepts) and API
//! token rotation. Every change is stored in ClickHouse (`api_projects`, `api_keys`, migration
//! 007), audited, and then the complete projects file is rendered and written atomically to
//! `--projects-file-out` (when set), which ingest reloads by itself within seconds.
//!
//! Changes need an admin token; a project token may read its own project and keys.
//!
//! A project's storage bound (`storage`: `retention_days`, `max_rows`) is stored in
//! `project_storage` (migration 008) and enforced by the processor's retention job on its next
//! run (see `schemas/sql/README.md`, "Retention"); it is not part of ingest's projects file.

use http::StatusCode;
use serde::Deserialize;

use crate::app::{Answer, App, Call};
use crate::auth::{self, TokenHash};
use crate::error::ApiError;
use crate::metrics;
use crate::params::rfc3339;
use crate::projects_file::{self, Written, CLIENT_IP_POLICIES};
use crate::routes::TOKEN_ID_LEN;
use crate::store::{now_secs, KeyRow, ProjectRow, StorageRow};

/// Random bytes of a generated public key (shown as 32 hex digits).
const PUBLIC_KEY_RANDOM_BYTES: usize = 16;

/// `POST /v1/projects` and `PATCH /v1/projects/{id}`: every field optional (a new project takes
/// the defaults, an update keeps what is not given).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProjectBody {
    /// The new project's id (create only; default: the highest id + 1).
    id: Option<u64>,
    name: Option<String>,
    quota: Option<QuotaBody>,
    allowed_hosts: Option<Vec<String>>,
    privacy: Option<PrivacyBody>,
    filters: Option<FiltersBody>,
    storage: Option<StorageBody>,
    /// The first public key (create only; default: 32 random hex digits).
    public_key: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QuotaBody {
    per_second: u32,
    burst: u32,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct PrivacyBody {
    strip_query: Option<bool>,
    strip_fragment: Option<bool>,
    drop_referrer: Option<bool>,
    client_ip: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct FiltersBody {
    default_noise: Option<bool>,
}

/// How much a project keeps; 0 = the processor's default, a missing field is kept.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct StorageBody {
    /// Days its rows are kept (longer than the processor's `--retention-days` has no effect).
    retention_days: Option<u32>,
    /// Most `reports` rows kept; the oldest beyond are deleted.
    max_rows: Option<u64>,
}

/// `POST .../keys` and `POST .../keys/{public_key}/rotate`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeyBody {
    /// The new key (default: 32 random hex digits).
    public_key: Option<String>,
    /// Rotate only: what the old key becomes (`disabled` by default: ingest answers 403 and
    /// browsers retry; `revoked`: 410, browsers drop the endpoint; `active`: both work).
    old_key: Option<String>,
}

fn invalid(name: &'static str, reason: impl Into<String>) -> ApiError {
    ApiError::InvalidParameter {
        name,
        reason: reason.into(),
    }
}

/// Applies `body` to `row`, checking every value the way ingest would.
fn apply_body(app: &App, row: &mut ProjectRow, body: &ProjectBody) -> Result<(), ApiError> {
    let limits = &app.config.projects;
    if let Some(name) = &body.name {
        let name = name.trim();
        if name.is_empty() || name.len() > limits.max_project_name_bytes {
            return Err(invalid(
                "name",
                format!("1 to {} bytes", limits.max_project_name_bytes),
            ));
        }
        if name.chars().any(char::is_control) {
            return Err(invalid("name", "no control characters"));
        }
        name.clone_into(&mut row.name);
    }
    if let Some(quota) = &body.quota {
        if quota.per_second == 0 || quota.burst == 0 {
            return Err(invalid("quota", "per_second and burst must be at least 1"));
        }
        row.quota_per_second = quota.per_second;
        row.quota_burst = quota.burst;
    }
    if let Some(hosts) = &body.allowed_hosts {
        if hosts.len() > limits.max_allowed_hosts {
            return Err(invalid(
                "allowed_hosts",
                format!("at most {} patterns", limits.max_allowed_hosts),
            ));
        }
        let mut patterns = Vec::with_capacity(hosts.len());
        for host in hosts {
            let pattern = host.trim().to_ascii_lowercase();
            if !projects_file::valid_host_pattern(&pattern) {
                return Err(invalid(
                    "allowed_hosts",
                    format!("{host:?} is not `example.com` or `*.example.com`"),
                ));
            }
            patterns.push(pattern);
        }
        row.allowed_hosts = patterns.join("\n");
    }
    if let Some(privacy) = &body.privacy {
        let flag = |value: Option<bool>, current: u8| value.map_or(current, u8::from);
        row.strip_query = flag(privacy.strip_query, row.strip_query);
        row.strip_fragment = flag(privacy.strip_fragment, row.strip_fragment);
        row.drop_referrer = flag(privacy.drop_referrer, row.drop_referrer);
        if let Some(policy) = &privacy.client_ip {
            if !CLIENT_IP_POLICIES.contains(&policy.as_str()) {
                return Err(invalid(
                    "privacy.client_ip",
                    "one of truncate, full, drop (hash: use a static projects file with a salt)",
                ));
            }
            policy.clone_into(&mut row.client_ip);
        }
    }
    if let Some(filters) = &body.filters {
        if let Some(noise) = filters.default_noise {
            row.default_noise = u8::from(noise);
        }
    }
    Ok(())
}

/// Applies `body.storage` to `row`, checking the ranges (0 always allowed: the default).
fn apply_storage(app: &App, row: &mut StorageRow, body: &ProjectBody) -> Result<(), ApiError> {
    let Some(storage) = &body.storage else {
        return Ok(());
    };
    let limits = &app.config.projects;
    if let Some(days) = storage.retention_days {
        if days > limits.max_project_retention_days {
            return Err(invalid(
                "storage.retention_days",
                format!(
                    "0 (the server default) to {} days",
                    limits.max_project_retention_days
                ),
            ));
        }
        row.retention_days = days;
    }
    if let Some(rows) = storage.max_rows {
        if rows > limits.max_project_max_rows {
            return Err(invalid(
                "storage.max_rows",
                format!(
                    "0 (the server default) to {} rows",
                    limits.max_project_max_rows
                ),
            ));
        }
        row.max_rows = rows;
    }
    Ok(())
}

/// A new public key: the one asked for (checked, unused) or a random one.
async fn new_key(app: &App, project: u64, wanted: Option<&str>) -> Result<KeyRow, ApiError> {
    let public_key = match wanted {
        Some(key) => {
            if !projects_file::valid_public_key(key) {
                return Err(invalid(
                    "public_key",
                    "1-64 ASCII letters, digits, '-' or '_'",
                ));
            }
            if app.store.key(key).await?.is_some() {
                return Err(ApiError::KeyExists);
            }
            key.to_owned()
        }
        None => {
            let mut bytes = [0u8; PUBLIC_KEY_RANDOM_BYTES];
            getrandom::fill(&mut bytes).map_err(ApiError::Random)?;
            hex::encode(bytes)
        }
    };
    let live = app
        .store
        .project_keys(project, app.config.projects.max_keys_per_project + 1)
        .await?
        .iter()
        .filter(|k| k.state != "revoked")
        .count();
    if live >= app.config.projects.max_keys_per_project {
        return Err(ApiError::LimitReached {
            what: "keys per project (revoke one first)",
            limit: app.config.projects.max_keys_per_project,
        });
    }
    let now = now_secs();
    let row = KeyRow {
        public_key,
        project_id: project,
        state: "active".to_owned(),
        created_at: now,
        changed_at: now,
    };
    app.store.put_key(&row).await?;
    Ok(row)
}

/// Renders the projects file from ClickHouse and writes it to `--projects-file-out`. With
/// `only_if_projects`, a store without any project leaves the file alone (so starting the API
/// over an existing static file never empties it).
pub async fn sync_projects_file(
    app: &App,
    only_if_projects: bool,
) -> Result<&'static str, ApiError> {
    let Some(path) = app.config.projects.projects_file_out.as_deref() else {
        return Ok("not_configured");
    };
    let _one_writer = app.projects_file_lock.lock().await;
    let limits = &app.config.projects;
    let projects = app.store.projects(limits.max_projects).await?;
    if only_if_projects && projects.is_empty() {
        return Ok("no_projects");
    }
    let keys = app
        .store
        .keys(
            limits
                .max_projects
                .saturating_mul(limits.max_keys_per_project),
        )
        .await?;
    let text = projects_file::render(&projects, &keys);
    let path = path.to_owned();
    let written =
        tokio::task::spawn_blocking(move || projects_file::write_atomically(&path, &text))
            .await
            .map_err(|_| ApiError::ProjectsFile(std::io::Error::other("writer task failed")))?
            .map_err(ApiError::ProjectsFile)?;
    metrics::projects_file_written(written == Written::Replaced);
    Ok(match written {
        Written::Replaced => "written",
        Written::Unchanged => "unchanged",
    })
}

/// Re-renders the projects file every `--projects-file-refresh-secs` (changes made by another
/// API instance, a failed write retried) until `shutdown`.
pub async fn keep_projects_file(
    app: std::sync::Arc<App>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    if app.config.projects.projects_file_out.is_none() {
        return;
    }
    let every = std::time::Duration::from_secs(app.config.projects.projects_file_refresh_secs);
    loop {
        if let Err(error) = sync_projects_file(&app, true).await {
            tracing::warn!(error = %error, "projects file not rendered, retrying");
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}

fn project_json(row: &ProjectRow, storage: &StorageRow, keys: &[KeyRow]) -> serde_json::Value {
    serde_json::json!({
        "id": row.project_id,
        "name": row.name,
        "quota": { "per_second": row.quota_per_second, "burst": row.quota_burst },
        "allowed_hosts": projects_file::host_list(&row.allowed_hosts).collect::<Vec<_>>(),
        "privacy": {
            "strip_query": row.strip_query != 0,
            "strip_fragment": row.strip_fragment != 0,
            "drop_referrer": row.drop_referrer != 0,
            "client_ip": row.client_ip,
        },
        "filters": { "default_noise": row.default_noise != 0 },
        "storage": {
            "retention_days": storage.retention_days,
            "max_rows": storage.max_rows,
        },
        "keys": keys.iter().map(key_json).collect::<Vec<_>>(),
        "created_at": rfc3339(row.created_at),
        "changed_at": rfc3339(row.changed_at),
    })
}

fn key_json(key: &KeyRow) -> serde_json::Value {
    serde_json::json!({
        "public_key": key.public_key,
        "state": key.state,
        "created_at": rfc3339(key.created_at),
        "changed_at": rfc3339(key.changed_at),
    })
}

async fn changed(
    app: &App,
    call: &Call,
    project: u64,
    action: &'static str,
    detail: &str,
) -> Result<&'static str, ApiError> {
    app.store
        .audit(project, &call.principal.actor(), action, 0, detail)
        .await?;
    metrics::change(action);
    sync_projects_file(app, false).await
}

/// `POST /v1/projects` (admin): a project, its first public key and its first API token
/// (shown once).
pub async fn create_project(app: &App, call: &Call) -> Answer {
    let body: ProjectBody = call.json()?;
    let id = match body.id {
        Some(0) => return Err(invalid("id", "project ids start at 1")),
        Some(id) => id,
        None => app.store.max_project_id().await?.saturating_add(1),
    };
    if app.store.project(id).await?.is_some() {
        return Err(ApiError::ProjectExists { project: id });
    }
    let count = app
        .store
        .projects(app.config.projects.max_projects)
        .await?
        .len();
    if count >= app.config.projects.max_projects {
        return Err(ApiError::LimitReached {
            what: "projects",
            limit: app.config.projects.max_projects,
        });
    }
    let defaults = &app.config.projects;
    let now = now_secs();
    let mut row = ProjectRow {
        project_id: id,
        name: format!("project-{id}"),
        quota_per_second: defaults.default_quota_per_second,
        quota_burst: defaults.default_quota_burst,
        allowed_hosts: String::new(),
        strip_query: 1,
        strip_fragment: 1,
        drop_referrer: 0,
        client_ip: "truncate".to_owned(),
        default_noise: 1,
        created_at: now,
        changed_at: now,
    };
    apply_body(app, &mut row, &body)?;
    let mut storage = StorageRow {
        project_id: id,
        ..StorageRow::default()
    };
    apply_storage(app, &mut storage, &body)?;
    if let Some(key) = body.public_key.as_deref() {
        // Checked before anything is written, so a refused key leaves no project behind.
        if !projects_file::valid_public_key(key) {
            return Err(invalid(
                "public_key",
                "1-64 ASCII letters, digits, '-' or '_'",
            ));
        }
        if app.store.key(key).await?.is_some() {
            return Err(ApiError::KeyExists);
        }
    }
    app.store.put_project(&row).await?;
    if body.storage.is_some() {
        app.store.put_storage_bound(&storage).await?;
    }
    let key = new_key(app, id, body.public_key.as_deref()).await?;
    let token = auth::generate_token()?;
    let hash = TokenHash::of(&token);
    app.store.insert_token(hash, id).await?;
    if let Err(error) = app.reload_tokens().await {
        tracing::warn!(error = %error, "token reload after project creation failed");
    }
    let file = changed(app, call, id, "create_project", &key.public_key).await?;
    Ok((
        StatusCode::CREATED,
        serde_json::json!({
            "project": project_json(&row, &storage, std::slice::from_ref(&key)),
            "public_key": key.public_key,
            "token": token,
            "token_id": token_id(&hash),
            "projects_file": file,
        }),
    ))
}

/// `GET /v1/projects` (admin): every project with its keys.
pub async fn list_projects(app: &App, _call: &Call) -> Answer {
    let limits = &app.config.projects;
    let projects = app.store.projects(limits.max_projects).await?;
    let keys = app
        .store
        .keys(
            limits
                .max_projects
                .saturating_mul(limits.max_keys_per_project),
        )
        .await?;
    let storage: std::collections::BTreeMap<u64, StorageRow> = app
        .store
        .storage_bounds(limits.max_projects)
        .await?
        .into_iter()
        .map(|s| (s.project_id, s))
        .collect();
    let list: Vec<serde_json::Value> = projects
        .iter()
        .map(|p| {
            let own: Vec<KeyRow> = keys
                .iter()
                .filter(|k| k.project_id == p.project_id)
                .cloned()
                .collect();
            let bound = storage.get(&p.project_id).copied().unwrap_or(StorageRow {
                project_id: p.project_id,
                ..StorageRow::default()
            });
            project_json(p, &bound, &own)
        })
        .collect();
    Ok((StatusCode::OK, serde_json::json!({ "projects": list })))
}

async fn existing_project(app: &App, project: u64) -> Result<ProjectRow, ApiError> {
    app.store
        .project(project)
        .await?
        .ok_or(ApiError::ProjectNotFound { project })
}

/// `GET /v1/projects/{id}`: the project's settings and keys.
pub async fn get_project(app: &App, call: &Call) -> Answer {
    let project = call.params.project()?;
    let row = existing_project(app, project).await?;
    let storage = app.store.storage_bound(project).await?;
    let keys = app
        .store
        .project_keys(project, app.config.projects.max_keys_per_project * 10)
        .await?;
    Ok((StatusCode::OK, project_json(&row, &storage, &keys)))
}

/// `PATCH /v1/projects/{id}` (admin): changes the given settings.
pub async fn update_project(app: &App, call: &Call) -> Answer {
    let project = call.params.project()?;
    let body: ProjectBody = call.json()?;
    if body.id.is_some() || body.public_key.is_some() {
        return Err(invalid(
            "body",
            "id and public_key are set on creation only (keys: POST .../keys)",
        ));
    }
    let mut row = existing_project(app, project).await?;
    apply_body(app, &mut row, &body)?;
    let mut storage = app.store.storage_bound(project).await?;
    apply_storage(app, &mut storage, &body)?;
    app.store.put_project(&row).await?;
    let mut detail = String::new();
    if body.storage.is_some() {
        app.store.put_storage_bound(&storage).await?;
        detail = format!(
            "storage retention_days={} max_rows={}",
            storage.retention_days, storage.max_rows
        );
    }
    let file = changed(app, call, project, "update_project", &detail).await?;
    let keys = app
        .store
        .project_keys(project, app.config.projects.max_keys_per_project * 10)
        .await?;
    let mut answer = project_json(&row, &storage, &keys);
    answer["projects_file"] = file.into();
    Ok((StatusCode::OK, answer))
}

/// `GET /v1/projects/{id}/keys`: the project's public keys (revoked ones too).
pub async fn list_keys(app: &App, call: &Call) -> Answer {
    let project = call.params.project()?;
    existing_project(app, project).await?;
    let keys = app
        .store
        .project_keys(project, app.config.projects.max_keys_per_project * 10)
        .await?;
    let keys: Vec<serde_json::Value> = keys.iter().map(key_json).collect();
    Ok((StatusCode::OK, serde_json::json!({ "keys": keys })))
}

/// `POST /v1/projects/{id}/keys` (admin): a new active public key.
pub async fn create_key(app: &App, call: &Call) -> Answer {
    let project = call.params.project()?;
    let body: KeyBody = call.json()?;
    if body.old_key.is_some() {
        return Err(invalid("old_key", "only for rotate"));
    }
    existing_project(app, project).await?;
    let key = new_key(app, project, body.public_key.as_deref()).await?;
    let file = changed(app, call, project, "create_key", &key.public_key).await?;
    let mut answer = key_json(&key);
    answer["projects_file"] = file.into();
    Ok((StatusCode::CREATED, answer))
}

/// The key in the path, if it belongs to the project in the path (else 404, whether or not
/// another project has it).
async fn project_key(app: &App, call: &Call) -> Result<(u64, KeyRow), ApiError> {
    let project = call.params.project()?;
    let wanted = call.params.public_key()?;
    match app.store.key(wanted).await? {
        Some(key) if key.project_id == project => Ok((project, key)),
        _ => Err(ApiError::KeyNotFound),
    }
}

async fn set_state(app: &App, call: &Call, mut key: KeyRow, state: &'static str) -> Answer {
    let project = key.project_id;
    if key.state == "revoked" && state != "revoked" {
        return Err(ApiError::KeyRevoked);
    }
    let action = match state {
        "active" => "enable_key",
        "disabled" => "disable_key",
        _ => "revoke_key",
    };
    if key.state != state {
        state.clone_into(&mut key.state);
        app.store.put_key(&key).await?;
    }
    let file = changed(app, call, project, action, &key.public_key).await?;
    let mut answer = key_json(&key);
    answer["projects_file"] = file.into();
    Ok((StatusCode::OK, answer))
}

/// `POST /v1/projects/{id}/keys/{public_key}/disable` (admin): ingest answers 403.
pub async fn disable_key(app: &App, call: &Call) -> Answer {
    let (_, key) = project_key(app, call).await?;
    set_state(app, call, key, "disabled").await
}

/// `POST /v1/projects/{id}/keys/{public_key}/enable` (admin): active again (not once revoked).
pub async fn enable_key(app: &App, call: &Call) -> Answer {
    let (_, key) = project_key(app, call).await?;
    set_state(app, call, key, "active").await
}

/// `DELETE /v1/projects/{id}/keys/{public_key}` (admin): revoked for good; ingest answers 410
/// and browsers drop the endpoint.
pub async fn revoke_key(app: &App, call: &Call) -> Answer {
    let (_, key) = project_key(app, call).await?;
    set_state(app, call, key, "revoked").await
}

/// `POST /v1/projects/{id}/keys/{public_key}/rotate` (admin): a new active key; the old one
/// becomes `old_key` (default `disabled`).
pub async fn rotate_key(app: &App, call: &Call) -> Answer {
    let body: KeyBody = call.json()?;
    let (project, mut old) = project_key(app, call).await?;
    let old_state = body.old_key.as_deref().unwrap_or("disabled");
    if !projects_file::KEY_STATES.contains(&old_state) {
        return Err(invalid("old_key", "one of active, disabled, revoked"));
    }
    if old.state == "revoked" {
        return Err(ApiError::KeyRevoked);
    }
    let new = new_key(app, project, body.public_key.as_deref()).await?;
    if old.state != old_state {
        old_state.clone_into(&mut old.state);
        app.store.put_key(&old).await?;
    }
    let detail = format!("{} -> {}", old.public_key, new.public_key);
    let file = changed(app, call, project, "rotate_key", &detail).await?;
    Ok((
        StatusCode::CREATED,
        serde_json::json!({
            "public_key": new.public_key,
            "key": key_json(&new),
            "old_key": key_json(&old),
            "projects_file": file,
        }),
    ))
}

/// `POST /v1/projects/{id}/tokens/{token_id}/rotate` (admin): a new API token (shown once),
/// then the old one revoked; both seen at once by this instance.
pub async fn rotate_token(app: &App, call: &Call) -> Answer {
    let project = call.params.project()?;
    let wanted = call.params.token_id()?;
    let rows = app
        .store
        .project_token_rows(project, app.config.server.max_tokens)
        .await?;
    let old = rows
        .iter()
        .find(|row| row.token_hash.starts_with(wanted) && row.revoked == 0)
        .ok_or_else(|| ApiError::TokenNotFound {
            token_id: wanted.to_owned(),
        })?;
    let token = auth::generate_token()?;
    let hash = TokenHash::of(&token);
    app.store.insert_token(hash, project).await?;
    app.store.revoke_token(old, project).await?;
    app.store
        .audit(project, &call.principal.actor(), "rotate_token", 0, wanted)
        .await?;
    metrics::change("rotate_token");
    if let Err(error) = app.reload_tokens().await {
        tracing::warn!(error = %error, "token reload after rotation failed");
    }
    Ok((
        StatusCode::CREATED,
        serde_json::json!({
            "token": token,
            "token_id": token_id(&hash),
            "revoked_token_id": wanted,
            "project_id": project,
        }),
    ))
}

fn token_id(hash: &TokenHash) -> String {
    hash.to_hex().chars().take(TOKEN_ID_LEN).collect()
}
