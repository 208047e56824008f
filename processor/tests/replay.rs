//! `palisade-processor replay-dead-letters` makes the dead-letter topic recoverable: a row
//! ClickHouse rejected (a bad DEFAULT for one document host, as in `rejected.rs`) is
//! dead-lettered; after the table is fixed, `--dry-run` only counts it, and the real run
//! re-inserts it with its exact count and refreshed rollups, idempotently (a second run changes
//! nothing); an undecodable record is re-published to the reports topic with its original key.
//! Against REAL tansu and ClickHouse (testbed), through the real binary.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::{fixture_reports, message, wait_for, Env, DATABASE, RECEIVED_AT_MS};

const GOOD_CLIENTS: u64 = 20;
const POISON_COPIES: u64 = 3;

/// Run `replay-dead-letters` with the environment's flags and `extra`; its stdout.
fn replay(env: &Env, extra: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_palisade-processor"))
        .arg("replay-dead-letters")
        .args(["--kafka-brokers", &env.kafka.bootstrap()])
        .args(["--kafka-topic", &env.topic])
        .args(["--dead-letter-topic", &env.dead_letter_topic])
        .args(["--clickhouse-url", &env.clickhouse.http_url()])
        .args(["--clickhouse-database", DATABASE])
        .args(["--idle-ms", "2000"])
        .args(extra)
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!("replay {extra:?}:\n{stdout}");
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_dead_letters_reinserts_rejected_rows_and_republishes_records() {
    let Some(env) = Env::start("replay", 2).await else {
        return;
    };
    processor::migrate::migrate(&env.client, DATABASE)
        .await
        .unwrap();
    let guard = |sql: &'static str| {
        let client = env.client.clone().with_database(DATABASE);
        async move { client.query(sql).execute().await.unwrap() }
    };
    guard(
        "ALTER TABLE reports ADD COLUMN poison_guard UInt8 \
         DEFAULT toUInt8(if(document_host = 'poison.example', 'x', '0'))",
    )
    .await;

    let mut producer = env.producer();
    let csp = fixture_reports("legacy_wrapped.json").remove(0);
    for client in 0..GOOD_CLIENTS {
        let m = message(
            csp.clone(),
            &format!("198.51.100.{client}"),
            format!("good-{client}"),
            RECEIVED_AT_MS + client,
        );
        producer.send(&m).await;
    }
    let mut poison = csp.clone();
    poison.document_url = Some("https://poison.example/checkout".into());
    for copy in 0..POISON_COPIES {
        let m = message(
            poison.clone(),
            "203.0.113.9",
            format!("poison-{copy}"),
            RECEIVED_AT_MS + 100,
        );
        producer.send(&m).await;
    }
    producer
        .raw(0, Some(b"00000000000000ff"), b"{not json")
        .await;

    let processor = env.spawn_processor(&[]);
    let letters = env.dead_letters(2, Duration::from_secs(60)).await;
    assert_eq!(letters.len(), 2, "{letters:?}");
    wait_for("the good rows", Duration::from_secs(60), || async {
        match env.totals().await {
            totals if totals == (GOOD_CLIENTS, GOOD_CLIENTS) => Ok(()),
            totals => Err(format!("{totals:?}")),
        }
    })
    .await;
    env.wait_for_end_offsets(&producer, Duration::from_secs(30))
        .await;
    processor.stop().await;

    // The operator fixes the table, looks first, then replays.
    guard("ALTER TABLE reports DROP COLUMN poison_guard").await;
    let dry = replay(&env, &["--dry-run"]);
    assert!(dry.contains("dead letters read: 2"), "{dry}");
    assert!(
        dry.contains("rows would be re-inserted into clickhouse: 1 (3 reports)"),
        "{dry}"
    );
    assert!(
        dry.contains("records would be re-published to the reports topic: 1"),
        "{dry}"
    );
    assert_eq!(
        env.totals().await,
        (GOOD_CLIENTS, GOOD_CLIENTS),
        "dry run wrote nothing"
    );
    let high_before: i64 = env.high_watermarks().await.values().sum();

    let real = replay(&env, &["--max-messages", "100"]);
    assert!(
        real.contains("rows re-inserted into clickhouse: 1 (3 reports)"),
        "{real}"
    );
    assert!(
        real.contains("records re-published to the reports topic: 1"),
        "{real}"
    );
    let expected = (GOOD_CLIENTS + 1, GOOD_CLIENTS + POISON_COPIES);
    assert_eq!(env.totals().await, expected);
    assert_eq!(
        env.rollup_totals().await,
        format!("{}\t{}", expected.0, expected.1),
        "rollups refreshed"
    );
    // The undecodable record is back on the reports topic, with its key and its origin.
    let republished = testbed::kafka::consume_all(
        &env.kafka.bootstrap(),
        &env.topic,
        Duration::from_secs(2),
        Duration::from_secs(20),
    )
    .await
    .unwrap();
    let copy = republished
        .iter()
        .find(|m| m.header("palisade-replayed-from").is_some())
        .expect("a re-published record");
    assert_eq!(copy.key.as_deref(), Some("00000000000000ff"));
    assert_eq!(copy.payload, b"{not json");
    assert!(env.high_watermarks().await.values().sum::<i64>() > high_before);

    // Idempotent: replaying the rows again changes no count.
    let again = replay(&env, &[]);
    assert!(
        again.contains("rows re-inserted into clickhouse: 1 (3 reports)"),
        "{again}"
    );
    assert_eq!(env.totals().await, expected);
}
