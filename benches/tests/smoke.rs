//! The load generator and the baseline server run, briefly: `palisade-load` against
//! `palisade-baseline` in every connection mode, closed and open loop, and its loopback guard;
//! and the Kafka floor (`palisade-baseline --kafka`) against tansu.
//! Figures are not checked here (CI is no benchmark machine): only that requests are made and
//! answered and that the summary accounts for each of them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Baseline {
    child: Child,
    port: u16,
}

impl Baseline {
    fn start() -> Self {
        Self::start_with(&[])
    }

    fn start_with(extra: &[&str]) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(env!("CARGO_BIN_EXE_palisade-baseline"))
            .args(["--addr", &format!("127.0.0.1:{port}")])
            .args(extra)
            .stdout(Stdio::null())
            .spawn()
            .expect("palisade-baseline starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "baseline not listening");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, port }
    }
}

impl Drop for Baseline {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn load(args: &[&str]) -> serde_json::Value {
    let output = Command::new(env!("CARGO_BIN_EXE_palisade-load"))
        .args(args)
        .arg("--json")
        .output()
        .expect("palisade-load runs");
    assert!(
        output.status.success(),
        "palisade-load failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let line = stdout
        .lines()
        .rev()
        .find(|line| line.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON summary in {stdout:?}"));
    serde_json::from_str(line).unwrap()
}

#[test]
fn every_mode_loads_the_baseline_and_accounts_for_each_request() {
    let baseline = Baseline::start();
    let url = format!(
        "http://127.0.0.1:{}/api/1/security/?sentry_key=k",
        baseline.port
    );
    for (mode, extra) in [
        ("keepalive", vec![]),
        ("new-connection", vec![]),
        ("h2", vec![]),
        ("keepalive", vec!["--rate", "200"]),
    ] {
        let mut args = vec![
            "--url",
            &url,
            "--mode",
            mode,
            "--concurrency",
            "4",
            "--requests",
            "200",
            "--duration-secs",
            "5",
            "--profile",
            "corpus",
        ];
        args.extend(extra.iter().copied());
        let summary = load(&args);
        let requests = summary["requests"].as_u64().unwrap();
        assert_eq!(requests, 200, "{mode} {extra:?}: {summary}");
        let answered: u64 = summary["statuses"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(status, n)| {
                assert_eq!(status, "204", "{mode}: the baseline answers 204 only");
                n.as_u64().unwrap()
            })
            .sum();
        assert_eq!(answered, requests, "{mode} {extra:?}: {summary}");
        assert!(
            summary["transport_errors"].as_object().unwrap().is_empty(),
            "{mode} {extra:?}: {summary}"
        );
        assert!(summary["reports_2xx"].as_u64().unwrap() >= requests);
        let p50 = summary["latency_ms"]["p50"].as_f64().unwrap();
        let max = summary["latency_ms"]["max"].as_f64().unwrap();
        assert!(p50 > 0.0 && p50 <= max, "{mode}: {summary}");
    }
}

#[test]
fn non_loopback_targets_are_refused() {
    let output = Command::new(env!("CARGO_BIN_EXE_palisade-load"))
        .args([
            "--url",
            "http://192.0.2.1/api/1/security/?sentry_key=k",
            "--duration-secs",
            "1",
        ])
        .output()
        .expect("palisade-load runs");
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("loopback"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The Kafka floor answers 202 only once a body is in Kafka: every answered request is one
/// message in the topic, holding the body as sent.
#[test]
fn the_kafka_floor_publishes_every_body_before_answering() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let Some(tansu) = runtime.block_on(testbed::kafka::Tansu::start()) else {
        eprintln!("skipping the_kafka_floor_publishes_every_body_before_answering: no tansu");
        return;
    };
    let topic = "floor";
    runtime.block_on(tansu.create_topic(topic, 2)).unwrap();
    let baseline = Baseline::start_with(&[
        "--kafka",
        "--kafka-brokers",
        &tansu.bootstrap(),
        "--kafka-topic",
        topic,
    ]);
    let url = format!(
        "http://127.0.0.1:{}/api/1/security/?sentry_key=k",
        baseline.port
    );
    let summary = load(&[
        "--url",
        &url,
        "--concurrency",
        "4",
        "--requests",
        "100",
        "--duration-secs",
        "20",
        "--profile",
        "legacy",
    ]);
    assert_eq!(
        summary["statuses"],
        serde_json::json!({"202": 100}),
        "{summary}"
    );
    let consumed = runtime
        .block_on(testbed::kafka::consume_all(
            &tansu.bootstrap(),
            topic,
            Duration::from_secs(2),
            Duration::from_secs(30),
        ))
        .unwrap();
    assert_eq!(consumed.len(), 100);
    for message in &consumed {
        let body: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
        assert!(body.get("csp-report").is_some(), "the body as sent: {body}");
    }
}
