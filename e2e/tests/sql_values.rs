//! SQL-looking and hostile values end to end: HTTP -> ingest -> tansu -> processor ->
//! ClickHouse 18.16, every component real (e2e `support::Stack`).
//!
//! Every free-text field of a report (document URL, referrer, violated directive, source file,
//! sample, policy, unknown keys and their values, environment, release, user agent) holds a
//! hostile value: SQL injection attempts, quotes and backslashes, `{name:String}` placeholders,
//! backticks, tabs and newlines, NULs, 4-byte UTF-8, bidi controls, and values up to the
//! limits. ClickHouse is written with RowBinary only, so the values must come back
//! byte-for-byte (after the documented truncations: environment and release 200 bytes, the
//! request `User-Agent` 512 bytes) when read with typed queries, the tables must be intact, and
//! `palisade-processor recent` (its CLI parsing and its code, in-process) must print them
//! without breaking its table or TSV format.
//!
//! Skipped (with `skipping: ...` on stderr) when tansu or ClickHouse is missing, except in CI.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use processor::ReportRow;
use support::{Stack, DATABASE};
use testbed::clickhouse::{render, Param};

const KEY: &str = "shop-key";
const PROJECT: u64 = 1;

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

/// Longest `sentry_environment`/`sentry_release` kept by ingest, in bytes (`auth::MAX_TAG_LEN`).
const MAX_TAG_BYTES: usize = 200;
/// Longest request `User-Agent` kept by ingest, in bytes (`routes::MAX_USER_AGENT_LEN`).
const MAX_USER_AGENT_BYTES: usize = 512;
/// librdkafka's default `message.max.bytes`, which ingest's producer keeps.
const KAFKA_MESSAGE_MAX_BYTES: usize = 1_000_000;
/// ingest's default `--max-body-bytes`.
const MAX_BODY_BYTES: usize = 1_048_576;

/// The hostile values, one report each.
fn hostile_values() -> Vec<(&'static str, String)> {
    vec![
        ("drop table", "'); DROP TABLE reports; --".to_owned()),
        ("or 1=1", r"\' OR 1=1 -- ".to_owned()),
        ("quotes", r#"'' " "" \" ''' a'b"#.to_owned()),
        (
            "backslashes",
            r"C:\path\to\x \\ \n \t \0 \' \\\' \".to_owned(),
        ),
        (
            "placeholders",
            "{name:String} {project:UInt64} ? ?fields $1 :name @p %s {{x}}".to_owned(),
        ),
        (
            "backticks",
            "`reports`; SELECT * FROM `system`.`tables`".to_owned(),
        ),
        (
            "tab and newline",
            "a\tb\nc\r\nd\u{b}e\u{c}f\u{7f}".to_owned(),
        ),
        ("nul", "a\u{0}b\u{0}\u{0}'\u{0}".to_owned()),
        ("emoji", "😀 𝄞 𠜎 🏳️‍🌈 é ﬁ".to_owned()),
        (
            "bidi",
            "\u{202E}gnp.exe\u{202C} \u{200F}\u{200E}\u{2066}x\u{2069} \u{FEFF}".to_owned(),
        ),
        (
            "format in sql",
            "' || (SELECT version()) || ' FORMAT TabSeparated; INSERT INTO reports".to_owned(),
        ),
        // In every field at once: about 500 KB of JSON, half the body limit.
        ("long", "'\\`😀\u{0}\t".repeat(3_000)),
    ]
}

/// A legacy CSP report whose every free-text field is `value`; the document path is unique.
fn report(i: usize, value: &str) -> serde_json::Value {
    let mut inner = serde_json::json!({
        "document-uri": document(i, value),
        "referrer": value,
        "blocked-uri": "https://evil.example/x.js",
        "violated-directive": value,
        "effective-directive": "script-src-elem",
        "source-file": value,
        "script-sample": value,
        "original-policy": value,
        "disposition": "enforce",
        "x-hostile": value,
    });
    // The value as a key too: unknown keys are kept in `details`.
    inner[value] = serde_json::Value::String(value.to_owned());
    serde_json::json!({ "csp-report": inner })
}

fn document(i: usize, value: &str) -> String {
    format!("https://shop.example/sql/{i}/{value}?v={value}#{value}")
}

/// The longest report: one sample as large as a Kafka message allows.
fn long_report(sample: &str) -> serde_json::Value {
    serde_json::json!({ "csp-report": {
        "document-uri": "https://shop.example/sql/long/",
        "blocked-uri": "https://evil.example/x.js",
        "effective-directive": "script-src-elem",
        "script-sample": sample,
    }})
}

/// A sample of `'`, `\`, emoji, NUL and tab (each escaped or multi-byte in JSON) whose report
/// body is just under `budget` bytes.
fn long_sample(budget: usize) -> String {
    let unit = "'\\😀\u{0}\t";
    let unit_json = serde_json::to_string(unit).unwrap().len() - 2;
    let overhead = long_report("").to_string().len();
    unit.repeat((budget - overhead) / unit_json)
}

/// The value cut at `max` bytes on a char boundary (ingest's truncation).
fn truncated(value: &str, max: usize) -> &str {
    let mut end = value.len().min(max);
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    &value[..end]
}

/// A user agent of printable ASCII (header values cannot hold control characters) over 512 bytes.
fn user_agent() -> String {
    let ua = "Mozilla/5.0 '); DROP TABLE reports; -- \\' OR 1=1 `x` {ua:String} \"q\" ";
    ua.repeat(MAX_USER_AGENT_BYTES / ua.len() + 2)
}

/// POSTs `body` with `tag` (cut at 600 bytes: longer than kept, short enough for a URL) as the
/// environment and release.
async fn post(stack: &Stack, body: &serde_json::Value, tag: &str) {
    let body = body.to_string();
    let tag = truncated(tag, 3 * MAX_TAG_BYTES);
    assert!(body.len() <= MAX_BODY_BYTES, "{} bytes", body.len());
    let response = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .post(format!("{}/api/{PROJECT}/security/", stack.ingest_url))
        .query(&[
            ("sentry_key", KEY),
            ("sentry_environment", tag),
            ("sentry_release", tag),
        ])
        .header("content-type", "application/csp-report")
        .header("user-agent", user_agent())
        .header("x-forwarded-for", "203.0.113.7")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let answer = response.text().await.unwrap();
    assert_eq!(status, 202, "{answer}");
    assert!(answer.contains(r#""accepted":1"#), "{answer}");
}

/// Every row of the project, read with a typed (RowBinary) query and a bound project id.
async fn rows(stack: &Stack) -> Vec<ReportRow> {
    stack
        .client
        .clone()
        .with_database(DATABASE)
        .query("SELECT ?fields FROM reports FINAL WHERE project_id = ? ORDER BY document_path")
        .bind(PROJECT)
        .fetch_all::<ReportRow>()
        .await
        .unwrap()
}

/// Tables of the database with their engines (to prove none was dropped or altered).
async fn tables(stack: &Stack) -> Vec<Vec<String>> {
    stack
        .tsv(&format!(
            "SELECT name, engine FROM system.tables WHERE database = '{DATABASE}' ORDER BY name"
        ))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_looking_values_round_trip_byte_for_byte() {
    support::avoid_window_boundary(Duration::from_secs(60)).await;
    // The long report fills a Kafka message, far over the default `--max-report-bytes` (64 KiB):
    // lifted here so the test still reaches the largest report Kafka can carry.
    let Some(stack) = Stack::start(PROJECTS, &["--max-report-bytes", "2097152"]).await else {
        return;
    };
    let tables_before = tables(&stack).await;
    assert!(
        tables_before.iter().any(|t| t[0] == "reports"),
        "{tables_before:?}"
    );

    let values = hostile_values();
    for (i, (_, value)) in values.iter().enumerate() {
        post(&stack, &report(i, value), value).await;
    }
    // The binding limit for one value is the Kafka message (librdkafka's `message.max.bytes`,
    // 1,000,000 bytes), a little under the 1 MiB body: a bigger one is refused 413
    // `message_too_large` (ingest/tests/hostile.rs).
    let long = long_sample(KAFKA_MESSAGE_MAX_BYTES - 10_000);
    post(&stack, &long_report(&long), &long).await;
    let expected = values.len() as u64 + 1;
    stack
        .wait_for_occurrences(expected, Duration::from_secs(90))
        .await;

    // Byte-for-byte, read back with a typed query.
    let rows = rows(&stack).await;
    assert_eq!(rows.len() as u64, expected, "one row per report");
    let by_document: BTreeMap<&str, &ReportRow> =
        rows.iter().map(|r| (r.document_url.as_str(), r)).collect();
    let ua = user_agent();
    let stored_ua = truncated(&ua, MAX_USER_AGENT_BYTES);
    for (i, (name, value)) in values.iter().enumerate() {
        let row = by_document
            .get(document(i, value).as_str())
            .unwrap_or_else(|| panic!("{name}: no row with the document URL"));
        assert_eq!(row.referrer, *value, "{name}: referrer");
        assert_eq!(row.violated_directive, *value, "{name}: violated_directive");
        assert_eq!(row.source_file, *value, "{name}: source_file");
        assert_eq!(row.sample, *value, "{name}: sample");
        assert_eq!(row.original_policy, *value, "{name}: original_policy");
        assert_eq!(row.effective_directive, "script-src-elem", "{name}");
        let tag = truncated(value, MAX_TAG_BYTES);
        assert_eq!(row.environment, tag, "{name}: environment");
        assert_eq!(row.release, tag, "{name}: release");
        assert_eq!(row.user_agent, stored_ua, "{name}: user_agent");
        let details: serde_json::Value = serde_json::from_str(&row.details)
            .unwrap_or_else(|e| panic!("{name}: details is not JSON ({e}): {}", row.details));
        assert_eq!(details["extra"]["x-hostile"], *value, "{name}: extra value");
        assert_eq!(
            details["extra"][value.as_str()],
            *value,
            "{name}: extra key"
        );
        assert_eq!(row.occurrences, 1, "{name}");
    }
    let long_row = by_document
        .get("https://shop.example/sql/long/")
        .expect("the long report has a row");
    assert_eq!(long_row.sample.len(), long.len());
    assert!(
        long_row.sample == long,
        "the long sample is stored byte-for-byte"
    );
    assert_eq!(long_row.environment, truncated(&long, MAX_TAG_BYTES));

    // Bound string parameters (the clickhouse crate's client-side escaping) find each row.
    for (name, value) in &values {
        let count = stack
            .client
            .clone()
            .with_database(DATABASE)
            .query("SELECT count() FROM reports FINAL WHERE sample = ? AND referrer = ?")
            .bind(value.as_str())
            .bind(value.as_str())
            .fetch_one::<u64>()
            .await
            .unwrap_or_else(|e| panic!("{name}: bound query failed: {e}"));
        assert_eq!(count, 1, "{name}: bound query");
    }

    // The analysts' placeholder substitution for 18.16 (`testbed::clickhouse::render`, quoting
    // `'` and `\`) finds each row too, and a value that looks like a placeholder stays a value.
    for (name, value) in &values {
        let sql = render(
            "SELECT count() FROM reports FINAL \
             WHERE project_id = {project:UInt64} AND sample = {value:String} AND referrer = {value:String}",
            &[("project", Param::UInt(PROJECT)), ("value", Param::Str(value))],
        );
        assert_eq!(stack.number(&sql).await, 1, "{name}: rendered query");
    }

    // The tables are intact and hold exactly what was sent.
    assert_eq!(tables(&stack).await, tables_before);
    assert_eq!(
        stack
            .number("SELECT sum(occurrences) FROM reports FINAL")
            .await,
        expected
    );

    check_recent(&stack, &rows).await;
    stack.stop().await;
}

/// `palisade-processor recent --project 1` (table and TSV) lists every group once, in a format
/// that still parses.
async fn check_recent(stack: &Stack, rows: &[ReportRow]) {
    use clap::Parser as _;
    let url = stack.clickhouse.http_url();
    let mut pages: Vec<String> = rows
        .iter()
        .map(|r| format!("{}{}", r.document_host, r.document_path))
        .collect();
    pages.sort();
    for format in ["table", "tsv"] {
        let config = processor::Config::try_parse_from([
            "palisade-processor",
            "--clickhouse-url",
            url.as_str(),
            "--clickhouse-database",
            DATABASE,
            "recent",
            "--project",
            "1",
            "--limit",
            "1000",
            "--format",
            format,
        ])
        .unwrap();
        let processor::Command::Recent(args) = config.command() else {
            panic!("recent parses as the recent command");
        };
        let text = processor::recent::recent(
            &config.clickhouse_client(),
            &config.clickhouse_url,
            &config.clickhouse_database,
            &args,
            processor::recent::now_unix(),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
        eprintln!("palisade-processor recent --format {format}:\n{text}");
        let lines: Vec<&str> = text.lines().collect();
        match format {
            "tsv" => {
                assert_eq!(lines.len(), 1 + rows.len(), "{text}");
                let mut printed: Vec<String> = lines[1..]
                    .iter()
                    .map(|line| {
                        let cells: Vec<&str> = line.split('\t').collect();
                        assert_eq!(cells.len(), 7, "{line:?}");
                        assert_eq!(cells[3], "script-src-elem", "{line:?}");
                        assert_eq!(cells[4], "https://evil.example", "{line:?}");
                        testbed::clickhouse::unescape_tsv(cells[5])
                    })
                    .collect();
                printed.sort();
                assert_eq!(printed, pages, "every page once, unescaped back");
            }
            _ => {
                assert_eq!(lines.len(), 2 + rows.len(), "{text}");
                assert!(
                    lines[0].starts_with(&format!(
                        "project 1: {n} violations in {n} groups",
                        n = rows.len()
                    )),
                    "{text}"
                );
                let page_column = lines[1].find("PAGE").unwrap();
                for page in &pages {
                    let shown = if page.chars().count() > 60 {
                        format!("{}…", page.chars().take(59).collect::<String>())
                    } else {
                        page.clone()
                    };
                    let matching: Vec<&&str> = lines[2..]
                        .iter()
                        .filter(|l| {
                            l.chars()
                                .skip(page_column)
                                .collect::<String>()
                                .starts_with(&shown)
                        })
                        .collect();
                    assert_eq!(matching.len(), 1, "{page} in\n{text}");
                }
            }
        }
    }
}
