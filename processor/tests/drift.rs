//! Schema drift: when the `reports` table stops accepting ANY row (here a column whose DEFAULT
//! fails to parse for every row, code 6 on 18.16, which looks like bad data), the processor must
//! not split each batch down to single rows and dead-letter them all. It classes the insert as
//! wholly rejected (misconfigured): nothing is dead-lettered, the offsets stay uncommitted, the
//! consumer pauses, `/readyz` answers 503 and `processor_write_blocked` is 1; once the table is
//! fixed, every report lands with its exact count. Both evidence paths are exercised: at
//! start-up (nothing written yet: the blind splits are all refused) and later (the last written row, the
//! probe, is refused too). Against REAL tansu and ClickHouse (testbed).
//!
//! Regression for issue 10, item 8: before, every row went to the dead-letter topic.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{fixture_reports, message, wait_for, Child, Env, DATABASE, RECEIVED_AT_MS};

const BREAK_TABLE: &str = "ALTER TABLE reports ADD COLUMN drift_guard UInt8 \
                           DEFAULT toUInt8(if(project_id > 0, 'x', '0'))";
const FIX_TABLE: &str = "ALTER TABLE reports DROP COLUMN drift_guard";

async fn alter(env: &Env, sql: &str) {
    env.client
        .clone()
        .with_database(DATABASE)
        .query(sql)
        .execute()
        .await
        .unwrap();
}

/// Wait until the processor has refused `at_least` inserts as a whole and paused, then check
/// the alert surface and that no dead letter was produced.
async fn wait_for_block(env: &Env, child: &Child, at_least: f64) {
    wait_for(
        "the insert to be refused as a whole",
        Duration::from_secs(60),
        || async {
            let refused = child.metric("processor_inserts_wholly_rejected_total");
            let paused = child.metric("processor_paused");
            match (refused, paused) {
                (Some(n), Some(1.0)) if n >= at_least => Ok(()),
                other => Err(format!("{other:?}; log:\n{}", child.log_tail())),
            }
        },
    )
    .await;
    assert_eq!(child.metric("processor_write_blocked"), Some(1.0));
    let (status, body) = common::http_get(child.admin_port, "/readyz").unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("refuses the batch"), "{body}");
    let letters = testbed::kafka::consume_all(
        &env.kafka.bootstrap(),
        &env.dead_letter_topic,
        Duration::from_secs(2),
        Duration::from_secs(20),
    )
    .await
    .unwrap();
    assert!(
        letters.is_empty(),
        "dead-lettered: {} records",
        letters.len()
    );
    assert_eq!(
        child.metric("processor_messages_dead_lettered_total"),
        Some(0.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_that_refuses_every_row_pauses_instead_of_dead_lettering() {
    let Some(env) = Env::start("drift", 2).await else {
        return;
    };
    processor::migrate::migrate(&env.client, DATABASE)
        .await
        .unwrap();
    let csp = fixture_reports("legacy_wrapped.json").remove(0);
    let mut producer = env.producer();
    let batch = |first: u64, clients: u64, received: u64| -> Vec<_> {
        (first..first + clients)
            .map(|client| {
                message(
                    csp.clone(),
                    &format!("198.51.{}.{}", client / 200, client % 200),
                    format!("drift-{client}"),
                    received,
                )
            })
            .collect()
    };

    // 1. The table is broken before the processor ever wrote a row: no probe row.
    alter(&env, BREAK_TABLE).await;
    producer.send_all(&batch(0, 40, RECEIVED_AT_MS)).await;
    let child = Child::spawn(&env, &["--misconfigured-retry-ms", "500"]);
    wait_for_block(&env, &child, 2.0).await;
    assert_eq!(env.totals().await, (0, 0));
    let committed = env.committed().await;
    assert!(
        committed.values().all(|o| *o == 0),
        "nothing committed: {committed:?}"
    );
    alter(&env, FIX_TABLE).await;
    env.wait_for_totals(
        "the first reports",
        Duration::from_secs(60),
        (40, 40),
        &child,
    )
    .await;
    wait_for("resume", Duration::from_secs(30), || async {
        match (
            child.metric("processor_paused"),
            child.metric("processor_write_blocked"),
        ) {
            (Some(0.0), Some(0.0)) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    // 2. The table breaks while running: the last written row (the probe) is refused too.
    let refused_before = child
        .metric("processor_inserts_wholly_rejected_total")
        .unwrap();
    alter(&env, BREAK_TABLE).await;
    producer
        .send_all(&batch(1000, 60, RECEIVED_AT_MS + 60_000))
        .await;
    wait_for_block(&env, &child, refused_before + 2.0).await;
    assert_eq!(env.totals().await, (40, 40), "nothing of the second batch");
    alter(&env, FIX_TABLE).await;
    env.wait_for_totals("every report", Duration::from_secs(60), (100, 100), &child)
        .await;
    env.wait_for_end_offsets(&producer, Duration::from_secs(30))
        .await;
    assert_eq!(
        child.metric("processor_messages_dead_lettered_total"),
        Some(0.0),
        "nothing was dead-lettered"
    );
    let log = child.log_text();
    assert!(
        log.contains("the table does not match the rows"),
        "alert logged"
    );
}
