//! Privacy on by default, end to end (issue 10, item 7): reports whose URLs carry credentials,
//! tokens and fragments, posted to a project that says nothing about privacy, land in
//! ClickHouse without any of them (HTTP -> ingest -> tansu -> processor -> ClickHouse).
//!
//! Skipped (with `skipping: ...` on stderr) when tansu or ClickHouse is missing, except in CI.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use support::Stack;
use testbed::bodies::{SECRETS, WITH_SECRETS_BATCH, WITH_SECRETS_DOCUMENTS, WITH_SECRETS_LEGACY};

/// No privacy section: the defaults apply.
const PROJECTS: &str = r#"
[[project]]
id = 1
name = "shop"
quota = { per_second = 10000, burst = 10000 }
keys = [{ public_key = "shop-key" }]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_and_tokens_never_reach_clickhouse() {
    let Some(stack) = Stack::start(PROJECTS, &[]).await else {
        return;
    };
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    for (content_type, body) in [
        ("application/csp-report", WITH_SECRETS_LEGACY),
        ("application/reports+json", WITH_SECRETS_BATCH),
    ] {
        let response = http
            .post(format!(
                "{}/api/1/security/?sentry_key=shop-key",
                stack.ingest_url
            ))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
    }
    stack.wait_for_occurrences(4, Duration::from_secs(60)).await;

    // Every column of every row, as text.
    let rows = stack.tsv("SELECT * FROM reports FINAL").await;
    let text = rows.concat().join("\t");
    for secret in SECRETS {
        assert!(!text.contains(secret), "{secret:?} stored: {text}");
    }
    let documents = stack
        .tsv("SELECT document_url FROM reports FINAL ORDER BY document_url")
        .await
        .concat();
    assert_eq!(documents, WITH_SECRETS_DOCUMENTS);
    stack.stop().await;
}
