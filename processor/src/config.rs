//! The processor's configuration: one clap struct, every field with its unit and default, so
//! `palisade-processor --help` is the reference. `palisade-processor [run]` consumes;
//! `palisade-processor migrate` applies the ClickHouse migrations and exits;
//! `palisade-processor recent --project N` prints a project's recent violations.
//!
//! Tests build a [`Config`] with [`Config::try_parse_from`], never by setting the environment.

use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize, ParseIntError};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::backoff::Backoff;
use crate::batch::BatchLimits;
use crate::dedup::DedupConfig;
use crate::kcat::DecodeArgs;
use crate::migrate::{ClusterName, Topology};
use crate::recent::RecentArgs;
use crate::replay::ReplayArgs;
use crate::write::{RetryPolicy, WriterConfig};

fn millis(s: &str) -> Result<Duration, ParseIntError> {
    s.parse::<u64>().map(Duration::from_millis)
}

/// `lz4` or `none` (`--clickhouse-compression`).
fn compression(s: &str) -> Result<clickhouse::Compression, String> {
    match s {
        "lz4" => Ok(clickhouse::Compression::Lz4),
        "none" => Ok(clickhouse::Compression::None),
        other => Err(format!("{other:?} is not lz4 or none")),
    }
}

fn secs(s: &str) -> Result<Duration, ParseIntError> {
    s.parse::<u64>().map(Duration::from_secs)
}

/// A positive whole number of seconds (the dedup window).
fn positive_secs(s: &str) -> Result<Duration, String> {
    match s.parse::<u64>() {
        Ok(0) => Err("must be at least 1 second".to_owned()),
        Ok(n) => Ok(Duration::from_secs(n)),
        Err(e) => Err(e.to_string()),
    }
}

/// A project's shorter retention (`--project-retention PROJECT=DAYS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProjectRetention {
    pub project_id: u64,
    pub days: NonZeroU32,
}

fn project_retention(s: &str) -> Result<ProjectRetention, String> {
    let (project, days) = s
        .split_once('=')
        .ok_or_else(|| format!("expected PROJECT=DAYS, got {s:?}"))?;
    Ok(ProjectRetention {
        project_id: project
            .trim()
            .parse()
            .map_err(|e| format!("project: {e}"))?,
        days: days.trim().parse().map_err(|e| format!("days: {e}"))?,
    })
}

/// What the binary does.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Consume reports and write them to ClickHouse (the default).
    Run,
    /// Apply the pending ClickHouse migrations, then exit.
    Migrate,
    /// Print a project's recent violation groups (exact counts) from ClickHouse, then exit.
    Recent(RecentArgs),
    /// Re-publish the dead-letter topic's records to the reports topic (undecodable records,
    /// with their key) and re-insert the rows ClickHouse rejected (idempotent by row id), then
    /// exit. Run it after fixing what rejected them; `--dry-run` only counts.
    ReplayDeadLetters(ReplayArgs),
    /// Print Kafka payloads (either layout) as JSON lines, read from standard input framed as
    /// kcat's `-f '%S %s\n'`: `kcat -C -b HOST:9092 -t TOPIC -e -q -f '%S %s\n' |
    /// palisade-processor decode`. Exit code 1 when a payload did not decode (each is named on
    /// stderr), 2 when the input is not in that framing.
    Decode(DecodeArgs),
}

/// Configuration of `palisade-processor`.
#[derive(Debug, Clone, Parser)]
#[command(name = "palisade-processor", version, about)]
pub struct Config {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Kafka bootstrap servers, comma-separated `host:port`. Default `127.0.0.1:9092`.
    #[arg(
        long,
        env = "PALISADE_KAFKA_BROKERS",
        default_value = "127.0.0.1:9092",
        global = true
    )]
    pub kafka_brokers: String,

    /// Topic the reports are consumed from. Default `palisade-reports`.
    #[arg(
        long,
        env = "PALISADE_KAFKA_TOPIC",
        default_value = "palisade-reports",
        global = true
    )]
    pub kafka_topic: String,

    /// Consumer group shared by all processor instances. Default `palisade-processor`.
    #[arg(
        long,
        env = "PALISADE_KAFKA_GROUP",
        default_value = "palisade-processor",
        global = true
    )]
    pub kafka_group: String,

    /// Topic undecodable and permanently rejected messages go to, with the reason in a header.
    /// Default `palisade-reports-dead-letter`.
    #[arg(
        long,
        env = "PALISADE_DEAD_LETTER_TOPIC",
        default_value = "palisade-reports-dead-letter",
        global = true
    )]
    pub dead_letter_topic: String,

    /// ClickHouse HTTP interface URL. Default `http://127.0.0.1:8123`.
    #[arg(
        long,
        env = "PALISADE_CLICKHOUSE_URL",
        default_value = "http://127.0.0.1:8123",
        global = true
    )]
    pub clickhouse_url: String,

    /// ClickHouse user. Default `default`.
    #[arg(
        long,
        env = "PALISADE_CLICKHOUSE_USER",
        default_value = "default",
        global = true
    )]
    pub clickhouse_user: String,

    /// ClickHouse password. Default empty.
    #[arg(
        long,
        env = "PALISADE_CLICKHOUSE_PASSWORD",
        default_value = "",
        hide_env_values = true,
        global = true
    )]
    pub clickhouse_password: String,

    /// ClickHouse database holding the tables (created by `migrate`). Default `palisade`.
    #[arg(
        long,
        env = "PALISADE_CLICKHOUSE_DATABASE",
        default_value = "palisade",
        global = true
    )]
    pub clickhouse_database: String,

    /// Compression of the data sent to and read from ClickHouse over HTTP: `lz4` (ClickHouse's
    /// native blocks) or `none`. lz4 costs the processor about 15% of its CPU per row
    /// (callgrind, benches/README.md issue 13) and saves network bytes; `none` suits a
    /// ClickHouse on the same host or LAN. Default `lz4`.
    #[arg(
        long,
        env = "PALISADE_CLICKHOUSE_COMPRESSION",
        default_value = "lz4",
        value_parser = compression,
        global = true
    )]
    pub clickhouse_compression: clickhouse::Compression,

    /// ClickHouse cluster (a `remote_servers` name) the schema is spread over. With it, `migrate`
    /// creates replicated `*_local` tables and Distributed tables under the usual names, every
    /// statement `ON CLUSTER`; inserts wait for every shard (`insert_distributed_sync`);
    /// retention drops partitions on every node. Default: none (a single node).
    #[arg(long, env = "PALISADE_CLICKHOUSE_CLUSTER", global = true)]
    pub clickhouse_cluster: Option<ClusterName>,

    /// Apply pending migrations before consuming. Default off.
    #[arg(long, env = "PALISADE_MIGRATE_ON_START", global = true)]
    pub migrate_on_start: bool,

    /// Dedup window: the same violation from the same client within one window is one row, in
    /// seconds (at least 1). Default 60.
    #[arg(long = "window-secs", env = "PALISADE_WINDOW_SECS", default_value = "60", value_parser = positive_secs, global = true)]
    pub window: Duration,

    /// How far a partition's watermark (max received time) must pass a window's end before the
    /// window closes; absorbs out-of-order delivery between ingest instances, in seconds.
    /// Default 5.
    #[arg(long = "grace-secs", env = "PALISADE_GRACE_SECS", default_value = "5", value_parser = secs, global = true)]
    pub grace: Duration,

    /// A partition with no message for this long (wall clock) closes all its windows, in
    /// seconds. Default 90.
    #[arg(long = "idle-close-secs", env = "PALISADE_IDLE_CLOSE_SECS", default_value = "90", value_parser = secs, global = true)]
    pub idle_close: Duration,

    /// Most open dedup windows per assigned partition; past it the oldest windows close early.
    /// Each holds one message (at most ingest's body limit). Default 100000.
    #[arg(
        long,
        env = "PALISADE_MAX_OPEN_WINDOWS",
        default_value = "100000",
        global = true
    )]
    pub max_open_windows: NonZeroUsize,

    /// Most bytes the open dedup windows of one assigned partition may hold, estimated per
    /// window from its decoded first message (a JSON tree counted node by node); past it the
    /// oldest windows close early, like `--max-open-windows`. Bounds the processor's window
    /// memory to about this times the assigned partitions, whatever the messages in Kafka hold.
    /// Default 67108864 (64 MiB).
    #[arg(
        long,
        env = "PALISADE_DEDUP_MAX_BYTES",
        default_value = "67108864",
        global = true
    )]
    pub dedup_max_bytes: NonZeroUsize,

    /// Most rows in one ClickHouse insert. Default 10000.
    #[arg(
        long,
        env = "PALISADE_BATCH_ROWS",
        default_value = "10000",
        global = true
    )]
    pub batch_rows: NonZeroUsize,

    /// Most RowBinary bytes of rows in one batch (the rows of one tick may pass it; the batch
    /// is then written at once). Default 16777216 (16 MiB).
    #[arg(
        long,
        env = "PALISADE_BATCH_BYTES",
        default_value = "16777216",
        global = true
    )]
    pub batch_bytes: NonZeroUsize,

    /// Longest a row (or a pending commit) waits before its batch is written, in milliseconds.
    /// Default 1000.
    #[arg(long = "batch-age-ms", env = "PALISADE_BATCH_AGE_MS", default_value = "1000", value_parser = millis, global = true)]
    pub batch_age: Duration,

    /// Distinct user agents whose classification is cached (LRU). Default 10000.
    #[arg(
        long,
        env = "PALISADE_UA_CACHE_SIZE",
        default_value = "10000",
        global = true
    )]
    pub ua_cache_size: NonZeroUsize,

    /// Distinct URLs (of at most 512 bytes) whose parts (origin, host, path, registrable
    /// domain) are cached (LRU): at most ~7 KiB each (a part may be percent-encoded to 3x the
    /// URL's length), typically a few hundred bytes. Default 4096.
    #[arg(
        long,
        env = "PALISADE_URL_CACHE_SIZE",
        default_value = "4096",
        global = true
    )]
    pub url_cache_size: NonZeroUsize,

    /// MaxMind GeoIP2/GeoLite2 Country or City database for the `country` column. Default: none
    /// (the column stays empty).
    #[arg(long, env = "PALISADE_GEOIP_DB", global = true)]
    pub geoip_db: Option<PathBuf>,

    /// Days of report partitions kept, unless a project overrides it; 0 keeps everything.
    /// Enforced by dropping day partitions. Default 90.
    #[arg(
        long,
        env = "PALISADE_RETENTION_DAYS",
        default_value = "90",
        global = true
    )]
    pub retention_days: u32,

    /// Projects whose rows are kept for fewer days than `--retention-days`, as
    /// `PROJECT=DAYS` (repeat the flag or separate with commas). Enforced daily with ClickHouse
    /// mutations. Default none.
    #[arg(long = "project-retention", env = "PALISADE_PROJECT_RETENTION", value_parser = project_retention, value_delimiter = ',', global = true)]
    pub project_retention: Vec<ProjectRetention>,

    /// How often the retention job runs (first run at start-up), in seconds; 0 disables it.
    /// Default 86400.
    #[arg(long = "retention-interval-secs", env = "PALISADE_RETENTION_INTERVAL_SECS", default_value = "86400", value_parser = secs, global = true)]
    pub retention_interval: Duration,

    /// Most `reports` rows a project keeps, unless its `max_rows` (table `project_storage`, set
    /// through `palisade-api`) says otherwise; the retention job deletes a project's oldest rows
    /// beyond it on every run. 0 = no cap. Default 1000000 (rows, each one deduplicated window
    /// of one violation and client).
    #[arg(
        long,
        env = "PALISADE_PROJECT_MAX_ROWS",
        default_value = "1000000",
        global = true
    )]
    pub project_max_rows: u64,

    /// Most projects the retention job reads per run, from `project_storage` and from the row
    /// counts of `reports` (biggest first); the rest wait for a later run. Default 10000.
    #[arg(
        long,
        env = "PALISADE_RETENTION_MAX_PROJECTS",
        default_value = "10000",
        global = true
    )]
    pub retention_max_projects: NonZeroUsize,

    /// Attempts per ClickHouse operation before the batch is parked and the consumer paused
    /// (the first included). Default 3.
    #[arg(
        long,
        env = "PALISADE_CLICKHOUSE_RETRY_ATTEMPTS",
        default_value = "3",
        global = true
    )]
    pub clickhouse_retry_attempts: NonZeroU32,

    /// Wait after the first failed attempt, doubled after each further one, in milliseconds.
    /// Default 200.
    #[arg(long = "clickhouse-backoff-ms", env = "PALISADE_CLICKHOUSE_BACKOFF_MS", default_value = "200", value_parser = millis, global = true)]
    pub clickhouse_backoff: Duration,

    /// Longest wait between two attempts, and between two tries of a parked batch while
    /// ClickHouse is down, in milliseconds. Default 5000.
    #[arg(long = "clickhouse-max-backoff-ms", env = "PALISADE_CLICKHOUSE_MAX_BACKOFF_MS", default_value = "5000", value_parser = millis, global = true)]
    pub clickhouse_max_backoff: Duration,

    /// Deadline of one ClickHouse attempt (one insert or statement), in milliseconds.
    /// Default 30000.
    #[arg(long = "clickhouse-timeout-ms", env = "PALISADE_CLICKHOUSE_TIMEOUT_MS", default_value = "30000", value_parser = millis, global = true)]
    pub clickhouse_timeout: Duration,

    /// Wait between two tries of a batch that failed because the deployment is wrong (unknown
    /// table, authentication), in milliseconds. Default 30000.
    #[arg(long = "misconfigured-retry-ms", env = "PALISADE_MISCONFIGURED_RETRY_MS", default_value = "30000", value_parser = millis, global = true)]
    pub misconfigured_retry: Duration,

    /// Most (project, hour) groups one rollup refresh statement recomputes. Default 200.
    #[arg(
        long,
        env = "PALISADE_ROLLUP_GROUPS_PER_STATEMENT",
        default_value = "200",
        global = true
    )]
    pub rollup_groups_per_statement: NonZeroUsize,

    /// Kafka consumer session timeout: how soon a dead processor's partitions move to another
    /// instance, in milliseconds. Default 45000.
    #[arg(long = "kafka-session-timeout-ms", env = "PALISADE_KAFKA_SESSION_TIMEOUT_MS", default_value = "45000", value_parser = millis, global = true)]
    pub kafka_session_timeout: Duration,

    /// Most kilobytes librdkafka prefetches per partition (`queued.max.messages.kbytes`): the
    /// bound on what arrives while the consumer is paused. Default 16384.
    #[arg(
        long,
        env = "PALISADE_KAFKA_PREFETCH_KBYTES",
        default_value = "16384",
        global = true
    )]
    pub kafka_prefetch_kbytes: NonZeroUsize,

    /// On assignment, start fetching this many messages BEFORE the committed offset (dedup
    /// ignores them as redeliveries), and on a resume after a pause this many before the next
    /// offset expected (the loop drops what it read already), in messages. 0 (the default) for
    /// Kafka. Set it to at least the producers' largest record batch (librdkafka
    /// `batch.num.messages`, 10000) for tansu 0.6, whose fetch from an offset inside a record
    /// batch skips the rest of that batch, which would lose records on every assignment and on
    /// every resume after a ClickHouse or dead-letter outage.
    #[arg(
        long,
        env = "PALISADE_KAFKA_RESUME_REWIND",
        default_value = "0",
        global = true
    )]
    pub kafka_resume_rewind: u64,

    /// How often the processor checks that no partition of the topic is left to nobody, in
    /// seconds; 0 turns the check off. Default 10. When, twice in a row, this instance is the
    /// only member of a stable group yet owns fewer partitions than the topic has, it leaves
    /// the group and joins again (`processor_group_rejoins_total`). Apache Kafka never leaves a
    /// group so; tansu 0.6 does after a member dies (see RELIABILITY.md).
    #[arg(long = "kafka-group-check-secs", env = "PALISADE_KAFKA_GROUP_CHECK_SECS", default_value = "10", value_parser = secs, global = true)]
    pub kafka_group_check: Duration,

    /// Extra librdkafka properties as `key=value`, repeatable or comma-separated, for what
    /// Palisade has no flag for: TLS and SASL to a secured cluster (`security.protocol=SASL_SSL`,
    /// `sasl.mechanism=SCRAM-SHA-512`, `sasl.username=...`, `ssl.ca.location=...`). Applied to the
    /// consumer and the dead-letter producer before Palisade's own settings, which win.
    /// Default: none.
    #[arg(
        long = "kafka-property",
        env = "PALISADE_KAFKA_PROPERTIES",
        value_delimiter = ',',
        value_parser = parse_kafka_property,
        global = true
    )]
    pub kafka_properties: Vec<(String, String)>,

    /// Address of the admin listener (`/metrics`, `/healthz`, `/readyz`). Default `127.0.0.1:9091`.
    #[arg(
        long,
        env = "PALISADE_ADMIN_ADDR",
        default_value = "127.0.0.1:9091",
        global = true
    )]
    pub admin_addr: SocketAddr,

    /// On shutdown, longest wait to write the current batch and commit, in milliseconds.
    /// Default 10000.
    #[arg(long = "shutdown-timeout-ms", env = "PALISADE_SHUTDOWN_TIMEOUT_MS", default_value = "10000", value_parser = millis, global = true)]
    pub shutdown_timeout: Duration,

    // --- Dead letters, Kafka retries and the admin listener (issue 10, items 6 and 8) ---
    /// Largest dead-letter value, in bytes: a longer payload is cut to this size and the
    /// record gets a `payload_truncated` header holding the original length. Keep it below the
    /// broker's `message.max.bytes` (1 MB by default). Default 524288 (512 KiB).
    #[arg(
        long,
        env = "PALISADE_DEAD_LETTER_MAX_BYTES",
        default_value = "524288",
        global = true
    )]
    pub dead_letter_max_bytes: NonZeroUsize,

    /// Deadline of one dead-letter delivery (librdkafka `message.timeout.ms`), in milliseconds.
    /// Default 10000.
    #[arg(long = "dead-letter-timeout-ms", env = "PALISADE_DEAD_LETTER_TIMEOUT_MS", default_value = "10000", value_parser = millis, global = true)]
    pub dead_letter_timeout: Duration,

    /// Wait after a failed dead-letter delivery, doubled after each further failure, in
    /// milliseconds. While deliveries fail, consumption is paused and `/readyz` answers 503.
    /// Default 1000.
    #[arg(long = "dead-letter-backoff-ms", env = "PALISADE_DEAD_LETTER_BACKOFF_MS", default_value = "1000", value_parser = millis, global = true)]
    pub dead_letter_backoff: Duration,

    /// Longest wait between two tries of a failed dead-letter delivery, in milliseconds.
    /// Default 60000.
    #[arg(long = "dead-letter-max-backoff-ms", env = "PALISADE_DEAD_LETTER_MAX_BACKOFF_MS", default_value = "60000", value_parser = millis, global = true)]
    pub dead_letter_max_backoff: Duration,

    /// Wait after a failed Kafka call of a rebalance (committed offsets, seek, pause/resume),
    /// doubled after each further failure up to `--kafka-retry-max-backoff-ms`, in
    /// milliseconds; the call is retried until it succeeds or shutdown. Default 200.
    #[arg(long = "kafka-retry-backoff-ms", env = "PALISADE_KAFKA_RETRY_BACKOFF_MS", default_value = "200", value_parser = millis, global = true)]
    pub kafka_retry_backoff: Duration,

    /// Tries of a Kafka rebalance call (the first included) before the error ends the run
    /// (and the orchestrator restarts the processor). Default 10 (about 30 s with the default
    /// backoff).
    #[arg(
        long,
        env = "PALISADE_KAFKA_RETRY_ATTEMPTS",
        default_value = "10",
        global = true
    )]
    pub kafka_retry_attempts: NonZeroU32,

    /// Longest wait between two tries of a failed Kafka rebalance call, in milliseconds.
    /// Default 5000.
    #[arg(long = "kafka-retry-max-backoff-ms", env = "PALISADE_KAFKA_RETRY_MAX_BACKOFF_MS", default_value = "5000", value_parser = millis, global = true)]
    pub kafka_retry_max_backoff: Duration,

    /// Most open connections on the admin listener; at the cap it stops accepting (new
    /// clients wait in the kernel backlog). Default 64.
    #[arg(
        long,
        env = "PALISADE_ADMIN_MAX_CONNECTIONS",
        default_value = "64",
        global = true
    )]
    pub admin_max_connections: NonZeroUsize,

    /// Longest an admin client may take to send a request's headers (and, on a new
    /// connection, to begin its first request), in milliseconds. Default 10000.
    #[arg(long = "admin-header-read-timeout-ms", env = "PALISADE_ADMIN_HEADER_READ_TIMEOUT_MS", default_value = "10000", value_parser = millis, global = true)]
    pub admin_header_read_timeout: Duration,

    /// An admin connection with no request in flight for this long is closed, in
    /// milliseconds. Default 75000.
    #[arg(long = "admin-idle-timeout-ms", env = "PALISADE_ADMIN_IDLE_TIMEOUT_MS", default_value = "75000", value_parser = millis, global = true)]
    pub admin_idle_timeout: Duration,

    /// How long a `/readyz` answer is reused before ClickHouse is pinged again, in
    /// milliseconds; 0 pings on every request. Default 1000.
    #[arg(long = "readyz-cache-ms", env = "PALISADE_READYZ_CACHE_MS", default_value = "1000", value_parser = millis, global = true)]
    pub readyz_cache: Duration,
    // --- end of issue 10 items 6 and 8 ---
    /// Log as JSON lines instead of human-readable text. Default off.
    #[arg(long, env = "PALISADE_LOG_JSON", global = true)]
    pub log_json: bool,
}

/// Parses one `key=value` librdkafka property.
fn parse_kafka_property(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_owned(), value.trim().to_owned()))
        }
        _ => Err(format!("expected key=value, got {text:?}")),
    }
}

// --- Start-up validation (issue 10, item 11) ---

/// A setting that parses but cannot work: refused at start-up, naming the flag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{flag} must be greater than 0")]
    Zero { flag: &'static str },
    #[error("{max_flag} must not be below {flag}")]
    Order {
        flag: &'static str,
        max_flag: &'static str,
    },
    #[error("--dead-letter-topic must differ from --kafka-topic ({0:?})")]
    SameTopic(String),
}

impl Config {
    /// Refuse settings that would panic, spin or never work: zero timeouts and retry waits, a
    /// maximum backoff below its initial wait, dead letters sent to the topic they came from.
    /// (Zero batch sizes and windows are refused by their parsers.)
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("--clickhouse-timeout-ms", self.clickhouse_timeout),
            ("--clickhouse-backoff-ms", self.clickhouse_backoff),
            ("--clickhouse-max-backoff-ms", self.clickhouse_max_backoff),
            ("--misconfigured-retry-ms", self.misconfigured_retry),
            ("--kafka-session-timeout-ms", self.kafka_session_timeout),
            ("--shutdown-timeout-ms", self.shutdown_timeout),
            ("--batch-age-ms", self.batch_age),
            ("--idle-close-secs", self.idle_close),
            ("--dead-letter-timeout-ms", self.dead_letter_timeout),
            ("--dead-letter-backoff-ms", self.dead_letter_backoff),
            ("--dead-letter-max-backoff-ms", self.dead_letter_max_backoff),
            ("--kafka-retry-backoff-ms", self.kafka_retry_backoff),
            ("--kafka-retry-max-backoff-ms", self.kafka_retry_max_backoff),
            (
                "--admin-header-read-timeout-ms",
                self.admin_header_read_timeout,
            ),
            ("--admin-idle-timeout-ms", self.admin_idle_timeout),
        ];
        if let Some((flag, _)) = positive.iter().find(|(_, value)| value.is_zero()) {
            return Err(ConfigError::Zero { flag });
        }
        let ordered = [
            (
                "--clickhouse-backoff-ms",
                self.clickhouse_backoff,
                "--clickhouse-max-backoff-ms",
                self.clickhouse_max_backoff,
            ),
            (
                "--dead-letter-backoff-ms",
                self.dead_letter_backoff,
                "--dead-letter-max-backoff-ms",
                self.dead_letter_max_backoff,
            ),
            (
                "--kafka-retry-backoff-ms",
                self.kafka_retry_backoff,
                "--kafka-retry-max-backoff-ms",
                self.kafka_retry_max_backoff,
            ),
        ];
        if let Some((flag, _, max_flag, _)) = ordered.iter().find(|(_, min, _, max)| max < min) {
            return Err(ConfigError::Order { flag, max_flag });
        }
        if self.kafka_topic == self.dead_letter_topic {
            return Err(ConfigError::SameTopic(self.kafka_topic.clone()));
        }
        Ok(())
    }

    /// The admin listener's connection limits and readiness cache.
    pub fn admin_settings(&self) -> crate::admin::AdminSettings {
        crate::admin::AdminSettings {
            max_connections: self.admin_max_connections.get(),
            header_read_timeout: self.admin_header_read_timeout,
            idle_timeout: self.admin_idle_timeout,
            readyz_cache: self.readyz_cache,
        }
    }

    /// Backoff of failed dead-letter deliveries.
    pub fn dead_letter_backoff(&self) -> Backoff {
        Backoff::new(self.dead_letter_backoff, self.dead_letter_max_backoff)
    }

    /// Backoff of failed Kafka rebalance calls.
    pub fn kafka_retry_backoff(&self) -> Backoff {
        Backoff::new(self.kafka_retry_backoff, self.kafka_retry_max_backoff)
    }
}
// --- end of start-up validation ---

impl Config {
    /// A librdkafka configuration holding the `--kafka-property` settings, for the caller to add
    /// its own (which override them).
    pub fn kafka_client_config(&self) -> rdkafka::ClientConfig {
        let mut client = rdkafka::ClientConfig::new();
        for (key, value) in &self.kafka_properties {
            client.set(key, value);
        }
        client
    }

    /// The subcommand, `run` when none was given.
    pub fn command(&self) -> Command {
        self.command.clone().unwrap_or(Command::Run)
    }

    pub fn dedup(&self) -> DedupConfig {
        DedupConfig {
            window: self.window,
            grace: self.grace,
            idle_close: self.idle_close,
            max_open_windows: self.max_open_windows,
            max_bytes: self.dedup_max_bytes,
        }
    }

    pub fn writer(&self) -> WriterConfig {
        WriterConfig {
            database: self.clickhouse_database.clone(),
            retry: RetryPolicy {
                max_attempts: self.clickhouse_retry_attempts,
                initial_backoff: self.clickhouse_backoff,
                max_backoff: self.clickhouse_max_backoff,
            },
            attempt_timeout: self.clickhouse_timeout,
            rollup_groups_per_statement: self.rollup_groups_per_statement,
        }
    }

    /// What the retention job uses.
    pub fn retention(&self) -> crate::retention::RetentionConfig {
        crate::retention::RetentionConfig {
            interval: self.retention_interval,
            days: self.retention_days,
            projects: self.project_retention.clone(),
            default_max_rows: self.project_max_rows,
            max_projects: self.retention_max_projects,
            topology: self.topology(),
        }
    }

    /// Single node, or the `--clickhouse-cluster`.
    pub fn topology(&self) -> Topology {
        Topology::new(self.clickhouse_cluster.clone())
    }

    /// The ClickHouse client (URL and credentials, and the cluster's settings; database chosen
    /// by the caller).
    pub fn clickhouse_client(&self) -> clickhouse::Client {
        self.topology().configure(
            clickhouse::Client::default()
                .with_url(self.clickhouse_url.as_str())
                .with_user(self.clickhouse_user.as_str())
                .with_password(self.clickhouse_password.as_str())
                .with_compression(self.clickhouse_compression)
                .with_validation(false),
        )
    }

    pub fn batch_limits(&self) -> BatchLimits {
        BatchLimits {
            max_rows: self.batch_rows,
            max_bytes: self.batch_bytes,
            max_age: self.batch_age,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        Config::try_parse_from(std::iter::once("palisade-processor").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_parse_into_domain_types() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.command(), Command::Run);
        assert_eq!(c.dedup().window, Duration::from_secs(60));
        assert_eq!(c.dedup().max_open_windows.get(), 100_000);
        assert_eq!(c.clickhouse_compression, clickhouse::Compression::Lz4);
        let limits = c.batch_limits();
        assert_eq!(
            (limits.max_rows.get(), limits.max_bytes.get()),
            (10_000, 16 << 20)
        );
        assert_eq!(limits.max_age, Duration::from_secs(1));
        assert!(c.geoip_db.is_none() && !c.migrate_on_start);
    }

    #[test]
    fn kafka_properties_are_key_value_pairs() {
        let c = parse(&[
            "--kafka-property",
            "security.protocol=SASL_SSL,sasl.username=u",
        ])
        .unwrap();
        let client = c.kafka_client_config();
        assert_eq!(client.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(client.get("sasl.username"), Some("u"));
        assert!(parse(&["--kafka-property", "novalue"]).is_err());
    }

    #[test]
    fn migrate_is_a_subcommand_and_flags_go_anywhere() {
        let c = parse(&["migrate", "--clickhouse-url", "http://ch:8123"]).unwrap();
        assert_eq!(c.command(), Command::Migrate);
        assert_eq!(c.clickhouse_url, "http://ch:8123");
        let c = parse(&["--window-secs", "10", "run"]).unwrap();
        assert_eq!(
            (c.command(), c.window),
            (Command::Run, Duration::from_secs(10))
        );
    }

    #[test]
    fn recent_is_a_subcommand_with_its_own_flags() {
        let c = parse(&[
            "recent",
            "--project",
            "3",
            "--since-hours",
            "48",
            "--format",
            "tsv",
            "--clickhouse-database",
            "other",
        ])
        .unwrap();
        let Command::Recent(args) = c.command() else {
            panic!("not recent: {:?}", c.command());
        };
        assert_eq!((args.project, args.since_hours, args.limit), (3, 48, 20));
        assert_eq!(args.format, crate::recent::Format::Tsv);
        assert_eq!(c.clickhouse_database, "other");
        assert!(parse(&["recent"]).is_err(), "--project is required");
    }

    #[test]
    fn parses_writer_and_retention_flags() {
        let c = parse(&[
            "--project-retention",
            "7=30,8=10",
            "--clickhouse-retry-attempts",
            "5",
        ])
        .unwrap();
        assert_eq!(
            c.project_retention
                .iter()
                .map(|r| (r.project_id, r.days.get()))
                .collect::<Vec<_>>(),
            vec![(7, 30), (8, 10)]
        );
        assert_eq!(c.writer().retry.max_attempts.get(), 5);
        assert!(parse(&["--project-retention", "7"]).is_err());
        assert!(parse(&["--project-retention", "7=0"]).is_err());
        let retention = parse(&[]).unwrap().retention();
        assert_eq!(
            (retention.default_max_rows, retention.max_projects.get()),
            (1_000_000, 10_000)
        );
        let retention = parse(&["--project-max-rows", "0", "--retention-max-projects", "5"])
            .unwrap()
            .retention();
        assert_eq!(
            (retention.default_max_rows, retention.max_projects.get()),
            (0, 5)
        );
        assert!(parse(&["--retention-max-projects", "0"]).is_err());
    }

    #[test]
    fn the_cluster_is_optional_and_an_identifier() {
        assert_eq!(
            parse(&["migrate"]).unwrap().topology(),
            Topology::SingleNode
        );
        let c = parse(&["migrate", "--clickhouse-cluster", "palisade"]).unwrap();
        assert_eq!(c.topology(), Topology::Cluster("palisade".parse().unwrap()));
        assert!(parse(&["--clickhouse-cluster", "a;b"]).is_err());
    }

    #[test]
    fn refuses_settings_that_cannot_work_naming_the_flag() {
        assert_eq!(parse(&[]).unwrap().validate(), Ok(()));
        for flag in [
            "--clickhouse-timeout-ms",
            "--clickhouse-backoff-ms",
            "--misconfigured-retry-ms",
            "--shutdown-timeout-ms",
            "--batch-age-ms",
            "--dead-letter-timeout-ms",
            "--dead-letter-backoff-ms",
            "--kafka-retry-backoff-ms",
            "--admin-header-read-timeout-ms",
            "--admin-idle-timeout-ms",
        ] {
            let error = parse(&[flag, "0"]).unwrap().validate().unwrap_err();
            assert_eq!(error, ConfigError::Zero { flag }, "{flag}");
            assert!(error.to_string().contains(flag));
        }
        let error = parse(&[
            "--dead-letter-backoff-ms",
            "5000",
            "--dead-letter-max-backoff-ms",
            "10",
        ])
        .unwrap()
        .validate()
        .unwrap_err();
        assert!(
            error.to_string().contains("--dead-letter-max-backoff-ms"),
            "{error}"
        );
        let error = parse(&["--kafka-topic", "t", "--dead-letter-topic", "t"])
            .unwrap()
            .validate()
            .unwrap_err();
        assert_eq!(error, ConfigError::SameTopic("t".into()));
        assert!(parse(&["--admin-max-connections", "0"]).is_err());
        assert!(parse(&["--dead-letter-max-bytes", "0"]).is_err());
        // 0 means "no cache" for /readyz: allowed.
        assert_eq!(
            parse(&["--readyz-cache-ms", "0"]).unwrap().validate(),
            Ok(())
        );
    }

    #[test]
    fn rejects_a_zero_window_or_batch() {
        assert!(parse(&["--window-secs", "0"]).is_err());
        assert!(parse(&["--batch-rows", "0"]).is_err());
        assert!(parse(&["--max-open-windows", "0"]).is_err());
    }

    #[test]
    fn compression_is_lz4_or_none() {
        let none = parse(&["--clickhouse-compression", "none"]).unwrap();
        assert_eq!(none.clickhouse_compression, clickhouse::Compression::None);
        assert!(parse(&["--clickhouse-compression", "zstd"]).is_err());
    }
}
