//! The processor's memory against hostile messages already in Kafka (issue 10 item 1;
//! RELIABILITY.md): 60 deprecation reports with distinct URLs, each carrying ~880 KB of small
//! numbers in an unknown body field (what a pre-fix ingest accepted, or a hostile producer
//! writes), are consumed by the real `palisade-processor` binary with a small
//! `--dedup-max-bytes`. Its resident memory stays under a stated bound, it does not exit, and
//! ClickHouse ends with the exact counts. Against REAL tansu and ClickHouse (testbed).
//!
//! Before the byte bound, each open window kept its first message as a JSON tree (~20 bytes of
//! memory per byte sent) and only the number of windows was bounded: the same 53 MB took the
//! processor past 1 GiB, and a restart replayed the same windows.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{fixture_reports, message, rss_kib, wait_for, Child, Env, RECEIVED_AT_MS};

/// Hostile messages, one window each (distinct document URLs).
const MESSAGES: u64 = 60;
/// Zeros in each message's unknown field: `0,` is 2 bytes, so ~880 KB of JSON.
const ZEROS: usize = 440_000;
/// `--dedup-max-bytes` of the run: a few of those messages' trees.
const DEDUP_MAX_BYTES: &str = "33554432";
/// Bound on the processor's peak resident memory (VmHWM) over the run. The idle processor
/// holds ~30-60 MiB (debug build); on top: the dedup bound (32 MiB), one message being decoded
/// (~20 MiB), librdkafka's prefetch (`--kafka-prefetch-kbytes`, 16 MiB), a batch of rows
/// (`--batch-bytes`, 16 MiB) and its RowBinary buffer. Without the byte bound it passed 1 GiB.
const PEAK_BOUND_BYTES: u64 = 400 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_unknown_fields_in_kafka_cannot_exhaust_the_processor() {
    let Some(env) = Env::start("memory", 1).await else {
        return;
    };
    let mut producer = env.producer();
    let base = fixture_reports("deprecation.json").remove(0);
    let zeros = format!("[{}0]", "0,".repeat(ZEROS - 1));
    let mut payload_bytes = 0usize;
    for i in 0..MESSAGES {
        let mut report = base.clone();
        report.document_url = Some(format!("https://shop.example/page/{i}"));
        report.details = schemas::Details::Fields(
            serde_json::json!({ "id": "UnloadHandler", "padding": "PADDING" })
                .as_object()
                .cloned()
                .unwrap(),
        );
        let m = message(
            report,
            "192.0.2.1",
            format!("hostile-{i}"),
            // 60 reports in 18 s, as the attack in the issue sent them.
            RECEIVED_AT_MS + i * 300,
        );
        let key = format!("{:016x}", common::dedup_key(&m));
        let text = String::from_utf8(m.encode()).unwrap();
        assert!(text.contains("\"PADDING\""), "{text}");
        let payload = text.replacen("\"PADDING\"", &zeros, 1);
        payload_bytes += payload.len();
        producer
            .raw(0, Some(key.as_bytes()), payload.as_bytes())
            .await;
    }

    let mut child = Child::spawn(
        &env,
        &[
            "--window-secs",
            "60",
            "--dedup-max-bytes",
            DEDUP_MAX_BYTES,
            "--batch-age-ms",
            "200",
        ],
    );
    let pid = child.pid();
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = Arc::clone(&stop);
    let sampler = tokio::spawn(async move {
        let mut peak = 0u64;
        while !stopped.load(Ordering::SeqCst) {
            match rss_kib(pid) {
                Some(kib) => peak = peak.max(kib * 1024),
                None => break,
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        peak
    });

    env.wait_for_totals(
        "every hostile message counted once",
        Duration::from_secs(120),
        (MESSAGES, MESSAGES),
        &child,
    )
    .await;
    assert!(
        child.process.exited().is_none(),
        "the processor exited: {}",
        child.log_tail()
    );
    let hwm = peak_rss(pid);
    stop.store(true, Ordering::SeqCst);
    let sampled = sampler.await.unwrap();
    let forced = child
        .metric("processor_windows_closed_total{reason=\"forced\"}")
        .unwrap_or(0.0);
    println!(
        "{MESSAGES} messages, {:.1} MB in all; --dedup-max-bytes {DEDUP_MAX_BYTES}; processor peak RSS (VmHWM) {:.1} MiB, max sampled {:.1} MiB; windows force-closed {forced}",
        payload_bytes as f64 / 1e6,
        hwm as f64 / (1 << 20) as f64,
        sampled as f64 / (1 << 20) as f64,
    );
    assert!(
        hwm < PEAK_BOUND_BYTES,
        "peak RSS {hwm} >= {PEAK_BOUND_BYTES}: {}",
        child.log_tail()
    );
    assert!(forced > 0.0, "the byte bound closed windows early");
    let row = env
        .scalar("SELECT max(length(details)) FROM reports FINAL")
        .await
        .unwrap();
    assert!(
        row.parse::<usize>().unwrap() > ZEROS * 2,
        "the report is stored whole"
    );
    drop(child);

    // A restart that replays the same messages (a fresh group: no commit, no checkpoint, so
    // from offset 0) is bounded the same way and re-emits the same rows (same ids and counts).
    let replay = Child::spawn(
        &env,
        &[
            "--window-secs",
            "60",
            "--dedup-max-bytes",
            DEDUP_MAX_BYTES,
            "--batch-age-ms",
            "200",
            "--kafka-group",
            "memory-replay",
        ],
    );
    wait_for("the replay's rows", Duration::from_secs(120), || async {
        match replay.metric("processor_rows_emitted_total") {
            Some(rows) if rows >= MESSAGES as f64 => Ok(()),
            other => Err(format!("{other:?}; log:\n{}", replay.log_tail())),
        }
    })
    .await;
    env.wait_for_totals(
        "the replay counts nothing twice",
        Duration::from_secs(60),
        (MESSAGES, MESSAGES),
        &replay,
    )
    .await;
    let replay_hwm = peak_rss(replay.pid());
    println!(
        "replay: peak RSS (VmHWM) {:.1} MiB",
        replay_hwm as f64 / (1 << 20) as f64
    );
    let mut replay = replay;
    assert!(replay.process.exited().is_none(), "{}", replay.log_tail());
    assert!(
        replay_hwm < PEAK_BOUND_BYTES,
        "replay peak RSS {replay_hwm}"
    );
}

/// `VmHWM` of `pid`, bytes (0 when gone).
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |kib| kib * 1024)
}
