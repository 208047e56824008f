//! Test harness: starts REAL servers (tansu for Kafka, ClickHouse) and headless Chromium on free
//! loopback ports, in temp dirs, for Palisade's integration tests, and kills them on drop.
//!
//! Map: [`kafka`] (tansu broker, topics, a test consumer) ; [`clickhouse`] (server + a tiny HTTP
//! query helper + the analyst queries' parameter substitution) ; [`cluster`] (ZooKeeper + two
//! ClickHouse shards) ; [`chromium`] (headless browser
//! process) ; [`page`] (the CSP test page the browser loads, and its server) ; [`tls`]
//! (self-signed certificates) ; [`free_port`] ; [`process`] (child processes with logs, killed
//! and reaped on drop).
//!
//! Shared test inputs and helpers of the ingest, processor and e2e suites: [`bodies`] (report
//! bodies of every kind) ; [`wait`] (bounded polling) ; [`metrics`] (the test binary's global
//! Prometheus recorder).
//!
//! The CI rule: when a tool is missing or cannot start, a constructor returns `None` after
//! printing `skipping: ...` to stderr, so a developer without the tool still runs the rest of the
//! suite; with `CI=true` in the environment it panics instead, so CI never goes green by skipping.

pub mod bodies;
pub mod chromium;
pub mod clickhouse;
pub mod cluster;
pub mod kafka;
pub mod metrics;
pub mod page;
pub mod process;
pub mod tls;
pub mod wait;

use std::fmt::Display;
use std::net::{Ipv4Addr, TcpListener};

/// A loopback TCP port that was free a moment ago: bound on `127.0.0.1:0`, then released.
///
/// Another process may take it before the caller binds it; callers that spawn servers retry with
/// a new port when the server fails to bind.
pub fn free_port() -> std::io::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

/// Whether the CI rule asks for loud failures (`CI=true`, as set by GitHub Actions and most CIs).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| value.eq_ignore_ascii_case("true") || value == "1")
}

/// Apply the CI rule to a tool that is unavailable: panic in CI, otherwise print why the test is
/// skipped and return `None`.
pub fn unavailable<T>(what: &str, why: impl Display) -> Option<T> {
    if in_ci() {
        panic!("{what} is required in CI (CI=true) but unavailable: {why}");
    }
    eprintln!("skipping: {what} unavailable: {why}");
    None
}
