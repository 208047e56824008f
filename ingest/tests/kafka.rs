//! Ingest against a real Kafka-compatible broker (tansu, started by `testbed`): every report
//! kind arrives normalised and keyed, revoked keys publish nothing, a full producer queue and a
//! broker outage are answered 503 + `Retry-After`, and no 2xx-answered report is ever lost.
//!
//! Tests needing tansu skip when it is missing (panic with `CI=true`); see `testbed::kafka`.

mod support;

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use ingest::publish::MESSAGE_VERSION_HEADER;
use schemas::{BlockedClass, Details, Disposition, ReportKind, ReportMessage, WireFormat};
use support::Server;
use testbed::bodies::{
    BATCH, EXPECT_CT, EXPECT_STAPLE, HPKP, LEGACY_UNWRAPPED, LEGACY_WRAPPED, SAFARI_SINGLE, XSS,
};
use testbed::kafka::{Consumed, Storage, Tansu};

const KEY: &str = "shop-key";
const REVOKED_KEY: &str = "old-shop-key";
const USER_AGENT: &str = "palisade-kafka-test/1.0";

/// Project 1 strips queries, fragments and referrers and truncates the client IP: the messages
/// prove privacy was applied before publishing.
const PROJECTS: &str = r#"
[[project]]
id = 1
name = "shop"
quota = { per_second = 10000, burst = 10000 }
keys = [{ public_key = "shop-key" }, { public_key = "old-shop-key", state = "revoked" }]
privacy = { strip_query = true, strip_fragment = true, drop_referrer = true, client_ip = "truncate" }
"#;

/// Ingest on loopback publishing to `topic`, with this file's projects.
async fn start_ingest(brokers: &str, topic: &str, extra: &[&str]) -> Server {
    let mut args = vec!["--kafka-topic", topic];
    args.extend_from_slice(extra);
    Server::start(PROJECTS, brokers, &args).await
}

/// The report endpoint of project 1 with `key` and extra query parameters.
fn report_url(server: &Server, key: &str, query: &str) -> String {
    server.url(&format!("/api/1/security/?sentry_key={key}{query}"))
}

/// One answered request.
#[derive(Debug)]
struct Answer {
    status: u16,
    retry_after: Option<String>,
    body: serde_json::Value,
}

async fn post(url: &str, content_type: &str, body: &str) -> Answer {
    let response = reqwest::Client::new()
        .post(url)
        .header("content-type", content_type)
        .header("user-agent", USER_AGENT)
        .body(body.to_owned())
        .send()
        .await
        .expect("ingest answers");
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().expect("ascii header").to_owned());
    let text = response.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    Answer {
        status,
        retry_after,
        body,
    }
}

/// Everything stored in `topic` (stops after 2 s without a new message).
async fn read_all(tansu: &Tansu, topic: &str) -> Vec<Consumed> {
    testbed::kafka::consume_all(
        &tansu.bootstrap(),
        topic,
        Duration::from_secs(2),
        Duration::from_secs(30),
    )
    .await
    .expect("consume")
}

fn decode(message: &Consumed) -> ReportMessage {
    ReportMessage::decode(&message.payload).expect("every published payload decodes")
}

/// A legacy CSP report whose document path makes it unique (`/{marker}`).
fn legacy_csp(marker: &str) -> String {
    format!(
        r#"{{"csp-report":{{"document-uri":"https://shop.example/{marker}","blocked-uri":"https://evil.example/x.js","violated-directive":"script-src-elem"}}}}"#
    )
}

// ---------------------------------------------------------------------------------------------
// Every kind of report (the bodies are `testbed::bodies`, shared with the e2e pipeline test).

/// Field-level expectations of the message whose document URL is `document` (or, for the
/// certificate kinds, whose kind is `kind`).
fn check_report(message: &ReportMessage) {
    let report = &message.report;
    let doc = report.document_url.as_deref();
    match (report.kind, doc) {
        (ReportKind::CspViolation, Some("https://shop.example/cart")) => {
            assert_eq!(report.wire, WireFormat::LegacyCsp);
            assert_eq!(report.blocked_class, BlockedClass::Url);
            assert_eq!(
                report.blocked_url.as_deref(),
                Some("https://evil.example/x.js"),
                "query stripped"
            );
            assert_eq!(
                report.effective_directive.as_deref(),
                Some("script-src-elem")
            );
            assert_eq!(
                report.source_file.as_deref(),
                Some("https://shop.example/app.js")
            );
            assert_eq!(
                (report.line_number, report.column_number),
                (Some(10), Some(5))
            );
            assert_eq!(report.disposition, Some(Disposition::Enforce));
            assert_eq!(report.status_code, Some(200));
            assert_eq!(message.environment.as_deref(), Some("prod"));
            assert_eq!(message.release.as_deref(), Some("1.2.3"));
        }
        (ReportKind::CspViolation, Some("https://shop.example/unwrapped")) => {
            assert_eq!(report.wire, WireFormat::LegacyCspUnwrapped);
            assert_eq!(report.blocked_class, BlockedClass::Inline);
            assert_eq!(report.effective_directive.as_deref(), Some("style-src"));
        }
        (ReportKind::CspViolation, Some("https://shop.example/b")) => {
            assert_eq!(report.wire, WireFormat::ReportingBatch);
            assert_eq!(report.disposition, Some(Disposition::Report));
            assert_eq!(
                report.blocked_url.as_deref(),
                Some("https://cdn.other.example/lib.js")
            );
            assert_eq!(report.age_ms, Some(10));
            assert_eq!(report.user_agent.as_deref(), Some("UA/1"));
        }
        (ReportKind::CspViolation, Some("https://shop.example/safari")) => {
            assert_eq!(report.wire, WireFormat::ReportingSingle);
            assert_eq!(report.blocked_class, BlockedClass::Eval);
            assert_eq!(report.effective_directive.as_deref(), Some("script-src"));
        }
        (ReportKind::NetworkError, _) => {
            assert_eq!(
                doc,
                Some("https://api.shop.example/v1"),
                "the failed request, query stripped"
            );
            let Details::NetworkError(nel) = &report.details else {
                panic!("{report:?}")
            };
            assert_eq!(nel.phase.as_deref(), Some("connection"));
            assert_eq!(nel.error_type.as_deref(), Some("tcp.timed_out"));
            assert_eq!(nel.elapsed_time_ms, Some(45));
        }
        (ReportKind::PermissionsPolicyViolation, _) => {
            let Details::Fields(fields) = &report.details else {
                panic!("{report:?}")
            };
            assert_eq!(fields.get("policyId"), Some(&serde_json::json!("camera")));
            assert_eq!(
                report.source_file.as_deref(),
                Some("https://shop.example/p.js")
            );
        }
        (ReportKind::IntegrityViolation, _) => {
            assert_eq!(
                report.disposition,
                Some(Disposition::Report),
                "reportOnly: true"
            );
        }
        (ReportKind::Unknown, _) => {
            assert_eq!(report.report_type.as_deref(), Some("future-thing"));
            assert_eq!(
                report.details,
                Details::Unknown(serde_json::json!({"answer": 42}))
            );
        }
        (ReportKind::ExpectCt | ReportKind::Hpkp | ReportKind::ExpectStaple, _) => {
            let Details::Certificate(cert) = &report.details else {
                panic!("{report:?}")
            };
            assert_eq!(
                (cert.hostname.as_str(), cert.port),
                ("shop.example", Some(443))
            );
            match report.kind {
                ReportKind::ExpectCt => assert_eq!(cert.scts.len(), 1),
                ReportKind::Hpkp => assert_eq!(cert.known_pins.len(), 1),
                _ => assert_eq!(cert.cert_status.as_deref(), Some("REVOKED")),
            }
        }
        (ReportKind::XssAuditor, _) => {
            assert_eq!(doc, Some("https://shop.example/search"), "query stripped");
        }
        _ => {}
    }
    if report.kind != ReportKind::CspViolation || doc != Some("https://shop.example/cart") {
        assert_eq!(
            (&message.environment, &message.release),
            (&None, &None),
            "{report:?}"
        );
    }
}

#[tokio::test]
async fn every_report_kind_arrives_normalised_keyed_and_private() {
    let Some(tansu) = Tansu::start().await else {
        return;
    };
    tansu
        .create_topic("reports", 4)
        .await
        .expect("create topic");
    let ingest = start_ingest(&tansu.bootstrap(), "reports", &[]).await;

    // (content type, body, extra query, reports accepted, filtered)
    let requests: &[(&str, &str, &str, u64, u64)] = &[
        (
            "application/csp-report",
            LEGACY_WRAPPED,
            "&sentry_environment=prod&sentry_release=1.2.3",
            1,
            0,
        ),
        ("application/json", LEGACY_UNWRAPPED, "", 1, 0),
        ("application/reports+json", BATCH, "", 11, 1),
        ("application/csp-report", SAFARI_SINGLE, "", 1, 0),
        ("application/expect-ct-report+json", EXPECT_CT, "", 1, 0),
        ("application/json", HPKP, "", 1, 0),
        ("application/expect-staple-report", EXPECT_STAPLE, "", 1, 0),
        ("text/plain", XSS, "", 1, 0),
    ];
    let mut expected = 0;
    for (content_type, body, query, accepted, filtered) in requests {
        let answer = post(&report_url(&ingest, KEY, query), content_type, body).await;
        assert_eq!(answer.status, 202, "{content_type} {body}: {answer:?}");
        assert_eq!(answer.body["accepted"], *accepted, "{body}: {answer:?}");
        assert_eq!(answer.body["filtered"], *filtered, "{body}: {answer:?}");
        expected += *accepted as usize;
    }

    let consumed = read_all(&tansu, "reports").await;
    assert_eq!(
        consumed.len(),
        expected,
        "one message per accepted report, nothing more"
    );

    let mut kinds = BTreeMap::new();
    for record in &consumed {
        let message = decode(record);
        *kinds.entry(message.report.kind.as_str()).or_insert(0) += 1;
        assert_eq!(
            record.header(MESSAGE_VERSION_HEADER),
            Some(schemas::MESSAGE_VERSION.to_string().as_bytes())
        );
        assert_eq!(message.v, schemas::MESSAGE_VERSION);
        assert_eq!(message.project_id, 1);
        assert_eq!(message.request_user_agent.as_deref(), Some(USER_AGENT));
        assert_eq!(
            message.noise, None,
            "noise is dropped, not tagged, by default"
        );
        // Privacy: the IP is truncated to its /24 and every URL lost its query, fragment, referrer.
        assert_eq!(message.client_ip.as_deref(), Some("127.0.0.0"));
        assert_eq!(message.report.referrer, None);
        for url in [
            &message.report.document_url,
            &message.report.blocked_url,
            &message.report.source_file,
        ] {
            let url = url.as_deref().unwrap_or_default();
            assert!(!url.contains('?') && !url.contains('#'), "{url}");
        }
        // The fingerprint and the key are the contract's, computed after privacy.
        let fingerprint = schemas::fingerprint(1, &message.report);
        assert_eq!(message.fingerprint, format!("{fingerprint:016x}"));
        let key = schemas::dedup_key(fingerprint, "127.0.0.0");
        assert_eq!(record.key.as_deref(), Some(format!("{key:016x}").as_str()));
        check_report(&message);
    }
    let want: BTreeMap<&str, i32> = [
        ("csp-violation", 4),
        ("network-error", 1),
        ("deprecation", 1),
        ("intervention", 1),
        ("crash", 1),
        ("coep", 1),
        ("coop", 1),
        ("permissions-policy-violation", 1),
        ("integrity-violation", 1),
        ("test", 1),
        ("unknown", 1),
        ("expect-ct", 1),
        ("hpkp", 1),
        ("expect-staple", 1),
        ("xss-auditor", 1),
    ]
    .into_iter()
    .collect();
    assert_eq!(kinds, want);
    ingest.shutdown_and_wait().await.expect("run succeeds");
}

// Guards the partitioning contract: the dedup key routes "same violation, same client" to one
// partition, so the processor can deduplicate per partition.
#[tokio::test]
async fn same_fingerprint_and_client_share_a_partition() {
    let Some(tansu) = Tansu::start().await else {
        return;
    };
    tansu
        .create_topic("partitioned", 4)
        .await
        .expect("create topic");
    let ingest = start_ingest(&tansu.bootstrap(), "partitioned", &[]).await;

    let distinct = 12;
    let repeats = 3;
    for round in 0..repeats {
        for n in 0..distinct {
            // The fragment differs per round but is stripped: same fingerprint every round.
            let body = legacy_csp(&format!("page-{n}#round-{round}"));
            let answer = post(
                &report_url(&ingest, KEY, ""),
                "application/csp-report",
                &body,
            )
            .await;
            assert_eq!(answer.status, 202, "{answer:?}");
        }
    }
    let total = distinct * repeats;
    let consumed = testbed::kafka::consume(
        &tansu.bootstrap(),
        "partitioned",
        total,
        Duration::from_secs(20),
    )
    .await
    .expect("consume");
    assert_eq!(consumed.len(), total);
    let mut partitions_by_fingerprint: BTreeMap<String, HashSet<i32>> = BTreeMap::new();
    for record in &consumed {
        let message = decode(record);
        partitions_by_fingerprint
            .entry(message.fingerprint)
            .or_default()
            .insert(record.partition);
    }
    assert_eq!(
        partitions_by_fingerprint.len(),
        distinct,
        "one fingerprint per page"
    );
    for (fingerprint, partitions) in &partitions_by_fingerprint {
        assert_eq!(
            partitions.len(),
            1,
            "fingerprint {fingerprint} spread over {partitions:?}"
        );
    }
    let used: HashSet<i32> = consumed.iter().map(|record| record.partition).collect();
    assert!(
        used.len() > 1,
        "12 different keys all landed on partition {used:?}"
    );
    ingest.shutdown_and_wait().await.expect("run succeeds");
}

#[tokio::test]
async fn revoked_key_is_gone_and_publishes_nothing() {
    let Some(tansu) = Tansu::start().await else {
        return;
    };
    tansu
        .create_topic("revoked", 1)
        .await
        .expect("create topic");
    let ingest = start_ingest(&tansu.bootstrap(), "revoked", &[]).await;

    let answer = post(
        &report_url(&ingest, REVOKED_KEY, ""),
        "application/csp-report",
        &legacy_csp("revoked"),
    )
    .await;
    assert_eq!(
        answer.status, 410,
        "browsers delete the endpoint on 410: {answer:?}"
    );
    // A good report afterwards proves the pipeline works, so the count below is meaningful.
    let answer = post(
        &report_url(&ingest, KEY, ""),
        "application/csp-report",
        &legacy_csp("active"),
    )
    .await;
    assert_eq!(answer.status, 202, "{answer:?}");

    let consumed = read_all(&tansu, "revoked").await;
    assert_eq!(
        consumed.len(),
        1,
        "the revoked key's report was not published"
    );
    assert_eq!(
        decode(&consumed[0]).report.document_url.as_deref(),
        Some("https://shop.example/active")
    );
    ingest.shutdown_and_wait().await.expect("run succeeds");
}

/// A loopback port with nothing listening: bound, then released.
fn closed_port() -> u16 {
    testbed::free_port().expect("free port")
}

// Guards back-pressure: a full producer queue is answered 503 + Retry-After at once (never a
// wait for queue space, never a 2xx for a report Kafka may not get), and counted.
#[tokio::test]
async fn full_producer_queue_is_503_with_retry_after_at_once() {
    let brokers = format!("127.0.0.1:{}", closed_port());
    // The flush bound is shorter than the message timeout, so shutdown finds it undelivered.
    let args = [
        "--kafka-queue-max-messages",
        "1",
        "--kafka-message-timeout-ms",
        "5000",
        "--flush-timeout-ms",
        "500",
    ];
    let ingest = start_ingest(&brokers, "nowhere", &args).await;

    // Two reports in one batch: the first fills the queue, the second does not fit.
    let batch = r#"[
      {"type":"test","age":0,"url":"https://shop.example/1","body":{}},
      {"type":"test","age":0,"url":"https://shop.example/2","body":{}}]"#;
    let started = Instant::now();
    let answer = post(
        &report_url(&ingest, KEY, ""),
        "application/reports+json",
        batch,
    )
    .await;
    assert_eq!(answer.status, 503, "{answer:?}");
    assert_eq!(answer.retry_after.as_deref(), Some("30"), "{answer:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "answered after {:?}",
        started.elapsed()
    );

    let metrics = reqwest::get(format!("{}/metrics", ingest.admin))
        .await
        .expect("admin answers")
        .text()
        .await
        .expect("metrics text");
    assert!(
        metrics.lines().any(
            |line| line.starts_with("ingest_publish_errors_total{reason=\"kafka_queue_full\"}")
        ),
        "{metrics}"
    );
    // The queued report cannot be delivered: run reports the failed flush, within its bound.
    assert!(
        ingest.shutdown_and_wait().await.is_err(),
        "an undelivered report makes the flush fail"
    );
}

// Guards "no silent loss": while the broker is unreachable requests are answered 503 +
// Retry-After; once it is up every report answered 2xx is in Kafka; when it goes away again,
// 503 again.
//
// The broker is absent first and started later (rather than killed and restarted) because tansu
// 0.6 loses idempotent-producer state across a restart, which a real Kafka cluster keeps (see
// `testbed::kafka::Tansu::restart`).
#[tokio::test]
async fn broker_outage_is_503_and_no_accepted_report_is_lost() {
    let port = closed_port();
    let args = [
        "--kafka-message-timeout-ms",
        "2000",
        "--flush-timeout-ms",
        "2000",
    ];
    let ingest = start_ingest(&format!("127.0.0.1:{port}"), "outage", &args).await;
    let url = report_url(&ingest, KEY, "");

    let started = Instant::now();
    let answer = post(&url, "application/csp-report", &legacy_csp("before")).await;
    assert_eq!(answer.status, 503, "no broker yet: {answer:?}");
    assert_eq!(answer.retry_after.as_deref(), Some("30"));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "bounded by the message timeout"
    );

    let Some(mut tansu) = Tansu::start_at(port, Storage::Memory).await else {
        return;
    };
    tansu.create_topic("outage", 2).await.expect("create topic");
    // The producer reconnects with backoff: retry like a browser would, each attempt unique.
    let mut accepted = Vec::new();
    let mut refused = 0;
    while accepted.is_empty() {
        let marker = format!("retry-{refused}");
        let answer = post(&url, "application/csp-report", &legacy_csp(&marker)).await;
        match answer.status {
            202 => accepted.push(format!("https://shop.example/{marker}")),
            503 => refused += 1,
            _ => panic!("{answer:?}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "never recovered after {refused} refusals"
        );
    }
    for n in 0..5 {
        let marker = format!("steady-{n}");
        let answer = post(&url, "application/csp-report", &legacy_csp(&marker)).await;
        assert_eq!(answer.status, 202, "{answer:?}");
        accepted.push(format!("https://shop.example/{marker}"));
    }

    // Refused attempts may be in Kafka too (at-least-once); every accepted one must be.
    let stored = read_all(&tansu, "outage").await;
    let documents: HashSet<String> = stored
        .iter()
        .filter_map(|record| decode(record).report.document_url)
        .collect();
    for document in &accepted {
        assert!(
            documents.contains(document),
            "{document} was answered 202 but is not in kafka: {documents:?}"
        );
    }
    assert!(
        stored.len() <= accepted.len() + refused + 1,
        "{} stored",
        stored.len()
    );

    tansu.stop();
    let answer = post(&url, "application/csp-report", &legacy_csp("after")).await;
    assert_eq!(answer.status, 503, "broker gone: {answer:?}");
    assert_eq!(answer.retry_after.as_deref(), Some("30"));
    // Only that run returns matters here: with the broker gone the flush may fail.
    let _ = ingest.shutdown_and_wait().await;
}
