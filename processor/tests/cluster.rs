//! The cluster variant of the schema against a REAL cluster: ZooKeeper and two ClickHouse 18.16
//! shards (testbed::cluster). Migrations run `ON CLUSTER` and are recorded once for the whole
//! cluster; rows written through the processor's `Writer` land on both shards, every version of
//! a row on one shard, so `FINAL` through the Distributed tables gives exact counts; re-emitted
//! rows collapse; rollups recomputed from `reports FINAL` are exact; checkpoints round-trip;
//! retention drops the local partitions of every shard and per-project deletes reach them.
//!
//! Skipped (with `skipping: ...` on stderr) when clickhouse-server, Java or ZooKeeper (Debian's
//! `zookeeper` package) is missing, except in CI. About 10 s.

use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroU32;
use std::time::Duration;

use processor::migrate::{self, MigrateError, Outcome, ServerVersion, Topology};
use processor::row::ReportRow;
use processor::write::{Checkpoint, Touched, Writer};
use testbed::cluster::{Cluster, CLUSTER};

mod common;

const DATABASE: &str = "palisade_cluster";
/// 2023-11-15 00:00:00 UTC.
const H0: u32 = 1_700_006_400;
const HOUR: u32 = 3600;
const DAY: u32 = 86_400;
const DAY0: u16 = (H0 / DAY) as u16;
const PROJECT: u64 = 7;
const OTHER_PROJECT: u64 = 8;

fn topology() -> Topology {
    Topology::Cluster(
        CLUSTER
            .parse()
            .expect("the test cluster name is an identifier"),
    )
}

fn writer(client: &clickhouse::Client) -> Writer {
    common::writer(client, DATABASE, Duration::from_secs(60))
}

async fn cells(client: &clickhouse::Client, sql: &str) -> Vec<Vec<String>> {
    testbed::clickhouse::tsv(client, DATABASE, sql).await
}

async fn one(client: &clickhouse::Client, sql: &str) -> String {
    let rows = cells(client, sql).await;
    assert_eq!(rows.len(), 1, "{sql} -> {rows:?}");
    rows[0].join("\t")
}

fn row(row_id: u64, project_id: u64, window_start: u32, occurrences: u32) -> ReportRow {
    ReportRow {
        message_id: format!("message-{row_id}"),
        blocked_origin: format!("https://cdn{}.example", row_id % 3),
        ..common::report_row(row_id, project_id, window_start, occurrences)
    }
}

/// The rows every version of which is on exactly one node: the row ids of each node's local
/// table, checked to be disjoint and non-empty (both shards hold data).
async fn row_ids_per_node(cluster: &Cluster, table: &str, column: &str) -> Vec<BTreeSet<String>> {
    let mut per_node = Vec::new();
    for node in cluster.nodes() {
        let ids: BTreeSet<String> = cells(
            &node.client(),
            &format!("SELECT DISTINCT {column} FROM {table}"),
        )
        .await
        .into_iter()
        .map(|cells| cells.join("\t"))
        .collect();
        per_node.push(ids);
    }
    per_node
}

#[tokio::test]
async fn the_cluster_schema_keeps_counts_exact() {
    let Some(cluster) = Cluster::start().await else {
        return;
    };
    let topology = topology();
    let [first_node, second_node] = cluster.nodes() else {
        panic!("two nodes expected");
    };
    let client = topology.configure(first_node.client());
    let other = topology.configure(second_node.client());

    // --- migrations: applied once for the whole cluster, read back from the other node.
    let applied = migrate::migrate_to(&client, DATABASE, &topology)
        .await
        .unwrap_or_else(|error| panic!("{error:?}\n{}", first_node.error_log()));
    let outcomes: Vec<Outcome> = applied.iter().map(|applied| applied.outcome).collect();
    let gate = Outcome::Skipped {
        requires: ServerVersion {
            major: 21,
            minor: 8,
        },
    };
    assert_eq!(
        outcomes,
        vec![
            Outcome::Applied,
            Outcome::Applied,
            gate,
            Outcome::Applied,
            Outcome::Applied,
            Outcome::Applied,
            Outcome::Applied,
            Outcome::Applied
        ]
    );
    let again = migrate::migrate_to(&other, DATABASE, &topology)
        .await
        .expect("re-runs from the other node");
    let outcomes: Vec<Outcome> = again.iter().map(|applied| applied.outcome).collect();
    assert_eq!(
        outcomes,
        vec![
            Outcome::AlreadyApplied,
            Outcome::AlreadyApplied,
            gate,
            Outcome::AlreadyApplied,
            Outcome::AlreadyApplied,
            Outcome::AlreadyApplied,
            Outcome::AlreadyApplied,
            Outcome::AlreadyApplied
        ]
    );
    let expected_tables = [
        ("alert_deliveries", "Distributed"),
        ("alert_deliveries_local", "ReplicatedMergeTree"),
        ("alert_settings", "Distributed"),
        ("alert_settings_local", "ReplicatedReplacingMergeTree"),
        ("alerts", "Distributed"),
        ("alerts_local", "ReplicatedReplacingMergeTree"),
        ("api_audit", "Distributed"),
        ("api_audit_local", "ReplicatedMergeTree"),
        ("api_keys", "Distributed"),
        ("api_keys_local", "ReplicatedReplacingMergeTree"),
        ("api_projects", "Distributed"),
        ("api_projects_local", "ReplicatedReplacingMergeTree"),
        ("api_tokens", "Distributed"),
        ("api_tokens_local", "ReplicatedReplacingMergeTree"),
        ("processor_checkpoints", "Distributed"),
        (
            "processor_checkpoints_local",
            "ReplicatedReplacingMergeTree",
        ),
        ("project_storage", "Distributed"),
        ("project_storage_local", "ReplicatedReplacingMergeTree"),
        ("reports", "Distributed"),
        ("reports_local", "ReplicatedReplacingMergeTree"),
        ("resolutions", "Distributed"),
        ("resolutions_local", "ReplicatedReplacingMergeTree"),
        ("rollup_hourly", "Distributed"),
        ("rollup_hourly_local", "ReplicatedReplacingMergeTree"),
        ("rollup_nel_hourly", "Distributed"),
        ("rollup_nel_hourly_local", "ReplicatedReplacingMergeTree"),
        ("rollup_policy_hourly", "Distributed"),
        ("rollup_policy_hourly_local", "ReplicatedReplacingMergeTree"),
        ("schema_migrations", "Distributed"),
        ("schema_migrations_local", "ReplicatedMergeTree"),
        ("violation_mutes", "Distributed"),
        ("violation_mutes_local", "ReplicatedReplacingMergeTree"),
    ];
    for node in cluster.nodes() {
        let tables = cells(
            &node.client(),
            &format!(
                "SELECT name, engine FROM system.tables WHERE database = '{DATABASE}' ORDER BY name"
            ),
        )
        .await;
        let expected: Vec<Vec<String>> = expected_tables
            .iter()
            .map(|(name, engine)| vec![(*name).to_owned(), (*engine).to_owned()])
            .collect();
        assert_eq!(tables, expected, "ON CLUSTER reached every node");
    }
    // A cluster migration never adopts a single-node schema (it would find everything recorded).
    migrate::migrate(&first_node.client(), "single_node")
        .await
        .expect("single-node schema");
    let mismatch = migrate::migrate_to(&client, "single_node", &topology).await;
    assert!(
        matches!(mismatch, Err(MigrateError::TopologyMismatch { .. })),
        "{mismatch:?}"
    );

    // --- rows: 40 in two hours of day 0, 6 of another project two days later.
    let writer = writer(&client);
    let mut rows: Vec<ReportRow> = (1..=40)
        .map(|id| {
            row(
                id,
                PROJECT,
                H0 + (id as u32 % 2) * HOUR,
                (id as u32 % 5) + 1,
            )
        })
        .collect();
    rows.extend((101..=106).map(|id| row(id, OTHER_PROJECT, H0 + 2 * DAY, 2)));
    let inserted = writer.insert_rows(&rows).await.expect("inserts");
    assert_eq!((inserted.rows, inserted.rejected.len()), (46, 0));
    let touched = Touched::from_rows(&rows);
    writer.refresh_rollups(&touched).await.expect("rollups");

    // Re-emitted rows: 1..=10 with a fuller count (higher version), 11 redelivered as is.
    let mut again: Vec<ReportRow> = rows[..10]
        .iter()
        .map(|row| {
            let mut fuller = row.clone();
            fuller.occurrences += 100;
            fuller.version = u64::from(fuller.occurrences);
            fuller
        })
        .collect();
    again.push(rows[10].clone());
    writer.insert_rows(&again).await.expect("re-inserts");
    writer.refresh_rollups(&touched).await.expect("rollups");

    let mut latest: BTreeMap<u64, u32> = BTreeMap::new();
    for row in rows.iter().chain(&again) {
        let occurrences = latest.entry(row.row_id).or_default();
        *occurrences = (*occurrences).max(row.occurrences);
    }
    let expected_sum: u32 = latest.values().sum();
    assert_eq!(
        one(
            &other,
            "SELECT count(), sum(occurrences) FROM reports FINAL"
        )
        .await,
        format!("46\t{expected_sum}"),
        "exact through the Distributed table, read from the other node"
    );
    assert_eq!(
        one(&other, "SELECT count() FROM reports FINAL WHERE row_id = 1").await,
        "1"
    );
    assert_eq!(
        one(
            &other,
            "SELECT occurrences FROM reports FINAL WHERE row_id = 1"
        )
        .await,
        (rows[0].occurrences + 100).to_string(),
        "the higher version wins"
    );
    // Both shards hold rows, and every version of a row sits on one shard.
    let per_node = row_ids_per_node(&cluster, "reports_local", "row_id").await;
    assert!(per_node.iter().all(|ids| !ids.is_empty()), "{per_node:?}");
    assert!(per_node[0].is_disjoint(&per_node[1]), "{per_node:?}");
    assert_eq!(per_node[0].len() + per_node[1].len(), 46);

    // --- rollups: each group equals its recomputation from reports FINAL.
    let hour = "toDateTime(intDiv(toUInt32(window_start), 3600) * 3600)";
    let from_reports = cells(
        &other,
        &format!(
            "SELECT project_id, toUInt32({hour}) AS h, count(), sum(occurrences) FROM reports FINAL \
             GROUP BY project_id, h ORDER BY project_id, h"
        ),
    )
    .await;
    let from_rollup = cells(
        &other,
        "SELECT project_id, toUInt32(hour) AS h, sum(rows), sum(occurrences) \
         FROM rollup_hourly FINAL GROUP BY project_id, h ORDER BY project_id, h",
    )
    .await;
    assert_eq!(from_rollup, from_reports);
    assert_eq!(from_reports.len(), 3, "{from_reports:?}");
    assert_eq!(
        one(
            &other,
            "SELECT sum(rows), sum(occurrences) FROM rollup_policy_hourly FINAL"
        )
        .await,
        format!("46\t{expected_sum}")
    );
    // A recomputed group replaces its previous version on the same shard.
    let groups = row_ids_per_node(
        &cluster,
        "rollup_hourly_local",
        "project_id, hour, blocked_origin",
    )
    .await;
    assert!(groups[0].is_disjoint(&groups[1]), "{groups:?}");

    // --- checkpoints: the latest point of an offset wins, read from the other node.
    let point = |partition: i32, metadata: &str, version: u64| Checkpoint {
        consumer_group: "g".to_owned(),
        topic: "t".to_owned(),
        kafka_partition: partition,
        kafka_offset: 100,
        metadata: metadata.to_owned(),
        written_at: H0,
        version,
    };
    let older: Vec<Checkpoint> = (0..4).map(|p| point(p, "older", 1_000)).collect();
    let newer: Vec<Checkpoint> = (0..4).map(|p| point(p, "newer", 2_000)).collect();
    writer.write_checkpoints(&newer).await.expect("checkpoints");
    writer.write_checkpoints(&older).await.expect("checkpoints");
    let reader = self::writer(&other);
    for partition in 0..4 {
        assert_eq!(
            reader
                .read_checkpoint("g", "t", partition, 100)
                .await
                .expect("reads"),
            Some("newer".to_owned())
        );
    }

    // --- retention: day 0 expires on every shard; the other project's later rows stay.
    let dropped = writer
        .drop_expired_partitions_on(&topology, NonZeroU32::new(30).expect("non-zero"), DAY0 + 31)
        .await
        .expect("drops");
    let dropped: Vec<(String, String)> = dropped
        .into_iter()
        .map(|partition| (partition.table, partition.partition_id))
        .collect();
    assert_eq!(
        dropped,
        vec![
            ("reports_local".to_owned(), "20231115".to_owned()),
            ("rollup_hourly_local".to_owned(), "20231115".to_owned()),
            (
                "rollup_policy_hourly_local".to_owned(),
                "20231115".to_owned()
            ),
        ]
    );
    assert_eq!(
        one(
            &other,
            "SELECT count(), sum(occurrences) FROM reports FINAL"
        )
        .await,
        "6\t12"
    );
    assert_eq!(
        one(&other, "SELECT sum(rows) FROM rollup_hourly FINAL").await,
        "6"
    );

    writer
        .delete_project_before_on(&topology, OTHER_PROJECT, DAY0 + 3)
        .await
        .expect("deletes");
    testbed::wait::wait_for(
        "the per-project delete on every shard",
        Duration::from_secs(60),
        || async {
            let left = one(
                &other,
                "SELECT (SELECT count() FROM reports) + (SELECT count() FROM rollup_hourly)",
            )
            .await;
            if left == "0" {
                Ok(())
            } else {
                Err(format!("{left} rows left"))
            }
        },
    )
    .await;
    // --- the row cap (issue 12, storage bound per tenant): 8 rows of PROJECT spread over both
    // shards, trimmed to the 3 newest by mutations of the local tables of every shard.
    let capped: Vec<ReportRow> = (0..8)
        .map(|i| row(300 + i, PROJECT, H0 + 40 * DAY + (i as u32) * 60, 1))
        .collect();
    writer.insert_rows(&capped).await.expect("inserted");
    let trimmed = writer
        .trim_project_on(
            &topology,
            PROJECT,
            std::num::NonZeroU64::new(3).expect("non-zero"),
        )
        .await
        .expect("trims")
        .expect("over the cap");
    assert_eq!((trimmed.rows, trimmed.deleted), (8, 5));
    testbed::wait::wait_for(
        "the row cap on every shard",
        Duration::from_secs(60),
        || async {
            let left = one(
                &other,
                "SELECT groupArray(row_id) FROM (SELECT row_id FROM reports FINAL ORDER BY row_id)",
            )
            .await;
            if left == "[305,306,307]" {
                Ok(())
            } else {
                Err(format!("rows left: {left}"))
            }
        },
    )
    .await;
    let per_node = row_ids_per_node(&cluster, "reports_local", "row_id").await;
    assert!(
        per_node.iter().all(|ids| ids.len() < 3),
        "both shards held rows: {per_node:?}"
    );
}
