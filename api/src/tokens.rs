//! Project API tokens over HTTP: create (admin; the token is shown once), list (ids only),
//! revoke. Every change is audited and reloads this instance's token set at once.

use http::StatusCode;

use crate::app::{Answer, App, Call};
use crate::auth::{self, TokenHash};
use crate::error::ApiError;
use crate::metrics;
use crate::params::rfc3339;
use crate::routes::TOKEN_ID_LEN;

/// `POST /v1/projects/{id}/tokens` (admin): a new project token, shown once.
pub async fn create(app: &App, call: &Call) -> Answer {
    let project = call.params.project()?;
    let token = auth::generate_token()?;
    app.store
        .insert_token(TokenHash::of(&token), project)
        .await?;
    app.store
        .audit(project, &call.principal.actor(), "create_token", 0, "")
        .await?;
    metrics::change("create_token");
    // Seen at once by this instance; other instances within `token_refresh_secs`.
    if let Err(error) = app.reload_tokens().await {
        tracing::warn!(error = %error, "token reload after create failed");
    }
    Ok((
        StatusCode::CREATED,
        serde_json::json!({
            "token": token,
            "token_id": token_id(&TokenHash::of(&token).to_hex()),
            "project_id": project,
            "kind": "project"
        }),
    ))
}

/// `GET /v1/projects/{id}/tokens`: the project's tokens (ids only), newest first.
pub async fn list(app: &App, call: &Call) -> Answer {
    let project = call.params.project()?;
    let rows = app
        .store
        .project_token_rows(project, app.config.server.max_tokens)
        .await?;
    let tokens: Vec<serde_json::Value> = rows
        .iter()
        .map(|row| {
            serde_json::json!({
                "token_id": token_id(&row.token_hash),
                "created_at": rfc3339(row.created_at),
                "revoked": row.revoked != 0,
                "changed_at": rfc3339(row.changed_at),
            })
        })
        .collect();
    Ok((StatusCode::OK, serde_json::json!({ "tokens": tokens })))
}

/// `DELETE /v1/projects/{id}/tokens/{token_id}`: revokes a token of the project (seen at
/// once by this instance, by others within `token_refresh_secs`).
pub async fn revoke(app: &App, call: &Call) -> Answer {
    let project = call.params.project()?;
    let wanted = call.params.token_id()?;
    let rows = app
        .store
        .project_token_rows(project, app.config.server.max_tokens)
        .await?;
    let row = rows
        .iter()
        .find(|row| token_id(&row.token_hash) == wanted)
        .ok_or_else(|| ApiError::TokenNotFound {
            token_id: wanted.to_owned(),
        })?;
    app.store.revoke_token(row, project).await?;
    app.store
        .audit(project, &call.principal.actor(), "revoke_token", 0, wanted)
        .await?;
    metrics::change("revoke_token");
    if let Err(error) = app.reload_tokens().await {
        tracing::warn!(error = %error, "token reload after revoke failed");
    }
    Ok((
        StatusCode::OK,
        serde_json::json!({ "token_id": wanted, "revoked": true }),
    ))
}

/// The public id of a token: the first hex digits of its SHA-256.
fn token_id(hash_hex: &str) -> String {
    hash_hex.chars().take(TOKEN_ID_LEN).collect()
}
