//! The composition root of the consumer: builds the real parts from the [`Config`] (the Kafka
//! group consumer, the ClickHouse writer, the dead-letter producer, the pipeline), starts the
//! retention job beside the loop, and runs [`crate::run::run`] with them. `main.rs` calls it for
//! `palisade-processor run`; the in-process integration tests (`processor/tests`, `e2e`) call
//! it too, so they compose the processor exactly as the binary does. Nothing else in the crate
//! names a concrete source, sink or dead-letter producer for the loop.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::consume::Consumer;
use crate::deadletter::DeadLetters;
use crate::enrich::{Enricher, Geo};
use crate::migrate;
use crate::pipeline::Pipeline;
use crate::retention;
use crate::run::{self, Deps, RunError, Status};
use crate::write::Writer;

/// Consume until `shutdown` is cancelled, then write and commit the last batch.
///
/// The loop runs on its own thread with a current-thread runtime: it is sequential by design
/// (one batch in flight), this keeps it off the caller's runtime (ingest's, in the end-to-end
/// tests), and its futures need not be `Send` (rust-lang/rust#102211 makes some of the
/// ClickHouse client's futures fail that check when spawned).
pub async fn run(
    config: Config,
    status: Arc<Status>,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let (done, result) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("palisade-processor".to_owned())
        .spawn(move || {
            let result = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => tokio::task::LocalSet::new()
                    .block_on(&runtime, compose_and_run(config, status, shutdown)),
                Err(error) => Err(RunError::Runtime(error)),
            };
            let _ = done.send(result);
        })
        .map_err(RunError::Runtime)?;
    result.await.unwrap_or(Err(RunError::Panicked))
}

async fn compose_and_run(
    config: Config,
    status: Arc<Status>,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    config.validate()?;
    let client = config.clickhouse_client();
    if config.migrate_on_start {
        migrate::migrate_to(&client, &config.clickhouse_database, &config.topology()).await?;
    }
    let writer = Writer::new(&client, config.writer())?;
    let enricher = Enricher::new(
        config.ua_cache_size,
        config.url_cache_size,
        Geo::open(config.geoip_db.as_deref())?,
    );
    let pipeline = Pipeline::new(config.dedup(), config.batch_limits(), enricher);
    let letters = DeadLetters::new(
        config.kafka_client_config(),
        &config.kafka_brokers,
        &config.dead_letter_topic,
        &config.kafka_topic,
        config.dead_letter_timeout,
        config.dead_letter_max_bytes,
    )?;
    let source = Consumer::subscribe(&config)?;

    let retention_stop = shutdown.child_token();
    let retention_job = tokio::task::spawn_local(retention::run(
        writer.clone(),
        config.retention(),
        retention_stop.clone(),
    ));
    tracing::info!(
        topic = config.kafka_topic,
        group = config.kafka_group,
        "processor started"
    );
    let deps = Deps {
        source,
        sink: writer,
        letters,
        pipeline,
        status,
    };
    let result = run::run(deps, config.loop_config(), shutdown).await;
    retention_stop.cancel();
    if tokio::time::timeout(config.shutdown_timeout, retention_job)
        .await
        .is_err()
    {
        tracing::warn!("retention job did not stop in time");
    }
    tracing::info!("processor stopped");
    result
}
