//! The binary's command line: `migrate` applies the migrations and exits 0, idempotently;
//! `recent` prints a project's violation groups with exact counts, and fails clearly when
//! ClickHouse is down; `--help` documents the flags. Against a REAL ClickHouse (testbed).
#![allow(clippy::unwrap_used)]

use std::num::{NonZeroU32, NonZeroUsize};
use std::process::{Command, Output};
use std::time::Duration;

use processor::recent::{now_unix, utc};
use processor::row::ReportRow;
use processor::write::{RetryPolicy, Writer, WriterConfig};
use testbed::clickhouse::ClickHouse;

const BINARY: &str = env!("CARGO_BIN_EXE_palisade-processor");

#[tokio::test]
async fn migrate_subcommand_applies_the_schema_idempotently() {
    let Some(server) = ClickHouse::start().await else {
        return;
    };
    for _ in 0..2 {
        let output = Command::new(BINARY)
            .args(["migrate", "--clickhouse-url", &server.http_url()])
            .args(["--clickhouse-database", "cli_test"])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let tables = server
        .query("SELECT name FROM system.tables WHERE database = 'cli_test' ORDER BY name")
        .unwrap();
    assert_eq!(
        tables.lines().collect::<Vec<_>>(),
        [
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
        ]
    );
    let recorded = server
        .query("SELECT count() FROM cli_test.schema_migrations")
        .unwrap();
    assert_eq!(recorded.trim(), "8", "recorded once each");
}

#[test]
fn help_documents_every_flag_with_its_default() {
    let output = Command::new(BINARY).arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for flag in [
        "--kafka-brokers",
        "--window-secs",
        "--batch-age-ms",
        "--clickhouse-retry-attempts",
        "--misconfigured-retry-ms",
        "--project-retention",
        "--kafka-prefetch-kbytes",
        "--migrate-on-start",
        "--dead-letter-max-bytes",
        "--dead-letter-backoff-ms",
        "--kafka-retry-attempts",
        "--admin-max-connections",
        "--readyz-cache-ms",
        "replay-dead-letters",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help");
    }
    let output = Command::new(BINARY)
        .args(["replay-dead-letters", "--help"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for flag in ["--dry-run", "--max-messages", "--from-offset", "--idle-ms"] {
        assert!(
            help.contains(flag),
            "{flag} missing from replay-dead-letters --help"
        );
    }
}

/// Regression (issue 10, item 11): a zero timeout parsed, then hung or spun; now the binary
/// refuses it before connecting to anything, naming the flag.
#[test]
fn settings_that_cannot_work_are_refused_at_start_up_naming_the_flag() {
    for (flag, value, expected) in [
        (
            "--clickhouse-timeout-ms",
            "0",
            "--clickhouse-timeout-ms must be greater than 0",
        ),
        (
            "--dead-letter-backoff-ms",
            "0",
            "--dead-letter-backoff-ms must be greater than 0",
        ),
        (
            "--admin-idle-timeout-ms",
            "0",
            "--admin-idle-timeout-ms must be greater than 0",
        ),
    ] {
        let mut child = Command::new(BINARY)
            .args(["run", flag, value, "--kafka-brokers", "127.0.0.1:1"])
            .args(["--admin-addr", "127.0.0.1:0"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Bounded: a binary that accepts the value runs (and would hang this test).
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
        }
        let output = child.wait_with_output().unwrap();
        assert_eq!(
            output.status.code(),
            Some(2),
            "{flag} {value}: still running or failed late"
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{flag}: {stderr}");
    }
}

/// Run the binary with `args` against `url` and database `database`.
fn run(url: &str, database: &str, args: &[&str]) -> Output {
    Command::new(BINARY)
        .args(args)
        .args(["--clickhouse-url", url, "--clickhouse-database", database])
        // Logs go to stderr: stdout holds only the answer even at the most verbose level.
        .env("RUST_LOG", "debug")
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "exit {:?}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

/// A CSP row of `project` on `https://shop.example{path}`, seen between `first` and `last`.
#[allow(clippy::too_many_arguments)]
fn row(
    row_id: u64,
    project_id: u64,
    directive: &str,
    blocked: &str,
    path: &str,
    occurrences: u32,
    (first, last): (u32, u32),
    browser: &str,
) -> ReportRow {
    let window_start = first - first % 60;
    ReportRow {
        row_id,
        version: u64::from(occurrences),
        project_id,
        day: (window_start / 86_400) as u16,
        window_start,
        first_seen: first,
        last_seen: last,
        occurrences,
        kind: "csp-violation".to_owned(),
        document_url: format!("https://shop.example{path}"),
        document_origin: "https://shop.example".to_owned(),
        document_host: "shop.example".to_owned(),
        document_path: path.to_owned(),
        blocked_url: blocked.to_owned(),
        blocked_origin: blocked.to_owned(),
        effective_directive: directive.to_owned(),
        ua_family: browser.to_owned(),
        ..ReportRow::default()
    }
}

#[tokio::test]
async fn recent_prints_exact_groups_newest_first_without_noise() {
    let Some(server) = ClickHouse::start().await else {
        return;
    };
    let url = server.http_url();
    let database = "cli_recent";
    stdout(&run(&url, database, &["migrate"]));

    let now = now_unix();
    let (m10, m20, m30, m5) = (now - 600, now - 1200, now - 1800, now - 300);
    let project = 31;
    let cdn = "https://cdn.example";
    let writer = Writer::new(
        &clickhouse::Client::default().with_url(url.as_str()),
        WriterConfig {
            database: database.to_owned(),
            retry: RetryPolicy {
                max_attempts: NonZeroU32::new(1).unwrap(),
                initial_backoff: Duration::from_millis(50),
                max_backoff: Duration::from_millis(50),
            },
            attempt_timeout: Duration::from_secs(30),
            rollup_groups_per_statement: NonZeroUsize::new(10).unwrap(),
        },
    )
    .unwrap();
    let first_emission = [
        // Row 1 first emitted with 3 occurrences, re-emitted below with 5: FINAL keeps 5.
        row(
            1,
            project,
            "script-src-elem",
            cdn,
            "/checkout",
            3,
            (m30, m20),
            "Chrome",
        ),
        row(
            2,
            project,
            "script-src-elem",
            cdn,
            "/checkout",
            2,
            (m20, m10),
            "Firefox",
        ),
        row(
            3,
            project,
            "img-src",
            "https://img.example",
            "/",
            1,
            (m10, m5),
            "Safari",
        ),
        ReportRow {
            noise: "extension".to_owned(),
            ..row(
                4,
                project,
                "script-src-elem",
                "chrome-extension",
                "/",
                100,
                (m10, m5),
                "Chrome",
            )
        },
        row(5, project + 1, "img-src", cdn, "/", 9, (m10, m5), "Chrome"),
        // Two days old: outside the default 24 hours.
        row(
            6,
            project,
            "font-src",
            cdn,
            "/",
            4,
            (now - 2 * 86_400, now - 2 * 86_400 + 60),
            "Chrome",
        ),
    ];
    writer.insert_rows(&first_emission).await.unwrap();
    let reemitted = row(
        1,
        project,
        "script-src-elem",
        cdn,
        "/checkout",
        5,
        (m30, m20 + 30),
        "Chrome",
    );
    writer.insert_rows(&[reemitted]).await.unwrap();
    let parts = server
        .query("SELECT count() FROM system.parts WHERE database = 'cli_recent' AND table = 'reports' AND active")
        .unwrap();
    assert!(
        parts.trim().parse::<u32>().unwrap() >= 2,
        "the duplicate lives in its own part"
    );

    let project_flag = project.to_string();
    let table = stdout(&run(
        &url,
        database,
        &["recent", "--project", &project_flag],
    ));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines[0], "project 31: 8 violations in 2 groups in the last 24 hours, showing 2",
        "{table}"
    );
    let cells = |line: &str| -> Vec<String> {
        line.split("  ")
            .map(str::trim)
            .filter(|cell| !cell.is_empty())
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(
        cells(lines[1]),
        [
            "LAST SEEN (UTC)",
            "FIRST SEEN (UTC)",
            "COUNT",
            "DIRECTIVE/KIND",
            "BLOCKED",
            "PAGE",
            "BROWSER"
        ]
    );
    assert_eq!(
        cells(lines[2]),
        [
            utc(m5),
            utc(m10),
            "1".into(),
            "img-src".into(),
            "https://img.example".into(),
            "shop.example/".into(),
            "Safari".into()
        ],
        "{table}"
    );
    assert_eq!(
        cells(lines[3]),
        [
            utc(m10),
            utc(m30),
            "7".into(),
            "script-src-elem".into(),
            cdn.into(),
            "shop.example/checkout".into(),
            "Chrome".into()
        ],
        "{table}"
    );
    assert_eq!(lines.len(), 4, "{table}");
    // Columns are aligned: every line puts COUNT's right edge at the same place.
    let count_end = lines[1].find("COUNT").unwrap() + "COUNT".len();
    assert_eq!(&lines[2][count_end - 1..count_end], "1", "{table}");
    assert_eq!(&lines[3][count_end - 1..count_end], "7", "{table}");

    let tsv = stdout(&run(
        &url,
        database,
        &[
            "recent",
            "--project",
            &project_flag,
            "--include-noise",
            "--since-hours",
            "72",
            "--format",
            "tsv",
        ],
    ));
    let rows: Vec<Vec<&str>> = tsv
        .lines()
        .skip(1)
        .map(|l| l.split('\t').collect())
        .collect();
    let summary: Vec<(&str, &str, &str)> = rows.iter().map(|r| (r[3], r[4], r[2])).collect();
    assert_eq!(
        summary,
        [
            ("script-src-elem", "chrome-extension", "100"),
            ("img-src", "https://img.example", "1"),
            ("script-src-elem", cdn, "7"),
            ("font-src", cdn, "4"),
        ],
        "{tsv}"
    );

    let limited = stdout(&run(
        &url,
        database,
        &[
            "recent",
            "--project",
            &project_flag,
            "--limit",
            "1",
            "--kind",
            "csp-violation",
        ],
    ));
    assert!(
        limited.starts_with("project 31: 8 violations in 2 groups in the last 24 hours (csp-violation), showing 1\n"),
        "{limited}"
    );
    assert_eq!(limited.lines().count(), 3, "{limited}");

    let other_kind = stdout(&run(
        &url,
        database,
        &[
            "recent",
            "--project",
            &project_flag,
            "--kind",
            "network-error",
        ],
    ));
    assert_eq!(other_kind, "no violations in the last 24 hours\n");
    let empty = stdout(&run(
        &url,
        database,
        &["recent", "--project", "99", "--since-hours", "6"],
    ));
    assert_eq!(empty, "no violations in the last 6 hours\n");
}

#[test]
fn recent_fails_clearly_when_clickhouse_is_unreachable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // The listener is dropped: nothing listens on `port` now.
    let url = format!("http://127.0.0.1:{port}");
    let output = run(&url, "palisade", &["recent", "--project", "1"]);
    assert!(!output.status.success());
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("cannot query ClickHouse at {url}")),
        "{stderr}"
    );
}
