//! HTTP behaviour of the ingest edge against a real server on `127.0.0.1:0` started with
//! `ingest::run`: every status code, CORS, limits, 429 + Retry-After, reloads and telemetry.
//! Tests needing a 2xx from Kafka start a real tansu broker (skipped with a message when tansu
//! is not installed, outside CI).
#![allow(clippy::unwrap_used)]

mod support;

use std::io::Write;
use std::time::{Duration, Instant};

use reqwest::header::{ACCESS_CONTROL_ALLOW_ORIGIN, ALLOW, RETRY_AFTER};
use support::*;

const CSP_TYPE: &str = "application/csp-report";

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[tokio::test]
async fn preflight_answers_204_with_static_cors_headers() {
    let server = Server::without_kafka(PROJECTS, &[]).await;
    for path in [
        "/api/1/security/",
        "/api/1/security",
        "/api/1/csp-report/",
        "/api/1/security/k1/",
    ] {
        let response = client()
            .request(reqwest::Method::OPTIONS, server.url(path))
            .header("origin", "null")
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 204, "{path}");
        let h = response.headers();
        assert_eq!(h[ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert_eq!(h["access-control-allow-methods"], "POST, OPTIONS");
        assert_eq!(h["access-control-allow-headers"], "content-type");
        assert_eq!(h["access-control-max-age"], "86400");
        assert!(
            h.get("access-control-allow-credentials").is_none(),
            "never credentials"
        );
    }
}

#[tokio::test]
async fn unknown_paths_are_404_and_other_methods_405() {
    let server = Server::without_kafka(PROJECTS, &[]).await;
    for path in [
        "/",
        "/api/1/store/",
        "/api/x/security/",
        "/api/1/security/k1/extra/",
    ] {
        let response = post(&server, path, "{}").await;
        assert_eq!(response.status(), 404, "{path}");
        assert_eq!(response.headers()[ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert_eq!(error_label(response).await, "not_found");
    }
    let response = client()
        .get(server.url("/api/1/security/?sentry_key=k1"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()[ALLOW], "POST, OPTIONS");
    assert_eq!(error_label(response).await, "method_not_allowed");
}

#[tokio::test]
async fn keys_are_checked_against_the_project() {
    let server = Server::without_kafka(PROJECTS, &[]).await;
    let body = csp("https://shop.example/", "https://evil.example/x.js");
    let cases = [
        ("/api/1/security/", 401, "missing_key"),
        ("/api/1/security/?sentry_key=nope", 401, "unknown_key"),
        ("/api/1/security/?sentry_key=k3", 401, "wrong_project"),
        ("/api/3/security/k1/", 401, "wrong_project"),
        (
            "/api/2/csp-report/?sentry_key=k2-disabled",
            403,
            "key_disabled",
        ),
    ];
    for (path, status, label) in cases {
        let response = post(&server, path, body.clone()).await;
        assert_eq!(response.status(), status, "{path}");
        assert_eq!(
            response.headers()[ACCESS_CONTROL_ALLOW_ORIGIN],
            "*",
            "{path}"
        );
        assert_eq!(error_label(response).await, label, "{path}");
    }
    // The key is accepted from the headers Sentry SDKs use (auth passes: the body is refused next).
    for header in ["x-sentry-auth", "authorization"] {
        let response = client()
            .post(server.url("/api/1/security/"))
            .header(header, "Sentry sentry_key=k1, sentry_version=7")
            .body("not json")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{header}");
    }
}

/// Telemetry contract: a refusal increments `ingest_rejections_total{reason=...}` on /metrics.
/// (Only this test uses the revoked key, so the delta is exact.)
#[tokio::test]
async fn revoked_key_answers_410_and_is_counted() {
    let server = Server::without_kafka(PROJECTS, &[]).await;
    let series = r#"ingest_rejections_total{reason="key_revoked"}"#;
    let before = server.metric(series).await;
    let response = post(
        &server,
        "/api/2/security/?sentry_key=k2-revoked",
        csp("https://b.example/", "inline"),
    )
    .await;
    assert_eq!(
        response.status(),
        410,
        "410 makes browsers delete the endpoint"
    );
    assert_eq!(error_label(response).await, "key_revoked");
    assert_eq!(server.metric(series).await, before + 1.0);
    let requests = server
        .metric(r#"ingest_requests_total{route="security",status="410"}"#)
        .await;
    assert!(requests >= 1.0);
}

#[tokio::test]
async fn malformed_bodies_are_400_with_the_schemas_reason() {
    let server = Server::without_kafka(PROJECTS, &["--max-batch-len", "2"]).await;
    let deep = format!("{}{}", "[".repeat(40), "]".repeat(40));
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (Vec::new(), 400, "empty_body"),
        (b"not json".to_vec(), 400, "invalid_json"),
        (vec![0xff, 0xfe, b'{', b'}'], 400, "invalid_utf8"),
        (br#"{"hello": "world"}"#.to_vec(), 400, "unknown_shape"),
        (b"[1, 2]".to_vec(), 400, "not_an_object"),
        (deep.into_bytes(), 400, "too_deep"),
        (
            batch("https://shop.example/", 3).into_bytes(),
            413,
            "batch_too_long",
        ),
    ];
    for (body, status, label) in cases {
        let response = post(&server, "/api/1/security/?sentry_key=k1", body).await;
        assert_eq!(response.status(), status, "{label}");
        assert_eq!(error_label(response).await, label);
    }
}

#[tokio::test]
async fn body_and_decompression_limits() {
    let server = Server::without_kafka(
        PROJECTS,
        &[
            "--max-body-bytes",
            "1000",
            "--max-decompressed-bytes",
            "2000",
        ],
    )
    .await;
    let path = "/api/1/security/?sentry_key=k1";
    let response = post(&server, path, vec![b' '; 1001]).await;
    assert_eq!(response.status(), 413);
    assert_eq!(error_label(response).await, "body_too_large");

    // A small gzip body that inflates past the cap (a zip bomb in miniature).
    let bomb = gzip(&vec![b' '; 50_000]);
    assert!(bomb.len() < 1000);
    let response = client()
        .post(server.url(path))
        .header("content-encoding", "gzip")
        .body(bomb)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert_eq!(error_label(response).await, "decompressed_too_large");

    let response = client()
        .post(server.url(path))
        .header("content-encoding", "br")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    assert_eq!(error_label(response).await, "unsupported_encoding");

    let response = client()
        .post(server.url(path))
        .header("content-encoding", "gzip")
        .body("not gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(error_label(response).await, "bad_compression");
}

#[tokio::test]
async fn per_ip_limit_is_429_with_retry_after() {
    let server =
        Server::without_kafka(PROJECTS, &["--ip-rate-per-second", "1", "--ip-burst", "2"]).await;
    let path = "/api/1/security/?sentry_key=nope";
    for _ in 0..2 {
        assert_eq!(post(&server, path, "{}").await.status(), 401);
    }
    let response = post(&server, path, "{}").await;
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()[RETRY_AFTER], "1");
    assert_eq!(response.headers()[ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    assert_eq!(error_label(response).await, "ip_rate_limited");
}

#[tokio::test]
async fn disallowed_document_host_is_403() {
    let server = Server::without_kafka(PROJECTS, &[]).await;
    let response = post(
        &server,
        "/api/1/security/?sentry_key=k1",
        csp("https://evil.example/", "inline"),
    )
    .await;
    assert_eq!(response.status(), 403);
    assert_eq!(error_label(response).await, "host_not_allowed");
}

#[tokio::test]
async fn kafka_down_is_503_with_retry_after() {
    let server = Server::without_kafka(PROJECTS, &["--unavailable-retry-after-secs", "7"]).await;
    let response = post(
        &server,
        "/api/1/security/?sentry_key=k1",
        csp("https://shop.example/", "https://evil.example/x.js"),
    )
    .await;
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()[RETRY_AFTER], "7");
    let label = error_label(response).await;
    assert!(label.starts_with("kafka_"), "{label}");
}

/// Quota counts reports, not requests; filtered noise does not consume it (no broker needed: a
/// batch that passes the quota reaches the publisher and gets 503, one that does not gets 429).
#[tokio::test]
async fn quota_counts_reports_and_ignores_noise() {
    let server = Server::without_kafka(PROJECTS, &[]).await;
    let path = "/api/3/security/?sentry_key=k3";
    // Noise is answered 2xx (browsers must not retry it) and counted as filtered.
    for _ in 0..5 {
        let response = post(&server, path, noise("https://tiny.example/")).await;
        assert_eq!(response.status(), 202);
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(
            body,
            serde_json::json!({"accepted": 0, "filtered": 1, "rejected": 0})
        );
    }
    // A batch larger than the burst (3) can never pass.
    let response = post(&server, path, batch("https://tiny.example/", 4)).await;
    assert_eq!(response.status(), 429);
    assert!(response.headers().contains_key(RETRY_AFTER));
    assert_eq!(error_label(response).await, "quota_exceeded");
    // The whole burst is still there after five noise reports: the batch passes the quota.
    let response = post(&server, path, batch("https://tiny.example/", 3)).await;
    assert_eq!(
        response.status(),
        503,
        "passed the quota, then found Kafka down"
    );
    // ...and consumed it: the failed publish took about a second (the message timeout), which
    // refilled about one report at 1/s, so another full burst is over quota.
    let response = post(&server, path, batch("https://tiny.example/", 3)).await;
    assert_eq!(response.status(), 429);
    let retry: u64 = response.headers()[RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3).contains(&retry), "{retry}");
}

#[tokio::test]
async fn projects_file_reload_changes_keys() {
    let old = PROJECTS.replace("\"k3\"", "\"k3-old\"");
    let server = Server::without_kafka(&old, &["--projects-poll-interval-ms", "100"]).await;
    let probe = |key: &'static str| {
        let url = server.url(&format!("/api/3/security/?sentry_key={key}"));
        async move {
            client()
                .post(url)
                .body("not json")
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(probe("k3-old").await, 400, "auth passes, body refused");
    assert_eq!(probe("k3").await, 401);

    // A broken file keeps the previous projects.
    std::fs::write(&server.projects_path, "this is not toml [").unwrap();
    // Read once it settled (`--projects-settle-ms`), refused, counted.
    let deadline = Instant::now() + Duration::from_secs(10);
    while server
        .metric(r#"ingest_projects_reload_total{result="error"}"#)
        .await
        < 1.0
    {
        assert!(Instant::now() < deadline, "broken file not read");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(probe("k3-old").await, 400);

    std::fs::write(&server.projects_path, PROJECTS).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while probe("k3").await != 400 {
        assert!(Instant::now() < deadline, "reload not seen");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(probe("k3-old").await, 401);
    assert!(
        server
            .metric(r#"ingest_projects_reload_total{result="error"}"#)
            .await
            >= 1.0
    );
    assert!(
        server
            .metric(r#"ingest_projects_reload_total{result="ok"}"#)
            .await
            >= 1.0
    );
}

#[tokio::test]
async fn admin_endpoints() {
    let server = Server::without_kafka(PROJECTS, &[]).await;
    let get = |path: &str| client().get(format!("{}{path}", server.admin)).send();
    assert_eq!(get("/healthz").await.unwrap().status(), 200);
    assert_eq!(get("/readyz").await.unwrap().status(), 503, "kafka is down");
    assert_eq!(get("/nope").await.unwrap().status(), 404);
    let _ = post(&server, "/nope", "{}").await;
    let text = get("/metrics").await.unwrap().text().await.unwrap();
    for name in [
        "ingest_requests_total",
        "ingest_rejections_total",
        "ingest_kafka_queue_depth",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics");
    }
}

#[tokio::test]
async fn shutdown_returns_after_draining() {
    let mut server = Server::without_kafka(PROJECTS, &["--flush-timeout-ms", "500"]).await;
    assert_eq!(post(&server, "/nope", "{}").await.status(), 404);
    server.shutdown.cancel();
    let task = server.task.take().unwrap();
    let result = tokio::time::timeout(Duration::from_secs(15), task)
        .await
        .unwrap()
        .unwrap();
    assert!(result.is_ok(), "{result:?}");
    assert!(
        client().post(server.url("/nope")).send().await.is_err(),
        "listener closed"
    );
}

/// The accepting path end to end against a real broker: 202 only after Kafka acknowledged,
/// one message per accepted report with the request context and the project's privacy applied,
/// gzip bodies, partial batches, noise filtered, quota per report.
#[tokio::test]
async fn accepted_reports_reach_kafka() {
    let Some(tansu) = testbed::kafka::Tansu::start().await else {
        eprintln!("skipping accepted_reports_reach_kafka: tansu not available");
        return;
    };
    let topic = "ingest-http-test";
    tansu.create_topic(topic, 2).await.unwrap();
    let projects = format!(
        "{PROJECTS}\n[[project]]\nid = 4\nname = \"private\"\nquota = {{ per_second = 100, burst = 100 }}\n\
         keys = [{{ public_key = \"k4\" }}]\n\
         privacy = {{ strip_query = true, strip_fragment = true, drop_referrer = true, client_ip = \"hash\", ip_salt = \"7d1e9b3f0a5c2e84\" }}\n"
    );
    let server = Server::start(&projects, &tansu.bootstrap(), &["--kafka-topic", topic]).await;

    let response = client()
        .post(
            server
                .url("/api/1/security/?sentry_key=k1&sentry_environment=prod&sentry_release=1.2.3"),
        )
        .header("content-type", CSP_TYPE)
        .header("user-agent", "TestBrowser/1.0")
        .header("cookie", "session=COOKIE-SECRET")
        .body(csp(
            "https://shop.example/checkout",
            "https://evil.example/x.js",
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    assert_eq!(response.headers()[ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        body,
        serde_json::json!({"accepted": 1, "filtered": 0, "rejected": 0})
    );
    // The accepted path updates its metrics through handles registered at start
    // (`metrics::Hot`): they must reach the recorder like the macros do.
    for series in [
        r#"ingest_requests_total{route="security",status="202"}"#,
        r#"ingest_reports_total{kind="csp-violation",outcome="accepted"}"#,
        "ingest_publish_duration_seconds_count",
    ] {
        assert!(server.metric(series).await >= 1.0, "{series}");
    }

    let response = client()
        .post(server.url("/api/1/security/k1/"))
        .header("content-type", "application/reports+json")
        .header("content-encoding", "gzip")
        .body(gzip(batch("https://www.shop.example/", 2).as_bytes()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202, "gzip body, key in the path");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["accepted"], 2);

    // One good item, one from a host the project does not allow, one malformed, one noise.
    let mixed = serde_json::json!([
        reporting_item("https://shop.example/a", "https://cdn.example/ok.js"),
        reporting_item("https://evil.example/", "https://cdn.example/x.js"),
        42,
        reporting_item("https://shop.example/b", "moz-extension://abc/inject.js"),
    ]);
    let response = post(
        &server,
        "/api/1/csp-report?sentry_key=k1",
        mixed.to_string(),
    )
    .await;
    assert_eq!(response.status(), 202);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        body,
        serde_json::json!({"accepted": 1, "filtered": 1, "rejected": 2})
    );

    let response = post(
        &server,
        "/api/4/security/?sentry_key=k4",
        csp("https://p.example/page?token=abc#frag", "inline"),
    )
    .await;
    assert_eq!(response.status(), 202);

    let tiny = "/api/3/security/?sentry_key=k3";
    assert_eq!(
        post(&server, tiny, batch("https://tiny.example/", 2))
            .await
            .status(),
        202
    );
    let response = post(&server, tiny, batch("https://tiny.example/", 2)).await;
    assert_eq!(response.status(), 429, "quota is 3 reports: 2 + 2 is over");
    assert!(response.headers().contains_key(RETRY_AFTER));

    let expected = 1 + 2 + 1 + 1 + 2;
    let consumed =
        testbed::kafka::consume(&tansu.bootstrap(), topic, expected, Duration::from_secs(20))
            .await
            .unwrap();
    assert_eq!(consumed.len(), expected, "one message per accepted report");
    let again = testbed::kafka::consume(
        &tansu.bootstrap(),
        topic,
        expected + 1,
        Duration::from_secs(2),
    )
    .await
    .unwrap();
    assert_eq!(again.len(), expected, "and nothing more");
    let messages: Vec<schemas::ReportMessage> = consumed
        .iter()
        .map(|c| schemas::ReportMessage::decode(&c.payload).unwrap())
        .collect();
    for (raw, message) in consumed.iter().zip(&messages) {
        // The default layout is binary (`--kafka-message-format`), named in its header.
        assert_eq!(raw.header_text("palisade-message-format"), "binary");
        assert_eq!(raw.payload.first(), Some(&schemas::binary::MARKER));
        let text = String::from_utf8_lossy(&raw.payload);
        assert!(!text.contains("COOKIE-SECRET"), "cookies are never stored");
        assert_eq!(message.v, schemas::MESSAGE_VERSION);
        let key = raw.key.as_deref().unwrap();
        assert!(
            key.len() == 16 && key.bytes().all(|b| b.is_ascii_hexdigit()),
            "{key}"
        );
        assert!(
            message.fingerprint.len() == 16
                && message.fingerprint.bytes().all(|b| b.is_ascii_hexdigit())
        );
        let id = uuid::Uuid::parse_str(&message.id).unwrap();
        assert_eq!(id.get_version_num(), 7);
        assert!(message.received_at_ms > 1_700_000_000_000);
    }
    let first = messages.iter().find(|m| m.environment.is_some()).unwrap();
    assert_eq!(first.project_id, 1);
    assert_eq!(first.environment.as_deref(), Some("prod"));
    assert_eq!(first.release.as_deref(), Some("1.2.3"));
    assert_eq!(first.request_user_agent.as_deref(), Some("TestBrowser/1.0"));
    assert_eq!(
        first.client_ip.as_deref(),
        Some("127.0.0.0"),
        "default privacy truncates to /24"
    );
    assert_eq!(first.noise, None);
    assert_eq!(
        first.report.document_url.as_deref(),
        Some("https://shop.example/checkout")
    );

    let private = messages.iter().find(|m| m.project_id == 4).unwrap();
    assert_eq!(
        private.report.document_url.as_deref(),
        Some("https://p.example/page")
    );
    assert_eq!(private.report.referrer, None);
    let ip = private.client_ip.as_deref().unwrap();
    assert!(
        ip.len() == 16 && ip.bytes().all(|b| b.is_ascii_hexdigit()),
        "hashed ip {ip}"
    );
    assert_eq!(messages.iter().filter(|m| m.project_id == 3).count(), 2);
}
