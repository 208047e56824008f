//! A real headless Chromium (testbed::chromium) loads the CSP test page (`testbed::page`, shared
//! with ingest's browser test) that violates its policy six ways, and the reports travel the
//! whole pipeline: Chromium -> ingest -> tansu -> processor -> ClickHouse rows with
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
use std::time::{Duration, Instant};

use support::Stack;
use testbed::chromium::{Chromium, Options};
use testbed::page::{POLICY, PROJECTS, VIOLATIONS};

/// How long the browser stays open while the test polls ClickHouse.
const REPORT_WAIT: Duration = Duration::from_secs(60);

/// What the page violates, as stored: (effective directive, directive family, blocked class).
fn expected_rows() -> BTreeSet<(String, String, String)> {
    VIOLATIONS
        .into_iter()
        .map(|(d, f, c)| (d.to_owned(), f.to_owned(), c.to_owned()))
        .collect()
}

/// Serves the test page with `headers`, over TLS when `tls` is given.
async fn serve_page(headers: String, tls: Option<&testbed::tls::SelfSigned>) -> SocketAddr {
    testbed::page::serve(headers, tls).await.unwrap()
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
