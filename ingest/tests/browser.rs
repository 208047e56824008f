//! A real headless Chromium (testbed::chromium) loads the CSP test page (`testbed::page`, shared
//! with the e2e browser test) that violates its policy six ways, and the reports it sends reach
//! Kafka through ingest:
//!
//! - A: `report-uri` over plain HTTP: one legacy `application/csp-report` POST per violation.
//! - B: `report-to` + `Reporting-Endpoints` to ingest over HTTPS (self-signed, Chromium runs with
//!   `--ignore-certificate-errors`): `application/reports+json` batches, after a CORS preflight
//!   (the page and the endpoint are different origins).
//!
//! For B the page itself must be HTTPS too: Chromium 156 ignores `Reporting-Endpoints` on a
//! plain-HTTP page even from loopback (measured: no upload at all), while with an HTTPS page
//! and `--ignore-certificate-errors` a self-signed certificate is fine for both the page and the
//! endpoint. Needs tansu and Chromium (skips when missing, panics with `CI=true`).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use schemas::{BlockedClass, ReportKind, ReportMessage, WireFormat};
use testbed::chromium::{Chromium, Options};
use testbed::kafka::Tansu;
use testbed::page::{BLOCKED_URL_PREFIX, POLICY, PROJECTS, VIOLATIONS};

mod support;

use support::Server;

/// How long the browser stays open while the test polls Kafka.
const REPORT_WAIT: Duration = Duration::from_secs(30);

/// What the page violates: (effective directive, blocked class keyword).
fn expected_violations() -> HashSet<(String, &'static str)> {
    VIOLATIONS
        .into_iter()
        .map(|(directive, _family, class)| (directive.to_owned(), class))
        .collect()
}

/// Serves the test page with `headers`, over TLS when `tls` is given.
async fn serve_page(
    headers: String,
    tls: Option<&testbed::tls::SelfSigned>,
) -> std::net::SocketAddr {
    testbed::page::serve(headers, tls)
        .await
        .expect("page server starts")
}

/// Ingest on loopback publishing to `topic`, over HTTPS when `tls` is given.
async fn start_ingest(
    brokers: &str,
    topic: &str,
    tls: Option<&testbed::tls::SelfSigned>,
) -> Server {
    let mut args = vec!["--kafka-topic".to_owned(), topic.to_owned()];
    if let Some(tls) = tls {
        for (flag, path) in [
            ("--tls-cert", tls.cert_path()),
            ("--tls-key", tls.key_path()),
        ] {
            args.push(flag.to_owned());
            args.push(path.to_str().expect("utf-8 temp path").to_owned());
        }
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Server::start(PROJECTS, brokers, &args).await
}

/// Polls Kafka while the browser runs until every expected violation arrived (or the wait
/// ends), then returns every message read.
async fn wait_for_reports(
    tansu: &Tansu,
    topic: &str,
    chromium: &mut Chromium,
) -> Vec<ReportMessage> {
    let expected = expected_violations();
    let started = Instant::now();
    loop {
        let records = testbed::kafka::consume_all(
            &tansu.bootstrap(),
            topic,
            Duration::from_millis(500),
            Duration::from_secs(5),
        )
        .await
        .expect("consume");
        let messages: Vec<ReportMessage> = records
            .iter()
            .map(|record| ReportMessage::decode(&record.payload).expect("decodes"))
            .collect();
        let seen = violations(&messages);
        if expected.is_subset(&seen) || started.elapsed() > REPORT_WAIT {
            return messages;
        }
        assert!(
            chromium.running(),
            "chromium exited early:\n{}",
            chromium.log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn violations(messages: &[ReportMessage]) -> HashSet<(String, &'static str)> {
    messages
        .iter()
        .filter(|m| m.report.kind == ReportKind::CspViolation)
        .filter_map(|m| {
            Some((
                m.report.effective_directive.clone()?,
                m.report.blocked_class.as_str(),
            ))
        })
        .collect()
}

fn check(messages: &[ReportMessage], wire: WireFormat, page: &str) {
    let seen = violations(messages);
    let missing: Vec<_> = expected_violations().difference(&seen).cloned().collect();
    assert!(
        missing.is_empty(),
        "missing {missing:?}; got {seen:?} from {messages:#?}"
    );
    for message in messages {
        let report = &message.report;
        assert_eq!(report.kind, ReportKind::CspViolation, "{report:?}");
        assert_eq!(report.wire, wire, "{report:?}");
        assert_eq!(message.project_id, 1);
        assert_eq!(report.document_url.as_deref(), Some(page), "{report:?}");
        assert!(message
            .request_user_agent
            .as_deref()
            .is_some_and(|ua| ua.contains("Chrome")));
        if report.blocked_class == BlockedClass::Url {
            let blocked = report.blocked_url.as_deref().unwrap_or_default();
            assert!(blocked.starts_with(BLOCKED_URL_PREFIX), "{report:?}");
        }
    }
}

// Variant A: legacy `report-uri`, plain HTTP.
#[tokio::test]
async fn chromium_report_uri_violations_reach_kafka() {
    let Some(tansu) = Tansu::start().await else {
        return;
    };
    tansu
        .create_topic("browser-a", 1)
        .await
        .expect("create topic");
    let ingest = start_ingest(&tansu.bootstrap(), "browser-a", None).await;
    let endpoint = format!(
        "http://{}/api/1/security/?sentry_key=browser-key",
        ingest.public_addr
    );
    let headers = format!("Content-Security-Policy: {POLICY}; report-uri {endpoint}\r\n");
    let page = serve_page(headers, None).await;
    let page_url = format!("http://{page}/");

    let Some(mut chromium) = Chromium::launch(&page_url, &Options::default()) else {
        return;
    };
    let messages = wait_for_reports(&tansu, "browser-a", &mut chromium).await;
    chromium.stop();
    check(&messages, WireFormat::LegacyCsp, &page_url);
}

// Variant B: Reporting API (`report-to`), ingest over HTTPS with a self-signed certificate.
#[tokio::test]
async fn chromium_reporting_api_batches_reach_kafka_over_https() {
    let Some(tansu) = Tansu::start().await else {
        return;
    };
    tansu
        .create_topic("browser-b", 1)
        .await
        .expect("create topic");
    let tls = testbed::tls::SelfSigned::generate().expect("certificate");
    let ingest = start_ingest(&tansu.bootstrap(), "browser-b", Some(&tls)).await;
    let endpoint = format!(
        "https://{}/api/1/security/?sentry_key=browser-key",
        ingest.public_addr
    );
    let headers = format!(
        "Reporting-Endpoints: default=\"{endpoint}\"\r\nContent-Security-Policy: {POLICY}; report-to default\r\n"
    );
    // Chromium ignores `Reporting-Endpoints` on a plain-HTTP page, even on loopback.
    let page = serve_page(headers, Some(&tls)).await;
    let page_url = format!("https://{page}/");

    let options = Options {
        ignore_certificate_errors: true,
        ..Options::default()
    };
    let Some(mut chromium) = Chromium::launch(&page_url, &options) else {
        return;
    };
    let messages = wait_for_reports(&tansu, "browser-b", &mut chromium).await;
    chromium.stop();
    check(&messages, WireFormat::ReportingBatch, &page_url);
}
