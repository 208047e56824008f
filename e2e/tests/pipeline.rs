//! HTTP -> ingest -> tansu -> processor -> ClickHouse, every component real and in-process
//! (servers from `testbed`): every report kind posted to ingest lands as a deduplicated,
//! enriched row, and every analyst query in `schemas/sql/queries/` answers correctly on the
//! data loaded through the real pipeline.
//!
//! Skipped (with `skipping: ...` on stderr) when tansu or ClickHouse is missing, except in CI.
#![allow(clippy::unwrap_used)]

#[path = "pipeline/queries.rs"]
mod queries;
mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use queries::{query_files, render, Param};
use support::Stack;
use testbed::bodies::{
    BATCH, EXPECT_CT, EXPECT_STAPLE, HPKP, LEGACY_UNWRAPPED, LEGACY_WRAPPED, SAFARI_SINGLE, XSS,
};

const KEY: &str = "shop-key";
const PROJECT: u64 = 1;
const CHROME_UA: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 \
                         (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";

/// Noise filtering on (the default): the batch's extension report is filtered by ingest.
const PROJECTS: &str = r#"
[[project]]
id = 1
name = "shop"
quota = { per_second = 10000, burst = 10000 }
keys = [{ public_key = "shop-key" }]
# These tests check that URLs reach ClickHouse as sent: keep queries and fragments (the
# default strips them; e2e/tests/privacy.rs checks that).
privacy = { strip_query = false, strip_fragment = false }
"#;

/// One POST to ingest from `client` (via `X-Forwarded-For`); returns the accepted count.
async fn post(stack: &Stack, content_type: &str, body: &str, query: &str, client: &str) -> u64 {
    let url = format!(
        "{}/api/{PROJECT}/security/?sentry_key={KEY}{query}",
        stack.ingest_url
    );
    let response = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .post(url)
        .header("content-type", content_type)
        .header("user-agent", CHROME_UA)
        .header("x-forwarded-for", client)
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202, "{content_type} {body}");
    let answer: serde_json::Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    answer["accepted"].as_u64().unwrap()
}

/// Posts every kind; returns the number of reports ingest accepted.
async fn post_everything(stack: &Stack) -> u64 {
    let release = "&sentry_environment=prod&sentry_release=1.2.3";
    let mut accepted = 0;
    // A flood from one client (one row, 3 occurrences) and the same violation from another.
    for _ in 0..3 {
        accepted += post(
            stack,
            "application/csp-report",
            LEGACY_WRAPPED,
            release,
            "203.0.113.10",
        )
        .await;
    }
    // Another /24: ingest's default privacy truncates IPv4 to the /24, so 203.0.113.11 would be
    // the same client as 203.0.113.10.
    accepted += post(
        stack,
        "application/csp-report",
        LEGACY_WRAPPED,
        release,
        "198.51.100.10",
    )
    .await;
    for (content_type, body) in [
        ("application/json", LEGACY_UNWRAPPED),
        ("application/reports+json", BATCH),
        ("application/csp-report", SAFARI_SINGLE),
        ("application/expect-ct-report+json", EXPECT_CT),
        ("application/json", HPKP),
        ("application/expect-staple-report", EXPECT_STAPLE),
        ("text/plain", XSS),
    ] {
        accepted += post(stack, content_type, body, "", "203.0.113.20").await;
    }
    accepted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_lands_enriched_and_every_query_answers() {
    support::avoid_window_boundary(Duration::from_secs(60)).await;
    let Some(stack) = Stack::start(PROJECTS, &[]).await else {
        return;
    };
    let accepted = post_everything(&stack).await;
    assert_eq!(
        accepted, 21,
        "one extension report of the batch is filtered as noise"
    );
    stack
        .wait_for_occurrences(accepted, Duration::from_secs(60))
        .await;

    check_rows(&stack).await;
    check_queries(&stack).await;
    stack.stop().await;
}

/// The enriched columns of the rows, per kind of report.
async fn check_rows(stack: &Stack) {
    let rows = stack
        .tsv("SELECT count(), sum(occurrences) FROM reports FINAL")
        .await;
    assert_eq!(rows, [["19", "21"]], "the flood of 3 is one row");

    let cart = stack
        .tsv(
            "SELECT client_ip, occurrences, kind, wire, disposition, environment, release, \
             document_origin, document_host, document_path, referrer, blocked_url, blocked_class, \
             blocked_scheme, blocked_host, blocked_domain, blocked_origin, third_party, \
             effective_directive, directive_family, violated_directive, source_file, \
             source_host, line_number, column_number, status_code, policy_hash != 0, \
             ua_family, ua_major, os_family, device_class, message_id != '' \
             FROM reports FINAL WHERE document_path = '/cart' ORDER BY client_ip",
        )
        .await;
    let common = [
        "csp-violation",
        "legacy-csp",
        "enforce",
        "prod",
        "1.2.3",
        "https://shop.example",
        "shop.example",
        "/cart",
        "https://search.example/?q=shoes",
        "https://evil.example/x.js?id=1",
        "url",
        "https",
        "evil.example",
        "evil.example",
        "https://evil.example",
        "1",
        "script-src-elem",
        "script-src",
        "script-src-elem",
        "https://shop.example/app.js?v=3",
        "shop.example",
        "10",
        "5",
        "200",
        "1",
        "Chrome",
        "120",
        "Windows 10",
        "pc",
        "1",
    ];
    for (row, (ip, occurrences)) in cart
        .iter()
        .zip([("198.51.100.0", "1"), ("203.0.113.0", "3")])
    {
        assert_eq!(
            (row[0].as_str(), row[1].as_str()),
            (ip, occurrences),
            "{row:?}"
        );
        assert_eq!(row[2..], common, "{row:?}");
    }
    assert_eq!(cart.len(), 2, "two clients, two rows: {cart:?}");

    // Reporting API: the report's own user agent wins over the request's; registrable domain.
    let batch_csp = stack
        .tsv(
            "SELECT wire, disposition, blocked_domain, third_party, directive_family, ua_family \
             FROM reports FINAL WHERE document_path = '/b'",
        )
        .await;
    assert_eq!(
        batch_csp,
        [[
            "reporting-batch",
            "report",
            "other.example",
            "1",
            "script-src",
            ""
        ]]
    );
    let by_kind = |kind: &str, columns: &str| {
        format!("SELECT {columns} FROM reports FINAL WHERE kind = '{kind}' ORDER BY document_path")
    };
    let nel = stack
        .tsv(&by_kind(
            "network-error",
            "document_host, document_path, nel_phase, nel_type, server_ip, elapsed_ms",
        ))
        .await;
    assert_eq!(
        nel,
        [[
            "api.shop.example",
            "/v1",
            "connection",
            "tcp.timed_out",
            "192.0.2.1",
            "45"
        ]]
    );
    for kind in ["expect-ct", "hpkp", "expect-staple"] {
        let cert = stack.tsv(&by_kind(kind, "cert_hostname, cert_port")).await;
        assert_eq!(cert, [["shop.example", "443"]], "{kind}");
    }
    let safari = stack
        .tsv(
            "SELECT wire, blocked_class, blocked_origin, directive_family FROM reports FINAL \
              WHERE document_path = '/safari'",
        )
        .await;
    assert_eq!(safari, [["reporting-single", "eval", "eval", "script-src"]]);
    let unwrapped = stack
        .tsv(
            "SELECT wire, blocked_origin, directive_family, disposition FROM reports FINAL \
              WHERE document_path = '/unwrapped'",
        )
        .await;
    assert_eq!(
        unwrapped,
        [["legacy-csp-unwrapped", "inline", "style-src", ""]]
    );
    let kinds: Vec<String> = stack
        .tsv("SELECT kind FROM reports FINAL GROUP BY kind ORDER BY kind")
        .await
        .into_iter()
        .map(|row| row[0].clone())
        .collect();
    assert_eq!(
        kinds,
        [
            "coep",
            "coop",
            "crash",
            "csp-violation",
            "deprecation",
            "expect-ct",
            "expect-staple",
            "hpkp",
            "integrity-violation",
            "intervention",
            "network-error",
            "permissions-policy-violation",
            "test",
            "unknown",
            "xss-auditor",
        ]
    );
}

/// Every analyst query, on the data loaded by [`post_everything`], with its expected answer.
async fn check_queries(stack: &Stack) {
    let now = support::unix_now();
    let hour = now - now % 3600;
    let params = |overrides: &[(&'static str, Param<'static>)]| {
        let mut params: Vec<(&'static str, Param<'static>)> = vec![
            ("project_id", Param::UInt(PROJECT)),
            ("since", Param::DateTime(hour - 86_400)),
            ("until", Param::DateTime(hour + 7200)),
            ("hour", Param::DateTime(hour)),
            ("per_directive", Param::UInt(5)),
            ("limit", Param::UInt(20)),
            ("host", Param::Str("")),
            ("min_occurrences", Param::UInt(1)),
            ("min_pages", Param::UInt(1)),
            ("min_networks", Param::UInt(1)),
            ("factor", Param::UInt(2)),
        ];
        params.retain(|(name, _)| !overrides.iter().any(|(o, _)| o == name));
        params.extend_from_slice(overrides);
        params
    };
    let mut answers: BTreeMap<String, Vec<Vec<String>>> = BTreeMap::new();
    for path in query_files() {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let sql = render(&std::fs::read_to_string(&path).unwrap(), &params(&[]));
        answers.insert(name, stack.tsv(&sql).await);
    }
    let run = |name: &str, overrides: &[(&'static str, Param<'static>)]| {
        let path = query_files()
            .into_iter()
            .find(|p| p.file_stem().is_some_and(|s| s == name))
            .unwrap();
        render(&std::fs::read_to_string(path).unwrap(), &params(overrides))
    };
    let answer = |name: &str| answers[name].clone();
    let cells = |rows: &[&[&str]]| -> Vec<Vec<String>> {
        rows.iter()
            .map(|row| row.iter().map(|c| (*c).to_owned()).collect())
            .collect()
    };
    assert!(answers.len() >= 13, "{:?}", answers.keys());

    // 01: evil.example: 3 (flood) + 1 from another client = 2 groups.
    assert_eq!(
        answer("01_top_blocked_origins_per_directive"),
        cells(&[
            &["script-src", "https://evil.example", "4", "2"],
            &["script-src", "eval", "1", "1"],
            &["script-src", "https://cdn.other.example", "1", "1"],
            &["style-src", "inline", "1", "1"],
        ])
    );
    let top_one = stack
        .tsv(&run(
            "01_top_blocked_origins_per_directive",
            &[("per_directive", Param::UInt(1))],
        ))
        .await;
    assert_eq!(
        top_one,
        cells(&[
            &["script-src", "https://evil.example", "4", "2"],
            &["style-src", "inline", "1", "1"]
        ])
    );
    // 02: everything is new since yesterday; nothing is new since the future.
    let new: Vec<(String, String, String)> = answer("02_new_blocked_origins_since")
        .into_iter()
        .map(|r| {
            assert!(r[2] <= r[3], "first <= last sighting: {r:?}");
            (r[0].clone(), r[1].clone(), r[4].clone())
        })
        .collect();
    assert_eq!(new.len(), 4, "{new:?}");
    assert!(new.contains(&(
        "script-src".into(),
        "https://evil.example".into(),
        "4".into()
    )));
    let none = stack
        .tsv(&run(
            "02_new_blocked_origins_since",
            &[("since", Param::DateTime(hour + 7200))],
        ))
        .await;
    assert!(none.is_empty(), "{none:?}");
    // 03: pages with their directives.
    assert_eq!(
        answer("03_violations_by_page"),
        cells(&[
            &["https://shop.example", "/cart", "4", "1", "['script-src']"],
            &["https://shop.example", "/b", "1", "1", "['script-src']"],
            &[
                "https://shop.example",
                "/safari",
                "1",
                "1",
                "['script-src']"
            ],
            &[
                "https://shop.example",
                "/unwrapped",
                "1",
                "1",
                "['style-src']"
            ],
        ])
    );
    // 04: enforce 4 + 1 (Safari), report-only 1 (/b); the unwrapped legacy one has none.
    assert_eq!(
        answer("04_report_only_vs_enforce"),
        cells(&[
            &["script-src", "5", "1", "0", "0.1667"],
            &["style-src", "0", "0", "1", "0"]
        ])
    );
    // 05: the request's Chrome UA, except /b whose report carries its own ("UA/1": unknown).
    assert_eq!(
        answer("05_noise_share_by_browser"),
        cells(&[&["Chrome", "6", "0", "0", "[]"], &["", "1", "0", "0", "[]"]])
    );
    // 06: two policy versions.
    let policies: Vec<(String, String)> = answer("06_policy_versions")
        .into_iter()
        .map(|r| (r[3].clone(), r[4].clone()))
        .collect();
    assert_eq!(
        policies,
        [
            (
                "4".to_owned(),
                r"script-src \'self\'; report-uri /csp".to_owned()
            ),
            ("2".to_owned(), r"script-src \'self\'".to_owned()),
        ]
    );
    // 07: one NEL error, in the connection phase; none for another host.
    assert_eq!(
        answer("07_nel_error_rates_by_phase"),
        cells(&[&["connection", "1", "1", "1", "['tcp.timed_out']"]])
    );
    let other_host = stack
        .tsv(&run(
            "07_nel_error_rates_by_phase",
            &[("host", Param::Str("other.example"))],
        ))
        .await;
    assert!(other_host.is_empty(), "{other_host:?}");
    // 08: one failure of each certificate kind.
    let certs: Vec<Vec<String>> = answer("08_certificate_failures_by_host")
        .into_iter()
        .map(|r| r[..5].to_vec())
        .collect();
    assert_eq!(
        certs,
        cells(&[
            &["shop.example", "443", "expect-ct", "1", "1"],
            &["shop.example", "443", "expect-staple", "1", "1"],
            &["shop.example", "443", "hpkp", "1", "1"],
        ])
    );
    // 09: the two third-party script origins; eval and inline are not allow-list material.
    assert_eq!(
        answer("09_proposed_allowlist"),
        cells(&[&[
            "script-src",
            "['https://cdn.other.example','https://evil.example']",
            "script-src https://cdn.other.example https://evil.example",
            "5",
        ]])
    );
    let strict = stack
        .tsv(&run(
            "09_proposed_allowlist",
            &[("min_occurrences", Param::UInt(2))],
        ))
        .await;
    assert_eq!(
        strict,
        cells(&[&[
            "script-src",
            "['https://evil.example']",
            "script-src https://evil.example",
            "4"
        ]])
    );
    // 10: groups with distinct clients.
    assert_eq!(
        answer("10_top_violation_groups"),
        cells(&[
            &[
                "script-src",
                "https://evil.example",
                "https://shop.example/app.js?v=3",
                "4",
                "1",
                "2"
            ],
            &["script-src", "eval", "", "1", "1", "1"],
            &["script-src", "https://cdn.other.example", "", "1", "1", "1"],
            &["style-src", "inline", "", "1", "1", "1"],
        ])
    );
    // 11: nothing the day before, so every pair spikes this hour; nothing with a high floor.
    assert_eq!(
        answer("11_hourly_spikes"),
        cells(&[
            &["script-src", "https://evil.example", "4", "0", "inf"],
            &["script-src", "eval", "1", "0", "inf"],
            &["script-src", "https://cdn.other.example", "1", "0", "inf"],
            &["style-src", "inline", "1", "0", "inf"],
        ])
    );
    let floor = stack
        .tsv(&run(
            "11_hourly_spikes",
            &[("min_occurrences", Param::UInt(5))],
        ))
        .await;
    assert!(floor.is_empty(), "{floor:?}");
    // 12: three distinct violations from Chrome 120 on Windows, one from an unknown UA.
    assert_eq!(
        answer("12_violations_by_browser"),
        cells(&[
            &["Chrome", "120", "Windows 10", "pc", "6", "3"],
            &["", "", "", "", "1", "1"],
        ])
    );
    // 13: 7 CSP reports in 5 rows; every other kind once.
    let dedup = answer("13_dedup_effectiveness");
    assert_eq!(dedup[0], ["csp-violation", "7", "5", "1.4"]);
    assert_eq!(dedup.len(), 15, "{dedup:?}");
    assert!(
        dedup[1..].iter().all(|r| r[1..] == ["1", "1", "1"]),
        "{dedup:?}"
    );
}
