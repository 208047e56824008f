//! The web UI for site owners in a real headless Chromium: ClickHouse 18.16 (testbed) with the
//! schema of `schemas/sql/`, four violation groups inserted with SQL, `palisade-api` on a
//! loopback port with its UI CSP reporting to a local receiver, a project token created through
//! the API, then `tests/ui/ui.spec.mjs` (playwright-core driving Debian's chromium) logs in,
//! lists, filters, opens, mutes, applies a resolution, deletes with a confirm, copies the
//! proposed policy, sees "No alerts", and checks that report fields holding markup render as
//! text and that the page's CSP blocks (and reports) injected script. Screenshots are written
//! under `target/tmp/ui/` (printed).
//!
//! Tools: node, chromium and playwright-core (installed by `deploy/scripts/setup.sh` into
//! `$PALISADE_CACHE/node/node_modules`). Missing ones skip the test, or fail it under `CI=true`.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{migrate, scalar, unix_now, Api, ADMIN_TOKEN, DATABASE};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use testbed::clickhouse::ClickHouse;

const POLICY: &str = "default-src 'self'; script-src 'self'; img-src 'self'; report-uri /csp";

// The groups (fingerprints), newest first in the listing.
const XSS: u64 = 0x0000_0000_0000_0bad; // inline, report fields holding markup
const CDN: u64 = 0xF000_0000_0000_00A1; // https://cdn.example.com, qualifies: applied
const MUTE: u64 = 0x0000_0000_0000_00C3; // img-src https://tracker.example: muted
const REMOVE: u64 = 0x0000_0000_0000_00D4; // font-src https://fonts.example: deleted

/// The tools the browser test needs, or why they are missing.
struct Tools {
    node: PathBuf,
    chromium: PathBuf,
    node_modules: PathBuf,
}

impl Tools {
    /// `PALISADE_NODE` (else `node`), `PALISADE_CHROMIUM` (else `/usr/bin/chromium`),
    /// `PALISADE_NODE_MODULES` (else `$PALISADE_CACHE/node/node_modules`, else
    /// `$HOME/.cache/palisade/node/node_modules`, where setup.sh installs playwright-core).
    fn find() -> Option<Self> {
        let node = std::env::var_os("PALISADE_NODE").map_or_else(|| "node".into(), PathBuf::from);
        match std::process::Command::new(&node).arg("--version").output() {
            Ok(output) if output.status.success() => {}
            Ok(output) => return testbed::unavailable("node", format!("{:?}", output.status)),
            Err(error) => {
                return testbed::unavailable("node", format!("{}: {error}", node.display()))
            }
        }
        let chromium = std::env::var_os("PALISADE_CHROMIUM")
            .map_or_else(|| "/usr/bin/chromium".into(), PathBuf::from);
        if !chromium.is_file() {
            return testbed::unavailable("chromium", format!("{} not found", chromium.display()));
        }
        let node_modules = std::env::var_os("PALISADE_NODE_MODULES")
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("PALISADE_CACHE")
                    .map(|c| PathBuf::from(c).join("node/node_modules"))
            })
            .or_else(|| {
                std::env::var_os("HOME")
                    .map(|h| PathBuf::from(h).join(".cache/palisade/node/node_modules"))
            })?;
        if !node_modules.join("playwright-core/package.json").is_file() {
            return testbed::unavailable(
                "playwright-core",
                format!(
                    "not in {} (run deploy/scripts/setup.sh)",
                    node_modules.display()
                ),
            );
        }
        Some(Self {
            node,
            chromium,
            node_modules,
        })
    }
}

struct Group {
    fingerprint: u64,
    directive: &'static str,
    class: &'static str,
    origin: &'static str,
    blocked_url: &'static str,
    document_url: &'static str,
    sample: &'static str,
    /// (row id, minutes after the base hour, occurrences, client ip)
    rows: &'static [(u64, u32, u32, &'static str)],
}

const GROUPS: [Group; 4] = [
    Group {
        fingerprint: XSS,
        directive: "script-src-elem",
        class: "inline",
        origin: "inline",
        blocked_url: "inline",
        document_url: "https://shop.example/search?q=<script>window.__pwned=1</script>",
        sample: "<img src=x onerror=\"window.__pwned=2\">",
        rows: &[(40, 170, 2, "198.51.100.9")],
    },
    Group {
        fingerprint: CDN,
        directive: "script-src-elem",
        class: "url",
        origin: "https://cdn.example.com",
        blocked_url: "https://cdn.example.com/lib.js?v=1",
        document_url: "https://shop.example/a",
        sample: "",
        rows: &[
            (1, 0, 5, "198.51.100.7"),
            (2, 10, 4, "203.0.113.9"),
            (3, 150, 3, "192.0.2.44"),
        ],
    },
    Group {
        fingerprint: MUTE,
        directive: "img-src",
        class: "url",
        origin: "https://tracker.example",
        blocked_url: "https://tracker.example/p.gif",
        document_url: "https://shop.example/b",
        sample: "",
        rows: &[(20, 120, 3, "198.51.100.1")],
    },
    Group {
        fingerprint: REMOVE,
        directive: "font-src",
        class: "url",
        origin: "https://fonts.example",
        blocked_url: "https://fonts.example/f.woff2",
        document_url: "https://shop.example/c",
        sample: "",
        rows: &[(30, 60, 4, "203.0.113.5")],
    },
];

async fn insert(client: &clickhouse::Client, base: u32) {
    let sql = "INSERT INTO reports (row_id, version, project_id, day, window_start, first_seen, \
               last_seen, occurrences, fingerprint, kind, disposition, document_url, \
               document_origin, document_host, document_path, blocked_url, blocked_class, \
               blocked_origin, effective_directive, sample, client_ip, original_policy, \
               policy_hash) \
               SELECT ?, 1, 1, toDate(toDateTime(?)), toDateTime(?), toDateTime(?), \
               toDateTime(?), ?, ?, 'csp-violation', 'enforce', ?, 'https://shop.example', \
               'shop.example', '/', ?, ?, ?, ?, ?, ?, ? AS p, if(p = '', toUInt64(0), cityHash64(p))";
    for group in &GROUPS {
        for &(row_id, minutes, occurrences, ip) in group.rows {
            let window = base + minutes * 60;
            client
                .query(sql)
                .bind(row_id)
                .bind(window)
                .bind(window)
                .bind(window)
                .bind(window + 30)
                .bind(occurrences)
                .bind(group.fingerprint)
                .bind(group.document_url)
                .bind(group.blocked_url)
                .bind(group.class)
                .bind(group.origin)
                .bind(group.directive)
                .bind(group.sample)
                .bind(ip)
                .bind(POLICY)
                .execute()
                .await
                .unwrap();
        }
    }
}

fn fp(value: u64) -> String {
    format!("{value:016x}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn site_owner_page_in_headless_chromium() {
    let Some(tools) = Tools::find() else {
        return;
    };
    let Some(server) = ClickHouse::start().await else {
        return;
    };
    migrate(&server).await;
    let client = clickhouse::Client::default()
        .with_url(server.http_url())
        .with_database(DATABASE)
        .with_validation(false);
    let now = unix_now();
    insert(&client, now / 3600 * 3600 - 3 * 3600).await;

    let report_port = testbed::free_port().unwrap();
    let report_uri = format!("http://127.0.0.1:{report_port}/api/1/security/?sentry_key=ui");
    let api = Api::start(
        &server,
        &[
            "--ui-csp-report-uri",
            &report_uri,
            "--default-page-size",
            "3",
        ],
    )
    .await;

    // The page and its assets are public and carry the UI's headers; `/` leads to the page.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let root = http.get(format!("{}/", api.base)).send().await.unwrap();
    assert_eq!(root.status(), StatusCode::FOUND);
    assert_eq!(root.headers()["location"], "/ui/");
    for (path, content_type) in [
        ("/ui/", "text/html; charset=utf-8"),
        ("/ui/app.js", "text/javascript; charset=utf-8"),
        ("/ui/api.js", "text/javascript; charset=utf-8"),
        ("/ui/app.css", "text/css; charset=utf-8"),
    ] {
        let response = http
            .get(format!("{}{path}", api.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let headers = response.headers();
        assert_eq!(headers["content-type"], content_type, "{path}");
        // An http endpoint: report-uri only (see `api::ui`: report-to would silence it).
        assert_eq!(
            headers["content-security-policy"],
            format!("{}; report-uri {report_uri}", api::ui::BASE_CSP).as_str()
        );
        assert!(!headers.contains_key("reporting-endpoints"));
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["referrer-policy"], "no-referrer");
    }
    let missing = http
        .get(format!("{}/ui/secret.js", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    let (status, created) = api
        .call(Method::POST, "/v1/projects/1/tokens", Some(ADMIN_TOKEN))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let token = created["token"].as_str().unwrap().to_owned();

    let artefacts = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ui");
    let profile = artefacts.join("chromium-profile");
    let _ = std::fs::remove_dir_all(&artefacts);
    std::fs::create_dir_all(&profile).unwrap();
    let groups = serde_json::json!({
        "xss": fp(XSS), "cdn": fp(CDN), "mute": fp(MUTE), "remove": fp(REMOVE),
    });
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/ui/ui.spec.mjs");
    let mut command = tokio::process::Command::new(&tools.node);
    command
        .arg(script)
        .env("NODE_PATH", &tools.node_modules)
        .env("UI_BASE", &api.base)
        .env("UI_TOKEN", &token)
        .env("UI_PROJECT", "1")
        .env("UI_CHROMIUM", &tools.chromium)
        .env("UI_PROFILE", &profile)
        .env("UI_ARTEFACTS", &artefacts)
        .env("UI_REPORT_PORT", report_port.to_string())
        .env("UI_GROUPS", groups.to_string())
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .expect("the browser test finishes within 120 s")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        output.status.success(),
        "ui.spec.mjs failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(stdout.contains("ui: all steps passed"));
    println!("screenshots in {}", artefacts.display());

    // What the page did is what the API recorded.
    let listed = api
        .get("/v1/projects/1/violations?include_muted=true", &token)
        .await;
    let by_fp = |value: u64| -> Option<Value> {
        listed["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["fingerprint"] == fp(value))
            .cloned()
    };
    assert_eq!(by_fp(MUTE).unwrap()["muted"], true);
    assert_eq!(by_fp(CDN).unwrap()["muted"], false);
    assert!(by_fp(REMOVE).is_none(), "deleted through the page");
    // Applied, then withdrawn through the page.
    let applied = api.get("/v1/projects/1/resolutions", &token).await;
    assert_eq!(applied["resolutions"], serde_json::json!([]), "{applied}");
    let audited = scalar(
        &server,
        &format!(
            "SELECT arrayStringConcat(arraySort(groupArray(action)), ',') FROM {{db}}.api_audit \
             WHERE project_id = 1 AND fingerprint = {CDN} AND action LIKE '%resolution'"
        ),
    )
    .await;
    assert_eq!(audited, "apply_resolution,withdraw_resolution");
    api.stop().await;
}
