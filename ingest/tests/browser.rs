//! A real headless Chromium (testbed::chromium) loads a page served by this test whose CSP it
//! violates six ways (`browser/page.html`), and the reports it sends reach Kafka through ingest:
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
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use schemas::{BlockedClass, ReportKind, ReportMessage, WireFormat};
use testbed::chromium::{Chromium, Options};
use testbed::kafka::Tansu;
use tokio::io::{AsyncBufReadExt as _, AsyncRead, AsyncWrite, AsyncWriteExt as _, BufReader};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

mod support;

use support::Server;

const PAGE: &str = include_str!("browser/page.html");
const APP_JS: &str = include_str!("browser/app.js");

/// Noise filtering is off: the inline violations' `source-file` is the page on 127.0.0.1, which
/// the default noise list drops (injectors report from localhost). They are kept, tagged.
const PROJECTS: &str = r#"
[[project]]
id = 1
name = "browser"
quota = { per_second = 1000, burst = 1000 }
keys = [{ public_key = "browser-key" }]
filters = { default_noise = false }
"#;

/// How long the browser stays open while the test polls Kafka.
const REPORT_WAIT: Duration = Duration::from_secs(30);

/// What the page violates: (effective directive, blocked class).
fn expected_violations() -> HashSet<(String, BlockedClass)> {
    [
        ("style-src-elem", BlockedClass::Inline),
        ("style-src-attr", BlockedClass::Inline),
        ("script-src-elem", BlockedClass::Inline),
        ("script-src", BlockedClass::Eval),
        ("img-src", BlockedClass::Url),
        ("script-src-elem", BlockedClass::Url),
    ]
    .into_iter()
    .map(|(directive, class)| (directive.to_owned(), class))
    .collect()
}

/// Serves `page.html` (with the given response headers) and `app.js` on a loopback port, over
/// TLS when `tls` is given, one task per connection, for as long as the test's runtime lives.
async fn serve_page(headers: String, tls: Option<&testbed::tls::SelfSigned>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind page server");
    let addr = listener.local_addr().expect("page server addr");
    let acceptor = tls.map(page_tls);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let headers = headers.clone();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                match acceptor {
                    None => answer(stream, &headers).await,
                    Some(acceptor) => {
                        if let Ok(stream) = acceptor.accept(stream).await {
                            answer(stream, &headers).await;
                        }
                    }
                }
            });
        }
    });
    addr
}

/// TLS for the page server: the test certificate, HTTP/1.1 only (no ALPN `h2`).
fn page_tls(tls: &testbed::tls::SelfSigned) -> TlsAcceptor {
    let cert = CertificateDer::from(tls.cert_der.clone());
    let key = PrivateKeyDer::from_pem_slice(tls.key_pem.as_bytes()).expect("test key parses");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .expect("certificate and key match");
    TlsAcceptor::from(Arc::new(config))
}

async fn answer<S: AsyncRead + AsyncWrite + Unpin>(stream: S, page_headers: &str) {
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).await.unwrap_or(0) == 0 {
        return; // a speculative connection closed without a request
    }
    // Skip the request headers.
    let mut line = String::new();
    while reader.read_line(&mut line).await.is_ok_and(|n| n > 2) {
        line.clear();
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("/");
    let (status, content_type, extra, body) = match path {
        "/" => ("200 OK", "text/html; charset=utf-8", page_headers, PAGE),
        "/app.js" => ("200 OK", "text/javascript", "", APP_JS),
        _ => ("404 Not Found", "text/plain", "", "not found"),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n{extra}\r\n{body}",
        body.len()
    );
    let mut stream = reader.into_inner();
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// The page's policy, without its reporting directive.
const POLICY: &str =
    "default-src 'self'; script-src 'self' 'report-sample'; style-src 'report-sample'; img-src 'self'";

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

fn violations(messages: &[ReportMessage]) -> HashSet<(String, BlockedClass)> {
    messages
        .iter()
        .filter(|m| m.report.kind == ReportKind::CspViolation)
        .filter_map(|m| {
            Some((
                m.report.effective_directive.clone()?,
                m.report.blocked_class,
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
            assert!(
                blocked.starts_with("https://127.0.0.2:9/blocked."),
                "{report:?}"
            );
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
