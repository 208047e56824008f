//! The dead-letter topic is unavailable (here: it does not exist; tansu does not auto-create
//! topics, so every delivery fails): the processor must back off between deliveries (the wait
//! doubles up to `--dead-letter-max-backoff-ms`), count the failures, pause consumption and
//! answer 503 on `/readyz`, without exiting and without committing past the undecodable record.
//! Once the topic exists, the letter is delivered and everything behind it lands with exact
//! counts. Against REAL tansu and ClickHouse (testbed).
//!
//! Regression for issue 10, item 8: before, the loop retried every second forever, with no
//! metric and `/readyz` still 200.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{fixture_reports, message, wait_for, Child, Env, RECEIVED_AT_MS};

const GOOD: u64 = 12;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unavailable_dead_letter_topic_backs_off_and_is_reported() {
    let Some(env) = Env::start("dlqdown", 1).await else {
        return;
    };
    let missing = "dlqdown-missing-dead-letter";
    let mut producer = env.producer();
    producer
        .raw(0, Some(b"0000000000000abc"), b"{not json")
        .await;
    let csp = fixture_reports("legacy_wrapped.json").remove(0);
    let good: Vec<_> = (0..GOOD)
        .map(|client| {
            message(
                csp.clone(),
                &format!("198.51.100.{client}"),
                format!("good-{client}"),
                RECEIVED_AT_MS,
            )
        })
        .collect();
    producer.send_all(&good).await;

    let mut child = Child::spawn(
        &env,
        &[
            "--dead-letter-topic",
            missing,
            "--dead-letter-timeout-ms",
            "300",
            "--dead-letter-backoff-ms",
            "200",
            "--dead-letter-max-backoff-ms",
            "800",
        ],
    );
    // The wait grows to the cap: 200 ms, 400 ms, 800 ms. A counter and a gauge, not timing.
    wait_for(
        "the backoff to reach its cap",
        Duration::from_secs(60),
        || async {
            let failures = child.metric("processor_dead_letter_failures_total");
            let backoff = child.metric("processor_dead_letter_backoff_seconds");
            match (failures, backoff) {
                (Some(f), Some(b)) if f >= 3.0 && (b - 0.8).abs() < 1e-9 => Ok(()),
                other => Err(format!("{other:?}; log:\n{}", child.log_tail())),
            }
        },
    )
    .await;
    assert_eq!(child.metric("processor_paused"), Some(1.0));
    assert_eq!(child.metric("processor_dead_letters_parked"), Some(1.0));
    let (status, body) = common::http_get(child.admin_port, "/readyz").unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("dead-letter"), "{body}");
    assert!(child.process.exited().is_none(), "still running");
    // Nothing committed past the undecodable record (offset 0).
    let committed = env.committed().await;
    assert!(committed.values().all(|o| *o == 0), "{committed:?}");

    // The topic appears: the letter goes out, the partition resumes, the reports land.
    env.kafka.create_topic(missing, 1).await.unwrap();
    let letters =
        testbed::kafka::consume(&env.kafka.bootstrap(), missing, 1, Duration::from_secs(60))
            .await
            .unwrap();
    assert_eq!(letters.len(), 1, "{}", child.log_tail());
    assert_eq!(letters[0].header_text("reason"), "corrupt");
    assert_eq!(letters[0].key.as_deref(), Some("0000000000000abc"));
    env.wait_for_totals(
        "the good reports",
        Duration::from_secs(60),
        (GOOD, GOOD),
        &child,
    )
    .await;
    env.wait_for_end_offsets(&producer, Duration::from_secs(30))
        .await;
    assert_eq!(
        child.metric("processor_dead_letter_backoff_seconds"),
        Some(0.0)
    );
    assert_eq!(child.metric("processor_dead_letters_parked"), Some(0.0));
    let (status, _) = common::http_get(child.admin_port, "/readyz").unwrap();
    assert_eq!(status, 200);
    common::signal(child.pid(), "-TERM");
    let status = common::wait_exit(&mut child, Duration::from_secs(30)).await;
    assert!(status.success(), "{}", child.log_tail());
}
