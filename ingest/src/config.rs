//! The binary's configuration: one clap struct, every field with its unit and default, so
//! `palisade-ingest --help` is the reference.
//!
//! Tests build a [`Config`] with [`Config::for_tests`] (or `Config::try_parse_from([...])`), never
//! by setting environment variables.

use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize, ParseIntError};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::publish::KafkaConfig;

fn millis(s: &str) -> Result<Duration, ParseIntError> {
    s.parse::<u64>().map(Duration::from_millis)
}

fn secs(s: &str) -> Result<Duration, ParseIntError> {
    s.parse::<u64>().map(Duration::from_secs)
}

/// Configuration of `palisade-ingest`.
#[derive(Debug, Clone, Parser)]
#[command(name = "palisade-ingest", version, about)]
pub struct Config {
    /// Address of the public listener receiving reports. Default `0.0.0.0:8080`.
    #[arg(long, env = "PALISADE_PUBLIC_ADDR", default_value = "0.0.0.0:8080")]
    pub public_addr: SocketAddr,

    /// Address of the admin listener (`/healthz`, `/readyz`, `/metrics`). Default `127.0.0.1:9090`.
    #[arg(long, env = "PALISADE_ADMIN_ADDR", default_value = "127.0.0.1:9090")]
    pub admin_addr: SocketAddr,

    /// TOML file with the projects (keys, quotas, filters, privacy). Reloaded on SIGHUP and when
    /// its modification time or size changes. Default `projects.toml`.
    #[arg(long, env = "PALISADE_PROJECTS_FILE", default_value = "projects.toml")]
    pub projects_file: PathBuf,

    /// How often the projects file's modification time is checked, in milliseconds. Default 5000.
    #[arg(long = "projects-poll-interval-ms", env = "PALISADE_PROJECTS_POLL_INTERVAL_MS", default_value = "5000", value_parser = millis)]
    pub projects_poll_interval: Duration,

    /// PEM certificate chain for TLS on the public listener; TLS is on when this and `--tls-key`
    /// are set. Default: none (plain HTTP, e.g. behind a TLS-terminating proxy).
    #[arg(long, env = "PALISADE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key (PKCS#8, PKCS#1 or SEC1) matching `--tls-cert`. Default: none.
    #[arg(long, env = "PALISADE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Most simultaneously open public connections. At the cap the accept loop waits for a
    /// connection to close (new clients queue in the kernel backlog). Default 10000.
    #[arg(long, env = "PALISADE_MAX_CONNECTIONS", default_value = "10000")]
    pub max_connections: NonZeroUsize,

    /// Longest a client may take to send a request's headers (also the TLS handshake), in
    /// milliseconds. Default 10000.
    #[arg(long = "header-read-timeout-ms", env = "PALISADE_HEADER_READ_TIMEOUT_MS", default_value = "10000", value_parser = millis)]
    pub header_read_timeout: Duration,

    /// A keep-alive connection with no request in flight for this long is closed, in
    /// milliseconds. Default 75000.
    #[arg(long = "idle-timeout-ms", env = "PALISADE_IDLE_TIMEOUT_MS", default_value = "75000", value_parser = millis)]
    pub idle_timeout: Duration,

    /// Longest a client may take to send a request body, in milliseconds (then 408).
    /// Default 10000.
    #[arg(long = "body-read-timeout-ms", env = "PALISADE_BODY_READ_TIMEOUT_MS", default_value = "10000", value_parser = millis)]
    pub body_read_timeout: Duration,

    /// Largest request body as sent (compressed or not), in bytes (then 413). Default 1048576
    /// (1 MiB, like Sentry Relay).
    #[arg(long, env = "PALISADE_MAX_BODY_BYTES", default_value = "1048576")]
    pub max_body_bytes: NonZeroUsize,

    /// Largest body after gzip/deflate decompression, in bytes (then 413). Default 4194304 (4 MiB).
    #[arg(
        long,
        env = "PALISADE_MAX_DECOMPRESSED_BYTES",
        default_value = "4194304"
    )]
    pub max_decompressed_bytes: NonZeroUsize,

    /// Deepest JSON nesting accepted (then 400). Default 32.
    #[arg(long, env = "PALISADE_MAX_JSON_DEPTH", default_value = "32")]
    pub max_json_depth: usize,

    /// Most reports in one Reporting API batch (then 413). Default 100.
    #[arg(long, env = "PALISADE_MAX_BATCH_LEN", default_value = "100")]
    pub max_batch_len: usize,

    /// Largest normalised report, in bytes of its JSON as published to Kafka (unknown fields
    /// included). A bigger report is refused alone, `report_too_large`: counted as rejected in a
    /// batch's 202, or 413 when it is the body's only report. Default 65536 (64 KiB).
    #[arg(long, env = "PALISADE_MAX_REPORT_BYTES", default_value = "65536")]
    pub max_report_bytes: NonZeroUsize,

    /// Most JSON values (scalars, arrays, objects) in one body, counted by a scan of the raw
    /// bytes before the parser builds anything (then 413 `too_many_values`); bounds the parser's
    /// memory per request to about 100 bytes times this. Default 100000.
    #[arg(long, env = "PALISADE_MAX_JSON_VALUES", default_value = "100000")]
    pub max_json_values: NonZeroUsize,

    /// Most report requests processed at once (reading the body, parsing, publishing), across
    /// all connections. Beyond it requests are answered 503 at once. Bounds the memory held by
    /// bodies to about this times (`--max-body-bytes` + `--max-decompressed-bytes`).
    /// Default 1024.
    #[arg(long, env = "PALISADE_MAX_IN_FLIGHT_REQUESTS", default_value = "1024")]
    pub max_in_flight_requests: NonZeroUsize,

    /// Most idle report parsers (with their simd-json buffers) kept for reuse. Default 64.
    #[arg(long, env = "PALISADE_PARSER_POOL_SIZE", default_value = "64")]
    pub parser_pool_size: usize,

    /// Requests per second allowed from one client IP (then 429). Default 50.
    #[arg(long, env = "PALISADE_IP_RATE_PER_SECOND", default_value = "50")]
    pub ip_rate_per_second: NonZeroU32,

    /// Requests one client IP may send in a burst above its rate. Default 100.
    #[arg(long, env = "PALISADE_IP_BURST", default_value = "100")]
    pub ip_burst: NonZeroU32,

    /// Most client IPs tracked by the per-IP limiter. Above it, new IPs share one overflow limiter
    /// until the periodic sweep frees room. Default 100000.
    #[arg(long, env = "PALISADE_IP_MAX_TRACKED", default_value = "100000")]
    pub ip_max_tracked: NonZeroUsize,

    /// How often the per-IP limiter forgets IPs whose bucket is full again, in milliseconds.
    /// Default 10000.
    #[arg(long = "ip-sweep-interval-ms", env = "PALISADE_IP_SWEEP_INTERVAL_MS", default_value = "10000", value_parser = millis)]
    pub ip_sweep_interval: Duration,

    /// Take the client IP from the last entry of `X-Forwarded-For` instead of the socket peer.
    /// Only set it behind a proxy that overwrites that header. Default off.
    #[arg(long, env = "PALISADE_TRUST_FORWARDED_FOR")]
    pub trust_forwarded_for: bool,

    /// `Retry-After` sent with 503 when Kafka cannot take reports, in seconds. Default 30.
    #[arg(long = "unavailable-retry-after-secs", env = "PALISADE_UNAVAILABLE_RETRY_AFTER_SECS", default_value = "30", value_parser = secs)]
    pub unavailable_retry_after: Duration,

    /// On shutdown, longest wait for in-flight requests to finish, in milliseconds. Default 10000.
    #[arg(long = "drain-timeout-ms", env = "PALISADE_DRAIN_TIMEOUT_MS", default_value = "10000", value_parser = millis)]
    pub drain_timeout: Duration,

    /// On shutdown, longest wait for the Kafka producer to deliver what it holds, in
    /// milliseconds. Default 10000.
    #[arg(long = "flush-timeout-ms", env = "PALISADE_FLUSH_TIMEOUT_MS", default_value = "10000", value_parser = millis)]
    pub flush_timeout: Duration,

    /// Longest `/readyz` waits for Kafka metadata, in milliseconds. Default 2000.
    #[arg(long = "ready-timeout-ms", env = "PALISADE_READY_TIMEOUT_MS", default_value = "2000", value_parser = millis)]
    pub ready_timeout: Duration,

    /// Log as JSON lines instead of human-readable text. Default off.
    #[arg(long, env = "PALISADE_LOG_JSON")]
    pub log_json: bool,

    #[command(flatten)]
    pub kafka: KafkaConfig,
}

impl Config {
    /// A config with every default except the projects file and the Kafka brokers, plus
    /// `extra` flags (e.g. `["--max-body-bytes", "1000"]`). For tests: reads no files and
    /// changes no environment (variables already set in the environment still apply).
    pub fn for_tests<'a>(
        projects_file: &std::path::Path,
        kafka_brokers: &str,
        extra: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, clap::Error> {
        let mut args: Vec<std::ffi::OsString> = vec![
            "palisade-ingest".into(),
            "--projects-file".into(),
            projects_file.as_os_str().to_owned(),
            "--kafka-brokers".into(),
            kafka_brokers.into(),
        ];
        args.extend(extra.into_iter().map(Into::into));
        Self::try_parse_from(args)
    }

    /// The parser limits derived from this config.
    pub fn parse_limits(&self) -> schemas::ParseLimits {
        schemas::ParseLimits {
            max_depth: self.max_json_depth,
            max_batch_len: self.max_batch_len,
            max_report_bytes: self.max_report_bytes.get(),
            max_values: self.max_json_values.get(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse_into_domain_types() {
        let c = Config::for_tests(std::path::Path::new("p.toml"), "127.0.0.1:1", []).unwrap();
        assert_eq!(c.max_body_bytes.get(), 1 << 20);
        assert_eq!(c.body_read_timeout, Duration::from_secs(10));
        assert_eq!(c.parse_limits(), schemas::ParseLimits::default());
        assert_eq!(c.kafka.brokers, "127.0.0.1:1");
        assert!(c.tls_cert.is_none());
    }

    #[test]
    fn tls_needs_both_files() {
        let r = Config::for_tests(
            std::path::Path::new("p.toml"),
            "x:1",
            ["--tls-cert", "c.pem"],
        );
        assert!(r.is_err());
    }
}
