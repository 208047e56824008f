//! Shared helpers of the processor's integration tests: real tansu + ClickHouse from `testbed`,
//! report messages built from the fixtures in `tests/data/`, a keyed producer like ingest's,
//! ClickHouse queries, the processor's `/metrics`, and bounded waits.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use schemas::{ParseLimits, Parser, Report, ReportMessage};
use testbed::clickhouse::ClickHouse;
use testbed::kafka::Tansu;
pub use testbed::wait::wait_for;
use tokio_util::sync::CancellationToken;

pub const DATABASE: &str = "palisade";
pub const PROJECT: u64 = 7;
/// 2023-11-15 00:00:00.500 UTC: every test message is received here unless said otherwise, so
/// windows are deterministic whatever the wall clock.
pub const RECEIVED_AT_MS: u64 = 1_700_006_400_500;

/// A broker and a ClickHouse server with fresh topics.
pub struct Env {
    pub kafka: Tansu,
    pub clickhouse: ClickHouse,
    pub client: clickhouse::Client,
    pub topic: String,
    pub dead_letter_topic: String,
    pub group: String,
    pub partitions: i32,
}

impl Env {
    /// `None` when tansu or ClickHouse is missing outside CI (testbed's rule).
    pub async fn start(name: &str, partitions: i32) -> Option<Self> {
        let kafka = Tansu::start().await?;
        let clickhouse = ClickHouse::start().await?;
        let topic = format!("{name}-reports");
        let dead_letter_topic = format!("{name}-dead-letter");
        kafka.create_topic(&topic, partitions).await.unwrap();
        kafka.create_topic(&dead_letter_topic, 1).await.unwrap();
        let client = clickhouse::Client::default()
            .with_url(clickhouse.http_url())
            .with_validation(false);
        Some(Self {
            kafka,
            clickhouse,
            client,
            topic,
            dead_letter_topic,
            group: format!("{name}-group"),
            partitions,
        })
    }

    /// Processor flags for this environment with small windows and batches; a flag given in
    /// `extra` (as `--flag value` or a bare `--flag`) replaces its default.
    pub fn args(&self, extra: &[&str]) -> Vec<String> {
        let (brokers, clickhouse) = (self.kafka.bootstrap(), self.clickhouse.http_url());
        let defaults: [(&str, &str); 18] = [
            ("--kafka-brokers", &brokers),
            ("--kafka-topic", &self.topic),
            ("--kafka-group", &self.group),
            ("--dead-letter-topic", &self.dead_letter_topic),
            ("--clickhouse-url", &clickhouse),
            ("--clickhouse-database", DATABASE),
            ("--window-secs", "2"),
            ("--grace-secs", "1"),
            ("--idle-close-secs", "1"),
            ("--batch-age-ms", "300"),
            ("--retention-interval-secs", "0"),
            ("--kafka-session-timeout-ms", "6000"),
            ("--clickhouse-timeout-ms", "5000"),
            ("--clickhouse-backoff-ms", "100"),
            ("--clickhouse-max-backoff-ms", "500"),
            ("--shutdown-timeout-ms", "20000"),
            ("--admin-addr", "127.0.0.1:0"),
            // tansu 0.6 skips the rest of a record batch when fetching from inside it.
            ("--kafka-resume-rewind", "10000"),
        ];
        let mut args = vec!["run".to_owned(), "--migrate-on-start".to_owned()];
        for (flag, value) in defaults {
            if !extra.contains(&flag) {
                args.extend([flag.to_owned(), value.to_owned()]);
            }
        }
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        args
    }

    pub fn config(&self, extra: &[&str]) -> processor::Config {
        use clap::Parser as _;
        let args = self.args(extra);
        processor::Config::try_parse_from(
            std::iter::once("palisade-processor".to_owned()).chain(args),
        )
        .unwrap()
    }

    pub fn producer(&self) -> Producer {
        Producer::new(&self.kafka.bootstrap(), &self.topic, self.partitions)
    }

    /// TabSeparated cells of `sql` in the test database.
    pub async fn tsv(&self, sql: &str) -> Vec<Vec<String>> {
        tsv(&self.client, sql).await
    }

    /// The single value of `sql`, or `None` while the query fails (e.g. before migrations).
    pub async fn scalar(&self, sql: &str) -> Option<String> {
        let bytes = self
            .client
            .clone()
            .with_database(DATABASE)
            .query_raw(sql)
            .fetch_bytes("TabSeparated")
            .ok()?
            .collect()
            .await
            .ok()?;
        Some(String::from_utf8(bytes.to_vec()).ok()?.trim().to_owned())
    }

    /// `(count(), sum(occurrences))` of `reports FINAL`, `(0, 0)` before the table exists.
    pub async fn totals(&self) -> (u64, u64) {
        let text = self
            .scalar("SELECT count(), sum(occurrences) FROM reports FINAL")
            .await
            .unwrap_or_default();
        let mut cells = text.split('\t').map(|c| c.parse::<u64>().unwrap_or(0));
        (cells.next().unwrap_or(0), cells.next().unwrap_or(0))
    }

    /// Wait (bounded) until `reports FINAL` holds exactly `expected` (rows, occurrences); the
    /// timeout message carries the log tail of `child`, the instance expected to get there.
    pub async fn wait_for_totals(
        &self,
        what: &str,
        timeout: Duration,
        expected: (u64, u64),
        child: &Child,
    ) {
        wait_for(what, timeout, || async {
            let totals = self.totals().await;
            if totals == expected {
                Ok(())
            } else {
                Err(format!(
                    "{totals:?} != {expected:?}; log:\n{}",
                    child.log_tail()
                ))
            }
        })
        .await;
    }

    /// How many rows of `reports FINAL` do not count exactly `per_window` occurrences (`"0"`
    /// when every window has its full count).
    pub async fn partial_windows(&self, per_window: u64) -> String {
        self.scalar(&format!(
            "SELECT countIf(occurrences != {per_window}) FROM reports FINAL"
        ))
        .await
        .unwrap()
    }

    /// `sum(rows)<TAB>sum(occurrences)` of `rollup_hourly FINAL`.
    pub async fn rollup_totals(&self) -> String {
        self.scalar("SELECT sum(rows), sum(occurrences) FROM rollup_hourly FINAL")
            .await
            .unwrap()
    }

    /// Wait (bounded) until the group's committed offsets are the end offsets of everything
    /// `producer` wrote, partition by partition.
    pub async fn wait_for_end_offsets(&self, producer: &Producer, timeout: Duration) {
        wait_for("end offsets committed", timeout, || async {
            let committed = self.committed().await;
            if committed == producer.produced {
                Ok(())
            } else {
                Err(format!("{committed:?} != {:?}", producer.produced))
            }
        })
        .await;
    }

    /// The broker's high watermark of each partition (tansu 0.6's can be a few messages below
    /// the end offsets its produce acknowledgements gave).
    pub async fn high_watermarks(&self) -> BTreeMap<i32, i64> {
        let (bootstrap, topic, partitions) =
            (self.kafka.bootstrap(), self.topic.clone(), self.partitions);
        tokio::task::spawn_blocking(move || {
            let consumer: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", bootstrap)
                .create()
                .unwrap();
            (0..partitions)
                .map(|partition| {
                    let (_, high) = consumer
                        .fetch_watermarks(&topic, partition, Duration::from_secs(10))
                        .unwrap();
                    (partition, high)
                })
                .collect()
        })
        .await
        .unwrap()
    }

    /// `processor::run` in this process with [`Env::config`]`(extra)`.
    pub fn spawn_processor(&self, extra: &[&str]) -> InProcess {
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(processor::run(
            self.config(extra),
            Arc::new(processor::Status::default()),
            shutdown.clone(),
        ));
        InProcess { shutdown, task }
    }

    /// The dead-letter topic from its start: until `expected` records arrived or `timeout`.
    pub async fn dead_letters(
        &self,
        expected: usize,
        timeout: Duration,
    ) -> Vec<testbed::kafka::Consumed> {
        testbed::kafka::consume(
            &self.kafka.bootstrap(),
            &self.dead_letter_topic,
            expected,
            timeout,
        )
        .await
        .unwrap()
    }

    /// Kafka's committed offsets of the processor's group, by partition.
    pub async fn committed(&self) -> BTreeMap<i32, i64> {
        let (bootstrap, topic, group, partitions) = (
            self.kafka.bootstrap(),
            self.topic.clone(),
            self.group.clone(),
            self.partitions,
        );
        tokio::task::spawn_blocking(move || {
            let consumer: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", bootstrap)
                .set("group.id", group)
                .create()
                .unwrap();
            let mut list = TopicPartitionList::new();
            for partition in 0..partitions {
                list.add_partition(&topic, partition);
            }
            let list = consumer
                .committed_offsets(list, Duration::from_secs(10))
                .unwrap();
            list.elements()
                .iter()
                .filter_map(|e| match e.offset() {
                    Offset::Offset(o) => Some((e.partition(), o)),
                    _ => None,
                })
                .collect()
        })
        .await
        .unwrap()
    }
}

/// A processor running in this test's process.
pub struct InProcess {
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), processor::RunError>>,
}

impl InProcess {
    /// Cancel the run and wait (at most 30 s) for a clean shutdown: last batch written and
    /// committed.
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("run stops")
            .expect("no panic")
            .expect("clean shutdown");
    }
}

/// A CSP `reports` row of project `project_id` in the window starting at `window_start`, at
/// version `occurrences`; fingerprint and dedup key derived from `row_id`.
pub fn report_row(
    row_id: u64,
    project_id: u64,
    window_start: u32,
    occurrences: u32,
) -> processor::row::ReportRow {
    processor::row::ReportRow {
        row_id,
        version: u64::from(occurrences),
        project_id,
        day: u16::try_from(window_start / 86_400).unwrap(),
        window_start,
        first_seen: window_start + 1,
        last_seen: window_start + 30,
        occurrences,
        fingerprint: 1000 + row_id,
        dedup_key: 2000 + row_id,
        kind: "csp-violation".to_owned(),
        disposition: "enforce".to_owned(),
        effective_directive: "script-src-elem".to_owned(),
        directive_family: "script-src".to_owned(),
        blocked_origin: "https://cdn.example".to_owned(),
        policy_hash: 42,
        original_policy: "script-src 'self'".to_owned(),
        ..processor::row::ReportRow::default()
    }
}

/// Run `sql` in the test database and return the TabSeparated cells.
pub async fn tsv(client: &clickhouse::Client, sql: &str) -> Vec<Vec<String>> {
    testbed::clickhouse::tsv(client, DATABASE, sql).await
}

/// Every report of a fixture body in `tests/data/`.
pub fn fixture_reports(name: &str) -> Vec<Report> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    let mut body = std::fs::read(&path).unwrap();
    Parser::new(ParseLimits::default())
        .parse(&mut body)
        .unwrap()
        .items
        .into_iter()
        .filter_map(Result::ok)
        .collect()
}

/// A message like ingest publishes it.
pub fn message(report: Report, client_ip: &str, id: String, received_at_ms: u64) -> ReportMessage {
    ReportMessage {
        environment: Some("prod".into()),
        release: Some("1.2.3".into()),
        client_ip: Some(client_ip.to_owned()),
        request_user_agent: Some(
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
             Chrome/120.0.0.0 Safari/537.36"
                .into(),
        ),
        ..ReportMessage::new(id, received_at_ms, PROJECT, report)
    }
}

/// Ingest's dedup key of a message.
pub fn dedup_key(message: &ReportMessage) -> u64 {
    let fingerprint = u64::from_str_radix(&message.fingerprint, 16).unwrap();
    schemas::dedup_key(fingerprint, message.client_ip.as_deref().unwrap_or(""))
}

/// Produces to the reports topic, keyed like ingest, each key on a fixed partition.
pub struct Producer {
    producer: FutureProducer,
    topic: String,
    partitions: i32,
    /// Records produced per partition (the end offsets, tansu starting at 0).
    pub produced: BTreeMap<i32, i64>,
}

impl Producer {
    fn new(bootstrap: &str, topic: &str, partitions: i32) -> Self {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("enable.idempotence", "false")
            .set("linger.ms", "5")
            .create()
            .unwrap();
        Self {
            producer,
            topic: topic.to_owned(),
            partitions,
            produced: BTreeMap::new(),
        }
    }

    pub fn partition_of(&self, key: u64) -> i32 {
        i32::try_from(key % u64::try_from(self.partitions).unwrap()).unwrap()
    }

    /// Produce one message keyed by its dedup key.
    pub async fn send(&mut self, message: &ReportMessage) {
        self.send_as(message, schemas::MessageFormat::Json).await;
    }

    /// [`Producer::send`] with the payload in `format` (what ingest's
    /// `--kafka-message-format` selects).
    pub async fn send_as(&mut self, message: &ReportMessage, format: schemas::MessageFormat) {
        let key = dedup_key(message);
        let partition = self.partition_of(key);
        let mut payload = Vec::new();
        message.encode_as(format, &mut payload);
        self.raw(partition, Some(format!("{key:016x}").as_bytes()), &payload)
            .await;
    }

    /// Produce many messages at once (queued together, then every delivery awaited).
    pub async fn send_all(&mut self, messages: &[ReportMessage]) {
        let mut deliveries = Vec::with_capacity(messages.len());
        for message in messages {
            let key = dedup_key(message);
            let partition = self.partition_of(key);
            let key = format!("{key:016x}");
            let payload = message.encode();
            let record = FutureRecord::<[u8], [u8]>::to(&self.topic)
                .partition(partition)
                .key(key.as_bytes())
                .payload(&payload);
            let delivery = self
                .producer
                .send_result(record)
                .map_err(|(e, _)| e)
                .unwrap();
            deliveries.push(delivery);
            *self.produced.entry(partition).or_default() += 1;
        }
        for delivery in deliveries {
            delivery.await.unwrap().map_err(|(error, _)| error).unwrap();
        }
    }

    /// Produce raw bytes to a partition.
    pub async fn raw(&mut self, partition: i32, key: Option<&[u8]>, payload: &[u8]) {
        let mut record = FutureRecord::<[u8], [u8]>::to(&self.topic)
            .partition(partition)
            .payload(payload);
        if let Some(key) = key {
            record = record.key(key);
        }
        self.producer
            .send(record, Duration::from_secs(10))
            .await
            .map_err(|(error, _)| error)
            .unwrap();
        *self.produced.entry(partition).or_default() += 1;
    }
}

// Each test binary uses a different part of this module.
#[allow(unused_imports)]
pub use testbed::process::{http_get, rss_kib, signal};

/// The value of an unlabelled metric (or the sum over its label sets) in Prometheus text.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    let values: Vec<f64> = text
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

/// The processor binary as a child process (killed on drop), with its admin port.
pub struct Child {
    pub process: testbed::process::ChildProcess,
    pub admin_port: u16,
    _log_dir: tempfile::TempDir,
}

impl Child {
    /// Start `palisade-processor` with `env.args(extra)` and a free admin port.
    pub fn spawn(env: &Env, extra: &[&str]) -> Self {
        let log_dir = tempfile::tempdir().unwrap();
        let admin_port = testbed::free_port().unwrap();
        let admin = format!("127.0.0.1:{admin_port}");
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_palisade-processor"));
        let mut extra = extra.to_vec();
        extra.extend(["--admin-addr", &admin]);
        command
            .args(env.args(&extra))
            .env("RUST_LOG", "info,rdkafka=warn");
        let process = testbed::process::ChildProcess::spawn(
            "palisade-processor",
            command,
            &log_dir.path().join("processor.log"),
        )
        .unwrap();
        Self {
            process,
            admin_port,
            _log_dir: log_dir,
        }
    }

    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    /// The value of a metric on `/metrics`, `None` while the listener is not up.
    pub fn metric(&self, name: &str) -> Option<f64> {
        let (status, body) = http_get(self.admin_port, "/metrics").ok()?;
        if status != 200 {
            return None;
        }
        Some(metric(&body, name).unwrap_or(0.0))
    }

    /// The whole log without ANSI colour codes.
    pub fn log_text(&self) -> String {
        let raw = std::fs::read_to_string(self.process.log_path()).unwrap_or_default();
        let mut text = String::with_capacity(raw.len());
        let mut chars = raw.chars();
        while let Some(c) = chars.next() {
            if c == '\u{1b}' {
                // Skip `ESC [ ... m`.
                for c in chars.by_ref() {
                    if c == 'm' {
                        break;
                    }
                }
            } else {
                text.push(c);
            }
        }
        text
    }

    pub fn log_tail(&self) -> String {
        self.process.log_tail(testbed::process::LOG_TAIL_LINES)
    }
}

/// Wait (bounded) for a child to exit and return its status.
pub async fn wait_exit(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.process.exited() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "the processor did not exit within {timeout:?}: {}",
            child.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The tests' ClickHouse writer of `database`: 3 quick attempts, and 2 rollup groups per
/// statement, small on purpose, so the tests exercise several statements per refresh.
pub fn writer(
    client: &clickhouse::Client,
    database: &str,
    attempt_timeout: Duration,
) -> processor::write::Writer {
    use std::num::{NonZeroU32, NonZeroUsize};
    processor::write::Writer::new(
        client,
        processor::write::WriterConfig {
            database: database.to_owned(),
            retry: processor::write::RetryPolicy {
                max_attempts: NonZeroU32::new(3).expect("non-zero"),
                initial_backoff: Duration::from_millis(50),
                max_backoff: Duration::from_millis(200),
            },
            attempt_timeout,
            rollup_groups_per_statement: NonZeroUsize::new(2).expect("non-zero"),
        },
    )
    .expect("valid database name")
}
