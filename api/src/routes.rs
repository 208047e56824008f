//! The route table: every endpoint once, as (method, path template, [`RouteId`]). The router
//! matches requests against this table only, and `api/openapi.json` is tested against it
//! (`tests/openapi.rs`), so the implemented routes and the documented ones are the same set.

use crate::error::ApiError;
use crate::params::parse_fingerprint;

/// Length of a token id: the first hex digits of the token's SHA-256 (64 bits; shown in
/// listings, never enough to authenticate).
pub const TOKEN_ID_LEN: usize = 16;

/// Which endpoint a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteId {
    Health,
    // The web UI (crate::ui): no token.
    UiRoot,
    UiPage,
    UiAsset,
    Metrics,
    CreateToken,
    ListTokens,
    RevokeToken,
    ListViolations,
    GetViolation,
    DeleteViolation,
    Mute,
    Unmute,
    GetResolution,
    ApplyResolution,
    WithdrawResolution,
    ListResolutions,
    ProposedPolicy,
    // alerts
    GetAlertSettings,
    PutAlertSettings,
    ListAlerts,
    ListDeliveries,
    // --- key management (control plane) ---
    CreateProject,
    ListProjects,
    GetProject,
    UpdateProject,
    ListKeys,
    CreateKey,
    RotateKey,
    DisableKey,
    EnableKey,
    RevokeKey,
    RotateToken,
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No token needed.
    Public,
    /// An admin token.
    Admin,
    /// An admin token or the token of the project in the path.
    Project,
}

impl RouteId {
    /// Stable metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Health => "health",
            Self::UiRoot => "ui_root",
            Self::UiPage => "ui_page",
            Self::UiAsset => "ui_asset",
            Self::Metrics => "metrics",
            Self::CreateToken => "create_token",
            Self::ListTokens => "list_tokens",
            Self::RevokeToken => "revoke_token",
            Self::ListViolations => "list_violations",
            Self::GetViolation => "get_violation",
            Self::DeleteViolation => "delete_violation",
            Self::Mute => "mute",
            Self::Unmute => "unmute",
            Self::GetResolution => "get_resolution",
            Self::ApplyResolution => "apply_resolution",
            Self::WithdrawResolution => "withdraw_resolution",
            Self::ListResolutions => "list_resolutions",
            Self::ProposedPolicy => "proposed_policy",
            Self::GetAlertSettings => "get_alert_settings",
            Self::PutAlertSettings => "put_alert_settings",
            Self::ListAlerts => "list_alerts",
            Self::ListDeliveries => "list_deliveries",
            Self::CreateProject => "create_project",
            Self::ListProjects => "list_projects",
            Self::GetProject => "get_project",
            Self::UpdateProject => "update_project",
            Self::ListKeys => "list_keys",
            Self::CreateKey => "create_key",
            Self::RotateKey => "rotate_key",
            Self::DisableKey => "disable_key",
            Self::EnableKey => "enable_key",
            Self::RevokeKey => "revoke_key",
            Self::RotateToken => "rotate_token",
        }
    }

    pub fn access(self) -> Access {
        match self {
            Self::UiRoot | Self::UiPage | Self::UiAsset => Access::Public,
            Self::Health => Access::Public,
            Self::Metrics | Self::CreateToken => Access::Admin,
            // Key management: changes need an admin token; a project token reads its own.
            Self::CreateProject
            | Self::ListProjects
            | Self::UpdateProject
            | Self::CreateKey
            | Self::RotateKey
            | Self::DisableKey
            | Self::EnableKey
            | Self::RevokeKey
            | Self::RotateToken => Access::Admin,
            _ => Access::Project,
        }
    }
}

const VIOLATION: &str = "/v1/projects/{id}/violations/{fingerprint}";

/// Every route: method, path template (`{id}`: project id, decimal; `{fingerprint}`: 16 hex
/// digits; `{token_id}`: the first 16 hex digits of a token's SHA-256), endpoint.
pub const ROUTES: &[(&str, &str, RouteId)] = &[
    ("GET", "/healthz", RouteId::Health),
    // The web UI: `/` redirects to the page, `{asset}` is a file name of `crate::ui::ASSETS`.
    ("GET", "/", RouteId::UiRoot),
    ("GET", "/ui/", RouteId::UiPage),
    ("GET", "/ui/{asset}", RouteId::UiAsset),
    ("GET", "/metrics", RouteId::Metrics),
    ("POST", "/v1/projects/{id}/tokens", RouteId::CreateToken),
    ("GET", "/v1/projects/{id}/tokens", RouteId::ListTokens),
    (
        "DELETE",
        "/v1/projects/{id}/tokens/{token_id}",
        RouteId::RevokeToken,
    ),
    (
        "GET",
        "/v1/projects/{id}/violations",
        RouteId::ListViolations,
    ),
    ("GET", VIOLATION, RouteId::GetViolation),
    ("DELETE", VIOLATION, RouteId::DeleteViolation),
    (
        "POST",
        "/v1/projects/{id}/violations/{fingerprint}/mute",
        RouteId::Mute,
    ),
    (
        "DELETE",
        "/v1/projects/{id}/violations/{fingerprint}/mute",
        RouteId::Unmute,
    ),
    (
        "GET",
        "/v1/projects/{id}/violations/{fingerprint}/resolution",
        RouteId::GetResolution,
    ),
    (
        "POST",
        "/v1/projects/{id}/violations/{fingerprint}/resolution/apply",
        RouteId::ApplyResolution,
    ),
    (
        "DELETE",
        "/v1/projects/{id}/violations/{fingerprint}/resolution",
        RouteId::WithdrawResolution,
    ),
    (
        "GET",
        "/v1/projects/{id}/resolutions",
        RouteId::ListResolutions,
    ),
    (
        "GET",
        "/v1/projects/{id}/policy/proposed",
        RouteId::ProposedPolicy,
    ),
    // alerts
    (
        "GET",
        "/v1/projects/{id}/alerts/settings",
        RouteId::GetAlertSettings,
    ),
    (
        "PUT",
        "/v1/projects/{id}/alerts/settings",
        RouteId::PutAlertSettings,
    ),
    ("GET", "/v1/projects/{id}/alerts", RouteId::ListAlerts),
    (
        "GET",
        "/v1/projects/{id}/alerts/deliveries",
        RouteId::ListDeliveries,
    ),
    // --- key management (control plane) ---
    ("POST", "/v1/projects", RouteId::CreateProject),
    ("GET", "/v1/projects", RouteId::ListProjects),
    ("GET", "/v1/projects/{id}", RouteId::GetProject),
    ("PATCH", "/v1/projects/{id}", RouteId::UpdateProject),
    ("GET", "/v1/projects/{id}/keys", RouteId::ListKeys),
    ("POST", "/v1/projects/{id}/keys", RouteId::CreateKey),
    ("DELETE", KEY, RouteId::RevokeKey),
    (
        "POST",
        "/v1/projects/{id}/keys/{public_key}/rotate",
        RouteId::RotateKey,
    ),
    (
        "POST",
        "/v1/projects/{id}/keys/{public_key}/disable",
        RouteId::DisableKey,
    ),
    (
        "POST",
        "/v1/projects/{id}/keys/{public_key}/enable",
        RouteId::EnableKey,
    ),
    (
        "POST",
        "/v1/projects/{id}/tokens/{token_id}/rotate",
        RouteId::RotateToken,
    ),
];

const KEY: &str = "/v1/projects/{id}/keys/{public_key}";

/// The parameters of a matched path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PathParams {
    /// A UI file name (one of `crate::ui::ASSETS`).
    pub asset: Option<&'static str>,
    pub project: Option<u64>,
    pub fingerprint: Option<u64>,
    pub token_id: Option<String>,
    pub public_key: Option<String>,
}

impl PathParams {
    /// The project of a project route (always present on routes with `{id}`).
    pub fn project(&self) -> Result<u64, ApiError> {
        self.project.ok_or(ApiError::NotFound)
    }

    pub fn fingerprint(&self) -> Result<u64, ApiError> {
        self.fingerprint.ok_or(ApiError::NotFound)
    }

    pub fn token_id(&self) -> Result<&str, ApiError> {
        self.token_id.as_deref().ok_or(ApiError::NotFound)
    }

    pub fn public_key(&self) -> Result<&str, ApiError> {
        self.public_key.as_deref().ok_or(ApiError::NotFound)
    }
}

/// The route of `method` and `path`: 404 when no template matches the path, 405 when one does
/// but not with this method, 400 when a path parameter is malformed.
pub fn resolve(method: &str, path: &str) -> Result<(RouteId, PathParams), ApiError> {
    let mut path_matched = false;
    for (route_method, template, id) in ROUTES {
        let Some(params) = match_template(template, path)? else {
            continue;
        };
        if *route_method == method {
            return Ok((*id, params));
        }
        path_matched = true;
    }
    Err(if path_matched {
        ApiError::MethodNotAllowed
    } else {
        ApiError::NotFound
    })
}

fn match_template(template: &str, path: &str) -> Result<Option<PathParams>, ApiError> {
    let mut params = PathParams::default();
    let mut wanted = template.split('/');
    let mut given = path.split('/');
    loop {
        match (wanted.next(), given.next()) {
            (None, None) => return Ok(Some(params)),
            (Some("{asset}"), Some(segment)) => match crate::ui::asset(segment) {
                Some(asset) => params.asset = Some(asset.name),
                None => return Ok(None), // an unknown file: 404
            },
            (Some("{id}"), Some(segment)) => match segment.parse::<u64>() {
                Ok(id) if !segment.starts_with('+') => params.project = Some(id),
                _ => return Ok(None), // not a project path: 404, like any other unknown path
            },
            (Some("{fingerprint}"), Some(segment)) => {
                params.fingerprint = Some(parse_fingerprint(segment)?);
            }
            (Some("{token_id}"), Some(segment)) => {
                if segment.len() != TOKEN_ID_LEN
                    || !segment
                        .bytes()
                        .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
                {
                    return Err(ApiError::InvalidParameter {
                        name: "token_id",
                        reason: "expected 16 lowercase hex digits".to_owned(),
                    });
                }
                params.token_id = Some(segment.to_owned());
            }
            (Some("{public_key}"), Some(segment)) => {
                if !crate::projects_file::valid_public_key(segment) {
                    return Err(ApiError::InvalidParameter {
                        name: "public_key",
                        reason: "expected 1-64 ASCII letters, digits, '-' or '_'".to_owned(),
                    });
                }
                params.public_key = Some(segment.to_owned());
            }
            (Some(literal), Some(segment)) if literal == segment => {}
            _ => return Ok(None),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_with_their_parameters() {
        let (id, params) = resolve("GET", "/v1/projects/7/violations").unwrap();
        assert_eq!(id, RouteId::ListViolations);
        assert_eq!(params.project, Some(7));
        let (id, params) =
            resolve("POST", "/v1/projects/7/violations/00000000000000ff/mute").unwrap();
        assert_eq!(id, RouteId::Mute);
        assert_eq!(params.fingerprint, Some(255));
        let (id, _) = resolve("DELETE", "/v1/projects/7/violations/00000000000000ff").unwrap();
        assert_eq!(id, RouteId::DeleteViolation);
    }

    #[test]
    fn unknown_paths_methods_and_bad_parameters() {
        assert!(matches!(
            resolve("GET", "/ui/nope.js"),
            Err(ApiError::NotFound)
        ));
        assert!(matches!(resolve("GET", "/ui"), Err(ApiError::NotFound)));
        assert!(matches!(
            resolve("GET", "/v1/projects/7/nothing"),
            Err(ApiError::NotFound)
        ));
        assert!(matches!(
            resolve("GET", "/v1/projects/x/violations"),
            Err(ApiError::NotFound)
        ));
        assert!(matches!(
            resolve("PUT", "/v1/projects/7/violations"),
            Err(ApiError::MethodNotAllowed)
        ));
        assert!(matches!(
            resolve("GET", "/v1/projects/7/violations/xyz"),
            Err(ApiError::InvalidParameter { .. })
        ));
        assert!(matches!(
            resolve("GET", "/v1/projects/7/violations/"),
            Err(ApiError::InvalidParameter { .. })
        ));
    }

    #[test]
    fn every_route_is_reachable_and_labelled_once() {
        let mut labels = std::collections::BTreeSet::new();
        for (method, template, id) in ROUTES {
            let path = template
                .replace("{asset}", "app.js")
                .replace("{id}", "1")
                .replace("{fingerprint}", "0000000000000001")
                .replace("{token_id}", "00000000000000aa")
                .replace("{public_key}", "demo-key");
            assert_eq!(
                resolve(method, &path).unwrap().0,
                *id,
                "{method} {template}"
            );
            assert!(labels.insert(id.label()), "duplicate label {}", id.label());
        }
    }
}
