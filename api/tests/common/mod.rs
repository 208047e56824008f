//! Shared helpers of the API's integration tests: the schema from `schemas/sql/`, the API on a
//! loopback port with an HTTP client, and ClickHouse scalars.
#![allow(dead_code, clippy::unwrap_used)]

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use testbed::clickhouse::ClickHouse;
use tokio_util::sync::CancellationToken;

pub const DATABASE: &str = "palisade_api_test";
pub const ADMIN_TOKEN: &str = "admin-token-for-tests-0123456789abcdef";

/// Now, in Unix seconds.
pub fn unix_now() -> u32 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    u32::try_from(secs).unwrap()
}

/// Applies `schemas/sql/NNN_*.sql` like `palisade-processor migrate` on a single node (files
/// gated by `-- requires:` are for newer servers and skipped).
pub async fn migrate(server: &ClickHouse) {
    server
        .query(&format!("CREATE DATABASE IF NOT EXISTS {DATABASE}"))
        .unwrap();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../schemas/sql");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "sql"))
        .collect();
    files.sort();
    for file in files {
        let sql = std::fs::read_to_string(&file).unwrap();
        if sql.lines().any(|line| line.starts_with("-- requires:")) {
            continue;
        }
        let mut statement = String::new();
        for line in sql.lines() {
            if statement.is_empty() && (line.trim().is_empty() || line.starts_with("--")) {
                continue;
            }
            statement.push_str(line);
            statement.push('\n');
            if line.trim_end().ends_with(';') {
                let sql = statement.trim().trim_end_matches(';').to_owned();
                let client = clickhouse::Client::default()
                    .with_url(server.http_url())
                    .with_database(DATABASE)
                    .with_validation(false);
                client
                    .query_raw(&sql)
                    .execute()
                    .await
                    .unwrap_or_else(|error| panic!("{}: {error}\n{sql}", file.display()));
                statement.clear();
            }
        }
    }
}

pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Api {
    /// The API on a free loopback port; `extra` flags are appended to the test defaults.
    pub async fn start(server: &ClickHouse, extra: &[&str]) -> Self {
        use clap::Parser as _;
        let url = server.http_url();
        let mut args = vec![
            "palisade-api",
            "--clickhouse-url",
            &url,
            "--clickhouse-database",
            DATABASE,
            "--admin-tokens",
            ADMIN_TOKEN,
            "--min-occurrences",
            "10",
            "--min-client-networks",
            "3",
            "--drain-timeout-ms",
            "2000",
            "--token-refresh-secs",
            "1",
        ];
        args.extend_from_slice(extra);
        let config = api::Config::try_parse_from(args).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        let metrics = Some(testbed::metrics::handle());
        let task = tokio::spawn(api::run(config, listener, metrics, shutdown.clone()));
        let task = tokio::spawn(async move {
            task.await.unwrap().unwrap();
        });
        Self {
            base,
            http: reqwest::Client::new(),
            shutdown,
            task,
        }
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
    ) -> (StatusCode, Value) {
        self.send(method, path, token, None).await
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    pub async fn get(&self, path: &str, token: &str) -> Value {
        let (status, body) = self.call(Method::GET, path, Some(token)).await;
        assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
        body
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the API stops within its drain timeout")
            .unwrap();
    }
}

pub async fn scalar(server: &ClickHouse, sql: &str) -> String {
    let server_sql = sql.replace("{db}", DATABASE);
    server.query(&server_sql).unwrap().trim().to_owned()
}
