//! The admin listener is bounded and cheap (issue 10, item 6): idle connections cannot hold
//! more than `--admin-max-connections` sockets in the processor and are closed after
//! `--admin-header-read-timeout-ms` when no request begins; `/readyz` reuses its ClickHouse ping
//! for `--readyz-cache-ms` instead of querying ClickHouse per request
//! (`processor_readyz_probes_total`). Against the real binary with REAL tansu and ClickHouse.
//!
//! Before: no cap (every idle connection accepted and held forever) and one ping per probe.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Read as _;
use std::net::TcpStream;
use std::time::Duration;

use common::{wait_for, Child, Env};

const CAP: usize = 4;
const IDLE_CLIENTS: usize = 30;

/// Sockets the process holds open (`/proc/<pid>/fd`).
fn sockets(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(Result::ok)
        .filter(|entry| {
            std::fs::read_link(entry.path())
                .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"))
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_admin_connections_are_capped_and_readyz_is_cached() {
    let Some(env) = Env::start("admin", 1).await else {
        return;
    };
    let cap = CAP.to_string();
    let child = Child::spawn(
        &env,
        &[
            "--admin-max-connections",
            &cap,
            "--admin-header-read-timeout-ms",
            "1000",
            "--readyz-cache-ms",
            "600000",
        ],
    );
    wait_for("ready", Duration::from_secs(60), || async {
        match common::http_get(child.admin_port, "/readyz") {
            Ok((200, _)) => Ok(()),
            other => Err(format!("{other:?}; log:\n{}", child.log_tail())),
        }
    })
    .await;

    // /readyz: one ClickHouse ping, then the cached answer.
    let probes = child.metric("processor_readyz_probes_total").unwrap();
    assert!(probes >= 1.0, "pings are counted: {probes}");
    for _ in 0..20 {
        let (status, _) = common::http_get(child.admin_port, "/readyz").unwrap();
        assert_eq!(status, 200);
    }
    assert_eq!(
        child.metric("processor_readyz_probes_total"),
        Some(probes),
        "no ping per request"
    );

    // Idle connections: at most CAP of them are held by the processor.
    let baseline = sockets(child.pid());
    let idle: Vec<TcpStream> = (0..IDLE_CLIENTS)
        .map(|_| TcpStream::connect(("127.0.0.1", child.admin_port)).unwrap())
        .collect();
    let mut most = 0;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        most = most.max(sockets(child.pid()));
    }
    eprintln!("sockets: {baseline} before, at most {most} with {IDLE_CLIENTS} idle clients");
    // A little slack for the Kafka and ClickHouse clients' own connections.
    assert!(
        most <= baseline + CAP + 3,
        "{most} sockets with {IDLE_CLIENTS} idle clients (baseline {baseline}, cap {CAP})"
    );

    // Each idle connection is closed when its first request does not begin in time.
    let closed = tokio::task::spawn_blocking(move || {
        idle.into_iter()
            .filter(|mut stream| {
                stream
                    .set_read_timeout(Some(Duration::from_secs(30)))
                    .unwrap();
                let mut byte = [0u8; 1];
                // EOF (or a reset) is a close; a timeout is not.
                match stream.read(&mut byte) {
                    Ok(0) => true,
                    Ok(_) => false,
                    Err(error) => error.kind() == std::io::ErrorKind::ConnectionReset,
                }
            })
            .count()
    })
    .await
    .unwrap();
    assert_eq!(closed, IDLE_CLIENTS, "every idle connection was closed");
    let (status, _) = common::http_get(child.admin_port, "/healthz").unwrap();
    assert_eq!(status, 200, "the listener still serves");
    assert!(child.metric("processor_admin_connections").unwrap() <= CAP as f64);
}
