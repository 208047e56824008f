//! The whole processor in-process against REAL tansu and ClickHouse (testbed): report messages
//! are produced straight into Kafka keyed like ingest, and the rows are checked with FINAL.
//!
//! Guards: floods collapse to one row with the exact count; distinct clients stay separate;
//! every report kind lands; undecodable records go to the dead-letter topic with their reason
//! and never stop their partition; rollups are exact; a cancelled run commits the end offsets.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::{fixture_reports, message, wait_for, Env, RECEIVED_AT_MS};

const FIXTURES: [&str; 15] = [
    "chrome_reports_batch.json",
    "nel_network_error.json",
    "expect_ct.json",
    "hpkp.json",
    "expect_staple.json",
    "xss_auditor.json",
    "safari_single_csp.json",
    "unwrapped_legacy.json",
    "legacy_wrapped.json",
    "crash.json",
    "deprecation.json",
    "intervention.json",
    "coep.json",
    "permissions_policy_feature_id.json",
    "test_report.json",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_collapse_kinds_land_and_bad_records_are_dead_lettered() {
    let Some(env) = Env::start("pipeline", 2).await else {
        return;
    };
    let mut producer = env.producer();

    // Undecodable records first on every partition: what follows them must still be processed.
    for partition in 0..env.partitions {
        producer.raw(partition, None, b"{not json").await;
        producer
            .raw(
                partition,
                Some(b"0000000000000001"),
                br#"{"v": 99, "id": "future"}"#,
            )
            .await;
    }

    let mut expected: BTreeMap<u64, u64> = BTreeMap::new(); // dedup key -> occurrences
    let mut kinds = BTreeSet::new();
    let mut sent = 0u64;
    let csp = fixture_reports("legacy_wrapped.json").remove(0);
    // A flood: the same violation from the same client, 50 times.
    for i in 0..50 {
        let m = message(
            csp.clone(),
            "192.0.2.1",
            format!("flood-{i}"),
            RECEIVED_AT_MS + i,
        );
        *expected.entry(common::dedup_key(&m)).or_default() += 1;
        producer.send(&m).await;
        sent += 1;
    }
    let flood_key = common::dedup_key(&message(csp.clone(), "192.0.2.1", String::new(), 0));
    // The same violation from three other clients, 5 times each: three more rows.
    for client in ["192.0.2.2", "192.0.2.3", "2001:db8::"] {
        for i in 0..5 {
            let m = message(
                csp.clone(),
                client,
                format!("{client}-{i}"),
                RECEIVED_AT_MS + 100,
            );
            *expected.entry(common::dedup_key(&m)).or_default() += 1;
            producer.send(&m).await;
            sent += 1;
        }
    }
    // Every kind, twice each (one row per report with occurrences 2).
    for (f, fixture) in FIXTURES.iter().enumerate() {
        for (r, report) in fixture_reports(fixture).into_iter().enumerate() {
            kinds.insert(report.kind.as_str().to_owned());
            for copy in 0..2 {
                let m = message(
                    report.clone(),
                    "198.51.100.7",
                    format!("k-{f}-{r}-{copy}"),
                    RECEIVED_AT_MS + 200,
                );
                *expected.entry(common::dedup_key(&m)).or_default() += 1;
                producer.send(&m).await;
                sent += 1;
            }
        }
    }
    assert!(kinds.len() >= 12, "fixtures cover the kinds: {kinds:?}");

    let processor = env.spawn_processor(&[]);

    let rows = expected.len() as u64;
    wait_for("every report counted", Duration::from_secs(60), || async {
        let totals = env.totals().await;
        if totals == (rows, sent) {
            Ok(())
        } else {
            Err(format!("{totals:?} != {:?}", (rows, sent)))
        }
    })
    .await;

    // The flood is one row with the exact count; the other clients are separate rows.
    let flood = env
        .tsv(&format!(
            "SELECT occurrences, client_ip, message_id FROM reports FINAL WHERE dedup_key = {flood_key}"
        ))
        .await;
    assert_eq!(
        flood,
        vec![vec!["50".to_owned(), "192.0.2.1".into(), "flood-0".into()]]
    );
    let stored: BTreeMap<u64, u64> = env
        .tsv("SELECT dedup_key, occurrences FROM reports FINAL")
        .await
        .into_iter()
        .map(|r| (r[0].parse().unwrap(), r[1].parse().unwrap()))
        .collect();
    assert_eq!(
        stored, expected,
        "one row per dedup key with its exact count"
    );

    let stored_kinds: BTreeSet<String> = env
        .tsv("SELECT DISTINCT kind FROM reports FINAL")
        .await
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    assert_eq!(stored_kinds, kinds);
    // Enrichment reached the row: directive family and the UA of the request.
    let enriched = env
        .tsv(&format!(
            "SELECT directive_family, ua_family, window_start = toDateTime({}) \
             FROM reports FINAL WHERE dedup_key = {flood_key}",
            RECEIVED_AT_MS / 2000 * 2
        ))
        .await;
    assert_eq!(
        enriched,
        vec![vec!["script-src".to_owned(), "Chrome".into(), "1".into()]]
    );

    // Dead letters: both undecodable records of both partitions, with their reasons.
    let letters = env.dead_letters(4, Duration::from_secs(20)).await;
    let mut reasons: Vec<(String, String, String)> = letters
        .iter()
        .map(|l| {
            (
                l.header_text("source_partition"),
                l.header_text("source_offset"),
                l.header_text("reason"),
            )
        })
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        vec![
            ("0".to_owned(), "0".to_owned(), "corrupt".to_owned()),
            ("0".into(), "1".into(), "unsupported_version".into()),
            ("1".into(), "0".into(), "corrupt".into()),
            ("1".into(), "1".into(), "unsupported_version".into()),
        ]
    );
    assert!(letters.iter().any(|l| l.payload == b"{not json"));

    // Shutdown commits the end of every partition (all windows closed by the idle timeout).
    env.wait_for_end_offsets(&producer, Duration::from_secs(20))
        .await;
    // Rollups are refreshed before the commit, so they are complete by now, and exact.
    let rollup = env.rollup_totals().await;
    assert_eq!(rollup, format!("{rows}\t{sent}"));
    let nel: u64 = expected_nel(&env).await;
    let nel_rollup = env
        .scalar("SELECT sum(occurrences) FROM rollup_nel_hourly FINAL")
        .await
        .unwrap();
    assert_eq!(nel_rollup, nel.to_string());

    processor.stop().await;
    assert_eq!(
        env.totals().await,
        (rows, sent),
        "nothing changed at shutdown"
    );
}

/// The binary Kafka payload (`schemas::binary`, ingest's `--kafka-message-format binary`)
/// through real tansu into ClickHouse: every fixture report sent once as JSON (one client) and
/// once as binary (another client) gives the same row apart from the client; a flood mixing
/// both formats is one row with the exact count; a damaged binary record and one of a newer
/// layout are dead-lettered with their reasons, and the partition goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_payloads_land_like_json() {
    use schemas::MessageFormat::{Binary, Json};
    let Some(env) = Env::start("binary", 2).await else {
        return;
    };
    let mut producer = env.producer();

    let csp = fixture_reports("legacy_wrapped.json").remove(0);
    let flood_first = message(csp.clone(), "192.0.2.9", "flood-b".into(), 0);
    let mut damaged = schemas::binary::encode(&flood_first);
    let last = damaged.len() - 1;
    damaged[last] = 7; // the details byte: 0 or 1 only
    let mut newer = schemas::binary::encode(&flood_first);
    newer[1] = schemas::binary::LAYOUT_VERSION + 1;
    let key = format!("{:016x}", common::dedup_key(&flood_first));
    for partition in 0..env.partitions {
        producer
            .raw(partition, Some(key.as_bytes()), &damaged)
            .await;
        producer.raw(partition, Some(key.as_bytes()), &newer).await;
    }

    let mut keys = BTreeSet::new();
    let mut sent = 0u64;
    // A flood alternating formats: one row, 40 occurrences.
    for i in 0..40 {
        let format = if i % 2 == 0 { Binary } else { Json };
        let m = message(
            csp.clone(),
            "192.0.2.9",
            format!("flood-{i}"),
            RECEIVED_AT_MS + i,
        );
        keys.insert(common::dedup_key(&m));
        producer.send_as(&m, format).await;
        sent += 1;
    }
    let flood_key = common::dedup_key(&message(csp, "192.0.2.9", String::new(), 0));
    for (f, fixture) in FIXTURES.iter().enumerate() {
        for (r, report) in fixture_reports(fixture).into_iter().enumerate() {
            for (client, format) in [("198.51.100.1", Json), ("198.51.100.2", Binary)] {
                let m = message(
                    report.clone(),
                    client,
                    format!("k-{f}-{r}"),
                    RECEIVED_AT_MS + 300,
                );
                keys.insert(common::dedup_key(&m));
                producer.send_as(&m, format).await;
                sent += 1;
            }
        }
    }
    let rows = keys.len() as u64;

    let processor = env.spawn_processor(&[]);
    wait_for("every report counted", Duration::from_secs(60), || async {
        let totals = env.totals().await;
        if totals == (rows, sent) {
            Ok(())
        } else {
            Err(format!("{totals:?} != {:?}", (rows, sent)))
        }
    })
    .await;

    let flood = env
        .tsv(&format!(
            "SELECT occurrences, message_id FROM reports FINAL WHERE dedup_key = {flood_key}"
        ))
        .await;
    assert_eq!(flood, vec![vec!["40".to_owned(), "flood-0".into()]]);

    // Every column but the client's own (IP, dedup key, row id) is the same for both formats.
    let columns = processor::row::COLUMNS
        .iter()
        .filter(|c| !matches!(**c, "row_id" | "dedup_key" | "client_ip"))
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    let of_client = |ip: &str| {
        format!("SELECT {columns} FROM reports FINAL WHERE client_ip = '{ip}' ORDER BY message_id")
    };
    let from_json = env.tsv(&of_client("198.51.100.1")).await;
    let from_binary = env.tsv(&of_client("198.51.100.2")).await;
    assert_eq!(
        from_json.len() as u64,
        (rows - 1) / 2,
        "half the other rows"
    );
    assert_eq!(from_binary, from_json, "binary rows equal the JSON rows");
    assert!(
        from_json
            .iter()
            .any(|row| row.iter().any(|cell| cell.contains("network-error"))),
        "details came through"
    );

    let letters = env.dead_letters(4, Duration::from_secs(20)).await;
    let mut reasons: Vec<String> = letters.iter().map(|l| l.header_text("reason")).collect();
    reasons.sort();
    assert_eq!(
        reasons,
        [
            "corrupt",
            "corrupt",
            "unsupported_version",
            "unsupported_version"
        ]
    );
    assert!(letters.iter().any(|l| l.payload == damaged));

    env.wait_for_end_offsets(&producer, Duration::from_secs(20))
        .await;
    processor.stop().await;
    assert_eq!(env.totals().await, (rows, sent));
}

/// `sum(occurrences)` of the network-error rows, read from `reports` (checked against the NEL
/// rollup).
async fn expected_nel(env: &Env) -> u64 {
    env.scalar("SELECT sum(occurrences) FROM reports FINAL WHERE kind = 'network-error'")
        .await
        .unwrap()
        .parse()
        .unwrap()
}
