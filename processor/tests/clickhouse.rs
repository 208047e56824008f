//! Against a REAL ClickHouse (Debian's 18.16, started by the testbed on free ports): migrations
//! are idempotent and recorded, re-emitted rows collapse to exact counts, rollups are exact,
//! retention drops old partitions, and every analyst query in `schemas/sql/queries/` returns the
//! expected answer on a small known data set.
//!
//! Skipped (with `skipping: ...` on stderr) when clickhouse-server is not installed, except in CI.

use std::num::NonZeroU32;
use std::time::Duration;

use processor::migrate::{self, MigrateError, Migration, Outcome};
use processor::row::ReportRow;
use processor::write::{Touched, Writer};
use testbed::clickhouse::{render, ClickHouse, Param};

mod common;

const DATABASE: &str = "palisade_test";
/// 2023-11-15 00:00:00 UTC: the start of the data set's first hour (and of its day).
const H0: u32 = 1_700_006_400;
const HOUR: u32 = 3600;
const DAY0: u16 = (H0 / 86_400) as u16;
const PROJECT: u64 = 7;
const OTHER_PROJECT: u64 = 8;

async fn start() -> Option<(ClickHouse, clickhouse::Client)> {
    let server = ClickHouse::start().await?;
    let client = clickhouse::Client::default()
        .with_url(server.http_url())
        .with_validation(false);
    Some((server, client))
}

fn writer(client: &clickhouse::Client) -> Writer {
    common::writer(client, DATABASE, Duration::from_secs(30))
}

/// Run `sql` in the test database and return the TabSeparated cells, unescaped.
async fn tsv(client: &clickhouse::Client, sql: &str) -> Vec<Vec<String>> {
    testbed::clickhouse::tsv(client, DATABASE, sql)
        .await
        .into_iter()
        .map(|row| {
            row.iter()
                .map(|cell| testbed::clickhouse::unescape_tsv(cell))
                .collect()
        })
        .collect()
}

async fn one(client: &clickhouse::Client, sql: &str) -> String {
    let rows = tsv(client, sql).await;
    assert_eq!(rows.len(), 1, "{sql} -> {rows:?}");
    rows[0].join("\t")
}

/// How the server prints a DateTime (its own time zone), for expectations.
async fn datetime(client: &clickhouse::Client, secs: u32) -> String {
    one(client, &format!("SELECT toString(toDateTime({secs}))")).await
}

fn query_file(name: &str) -> String {
    let path = format!(
        "{}/../schemas/sql/queries/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{path}: {error}"))
}

async fn run_query(
    client: &clickhouse::Client,
    name: &str,
    params: &[(&str, Param<'_>)],
) -> Vec<Vec<String>> {
    tsv(client, &render(&query_file(name), params)).await
}

fn cells(rows: &[&str]) -> Vec<Vec<String>> {
    rows.iter()
        .map(|row| row.split('\t').map(str::to_owned).collect())
        .collect()
}

// --- the data set -------------------------------------------------------------------------

/// A CSP violation row of [`PROJECT`] on `https://shop.example{path}`; tests adjust the rest.
fn csp(row_id: u64, window_start: u32, occurrences: u32, origin: &str, path: &str) -> ReportRow {
    let scheme = origin.split("://").next().unwrap_or_default().to_owned();
    let host = origin.split("://").nth(1).unwrap_or_default().to_owned();
    let is_url = origin.contains("://");
    ReportRow {
        row_id,
        version: u64::from(occurrences),
        project_id: PROJECT,
        day: (window_start / 86_400) as u16,
        window_start,
        first_seen: window_start + 5,
        last_seen: window_start + 50,
        occurrences,
        fingerprint: 1000 + row_id,
        dedup_key: 2000 + row_id,
        message_id: format!("message-{row_id}"),
        kind: "csp-violation".to_owned(),
        wire: "legacy-csp".to_owned(),
        disposition: "enforce".to_owned(),
        document_url: format!("https://shop.example{path}?session=1"),
        document_origin: "https://shop.example".to_owned(),
        document_host: "shop.example".to_owned(),
        document_path: path.to_owned(),
        blocked_url: origin.to_owned(),
        blocked_class: if is_url { "url" } else { origin }.to_owned(),
        blocked_scheme: if is_url { scheme } else { String::new() },
        blocked_host: host.clone(),
        blocked_domain: host,
        blocked_origin: origin.to_owned(),
        third_party: u8::from(is_url),
        effective_directive: "script-src-elem".to_owned(),
        directive_family: "script-src".to_owned(),
        violated_directive: "script-src-elem".to_owned(),
        source_file: "https://shop.example/app.js".to_owned(),
        source_host: "shop.example".to_owned(),
        policy_hash: 111,
        original_policy: "script-src 'self'".to_owned(),
        user_agent: "Mozilla/5.0 Chrome/120.0".to_owned(),
        ua_family: "Chrome".to_owned(),
        ua_major: "120".to_owned(),
        os_family: "Windows 10".to_owned(),
        device_class: "pc".to_owned(),
        client_ip: "10.0.0.1".to_owned(),
        ..ReportRow::default()
    }
}

fn nel(row_id: u64, phase: &str, kind: &str, occurrences: u32) -> ReportRow {
    ReportRow {
        kind: "network-error".to_owned(),
        wire: "reporting-batch".to_owned(),
        disposition: String::new(),
        blocked_url: String::new(),
        blocked_class: "none".to_owned(),
        blocked_scheme: String::new(),
        blocked_host: String::new(),
        blocked_domain: String::new(),
        blocked_origin: String::new(),
        third_party: 0,
        effective_directive: String::new(),
        directive_family: String::new(),
        violated_directive: String::new(),
        policy_hash: 0,
        original_policy: String::new(),
        nel_phase: phase.to_owned(),
        nel_type: kind.to_owned(),
        server_ip: "192.0.2.1".to_owned(),
        elapsed_ms: 120,
        ..csp(row_id, H0 + 60, occurrences, "", "/")
    }
}

fn certificate(row_id: u64, kind: &str, occurrences: u32, client_ip: &str) -> ReportRow {
    ReportRow {
        kind: kind.to_owned(),
        cert_hostname: "shop.example".to_owned(),
        cert_port: 443,
        client_ip: client_ip.to_owned(),
        ..nel(row_id, "", "", occurrences)
    }
}

/// The known data set, as the processor would emit it (final counts), plus, for project 7, a
/// CSP row 40 days old. Expected answers are derived by hand in the tests.
fn data_set() -> Vec<ReportRow> {
    let cdn = "https://cdn.other.example";
    vec![
        // Hour 0, policy 111.
        csp(1, H0 + 60, 5, cdn, "/checkout"),
        ReportRow {
            client_ip: "10.0.0.2".to_owned(),
            ua_family: "Firefox".to_owned(),
            ua_major: "121".to_owned(),
            os_family: "Linux".to_owned(),
            fingerprint: 1001, // the same violation as row 1, another client
            ..csp(2, H0 + 120, 2, cdn, "/cart")
        },
        ReportRow {
            third_party: 0,
            ..csp(4, H0 + 240, 4, "inline", "/checkout")
        },
        ReportRow {
            noise: "noise_scheme".to_owned(),
            third_party: 0,
            ..csp(5, H0 + 300, 10, "chrome-extension", "/checkout")
        },
        // Hour 1: the policy changed to 222; a style-src report-only block and a spike.
        ReportRow {
            disposition: "report".to_owned(),
            effective_directive: "style-src-elem".to_owned(),
            directive_family: "style-src".to_owned(),
            violated_directive: "style-src-elem".to_owned(),
            policy_hash: 222,
            original_policy: "script-src 'self'; style-src 'self'".to_owned(),
            ..csp(
                3,
                H0 + HOUR + 180,
                1,
                "https://fonts.other.example",
                "/checkout",
            )
        },
        ReportRow {
            client_ip: "10.0.0.4".to_owned(),
            fingerprint: 1001,
            policy_hash: 222,
            original_policy: "script-src 'self'; style-src 'self'".to_owned(),
            ..csp(13, H0 + HOUR, 30, cdn, "/checkout")
        },
        // NEL and certificate failures.
        nel(6, "dns", "dns.name_not_resolved", 3),
        nel(7, "application", "ok", 6),
        nel(8, "application", "http.error", 2),
        certificate(9, "expect-ct", 2, "10.0.0.1"),
        certificate(10, "hpkp", 1, "10.0.0.3"),
        // Another project: must never show up in project 7's answers.
        ReportRow {
            project_id: OTHER_PROJECT,
            ..csp(11, H0 + 60, 100, cdn, "/checkout")
        },
        // 40 days old, seen before the range of the queries.
        csp(12, H0 - 40 * 86_400, 7, "https://old.example", "/checkout"),
    ]
}

fn touched(rows: &[ReportRow]) -> Touched {
    Touched::from_rows(rows)
}

// --- tests --------------------------------------------------------------------------------

#[tokio::test]
async fn migrations_are_idempotent_recorded_and_gated() {
    let Some((_server, client)) = start().await else {
        return;
    };
    let first = migrate::migrate(&client, DATABASE).await.expect("migrates");
    let outcomes: Vec<(u32, Outcome)> = first.iter().map(|a| (a.version, a.outcome)).collect();
    let gate = migrate::ServerVersion {
        major: 21,
        minor: 8,
    };
    assert_eq!(
        outcomes,
        vec![
            (1, Outcome::Applied),
            (2, Outcome::Applied),
            (3, Outcome::Skipped { requires: gate }),
            (4, Outcome::Applied),
            (5, Outcome::Applied),
            (6, Outcome::Applied),
            (7, Outcome::Applied),
            (8, Outcome::Applied),
        ]
    );
    let second = migrate::migrate(&client, DATABASE).await.expect("re-runs");
    let outcomes: Vec<(u32, Outcome)> = second.iter().map(|a| (a.version, a.outcome)).collect();
    assert_eq!(
        outcomes,
        vec![
            (1, Outcome::AlreadyApplied),
            (2, Outcome::AlreadyApplied),
            (3, Outcome::Skipped { requires: gate }),
            (4, Outcome::AlreadyApplied),
            (5, Outcome::AlreadyApplied),
            (6, Outcome::AlreadyApplied),
            (7, Outcome::AlreadyApplied),
            (8, Outcome::AlreadyApplied),
        ]
    );
    // Recorded once each, with the embedded checksums; the skipped one is recorded as such.
    let recorded = tsv(
        &client,
        "SELECT version, name, checksum, status FROM schema_migrations ORDER BY version",
    )
    .await;
    let expected: Vec<Vec<String>> = migrate::MIGRATIONS
        .iter()
        .map(|m| {
            let status = if m.version == 3 { "skipped" } else { "applied" };
            vec![
                m.version.to_string(),
                m.name.to_owned(),
                migrate::checksum(m.sql),
                status.to_owned(),
            ]
        })
        .collect();
    assert_eq!(recorded, expected);
    let tables = tsv(
        &client,
        &format!("SELECT name FROM system.tables WHERE database = '{DATABASE}' ORDER BY name"),
    )
    .await;
    assert_eq!(
        tables,
        cells(&[
            "alert_deliveries",
            "alert_settings",
            "alerts",
            "api_audit",
            "api_keys",
            "api_projects",
            "api_tokens",
            "processor_checkpoints",
            "project_storage",
            "reports",
            "resolutions",
            "rollup_hourly",
            "rollup_nel_hourly",
            "rollup_policy_hourly",
            "schema_migrations",
            "violation_mutes"
        ])
    );

    // Editing an applied migration is refused.
    let edited = [Migration {
        sql: "CREATE TABLE IF NOT EXISTS reports (x UInt8) ENGINE = Log;",
        ..migrate::MIGRATIONS[0]
    }];
    let error = migrate::migrate_with(&client, DATABASE, &edited)
        .await
        .expect_err("checksum mismatch");
    assert!(
        matches!(error, MigrateError::ChecksumMismatch { version: 1, .. }),
        "{error:?}"
    );

    // A gate the server satisfies applies; a failing statement is not recorded and is retried.
    let extra = [
        Migration {
            version: 10,
            name: "gated_ok",
            sql: "-- requires: 1.1\nCREATE TABLE IF NOT EXISTS gated (x UInt8) ENGINE = Log;",
        },
        Migration {
            version: 11,
            name: "broken",
            sql: "CREATE TABLE IF NOT EXISTS broken (x UInt8) ENGINE = Log;\nSELEC 1;",
        },
    ];
    let error = migrate::migrate_with(&client, DATABASE, &extra)
        .await
        .expect_err("statement 1 of migration 11 fails");
    assert!(
        matches!(
            error,
            MigrateError::Statement {
                version: 11,
                index: 1,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(
        one(&client, "SELECT groupArray(version) FROM (SELECT version FROM schema_migrations WHERE version >= 10 ORDER BY version)").await,
        "[10]"
    );

    let error = migrate::migrate(&client, "bad-name; DROP")
        .await
        .expect_err("invalid name");
    assert!(matches!(error, MigrateError::InvalidDatabaseName(_)));
}

#[tokio::test]
async fn rows_rollups_and_every_query_are_exact() {
    let Some((_server, client)) = start().await else {
        return;
    };
    migrate::migrate(&client, DATABASE).await.expect("migrates");
    let writer = writer(&client);
    let rows = data_set();

    // The row type round-trips through the real table: names, order and types match.
    let probe = ReportRow {
        row_id: 99,
        project_id: 99,
        line_number: 12,
        column_number: 800_000,
        status_code: 200,
        cert_port: 8443,
        elapsed_ms: 7,
        country: "DE".to_owned(),
        details: r#"{"type":"none"}"#.to_owned(),
        sample: "alert(1)".to_owned(),
        ..csp(99, H0, 1, "https://x.example", "/")
    };
    writer
        .insert_rows(std::slice::from_ref(&probe))
        .await
        .expect("probe inserted");
    let back: Vec<ReportRow> = client
        .clone()
        .with_database(DATABASE)
        .query("SELECT ?fields FROM reports WHERE project_id = 99")
        .fetch_all()
        .await
        .expect("probe read back");
    assert_eq!(back, vec![probe]);

    // Merges stay off until the duplicates have been counted, so the count is deterministic.
    tsv(&client, "SYSTEM STOP MERGES").await;
    // Redelivery: a partial count first (a window re-emitted before it was complete), then the
    // whole batch, then the whole batch again (a retried insert after a lost acknowledgement).
    let partial = ReportRow {
        version: 2,
        occurrences: 2,
        ..rows[0].clone()
    };
    let inserted = writer
        .insert_rows(std::slice::from_ref(&partial))
        .await
        .expect("partial inserted");
    assert_eq!((inserted.rows, inserted.rejected.len()), (1, 0));
    writer
        .refresh_rollups(&touched(&[partial]))
        .await
        .expect("refresh");
    assert_eq!(
        one(
            &client,
            "SELECT sum(occurrences) FROM rollup_hourly FINAL WHERE project_id = 7"
        )
        .await,
        "2"
    );
    for _ in 0..2 {
        let inserted = writer.insert_rows(&rows).await.expect("batch inserted");
        assert_eq!((inserted.rows, inserted.rejected.len()), (rows.len(), 0));
        let statements = writer
            .refresh_rollups(&touched(&rows))
            .await
            .expect("refresh");
        // 4 (project, hour) groups (7: two recent hours and the old one; 8: one hour),
        // 2 per statement, 3 rollup tables.
        assert_eq!(statements, 6);
    }

    // Duplicates are really stored (1 partial + 2 x 12 rows, unmerged) ...
    assert_eq!(
        one(&client, "SELECT count() FROM reports WHERE project_id = 7").await,
        "25"
    );
    // ... yet FINAL counts each (dedup key, window) once, with its fullest count.
    let exact = "SELECT count(), sum(occurrences) FROM reports FINAL WHERE project_id = 7";
    assert_eq!(one(&client, exact).await, "12\t73");
    assert_eq!(
        one(
            &client,
            "SELECT occurrences FROM reports FINAL WHERE row_id = 1"
        )
        .await,
        "5"
    );
    // Rollups are exact too, and agree with the rows they were computed from.
    let rollup = "SELECT sum(rows), sum(occurrences) FROM rollup_hourly FINAL WHERE project_id = 7";
    assert_eq!(one(&client, rollup).await, "12\t73");
    assert_eq!(
        one(
            &client,
            "SELECT sum(rows), sum(occurrences) FROM rollup_nel_hourly FINAL WHERE project_id = 7"
        )
        .await,
        "3\t11"
    );
    assert_eq!(
        one(&client, "SELECT sum(occurrences) FROM rollup_policy_hourly FINAL WHERE project_id = 7 AND policy_hash = 222").await,
        "31"
    );
    // A late, stale recomputation (a concurrent processor that read `reports` before the last
    // insert: only row 1 of its group) loses to the fuller one, whatever the write order.
    tsv(
        &client,
        &format!(
            "INSERT INTO rollup_hourly (project_id, day, hour, kind, disposition, \
             directive_family, blocked_origin, noise, third_party, rows, occurrences, first_seen, \
             last_seen) VALUES ({PROJECT}, toDate({DAY0}), toDateTime({H0}), 'csp-violation', \
             'enforce', 'script-src', 'https://cdn.other.example', '', 1, 1, 5, \
             toDateTime({}), toDateTime({}))",
            H0 + 65,
            H0 + 110
        ),
    )
    .await;
    assert_eq!(one(&client, rollup).await, "12\t73");

    // After the merge, plain counts agree with FINAL.
    tsv(&client, "SYSTEM START MERGES").await;
    for table in processor::write::RETAINED_TABLES {
        tsv(&client, &format!("OPTIMIZE TABLE {table} FINAL")).await;
    }
    assert_eq!(
        one(
            &client,
            "SELECT count(), sum(occurrences) FROM reports WHERE project_id = 7"
        )
        .await,
        "12\t73"
    );
    assert_eq!(
        one(
            &client,
            "SELECT sum(rows), sum(occurrences) FROM rollup_hourly WHERE project_id = 7"
        )
        .await,
        "12\t73"
    );

    check_queries(&client).await;
    check_allowlist_cannot_be_poisoned(&client, &writer).await;
}

/// Regression (issue 10 item 13): the sentry_key is public, so one sender can forge any number
/// of occurrences on any pages; the proposed allow-list needs distinct client networks too.
/// One sender (two addresses of one /24, 900 occurrences on 6 pages) is not proposed; an origin
/// blocked for three networks (two IPv4 /24s, one IPv6 /48) with 3 occurrences is, and so is
/// one seen by three hashed clients. A dropped client (empty) counts as no network.
async fn check_allowlist_cannot_be_poisoned(client: &clickhouse::Client, writer: &Writer) {
    use Param::{DateTime, UInt};
    const PROJECT9: u64 = 9;
    let row = |id: u64, origin: &str, path: &str, occurrences: u32, client_ip: &str| ReportRow {
        project_id: PROJECT9,
        client_ip: client_ip.to_owned(),
        ..csp(id, H0 + 60, occurrences, origin, path)
    };
    let (poison, spread, hashed, dropped) = (
        "https://poison.example",
        "https://spread.example",
        "https://hashed.example",
        "https://dropped.example",
    );
    let mut rows: Vec<ReportRow> = (0..6)
        .map(|i| {
            let ip = if i % 2 == 0 {
                "203.0.113.7"
            } else {
                "203.0.113.200"
            };
            row(900 + i, poison, &format!("/page{i}"), 150, ip)
        })
        .collect();
    rows.push(row(910, spread, "/a", 1, "198.51.100.23"));
    rows.push(row(911, spread, "/a", 1, "192.0.2.0"));
    rows.push(row(912, spread, "/b", 1, "2001:db8:1:2::5"));
    rows.push(row(913, spread, "/b", 1, "2001:db8:1:ffff::9"));
    for (i, digest) in ["a1b2", "c3d4", "e5f6"].into_iter().enumerate() {
        rows.push(row(920 + i as u64, hashed, "/a", 1, digest));
    }
    for i in 0..5 {
        rows.push(row(930 + i, dropped, "/a", 10, ""));
    }
    writer
        .insert_rows(&rows)
        .await
        .expect("poison rows inserted");
    let params = [
        ("project_id", UInt(PROJECT9)),
        ("since", DateTime(H0.into())),
        ("until", DateTime((H0 + 2 * HOUR).into())),
        ("min_occurrences", UInt(3)),
        ("min_pages", UInt(1)),
        ("min_networks", UInt(3)),
    ];
    let proposals = run_query(client, "09_proposed_allowlist.sql", &params).await;
    assert_eq!(
        proposals,
        cells(&[
            "script-src\t['https://hashed.example','https://spread.example']\tscript-src https://hashed.example https://spread.example\t7"
        ]),
        "one sender's 900 occurrences are not a proposal"
    );
}

async fn check_queries(client: &clickhouse::Client) {
    use Param::{DateTime, Str, UInt};
    let range = [
        ("project_id", UInt(PROJECT)),
        ("since", DateTime(H0.into())),
        ("until", DateTime((H0 + 2 * HOUR).into())),
    ];
    let with = |extra: &[(&'static str, Param<'static>)]| {
        let mut params = range.to_vec();
        params.extend_from_slice(extra);
        params
    };
    let cdn = "https://cdn.other.example";

    let top = run_query(
        client,
        "01_top_blocked_origins_per_directive.sql",
        &with(&[("per_directive", UInt(1))]),
    )
    .await;
    assert_eq!(
        top,
        cells(&[
            "script-src\thttps://cdn.other.example\t37\t3",
            "style-src\thttps://fonts.other.example\t1\t1",
        ])
    );

    let new = run_query(
        client,
        "02_new_blocked_origins_since.sql",
        &[
            ("project_id", UInt(PROJECT)),
            ("since", DateTime(H0.into())),
        ],
    )
    .await;
    let expected = vec![
        vec![
            "script-src".to_owned(),
            cdn.to_owned(),
            datetime(client, H0 + 65).await,
            datetime(client, H0 + HOUR + 50).await,
            "37".to_owned(),
        ],
        vec![
            "script-src".to_owned(),
            "inline".to_owned(),
            datetime(client, H0 + 245).await,
            datetime(client, H0 + 290).await,
            "4".to_owned(),
        ],
        vec![
            "style-src".to_owned(),
            "https://fonts.other.example".to_owned(),
            datetime(client, H0 + HOUR + 185).await,
            datetime(client, H0 + HOUR + 230).await,
            "1".to_owned(),
        ],
    ];
    // https://old.example was first seen 40 days earlier: not new.
    assert_eq!(new, expected);

    let pages = run_query(
        client,
        "03_violations_by_page.sql",
        &with(&[("limit", UInt(10))]),
    )
    .await;
    assert_eq!(
        pages,
        cells(&[
            "https://shop.example\t/checkout\t40\t3\t['script-src','style-src']",
            "https://shop.example\t/cart\t2\t1\t['script-src']",
        ])
    );

    let dispositions = run_query(client, "04_report_only_vs_enforce.sql", &range).await;
    assert_eq!(
        dispositions,
        cells(&["script-src\t41\t0\t0\t0", "style-src\t0\t1\t0\t1"])
    );

    let noise = run_query(client, "05_noise_share_by_browser.sql", &range).await;
    assert_eq!(
        noise,
        cells(&[
            "Chrome\t50\t10\t0.2\t['noise_scheme']",
            "Firefox\t2\t0\t0\t[]"
        ])
    );

    let policies = run_query(client, "06_policy_versions.sql", &range).await;
    let expected = vec![
        vec![
            "111".to_owned(),
            datetime(client, H0 + 65).await,
            datetime(client, H0 + 350).await,
            "21".to_owned(),
            "script-src 'self'".to_owned(),
        ],
        vec![
            "222".to_owned(),
            datetime(client, H0 + HOUR + 5).await,
            datetime(client, H0 + HOUR + 230).await,
            "31".to_owned(),
            "script-src 'self'; style-src 'self'".to_owned(),
        ],
    ];
    assert_eq!(policies, expected);

    let nel = run_query(
        client,
        "07_nel_error_rates_by_phase.sql",
        &with(&[("host", Str(""))]),
    )
    .await;
    assert_eq!(
        nel,
        cells(&[
            "application\t2\t8\t0.25\t['http.error']",
            "dns\t3\t3\t1\t['dns.name_not_resolved']",
        ])
    );
    let other_host = run_query(
        client,
        "07_nel_error_rates_by_phase.sql",
        &with(&[("host", Str("o'ther.example"))]),
    )
    .await;
    assert!(other_host.is_empty(), "{other_host:?}");

    let certificates = run_query(client, "08_certificate_failures_by_host.sql", &range).await;
    let first = datetime(client, H0 + 65).await;
    let last = datetime(client, H0 + 110).await;
    assert_eq!(
        certificates,
        cells(&[
            &format!("shop.example\t443\texpect-ct\t2\t1\t{first}\t{last}"),
            &format!("shop.example\t443\thpkp\t1\t1\t{first}\t{last}"),
        ])
    );

    let allow = |min_pages| {
        with(&[
            ("min_occurrences", UInt(1)),
            ("min_pages", UInt(min_pages)),
            ("min_networks", UInt(1)),
        ])
    };
    let proposals = run_query(client, "09_proposed_allowlist.sql", &allow(1)).await;
    assert_eq!(
        proposals,
        cells(&[
            "script-src\t['https://cdn.other.example']\tscript-src https://cdn.other.example\t37",
            "style-src\t['https://fonts.other.example']\tstyle-src https://fonts.other.example\t1",
        ])
    );
    // fonts.other.example was blocked on one page only.
    let proposals = run_query(client, "09_proposed_allowlist.sql", &allow(2)).await;
    assert_eq!(
        proposals,
        cells(&[
            "script-src\t['https://cdn.other.example']\tscript-src https://cdn.other.example\t37"
        ])
    );

    let groups = run_query(
        client,
        "10_top_violation_groups.sql",
        &with(&[("limit", UInt(2))]),
    )
    .await;
    assert_eq!(
        groups,
        cells(&[
            "script-src\thttps://cdn.other.example\thttps://shop.example/app.js\t37\t2\t3",
            "script-src\tinline\thttps://shop.example/app.js\t4\t1\t1",
        ])
    );

    let spikes = run_query(
        client,
        "11_hourly_spikes.sql",
        &[
            ("project_id", UInt(PROJECT)),
            ("hour", DateTime((H0 + HOUR).into())),
            ("min_occurrences", UInt(5)),
            ("factor", UInt(2)),
        ],
    )
    .await;
    assert_eq!(spikes.len(), 1, "{spikes:?}");
    assert_eq!(spikes[0][..3], ["script-src", cdn, "30"]);
    let baseline: f64 = spikes[0][3].parse().expect("float");
    let ratio: f64 = spikes[0][4].parse().expect("float");
    assert!((baseline - 7.0 / 24.0).abs() < 1e-9, "{baseline}");
    assert!((ratio - 30.0 / (7.0 / 24.0)).abs() < 1e-6, "{ratio}");

    let browsers = run_query(
        client,
        "12_violations_by_browser.sql",
        &with(&[("limit", UInt(10))]),
    )
    .await;
    assert_eq!(
        browsers,
        cells(&[
            "Chrome\t120\tWindows 10\tpc\t40\t3",
            "Firefox\t121\tLinux\tpc\t2\t1"
        ])
    );

    let dedup = run_query(client, "13_dedup_effectiveness.sql", &range).await;
    assert_eq!(
        dedup,
        cells(&[
            "csp-violation\t52\t6\t8.67",
            "network-error\t11\t3\t3.67",
            "expect-ct\t2\t1\t2",
            "hpkp\t1\t1\t1",
        ])
    );

    // Every query file is covered above.
    let dir = format!("{}/../schemas/sql/queries", env!("CARGO_MANIFEST_DIR"));
    let files = std::fs::read_dir(&dir).expect("queries dir").count();
    assert_eq!(files, 13, "a new query file needs an assertion here");
}

#[tokio::test]
async fn retention_drops_old_partitions_and_deletes_per_project() {
    let Some((_server, client)) = start().await else {
        return;
    };
    migrate::migrate(&client, DATABASE).await.expect("migrates");
    let writer = writer(&client);
    let day = 86_400;
    let rows = vec![
        csp(1, H0 - 40 * day, 1, "https://a.example", "/"),
        csp(2, H0 - 10 * day, 1, "https://a.example", "/"),
        ReportRow {
            project_id: OTHER_PROJECT,
            ..csp(3, H0 - 10 * day, 1, "https://a.example", "/")
        },
        csp(4, H0, 1, "https://a.example", "/"),
    ];
    writer.insert_rows(&rows).await.expect("inserted");
    writer
        .refresh_rollups(&touched(&rows))
        .await
        .expect("refreshed");

    let retention = NonZeroU32::new(30).expect("non-zero");
    let dropped = writer
        .drop_expired_partitions(retention, DAY0)
        .await
        .expect("dropped");
    let mut tables: Vec<&str> = dropped.iter().map(|p| p.table.as_str()).collect();
    tables.sort_unstable();
    // No NEL rows, so rollup_nel_hourly has no partition to drop.
    assert_eq!(tables, ["reports", "rollup_hourly", "rollup_policy_hourly"]);
    assert!(
        dropped.iter().all(|p| p.max_day == DAY0 - 40),
        "{dropped:?}"
    );
    assert_eq!(
        one(
            &client,
            "SELECT groupArray(row_id) FROM (SELECT row_id FROM reports FINAL ORDER BY row_id)"
        )
        .await,
        "[2,3,4]"
    );
    assert_eq!(
        one(&client, "SELECT sum(occurrences) FROM rollup_hourly FINAL").await,
        "3"
    );
    // Idempotent: nothing left to drop.
    let again = writer
        .drop_expired_partitions(retention, DAY0)
        .await
        .expect("nothing to drop");
    assert!(again.is_empty(), "{again:?}");

    // Project 7 keeps 5 days: its 10-day-old rows go, project 8's stay.
    writer
        .delete_project_before(PROJECT, DAY0 - 5)
        .await
        .expect("mutations submitted");
    let mut done = false;
    for _ in 0..100 {
        let pending = one(
            &client,
            &format!("SELECT count() FROM system.mutations WHERE database = '{DATABASE}' AND is_done = 0"),
        )
        .await;
        if pending == "0" {
            done = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(done, "mutations did not finish");
    assert_eq!(
        one(
            &client,
            "SELECT groupArray(row_id) FROM (SELECT row_id FROM reports FINAL ORDER BY row_id)"
        )
        .await,
        "[3,4]"
    );
    assert_eq!(
        one(&client, "SELECT groupArray(project_id) FROM (SELECT project_id FROM rollup_hourly FINAL ORDER BY project_id)").await,
        "[7,8]"
    );
}

#[tokio::test]
async fn write_errors_are_classified_for_the_caller() {
    use processor::write::ErrorClass;
    let rows = vec![csp(1, H0, 1, "https://a.example", "/")];

    // Nothing listens: a server that is down is transient, retried up to max_attempts.
    let port = testbed::free_port().expect("free port");
    let down = clickhouse::Client::default().with_url(format!("http://127.0.0.1:{port}"));
    let error = writer(&down)
        .insert_rows(&rows)
        .await
        .expect_err("nobody listens");
    assert_eq!(error.class(), ErrorClass::Transient, "{error:?}");
    assert!(
        matches!(
            error,
            processor::write::WriteError::ClickHouse { attempts: 3, .. }
        ),
        "{error:?}"
    );

    let Some((_server, client)) = start().await else {
        return;
    };
    // Not migrated: an unknown table is the deployment's fault, never the data's, and is not
    // retried.
    client
        .clone()
        .with_database("system")
        .query_raw("CREATE DATABASE palisade_test")
        .execute()
        .await
        .expect("database created");
    let error = writer(&client)
        .insert_rows(&rows)
        .await
        .expect_err("no reports table");
    assert_eq!(error.class(), ErrorClass::Misconfigured, "{error:?}");
    assert!(
        matches!(
            error,
            processor::write::WriteError::ClickHouse { attempts: 1, .. }
        ),
        "{error:?}"
    );
}
