//! The `palisade-ingest` binary refuses a configuration that would panic or refuse everything
//! before it binds or spawns anything: exit code 2 and a message naming the flag.
#![allow(clippy::unwrap_used)]

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Regression: `--ip-sweep-interval-ms 0` started, then panicked inside the sweep task
/// (`tokio::time::interval` with a zero period) and kept serving without its IP-map sweep.
#[test]
fn zero_interval_is_refused_at_start_up_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let projects = dir.path().join("projects.toml");
    std::fs::write(&projects, support::PROJECTS).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_palisade-ingest"))
        .args([
            "--public-addr",
            "127.0.0.1:0",
            "--admin-addr",
            "127.0.0.1:0",
        ])
        .arg("--projects-file")
        .arg(&projects)
        .args(["--kafka-brokers", &support::closed_port()])
        .args(["--ip-sweep-interval-ms", "0"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(10) {
            child.kill().unwrap();
            let output = child.wait_with_output().unwrap();
            panic!(
                "still running after 10 s; stderr: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = std::io::read_to_string(child.stderr.take().unwrap()).unwrap();
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--ip-sweep-interval-ms must be greater than zero"),
        "{stderr}"
    );
}
