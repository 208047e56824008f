//! Wiring: builds the shared state from the [`Config`], serves the public and admin listeners,
//! runs the background tasks (projects reload, IP-limiter sweep) and shuts down in order:
//! stop accepting -> finish in-flight requests -> flush the Kafka producer -> return.

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin::Admin;
use crate::body_rate::MinRate;
use crate::client::TrustedProxies;
use crate::inflight::InFlight;
use crate::limit::{ClientKeys, IpLimiter, IpLimits};
use crate::privacy::{Salt, SaltError};
use crate::projects::{Projects, ProjectsError};
use crate::publish::{PublishError, Publisher};
use crate::routes::{App, LogGate};
use crate::server::{self, Settings};
use crate::tls::{ReloadingCert, TlsError};
use crate::validate::{BodyLimits, ParserPool};
use crate::Config;
use schemas::error_chain;

/// The two listeners, bound by the caller (main binds the configured addresses; tests bind
/// `127.0.0.1:0`).
#[derive(Debug)]
pub struct Listeners {
    pub public: TcpListener,
    pub admin: TcpListener,
}

/// Why ingest could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("invalid configuration")]
    Config(#[source] crate::config::ConfigError),
    #[error("cannot load the projects file")]
    Projects(#[source] ProjectsError),
    #[error("refusing the ip hash salt")]
    Salt(#[source] SaltError),
    #[error("cannot set up TLS")]
    Tls(#[source] TlsError),
    #[error("kafka producer did not flush before the timeout")]
    Flush(#[source] PublishError),
}

/// Serves until `shutdown` is cancelled, then drains and flushes.
pub async fn run(
    config: Config,
    listeners: Listeners,
    publisher: Publisher,
    metrics: PrometheusHandle,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    config.validate().map_err(RunError::Config)?;
    let ip_salt = match &config.ip_hash_salt_file {
        Some(path) => Some(Salt::from_file(path).map_err(RunError::Salt)?),
        None => config.ip_hash_salt.clone(),
    };
    let projects =
        Arc::new(Projects::load(&config.projects_file, ip_salt).map_err(RunError::Projects)?);
    let certificate = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(ReloadingCert::load(cert, key).map_err(RunError::Tls)?),
        _ => None,
    };
    let tls = match &certificate {
        Some(certificate) => Some(certificate.acceptor().map_err(RunError::Tls)?),
        None => None,
    };
    // One client, for the rate limiter, the in-flight shares and the connection cap alike.
    let client_keys = ClientKeys {
        v4_prefix: config.ip_limit_ipv4_prefix,
        v6_prefix: config.ip_limit_ipv6_prefix,
    };
    let ip_limiter = Arc::new(IpLimiter::new(IpLimits {
        per_second: config.ip_rate_per_second,
        burst: config.ip_burst,
        max_tracked: config.ip_max_tracked.get(),
        overflow_buckets: config.ip_overflow_buckets.get(),
        keys: client_keys,
    }));
    if config
        .trusted_proxies
        .iter()
        .any(|net| net.prefix_len() == 0)
    {
        tracing::warn!("--trusted-proxies includes a /0 network: every peer is trusted, so any client can choose its IP with X-Forwarded-For");
    }
    if config.trust_forwarded_for {
        tracing::warn!("--trust-forwarded-for is deprecated: it trusts X-Forwarded-For from any peer; set --trusted-proxies to your proxies' networks instead");
    }
    let proxies = TrustedProxies::new(config.trusted_proxies.clone(), config.trust_forwarded_for);
    let app = Arc::new(App {
        projects: Arc::clone(&projects),
        ip_limiter: Arc::clone(&ip_limiter),
        parsers: Arc::new(ParserPool::new(
            config.parser_pool_size,
            config.parse_limits(),
        )),
        publisher: publisher.clone(),
        body_limits: BodyLimits {
            max_body_bytes: config.max_body_bytes.get(),
            max_decompressed_bytes: config.max_decompressed_bytes.get(),
            read_timeout: config.body_read_timeout,
        },
        trusted_proxies: proxies.clone(),
        unavailable_retry_after: config.unavailable_retry_after,
        in_flight: InFlight::new(
            config.max_in_flight_requests.get(),
            config.in_flight_per_ip(),
            config.in_flight_per_project(),
            client_keys,
        ),
        body_rate: MinRate {
            bytes_per_second: config.min_body_bytes_per_second,
            grace: config.body_grace,
        },
        error_logs: LogGate::new(std::time::Duration::from_secs(1)),
        metrics: crate::metrics::Hot::new(&crate::routes::ROUTE_LABELS),
    });
    let upkeep_handle = metrics.clone();
    let admin = Arc::new(Admin {
        publisher: publisher.clone(),
        metrics,
        ip_limiter: Arc::clone(&ip_limiter),
        ready_timeout: config.ready_timeout,
    });
    let public_settings = Settings {
        max_connections: config.max_connections.get(),
        // A trusted proxy carries many clients: it is exempt, and its clients are held to the
        // per-client in-flight share instead.
        max_connections_per_ip: config.max_connections_per_ip.get(),
        client_keys,
        proxies,
        http2_max_concurrent_streams: config.http2_max_concurrent_streams.get(),
        header_read_timeout: config.header_read_timeout,
        idle_timeout: config.idle_timeout,
        drain_timeout: config.drain_timeout,
        tls,
    };
    // The admin listener serves a scraper and probes: a small fixed cap is plenty.
    let admin_settings = Settings {
        max_connections: 64,
        max_connections_per_ip: 64,
        proxies: TrustedProxies::default(),
        tls: None,
        ..public_settings.clone()
    };

    let tasks = TaskTracker::new();
    let background = shutdown.child_token();
    tasks.spawn(Arc::clone(&projects).watch(
        config.projects_poll_interval,
        config.projects_settle,
        background.clone(),
    ));
    if let Some(certificate) = certificate {
        tasks.spawn(certificate.watch(config.tls_reload_interval, background.clone()));
    }
    tasks.spawn(metrics_upkeep(upkeep_handle, background.clone()));
    tasks.spawn(sweep_ip_limiter(
        ip_limiter,
        config.ip_sweep_interval,
        background.clone(),
    ));
    if let (Ok(public), Ok(admin_addr)) =
        (listeners.public.local_addr(), listeners.admin.local_addr())
    {
        tracing::info!(%public, admin = %admin_addr, projects = projects.snapshot().len(), "ingest serving");
    }
    let public = tasks.spawn(server::serve(
        "public",
        listeners.public,
        app,
        public_settings,
        shutdown.clone(),
    ));
    // The admin listener outlives the public one so /metrics still answers while draining.
    let admin_stop = CancellationToken::new();
    let admin = tasks.spawn(server::serve(
        "admin",
        listeners.admin,
        admin,
        admin_settings,
        admin_stop.clone(),
    ));
    tasks.close();

    shutdown.cancelled().await;
    tracing::info!("shutdown requested");
    // `serve` returns once its connections drained or the drain timeout passed.
    if let Err(error) = public.await {
        tracing::error!(error = %error, "public server task failed");
    }
    let flush_timeout = config.flush_timeout;
    let flushed = tokio::task::spawn_blocking(move || publisher.flush(flush_timeout)).await;
    admin_stop.cancel();
    background.cancel();
    if let Err(error) = admin.await {
        tracing::error!(error = %error, "admin server task failed");
    }
    tasks.wait().await;
    match flushed {
        Ok(Ok(())) => {
            tracing::info!("kafka producer flushed, ingest stopped");
            Ok(())
        }
        Ok(Err(error)) => {
            tracing::error!(error = %error_chain(&error), "kafka flush failed; unacknowledged reports may be lost");
            Err(RunError::Flush(error))
        }
        Err(join) => {
            tracing::error!(error = %join, "kafka flush task failed");
            Ok(())
        }
    }
}

/// How often the Prometheus recorder folds recorded histogram samples into its buckets.
const METRICS_UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs the recorder's upkeep every [`METRICS_UPKEEP_EVERY`]. `install_recorder` leaves this to
/// the caller: without it every histogram sample (two per request) is kept until the next
/// `/metrics` scrape, so memory grows with traffic when nobody scrapes.
async fn metrics_upkeep(handle: PrometheusHandle, stop: CancellationToken) {
    let mut ticker = tokio::time::interval(METRICS_UPKEEP_EVERY);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticker.tick() => handle.run_upkeep(),
        }
    }
}

/// Periodically forgets IPs whose bucket refilled, keeping the map small.
async fn sweep_ip_limiter(
    limiter: Arc<IpLimiter>,
    every: std::time::Duration,
    stop: CancellationToken,
) {
    let mut ticker = tokio::time::interval(every);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticker.tick() => limiter.sweep(),
        }
    }
}

/// Returns on the first SIGINT or SIGTERM (the binaries' stop request).
pub async fn stop_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, () = term => {} }
}
