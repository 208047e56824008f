//! Graceful shutdown of the `palisade-processor` binary (SIGTERM): it stops polling, writes the
//! batch it holds, commits, and exits 0. Against REAL tansu and ClickHouse (testbed).
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{fixture_reports, message, wait_for, Child, Env, RECEIVED_AT_MS};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_writes_and_commits_the_last_batch() {
    let Some(env) = Env::start("shutdown", 2).await else {
        return;
    };
    let mut producer = env.producer();
    let csp = fixture_reports("legacy_wrapped.json").remove(0);
    let mut keys = BTreeSet::new();
    let mut sent = 0u64;
    for client in 0..6 {
        for i in 0..5 {
            let ip = format!("192.0.2.{client}");
            let m = message(csp.clone(), &ip, format!("{client}-{i}"), RECEIVED_AT_MS);
            keys.insert(common::dedup_key(&m));
            producer.send(&m).await;
            sent += 1;
        }
    }
    let groups = keys.len() as u64;

    // Batches only age out after 10 minutes: the rows can only be written by the shutdown.
    let mut child = Child::spawn(&env, &["--batch-age-ms", "600000"]);
    wait_for(
        "every window closed into a row",
        Duration::from_secs(60),
        || async {
            match child.metric("processor_rows_emitted_total") {
                Some(rows) if rows == groups as f64 => Ok(()),
                other => Err(format!("{other:?}; log:\n{}", child.log_tail())),
            }
        },
    )
    .await;
    assert_eq!(
        env.totals().await,
        (0, 0),
        "nothing written before the shutdown"
    );

    common::signal(child.pid(), "-TERM");
    let status = common::wait_exit(&mut child, Duration::from_secs(30)).await;
    assert!(status.success(), "exit {status}: {}", child.log_tail());
    assert_eq!(env.totals().await, (groups, sent), "{}", child.log_tail());
    assert_eq!(
        env.committed().await,
        producer.produced,
        "committed offsets are the end of every partition"
    );
    let checkpoints = env
        .scalar("SELECT count() FROM processor_checkpoints FINAL")
        .await
        .unwrap();
    assert_ne!(
        checkpoints, "0",
        "the commit points were stored before the commit"
    );
}
