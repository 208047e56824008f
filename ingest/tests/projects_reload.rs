//! A projects file read half-written is not applied (issue 10, item 12), over HTTP against a
//! real ingest polling its projects file: a prefix of the file that is valid TOML on its own
//! (cut before a project's `allowed_hosts`) would drop that allow-list.
//!
//! The probe is a noise report from `evil.example` to project 2: while project 2's allow-list
//! (`blog.example`) is in force it is 403 `host_not_allowed`; without an allow-list it is
//! filtered noise, 202. No Kafka is needed (nothing is published).
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use support::{noise, post, Server};

fn file(project_2_hosts: &str, marker: bool) -> String {
    let mut text = format!(
        r#"[[project]]
id = 1
name = "shop"
quota = {{ per_second = 1000, burst = 1000 }}
keys = [{{ public_key = "k1" }}]
allowed_hosts = ["shop.example"]

[[project]]
id = 2
name = "blog"
quota = {{ per_second = 1000, burst = 1000 }}
keys = [{{ public_key = "k2" }}]
allowed_hosts = [{project_2_hosts}]
"#
    );
    if marker {
        text.push_str("# palisade:end\n");
    }
    text
}

/// The file cut just before project 2's `allowed_hosts`: valid TOML, no allow-list.
fn cut(full: &str) -> &str {
    let at = full.rfind("allowed_hosts").unwrap();
    &full[..at]
}

/// The probe's status: 403 while project 2 only allows `blog.example`.
async fn probe(server: &Server) -> u16 {
    post(
        server,
        "/api/2/security/?sentry_key=k2",
        noise("https://evil.example/"),
    )
    .await
    .status()
    .as_u16()
}

/// Regression (issue 10, item 12): a valid-TOML prefix of the projects file, left on disk
/// (a copy cut short, a full disk), replaced the rules in force and dropped an allow-list.
#[tokio::test]
async fn a_cut_file_ending_marker_missing_keeps_the_rules() {
    let full = file(r#""blog.example""#, true);
    let server = Server::without_kafka(
        &full,
        &[
            "--projects-poll-interval-ms",
            "50",
            "--projects-settle-ms",
            "100",
        ],
    )
    .await;
    assert_eq!(probe(&server).await, 403);
    assert!(
        cut(&full).parse::<toml::Table>().is_ok(),
        "the cut is valid TOML"
    );

    let incomplete = r#"ingest_projects_reload_total{result="incomplete"}"#;
    let before = server.metric(incomplete).await;
    std::fs::write(&server.projects_path, cut(&full)).unwrap();
    // Several polls see the cut file; the allow-list stays throughout.
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(1500)
        || server.metric(incomplete).await < before + 2.0
    {
        assert_eq!(probe(&server).await, 403, "the cut file was applied");
        assert!(started.elapsed() < Duration::from_secs(20), "never refused");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The whole file (now also allowing evil.example) applies.
    let widened = file(r#""blog.example", "evil.example""#, true);
    std::fs::write(&server.projects_path, &widened).unwrap();
    testbed::wait::wait_for(
        "the full file to apply",
        Duration::from_secs(10),
        || async {
            match probe(&server).await {
                202 => Ok(()),
                other => Err(other.to_string()),
            }
        },
    )
    .await;
    server.shutdown_and_wait().await.expect("run succeeds");
}

/// Issue 10, item 12, for files without the marker: a file still being written (a prefix now,
/// the rest within `--projects-settle-ms`) is never read half-way.
#[tokio::test]
async fn a_file_being_written_is_read_only_once_it_settled() {
    let full = file(r#""blog.example""#, false);
    let server = Server::without_kafka(
        &full,
        &[
            "--projects-poll-interval-ms",
            "50",
            "--projects-settle-ms",
            "2000",
        ],
    )
    .await;
    assert_eq!(probe(&server).await, 403);
    // The writer puts the first part down, then (a moment later) the rest.
    std::fs::write(&server.projects_path, cut(&full)).unwrap();
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(500) {
        assert_eq!(
            probe(&server).await,
            403,
            "the half-written file was applied"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let widened = file(r#""blog.example", "evil.example""#, false);
    std::fs::write(&server.projects_path, &widened).unwrap();
    testbed::wait::wait_for(
        "the full file to apply",
        Duration::from_secs(15),
        || async {
            match probe(&server).await {
                202 => Ok(()),
                403 => Err("403".to_owned()),
                other => panic!("{other}"),
            }
        },
    )
    .await;
    server.shutdown_and_wait().await.expect("run succeeds");
}
