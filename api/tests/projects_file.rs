//! `palisade-api projects-file`: the real binary rendering ingest's projects file from
//! ClickHouse 18.16 without serving, once (an init container) and as a sidecar that follows
//! key changes made through the API (deploy/kubernetes-overlays/projects-from-api).
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{migrate, Api, ADMIN_TOKEN, DATABASE};
use reqwest::Method;
use serde_json::json;
use testbed::clickhouse::ClickHouse;

const BINARY: &str = env!("CARGO_BIN_EXE_palisade-api");

fn command(server: &ClickHouse, out: Option<&Path>) -> Command {
    let mut command = Command::new(BINARY);
    command
        .env_clear()
        .args(["--clickhouse-url", &server.http_url()])
        .args(["--clickhouse-database", DATABASE])
        .args(["--projects-file-refresh-secs", "1"])
        .stdin(Stdio::null());
    if let Some(out) = out {
        command.arg("--projects-file-out").arg(out);
    }
    command
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renders_the_projects_file_without_serving() {
    let Some(server) = ClickHouse::start().await else {
        return;
    };
    migrate(&server).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("projects.toml");

    // Without --projects-file-out there is nothing to do: a clear refusal, not a silent loop.
    let refused = command(&server, None)
        .arg("projects-file")
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("projects-file-out"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    // --once with no project yet: an empty but complete file, so ingest can start.
    let once = command(&server, Some(&out))
        .args(["projects-file", "--once"])
        .output()
        .unwrap();
    assert!(
        once.status.success(),
        "{}",
        String::from_utf8_lossy(&once.stderr)
    );
    let empty = read(&out);
    assert!(empty.trim_end().ends_with("# palisade:end"), "{empty}");
    assert!(!empty.contains("[[project]]"), "{empty}");

    // The sidecar follows changes made through the API (another process) within seconds.
    let mut sidecar = command(&server, Some(&out))
        .arg("projects-file")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let api = Api::start(&server, &[]).await;
    let (status, created) = api
        .send(
            Method::POST,
            "/v1/projects",
            Some(ADMIN_TOKEN),
            Some(json!({"name": "shop", "public_key": "shop-key-0123456789"})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !read(&out).contains("shop-key-0123456789") {
        assert!(Instant::now() < deadline, "not rendered: {}", read(&out));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let rendered = read(&out);
    assert!(
        rendered.trim_end().ends_with("# palisade:end"),
        "{rendered}"
    );

    assert!(
        rendered.contains("{ public_key = \"shop-key-0123456789\", state = \"active\" }"),
        "{rendered}"
    );

    // Revoked through the API: the sidecar's next render says so (ingest then answers 410).
    let id = created["project"]["id"].as_u64().unwrap();
    let (status, body) = api
        .send(
            Method::DELETE,
            &format!("/v1/projects/{id}/keys/shop-key-0123456789"),
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert!(status.is_success(), "{status} {body}");
    while !read(&out).contains("{ public_key = \"shop-key-0123456789\", state = \"revoked\" }") {
        assert!(Instant::now() < deadline, "not revoked: {}", read(&out));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    api.stop().await;

    // SIGTERM ends the sidecar cleanly.
    let term = Command::new("kill")
        .args(["-TERM", &sidecar.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = sidecar.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the sidecar did not stop");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "{status}");
}
