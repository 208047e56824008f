//! b) ClickHouse down under load (its process stopped with SIGSTOP, so connections hang until
//! the processor's attempt timeout): the processor holds its offsets, retries with backoff,
//! pauses its partitions (`processor_paused` = 1) with bounded memory, and after SIGCONT every
//! accepted report is counted exactly once. Ingest is not affected: every request is a 2xx.

use std::time::{Duration, Instant};

use crate::stack::{check_answers, knob, until, FaultStack};
use crate::support::children::{signal, RssSampler};
use crate::support::load::Load;

const SCENARIO: &str = "clickhouse_down_under_load";
/// Generous structural bound on the processor's resident memory: a leak or an unbounded
/// buffer of a minute of load would pass it only if tiny. Measured figures are in the docs.
const MAX_RSS_MIB: f64 = 512.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_down_under_load() {
    let down_for = Duration::from_secs(knob("PALISADE_FAULT_CLICKHOUSE_DOWN_SECS", 20));
    let Some(stack) = FaultStack::start().await else {
        return;
    };
    let Some(ingest) = stack.ingest(&[]).await else {
        return;
    };
    let flags = [
        "--clickhouse-timeout-ms",
        "1000",
        "--clickhouse-retry-attempts",
        "2",
    ];
    let Some(processor) = stack.processor(&flags).await else {
        return;
    };
    ingest.wait_ready(200, Duration::from_secs(60)).await;
    let rss = RssSampler::default();
    rss.watch(processor.pid());

    let load = Load::start(FaultStack::plan(SCENARIO, &ingest));
    tokio::time::sleep(Duration::from_secs(5)).await;
    let before = rss.peak_mib();

    signal(stack.clickhouse.pid(), "-STOP");
    let stopped = Instant::now();
    let paused_after = until("the processor pauses", Duration::from_secs(60), || async {
        match processor.metric("processor_paused").await {
            Some(1.0) => Ok(stopped.elapsed()),
            other => Err(format!("{other:?}\n{}", processor.log_tail())),
        }
    })
    .await;
    if let Some(left) = down_for.checked_sub(stopped.elapsed()) {
        tokio::time::sleep(left).await;
    }
    assert_eq!(
        processor.metric("processor_paused").await,
        Some(1.0),
        "still paused at the end of the outage"
    );
    assert_eq!(
        processor.ready().await,
        503,
        "not ready while ClickHouse is down"
    );
    let during = rss.peak_mib();
    signal(stack.clickhouse.pid(), "-CONT");
    let resumed = Instant::now();
    let resumed_after = until("the processor resumes", Duration::from_secs(60), || async {
        match processor.metric("processor_paused").await {
            Some(0.0) => Ok(resumed.elapsed()),
            other => Err(format!("{other:?}\n{}", processor.log_tail())),
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    let tally = load.stop().await;
    check_answers(SCENARIO, &tally, false);
    assert_eq!(
        tally.refused_requests, 0,
        "ingest does not depend on ClickHouse"
    );
    let mut ledger = stack.ledger(SCENARIO, &tally).await;
    ledger.peak_rss_mib = Some(rss.peak_mib());
    let errors = processor
        .metric("processor_write_errors_total")
        .await
        .unwrap();
    eprintln!(
        "{SCENARIO}: down {:?}, paused after {paused_after:?}, resumed {resumed_after:?} after \
         SIGCONT; processor RSS peak {before:.1} MiB before, {during:.1} MiB during the outage, \
         {:.1} MiB overall ({} samples); write errors {errors}",
        down_for,
        rss.peak_mib(),
        rss.samples()
    );
    ledger.assert_exact();
    assert!(errors >= 1.0, "the outage was seen as write errors");
    assert!(
        rss.peak_mib() < MAX_RSS_MIB,
        "processor RSS {:.1} MiB over the bound",
        rss.peak_mib()
    );
}
