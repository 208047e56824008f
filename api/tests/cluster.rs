//! The API's group delete on a REAL cluster (testbed::cluster: ZooKeeper and two ClickHouse
//! 18.16 shards): `reports` is a Distributed table over replicated `reports_local` tables, as
//! the processor's `migrate --clickhouse-cluster` creates it (the DDL is written out here: the
//! API does not depend on the processor). Without `--clickhouse-cluster` the delete mutation is
//! sent to the Distributed table, which ClickHouse refuses (503, rows kept); with it, the
//! mutation goes `ON CLUSTER` to every shard's `reports_local` and removes only that project's
//! rows of the group, on both shards.
//!
//! Skipped (with `skipping: ...` on stderr) when clickhouse-server, Java or ZooKeeper is
//! missing, except in CI. About 10 s.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::StatusCode;
use testbed::cluster::{Cluster, CLUSTER};
use tokio_util::sync::CancellationToken;

const DATABASE: &str = "palisade_api_cluster";
const ADMIN_TOKEN: &str = "admin-token-for-tests-0123456789abcdef";
const DELETED: u64 = 0xA1;
const KEPT: u64 = 0xB2;

/// `001_reports.sql` rendered for the cluster like the processor's migration renderer does.
fn reports_ddl() -> Vec<String> {
    let file = include_str!("../../schemas/sql/001_reports.sql");
    let statement: String = file
        .lines()
        .filter(|line| !line.starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    let local = statement
        .trim()
        .trim_end_matches(';')
        .replace(
            "CREATE TABLE IF NOT EXISTS reports",
            &format!("CREATE TABLE IF NOT EXISTS {DATABASE}.reports_local ON CLUSTER {CLUSTER}"),
        )
        .replace(
            "ENGINE = ReplacingMergeTree(version)",
            &format!(
                "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{{shard}}/{DATABASE}/reports', '{{replica}}', version)"
            ),
        );
    assert!(local.contains("reports_local ON CLUSTER") && local.contains("Replicated"));
    vec![
        format!("CREATE DATABASE IF NOT EXISTS {DATABASE} ON CLUSTER {CLUSTER}"),
        local,
        format!(
            "CREATE TABLE IF NOT EXISTS {DATABASE}.reports ON CLUSTER {CLUSTER} AS \
             {DATABASE}.reports_local ENGINE = Distributed({CLUSTER}, {DATABASE}, reports_local, row_id)"
        ),
        // The audit log the delete writes (a plain table per node is enough here).
        format!(
            "CREATE TABLE IF NOT EXISTS {DATABASE}.api_audit ON CLUSTER {CLUSTER} (project_id UInt64, \
             at DateTime, actor String, action String, fingerprint UInt64, detail String) \
             ENGINE = MergeTree ORDER BY (project_id, at)"
        ),
    ]
}

async fn start_api(url: &str, cluster: bool) -> (String, CancellationToken) {
    use clap::Parser as _;
    let mut args = vec![
        "palisade-api",
        "--clickhouse-url",
        url,
        "--clickhouse-database",
        DATABASE,
        "--admin-tokens",
        ADMIN_TOKEN,
        "--alert-interval-secs",
        "0",
        "--drain-timeout-ms",
        "2000",
    ];
    if cluster {
        args.extend(["--clickhouse-cluster", CLUSTER]);
    }
    let config = api::Config::try_parse_from(args).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    tokio::spawn(api::run(config, listener, None, shutdown.clone()));
    (base, shutdown)
}

async fn row_ids(client: &clickhouse::Client) -> Vec<String> {
    testbed::clickhouse::tsv(
        client,
        DATABASE,
        "SELECT row_id FROM reports FINAL ORDER BY row_id",
    )
    .await
    .into_iter()
    .map(|row| row.join(""))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_delete_reaches_every_shard_with_the_cluster_flag() {
    let Some(cluster) = Cluster::start().await else {
        return;
    };
    let [first, second] = cluster.nodes() else {
        panic!("two nodes expected");
    };
    let client = first.client();
    for statement in reports_ddl() {
        client
            .query_raw(&statement)
            .execute()
            .await
            .unwrap_or_else(|error| panic!("{error}\n{statement}\n{}", first.error_log()));
    }
    // Project 1: 6 rows of DELETED (both shards: sharded by row_id), 1 of KEPT; project 2: 2
    // rows of the same fingerprint DELETED.
    let now = 1_700_006_400u32;
    let mut values = Vec::new();
    for (row_id, project, fingerprint) in [
        (1, 1, DELETED),
        (2, 1, DELETED),
        (3, 1, DELETED),
        (4, 1, DELETED),
        (5, 1, DELETED),
        (6, 1, DELETED),
        (7, 1, KEPT),
        (8, 2, DELETED),
        (9, 2, DELETED),
    ] {
        values.push(format!(
            "({row_id}, 1, {project}, toDate(toDateTime({now})), toDateTime({now}), \
             toDateTime({now}), toDateTime({now}), 1, {fingerprint}, 'csp-violation')"
        ));
    }
    client
        .clone()
        .with_database(DATABASE)
        .with_setting("insert_distributed_sync", "1")
        .query_raw(&format!(
            "INSERT INTO reports (row_id, version, project_id, day, window_start, first_seen, \
             last_seen, occurrences, fingerprint, kind) VALUES {}",
            values.join(", ")
        ))
        .execute()
        .await
        .unwrap();
    let all: Vec<String> = (1..=9).map(|id| id.to_string()).collect();
    assert_eq!(row_ids(&second.client()).await, all);
    for node in cluster.nodes() {
        let local = testbed::clickhouse::tsv(
            &node.client(),
            DATABASE,
            "SELECT count() FROM reports_local WHERE fingerprint = 161 AND project_id = 1",
        )
        .await;
        assert_ne!(local[0][0], "0", "both shards hold rows of the group");
    }

    let http = reqwest::Client::new();
    let path = format!("/v1/projects/1/violations/{DELETED:016x}");

    // Without the flag: the mutation targets the Distributed table and ClickHouse refuses it.
    let (base, stop) = start_api(&first.http_url(), false).await;
    let response = http
        .delete(format!("{base}{path}"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"], "storage_error", "{body}");
    stop.cancel();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(row_ids(&second.client()).await, all, "nothing deleted");

    // With the flag: ON CLUSTER to every shard's reports_local.
    let (base, stop) = start_api(&first.http_url(), true).await;
    let response = http
        .delete(format!("{base}{path}"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    stop.cancel();
    let other = second.client();
    testbed::wait::wait_for(
        "the group's rows gone on every shard",
        Duration::from_secs(60),
        || async {
            let left: BTreeSet<String> = row_ids(&other).await.into_iter().collect();
            let expected: BTreeSet<String> = ["7", "8", "9"].map(str::to_owned).into();
            if left == expected {
                Ok(())
            } else {
                Err(format!("rows left: {left:?}"))
            }
        },
    )
    .await;
}
