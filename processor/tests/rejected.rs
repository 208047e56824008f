//! A row ClickHouse rejects for good does not hold the others back: the batch is split until the
//! row is isolated, the row goes to the dead-letter topic with the partition and offsets of the
//! messages it counts, every other row is written with its exact count, and the offsets are
//! committed past it. Against REAL tansu and ClickHouse (testbed).
//!
//! The rejection is real, not simulated: the test adds a column whose `DEFAULT` (evaluated by
//! the server for every inserted row, since the processor names its columns) fails to parse a
//! number for one document host, which ClickHouse answers with `CANNOT_PARSE_TEXT` (code 6) on
//! 18.16, a permanent error.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{fixture_reports, message, wait_for, Env, DATABASE, RECEIVED_AT_MS};

const GOOD_CLIENTS: u64 = 20;
const POISON_COPIES: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_clickhouse_rejects_is_dead_lettered_with_its_source_and_the_rest_lands() {
    let Some(env) = Env::start("rejected", 2).await else {
        return;
    };
    processor::migrate::migrate(&env.client, DATABASE)
        .await
        .unwrap();
    env.client
        .clone()
        .with_database(DATABASE)
        .query(
            "ALTER TABLE reports ADD COLUMN poison_guard UInt8 \
             DEFAULT toUInt8(if(document_host = 'poison.example', 'x', '0'))",
        )
        .execute()
        .await
        .unwrap();

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
    // One client sends the poisoned report three times: one row, three messages.
    let mut poison = csp.clone();
    poison.document_url = Some("https://poison.example/checkout".into());
    let mut poison_offsets = Vec::new();
    let mut poison_partition = None;
    for copy in 0..POISON_COPIES {
        let m = message(
            poison.clone(),
            "203.0.113.9",
            format!("poison-{copy}"),
            RECEIVED_AT_MS + 100,
        );
        let partition = producer.partition_of(common::dedup_key(&m));
        poison_partition = Some(partition);
        poison_offsets.push(producer.produced.get(&partition).copied().unwrap_or(0));
        producer.send(&m).await;
    }
    let poison_partition = poison_partition.unwrap();

    let processor = env.spawn_processor(&[]);

    // The dead letter: the poisoned row, with its source.
    let letters = env.dead_letters(1, Duration::from_secs(60)).await;
    assert_eq!(letters.len(), 1, "one dead letter: {letters:?}");
    let letter = &letters[0];
    let header = |name| letter.header_text(name);
    eprintln!("dead letter detail: {}", header("detail"));
    assert_eq!(header("reason"), "rejected_by_clickhouse");
    assert!(
        header("detail").contains("Code: 6"),
        "the server's error: {}",
        header("detail")
    );
    assert_eq!(header("source_topic"), env.topic);
    assert_eq!(header("source_partition"), poison_partition.to_string());
    assert_eq!(header("source_offset"), poison_offsets[0].to_string());
    assert_eq!(
        header("source_last_offset"),
        poison_offsets[POISON_COPIES - 1].to_string()
    );
    let row: serde_json::Value = serde_json::from_slice(&letter.payload).unwrap();
    assert_eq!(row["document_host"], "poison.example");
    assert_eq!(row["occurrences"], POISON_COPIES);
    assert_eq!(row["message_id"], "poison-0");

    // Every other row, exactly; nothing of the poisoned one.
    wait_for("the good rows", Duration::from_secs(60), || async {
        let totals = env.totals().await;
        if totals == (GOOD_CLIENTS, GOOD_CLIENTS) {
            Ok(())
        } else {
            Err(format!("{totals:?}"))
        }
    })
    .await;
    assert_eq!(
        env.scalar("SELECT count() FROM reports WHERE document_host = 'poison.example'")
            .await,
        Some("0".to_owned())
    );
    // The partition is not stuck behind the row: everything is committed.
    env.wait_for_end_offsets(&producer, Duration::from_secs(30))
        .await;

    processor.stop().await;
}
