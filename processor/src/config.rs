//! The processor's configuration: one clap struct, every field with its unit and default, so
//! `palisade-processor --help` is the reference. `palisade-processor [run]` consumes;
//! `palisade-processor migrate` applies the ClickHouse migrations and exits.
//!
//! Tests build a [`Config`] with [`Config::try_parse_from`], never by setting the environment.

use std::net::SocketAddr;
use std::num::{NonZeroUsize, ParseIntError};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::batch::BatchLimits;
use crate::dedup::DedupConfig;

fn millis(s: &str) -> Result<Duration, ParseIntError> {
    s.parse::<u64>().map(Duration::from_millis)
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

/// What the binary does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Consume reports and write them to ClickHouse (the default).
    Run,
    /// Apply the pending ClickHouse migrations, then exit.
    Migrate,
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

    /// Most rows in one ClickHouse insert. Default 10000.
    #[arg(
        long,
        env = "PALISADE_BATCH_ROWS",
        default_value = "10000",
        global = true
    )]
    pub batch_rows: NonZeroUsize,

    /// Most estimated RowBinary bytes in one insert. Default 16777216 (16 MiB).
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

    /// Address of the admin listener (`/metrics`, `/healthz`). Default `127.0.0.1:9091`.
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

    /// Log as JSON lines instead of human-readable text. Default off.
    #[arg(long, env = "PALISADE_LOG_JSON", global = true)]
    pub log_json: bool,
}

impl Config {
    /// The subcommand, `run` when none was given.
    pub fn command(&self) -> Command {
        self.command.unwrap_or(Command::Run)
    }

    pub fn dedup(&self) -> DedupConfig {
        DedupConfig {
            window: self.window,
            grace: self.grace,
            idle_close: self.idle_close,
            max_open_windows: self.max_open_windows,
        }
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
        let limits = c.batch_limits();
        assert_eq!(
            (limits.max_rows.get(), limits.max_bytes.get()),
            (10_000, 16 << 20)
        );
        assert_eq!(limits.max_age, Duration::from_secs(1));
        assert!(c.geoip_db.is_none() && !c.migrate_on_start);
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
    fn rejects_a_zero_window_or_batch() {
        assert!(parse(&["--window-secs", "0"]).is_err());
        assert!(parse(&["--batch-rows", "0"]).is_err());
        assert!(parse(&["--max-open-windows", "0"]).is_err());
    }
}
