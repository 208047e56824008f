//! Key management end to end (issue 12, "Done when"): a project and its public key created
//! through `palisade-api`, which renders ingest's projects file; reports sent through ingest with
//! that key appear as groups in the API with exact counts; a key disabled / revoked through the
//! API is answered 403 / 410 by ingest within seconds, with no restart; another tenant's token
//! gets 403 for everything of the first project.
//!
//! Real tansu + ClickHouse 18.16 (testbed), ingest and the processor in-process (`support::Stack`),
//! `palisade-api` in-process on a loopback port writing the projects file ingest reloads.
//! Skipped (with `skipping: ...` on stderr) when tansu or ClickHouse is missing, except in CI.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{wait_for, Stack, DATABASE};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The static file ingest starts with: the API's file replaces it (a key only here stops working).
const STATIC_PROJECTS: &str = r#"
[[project]]
id = 99
name = "static"
quota = { per_second = 10000, burst = 10000 }
keys = [{ public_key = "static-key" }]
"#;

const ADMIN: &str = "admin-token-for-the-key-management-e2e-test-0123456789";

/// Longest wait for ingest to apply a change made through the API.
const RELOAD_WAIT: Duration = Duration::from_secs(15);

/// A legacy `csp-report` body for `blocked` in `directive` on a page of `shop.example`.
fn report(directive: &str, blocked: &str, page: &str) -> String {
    json!({"csp-report": {
        "document-uri": format!("https://shop.example{page}"),
        "referrer": "",
        "violated-directive": directive,
        "effective-directive": directive,
        "original-policy": format!("default-src 'self'; {directive} 'self'; report-uri /r"),
        "disposition": "enforce",
        "blocked-uri": blocked,
        "status-code": 200,
    }})
    .to_string()
}

struct Api {
    url: String,
    http: reqwest::Client,
}

impl Api {
    async fn call(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

/// Ingest's status for a report with `key` (a body ingest refuses after the key check: the
/// answer tells the key's state without storing anything).
async fn key_status(http: &reqwest::Client, ingest: &str, project: u64, key: &str) -> u16 {
    http.post(format!("{ingest}/api/{project}/security/?sentry_key={key}"))
        .header("content-type", "application/csp-report")
        .body("not json")
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Waits (bounded) until ingest answers `want` for `key`; returns how long it took.
async fn until_ingest_says(
    http: &reqwest::Client,
    ingest: &str,
    project: u64,
    key: &str,
    want: u16,
) -> Duration {
    let started = Instant::now();
    loop {
        let status = key_status(http, ingest, project, key).await;
        if status == want {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < RELOAD_WAIT,
            "ingest still answers {status} for {key}, wanted {want}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_managed_through_the_api_reach_ingest() {
    let ingest_flags = [
        "--projects-poll-interval-ms",
        "200",
        "--projects-settle-ms",
        "200",
    ];
    let Some(stack) = Stack::start(STATIC_PROJECTS, &ingest_flags).await else {
        return;
    };
    let projects_path = stack.projects_path.to_str().unwrap().to_owned();
    let config = <api::Config as clap::Parser>::try_parse_from([
        "palisade-api",
        "--clickhouse-url",
        &stack.clickhouse.http_url(),
        "--clickhouse-database",
        DATABASE,
        "--admin-tokens",
        ADMIN,
        "--projects-file-out",
        &projects_path,
        "--projects-file-refresh-secs",
        "1",
        "--token-refresh-secs",
        "1",
        "--min-client-networks",
        "1",
    ])
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api_url = format!("http://{}", listener.local_addr().unwrap());
    let api_shutdown = CancellationToken::new();
    let api_task = tokio::spawn(api::run(config, listener, None, api_shutdown.clone()));
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let api = Api {
        url: api_url,
        http: http.clone(),
    };
    let ingest = stack.ingest_url.clone();

    // Before: the static file is in force; the API has no project, so it leaves the file alone.
    assert_eq!(
        key_status(&http, &ingest, 99, "static-key").await,
        400,
        "static key works"
    );
    assert_eq!(
        key_status(&http, &ingest, 1, "shop-key").await,
        401,
        "unknown key"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await; // one refresh of the API's renderer
    assert_eq!(
        std::fs::read_to_string(&stack.projects_path).unwrap(),
        STATIC_PROJECTS,
        "no project in ClickHouse: the static file is not replaced"
    );

    // Create two projects through the API (admin), without touching any file.
    let (status, shop) = api
        .call(
            "POST",
            "/v1/projects",
            ADMIN,
            Some(json!({
                "name": "shop",
                "public_key": "shop-key",
                "quota": {"per_second": 5000, "burst": 5000},
                "allowed_hosts": ["shop.example"],
            })),
        )
        .await;
    assert_eq!(status, 201, "{shop}");
    assert_eq!(shop["projects_file"], "written");
    let shop_id = shop["project"]["id"].as_u64().unwrap();
    let shop_token = shop["token"].as_str().unwrap().to_owned();
    let (status, blog) = api
        .call("POST", "/v1/projects", ADMIN, Some(json!({"name": "blog"})))
        .await;
    assert_eq!(status, 201, "{blog}");
    let blog_id = blog["project"]["id"].as_u64().unwrap();
    assert_eq!(blog_id, shop_id + 1);
    let blog_token = blog["token"].as_str().unwrap().to_owned();
    let blog_key = blog["public_key"].as_str().unwrap().to_owned();
    assert_eq!(blog_key.len(), 32, "a random key: {blog_key}");
    // Refusals: a taken key, an existing id, a bad host pattern, a project token creating.
    let (status, body) = api
        .call(
            "POST",
            "/v1/projects",
            ADMIN,
            Some(json!({"public_key": "shop-key"})),
        )
        .await;
    assert_eq!((status, body["error"].as_str()), (409, Some("key_exists")));
    let (status, body) = api
        .call("POST", "/v1/projects", ADMIN, Some(json!({"id": shop_id})))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("project_exists"))
    );
    let (status, _) = api
        .call(
            "POST",
            "/v1/projects",
            ADMIN,
            Some(json!({"allowed_hosts": ["a.*.b"]})),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = api
        .call("POST", "/v1/projects", &shop_token, Some(json!({})))
        .await;
    assert_eq!(status, 403);

    // The rendered file: complete, ending with the end marker, written atomically.
    let text = std::fs::read_to_string(&stack.projects_path).unwrap();
    assert!(text.ends_with("# palisade:end\n"), "{text}");
    assert!(
        text.contains("public_key = \"shop-key\", state = \"active\""),
        "{text}"
    );
    assert!(!text.contains("static-key"), "{text}");
    let leftovers: Vec<_> = std::fs::read_dir(stack.projects_path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // Ingest picks it up by itself (real ingest parsing the API's file): new keys work, the
    // static one is gone.
    let took = until_ingest_says(&http, &ingest, shop_id, "shop-key", 400).await;
    eprintln!("new key accepted by ingest {took:?} after the API's answer");
    assert_eq!(key_status(&http, &ingest, blog_id, &blog_key).await, 400);
    assert_eq!(key_status(&http, &ingest, 99, "static-key").await, 401);

    // Reports through ingest with that key: 7 for one origin, 3 for another, each from its own
    // client address: exact occurrences and distinct clients per group.
    let mut sent = 0;
    for (directive, blocked, pages, copies) in [
        (
            "script-src-elem",
            "https://cdn-a.example/lib.js",
            ["/checkout", "/checkout"],
            7,
        ),
        (
            "img-src",
            "https://img.example/pixel.gif",
            ["/checkout", "/checkout"],
            3,
        ),
    ] {
        for i in 0..copies {
            let response = http
                .post(format!(
                    "{ingest}/api/{shop_id}/security/?sentry_key=shop-key"
                ))
                .header("content-type", "application/csp-report")
                .header("x-forwarded-for", format!("198.51.{i}.7"))
                .body(report(directive, blocked, pages[i % 2]))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 202, "{}", response.text().await.unwrap());
            sent += 1;
        }
    }
    stack
        .wait_for_occurrences(sent, Duration::from_secs(60))
        .await;
    let path = format!("/v1/projects/{shop_id}/violations");
    let groups: Value = wait_for("two groups in the API", Duration::from_secs(30), || async {
        let (status, body) = api.call("GET", &path, &shop_token, None).await;
        let groups = body["groups"].clone();
        if status == 200 && groups.as_array().is_some_and(|g| g.len() == 2) {
            Ok(groups)
        } else {
            Err(format!("{status} {body}"))
        }
    })
    .await;
    let mut seen: Vec<(String, String, u64, u64)> = groups
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["effective_directive"].as_str().unwrap().to_owned(),
                g["blocked"].as_str().unwrap().to_owned(),
                g["occurrences"].as_u64().unwrap(),
                g["distinct_clients"].as_u64().unwrap(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("img-src".to_owned(), "https://img.example".to_owned(), 3, 3),
            (
                "script-src-elem".to_owned(),
                "https://cdn-a.example".to_owned(),
                7,
                7
            ),
        ]
    );

    // Another tenant's token: 403 on everything of the shop project, reads and changes.
    let fingerprint = groups[0]["fingerprint"].as_str().unwrap().to_owned();
    for (method, path) in [
        ("GET", format!("/v1/projects/{shop_id}")),
        ("GET", format!("/v1/projects/{shop_id}/keys")),
        ("POST", format!("/v1/projects/{shop_id}/keys")),
        ("PATCH", format!("/v1/projects/{shop_id}")),
        ("DELETE", format!("/v1/projects/{shop_id}/keys/shop-key")),
        (
            "POST",
            format!("/v1/projects/{shop_id}/keys/shop-key/rotate"),
        ),
        (
            "POST",
            format!("/v1/projects/{shop_id}/keys/shop-key/disable"),
        ),
        ("GET", format!("/v1/projects/{shop_id}/violations")),
        (
            "GET",
            format!("/v1/projects/{shop_id}/violations/{fingerprint}"),
        ),
        (
            "DELETE",
            format!("/v1/projects/{shop_id}/violations/{fingerprint}"),
        ),
        (
            "POST",
            format!("/v1/projects/{shop_id}/violations/{fingerprint}/mute"),
        ),
        ("GET", format!("/v1/projects/{shop_id}/policy/proposed")),
        ("GET", format!("/v1/projects/{shop_id}/tokens")),
        ("GET", "/v1/projects".to_owned()),
    ] {
        let (status, body) = api.call(method, &path, &blog_token, None).await;
        assert_eq!(status, 403, "{method} {path}: {body}");
    }
    // ... and its own project only: its listing is empty, the shop's key is not in its keys.
    let (status, body) = api
        .call(
            "GET",
            &format!("/v1/projects/{blog_id}/violations"),
            &blog_token,
            None,
        )
        .await;
    assert_eq!((status, body["groups"].as_array().unwrap().len()), (200, 0));
    let (status, body) = api
        .call(
            "GET",
            &format!("/v1/projects/{blog_id}/keys"),
            &blog_token,
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["keys"].as_array().unwrap().len(), 1);
    assert_eq!(body["keys"][0]["public_key"], blog_key.as_str());
    // The other project's key paths are 404 even for an admin on the wrong project.
    let (status, _) = api
        .call(
            "DELETE",
            &format!("/v1/projects/{blog_id}/keys/shop-key"),
            ADMIN,
            None,
        )
        .await;
    assert_eq!(status, 404);

    // Rotate the shop's key: a new active key, the old one disabled (ingest: 403).
    let (status, rotated) = api
        .call(
            "POST",
            &format!("/v1/projects/{shop_id}/keys/shop-key/rotate"),
            ADMIN,
            None,
        )
        .await;
    assert_eq!(status, 201, "{rotated}");
    assert_eq!(rotated["old_key"]["state"], "disabled");
    let new_key = rotated["public_key"].as_str().unwrap().to_owned();
    until_ingest_says(&http, &ingest, shop_id, "shop-key", 403).await;
    assert_eq!(
        key_status(&http, &ingest, shop_id, &new_key).await,
        400,
        "new key works"
    );

    // Revoke the old key through the API: ingest answers 410 within seconds, no restart.
    let (status, revoked) = api
        .call(
            "DELETE",
            &format!("/v1/projects/{shop_id}/keys/shop-key"),
            ADMIN,
            None,
        )
        .await;
    assert_eq!(status, 200, "{revoked}");
    assert_eq!(revoked["state"], "revoked");
    let took = until_ingest_says(&http, &ingest, shop_id, "shop-key", 410).await;
    eprintln!("revoked key answered 410 by ingest {took:?} after the API's answer");
    // A revoked key stays revoked.
    let (status, _) = api
        .call(
            "POST",
            &format!("/v1/projects/{shop_id}/keys/shop-key/enable"),
            ADMIN,
            None,
        )
        .await;
    assert_eq!(status, 409);
    // Settings change through the API too (PATCH): allowed hosts now exclude shop.example.
    let (status, body) = api
        .call(
            "PATCH",
            &format!("/v1/projects/{shop_id}"),
            ADMIN,
            Some(json!({"allowed_hosts": ["*.elsewhere.example"]})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let refused = Instant::now();
    loop {
        let status = http
            .post(format!(
                "{ingest}/api/{shop_id}/security/?sentry_key={new_key}"
            ))
            .header("content-type", "application/csp-report")
            .body(report("img-src", "https://img.example/p.gif", "/"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        if status == 403 {
            break;
        }
        assert!(refused.elapsed() < RELOAD_WAIT, "still {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Rotate the shop's API token: the new one works, the old one is refused at once.
    let token_id = shop["token_id"].as_str().unwrap();
    let (status, body) = api
        .call(
            "POST",
            &format!("/v1/projects/{shop_id}/tokens/{token_id}/rotate"),
            ADMIN,
            None,
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let new_token = body["token"].as_str().unwrap();
    let (status, _) = api.call("GET", &path, new_token, None).await;
    assert_eq!(status, 200);
    let (status, _) = api.call("GET", &path, &shop_token, None).await;
    assert_eq!(status, 401);

    // Every change is audited.
    let actions = stack
        .tsv(&format!(
            "SELECT action FROM api_audit WHERE project_id = {shop_id} ORDER BY at, action"
        ))
        .await
        .concat();
    for action in [
        "create_project",
        "rotate_key",
        "revoke_key",
        "update_project",
        "rotate_token",
    ] {
        assert!(
            actions.iter().any(|a| a == action),
            "{action} in {actions:?}"
        );
    }

    api_shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(15), api_task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    stack.stop().await;
}
