//! Alerts against a real ClickHouse 18.16 (started by `testbed`) with a real local HTTP
//! receiver: report rows are inserted with SQL, settings and mutes go through the API, then the
//! API's evaluator runs every second and delivers signed webhooks to the receiver.
#![allow(clippy::unwrap_used)]

mod common;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{migrate, unix_now, Api, ADMIN_TOKEN, DATABASE};
use http_body_util::{BodyExt as _, Full};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use testbed::clickhouse::ClickHouse;

const S: u64 = 0x0000_0000_0000_05A1; // spikes: 1/h for 24 h, then 50 in the last hour
const N: u64 = 0xF000_0000_0000_00B2; // new group with a new origin (and above i64::MAX)
const G: u64 = 0x0000_0000_0000_06B3; // new group, origin already known (S's)
const M1: u64 = 0x0000_0000_0000_0AC1; // muted: new group, new origin
const M2: u64 = 0x0000_0000_0000_0AC2; // muted: spikes like S
const OLD_POLICY: u64 = 111;
const NEW_POLICY: u64 = 222;

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    status: u16,
    signature: String,
    timestamp: String,
    alert_id: String,
    attempt: String,
    body: Bytes,
}

/// A webhook receiver on a loopback port: answers 500 to the first `fail_first` requests,
/// then 200, and records every request.
async fn receiver(fail_first: usize) -> (String, Arc<Mutex<Vec<Received>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let received = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&received);
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |request: http::Request<hyper::body::Incoming>| {
                        let log = Arc::clone(&log);
                        async move {
                            let header = |name: &str| {
                                request
                                    .headers()
                                    .get(name)
                                    .and_then(|v| v.to_str().ok())
                                    .unwrap_or("")
                                    .to_owned()
                            };
                            let (signature, timestamp, alert_id, attempt) = (
                                header("x-palisade-signature"),
                                header("x-palisade-timestamp"),
                                header("x-palisade-alert-id"),
                                header("x-palisade-delivery-attempt"),
                            );
                            let body = request.into_body().collect().await.unwrap().to_bytes();
                            let mut log = log.lock().unwrap();
                            let status = if log.len() < fail_first { 500 } else { 200 };
                            log.push(Received {
                                status,
                                signature,
                                timestamp,
                                alert_id,
                                attempt,
                                body,
                            });
                            let mut response = http::Response::new(Full::new(Bytes::new()));
                            *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
                            Ok::<_, Infallible>(response)
                        }
                    },
                );
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            });
        }
    });
    (url, received)
}

#[allow(clippy::too_many_arguments)]
async fn insert(
    client: &clickhouse::Client,
    project: u64,
    fingerprint: u64,
    row_id: u64,
    window: u32,
    occurrences: u32,
    origin: &str,
    policy_hash: u64,
) {
    let sql = "INSERT INTO reports (row_id, version, project_id, day, window_start, first_seen, \
               last_seen, occurrences, fingerprint, kind, disposition, document_url, \
               document_origin, document_host, document_path, blocked_url, blocked_origin, \
               effective_directive, client_ip, policy_hash, original_policy) \
               SELECT ?, ?, ?, toDate(toDateTime(?)), toDateTime(?), toDateTime(?), \
               toDateTime(?), ?, ?, 'csp-violation', 'enforce', 'https://shop.example/', \
               'https://shop.example', 'shop.example', '/', ?, ?, 'script-src-elem', \
               '203.0.113.7', ?, ?";
    client
        .query(sql)
        .bind(row_id)
        .bind(u64::from(occurrences))
        .bind(project)
        .bind(window)
        .bind(window)
        .bind(window)
        .bind(window + 30)
        .bind(occurrences)
        .bind(fingerprint)
        .bind(format!("{origin}/x.js"))
        .bind(origin)
        .bind(policy_hash)
        .bind(format!("script-src 'self' #{policy_hash}"))
        .execute()
        .await
        .unwrap();
}

/// A counter's value in the Prometheus text (0 when absent).
fn counter(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

async fn metrics_text(api: &Api) -> String {
    let (status, body) = api.call(Method::GET, "/metrics", Some(ADMIN_TOKEN)).await;
    assert_eq!(status, StatusCode::OK);
    body.as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_fire_once_signed_and_retried() {
    let Some(server) = ClickHouse::start().await else {
        return;
    };
    migrate(&server).await;
    let client = clickhouse::Client::default()
        .with_url(server.http_url())
        .with_database(DATABASE)
        .with_validation(false);
    let now = unix_now();
    let mut row_id = 0;
    let mut next = || {
        row_id += 1;
        row_id
    };
    // S and M2: one occurrence per hour over the 24 h before the last hour, then 5 x 10 in the
    // last hour (50 >= 20 x 1/h and >= the minimum 10), all under the old policy for the
    // history and the new one since.
    for (fingerprint, origin) in [(S, "https://old.example"), (M2, "https://old2.example")] {
        for k in 0..24 {
            let window = now - 24 * 3600 - 1800 + k * 3600;
            insert(
                &client,
                1,
                fingerprint,
                next(),
                window,
                1,
                origin,
                OLD_POLICY,
            )
            .await;
        }
        for k in 0..5 {
            insert(
                &client,
                1,
                fingerprint,
                next(),
                now - 600 + k * 60,
                10,
                origin,
                NEW_POLICY,
            )
            .await;
        }
    }
    // N: a new group with a new origin (3 occurrences: no spike); M1 the same, muted.
    insert(
        &client,
        1,
        N,
        next(),
        now - 900,
        3,
        "https://new.example",
        NEW_POLICY,
    )
    .await;
    insert(
        &client,
        1,
        M1,
        next(),
        now - 900,
        3,
        "https://muted.example",
        NEW_POLICY,
    )
    .await;
    // G: a new group whose origin is known (S's): `new_fingerprint`.
    insert(
        &client,
        1,
        G,
        next(),
        now - 800,
        2,
        "https://old.example",
        NEW_POLICY,
    )
    .await;
    // Project 3: one new origin, its webhook always fails.
    insert(
        &client,
        3,
        0x33,
        next(),
        now - 700,
        1,
        "https://three.example",
        NEW_POLICY,
    )
    .await;
    // Project 2 saw https://new.example long ago: that must not make it old for project 1.
    insert(
        &client,
        2,
        N,
        next(),
        now - 48 * 3600,
        1,
        "https://new.example",
        OLD_POLICY,
    )
    .await;

    let (hook, received) = receiver(1).await;
    let (dead_hook, dead) = receiver(usize::MAX).await;

    // --- first instance, evaluator off: tokens, settings, mutes, scope.
    let api = Api::start(
        &server,
        &["--alert-interval-secs", "0", "--webhook-allow-private"],
    )
    .await;
    let token = |body: Value| body["token"].as_str().unwrap().to_owned();
    let (status, body) = api
        .call(Method::POST, "/v1/projects/1/tokens", Some(ADMIN_TOKEN))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let t1 = token(body);
    let (_, body) = api
        .call(Method::POST, "/v1/projects/2/tokens", Some(ADMIN_TOKEN))
        .await;
    let t2 = token(body);

    let settings = api.get("/v1/projects/1/alerts/settings", &t1).await;
    assert_eq!(settings["enabled"], true);
    assert_eq!(settings["spike_factor"], 20);
    assert_eq!(settings["secret_set"], false);
    let (status, body) = api
        .send(
            Method::PUT,
            "/v1/projects/1/alerts/settings",
            Some(&t1),
            Some(json!({"spike_min_count": 10, "webhooks": ["ftp://x.example/"]})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = api
        .send(
            Method::PUT,
            "/v1/projects/1/alerts/settings",
            Some(&t1),
            Some(json!({"spike_min_count": 10, "webhooks": [hook]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let secret = body["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{body}");
    let settings = api.get("/v1/projects/1/alerts/settings", &t1).await;
    assert_eq!(settings["secret_set"], true);
    assert!(settings.get("secret").is_none(), "the secret is shown once");
    assert_eq!(settings["webhooks"], json!([hook]));
    assert_eq!(settings["spike_min_count"], 10);
    for muted in [M1, M2] {
        let (status, _) = api
            .call(
                Method::POST,
                &format!("/v1/projects/1/violations/{muted:016x}/mute"),
                Some(&t1),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    // Another tenant's token: 403 on every alert route of project 1; no token: 401.
    for (method, path) in [
        (Method::GET, "/v1/projects/1/alerts"),
        (Method::GET, "/v1/projects/1/alerts/deliveries"),
        (Method::GET, "/v1/projects/1/alerts/settings"),
        (Method::PUT, "/v1/projects/1/alerts/settings"),
    ] {
        let (status, body) = api
            .send(
                method.clone(),
                path,
                Some(&t2),
                Some(json!({"webhooks": []})),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {body}");
        let (status, _) = api.call(method.clone(), path, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}");
    }
    let (status, body) = api
        .send(
            Method::PUT,
            "/v1/projects/3/alerts/settings",
            Some(ADMIN_TOKEN),
            Some(json!({"webhooks": [dead_hook]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let alerts = api.get("/v1/projects/1/alerts", &t1).await;
    assert_eq!(alerts, json!({"alerts": []}));
    api.stop().await;

    // --- second instance: evaluates every second, retries after 200 ms.
    let api = Api::start(
        &server,
        &[
            "--alert-interval-secs",
            "1",
            "--webhook-allow-private",
            "--webhook-backoff-ms",
            "200",
            "--webhook-max-attempts",
            "3",
        ],
    )
    .await;
    // Four alerts (spike S, new origin N, new group G, policy changed), the first request
    // answered 500 and retried: five requests.
    let deadline = Instant::now() + Duration::from_secs(30);
    while received.lock().unwrap().len() < 5 || dead.lock().unwrap().len() < 3 {
        if Instant::now() > deadline {
            let listed = api.get("/v1/projects/1/alerts", &t1).await;
            panic!("timed out waiting for five webhook requests; alerts: {listed}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Two more full evaluations after that fire nothing more.
    let ok = "api_alert_evaluations_total{result=\"ok\"}";
    let before = counter(&metrics_text(&api).await, ok);
    let deadline = Instant::now() + Duration::from_secs(30);
    while counter(&metrics_text(&api).await, ok) < before + 2 {
        assert!(Instant::now() < deadline, "evaluations stopped");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let requests = received.lock().unwrap().clone();
    assert_eq!(requests.len(), 5, "nothing more after later evaluations");
    assert_eq!(dead.lock().unwrap().len(), 3, "3 attempts, then given up");

    // Every request is signed with the project's secret over "<timestamp>.<body>".
    let mut delivered = Vec::new();
    for request in &requests {
        let mut message = request.timestamp.clone().into_bytes();
        message.push(b'.');
        message.extend_from_slice(&request.body);
        let expected = format!(
            "sha256={}",
            hex::encode(api::alerts::webhook::hmac_sha256(
                secret.as_bytes(),
                &message
            ))
        );
        assert_eq!(request.signature, expected, "signature of {request:?}");
        let mut tampered = message.clone();
        tampered.push(b' ');
        assert_ne!(
            format!(
                "sha256={}",
                hex::encode(api::alerts::webhook::hmac_sha256(
                    secret.as_bytes(),
                    &tampered
                ))
            ),
            request.signature
        );
        let payload: Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(payload["id"], request.alert_id.as_str());
        assert_eq!(payload["project_id"], 1);
        if request.status == 200 {
            delivered.push(payload);
        }
    }
    let failed = &requests[0];
    assert_eq!((failed.status, failed.attempt.as_str()), (500, "1"));
    let retried: Vec<_> = requests[1..]
        .iter()
        .filter(|r| r.alert_id == failed.alert_id)
        .collect();
    assert_eq!(retried.len(), 1, "retried once");
    assert_eq!((retried[0].status, retried[0].attempt.as_str()), (200, "2"));
    let mut kinds: Vec<&str> = delivered
        .iter()
        .map(|p| p["kind"].as_str().unwrap())
        .collect();
    kinds.sort_unstable();
    assert_eq!(
        kinds,
        ["new_fingerprint", "new_origin", "policy_changed", "spike"],
        "{delivered:?}"
    );
    let group = delivered
        .iter()
        .find(|p| p["kind"] == "new_fingerprint")
        .unwrap();
    assert_eq!(group["fingerprint"], format!("{G:016x}"));
    assert_eq!(group["count"], 2);
    let spike = delivered.iter().find(|p| p["kind"] == "spike").unwrap();
    assert_eq!(spike["fingerprint"], format!("{S:016x}"));
    assert_eq!(
        (spike["count"].as_u64(), spike["baseline_24h"].as_u64()),
        (Some(50), Some(24))
    );
    let new = delivered
        .iter()
        .find(|p| p["kind"] == "new_origin")
        .unwrap();
    assert_eq!(new["origin"], "https://new.example");
    assert_eq!(new["fingerprint"], format!("{N:016x}"));
    let policy = delivered
        .iter()
        .find(|p| p["kind"] == "policy_changed")
        .unwrap();
    assert_eq!(policy["policy_hash"], format!("{NEW_POLICY:016x}"));

    // The API lists them newest first, delivered, in the UI's shape.
    let listed = api.get("/v1/projects/1/alerts", &t1).await;
    let alerts = listed["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 4, "{listed}");
    for alert in alerts {
        for field in [
            "id",
            "kind",
            "fingerprint",
            "origin",
            "directive",
            "count",
            "fired_at",
            "delivered",
        ] {
            assert!(alert.get(field).is_some(), "{field} in {alert}");
        }
        assert_eq!(alert["delivered"], true, "{alert}");
        assert_eq!(alert["delivery"], "delivered");
    }
    let log = api.get("/v1/projects/1/alerts/deliveries", &t1).await;
    let log = log["deliveries"].as_array().unwrap();
    assert_eq!(log.len(), 5, "{log:?}");
    let retry: Vec<_> = log.iter().filter(|d| d["result"] == "retry").collect();
    assert_eq!(retry.len(), 1, "{log:?}");
    assert_eq!(retry[0]["status_code"], 500);
    assert_eq!(retry[0]["alert_id"], failed.alert_id.as_str());
    assert_eq!(log.iter().filter(|d| d["result"] == "ok").count(), 4);

    // Project 3: the failing receiver got 3 attempts, logged, the alert is `failed`.
    let listed = api.get("/v1/projects/3/alerts", ADMIN_TOKEN).await;
    let alerts = listed["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 1, "{listed}");
    assert_eq!(alerts[0]["kind"], "new_origin");
    assert_eq!(alerts[0]["delivered"], false);
    assert_eq!(alerts[0]["delivery"], "failed");
    assert_eq!(alerts[0]["attempts"], 3);
    let log = api
        .get("/v1/projects/3/alerts/deliveries", ADMIN_TOKEN)
        .await;
    let mut results: Vec<(u64, String, u64)> = log["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["attempt"].as_u64().unwrap(),
                d["result"].as_str().unwrap().to_owned(),
                d["status_code"].as_u64().unwrap(),
            )
        })
        .collect();
    results.sort();
    assert_eq!(
        results,
        [
            (1, "retry".to_owned(), 500),
            (2, "retry".to_owned(), 500),
            (3, "failed".to_owned(), 500)
        ]
    );

    let text = metrics_text(&api).await;
    for (kind, fired) in [
        ("spike", 1),
        ("new_origin", 2),
        ("new_fingerprint", 1),
        ("policy_changed", 1),
    ] {
        let series = format!("api_alerts_fired_total{{kind=\"{kind}\"}}");
        assert_eq!(counter(&text, &series), fired, "{series}");
    }
    assert_eq!(
        counter(&text, "api_webhook_deliveries_total{result=\"ok\"}"),
        4
    );
    assert_eq!(
        counter(&text, "api_webhook_deliveries_total{result=\"retry\"}"),
        3
    );
    assert_eq!(
        counter(&text, "api_webhook_deliveries_total{result=\"failed\"}"),
        1
    );
    // Project 2 had no recent rows: nothing fired there, and its token sees nothing of 1.
    assert_eq!(
        api.get("/v1/projects/2/alerts", &t2).await,
        json!({"alerts": []})
    );
    api.stop().await;
}
