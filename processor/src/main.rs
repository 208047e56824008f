//! `palisade-processor`: the composition root. `run` (default) consumes reports into ClickHouse
//! until SIGTERM/SIGINT: this file builds the metrics recorder, the admin listener and the
//! signal handler, and `processor::root` (the loop's half of the composition root) builds the
//! Kafka consumer, the ClickHouse writer, the dead-letter producer and the retention job and
//! hands them to the loop; `decode` prints Kafka payloads read from kcat as JSON lines; `migrate` applies the ClickHouse migrations and exits; `recent` prints
//! a project's recent violations and exits; `replay-dead-letters` replays the dead-letter topic
//! and exits.

use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use processor::{admin::Admin, run::Status, Command, Config};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::fmt::writer::BoxMakeWriter;

/// mimalloc instead of glibc's allocator: the processor allocates and frees a few dozen strings
/// per report (decoded messages, rows), and glibc's malloc and free were 40% of its
/// instructions with 1,000,000 dedup keys (callgrind, benches/README.md issue 13).
#[global_allocator]
static ALLOCATOR: processor::Allocator = processor::Allocator;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    // Refused before anything starts, naming the flag (README: configuration).
    if let Err(error) = config.validate() {
        eprintln!("error: {error}");
        std::process::exit(2);
    }
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // `recent`, `replay-dead-letters` and `decode` print their answer on stdout, so their logs
    // go to stderr.
    let writer = if matches!(
        config.command(),
        Command::Recent(_) | Command::ReplayDeadLetters(_) | Command::Decode(_)
    ) {
        BoxMakeWriter::new(std::io::stderr)
    } else {
        BoxMakeWriter::new(std::io::stdout)
    };
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    if config.log_json {
        logs.json().init();
    } else {
        logs.init();
    }
    let client = config.clickhouse_client();
    match config.command() {
        Command::Run => {}
        Command::Decode(args) => std::process::exit(processor::kcat::run_stdio(&args)),
        Command::Migrate => {
            processor::migrate::migrate_to(
                &client,
                &config.clickhouse_database,
                &config.topology(),
            )
            .await?;
            return Ok(());
        }
        Command::Recent(args) => {
            let text = processor::recent::recent(
                &client,
                &config.clickhouse_url,
                &config.clickhouse_database,
                &args,
                processor::recent::now_unix(),
                config.clickhouse_timeout,
            )
            .await?;
            print!("{text}");
            return Ok(());
        }
        Command::ReplayDeadLetters(args) => {
            let summary = processor::replay::replay(&config, &args).await?;
            print!("{summary}");
            return Ok(());
        }
    }
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .context("install the metrics recorder")?;
    let shutdown = CancellationToken::new();
    let status = Arc::new(Status::default());
    let listener = tokio::net::TcpListener::bind(config.admin_addr)
        .await
        .with_context(|| format!("bind the admin listener {}", config.admin_addr))?;
    let writer = processor::write::Writer::new(&client, config.writer())?;
    let admin = Admin::new(metrics, status.clone(), writer, config.admin_settings());
    let admin_task = tokio::spawn(admin.serve(listener, shutdown.clone()));
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    let result = processor::run(config, status, shutdown.clone()).await;
    shutdown.cancel();
    let _ = admin_task.await;
    result.context("processor failed")
}

/// Cancel `shutdown` on SIGTERM or SIGINT.
async fn cancel_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        },
        Err(error) => {
            tracing::error!(%error, "cannot listen for SIGTERM; only SIGINT stops the processor");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    tracing::info!("shutdown signal received");
    shutdown.cancel();
}
