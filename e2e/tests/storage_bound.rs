//! The storage bound per tenant end to end (issue 12): a project's `storage` set through
//! `palisade-api` is enforced by the processor's retention job on its next run, with no restart
//! of either; changing it through the API changes what the next run keeps. The two binaries
//! share only the `project_storage` table (neither depends on the other).
//!
//! Real ClickHouse 18.16 (testbed), the schema applied by `processor::migrate`, rows written by
//! the processor's `Writer`, `palisade-api` in-process on a loopback port, the retention job's
//! `run_once`. Skipped (with `skipping: ...` on stderr) when ClickHouse is missing, except in CI.
#![allow(clippy::unwrap_used)]

use std::num::{NonZeroU32, NonZeroUsize};
use std::time::Duration;

use processor::migrate::Topology;
use processor::retention::{self, RetentionConfig};
use processor::row::ReportRow;
use processor::write::{RetryPolicy, Writer, WriterConfig};
use serde_json::{json, Value};
use testbed::clickhouse::ClickHouse;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const DATABASE: &str = "palisade_e2e_storage";
const ADMIN: &str = "admin-token-for-the-storage-bound-e2e-0123456789";
/// 2023-11-15 00:00:00 UTC.
const H0: u32 = 1_700_006_400;
const DAY: u32 = 86_400;

fn row(row_id: u64, project_id: u64, window_start: u32) -> ReportRow {
    ReportRow {
        row_id,
        version: 1,
        project_id,
        day: (window_start / DAY) as u16,
        window_start,
        first_seen: window_start,
        last_seen: window_start + 30,
        occurrences: 1,
        fingerprint: 1000 + row_id,
        kind: "csp-violation".to_owned(),
        ..ReportRow::default()
    }
}

async fn row_ids(client: &clickhouse::Client, project: u64) -> String {
    let rows = testbed::clickhouse::tsv(
        client,
        DATABASE,
        &format!(
            "SELECT groupArray(row_id) FROM (SELECT row_id FROM reports FINAL \
             WHERE project_id = {project} ORDER BY row_id)"
        ),
    )
    .await;
    rows[0].join("")
}

async fn mutations_done(client: &clickhouse::Client) {
    testbed::wait::wait_for(
        "the retention mutations",
        Duration::from_secs(30),
        || async {
            let rows = testbed::clickhouse::tsv(
                client,
                DATABASE,
                &format!(
                "SELECT count() FROM system.mutations WHERE database = '{DATABASE}' AND is_done = 0"
            ),
            )
            .await;
            if rows[0][0] == "0" {
                Ok(())
            } else {
                Err(format!("{} mutations pending", rows[0][0]))
            }
        },
    )
    .await;
}

async fn call(http: &reqwest::Client, method: reqwest::Method, url: String, body: Value) -> Value {
    let response = http
        .request(method, url)
        .bearer_auth(ADMIN)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let value: Value = response.json().await.unwrap();
    assert!(status.is_success(), "{status}: {value}");
    value
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bound_set_through_the_api_is_enforced_by_the_next_retention_run() {
    let Some(server) = ClickHouse::start().await else {
        return;
    };
    let client = clickhouse::Client::default()
        .with_url(server.http_url())
        .with_validation(false);
    processor::migrate::migrate(&client, DATABASE)
        .await
        .expect("migrates");
    let writer = Writer::new(
        &client,
        WriterConfig {
            database: DATABASE.to_owned(),
            retry: RetryPolicy {
                max_attempts: NonZeroU32::new(3).unwrap(),
                initial_backoff: Duration::from_millis(50),
                max_backoff: Duration::from_millis(200),
            },
            attempt_timeout: Duration::from_secs(30),
            rollup_groups_per_statement: NonZeroUsize::new(8).unwrap(),
        },
    )
    .unwrap();
    // The processor's retention job as `palisade-processor` builds it (no --project-retention,
    // the server default cap off), kept for both runs: no restart.
    let config = RetentionConfig {
        interval: Duration::from_secs(3600),
        days: 90,
        projects: Vec::new(),
        default_max_rows: 0,
        max_projects: NonZeroUsize::new(100).unwrap(),
        topology: Topology::SingleNode,
    };

    let api_config = <api::Config as clap::Parser>::try_parse_from([
        "palisade-api",
        "--clickhouse-url",
        &server.http_url(),
        "--clickhouse-database",
        DATABASE,
        "--admin-tokens",
        ADMIN,
        "--alert-interval-secs",
        "0",
        "--drain-timeout-ms",
        "2000",
    ])
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let api_task = tokio::spawn(api::run(api_config, listener, None, shutdown.clone()));
    let http = reqwest::Client::new();

    // Two projects; project 1 keeps 5 rows and 10 days.
    let created = call(
        &http,
        reqwest::Method::POST,
        format!("{base}/v1/projects"),
        json!({ "id": 1, "storage": { "max_rows": 5, "retention_days": 10 } }),
    )
    .await;
    assert_eq!(created["project"]["storage"]["max_rows"], 5);
    call(
        &http,
        reqwest::Method::POST,
        format!("{base}/v1/projects"),
        json!({ "id": 2 }),
    )
    .await;

    // 8 recent rows each (one a minute), and one 20-day-old row of project 1.
    let mut rows: Vec<ReportRow> = (0..8).map(|i| row(i, 1, H0 + i as u32 * 60)).collect();
    rows.extend((0..8).map(|i| row(100 + i, 2, H0 + i as u32 * 60)));
    rows.push(row(50, 1, H0 - 20 * DAY));
    writer.insert_rows(&rows).await.unwrap();

    let today = (H0 / DAY) as u16;
    retention::run_once(&writer, &config, today).await;
    mutations_done(&client).await;
    // 20 days > 10: row 50 gone; then 5 newest of the 8 recent rows.
    assert_eq!(row_ids(&client, 1).await, "[3,4,5,6,7]");
    assert_eq!(
        row_ids(&client, 2).await,
        "[100,101,102,103,104,105,106,107]"
    );

    // Tightened through the API, applied by the next run of the same job.
    let updated = call(
        &http,
        reqwest::Method::PATCH,
        format!("{base}/v1/projects/1"),
        json!({ "storage": { "max_rows": 2 } }),
    )
    .await;
    assert_eq!(
        updated["storage"],
        json!({ "retention_days": 10, "max_rows": 2 })
    );
    call(
        &http,
        reqwest::Method::PATCH,
        format!("{base}/v1/projects/2"),
        json!({ "storage": { "max_rows": 4 } }),
    )
    .await;
    retention::run_once(&writer, &config, today).await;
    mutations_done(&client).await;
    assert_eq!(row_ids(&client, 1).await, "[6,7]");
    assert_eq!(row_ids(&client, 2).await, "[104,105,106,107]");

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), api_task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
