//! Shared helpers for ingest's integration tests: a real ingest server on `127.0.0.1:0` started
//! through `ingest::run`, the process-wide Prometheus recorder, and sample report bodies.
#![allow(dead_code, clippy::unwrap_used)]

pub mod child;
pub mod raw;

use std::path::PathBuf;
use std::time::Duration;

use ingest::publish::Publisher;
use ingest::{Config, Listeners, RunError};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The process-wide recorder (metrics macros report to one global recorder per test binary).
pub use testbed::metrics::handle as metrics_handle;

/// A running ingest server, shut down on drop.
#[derive(Debug)]
pub struct Server {
    /// `http://127.0.0.1:PORT` of the public listener.
    pub base: String,
    /// `http://127.0.0.1:PORT` of the admin listener.
    pub admin: String,
    pub public_addr: std::net::SocketAddr,
    pub projects_path: PathBuf,
    pub shutdown: CancellationToken,
    pub task: Option<JoinHandle<Result<(), RunError>>>,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Starts ingest with `projects` as the projects file, Kafka at `brokers`, and `extra` flags.
    pub async fn start(projects: &str, brokers: &str, extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let projects_path = dir.path().join("projects.toml");
        std::fs::write(&projects_path, projects).unwrap();
        let config = Config::for_tests(&projects_path, brokers, extra.iter().copied()).unwrap();
        let public = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let public_addr = public.local_addr().unwrap();
        let base = format!("http://{public_addr}");
        let admin_url = format!("http://{}", admin.local_addr().unwrap());
        let publisher = Publisher::new(&config.kafka).unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(ingest::run(
            config,
            Listeners { public, admin },
            publisher,
            metrics_handle(),
            shutdown.clone(),
        ));
        Server {
            base,
            admin: admin_url,
            public_addr,
            projects_path,
            shutdown,
            task: Some(task),
            _dir: dir,
        }
    }

    /// Starts ingest with Kafka pointing at a closed port (publishing fails fast).
    pub async fn without_kafka(projects: &str, extra: &[&str]) -> Server {
        let mut flags = vec!["--kafka-message-timeout-ms", "1000"];
        flags.extend_from_slice(extra);
        Server::start(projects, &closed_port(), &flags).await
    }

    /// Cancels the shutdown token and waits (at most 30 s) for `run` to return its result.
    pub async fn shutdown_and_wait(mut self) -> Result<(), RunError> {
        self.shutdown.cancel();
        let task = self.task.take().expect("the task is only taken here");
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("run returns within 30 s of the shutdown")
            .expect("the run task does not panic")
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("{}{}", self.base, path_and_query)
    }

    /// The value of a counter/gauge line on `/metrics` (0 when absent).
    pub async fn metric(&self, series: &str) -> f64 {
        parse_metric(&scrape(&client(), &self.admin).await, series)
    }
}

/// The Prometheus text of the admin listener at `admin` (`http://127.0.0.1:PORT`).
pub async fn scrape(http: &reqwest::Client, admin: &str) -> String {
    http.get(format!("{admin}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of the `series` line (name with labels, as rendered) in Prometheus text, 0 when
/// absent.
pub fn parse_metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| {
            line.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse::<f64>()
                .ok()
        })
        .unwrap_or(0.0)
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// `127.0.0.1:PORT` where nothing listens.
pub fn closed_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr.to_string()
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// Projects used by most tests.
///
/// - 1 `shop`: key `k1`, generous quota, documents of `shop.example` and its subdomains.
/// - 2 `blog`: key `k2-disabled` (disabled) and `k2-revoked` (revoked).
/// - 3 `tiny`: key `k3`, quota burst 3 reports, any host.
pub const PROJECTS: &str = r#"
[[project]]
id = 1
name = "shop"
allowed_hosts = ["shop.example", "*.shop.example"]
quota = { per_second = 1000, burst = 1000 }
keys = [{ public_key = "k1" }]

[[project]]
id = 2
name = "blog"
quota = { per_second = 1000, burst = 1000 }
keys = [{ public_key = "k2-disabled", state = "disabled" }, { public_key = "k2-revoked", state = "revoked" }]

[[project]]
id = 3
name = "tiny"
quota = { per_second = 1, burst = 3 }
keys = [{ public_key = "k3" }]
"#;

/// A legacy `report-uri` CSP report for `document` blocking `blocked`.
pub fn csp(document: &str, blocked: &str) -> String {
    serde_json::json!({
        "csp-report": {
            "document-uri": document,
            "referrer": "https://referrer.example/?secret=1",
            "blocked-uri": blocked,
            "violated-directive": "script-src-elem",
            "effective-directive": "script-src-elem",
            "original-policy": "script-src 'self'; report-uri /api/1/security/?sentry_key=k1",
            "disposition": "enforce",
            "status-code": 200
        }
    })
    .to_string()
}

/// One Reporting API batch item (CSP violation).
pub fn reporting_item(document: &str, blocked: &str) -> serde_json::Value {
    serde_json::json!({
        "type": "csp-violation",
        "age": 12,
        "url": document,
        "user_agent": "Mozilla/5.0 test",
        "body": {
            "documentURL": document,
            "blockedURL": blocked,
            "effectiveDirective": "script-src-elem",
            "originalPolicy": "script-src 'self'",
            "disposition": "enforce",
            "statusCode": 200
        }
    })
}

/// A Reporting API batch of `n` distinct real (non-noise) reports for `document`.
pub fn batch(document: &str, n: usize) -> String {
    let items: Vec<_> = (0..n)
        .map(|i| reporting_item(document, &format!("https://cdn{i}.example/x.js")))
        .collect();
    serde_json::Value::Array(items).to_string()
}

/// A report the default noise filter drops (browser-extension script).
pub fn noise(document: &str) -> String {
    csp(document, "chrome-extension://abcdefgh/inject.js")
}

/// The `error` label of a JSON refusal.
pub async fn error_label(response: reqwest::Response) -> String {
    let body: serde_json::Value = response.json().await.unwrap();
    body["error"].as_str().unwrap_or_default().to_owned()
}

/// POST a body as `application/csp-report` to `path` on the server.
#[allow(dead_code)]
pub async fn post(
    server: &Server,
    path: &str,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    client()
        .post(server.url(path))
        .header("content-type", "application/csp-report")
        .body(body)
        .send()
        .await
        .unwrap()
}
