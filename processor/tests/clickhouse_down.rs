//! Back-pressure: while ClickHouse does not answer (its process is stopped with SIGSTOP, so
//! connections hang until the attempt timeout), the `palisade-processor` binary parks its batch,
//! pauses its partitions (`processor_paused` = 1, `/readyz` 503), still reports its consumer
//! lag, keeps its memory bounded, and recovers on its own when ClickHouse is back (SIGCONT),
//! with exact counts. Against REAL tansu and ClickHouse (testbed).
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{fixture_reports, message, wait_for, Child, Env, RECEIVED_AT_MS};

/// Generous bound on the processor's resident memory during the outage.
const MAX_RSS_KIB: u64 = 256 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pauses_while_clickhouse_is_down_and_recovers_without_loss() {
    let Some(env) = Env::start("chdown", 2).await else {
        return;
    };
    let mut producer = env.producer();
    let csp = fixture_reports("legacy_wrapped.json").remove(0);
    let mut groups = BTreeSet::new();
    let mut sent = 0u64;
    let window_messages = |window: u64, clients: u64, copies: u64| {
        let mut batch = Vec::new();
        for copy in 0..copies {
            for client in 0..clients {
                let ip = format!("198.51.100.{client}");
                let received = RECEIVED_AT_MS + window * 2000 + copy;
                batch.push(message(
                    csp.clone(),
                    &ip,
                    format!("{window}-{copy}-{client}"),
                    received,
                ));
            }
        }
        batch
    };

    let flags = [
        "--clickhouse-timeout-ms",
        "1000",
        "--clickhouse-retry-attempts",
        "2",
    ];
    let child = Child::spawn(&env, &flags);
    for m in window_messages(0, 20, 5) {
        groups.insert((common::dedup_key(&m), 0));
        producer.send(&m).await;
        sent += 1;
    }
    let before = (groups.len() as u64, sent);
    wait_for("the first batch", Duration::from_secs(60), || async {
        let totals = env.totals().await;
        if totals == before {
            Ok(())
        } else {
            Err(format!("{totals:?}; log:\n{}", child.log_tail()))
        }
    })
    .await;
    assert_eq!(child.metric("processor_paused"), Some(0.0));

    // ClickHouse stops answering; traffic continues over 10 more windows.
    common::signal(env.clickhouse.pid(), "-STOP");
    for window in 1..=10 {
        let messages = window_messages(window, 50, 10);
        for m in &messages {
            groups.insert((common::dedup_key(m), window));
        }
        producer.send_all(&messages).await;
        sent += messages.len() as u64;
    }
    wait_for("the consumer to pause", Duration::from_secs(60), || async {
        match child.metric("processor_paused") {
            Some(1.0) => Ok(()),
            other => Err(format!("{other:?}; log:\n{}", child.log_tail())),
        }
    })
    .await;
    let (ready, _) = common::http_get(child.admin_port, "/readyz").unwrap();
    assert_eq!(ready, 503, "not ready while ClickHouse is down");
    // Lag is measured while paused too (every 10 s): nothing is committed while the batch is
    // parked, so after more messages the gauge must reach exactly the broker's high watermarks
    // minus the committed offsets.
    let more = window_messages(11, 50, 10);
    for m in &more {
        groups.insert((common::dedup_key(m), 11));
    }
    producer.send_all(&more).await;
    sent += more.len() as u64;
    let lag = wait_for(
        "the consumer lag to follow while paused",
        Duration::from_secs(30),
        || async {
            let high: i64 = env.high_watermarks().await.values().sum();
            let committed: i64 = env.committed().await.values().sum();
            match child.metric("processor_consumer_lag_messages") {
                Some(lag) if lag == (high - committed) as f64 => Ok(lag),
                other => Err(format!(
                    "lag {other:?}, high watermarks {high} - committed {committed}"
                )),
            }
        },
    )
    .await;
    eprintln!("consumer lag while paused: {lag} ({sent} messages sent)");
    let expected = (groups.len() as u64, sent);

    // Memory while paused: sampled from /proc for a few seconds, never above the bound.
    let started = Instant::now();
    let mut samples = Vec::new();
    while started.elapsed() < Duration::from_secs(5) {
        samples.push(common::rss_kib(child.pid()).expect("the processor is running"));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (min, max) = (
        *samples.iter().min().unwrap(),
        *samples.iter().max().unwrap(),
    );
    eprintln!(
        "RSS while ClickHouse is down: {min}..{max} KiB over {} samples",
        samples.len()
    );
    assert!(max < MAX_RSS_KIB, "RSS {max} KiB over the bound");
    assert_eq!(child.metric("processor_paused"), Some(1.0), "still paused");

    common::signal(env.clickhouse.pid(), "-CONT");
    let recovered = Instant::now();
    env.wait_for_totals(
        "exact totals after recovery",
        Duration::from_secs(90),
        expected,
        &child,
    )
    .await;
    eprintln!("recovered in {:?}", recovered.elapsed());
    wait_for(
        "the consumer to resume",
        Duration::from_secs(30),
        || async {
            match child.metric("processor_paused") {
                Some(0.0) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    let errors = child.metric("processor_write_errors_total").unwrap();
    assert!(errors >= 1.0, "the outage was seen as write errors");
}

/// Regression (RELIABILITY.md, the `clickhouse_down_under_load` finding): the pause must not
/// catch the consumer inside a record batch and lose the rest of it. librdkafka drops what it
/// prefetched on a pause and fetches again from the record after the last one it handed out on
/// the resume; tansu 0.6 answers a fetch from inside a record batch with the NEXT batch. The
/// processor reads a backlog written in large record batches; ClickHouse is stopped while it
/// reads, so the pause comes with the consumer in the middle of the backlog. After SIGCONT every
/// message is counted, and no offset was skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_inside_a_record_batch_loses_nothing() {
    const WINDOWS: u64 = 40;
    const CLIENTS: u64 = 50;
    const COPIES: u64 = 20;
    let Some(env) = Env::start("chbacklog", 1).await else {
        return;
    };
    let mut producer = env.producer();
    let csp = fixture_reports("legacy_wrapped.json").remove(0);
    let mut groups = BTreeSet::new();
    let mut sent = 0u64;
    // The backlog, queued per window so the producer writes batches of many records.
    for window in 0..WINDOWS {
        let mut batch = Vec::new();
        for copy in 0..COPIES {
            for client in 0..CLIENTS {
                let ip = format!("198.51.100.{client}");
                let received = RECEIVED_AT_MS + window * 2000 + copy;
                let m = message(
                    csp.clone(),
                    &ip,
                    format!("{window}-{copy}-{client}"),
                    received,
                );
                groups.insert((common::dedup_key(&m), window));
                batch.push(m);
            }
        }
        producer.send_all(&batch).await;
        sent += batch.len() as u64;
    }
    let child = Child::spawn(
        &env,
        &[
            "--clickhouse-timeout-ms",
            "1000",
            "--clickhouse-retry-attempts",
            "2",
        ],
    );
    // ClickHouse stops once the processor has started on the backlog.
    let consumed = wait_for("the processor to read", Duration::from_secs(60), || async {
        match child.metric("processor_messages_consumed_total") {
            Some(n) if n > 0.0 => Ok(n),
            other => Err(format!("{other:?}; log:\n{}", child.log_tail())),
        }
    })
    .await;
    common::signal(env.clickhouse.pid(), "-STOP");
    wait_for("the consumer to pause", Duration::from_secs(60), || async {
        match child.metric("processor_paused") {
            Some(1.0) => Ok(()),
            other => Err(format!("{other:?}; log:\n{}", child.log_tail())),
        }
    })
    .await;
    let at_pause = child.metric("processor_messages_consumed_total").unwrap();
    eprintln!("ClickHouse stopped after {consumed} messages, paused after {at_pause} of {sent}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    common::signal(env.clickhouse.pid(), "-CONT");
    env.wait_for_totals(
        "exact totals after the resume",
        Duration::from_secs(90),
        (groups.len() as u64, sent),
        &child,
    )
    .await;
    assert_eq!(child.metric("processor_offsets_skipped_total"), Some(0.0));
}
