//! Wiring: validates the config, loads the tokens, serves until `shutdown`, then drains. Also
//! the `token create` bootstrap.

use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::alerts;
use crate::app::App;
use crate::auth::{self, TokenHash};
use crate::config::{Config, InvalidConfig};
use crate::error::ApiError;
use crate::server::{self, Settings};

/// Why the API could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] InvalidConfig),
    #[error("cannot create the token")]
    Token(#[source] ApiError),
    #[error("projects-file needs --projects-file-out")]
    NoProjectsFileOut,
    #[error("cannot render the projects file")]
    ProjectsFile(#[source] ApiError),
}

/// Serves `listener` until `shutdown` is cancelled, then drains in-flight requests (bounded by
/// `--drain-timeout-ms`). ClickHouse being down at start is not fatal: only admin tokens work
/// until the first successful token reload.
pub async fn run(
    config: Config,
    listener: TcpListener,
    prometheus: Option<PrometheusHandle>,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    config.validate()?;
    let settings = Settings {
        max_connections: config.server.max_connections,
        header_read_timeout: Duration::from_millis(config.server.header_read_timeout_ms),
        idle_timeout: Duration::from_millis(config.server.idle_timeout_ms),
        drain_timeout: Duration::from_millis(config.server.drain_timeout_ms),
    };
    let (deliveries, queue) = alerts::webhook::queue(config.alerts.webhook_queue);
    let app = Arc::new(App::new(config, prometheus));
    if let Err(error) = app.reload_tokens().await {
        tracing::warn!(error = %error, "cannot load project tokens yet, retrying in the background");
    }
    let refresh = tokio::spawn(Arc::clone(&app).refresh_tokens(shutdown.clone()));
    // alerts: the evaluator (when --alert-interval-secs > 0) and the webhook sender.
    let evaluator = (app.config.alerts.alert_interval_secs > 0).then(|| {
        tokio::spawn(alerts::rules::run(
            Arc::clone(&app),
            deliveries,
            shutdown.clone(),
        ))
    });
    let sender = tokio::spawn(alerts::webhook::deliver(
        Arc::clone(&app),
        queue,
        shutdown.clone(),
    ));
    // Key management: the projects file for ingest, rendered now and on an interval.
    let projects_file = tokio::spawn(crate::keys::keep_projects_file(
        Arc::clone(&app),
        shutdown.clone(),
    ));
    tracing::info!(addr = ?listener.local_addr().ok(), "palisade-api serving");
    server::serve(listener, app, settings, shutdown).await;
    let _ = refresh.await;
    if let Some(evaluator) = evaluator {
        let _ = evaluator.await;
    }
    let _ = sender.await;
    let _ = projects_file.await;
    tracing::info!("palisade-api stopped");
    Ok(())
}

/// `palisade-api token create --project N`: stores the hash of a new project token and returns
/// the token (printed once by the caller).
pub async fn create_token(config: &Config, project: u64) -> Result<String, RunError> {
    config.validate()?;
    let store = config.clickhouse.store();
    let token = auth::generate_token().map_err(RunError::Token)?;
    store
        .insert_token(TokenHash::of(&token), project)
        .await
        .map_err(RunError::Token)?;
    store
        .audit(project, "cli", "create_token", 0, "")
        .await
        .map_err(RunError::Token)?;
    Ok(token)
}

/// `palisade-api projects-file [--once]`: renders ingest's projects file from ClickHouse and
/// keeps it current (every `--projects-file-refresh-secs`) until `shutdown`, serving nothing.
/// With `once`, renders one time, even with no project yet, and fails if it cannot.
pub async fn projects_file(
    config: Config,
    once: bool,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    config.validate()?;
    if config.projects.projects_file_out.is_none() {
        return Err(RunError::NoProjectsFileOut);
    }
    let app = Arc::new(App::new(config, None));
    if once {
        let outcome = crate::keys::sync_projects_file(&app, false)
            .await
            .map_err(RunError::ProjectsFile)?;
        tracing::info!(outcome, "projects file rendered");
        return Ok(());
    }
    crate::keys::keep_projects_file(app, shutdown).await;
    Ok(())
}
