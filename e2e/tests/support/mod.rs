//! The whole stack for end-to-end tests: tansu and ClickHouse (testbed), ingest in-process
//! (`ingest::run` on `127.0.0.1:0`) and the processor in-process (`processor::run`), plus
//! ClickHouse queries and bounded waits.
#![allow(dead_code, clippy::unwrap_used)]

pub mod children;
pub mod kafka_link;
pub mod ledger;
pub mod load;

use std::sync::Arc;
use std::time::Duration;

use testbed::clickhouse::ClickHouse;
use testbed::kafka::Tansu;
pub use testbed::metrics::handle as metrics_handle;
pub use testbed::wait::wait_for;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const DATABASE: &str = "palisade";
pub const TOPIC: &str = "reports";
pub const DEAD_LETTER_TOPIC: &str = "reports-dead-letter";

/// Kafka, ClickHouse, ingest and the processor, stopped on drop.
pub struct Stack {
    pub kafka: Tansu,
    pub clickhouse: ClickHouse,
    pub client: clickhouse::Client,
    /// `http(s)://127.0.0.1:PORT` of ingest's public listener.
    pub ingest_url: String,
    pub shutdown: CancellationToken,
    /// The projects file ingest reads (reloaded on change).
    pub projects_path: std::path::PathBuf,
    ingest: Option<JoinHandle<Result<(), ingest::RunError>>>,
    processor: Option<JoinHandle<Result<(), processor::RunError>>>,
    _dir: tempfile::TempDir,
}

impl Stack {
    /// `None` when a server is missing outside CI (testbed's rule). `ingest_flags` are extra
    /// ingest flags (TLS, ...); the processor uses a 1-hour window closed by a 1 s idle timeout,
    /// so every report of a test lands in one window per group.
    pub async fn start(projects: &str, ingest_flags: &[&str]) -> Option<Self> {
        let kafka = Tansu::start().await?;
        let clickhouse = ClickHouse::start().await?;
        kafka.create_topic(TOPIC, 2).await.unwrap();
        kafka.create_topic(DEAD_LETTER_TOPIC, 1).await.unwrap();
        let client = clickhouse::Client::default()
            .with_url(clickhouse.http_url())
            .with_validation(false);
        // The tables exist before anything is posted, so polling queries never race the
        // processor's own `--migrate-on-start` (which then finds nothing to do).
        processor::migrate::migrate(&client, DATABASE)
            .await
            .unwrap();
        let shutdown = CancellationToken::new();

        let dir = tempfile::tempdir().unwrap();
        let projects_path = dir.path().join("projects.toml");
        std::fs::write(&projects_path, projects).unwrap();
        let mut flags = vec!["--kafka-topic", TOPIC, "--trust-forwarded-for"];
        flags.extend_from_slice(ingest_flags);
        let config = ingest::Config::for_tests(&projects_path, &kafka.bootstrap(), flags).unwrap();
        let tls = config.tls_cert.is_some();
        let public = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let scheme = if tls { "https" } else { "http" };
        let ingest_url = format!("{scheme}://{}", public.local_addr().unwrap());
        let publisher = ingest::publish::Publisher::new(&config.kafka).unwrap();
        let ingest = tokio::spawn(ingest::run(
            config,
            ingest::Listeners { public, admin },
            publisher,
            metrics_handle(),
            shutdown.clone(),
        ));

        let processor_config = processor_config(&kafka.bootstrap(), &clickhouse.http_url());
        let processor = tokio::spawn(processor::run(
            processor_config,
            Arc::new(processor::Status::default()),
            shutdown.clone(),
        ));
        Some(Self {
            kafka,
            clickhouse,
            client,
            ingest_url,
            shutdown,
            projects_path,
            ingest: Some(ingest),
            processor: Some(processor),
            _dir: dir,
        })
    }

    /// Stop both services (ingest flushes, the processor writes and commits) and check they
    /// stopped cleanly.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        let ingest = self.ingest.take().unwrap();
        let processor = self.processor.take().unwrap();
        let limit = Duration::from_secs(30);
        tokio::time::timeout(limit, ingest)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        tokio::time::timeout(limit, processor)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }

    /// TabSeparated cells of `sql` in the test database.
    pub async fn tsv(&self, sql: &str) -> Vec<Vec<String>> {
        testbed::clickhouse::tsv(&self.client, DATABASE, sql).await
    }

    /// The single number `sql` answers, 0 while it fails (tables not created yet).
    pub async fn number(&self, sql: &str) -> u64 {
        let bytes = self
            .client
            .clone()
            .with_database(DATABASE)
            .query_raw(sql)
            .fetch_bytes("TabSeparated");
        let Ok(mut bytes) = bytes else { return 0 };
        let Ok(bytes) = bytes.collect().await else {
            return 0;
        };
        String::from_utf8_lossy(&bytes).trim().parse().unwrap_or(0)
    }

    /// Wait (bounded) until `reports FINAL` counts `expected` occurrences and every rollup
    /// (refreshed after each insert, before the commit) agrees with it.
    pub async fn wait_for_occurrences(&self, expected: u64, timeout: Duration) {
        let sum = |from: &str| format!("SELECT sum(occurrences) FROM {from}");
        wait_for("reports and rollups in ClickHouse", timeout, || async {
            let reports = [
                self.number(&sum("reports FINAL")).await,
                self.number(&sum("reports FINAL WHERE kind = 'network-error'"))
                    .await,
                self.number(&sum("reports FINAL WHERE original_policy != ''"))
                    .await,
            ];
            let rollups = [
                self.number(&sum("rollup_hourly FINAL")).await,
                self.number(&sum("rollup_nel_hourly FINAL")).await,
                self.number(&sum("rollup_policy_hourly FINAL")).await,
            ];
            if reports[0] == expected && rollups == reports {
                Ok(())
            } else {
                Err(format!(
                    "reports {reports:?}, rollups {rollups:?}, expected {expected}"
                ))
            }
        })
        .await;
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn processor_config(brokers: &str, clickhouse: &str) -> processor::Config {
    use clap::Parser as _;
    processor::Config::try_parse_from([
        "palisade-processor",
        "run",
        "--kafka-brokers",
        brokers,
        "--kafka-topic",
        TOPIC,
        "--kafka-group",
        "e2e",
        "--dead-letter-topic",
        DEAD_LETTER_TOPIC,
        "--clickhouse-url",
        clickhouse,
        "--clickhouse-database",
        DATABASE,
        "--migrate-on-start",
        "--window-secs",
        "3600",
        "--idle-close-secs",
        "1",
        "--batch-age-ms",
        "200",
        "--retention-interval-secs",
        "0",
        "--kafka-session-timeout-ms",
        "6000",
        // tansu 0.6 skips the rest of a record batch when fetching from inside it.
        "--kafka-resume-rewind",
        "10000",
    ])
    .unwrap()
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The tests use 1-hour dedup windows: if the current hour ends within `margin`, wait for the
/// next one, so the reports of a test cannot straddle a window boundary.
pub async fn avoid_window_boundary(margin: Duration) {
    let into_hour = unix_now() % 3600;
    let left = 3600 - into_hour;
    if left < margin.as_secs() {
        tokio::time::sleep(Duration::from_secs(left + 1)).await;
    }
}
