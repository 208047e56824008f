//! The binary's command line: `migrate` applies the migrations and exits 0, idempotently, and
//! `--help` documents the flags. Against a REAL ClickHouse (testbed).
#![allow(clippy::unwrap_used)]

use std::process::Command;

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
            "processor_checkpoints",
            "reports",
            "rollup_hourly",
            "rollup_nel_hourly",
            "rollup_policy_hourly",
            "schema_migrations"
        ]
    );
    let recorded = server
        .query("SELECT count() FROM cli_test.schema_migrations")
        .unwrap();
    assert_eq!(recorded.trim(), "4", "recorded once each");
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
    ] {
        assert!(help.contains(flag), "{flag} missing from --help");
    }
}
