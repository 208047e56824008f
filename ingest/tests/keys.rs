//! Abuse of keys and project ids against a real ingest publishing to a real tansu: revoked and
//! disabled keys, a valid key on another project's URL, project ids not in the file (never
//! there, or removed by a reload), malformed keys. Each gets the answer README's "Answers"
//! table documents, is counted under its reason, and publishes nothing to Kafka.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;
use std::time::Duration;

use support::Server;
use testbed::kafka::Tansu;

/// 1: active key `k1`, plus `k1-off` (disabled) and `k1-gone` (revoked).
/// 2: another tenant, active key `k2`.
/// 3: a tenant switched off: its only key is disabled.
/// 4: a tenant removed by a reload during the test.
const PROJECTS: &str = r#"
[[project]]
id = 1
name = "shop"
quota = { per_second = 1000, burst = 1000 }
keys = [{ public_key = "k1" }, { public_key = "k1-off", state = "disabled" }, { public_key = "k1-gone", state = "revoked" }]

[[project]]
id = 2
name = "blog"
quota = { per_second = 1000, burst = 1000 }
keys = [{ public_key = "k2" }]

[[project]]
id = 3
name = "paused"
quota = { per_second = 1000, burst = 1000 }
keys = [{ public_key = "k3-off", state = "disabled" }]

[[project]]
id = 4
name = "leaving"
quota = { per_second = 1000, burst = 1000 }
keys = [{ public_key = "k4" }]
"#;

/// Every refusal reason this test produces, each counted in `ingest_rejections_total`.
const REASONS: [&str; 6] = [
    "key_revoked",
    "key_disabled",
    "wrong_project",
    "missing_key",
    "unknown_key",
    "not_found",
];

/// A report whose document path is `marker` made URL-safe (so it can be found in Kafka).
fn csp(marker: &str) -> String {
    let marker = slug(marker);
    format!(
        r#"{{"csp-report":{{"document-uri":"https://shop.example/{marker}","blocked-uri":"https://evil.example/x.js","violated-directive":"script-src-elem"}}}}"#
    )
}

fn slug(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

/// One request: path and query, extra headers.
struct Case {
    what: &'static str,
    path: String,
    headers: Vec<(&'static str, String)>,
    status: u16,
    reason: &'static str,
}

fn case(what: &'static str, path: &str, status: u16, reason: &'static str) -> Case {
    Case {
        what,
        path: path.to_owned(),
        headers: Vec::new(),
        status,
        reason,
    }
}

fn with_header(mut c: Case, name: &'static str, value: &str) -> Case {
    c.headers.push((name, value.to_owned()));
    c
}

/// Sends `c` and checks status, label, CORS and the absence of `Retry-After`.
async fn check(server: &Server, c: &Case) {
    let mut request = support::client()
        .post(server.url(&c.path))
        .header("content-type", "application/csp-report")
        .body(csp(c.what));
    for (name, value) in &c.headers {
        request = request.header(*name, value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    assert!(
        response.headers().get("retry-after").is_none(),
        "{}: auth refusals carry no Retry-After",
        c.what
    );
    assert_eq!(
        response
            .headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap().to_owned()),
        Some("*".to_owned()),
        "{}",
        c.what
    );
    let label = support::error_label(response).await;
    assert_eq!(
        (status, label.as_str()),
        (c.status, c.reason),
        "{}: {}",
        c.what,
        c.path
    );
}

#[tokio::test]
async fn refused_keys_get_documented_answers_and_publish_nothing() {
    let Some(tansu) = Tansu::start().await else {
        return;
    };
    tansu.create_topic("keys", 1).await.expect("create topic");
    let server = Server::start(
        PROJECTS,
        &tansu.bootstrap(),
        &[
            "--kafka-topic",
            "keys",
            "--projects-poll-interval-ms",
            "100",
            // Every request comes from 127.0.0.1: keep the per-IP limit out of the way.
            "--ip-rate-per-second",
            "100000",
            "--ip-burst",
            "100000",
        ],
    )
    .await;
    let long_key = "k".repeat(8 * 1024);
    let cases = vec![
        // README: 410 key_revoked, 403 key_disabled.
        case(
            "revoked key",
            "/api/1/security/?sentry_key=k1-gone",
            410,
            "key_revoked",
        ),
        case(
            "revoked key in the path",
            "/api/1/security/k1-gone/",
            410,
            "key_revoked",
        ),
        case(
            "disabled key",
            "/api/1/security/?sentry_key=k1-off",
            403,
            "key_disabled",
        ),
        case(
            "switched-off tenant",
            "/api/3/security/?sentry_key=k3-off",
            403,
            "key_disabled",
        ),
        // README: 401 wrong_project for a key of another project.
        case(
            "project 1's key on project 2",
            "/api/2/security/?sentry_key=k1",
            401,
            "wrong_project",
        ),
        case(
            "project 2's key on project 1 (legacy path)",
            "/api/1/csp-report/?sentry_key=k2",
            401,
            "wrong_project",
        ),
        // The owner check comes first: a revoked key on another URL is not told it is revoked.
        case(
            "revoked key on project 2",
            "/api/2/security/?sentry_key=k1-gone",
            401,
            "wrong_project",
        ),
        // Projects not in the file: a valid key is "of another project"; no key is missing.
        case(
            "project 99 with project 1's key",
            "/api/99/security/?sentry_key=k1",
            401,
            "wrong_project",
        ),
        case(
            "project 99 without a key",
            "/api/99/security/",
            401,
            "missing_key",
        ),
        case(
            "project 99 with an unknown key",
            "/api/99/security/?sentry_key=nope",
            401,
            "unknown_key",
        ),
        case(
            "id beyond u64",
            "/api/18446744073709551616/security/?sentry_key=k1",
            404,
            "not_found",
        ),
        case(
            "non-numeric id",
            "/api/one/security/?sentry_key=k1",
            404,
            "not_found",
        ),
        // Malformed keys.
        case(
            "empty key",
            "/api/1/security/?sentry_key=",
            401,
            "missing_key",
        ),
        case(
            "unknown key",
            "/api/1/security/?sentry_key=k1x",
            401,
            "unknown_key",
        ),
        case(
            "case-changed key",
            "/api/1/security/?sentry_key=K1",
            401,
            "unknown_key",
        ),
        case(
            "8 KiB key",
            &format!("/api/1/security/?sentry_key={long_key}"),
            401,
            "unknown_key",
        ),
        case(
            "invalid percent-encoding",
            "/api/1/security/?sentry_key=%FF%FE",
            401,
            "unknown_key",
        ),
        case(
            "key with a NUL",
            "/api/1/security/?sentry_key=k1%00",
            401,
            "unknown_key",
        ),
        case(
            "path key with a space",
            "/api/1/security/k1%20/",
            401,
            "unknown_key",
        ),
        with_header(
            case(
                "empty X-Sentry-Auth key",
                "/api/1/security/",
                401,
                "missing_key",
            ),
            "x-sentry-auth",
            "Sentry sentry_key=, sentry_version=7",
        ),
        with_header(
            case(
                "Bearer instead of Sentry",
                "/api/1/security/",
                401,
                "missing_key",
            ),
            "authorization",
            "Bearer k1",
        ),
        with_header(
            case(
                "disabled key in X-Sentry-Auth",
                "/api/1/security/",
                403,
                "key_disabled",
            ),
            "x-sentry-auth",
            "Sentry sentry_key=k1-off",
        ),
    ];
    let mut before = HashMap::new();
    for reason in REASONS {
        let series = format!("ingest_rejections_total{{reason=\"{reason}\"}}");
        before.insert(reason, server.metric(&series).await);
    }
    for c in &cases {
        check(&server, c).await;
    }

    // Project 4 works, then is removed from the file: its key is now unknown.
    let mut published = 0;
    for (what, path) in [
        ("control: project 1", "/api/1/security/?sentry_key=k1"),
        (
            "control: project 4 before removal",
            "/api/4/security/?sentry_key=k4",
        ),
    ] {
        let response = support::post(&server, path, csp(what)).await;
        assert_eq!(response.status(), 202, "{what}");
        published += 1;
    }
    let without_4 = PROJECTS
        .split("[[project]]")
        .filter(|block| !block.contains("id = 4"))
        .collect::<Vec<_>>()
        .join("[[project]]");
    // A different size too, so the poller sees the change even within one mtime tick.
    std::fs::write(&server.projects_path, without_4).unwrap();
    testbed::wait::wait_for(
        "the reload to drop project 4",
        Duration::from_secs(10),
        || async {
            let response =
                support::post(&server, "/api/4/security/?sentry_key=k4", csp("probe")).await;
            match response.status().as_u16() {
                401 => Ok(()),
                // Still loaded: this probe was published (counted from Kafka below).
                202 => Err("202".to_owned()),
                other => Err(other.to_string()),
            }
        },
    )
    .await;
    let removed = case(
        "project removed by a reload",
        "/api/4/security/?sentry_key=k4",
        401,
        "unknown_key",
    );
    check(&server, &removed).await;

    for reason in REASONS {
        let series = format!("ingest_rejections_total{{reason=\"{reason}\"}}");
        let expected = cases.iter().filter(|c| c.reason == reason).count()
            + usize::from(reason == "unknown_key") * 2; // the 401 probe and `removed`
        let delta = server.metric(&series).await - before[reason];
        assert_eq!(delta as usize, expected, "{reason} counted");
    }

    let consumed = testbed::kafka::consume_all(
        &tansu.bootstrap(),
        "keys",
        Duration::from_secs(2),
        Duration::from_secs(30),
    )
    .await
    .expect("consume");
    let documents: Vec<String> = consumed
        .iter()
        .map(|m| {
            schemas::ReportMessage::decode(&m.payload)
                .unwrap()
                .report
                .document_url
                .unwrap_or_default()
        })
        .collect();
    let probes = documents.iter().filter(|d| d.ends_with("/probe")).count();
    assert_eq!(
        consumed.len(),
        published + probes,
        "only the accepted reports were published: {documents:?}"
    );
    for c in cases.iter().chain([&removed]) {
        let marker = format!("https://shop.example/{}", slug(c.what));
        assert!(
            !documents.contains(&marker),
            "refused {} was published",
            c.what
        );
    }
    server.shutdown_and_wait().await.expect("run succeeds");
}
