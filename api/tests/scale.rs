//! A measurement, not a check (ignored by default; no timing is asserted): the API's main reads
//! over 1,000,000 report rows of one project in 10,000 groups on the local ClickHouse 18.16.
//!
//! `cargo test -p palisade-api --test scale -- --ignored --nocapture`
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Instant;

use common::{migrate, scalar, unix_now, Api, ADMIN_TOKEN, DATABASE};
use reqwest::{Method, StatusCode};
use testbed::clickhouse::ClickHouse;

const ROWS: u64 = 1_000_000;
const GROUPS: u64 = 10_000;
const PER_GROUP: u64 = ROWS / GROUPS;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run with --ignored --nocapture"]
async fn reads_over_a_million_rows() {
    let Some(server) = ClickHouse::start().await else {
        return;
    };
    migrate(&server).await;
    let now = unix_now();
    let base = now - 86_400;
    let started = Instant::now();
    // Group k = rows 100k..100k+99: 100 rows over about 8 seconds of windows (groups are
    // localized in time, as real ones mostly are), from many /24s (client = a hash of the row
    // number), 1-3 occurrences per row; the whole set spans about 23 hours.
    server
        .query(&format!(
            "INSERT INTO {DATABASE}.reports (row_id, version, project_id, day, window_start, \
             first_seen, last_seen, occurrences, fingerprint, kind, disposition, document_url, \
             document_origin, document_host, document_path, blocked_url, blocked_class, \
             blocked_origin, effective_directive, client_ip, original_policy, policy_hash) \
             SELECT number, 1 + number % 3, 1, toDate(toDateTime({base} + intDiv(number, 12))), \
             toDateTime({base} + intDiv(intDiv(number, 12), 60) * 60), \
             toDateTime({base} + intDiv(intDiv(number, 12), 60) * 60), \
             toDateTime({base} + intDiv(intDiv(number, 12), 60) * 60 + 30), 1 + number % 3, \
             intDiv(number, {PER_GROUP}), 'csp-violation', 'enforce', \
             concat('https://shop.example/p', toString(number % 100)), 'https://shop.example', \
             'shop.example', concat('/p', toString(number % 100)), \
             concat('https://cdn', toString(intDiv(number, {PER_GROUP})), '.example/x.js'), 'url', \
             concat('https://cdn', toString(intDiv(number, {PER_GROUP})), '.example'), 'script-src-elem', \
             IPv4NumToString(toUInt32(intHash32(number))), \
             'default-src ''self''; script-src ''self''', cityHash64('default-src ''self''; script-src ''self''') \
             FROM system.numbers LIMIT {ROWS}"
        ))
        .unwrap();
    let inserted = scalar(&server, "SELECT count() FROM {db}.reports").await;
    println!("inserted {inserted} rows in {:?}", started.elapsed());

    // The same group aggregate two exact ways, straight to ClickHouse: FINAL (what the API
    // does) and argMax per row_id without FINAL (an alternative for the next session).
    for (how, sql) in [
        (
            "FINAL",
            "SELECT fingerprint, sum(occurrences) AS o, max(last_seen) AS l, \
             uniqExact(document_origin, document_path), uniqExact(client_ip) \
             FROM {db}.reports FINAL WHERE project_id = 1 \
             GROUP BY fingerprint ORDER BY l DESC, fingerprint DESC LIMIT 51 FORMAT Null",
        ),
        (
            "argMax",
            "SELECT fingerprint, sum(o) AS total, max(l) AS last, uniqExact(p), uniqExact(c) \
             FROM (SELECT row_id, any(fingerprint) AS fingerprint, \
             argMax(occurrences, version) AS o, argMax(last_seen, version) AS l, \
             any(document_path) AS p, any(client_ip) AS c \
             FROM {db}.reports WHERE project_id = 1 GROUP BY row_id) \
             GROUP BY fingerprint ORDER BY last DESC, fingerprint DESC LIMIT 51 FORMAT Null",
        ),
    ] {
        let started = Instant::now();
        server.query(&sql.replace("{db}", DATABASE)).unwrap();
        println!("raw group aggregate ({how}): {:?}", started.elapsed());
    }

    let api = Api::start(&server, &[]).await;
    let timed = |path: String| {
        let api = &api;
        async move {
            let started = Instant::now();
            let (status, body) = api.call(Method::GET, &path, Some(ADMIN_TOKEN)).await;
            let elapsed = started.elapsed();
            assert_eq!(status, StatusCode::OK, "{path}: {body}");
            println!("GET {path}: {elapsed:?}");
            body
        }
    };
    let first = timed("/v1/projects/1/violations?limit=50".to_owned()).await;
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    timed(format!(
        "/v1/projects/1/violations?limit=50&cursor={cursor}"
    ))
    .await;
    timed("/v1/projects/1/violations?limit=50&q=cdn77.example".to_owned()).await;
    let fingerprint = first["groups"][0]["fingerprint"]
        .as_str()
        .unwrap()
        .to_owned();
    timed(format!("/v1/projects/1/violations/{fingerprint}")).await;
    timed(format!(
        "/v1/projects/1/violations/{fingerprint}/resolution"
    ))
    .await;
    let proposed = timed("/v1/projects/1/policy/proposed".to_owned()).await;
    println!(
        "proposed policy: {} resolutions included, {} bytes",
        proposed["included"].as_array().unwrap().len(),
        proposed["value"].as_str().unwrap().len()
    );
    api.stop().await;
}
