//! `palisade-ingest`: the composition root. Parses the config, sets up logging and the
//! Prometheus recorder, binds the listeners, creates the Kafka producer and runs until
//! SIGINT/SIGTERM.

use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use ingest::{publish::Publisher, Config, Listeners};
use tokio_util::sync::CancellationToken;

/// mimalloc instead of glibc's allocator: a one-report request allocates and frees a few dozen
/// blocks (the body, the report's strings, the message, hyper's and librdkafka's buffers), and
/// glibc's malloc and free were about 12,000 of its ~80,000 instructions (callgrind,
/// benches/README.md "Ingest against the Kafka floor").
#[global_allocator]
static ALLOCATOR: ingest::Allocator = ingest::Allocator;

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    if let Err(error) = config.validate() {
        // Exits 2 with `error: <flag> must be ...` and the usage line, like clap's own refusals.
        Config::command()
            .error(clap::error::ErrorKind::ValueValidation, error)
            .exit();
    }
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt().with_env_filter(filter);
    if config.log_json {
        logs.json().init()
    } else {
        logs.init()
    }
    match start(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "ingest failed");
            ExitCode::FAILURE
        }
    }
}

async fn start(config: Config) -> anyhow::Result<()> {
    // Histograms (all in seconds) as Prometheus buckets, so percentiles can be aggregated across
    // instances with `histogram_quantile`.
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets(ingest::metrics::DURATION_BUCKETS_SECONDS)?
        .install_recorder()?;
    let public = tokio::net::TcpListener::bind(config.public_addr).await?;
    let admin = tokio::net::TcpListener::bind(config.admin_addr).await?;
    let publisher = Publisher::new(&config.kafka)?;
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    ingest::run(
        config,
        Listeners { public, admin },
        publisher,
        metrics,
        shutdown,
    )
    .await?;
    Ok(())
}

/// Cancels `token` on SIGINT or SIGTERM.
async fn cancel_on_signal(token: CancellationToken) {
    ingest::run::stop_signal().await;
    token.cancel();
}
