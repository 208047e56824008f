//! `palisade-api`'s configuration: one clap `Config` (every flag also an environment variable),
//! validated at start-up by [`Config::validate`].

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// The tenant API of Palisade: violation groups, mutes, deletes, resolutions and a proposed
/// policy, read from the ClickHouse tables the processor writes.
#[derive(Debug, Clone, Parser)]
#[command(name = "palisade-api", version)]
pub struct Config {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub clickhouse: ClickHouseConfig,

    #[command(flatten)]
    pub server: ServerConfig,

    #[command(flatten)]
    pub limits: Limits,

    #[command(flatten)]
    pub ui: UiConfig,

    #[command(flatten)]
    pub resolution: ResolutionConfig,

    #[command(flatten)]
    pub alerts: AlertsConfig,

    #[command(flatten)]
    pub projects: ProjectsConfig,

    /// Log as JSON lines instead of human-readable text. Default: off.
    #[arg(long, env = "PALISADE_API_LOG_JSON", global = true)]
    pub log_json: bool,
}

/// What the binary does; `serve` when no subcommand is given.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Serve the HTTP API (the default).
    Serve,
    /// Manage API tokens directly in ClickHouse (bootstrap, without a running server).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Only render ingest's projects file (`--projects-file-out`) from ClickHouse, every
    /// `--projects-file-refresh-secs`, serving nothing: a sidecar beside ingest where ingest
    /// cannot share the API's disk (deploy/kubernetes-overlays/projects-from-api).
    ProjectsFile {
        /// Render once and exit (an init container): exit 1 when ClickHouse cannot be read.
        /// Writes the file even when no project exists yet, so ingest can start.
        #[arg(long)]
        once: bool,
    },
}

/// `palisade-api token ...`.
#[derive(Debug, Clone, Subcommand)]
pub enum TokenCommand {
    /// Create a project token and print it once on stdout (only its SHA-256 is stored). A
    /// running server sees it within `--token-refresh-secs`.
    Create {
        /// The project the token may read and change.
        #[arg(long)]
        project: u64,
    },
}

/// Where the API's data lives.
#[derive(Debug, Clone, Args)]
pub struct ClickHouseConfig {
    /// ClickHouse HTTP URL. Default: http://127.0.0.1:8123.
    #[arg(
        long,
        env = "PALISADE_CLICKHOUSE_URL",
        default_value = "http://127.0.0.1:8123",
        global = true
    )]
    pub clickhouse_url: String,
    /// Database holding `reports` and the API's tables (migration 005). Default: palisade.
    #[arg(
        long,
        env = "PALISADE_CLICKHOUSE_DATABASE",
        default_value = "palisade",
        global = true
    )]
    pub clickhouse_database: String,
    /// ClickHouse user. Default: default.
    #[arg(
        long,
        env = "PALISADE_CLICKHOUSE_USER",
        default_value = "default",
        global = true
    )]
    pub clickhouse_user: String,
    /// ClickHouse password. Default: empty.
    #[arg(
        long,
        env = "PALISADE_CLICKHOUSE_PASSWORD",
        default_value = "",
        hide_env_values = true,
        global = true
    )]
    pub clickhouse_password: String,
    /// ClickHouse cluster (a `remote_servers` name) the schema was migrated to (the
    /// processor's `--clickhouse-cluster`, same environment variable). With it, a group's
    /// delete goes `ON CLUSTER` to every shard's `reports_local` (a Distributed table cannot be
    /// mutated) and inserts wait for every shard (`insert_distributed_sync`). A bare
    /// identifier. Default: none (a single node).
    #[arg(long, env = "PALISADE_CLICKHOUSE_CLUSTER", global = true)]
    pub clickhouse_cluster: Option<String>,
    /// Longest wait for one ClickHouse query, in milliseconds; a slower query answers 503.
    /// Default: 10000.
    #[arg(
        long,
        env = "PALISADE_API_CLICKHOUSE_TIMEOUT_MS",
        default_value_t = 10_000,
        global = true
    )]
    pub clickhouse_timeout_ms: u64,
}

impl ClickHouseConfig {
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.clickhouse_timeout_ms)
    }

    /// A client for the configured database (validation off: ClickHouse 18.16 has no
    /// `RowBinaryWithNamesAndTypes`). On a cluster, an insert through a Distributed table
    /// returns once every shard has the row, so the next read sees it from any node.
    pub fn client(&self) -> clickhouse::Client {
        let client = clickhouse::Client::default()
            .with_url(&self.clickhouse_url)
            .with_database(&self.clickhouse_database)
            .with_user(&self.clickhouse_user)
            .with_password(&self.clickhouse_password)
            .with_validation(false);
        match self.clickhouse_cluster {
            Some(_) => client.with_setting("insert_distributed_sync", "1"),
            None => client,
        }
    }

    /// The store over [`Self::client`], with the cluster when there is one.
    pub fn store(&self) -> crate::store::Store {
        let cluster = self
            .clickhouse_cluster
            .as_ref()
            .map(|cluster| crate::store::OnCluster {
                database: self.clickhouse_database.clone(),
                cluster: cluster.clone(),
            });
        crate::store::Store::new(self.client(), self.timeout()).on_cluster(cluster)
    }
}

/// The HTTP listener and who may use it.
#[derive(Debug, Clone, Args)]
pub struct ServerConfig {
    /// Address of the HTTP API. Default: 127.0.0.1:8088.
    #[arg(long, env = "PALISADE_API_ADDR", default_value = "127.0.0.1:8088")]
    pub addr: SocketAddr,
    /// Admin tokens, comma-separated (at least 32 characters each): they manage every project
    /// and create project tokens. Hashed (SHA-256) at start; never logged. Default: none.
    #[arg(
        long,
        env = "PALISADE_API_ADMIN_TOKENS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub admin_tokens: Vec<String>,
    /// How often the project tokens are re-read from ClickHouse, in seconds (a token created
    /// or revoked elsewhere is seen within this; the API's own changes are seen at once).
    /// Default: 5.
    #[arg(long, env = "PALISADE_API_TOKEN_REFRESH_SECS", default_value_t = 5)]
    pub token_refresh_secs: u64,
    /// Most project tokens held in memory; more active tokens than this fails the reload (the
    /// previous set stays). Every request compares its token hash with each one in constant
    /// time, so this also bounds the per-request cost. Default: 10000.
    #[arg(long, env = "PALISADE_API_MAX_TOKENS", default_value_t = 10_000)]
    pub max_tokens: usize,
    /// Most open connections; beyond it new clients wait in the kernel backlog. Default: 256.
    #[arg(long, env = "PALISADE_API_MAX_CONNECTIONS", default_value_t = 256)]
    pub max_connections: usize,
    /// Time to receive a request head (and the first request of a connection), in
    /// milliseconds. Default: 5000.
    #[arg(
        long,
        env = "PALISADE_API_HEADER_READ_TIMEOUT_MS",
        default_value_t = 5_000
    )]
    pub header_read_timeout_ms: u64,
    /// A connection with no request in flight for this long is closed, in milliseconds.
    /// Default: 30000.
    #[arg(long, env = "PALISADE_API_IDLE_TIMEOUT_MS", default_value_t = 30_000)]
    pub idle_timeout_ms: u64,
    /// Time to receive a request body, in milliseconds. Default: 5000.
    #[arg(long, env = "PALISADE_API_BODY_TIMEOUT_MS", default_value_t = 5_000)]
    pub body_timeout_ms: u64,
    /// On shutdown, longest wait for in-flight requests, in milliseconds. Default: 10000.
    #[arg(long, env = "PALISADE_API_DRAIN_TIMEOUT_MS", default_value_t = 10_000)]
    pub drain_timeout_ms: u64,
}

/// Bounds of requests and answers.
#[derive(Debug, Clone, Args)]
pub struct Limits {
    /// Largest request body, in bytes. Default: 4096.
    #[arg(long, env = "PALISADE_API_MAX_BODY_BYTES", default_value_t = 4096)]
    pub max_body_bytes: usize,
    /// Groups per page when `limit` is not given. Default: 50.
    #[arg(long, env = "PALISADE_API_DEFAULT_PAGE_SIZE", default_value_t = 50)]
    pub default_page_size: u32,
    /// Longest `q` search text of a listing, in bytes. Default: 200.
    #[arg(long, env = "PALISADE_API_MAX_SEARCH_BYTES", default_value_t = 200)]
    pub max_search_bytes: usize,
    /// Longest `kind`, `directive` or `host` filter of a listing, in bytes. Default: 255.
    #[arg(long, env = "PALISADE_API_MAX_FILTER_BYTES", default_value_t = 255)]
    pub max_filter_bytes: usize,
    /// Largest `limit` a request may ask for (groups per page). Default: 500.
    #[arg(long, env = "PALISADE_API_MAX_PAGE_SIZE", default_value_t = 500)]
    pub max_page_size: u32,
    /// Range of a listing when `since` is not given, in hours before now. Default: 720 (30 days).
    #[arg(long, env = "PALISADE_API_DEFAULT_RANGE_HOURS", default_value_t = 720)]
    pub default_range_hours: u64,
    /// Sample rows in a group's details. Default: 5.
    #[arg(long, env = "PALISADE_API_SAMPLES", default_value_t = 5)]
    pub samples: u32,
    /// Hours of a group's time series, ending at its last hour. Default: 48.
    #[arg(long, env = "PALISADE_API_SERIES_HOURS", default_value_t = 48)]
    pub series_hours: u32,
    /// Most resolutions listed, and most groups considered for the proposed policy.
    /// Default: 1000.
    #[arg(long, env = "PALISADE_API_MAX_RESOLUTIONS", default_value_t = 1000)]
    pub max_resolutions: u32,
}

/// The web UI (`/ui/`).
#[derive(Debug, Clone, Args)]
pub struct UiConfig {
    /// Where browsers report violations of the UI's own CSP: a Palisade ingest endpoint, e.g.
    /// `https://palisade.example/api/1/security/?sentry_key=KEY`: sent as `report-uri`, and for
    /// an https URL also as `report-to` via `Reporting-Endpoints`. An http(s) URL without `;`,
    /// `,`, `"` or a fragment. Default: none (the CSP has no reporting directive).
    #[arg(long, env = "PALISADE_API_UI_CSP_REPORT_URI")]
    pub ui_csp_report_uri: Option<url::Url>,
}

/// When a resolution is proposed without a human applying it.
#[derive(Debug, Clone, Args)]
pub struct ResolutionConfig {
    /// A resolution qualifies with at least this many occurrences. Default: 10.
    #[arg(long, env = "PALISADE_API_MIN_OCCURRENCES", default_value_t = 10)]
    pub min_occurrences: u64,
    /// ... AND from at least this many distinct client networks (/24 for IPv4, /48 for IPv6,
    /// else the stored client value), so one sender cannot get an origin proposed. Default: 3.
    #[arg(long, env = "PALISADE_API_MIN_CLIENT_NETWORKS", default_value_t = 3)]
    pub min_client_networks: u64,
}

/// Alert evaluation and webhook delivery (see `crate::alerts`).
#[derive(Debug, Clone, Args)]
pub struct AlertsConfig {
    /// How often the alert rules are evaluated, in seconds; 0 turns evaluation off (run it on
    /// ONE instance: two evaluators may fire an alert twice). Default: 60.
    #[arg(long, env = "PALISADE_API_ALERT_INTERVAL_SECS", default_value_t = 60)]
    pub alert_interval_secs: u64,
    /// "New" means first seen within this many seconds before the evaluation (must be at least
    /// the interval). Default: 3600.
    #[arg(long, env = "PALISADE_API_ALERT_LOOKBACK_SECS", default_value_t = 3600)]
    pub alert_lookback_secs: u64,
    /// Default spike factor N of a project without settings: a group spikes when its last hour
    /// has at least N times its trailing 24 h hourly rate. Default: 20.
    #[arg(long, env = "PALISADE_API_ALERT_SPIKE_FACTOR", default_value_t = 20)]
    pub alert_spike_factor: u32,
    /// Default minimum occurrences in the last hour for a spike. Default: 50.
    #[arg(long, env = "PALISADE_API_ALERT_SPIKE_MIN_COUNT", default_value_t = 50)]
    pub alert_spike_min_count: u64,
    /// A group that spiked does not fire another spike alert for this many seconds.
    /// Default: 86400.
    #[arg(
        long,
        env = "PALISADE_API_ALERT_SPIKE_COOLDOWN_SECS",
        default_value_t = 86_400
    )]
    pub alert_spike_cooldown_secs: u64,
    /// Most alerts fired per project, rule and evaluation (the rest fire at the next
    /// evaluations). Default: 100.
    #[arg(
        long,
        env = "PALISADE_API_ALERT_MAX_PER_EVALUATION",
        default_value_t = 100
    )]
    pub alert_max_per_evaluation: u32,
    /// Most projects evaluated per evaluation. Default: 10000.
    #[arg(
        long,
        env = "PALISADE_API_ALERT_MAX_PROJECTS",
        default_value_t = 10_000
    )]
    pub alert_max_projects: u32,
    /// Most webhook endpoints per project. Default: 5.
    #[arg(long, env = "PALISADE_API_MAX_WEBHOOKS", default_value_t = 5)]
    pub max_webhooks: usize,
    /// Longest webhook URL, in bytes. Default: 2048.
    #[arg(
        long,
        env = "PALISADE_API_MAX_WEBHOOK_URL_BYTES",
        default_value_t = 2048
    )]
    pub max_webhook_url_bytes: usize,
    /// Deliveries waiting to be sent; beyond it a delivery is dropped and logged as `dropped`.
    /// Default: 1000.
    #[arg(long, env = "PALISADE_API_WEBHOOK_QUEUE", default_value_t = 1000)]
    pub webhook_queue: usize,
    /// Deliveries in flight at once (each with its retries). Default: 4.
    #[arg(long, env = "PALISADE_API_WEBHOOK_CONCURRENCY", default_value_t = 4)]
    pub webhook_concurrency: usize,
    /// Attempts per delivery (first try included). Default: 5.
    #[arg(long, env = "PALISADE_API_WEBHOOK_MAX_ATTEMPTS", default_value_t = 5)]
    pub webhook_max_attempts: u32,
    /// Wait before the first retry, in milliseconds; doubled after each failure. Default: 1000.
    #[arg(long, env = "PALISADE_API_WEBHOOK_BACKOFF_MS", default_value_t = 1_000)]
    pub webhook_backoff_ms: u64,
    /// Longest wait between retries, in milliseconds. Default: 60000.
    #[arg(
        long,
        env = "PALISADE_API_WEBHOOK_MAX_BACKOFF_MS",
        default_value_t = 60_000
    )]
    pub webhook_max_backoff_ms: u64,
    /// Time for one webhook request (connect to response head), in milliseconds. Default: 5000.
    #[arg(long, env = "PALISADE_API_WEBHOOK_TIMEOUT_MS", default_value_t = 5_000)]
    pub webhook_timeout_ms: u64,
    /// Accept webhook URLs whose host is a loopback, private, link-local or unspecified IP
    /// address or `localhost` (refused by default: a tenant must not make the API call internal
    /// services). Host names are not resolved for this check. Default: off.
    #[arg(long, env = "PALISADE_API_WEBHOOK_ALLOW_PRIVATE")]
    pub webhook_allow_private: bool,
}

impl AlertsConfig {
    fn validate(&self) -> Result<(), InvalidConfig> {
        let fail = |what: &str| Err(InvalidConfig(what.to_owned()));
        if self.alert_interval_secs > 0 && self.alert_lookback_secs < self.alert_interval_secs {
            return fail("alert-lookback-secs must be >= alert-interval-secs");
        }
        if self.alert_spike_factor == 0 || self.alert_spike_min_count == 0 {
            return fail("alert-spike-factor and alert-spike-min-count must be > 0");
        }
        if self.alert_max_per_evaluation == 0
            || self.alert_max_projects == 0
            || self.max_webhooks == 0
            || self.max_webhook_url_bytes == 0
            || self.webhook_queue == 0
            || self.webhook_concurrency == 0
            || self.webhook_max_attempts == 0
            || self.webhook_max_attempts > 20
            || self.webhook_timeout_ms == 0
        {
            return fail(
                "alert-max-per-evaluation, alert-max-projects, max-webhooks, max-webhook-url-bytes, webhook-queue, webhook-concurrency and webhook-timeout-ms must be > 0, webhook-max-attempts 1..=20",
            );
        }
        if self.webhook_backoff_ms > self.webhook_max_backoff_ms {
            return fail("webhook-backoff-ms must be <= webhook-max-backoff-ms");
        }
        Ok(())
    }
}

/// Key management: projects and public keys, and the projects file rendered for ingest.
#[derive(Debug, Clone, Args)]
pub struct ProjectsConfig {
    /// Where to write the projects file ingest reads (its `--projects-file`), rendered from
    /// ClickHouse after every project or key change, at start-up (only once a project exists:
    /// a static file is never emptied) and every `--projects-file-refresh-secs`. Written
    /// atomically (temporary file in the same directory + rename), ending with
    /// `# palisade:end`. Default: none (keys are stored but no file is written).
    #[arg(long, env = "PALISADE_API_PROJECTS_FILE_OUT")]
    pub projects_file_out: Option<std::path::PathBuf>,
    /// How often the projects file is re-rendered (another API instance's changes, a failed
    /// write), in seconds. Default: 5.
    #[arg(
        long,
        env = "PALISADE_API_PROJECTS_FILE_REFRESH_SECS",
        default_value_t = 5
    )]
    pub projects_file_refresh_secs: u64,
    /// Most projects (creating one more answers 409). Default: 10000.
    #[arg(long, env = "PALISADE_API_MAX_PROJECTS", default_value_t = 10_000)]
    pub max_projects: usize,
    /// Most non-revoked public keys per project. Default: 20.
    #[arg(long, env = "PALISADE_API_MAX_KEYS_PER_PROJECT", default_value_t = 20)]
    pub max_keys_per_project: usize,
    /// Most `allowed_hosts` patterns per project. Default: 100.
    #[arg(long, env = "PALISADE_API_MAX_ALLOWED_HOSTS", default_value_t = 100)]
    pub max_allowed_hosts: usize,
    /// Longest project name, in bytes. Default: 200.
    #[arg(
        long,
        env = "PALISADE_API_MAX_PROJECT_NAME_BYTES",
        default_value_t = 200
    )]
    pub max_project_name_bytes: usize,
    /// Quota of a new project when none is given, in reports per second. Default: 100.
    #[arg(
        long,
        env = "PALISADE_API_DEFAULT_QUOTA_PER_SECOND",
        default_value_t = 100
    )]
    pub default_quota_per_second: u32,
    /// Burst of a new project's quota when none is given, in reports. Default: 1000.
    #[arg(long, env = "PALISADE_API_DEFAULT_QUOTA_BURST", default_value_t = 1000)]
    pub default_quota_burst: u32,
    /// Longest `storage.retention_days` a project may be given, in days (0, the processor's
    /// `--retention-days`, is always accepted). Default: 3650.
    #[arg(
        long,
        env = "PALISADE_API_MAX_PROJECT_RETENTION_DAYS",
        default_value_t = 3650
    )]
    pub max_project_retention_days: u32,
    /// Largest `storage.max_rows` a project may be given, in `reports` rows (0, the
    /// processor's `--project-max-rows`, is always accepted). Default: 1000000000.
    #[arg(
        long,
        env = "PALISADE_API_MAX_PROJECT_MAX_ROWS",
        default_value_t = 1_000_000_000
    )]
    pub max_project_max_rows: u64,
}

/// A configuration value that cannot work.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct InvalidConfig(pub String);

/// Shortest admin token accepted (a guessable admin token would open every project).
pub const MIN_ADMIN_TOKEN_LEN: usize = 32;

impl Config {
    /// Checks the values no type can express.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        let fail = |what: &str| Err(InvalidConfig(what.to_owned()));
        if let Some(uri) = &self.ui.ui_csp_report_uri {
            crate::ui::check_report_uri(uri).map_err(InvalidConfig)?;
        }
        if self
            .server
            .admin_tokens
            .iter()
            .any(|token| token.trim().len() < MIN_ADMIN_TOKEN_LEN)
        {
            return fail("every admin token needs at least 32 characters");
        }
        if self.limits.max_page_size == 0
            || self.limits.default_page_size == 0
            || self.limits.default_page_size > self.limits.max_page_size
        {
            return fail("page sizes must be > 0 and default-page-size <= max-page-size");
        }
        if self.limits.max_body_bytes == 0
            || self.server.max_connections == 0
            || self.server.max_tokens == 0
            || self.limits.max_search_bytes == 0
            || self.limits.max_filter_bytes == 0
        {
            return fail(
                "max-body-bytes, max-connections, max-tokens, max-search-bytes and max-filter-bytes must be > 0",
            );
        }
        if self.limits.series_hours == 0 || self.limits.series_hours > 24 * 31 {
            return fail("series-hours must be between 1 and 744");
        }
        if self.limits.samples > 100 || self.limits.max_resolutions == 0 {
            return fail("samples must be <= 100 and max-resolutions > 0");
        }
        if self.resolution.min_occurrences == 0 || self.resolution.min_client_networks == 0 {
            return fail("min-occurrences and min-client-networks must be > 0");
        }
        if let Some(cluster) = &self.clickhouse.clickhouse_cluster {
            // Both are spliced into `ALTER TABLE db.reports_local ON CLUSTER c ...`.
            if !schemas::sql::is_identifier(cluster)
                || !schemas::sql::is_identifier(&self.clickhouse.clickhouse_database)
            {
                return fail(
                    "clickhouse-cluster and clickhouse-database must be bare identifiers ([A-Za-z_][A-Za-z0-9_]*)",
                );
            }
        }
        if self.server.token_refresh_secs == 0 || self.clickhouse.clickhouse_timeout_ms == 0 {
            return fail("token-refresh-secs and clickhouse-timeout-ms must be > 0");
        }
        self.alerts.validate()?;
        let projects = &self.projects;
        if projects.projects_file_refresh_secs == 0
            || projects.max_projects == 0
            || projects.max_keys_per_project == 0
            || projects.max_project_name_bytes == 0
            || projects.default_quota_per_second == 0
            || projects.default_quota_burst == 0
            || projects.max_project_retention_days == 0
            || projects.max_project_max_rows == 0
        {
            return fail(
                "projects-file-refresh-secs, max-projects, max-keys-per-project, max-project-name-bytes, the default quota, max-project-retention-days and max-project-max-rows must be > 0",
            );
        }
        // The Kubernetes placeholder (deploy/kubernetes/secret.yaml) is long enough to pass the
        // length check: refuse it so a forgotten placeholder never opens every project.
        if self
            .server
            .admin_tokens
            .iter()
            .any(|t| t.contains("replace-me"))
        {
            return fail("an admin token is still the placeholder `replace-me...`: set a real one");
        }
        if let Some(path) = &projects.projects_file_out {
            if path.file_name().is_none() {
                return fail("projects-file-out must name a file");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Config {
        Config::try_parse_from(std::iter::once("palisade-api").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn ui_report_uri_is_validated() {
        assert!(parse(&[]).ui.ui_csp_report_uri.is_none());
        let good = "https://palisade.example/api/1/security/?sentry_key=k";
        parse(&["--ui-csp-report-uri", good]).validate().unwrap();
        let bad = parse(&["--ui-csp-report-uri", "https://x.example/a;script-src"]);
        assert!(bad.validate().is_err());
        let not_a_url = ["palisade-api", "--ui-csp-report-uri", "not a url"];
        assert!(Config::try_parse_from(not_a_url).is_err());
    }

    #[test]
    fn defaults_are_valid() {
        let config = parse(&[]);
        assert!(config.command.is_none());
        config.validate().unwrap();
        assert_eq!(config.resolution.min_client_networks, 3);
    }

    #[test]
    fn the_cluster_and_the_storage_bounds_are_validated() {
        let config = parse(&["--clickhouse-cluster", "palisade_cluster"]);
        config.validate().unwrap();
        assert_eq!(
            config.clickhouse.clickhouse_cluster.as_deref(),
            Some("palisade_cluster")
        );
        assert!(parse(&["--clickhouse-cluster", "c; DROP TABLE x"])
            .validate()
            .is_err());
        let bad_database = ["--clickhouse-cluster", "c", "--clickhouse-database", "a-b"];
        assert!(parse(&bad_database).validate().is_err());
        let defaults = parse(&[]).projects;
        assert_eq!(
            (
                defaults.max_project_retention_days,
                defaults.max_project_max_rows
            ),
            (3650, 1_000_000_000)
        );
        assert!(parse(&["--max-project-max-rows", "0"]).validate().is_err());
        assert!(parse(&["--max-project-retention-days", "0"])
            .validate()
            .is_err());
    }

    #[test]
    fn short_admin_tokens_are_refused() {
        let config = parse(&["--admin-tokens", "short"]);
        assert!(config.validate().is_err());
        let long = "x".repeat(32);
        parse(&["--admin-tokens", &long]).validate().unwrap();
    }

    #[test]
    fn alert_bounds_are_validated() {
        parse(&[]).validate().unwrap();
        let config = parse(&["--alert-interval-secs", "7200"]);
        assert!(
            config.validate().is_err(),
            "lookback shorter than the interval"
        );
        parse(&["--alert-interval-secs", "0"]).validate().unwrap();
        for bad in [
            ["--webhook-max-attempts", "0"],
            ["--webhook-queue", "0"],
            ["--alert-spike-factor", "0"],
            ["--webhook-backoff-ms", "70000"],
        ] {
            assert!(parse(&bad).validate().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn key_management_bounds_and_placeholder_tokens_are_refused() {
        let placeholder = "replace-me-with-openssl-rand-hex-32-xxxxxxxx";
        assert!(parse(&["--admin-tokens", placeholder]).validate().is_err());
        assert!(parse(&["--max-keys-per-project", "0"]).validate().is_err());
        assert!(parse(&["--default-quota-burst", "0"]).validate().is_err());
        let config = parse(&["--projects-file-out", "/tmp/p.toml"]);
        config.validate().unwrap();
        assert_eq!(config.projects.max_keys_per_project, 20);
    }

    #[test]
    fn token_create_parses_global_flags() {
        let config = parse(&[
            "token",
            "create",
            "--project",
            "7",
            "--clickhouse-database",
            "db",
        ]);
        assert!(matches!(
            config.command,
            Some(Command::Token(TokenCommand::Create { project: 7 }))
        ));
        assert_eq!(config.clickhouse.clickhouse_database, "db");
    }
}
