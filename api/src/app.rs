//! The request path: resolve the route -> authenticate -> check the scope -> run the endpoint
//! (in [`crate::violations`] and [`crate::proposals`]) -> answer JSON, counting every answer.
//! Also the token set, reloaded from ClickHouse on an interval and after the API's own changes.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::auth::{self, Principal, TokenSet};
use crate::config::Config;
use crate::error::{json_response, ApiError};
use crate::params::FilterDefaults;
use crate::resolution::Thresholds;
use crate::routes::{self, Access, PathParams, RouteId};
use crate::store::{now_secs, Store};
use crate::{alerts, keys, metrics, proposals, tokens, violations};

/// Shared state of every request.
#[derive(Debug)]
pub struct App {
    pub config: Config,
    pub store: Store,
    /// The web UI's security headers (CSP with the configured reporting).
    ui: crate::ui::UiHeaders,
    tokens: RwLock<Arc<TokenSet>>,
    prometheus: Option<PrometheusHandle>,
    /// One render of the projects file at a time (key management), so an older render never
    /// replaces a newer one.
    pub projects_file_lock: tokio::sync::Mutex<()>,
}

/// One authorised request, as the endpoints see it.
#[derive(Debug)]
pub struct Call {
    pub principal: Principal,
    pub params: PathParams,
    pub query: Option<String>,
    pub body: Bytes,
}

impl Call {
    /// The JSON body, or `T::default()` when the body is empty.
    pub fn json<T: DeserializeOwned + Default>(&self) -> Result<T, ApiError> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(T::default());
        }
        serde_json::from_slice(&self.body).map_err(ApiError::InvalidBody)
    }
}

/// An endpoint's answer: status and JSON.
pub type Answer = Result<(StatusCode, serde_json::Value), ApiError>;

/// Serialises an endpoint's output.
pub fn to_json(value: &impl serde::Serialize) -> Result<serde_json::Value, ApiError> {
    serde_json::to_value(value).map_err(ApiError::Encode)
}

impl App {
    pub fn new(config: Config, prometheus: Option<PrometheusHandle>) -> Self {
        let store = config.clickhouse.store();
        let tokens = TokenSet::new(&config.server.admin_tokens, Vec::new());
        let ui = crate::ui::UiHeaders::new(config.ui.ui_csp_report_uri.as_ref());
        Self {
            config,
            store,
            ui,
            tokens: RwLock::new(Arc::new(tokens)),
            prometheus,
            projects_file_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// Re-reads the project tokens from ClickHouse (admin tokens come from the config).
    pub async fn reload_tokens(&self) -> Result<(), ApiError> {
        let result = self.store.project_tokens().await.and_then(|projects| {
            let limit = self.config.server.max_tokens;
            if projects.len() > limit {
                return Err(ApiError::TooManyTokens {
                    count: projects.len(),
                    limit,
                });
            }
            Ok(TokenSet::new(&self.config.server.admin_tokens, projects))
        });
        match result {
            Ok(set) => {
                metrics::token_reload(true, set.len());
                *self.tokens.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
                Ok(())
            }
            Err(error) => {
                metrics::token_reload(false, 0);
                Err(error)
            }
        }
    }

    /// Reloads the tokens every `token_refresh_secs` until `shutdown`.
    pub async fn refresh_tokens(self: Arc<Self>, shutdown: CancellationToken) {
        let every = Duration::from_secs(self.config.server.token_refresh_secs);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
            if let Err(error) = self.reload_tokens().await {
                tracing::warn!(error = %error, "token reload failed, keeping the previous tokens");
            }
        }
    }

    fn authenticate(&self, request: &Request<Incoming>) -> Result<Principal, ApiError> {
        let token = auth::bearer(request.headers())?;
        let tokens = Arc::clone(&self.tokens.read().unwrap_or_else(|e| e.into_inner()));
        tokens.authenticate(token).ok_or(ApiError::BadToken)
    }

    pub fn defaults(&self) -> FilterDefaults {
        let limits = &self.config.limits;
        FilterDefaults {
            now: now_secs(),
            default_range_secs: u32::try_from(limits.default_range_hours.saturating_mul(3600))
                .unwrap_or(u32::MAX),
            default_limit: limits.default_page_size,
            max_limit: limits.max_page_size,
            max_search_bytes: limits.max_search_bytes,
            max_filter_bytes: limits.max_filter_bytes,
        }
    }

    pub fn thresholds(&self) -> Thresholds {
        Thresholds {
            min_occurrences: self.config.resolution.min_occurrences,
            min_client_networks: self.config.resolution.min_client_networks,
        }
    }

    async fn answer(
        &self,
        request: Request<Incoming>,
    ) -> (&'static str, Result<Response<Full<Bytes>>, ApiError>) {
        let (route, params) = match routes::resolve(request.method().as_str(), request.uri().path())
        {
            Ok(found) => found,
            Err(error) => return ("unknown", Err(error)),
        };
        let label = route.label();
        let principal = match route.access() {
            Access::Public => None,
            access => {
                let principal = match self.authenticate(&request) {
                    Ok(principal) => principal,
                    Err(error) => return (label, Err(error)),
                };
                let allowed = match access {
                    Access::Admin => principal.require_admin(),
                    _ => params.project().and_then(|id| principal.may_access(id)),
                };
                if let Err(error) = allowed {
                    return (label, Err(error));
                }
                Some(principal)
            }
        };
        let Some(principal) = principal else {
            return (label, Ok(self.public(route, &params)));
        };
        let query = request.uri().query().map(str::to_owned);
        let body = match self.read_body(request).await {
            Ok(body) => body,
            Err(error) => return (label, Err(error)),
        };
        let call = Call {
            principal,
            params,
            query,
            body,
        };
        (label, self.dispatch(route, call).await)
    }

    /// The answers of the routes that need no token: health and the web UI.
    fn public(&self, route: RouteId, params: &PathParams) -> Response<Full<Bytes>> {
        match route {
            RouteId::UiRoot => self.ui.redirect(),
            RouteId::UiPage => self.ui.respond(crate::ui::index()),
            RouteId::UiAsset => match params.asset.and_then(crate::ui::asset) {
                Some(asset) => self.ui.respond(asset),
                None => ApiError::NotFound.into_response(),
            },
            _ => json_response(StatusCode::OK, &serde_json::json!({"status": "ok"})),
        }
    }

    async fn dispatch(
        &self,
        route: RouteId,
        call: Call,
    ) -> Result<Response<Full<Bytes>>, ApiError> {
        let (status, body) = match route {
            RouteId::Health => (StatusCode::OK, serde_json::json!({"status": "ok"})),
            RouteId::UiRoot | RouteId::UiPage | RouteId::UiAsset => {
                return Ok(self.public(route, &call.params))
            }
            RouteId::Metrics => return Ok(self.metrics_text()),
            RouteId::CreateToken => tokens::create(self, &call).await?,
            RouteId::ListTokens => tokens::list(self, &call).await?,
            RouteId::RevokeToken => tokens::revoke(self, &call).await?,
            RouteId::ListViolations => violations::list(self, &call).await?,
            RouteId::GetViolation => violations::get(self, &call).await?,
            RouteId::DeleteViolation => violations::delete(self, &call).await?,
            RouteId::Mute => violations::set_muted(self, &call, true).await?,
            RouteId::Unmute => violations::set_muted(self, &call, false).await?,
            RouteId::GetResolution => proposals::resolution(self, &call).await?,
            RouteId::ApplyResolution => proposals::apply(self, &call).await?,
            RouteId::WithdrawResolution => proposals::withdraw(self, &call).await?,
            RouteId::ListResolutions => proposals::list(self, &call).await?,
            RouteId::ProposedPolicy => proposals::proposed_policy(self, &call).await?,
            // alerts
            RouteId::GetAlertSettings => alerts::get_settings(self, &call).await?,
            RouteId::PutAlertSettings => alerts::put_settings(self, &call).await?,
            RouteId::ListAlerts => alerts::list(self, &call).await?,
            RouteId::ListDeliveries => alerts::deliveries(self, &call).await?,
            RouteId::CreateProject => keys::create_project(self, &call).await?,
            RouteId::ListProjects => keys::list_projects(self, &call).await?,
            RouteId::GetProject => keys::get_project(self, &call).await?,
            RouteId::UpdateProject => keys::update_project(self, &call).await?,
            RouteId::ListKeys => keys::list_keys(self, &call).await?,
            RouteId::CreateKey => keys::create_key(self, &call).await?,
            RouteId::RotateKey => keys::rotate_key(self, &call).await?,
            RouteId::DisableKey => keys::disable_key(self, &call).await?,
            RouteId::EnableKey => keys::enable_key(self, &call).await?,
            RouteId::RevokeKey => keys::revoke_key(self, &call).await?,
            RouteId::RotateToken => keys::rotate_token(self, &call).await?,
        };
        Ok(json_response(status, &body))
    }

    async fn read_body(&self, request: Request<Incoming>) -> Result<Bytes, ApiError> {
        let limit = self.config.limits.max_body_bytes;
        let timeout = Duration::from_millis(self.config.server.body_timeout_ms);
        let collected =
            tokio::time::timeout(timeout, Limited::new(request.into_body(), limit).collect())
                .await
                .map_err(|_| ApiError::BodyTimeout)?;
        match collected {
            Ok(body) => Ok(body.to_bytes()),
            Err(error) => match error.downcast::<hyper::Error>() {
                Ok(error) => Err(ApiError::BodyRead(*error)),
                Err(_too_large) => Err(ApiError::BodyTooLarge { limit }),
            },
        }
    }

    fn metrics_text(&self) -> Response<Full<Bytes>> {
        let text = self
            .prometheus
            .as_ref()
            .map(PrometheusHandle::render)
            .unwrap_or_default();
        let mut response = Response::new(Full::new(Bytes::from(text)));
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; version=0.0.4"),
        );
        response
    }
}

impl crate::server::Handler for App {
    async fn handle(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let started = Instant::now();
        let (label, answer) = self.answer(request).await;
        let response = match answer {
            Ok(response) => response,
            Err(error) => {
                metrics::error(error.reason());
                if error.is_server_fault() {
                    tracing::error!(route = label, reason = error.reason(), error = %schemas::error_chain(&error), "request failed");
                } else {
                    tracing::debug!(route = label, reason = error.reason(), "request refused");
                }
                error.into_response()
            }
        };
        metrics::request_answered(label, response.status().as_u16(), started.elapsed());
        response
    }
}
