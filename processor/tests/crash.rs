//! Crash safety of the `palisade-processor` binary: killed with SIGKILL in the middle of its
//! batches and restarted, it ends with EXACT counts (every report counted once, one row per
//! (dedup key, window)), because offsets are committed only after the rows and checkpoints are
//! written and a restart replays from the commit point with its dedup state. Against REAL tansu
//! and ClickHouse (testbed).
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{fixture_reports, message, wait_for, Child, Env, RECEIVED_AT_MS};

const CLIENTS: u64 = 40;
const WINDOWS: u64 = 15;
const PER_WINDOW: u64 = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_batch_then_restart_counts_exactly() {
    let Some(env) = Env::start("crash", 2).await else {
        return;
    };
    let mut producer = env.producer();
    let csp = fixture_reports("legacy_wrapped.json").remove(0);
    let mut groups = BTreeSet::new();
    let mut sent = 0u64;
    // Traffic over 15 windows of 2 s: the watermark closes windows while the processor reads,
    // so rows are written in many small batches (`--batch-rows 20`).
    let mut messages = Vec::new();
    for window in 0..WINDOWS {
        for copy in 0..PER_WINDOW {
            for client in 0..CLIENTS {
                let received = RECEIVED_AT_MS + window * 2000 + copy * 10;
                let ip = format!("192.0.2.{client}");
                let m = message(
                    csp.clone(),
                    &ip,
                    format!("{window}-{copy}-{client}"),
                    received,
                );
                groups.insert((common::dedup_key(&m), window));
                messages.push(m);
            }
        }
    }
    producer.send_all(&messages).await;
    sent += messages.len() as u64;
    let expected = (groups.len() as u64, sent);
    assert_eq!(
        expected,
        (CLIENTS * WINDOWS, CLIENTS * WINDOWS * PER_WINDOW)
    );

    let flags = ["--batch-rows", "10", "--batch-age-ms", "100"];
    // 1: killed in the middle of its first batch, before any commit.
    let mut first = Child::spawn(&env, &flags);
    let rows_at_kill = wait_for("the first rows", Duration::from_secs(60), || async {
        match env.scalar("SELECT count() FROM reports").await {
            Some(rows) if rows != "0" => Ok(rows.parse::<u64>().unwrap()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    first.process.kill();
    assert!(
        rows_at_kill < expected.0,
        "killed after every row was written ({rows_at_kill}): the test proves nothing"
    );
    eprintln!(
        "first kill with {:?} of {expected:?} (rows, occurrences) written",
        env.totals().await
    );

    // 2: killed right after its first commit (a checkpoint row), with batches still to write.
    let checkpoints = "SELECT count() FROM processor_checkpoints";
    let before = env.scalar(checkpoints).await.unwrap();
    assert_eq!(before, "0", "the first instance never committed");
    let mut second = Child::spawn(&env, &flags);
    wait_for("a commit", Duration::from_secs(60), || async {
        match env.scalar(checkpoints).await {
            Some(n) if n != "0" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    second.process.kill();
    let at_second_kill = env.totals().await;
    eprintln!("second kill with {at_second_kill:?} of {expected:?} written");
    assert!(
        at_second_kill.0 < expected.0,
        "killed after every row was written: the test proves less"
    );

    // 3: resumes from the committed offsets and their checkpoints, ends exact.
    let third = Child::spawn(&env, &flags);
    env.wait_for_totals(
        "exact totals after the restart",
        Duration::from_secs(120),
        expected,
        &third,
    )
    .await;
    // Every row has the full count of its window, and the rollups agree.
    let partial = env.partial_windows(PER_WINDOW).await;
    assert_eq!(partial, "0");
    // Rollups are refreshed after the insert and before the commit: wait for the end offsets.
    env.wait_for_end_offsets(&producer, Duration::from_secs(30))
        .await;
    let rollup = env.rollup_totals().await;
    assert_eq!(rollup, format!("{}\t{}", expected.0, expected.1));
    assert!(
        third.log_text().contains("restored=true"),
        "the third instance resumed from a commit point: {}",
        third.log_tail()
    );
}
