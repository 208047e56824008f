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

/// A configuration ingest refuses to start with.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{flag} must be greater than zero")]
    Zero { flag: &'static str },
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

    // --- Client identity, privacy and the projects file (issue 10, items 4, 5, 7, 12) ---
    /// Proxies (load balancers, ingress controllers) whose `X-Forwarded-For` entries are
    /// believed, as a comma-separated list of CIDRs or addresses (`10.0.0.0/8,fd00::/8`). The
    /// header is walked right to left past these hops; the first other address is the client.
    /// A peer outside the list is the client whatever it sends. Default: none (the socket peer is
    /// the client, headers ignored).
    #[arg(long, env = "PALISADE_TRUSTED_PROXIES", value_delimiter = ',', value_parser = crate::client::parse_net)]
    pub trusted_proxies: Vec<ipnet::IpNet>,

    /// Deprecated (use `--trusted-proxies`): trust the socket peer, whatever its address, as a
    /// proxy, so the last `X-Forwarded-For` entry is the client. Default off.
    #[arg(long, env = "PALISADE_TRUST_FORWARDED_FOR")]
    pub trust_forwarded_for: bool,

    /// Prefix length that makes one IPv6 client: every address of one /64 (one home or one
    /// server, by convention) shares one per-IP rate bucket, in-flight share and connection
    /// cap. 1-128. Default 64.
    #[arg(long, env = "PALISADE_IP_LIMIT_IPV6_PREFIX", default_value = "64", value_parser = clap::value_parser!(u8).range(1..=128))]
    pub ip_limit_ipv6_prefix: u8,

    /// Prefix length that makes one IPv4 client (rate bucket, in-flight share, connection cap).
    /// 1-32. Default 32 (one address).
    #[arg(long, env = "PALISADE_IP_LIMIT_IPV4_PREFIX", default_value = "32", value_parser = clap::value_parser!(u8).range(1..=32))]
    pub ip_limit_ipv4_prefix: u8,

    /// Overflow buckets of the per-IP limiter: when `--ip-max-tracked` clients are tracked, a new
    /// client is limited by the bucket its network (IPv4 /24, IPv6 /48) hashes to, so one
    /// network's flood of new addresses drains one bucket, not every newcomer's. 8 bytes each.
    /// Default 4096.
    #[arg(long, env = "PALISADE_IP_OVERFLOW_BUCKETS", default_value = "4096")]
    pub ip_overflow_buckets: NonZeroUsize,

    /// File holding the salt of `client_ip = "hash"` (e.g. a mounted Kubernetes Secret); one
    /// trailing newline is ignored. At least 16 bytes, not a placeholder, or ingest refuses to
    /// start. Read at start-up only. Default: none (then `--ip-hash-salt` or the project's
    /// `ip_salt`).
    #[arg(
        long,
        env = "PALISADE_IP_HASH_SALT_FILE",
        conflicts_with = "ip_hash_salt"
    )]
    pub ip_hash_salt_file: Option<PathBuf>,

    /// The salt itself, for when a file is not practical (prefer the environment to the command
    /// line, which other local users can list). Same rules as `--ip-hash-salt-file`. Default: none.
    #[arg(long, env = "PALISADE_IP_HASH_SALT", hide_env_values = true, value_parser = crate::privacy::Salt::parse)]
    pub ip_hash_salt: Option<crate::privacy::Salt>,

    /// A changed projects file is applied only once its modification time and size stayed the
    /// same for this long, in milliseconds (a file being written is not read half-way). 0 turns
    /// the wait off. Default 500.
    #[arg(long = "projects-settle-ms", env = "PALISADE_PROJECTS_SETTLE_MS", default_value = "500", value_parser = millis)]
    pub projects_settle: Duration,
    // --- end of client identity, privacy and projects file ---
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

    // ---- Fair sharing of connections and in-flight requests (README "Connection-level limits").
    /// Most simultaneously open public connections from one client (a peer address's network
    /// by `--ip-limit-ipv4-prefix` / `--ip-limit-ipv6-prefix`: IPv6 /64 by default); a
    /// connection over it is closed as soon as it is accepted. Not applied with
    /// `--trust-forwarded-for` (every peer is then a proxy carrying many clients). Default 256.
    #[arg(long, env = "PALISADE_MAX_CONNECTIONS_PER_IP", default_value = "256")]
    pub max_connections_per_ip: NonZeroUsize,

    /// Most report requests in flight from one client (the network of the per-IP rate limit:
    /// IPv6 /64 by default), then 429 `client_in_flight`. Default: `--max-in-flight-requests` / 16
    /// (64 at its default), at least 1.
    #[arg(long, env = "PALISADE_MAX_IN_FLIGHT_PER_IP")]
    pub max_in_flight_per_ip: Option<NonZeroUsize>,

    /// Most report requests in flight for one project, then 429 `project_in_flight`. Default:
    /// `--max-in-flight-requests` / 4 (256 at its default), at least 1.
    #[arg(long, env = "PALISADE_MAX_IN_FLIGHT_PER_PROJECT")]
    pub max_in_flight_per_project: Option<NonZeroUsize>,

    /// Slowest a connection may deliver a request body once `--body-grace-ms` has passed, in
    /// bytes per second, measured on the connection's received bytes while the body is awaited
    /// (then 408 `body_too_slow`); 0 turns the check off. Default 16384 (16 KiB/s).
    #[arg(
        long,
        env = "PALISADE_MIN_BODY_BYTES_PER_SECOND",
        default_value = "16384"
    )]
    pub min_body_bytes_per_second: u64,

    /// How long after the request head a body may send nothing before
    /// `--min-body-bytes-per-second` applies, in milliseconds. Default 2000.
    #[arg(long = "body-grace-ms", env = "PALISADE_BODY_GRACE_MS", default_value = "2000", value_parser = millis)]
    pub body_grace: Duration,

    /// Most concurrent HTTP/2 streams (requests) one connection may open; more are refused by
    /// HTTP/2 itself (`REFUSED_STREAM`, which clients retry). Default 16.
    #[arg(
        long,
        env = "PALISADE_HTTP2_MAX_CONCURRENT_STREAMS",
        default_value = "16"
    )]
    pub http2_max_concurrent_streams: NonZeroU32,

    // ---- TLS certificate reload.
    /// How often the `--tls-cert` and `--tls-key` files are checked for changes (modification
    /// time and size), in milliseconds; a changed pair is loaded for new connections (also on
    /// SIGHUP). A pair that does not load keeps the old one and logs an error. Default 10000.
    #[arg(long = "tls-reload-interval-ms", env = "PALISADE_TLS_RELOAD_INTERVAL_MS", default_value = "10000", value_parser = millis)]
    pub tls_reload_interval: Duration,

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

    /// `--max-in-flight-per-ip`, or its default (1/16 of the global cap, at least 1).
    pub fn in_flight_per_ip(&self) -> usize {
        self.max_in_flight_per_ip.map_or(
            (self.max_in_flight_requests.get() / 16).max(1),
            NonZeroUsize::get,
        )
    }

    /// `--max-in-flight-per-project`, or its default (1/4 of the global cap, at least 1).
    pub fn in_flight_per_project(&self) -> usize {
        self.max_in_flight_per_project.map_or(
            (self.max_in_flight_requests.get() / 4).max(1),
            NonZeroUsize::get,
        )
    }

    /// Refuses values that would panic or make ingest refuse everything, naming the flag. Run
    /// at start-up (by [`crate::run`]) before anything is bound or spawned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let durations = [
            ("--projects-poll-interval-ms", self.projects_poll_interval),
            ("--ip-sweep-interval-ms", self.ip_sweep_interval),
            ("--tls-reload-interval-ms", self.tls_reload_interval),
            ("--header-read-timeout-ms", self.header_read_timeout),
            ("--idle-timeout-ms", self.idle_timeout),
            ("--body-read-timeout-ms", self.body_read_timeout),
            ("--drain-timeout-ms", self.drain_timeout),
            ("--flush-timeout-ms", self.flush_timeout),
            ("--ready-timeout-ms", self.ready_timeout),
        ];
        if let Some((flag, _)) = durations.iter().find(|(_, d)| d.is_zero()) {
            return Err(ConfigError::Zero { flag });
        }
        if self.kafka.message_timeout_ms == 0 {
            return Err(ConfigError::Zero {
                flag: "--kafka-message-timeout-ms",
            });
        }
        if self.max_json_depth == 0 {
            return Err(ConfigError::Zero {
                flag: "--max-json-depth",
            });
        }
        if self.max_batch_len == 0 {
            return Err(ConfigError::Zero {
                flag: "--max-batch-len",
            });
        }
        Ok(())
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

    fn parse(extra: &[&str]) -> Config {
        Config::for_tests(std::path::Path::new("p.toml"), "x:1", extra.iter().copied()).unwrap()
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(parse(&[]).validate(), Ok(()));
    }

    /// Regression: a zero interval panicked in `tokio::time::interval` after start-up, and zero
    /// limits or timeouts refused every request.
    #[test]
    fn values_that_would_panic_or_refuse_everything_are_refused_naming_the_flag() {
        for flag in [
            "--projects-poll-interval-ms",
            "--ip-sweep-interval-ms",
            "--tls-reload-interval-ms",
            "--header-read-timeout-ms",
            "--idle-timeout-ms",
            "--body-read-timeout-ms",
            "--drain-timeout-ms",
            "--flush-timeout-ms",
            "--ready-timeout-ms",
            "--kafka-message-timeout-ms",
            "--max-json-depth",
            "--max-batch-len",
        ] {
            let error = parse(&[flag, "0"]).validate().unwrap_err();
            assert_eq!(error, ConfigError::Zero { flag }, "{flag}");
            assert_eq!(
                error.to_string(),
                format!("{flag} must be greater than zero")
            );
            assert_eq!(parse(&[flag, "1"]).validate(), Ok(()), "{flag} = 1 is fine");
        }
        for flag in [
            "--max-connections",
            "--max-connections-per-ip",
            "--max-in-flight-per-ip",
            "--max-in-flight-per-project",
            "--http2-max-concurrent-streams",
            "--ip-burst",
        ] {
            let zero = Config::for_tests(std::path::Path::new("p.toml"), "x:1", [flag, "0"]);
            assert!(zero.is_err(), "{flag} 0 is refused by its type");
        }
    }

    #[test]
    fn in_flight_shares_default_to_fractions_of_the_global_cap() {
        let c = parse(&[]);
        assert_eq!((c.in_flight_per_ip(), c.in_flight_per_project()), (64, 256));
        let small = parse(&["--max-in-flight-requests", "2"]);
        assert_eq!(
            (small.in_flight_per_ip(), small.in_flight_per_project()),
            (1, 1)
        );
        let set = parse(&[
            "--max-in-flight-per-ip",
            "3",
            "--max-in-flight-per-project",
            "9",
        ]);
        assert_eq!(
            (set.in_flight_per_ip(), set.in_flight_per_project()),
            (3, 9)
        );
    }

    /// Issue 10, items 4, 5, 7, 12: the client identity and privacy flags.
    #[test]
    fn client_identity_and_privacy_flags() {
        let p = std::path::Path::new("p.toml");
        let c = Config::for_tests(p, "x:1", []).unwrap();
        assert!(c.trusted_proxies.is_empty() && !c.trust_forwarded_for);
        assert_eq!((c.ip_limit_ipv4_prefix, c.ip_limit_ipv6_prefix), (32, 64));
        assert_eq!(c.ip_overflow_buckets.get(), 4096);
        assert_eq!(c.projects_settle, Duration::from_millis(500));
        assert!(c.ip_hash_salt.is_none() && c.ip_hash_salt_file.is_none());
        let c = Config::for_tests(
            p,
            "x:1",
            ["--trusted-proxies", "10.0.0.0/8,192.168.1.1,fd00::/8"],
        )
        .unwrap();
        assert_eq!(c.trusted_proxies.len(), 3);
        for bad in [
            ["--trusted-proxies", "10.0.0.0/33"],
            ["--ip-limit-ipv6-prefix", "0"],
            ["--ip-limit-ipv4-prefix", "33"],
            ["--ip-overflow-buckets", "0"],
            ["--ip-hash-salt", "short"],
        ] {
            assert!(Config::for_tests(p, "x:1", bad).is_err(), "{bad:?}");
        }
        let salted = Config::for_tests(p, "x:1", ["--ip-hash-salt", "8f0c3a9d2e7b4f61"]).unwrap();
        assert!(
            !format!("{salted:?}").contains("8f0c3a9d2e7b4f61"),
            "the salt is never printed"
        );
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
