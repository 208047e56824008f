//! A real headless Chromium (testbed::chromium) loads a page served by this test whose CSP it
//! violates six ways (`browser/page.html`, copied from ingest's browser test), and the reports
//! travel the whole pipeline: Chromium -> ingest -> tansu -> processor -> ClickHouse rows with
//! the right directives and blocked classes.
//!
//! - A: `report-uri` over plain HTTP (legacy `application/csp-report` POSTs).
//! - B: `report-to` + `Reporting-Endpoints` to ingest over HTTPS (self-signed; Chromium runs
//!   with `--ignore-certificate-errors`), from an HTTPS page: Chromium ignores
//!   `Reporting-Endpoints` on plain-HTTP pages (measured by ingest's browser test).
//!
//! Needs tansu, ClickHouse and Chromium (skips when missing, panics with `CI=true`).
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use support::Stack;
use testbed::chromium::{Chromium, Options};
use tokio::io::{AsyncBufReadExt as _, AsyncRead, AsyncWrite, AsyncWriteExt as _, BufReader};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

const PAGE: &str = include_str!("browser/page.html");
const APP_JS: &str = include_str!("browser/app.js");

/// Noise filtering off: the inline violations' `source-file` is the page on 127.0.0.1, which
/// the default noise list drops (injectors report from localhost).
const PROJECTS: &str = r#"
[[project]]
id = 1
name = "browser"
quota = { per_second = 1000, burst = 1000 }
keys = [{ public_key = "browser-key" }]
filters = { default_noise = false }
"#;

/// The page's policy, without its reporting directive.
const POLICY: &str = "default-src 'self'; script-src 'self' 'report-sample'; \
                      style-src 'report-sample'; img-src 'self'";

/// How long the browser stays open while the test polls ClickHouse.
const REPORT_WAIT: Duration = Duration::from_secs(60);

/// What the page violates, as stored: (effective directive, directive family, blocked class).
fn expected_rows() -> BTreeSet<(String, String, String)> {
    [
        ("style-src-elem", "style-src", "inline"),
        ("style-src-attr", "style-src", "inline"),
        ("script-src-elem", "script-src", "inline"),
        ("script-src", "script-src", "eval"),
        ("img-src", "img-src", "url"),
        ("script-src-elem", "script-src", "url"),
    ]
    .into_iter()
    .map(|(d, f, c)| (d.to_owned(), f.to_owned(), c.to_owned()))
    .collect()
}

/// Serves `page.html` (with `headers`) and `app.js` on loopback, over TLS when `tls` is given.
async fn serve_page(headers: String, tls: Option<&testbed::tls::SelfSigned>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
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

fn page_tls(tls: &testbed::tls::SelfSigned) -> TlsAcceptor {
    let cert = CertificateDer::from(tls.cert_der.clone());
    let key = PrivateKeyDer::from_pem_slice(tls.key_pem.as_bytes()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    TlsAcceptor::from(Arc::new(config))
}

async fn answer<S: AsyncRead + AsyncWrite + Unpin>(stream: S, page_headers: &str) {
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).await.unwrap_or(0) == 0 {
        return; // a speculative connection closed without a request
    }
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
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n{extra}\r\n{body}",
        body.len()
    );
    let mut stream = reader.into_inner();
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Polls ClickHouse while the browser runs until every expected violation is a row (or the
/// wait ends); returns (effective directive, family, class, wire, document URL) of every row.
async fn wait_for_rows(
    stack: &Stack,
    chromium: &mut Chromium,
) -> BTreeSet<(String, String, String, String, String)> {
    let started = Instant::now();
    loop {
        let rows: BTreeSet<_> = stack
            .tsv(
                "SELECT effective_directive, directive_family, blocked_class, wire, document_url \
                 FROM reports FINAL WHERE kind = 'csp-violation'",
            )
            .await
            .into_iter()
            .map(|r| {
                (
                    r[0].clone(),
                    r[1].clone(),
                    r[2].clone(),
                    r[3].clone(),
                    r[4].clone(),
                )
            })
            .collect();
        let seen: BTreeSet<_> = rows
            .iter()
            .map(|(d, f, c, _, _)| (d.clone(), f.clone(), c.clone()))
            .collect();
        if expected_rows().is_subset(&seen) || started.elapsed() > REPORT_WAIT {
            return rows;
        }
        assert!(
            chromium.running(),
            "chromium exited early:\n{}",
            chromium.log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn check(rows: &BTreeSet<(String, String, String, String, String)>, wire: &str, page: &str) {
    let seen: BTreeSet<_> = rows
        .iter()
        .map(|(d, f, c, _, _)| (d.clone(), f.clone(), c.clone()))
        .collect();
    let missing: Vec<_> = expected_rows().difference(&seen).cloned().collect();
    assert!(missing.is_empty(), "missing {missing:?}; rows {rows:#?}");
    for (_, _, _, row_wire, document) in rows {
        assert_eq!(
            (row_wire.as_str(), document.as_str()),
            (wire, page),
            "{rows:#?}"
        );
    }
}

// Variant A: legacy `report-uri`, plain HTTP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_report_uri_violations_become_rows() {
    support::avoid_window_boundary(Duration::from_secs(90)).await;
    let Some(stack) = Stack::start(PROJECTS, &[]).await else {
        return;
    };
    let endpoint = format!(
        "{}/api/1/security/?sentry_key=browser-key",
        stack.ingest_url
    );
    let headers = format!("Content-Security-Policy: {POLICY}; report-uri {endpoint}\r\n");
    let page_url = format!("http://{}/", serve_page(headers, None).await);
    let Some(mut chromium) = Chromium::launch(&page_url, &Options::default()) else {
        return;
    };
    let rows = wait_for_rows(&stack, &mut chromium).await;
    chromium.stop();
    check(&rows, "legacy-csp", &page_url);
    stack.stop().await;
}

// Variant B: Reporting API (`report-to`), ingest and page over HTTPS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_reporting_api_violations_become_rows() {
    support::avoid_window_boundary(Duration::from_secs(90)).await;
    let tls = testbed::tls::SelfSigned::generate().unwrap();
    let (cert, key) = (
        tls.cert_path().to_str().unwrap().to_owned(),
        tls.key_path().to_str().unwrap().to_owned(),
    );
    let Some(stack) = Stack::start(PROJECTS, &["--tls-cert", &cert, "--tls-key", &key]).await
    else {
        return;
    };
    let endpoint = format!(
        "{}/api/1/security/?sentry_key=browser-key",
        stack.ingest_url
    );
    let headers = format!(
        "Reporting-Endpoints: default=\"{endpoint}\"\r\n\
         Content-Security-Policy: {POLICY}; report-to default\r\n"
    );
    let page_url = format!("https://{}/", serve_page(headers, Some(&tls)).await);
    let options = Options {
        ignore_certificate_errors: true,
        ..Options::default()
    };
    let Some(mut chromium) = Chromium::launch(&page_url, &options) else {
        return;
    };
    let rows = wait_for_rows(&stack, &mut chromium).await;
    chromium.stop();
    check(&rows, "reporting-batch", &page_url);
    stack.stop().await;
}
