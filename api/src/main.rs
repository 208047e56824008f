//! `palisade-api`: the composition root. Parses the config, sets up logging and the Prometheus
//! recorder, then serves until SIGINT/SIGTERM, or runs `token create` or `projects-file`.

use std::process::ExitCode;

use api::config::{Command, TokenCommand};
use api::Config;
use clap::Parser;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if config.log_json {
        logs.json().init()
    } else {
        logs.init()
    }
    match start(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "palisade-api failed");
            ExitCode::FAILURE
        }
    }
}

async fn start(config: Config) -> anyhow::Result<()> {
    if let Some(Command::Token(TokenCommand::Create { project })) = config.command {
        let token = api::create_token(&config, project).await?;
        println!("{token}");
        return Ok(());
    }
    if let Some(Command::ProjectsFile { once }) = config.command {
        let shutdown = CancellationToken::new();
        tokio::spawn(cancel_on_signal(shutdown.clone()));
        api::projects_file(config, once, shutdown).await?;
        return Ok(());
    }
    let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets(api::metrics::DURATION_BUCKETS_SECONDS)?
        .install_recorder()?;
    let listener = tokio::net::TcpListener::bind(config.server.addr).await?;
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    api::run(config, listener, Some(prometheus), shutdown).await?;
    Ok(())
}

/// Cancels `token` on SIGINT or SIGTERM.
async fn cancel_on_signal(token: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { _ = ctrl_c => {}, () = term => {} }
    token.cancel();
}
