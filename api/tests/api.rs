//! The tenant API against a real ClickHouse 18.16 (started by `testbed`), through real HTTP:
//! report rows of two projects are inserted with SQL (the processor's writer is not a dependency
//! of the API), the schema is the migrations of `schemas/sql/`, and every assertion goes through
//! `palisade-api`'s endpoints.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{migrate, scalar, unix_now, Api, ADMIN_TOKEN, DATABASE};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use testbed::clickhouse::ClickHouse;
const POLICY: &str =
    "default-src 'self'; script-src 'self' https://static.example; img-src 'self'; report-uri /csp";
/// sha256("alert(1)"): `echo -n 'alert(1)' | openssl dgst -sha256 -binary | base64`.
const ALERT_HASH: &str = "'sha256-bhHHL3z2vDgxUt0W3dWQOrprscmda2Y5pLsLg4GF+pI='";

// Fingerprints: A above i64::MAX, so the unsigned path is exercised end to end.
const A: u64 = 0xF000_0000_0000_00A1; // https://cdn.example.com, 3 networks, 12 occurrences
const B: u64 = 0x0000_0000_0000_00B2; // inline "alert(1)", 3 networks, 15 occurrences
const C: u64 = 0x0000_0000_0000_00C3; // eval, one network, 50 occurrences
const D: u64 = 0x0000_0000_0000_00D4; // https://evil.example, one /24, 1200 occurrences
const E: u64 = 0x0000_0000_0000_00E5; // img-src, 3 networks, 3 occurrences (oldest)

fn fp(value: u64) -> String {
    format!("{value:016x}")
}

struct Row {
    project: u64,
    fingerprint: u64,
    row_id: u64,
    version: u64,
    window: u32,
    occurrences: u32,
    directive: &'static str,
    class: &'static str,
    origin: &'static str,
    blocked_url: &'static str,
    page: &'static str,
    ip: &'static str,
    sample: &'static str,
}

async fn insert(client: &clickhouse::Client, row: Row) {
    let sql = "INSERT INTO reports (row_id, version, project_id, day, window_start, first_seen, \
               last_seen, occurrences, fingerprint, kind, disposition, document_url, \
               document_origin, document_host, document_path, blocked_url, blocked_class, \
               blocked_origin, effective_directive, sample, client_ip, original_policy, \
               policy_hash) \
               SELECT ?, ?, ?, toDate(toDateTime(?)), toDateTime(?), toDateTime(?), \
               toDateTime(?), ?, ?, 'csp-violation', 'enforce', ?, 'https://shop.example', \
               'shop.example', ?, ?, ?, ?, ?, ?, ?, ? AS p, if(p = '', toUInt64(0), cityHash64(p))";
    client
        .query(sql)
        .bind(row.row_id)
        .bind(row.version)
        .bind(row.project)
        .bind(row.window)
        .bind(row.window)
        .bind(row.window)
        .bind(row.window + 30)
        .bind(row.occurrences)
        .bind(row.fingerprint)
        .bind(format!("https://shop.example{}", row.page))
        .bind(row.page)
        .bind(row.blocked_url)
        .bind(row.class)
        .bind(row.origin)
        .bind(row.directive)
        .bind(row.sample)
        .bind(row.ip)
        .bind(POLICY)
        .execute()
        .await
        .unwrap();
}

/// The fingerprints of one listing page of project 1.
async fn listed(api: &Api, token: &str, query: &str) -> Vec<String> {
    fingerprints(
        &api.get(&format!("/v1/projects/1/violations?{query}"), token)
            .await,
    )
}

async fn resolution(api: &Api, token: &str, value: u64) -> Value {
    api.get(
        &format!("/v1/projects/1/violations/{}/resolution", fp(value)),
        token,
    )
    .await
}

/// The token id (first 16 hex digits of the SHA-256) of `token`.
fn created_id(token: &str) -> String {
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(token.as_bytes()))[..16].to_owned()
}

fn fingerprints(page: &Value) -> Vec<String> {
    page["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["fingerprint"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_api_against_real_clickhouse() {
    let Some(server) = ClickHouse::start().await else {
        return;
    };
    migrate(&server).await;
    let client = clickhouse::Client::default()
        .with_url(server.http_url())
        .with_database(DATABASE)
        .with_validation(false);
    let now = unix_now();
    let base = now / 3600 * 3600 - 3 * 3600;
    // Keep every inserted part unmerged, so the stale version below stays a separate row and
    // only FINAL collapses it (what a production table looks like between merges).
    server
        .query(&format!("SYSTEM STOP MERGES {DATABASE}.reports"))
        .unwrap();
    let row = |fingerprint, row_id, window, occurrences, ip| Row {
        project: 1,
        fingerprint,
        row_id,
        version: u64::from(occurrences),
        window,
        occurrences,
        directive: "script-src-elem",
        class: "url",
        origin: "https://cdn.example.com",
        blocked_url: "https://cdn.example.com/lib.js?v=1",
        page: "/a",
        ip,
        sample: "",
    };
    // A: 5 + 4 + 3 occurrences on 2 pages from 3 networks; row 3 also has a stale version 1
    // that FINAL must not count.
    insert(&client, row(A, 1, base, 5, "198.51.100.7")).await;
    insert(
        &client,
        Row {
            page: "/b",
            ..row(A, 2, base + 600, 4, "203.0.113.9")
        },
    )
    .await;
    insert(&client, row(A, 3, base + 3600, 3, "192.0.2.44")).await;
    insert(&client, row(A, 3, base + 3600, 1, "192.0.2.44")).await;
    let inline = |row_id, window, occurrences, ip| Row {
        directive: "script-src-elem",
        class: "inline",
        origin: "inline",
        blocked_url: "inline",
        sample: "alert(1)",
        ..row(B, row_id, window, occurrences, ip)
    };
    insert(&client, inline(10, base + 60, 6, "198.51.100.8")).await;
    insert(&client, inline(11, base + 120, 5, "2001:db8:1::1")).await;
    insert(&client, inline(12, base + 1800, 4, "2001:db8:2::1")).await;
    insert(
        &client,
        Row {
            directive: "script-src",
            class: "eval",
            origin: "eval",
            blocked_url: "eval",
            ..row(C, 20, base + 7200, 50, "203.0.113.50")
        },
    )
    .await;
    for (i, ip) in ["203.0.113.1", "203.0.113.2", "203.0.113.3"]
        .into_iter()
        .enumerate()
    {
        insert(
            &client,
            Row {
                origin: "https://evil.example",
                blocked_url: "https://evil.example/x.js",
                ..row(D, 30 + i as u64, base + 5400, 400, ip)
            },
        )
        .await;
    }
    for (i, ip) in ["198.51.100.1", "203.0.113.1", "192.0.2.1"]
        .into_iter()
        .enumerate()
    {
        insert(
            &client,
            Row {
                directive: "img-src",
                origin: "https://img.example.com",
                blocked_url: "https://img.example.com/p.png",
                ..row(E, 40 + i as u64, base - 3600, 1, ip)
            },
        )
        .await;
    }
    // Project 2 has a group with A's fingerprint value: deleting project 1's A must keep it.
    insert(
        &client,
        Row {
            project: 2,
            ..row(A, 100, base, 7, "198.51.100.200")
        },
    )
    .await;

    let api = Api::start(&server, &[]).await;

    // --- authentication
    let (status, body) = api.call(Method::GET, "/healthz", None).await;
    assert_eq!((status, &body["status"]), (StatusCode::OK, &json!("ok")));
    let (status, body) = api
        .call(Method::GET, "/v1/projects/1/violations", None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "missing_token");
    assert!(body["detail"].is_string());
    let (status, body) = api
        .call(Method::GET, "/v1/projects/1/violations", Some("pal_nope"))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("bad_token"))
    );

    let (status, created) = api
        .call(Method::POST, "/v1/projects/1/tokens", Some(ADMIN_TOKEN))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let token1 = created["token"].as_str().unwrap().to_owned();
    let (_, created) = api
        .call(Method::POST, "/v1/projects/2/tokens", Some(ADMIN_TOKEN))
        .await;
    let token2 = created["token"].as_str().unwrap().to_owned();
    // The bootstrap without a running server: `palisade-api token create` prints a token once;
    // the running API accepts it after its next token reload (`--token-refresh-secs 1`).
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_palisade-api"))
        .args(["token", "create", "--project", "1"])
        .args(["--clickhouse-url", &server.http_url()])
        .args(["--clickhouse-database", DATABASE])
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let cli_token = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    assert!(cli_token.starts_with("pal_"), "{cli_token}");
    testbed::wait::wait_for(
        "the CLI token is accepted",
        Duration::from_secs(10),
        || async {
            let (status, body) = api
                .call(Method::GET, "/v1/projects/1/resolutions", Some(&cli_token))
                .await;
            if status == StatusCode::OK {
                Ok(())
            } else {
                Err(format!("{status}: {body}"))
            }
        },
    )
    .await;
    let (status, _) = api
        .call(Method::GET, "/v1/projects/2/resolutions", Some(&cli_token))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a project token is scoped");
    // Tokens are listed by id (never the token), and a revoked token is refused at once.
    let (_, created) = api
        .call(Method::POST, "/v1/projects/1/tokens", Some(ADMIN_TOKEN))
        .await;
    let doomed = created["token"].as_str().unwrap().to_owned();
    let doomed_id = created["token_id"].as_str().unwrap().to_owned();
    assert_eq!(doomed_id.len(), 16);
    let tokens = api.get("/v1/projects/1/tokens", &token1).await;
    let ids: Vec<&str> = tokens["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["token_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 3, "{tokens}");
    assert!(ids.contains(&doomed_id.as_str()));
    assert!(
        !tokens.to_string().contains(&doomed[4..]),
        "never the token"
    );
    let cli_token_id = created_id(&cli_token);
    assert!(ids.contains(&cli_token_id.as_str()));
    let (status, _) = api
        .call(Method::GET, "/v1/projects/1/resolutions", Some(&doomed))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = api
        .call(
            Method::DELETE,
            &format!("/v1/projects/1/tokens/{doomed_id}"),
            Some(&token1),
        )
        .await;
    assert_eq!((status, &body["revoked"]), (StatusCode::OK, &json!(true)));
    let (status, body) = api
        .call(Method::GET, "/v1/projects/1/resolutions", Some(&doomed))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("bad_token"))
    );
    let tokens = api.get("/v1/projects/1/tokens", &token1).await;
    let revoked: Vec<bool> = tokens["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["token_id"] == doomed_id.as_str())
        .map(|t| t["revoked"].as_bool().unwrap())
        .collect();
    assert_eq!(revoked, [true]);
    let (status, body) = api
        .call(
            Method::DELETE,
            "/v1/projects/1/tokens/00000000000000aa",
            Some(&token1),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("token_not_found"))
    );
    let hash = |token: &str| hex::encode(<sha2::Sha256 as sha2::Digest>::digest(token.as_bytes()));
    assert_eq!(
        scalar(
            &server,
            "SELECT arraySort(groupUniqArray(token_hash)) FROM {db}.api_tokens"
        )
        .await,
        {
            let mut hashes = [
                hash(&token1),
                hash(&token2),
                hash(&cli_token),
                hash(&doomed),
            ];
            hashes.sort();
            format!("['{}']", hashes.join("','"))
        },
        "only the SHA-256 of each token is stored"
    );

    // --- list: exact counts, newest first
    let page = api.get("/v1/projects/1/violations", &token1).await;
    assert_eq!(fingerprints(&page), [fp(C), fp(D), fp(A), fp(B), fp(E)]);
    assert_eq!(page["next_cursor"], Value::Null);
    let group_a = &page["groups"][2];
    assert_eq!(group_a["occurrences"], 12, "{group_a}");
    assert_eq!(group_a["distinct_pages"], 2);
    assert_eq!(group_a["distinct_clients"], 3);
    assert_eq!(group_a["distinct_client_networks"], 3);
    assert_eq!(group_a["blocked"], "https://cdn.example.com");
    assert_eq!(group_a["effective_directive"], "script-src-elem");
    assert_eq!(group_a["document_host"], "shop.example");
    assert_eq!(group_a["first_seen_unix"], base);
    assert_eq!(group_a["last_seen_unix"], base + 3630);
    assert_eq!(group_a["muted"], false);
    assert_eq!(page["groups"][1]["occurrences"], 1200);
    assert_eq!(page["groups"][1]["distinct_client_networks"], 1);
    assert_eq!(
        page["groups"][3]["distinct_client_networks"], 3,
        "IPv6 /48s"
    );

    // --- pagination: limit 2 walks the same order without gaps or repeats
    let mut walked = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/projects/1/violations?limit=2&cursor={c}"),
            None => "/v1/projects/1/violations?limit=2".to_owned(),
        };
        let page = api.get(&path, &token1).await;
        walked.extend(fingerprints(&page));
        pages += 1;
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(walked, [fp(C), fp(D), fp(A), fp(B), fp(E)]);
    assert_eq!(pages, 3);
    let (status, body) = api
        .call(
            Method::GET,
            "/v1/projects/1/violations?cursor=xyz",
            Some(&token1),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_cursor"))
    );
    let (status, _) = api
        .call(
            Method::GET,
            "/v1/projects/1/violations?limit=100000",
            Some(&token1),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // --- filters
    assert_eq!(listed(&api, &token1, "directive=script-src").await, [fp(C)]);
    assert_eq!(listed(&api, &token1, "q=CDN.EXAMPLE").await, [fp(A)]);
    assert_eq!(
        listed(&api, &token1, "host=other.example").await,
        Vec::<String>::new()
    );
    assert_eq!(
        listed(&api, &token1, "kind=network-error").await,
        Vec::<String>::new()
    );
    assert_eq!(
        listed(&api, &token1, &format!("since={}", base + 3600)).await,
        [fp(C), fp(D), fp(A)]
    );
    assert_eq!(
        listed(&api, &token1, &format!("until={}", base)).await,
        [fp(E)]
    );

    // --- details: samples and the hourly series
    let details = api
        .get(&format!("/v1/projects/1/violations/{}", fp(A)), &token1)
        .await;
    assert_eq!(details["group"]["occurrences"], 12);
    let samples = details["samples"].as_array().unwrap();
    assert_eq!(samples.len(), 3);
    assert_eq!(
        samples[0]["occurrences"], 3,
        "newest first, the fullest version"
    );
    assert_eq!(
        samples[0]["blocked_url"],
        "https://cdn.example.com/lib.js?v=1"
    );
    let series = details["series"].as_array().unwrap();
    assert_eq!(series.len(), 48);
    let total: u64 = series
        .iter()
        .map(|h| h["occurrences"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 12);
    assert_eq!(series[47]["hour_unix"], base + 3600);
    assert_eq!(series[47]["occurrences"], 3);
    assert_eq!(series[46]["occurrences"], 9);
    let (status, body) = api
        .call(
            Method::GET,
            "/v1/projects/1/violations/00000000000000ff",
            Some(&token1),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("group_not_found"))
    );

    // --- mute hides, include_muted shows, unmute restores
    let mute = format!("/v1/projects/1/violations/{}/mute", fp(C));
    let (status, body) = api.call(Method::POST, &mute, Some(&token1)).await;
    assert_eq!((status, &body["muted"]), (StatusCode::OK, &json!(true)));
    assert_eq!(
        listed(&api, &token1, "").await,
        [fp(D), fp(A), fp(B), fp(E)]
    );
    let all = api
        .get("/v1/projects/1/violations?include_muted=true", &token1)
        .await;
    assert_eq!(fingerprints(&all), [fp(C), fp(D), fp(A), fp(B), fp(E)]);
    assert_eq!(all["groups"][0]["muted"], true);
    assert_eq!(all["groups"][1]["muted"], false);
    let (status, _) = api.call(Method::DELETE, &mute, Some(&token1)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        listed(&api, &token1, "").await,
        [fp(C), fp(D), fp(A), fp(B), fp(E)]
    );

    // --- resolutions
    let ra = resolution(&api, &token1, A).await;
    assert_eq!(ra["directive"], "script-src-elem");
    assert_eq!(ra["sources"], json!(["https://cdn.example.com"]));
    assert_eq!(ra["qualifies"], true, "{ra}");
    assert_eq!(
        ra["evidence"],
        json!({"occurrences": 12, "distinct_pages": 2, "distinct_client_networks": 3})
    );
    let rb = resolution(&api, &token1, B).await;
    assert_eq!(rb["sources"], json!([ALERT_HASH]), "{rb}");
    assert_eq!(rb["qualifies"], true);
    assert!(rb["explanation"]
        .as_str()
        .unwrap()
        .contains("'unsafe-inline' is never proposed"));
    let rc = resolution(&api, &token1, C).await;
    assert_eq!(rc["sources"], json!(["'unsafe-eval'"]));
    assert_eq!(rc["qualifies"], false);
    let rd = resolution(&api, &token1, D).await;
    assert_eq!(rd["sources"], json!(["https://evil.example"]));
    assert_eq!(
        rd["qualifies"], false,
        "one /24 cannot get an origin proposed: {rd}"
    );
    assert!(rd["not_qualified_because"]
        .as_str()
        .unwrap()
        .contains("1 client networks < 3"));

    let apply = |value: u64| format!("/v1/projects/1/violations/{}/resolution/apply", fp(value));
    let (status, body) = api.call(Method::POST, &apply(D), Some(&token1)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::CONFLICT, Some("not_qualified"))
    );
    let (status, body) = api.call(Method::POST, &apply(B), Some(&token1)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["sources"], json!([ALERT_HASH]));
    let applied = api.get("/v1/projects/1/resolutions", &token1).await;
    let applied = applied["resolutions"].as_array().unwrap();
    assert_eq!(applied.len(), 1);
    assert_eq!(applied[0]["fingerprint"], fp(B));
    assert_eq!(applied[0]["directive"], "script-src-elem");
    assert_eq!(applied[0]["evidence"]["occurrences"], 15);

    // --- proposed policy: observed + applied (B) + qualifying (A); never D or C
    let proposed = api.get("/v1/projects/1/policy/proposed", &token1).await;
    assert_eq!(proposed["header"], "Content-Security-Policy");
    assert_eq!(proposed["observed"], POLICY);
    let expected_value = format!(
        "{POLICY}; script-src-elem 'self' https://static.example {ALERT_HASH} https://cdn.example.com"
    );
    assert_eq!(proposed["value"], expected_value, "{proposed}");
    assert_eq!(
        proposed["diff"],
        json!([{
            "directive": "script-src-elem",
            "created": true,
            "copied_from": "script-src",
            "added": [ALERT_HASH, "https://cdn.example.com"]
        }])
    );
    let origins: Vec<(String, String)> = proposed["included"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["fingerprint"].as_str().unwrap().to_owned(),
                i["origin"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        origins,
        [
            (fp(B), "applied".to_owned()),
            (fp(A), "qualifying".to_owned())
        ]
    );
    // A muted group is not proposed unasked.
    api.call(
        Method::POST,
        &format!("/v1/projects/1/violations/{}/mute", fp(A)),
        Some(&token1),
    )
    .await;
    let proposed = api.get("/v1/projects/1/policy/proposed", &token1).await;
    assert!(
        !proposed["value"]
            .as_str()
            .unwrap()
            .contains("cdn.example.com"),
        "{proposed}"
    );
    api.call(
        Method::DELETE,
        &format!("/v1/projects/1/violations/{}/mute", fp(A)),
        Some(&token1),
    )
    .await;

    // --- withdrawing: B's resolution leaves the list and the proposed policy; a qualifying
    // group that is withdrawn is not proposed again unasked; applying again undoes it
    let resolution = |value: u64| format!("/v1/projects/1/violations/{}/resolution", fp(value));
    let (status, body) = api
        .call(Method::DELETE, &resolution(A), Some(&token1))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_applied")),
        "A qualifies but was never applied"
    );
    let (status, body) = api.call(Method::POST, &apply(A), Some(&token1)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let withdrawals = [
        (B, json!([ALERT_HASH])),
        (A, json!(["https://cdn.example.com"])),
    ];
    for (value, sources) in withdrawals {
        let (status, body) = api
            .call(Method::DELETE, &resolution(value), Some(&token1))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["fingerprint"], fp(value));
        assert_eq!(body["withdrawn"]["sources"], sources, "{body}");
    }
    let (status, body) = api
        .call(Method::DELETE, &resolution(B), Some(&token1))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_applied"))
    );
    let recorded = api.get("/v1/projects/1/resolutions", &token1).await;
    assert_eq!(recorded["resolutions"], json!([]), "{recorded}");
    let proposed = api.get("/v1/projects/1/policy/proposed", &token1).await;
    assert_eq!(proposed["value"], POLICY, "{proposed}");
    assert_eq!(proposed["included"], json!([]), "{proposed}");
    let (status, body) = api.call(Method::POST, &apply(B), Some(&token1)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let proposed = api.get("/v1/projects/1/policy/proposed", &token1).await;
    assert_eq!(
        proposed["value"],
        format!("{POLICY}; script-src-elem 'self' https://static.example {ALERT_HASH}"),
        "{proposed}"
    );

    // --- another project's token: 403 on every project-1 route; admin routes need an admin
    for (method, template, _) in api::routes::ROUTES {
        if !template.contains("{id}") {
            continue;
        }
        let path = template
            .replace("{id}", "1")
            .replace("{fingerprint}", &fp(A))
            .replace("{token_id}", &cli_token_id)
            .replace("{public_key}", "some-key");
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let (status, body) = api.call(method.clone(), &path, Some(&token2)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {body}");
        let (status, _) = api.call(method.clone(), &path, None).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{method} {path} without a token"
        );
    }
    let (status, body) = api
        .call(Method::POST, "/v1/projects/1/tokens", Some(&token1))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("admin_required"))
    );
    let (status, _) = api.call(Method::GET, "/metrics", Some(&token1)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // --- request edges: unknown path, wrong method, body bounds and shape
    let (status, body) = api
        .call(Method::GET, "/v1/projects/1/nothing", Some(&token1))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (status, body) = api
        .call(Method::PUT, "/v1/projects/1/violations", Some(&token1))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::METHOD_NOT_ALLOWED, Some("method_not_allowed"))
    );
    let big = json!({ "force": false, "padding": "x".repeat(5000) });
    let (status, body) = api
        .send(Method::POST, &apply(B), Some(&token1), Some(big))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("body_too_large"))
    );
    let (status, body) = api
        .send(
            Method::POST,
            &apply(B),
            Some(&token1),
            Some(json!({"forse": true})),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_body"))
    );
    // Project 2 still sees its own group with A's fingerprint value.
    let own = api.get("/v1/projects/2/violations", &token2).await;
    assert_eq!(fingerprints(&own), [fp(A)]);
    assert_eq!(own["groups"][0]["occurrences"], 7);

    // --- delete: only project 1's rows of A
    let (status, body) = api
        .call(
            Method::DELETE,
            &format!("/v1/projects/1/violations/{}", fp(A)),
            Some(&token1),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["deleted_occurrences"], 12);
    // Mutations need merges (stopped above). Wait for every mutation to finish, so rows of
    // another project a wrong WHERE would delete are gone too before the check below.
    server
        .query(&format!("SYSTEM START MERGES {DATABASE}.reports"))
        .unwrap();
    testbed::wait::wait_for("the delete mutation", Duration::from_secs(30), || async {
        let pending = scalar(
            &server,
            "SELECT count() FROM system.mutations WHERE database = '{db}' AND is_done = 0",
        )
        .await;
        let left = scalar(
            &server,
            &format!(
                "SELECT count() FROM {{db}}.reports WHERE project_id = 1 AND fingerprint = {A}"
            ),
        )
        .await;
        if pending == "0" && left == "0" {
            Ok(())
        } else {
            Err(format!("{pending} mutations pending, {left} rows left"))
        }
    })
    .await;
    assert_eq!(
        scalar(
            &server,
            &format!(
                "SELECT count() FROM {{db}}.reports WHERE project_id = 2 AND fingerprint = {A}"
            )
        )
        .await,
        "1",
        "the other project's rows stay"
    );
    assert_eq!(
        listed(&api, &token1, "").await,
        [fp(C), fp(D), fp(B), fp(E)]
    );
    let (status, _) = api
        .call(
            Method::GET,
            &format!("/v1/projects/1/violations/{}", fp(A)),
            Some(&token1),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // --- every change is audited
    assert_eq!(
        scalar(&server, "SELECT arrayStringConcat(arraySort(groupArray(action)), ',') FROM {db}.api_audit WHERE project_id = 1").await,
        "apply_resolution,apply_resolution,apply_resolution,create_token,create_token,create_token,delete,mute,mute,revoke_token,unmute,unmute,withdraw_resolution,withdraw_resolution"
    );

    // --- the telemetry contract: refusals are counted by reason (admin-only /metrics)
    let (status, text) = api.call(Method::GET, "/metrics", Some(ADMIN_TOKEN)).await;
    assert_eq!(status, StatusCode::OK);
    let text = text.as_str().unwrap();
    for line in [
        "api_errors_total{reason=\"wrong_project\"}",
        "api_errors_total{reason=\"missing_token\"}",
        "api_changes_total{action=\"delete\"} 1",
    ] {
        assert!(text.contains(line), "{line} missing from /metrics:\n{text}");
    }

    api.stop().await;
}
