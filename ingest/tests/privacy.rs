//! Privacy on by default (issue 10, item 7), against a real ingest publishing to a real tansu:
//! a project that says nothing about privacy still gets credentials, query strings and
//! fragments removed from every URL of every report kind before the Kafka message is written;
//! the IP-hash salt comes from a file; a short or placeholder salt stops ingest at start-up.
#![allow(clippy::unwrap_used)]

mod support;

use std::net::IpAddr;
use std::time::Duration;

use schemas::{error_chain, ReportMessage};
use support::Server;
use testbed::bodies::{SECRETS, WITH_SECRETS_BATCH, WITH_SECRETS_DOCUMENTS, WITH_SECRETS_LEGACY};
use testbed::kafka::Tansu;

/// Project 1 keeps the full client IP (to check which client was picked) and says nothing
/// else about privacy; project 2 hashes the client IP with the process-wide salt.
const PROJECTS: &str = r#"
[[project]]
id = 1
name = "shop"
quota = { per_second = 1000, burst = 1000 }
keys = [{ public_key = "k1" }]
privacy = { client_ip = "full" }

[[project]]
id = 2
name = "hashed"
quota = { per_second = 1000, burst = 1000 }
keys = [{ public_key = "k2" }]
privacy = { client_ip = "hash" }
"#;

const SALT: &str = "c6f0a1d94e2b7358a9e0";

async fn post(server: &Server, path: &str, content_type: &str, body: &str, forwarded: &str) {
    let response = support::client()
        .post(server.url(path))
        .header("content-type", content_type)
        .header("x-forwarded-for", forwarded)
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202, "{path}");
}

/// Regression (issue 10, item 7): without privacy settings, URLs were stored with their
/// credentials, tokens and fragments.
#[tokio::test]
async fn credentials_and_tokens_never_reach_kafka() {
    let Some(tansu) = Tansu::start().await else {
        return;
    };
    tansu
        .create_topic("privacy", 1)
        .await
        .expect("create topic");
    let dir = tempfile::tempdir().unwrap();
    let salt_file = dir.path().join("salt");
    // As `kubectl create secret --from-file` leaves it: with a trailing newline.
    std::fs::write(&salt_file, format!("{SALT}\n")).unwrap();
    let server = Server::start(
        PROJECTS,
        &tansu.bootstrap(),
        &[
            "--kafka-topic",
            "privacy",
            "--trusted-proxies",
            "127.0.0.1",
            "--ip-hash-salt-file",
            salt_file.to_str().unwrap(),
        ],
    )
    .await;
    let forwarded = "6.6.6.6, 203.0.113.77";
    for path in [
        "/api/1/security/?sentry_key=k1",
        "/api/2/security/?sentry_key=k2",
    ] {
        post(
            &server,
            path,
            "application/csp-report",
            WITH_SECRETS_LEGACY,
            forwarded,
        )
        .await;
        post(
            &server,
            path,
            "application/reports+json",
            WITH_SECRETS_BATCH,
            forwarded,
        )
        .await;
    }

    let consumed =
        testbed::kafka::consume(&tansu.bootstrap(), "privacy", 8, Duration::from_secs(30))
            .await
            .expect("consume");
    assert_eq!(
        consumed.len(),
        8,
        "two requests of 1 + 3 reports per project"
    );
    let client: IpAddr = "203.0.113.77".parse().unwrap();
    let mut documents = Vec::new();
    for raw in &consumed {
        let text = String::from_utf8_lossy(&raw.payload);
        for leak in SECRETS {
            assert!(!text.contains(leak), "{leak:?} published: {text}");
        }
        let message = ReportMessage::decode(&raw.payload).unwrap();
        match message.project_id {
            // The client behind the trusted proxy, not the spoofed entry left of it.
            1 => assert_eq!(message.client_ip.as_deref(), Some("203.0.113.77")),
            _ => assert_eq!(
                message.client_ip.as_deref(),
                Some(ingest::privacy::hash(SALT.as_bytes(), client).as_str()),
                "hashed with the salt file's salt, its newline dropped"
            ),
        }
        documents.push(message.report.document_url.unwrap_or_default());
        assert!(text.contains("free text? kept") || !text.contains("future-thing"));
    }
    documents.sort();
    documents.dedup();
    assert_eq!(documents, WITH_SECRETS_DOCUMENTS);
    server.shutdown_and_wait().await.expect("run succeeds");
}

/// Issue 10, item 7: a guessable salt makes hashed IPs reversible, so ingest refuses to start.
#[tokio::test]
async fn short_or_placeholder_salts_stop_ingest_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let salt_file = dir.path().join("salt");
    for (salt, want) in [
        ("changeme\n", "at least 16"),
        ("change-me-to-a-long-random-string\n", "placeholder"),
        ("replace-me-with-openssl-rand-hex-32", "placeholder"),
    ] {
        std::fs::write(&salt_file, salt).unwrap();
        let server = Server::without_kafka(
            PROJECTS,
            &["--ip-hash-salt-file", salt_file.to_str().unwrap()],
        )
        .await;
        let err = server.shutdown_and_wait().await.unwrap_err();
        let chain = error_chain(&err);
        assert!(chain.contains(want), "{salt:?}: {chain}");
    }
    // The same rules for the environment / flag form, refused while parsing the config.
    let err = ingest::Config::for_tests(
        std::path::Path::new("p.toml"),
        "127.0.0.1:1",
        ["--ip-hash-salt", "salt"],
    )
    .unwrap_err();
    assert!(err.to_string().contains("at least 16"), "{err}");
    // Without any salt, a project hashing IPs cannot load.
    let server = Server::without_kafka(PROJECTS, &[]).await;
    let chain = error_chain(&server.shutdown_and_wait().await.unwrap_err());
    assert!(chain.contains("needs a salt"), "{chain}");
}
