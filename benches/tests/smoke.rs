//! The load generator and the baseline server run, briefly: `palisade-load` against
//! `palisade-baseline` in every connection mode, closed and open loop, and its loopback guard.
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
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(env!("CARGO_BIN_EXE_palisade-baseline"))
            .args(["--addr", &format!("127.0.0.1:{port}")])
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
