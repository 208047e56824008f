//! Fair sharing at the edge, against a real ingest: one client address cannot hold every
//! in-flight slot (HTTP/2 streams that never send their bodies, HTTP/1 bodies trickled a byte at
//! a time) nor every connection, and every request counts against the per-IP limit whatever
//! its method or path.
//!
//! Distinct client addresses on loopback: Linux routes all of 127.0.0.0/8 to `lo`, so a client
//! socket bound to 127.0.0.2 before `connect` reaches the server from 127.0.0.2.
#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::{client, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A TCP connection to `addr` from the loopback address `local` (e.g. `127.0.0.2`).
async fn connect_from(local: &str, addr: SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{local}:0").parse().unwrap()).unwrap();
    let stream = socket.connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

const PREFLIGHT: &[u8] = b"OPTIONS /api/1/security/ HTTP/1.1\r\nhost: t\r\n\r\n";

/// Sends one request on `stream` and returns the status of its answer, or `None` when the
/// server closed the connection without one.
async fn status_of(stream: &mut TcpStream, request: &[u8]) -> Option<u16> {
    let _ = stream.write_all(request).await;
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
        .await
        .expect("answered or closed within 10 s")
        .unwrap_or(0);
    let head = String::from_utf8_lossy(&buf[..n]);
    head.split(' ').nth(1).and_then(|code| code.parse().ok())
}

/// Regression: only POSTs on report paths were counted, so preflights, 404s and 405s could
/// be sent at any rate.
#[tokio::test]
async fn every_method_and_path_counts_against_the_per_ip_limit() {
    let server = Server::without_kafka(
        support::PROJECTS,
        &["--ip-rate-per-second", "1", "--ip-burst", "3"],
    )
    .await;
    let http = client();
    let mut statuses = Vec::new();
    for (method, path) in [
        ("OPTIONS", "/api/1/security/"),
        ("GET", "/api/1/security/"),
        ("GET", "/wp-login.php"),
        ("OPTIONS", "/api/1/security/"),
        ("GET", "/api/1/security/"),
        ("GET", "/wp-login.php"),
    ] {
        let response = http
            .request(method.parse().unwrap(), server.url(path))
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    assert_eq!(
        statuses[..3],
        [204, 405, 404],
        "within the burst: {statuses:?}"
    );
    // The burst is 3 at 1 per second: at least one of the next three (sent within a second
    // on any sane machine, and at least one of them is before the next token) is refused.
    assert!(
        statuses[3..].contains(&429),
        "the burst was spent by OPTIONS/405/404: {statuses:?}"
    );
}

/// One address cannot hold every connection: over `--max-connections-per-ip` its connections
/// are closed at once while another address is still served.
#[tokio::test]
async fn one_ip_cannot_hold_every_connection() {
    let server = Server::without_kafka(
        support::PROJECTS,
        &["--max-connections", "4", "--max-connections-per-ip", "2"],
    )
    .await;
    let series = r#"ingest_connections_refused_total{reason="per_ip_cap"}"#;
    let refused_before = server.metric(series).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = connect_from("127.0.0.2", server.public_addr).await;
        assert_eq!(status_of(&mut stream, PREFLIGHT).await, Some(204));
        held.push(stream);
    }
    let mut third = connect_from("127.0.0.2", server.public_addr).await;
    assert_eq!(
        status_of(&mut third, PREFLIGHT).await,
        None,
        "a third connection from 127.0.0.2 is closed unanswered"
    );
    let mut other = connect_from("127.0.0.3", server.public_addr).await;
    assert_eq!(
        status_of(&mut other, PREFLIGHT).await,
        Some(204),
        "another address is served"
    );
    assert!(server.metric(series).await >= refused_before + 1.0);
    // A slot of 127.0.0.2 comes back when one of its connections closes.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut again = connect_from("127.0.0.2", server.public_addr).await;
    assert_eq!(status_of(&mut again, PREFLIGHT).await, Some(204));
}

/// Behind a proxy (`--trust-forwarded-for`) every peer is a proxy carrying many clients: the
/// per-peer connection cap does not apply to it.
#[tokio::test]
async fn proxies_are_not_held_to_the_per_ip_connection_cap() {
    let server = Server::without_kafka(
        support::PROJECTS,
        &[
            "--trust-forwarded-for",
            "--max-connections",
            "4",
            "--max-connections-per-ip",
            "1",
        ],
    )
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut stream = connect_from("127.0.0.4", server.public_addr).await;
        assert_eq!(status_of(&mut stream, PREFLIGHT).await, Some(204));
        held.push(stream);
    }
}

/// A minimal HTTP/2 client (prior knowledge, plain TCP) that opens `streams` POST streams
/// announcing a 1000-byte body and never sends a byte of it. Answers ACK the server's SETTINGS
/// and PINGs and are otherwise discarded; the connection stays open until `stop`. Returns the
/// server's advertised `SETTINGS_MAX_CONCURRENT_STREAMS`, if any.
mod h2_attack {
    use super::*;

    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    const HEADERS: u8 = 0x1;
    const SETTINGS: u8 = 0x4;
    const PING: u8 = 0x6;
    const END_HEADERS: u8 = 0x4;
    const ACK: u8 = 0x1;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    /// HPACK "literal without indexing, indexed name" (RFC 7541 section 6.2.2) with a short
    /// plain string value.
    fn literal(block: &mut Vec<u8>, name_index: u8, value: &str) {
        if name_index < 15 {
            block.push(name_index);
        } else {
            block.extend_from_slice(&[0x0f, name_index - 15]);
        }
        assert!(value.len() < 127);
        block.push(value.len() as u8);
        block.extend_from_slice(value.as_bytes());
    }

    fn request_headers(path: &str) -> Vec<u8> {
        let mut block = vec![0x83, 0x86]; // :method POST, :scheme http (static table)
        literal(&mut block, 4, path); // :path
        literal(&mut block, 1, "ingest.test"); // :authority
        literal(&mut block, 31, "application/csp-report"); // content-type
        literal(&mut block, 28, "1000"); // content-length
        block
    }

    pub async fn run(
        local: &'static str,
        addr: SocketAddr,
        path: &str,
        streams: u32,
        stop: Arc<AtomicBool>,
    ) -> Option<u32> {
        let stream = connect_from(local, addr).await;
        let (mut read, mut write) = stream.into_split();
        let mut out = PREFACE.to_vec();
        out.extend(frame(SETTINGS, 0, 0, &[]));
        let block = request_headers(path);
        for i in 0..streams {
            out.extend(frame(HEADERS, END_HEADERS, 1 + 2 * i, &block));
        }
        let mut max_streams = None;
        if write.write_all(&out).await.is_err() {
            return max_streams;
        }
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        while !stop.load(Ordering::SeqCst) {
            let n = match tokio::time::timeout(Duration::from_millis(100), read.read(&mut chunk))
                .await
            {
                Err(_) => continue,
                Ok(Ok(0) | Err(_)) => return max_streams,
                Ok(Ok(n)) => n,
            };
            buf.extend_from_slice(&chunk[..n]);
            while buf.len() >= 9 {
                let len =
                    (usize::from(buf[0]) << 16) | (usize::from(buf[1]) << 8) | usize::from(buf[2]);
                if buf.len() < 9 + len {
                    break;
                }
                let (kind, flags) = (buf[3], buf[4]);
                let payload = buf[9..9 + len].to_vec();
                buf.drain(..9 + len);
                if kind == SETTINGS && flags & ACK == 0 {
                    // Six-byte entries: identifier (u16), value (u32); 0x3 is
                    // SETTINGS_MAX_CONCURRENT_STREAMS (RFC 9113 section 6.5.2).
                    for entry in payload.chunks_exact(6) {
                        if entry[..2] == [0, 3] {
                            let value = [entry[2], entry[3], entry[4], entry[5]];
                            max_streams = Some(u32::from_be_bytes(value));
                        }
                    }
                }
                let ack = match kind {
                    SETTINGS if flags & ACK == 0 => frame(SETTINGS, ACK, 0, &[]),
                    PING if flags & ACK == 0 => frame(PING, ACK, 0, &payload),
                    _ => continue,
                };
                if write.write_all(&ack).await.is_err() {
                    return max_streams;
                }
            }
        }
        max_streams
    }
}

/// HTTP/1 bodies trickled one byte every 200 ms from `local`, on `connections` connections,
/// each reconnecting (after 100 ms) when answered, until `stop`. Counts the answers.
async fn slow_bodies(
    local: &'static str,
    addr: SocketAddr,
    path: &'static str,
    connections: usize,
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicU64>,
) {
    let workers = (0..connections).map(|_| {
        let stop = Arc::clone(&stop);
        let answered = Arc::clone(&answered);
        async move {
            while !stop.load(Ordering::SeqCst) {
                let mut stream = connect_from(local, addr).await;
                let head = format!(
                    "POST {path} HTTP/1.1\r\nhost: t\r\ncontent-type: application/csp-report\r\ncontent-length: 1000\r\n\r\n{{"
                );
                let _ = stream.write_all(head.as_bytes()).await;
                let mut buf = [0u8; 1024];
                while !stop.load(Ordering::SeqCst) {
                    tokio::select! {
                        read = stream.read(&mut buf) => {
                            if matches!(read, Ok(n) if n > 0) {
                                answered.fetch_add(1, Ordering::SeqCst);
                            }
                            break;
                        }
                        () = tokio::time::sleep(Duration::from_millis(200)) => {
                            if stream.write_all(b" ").await.is_err() {
                                break;
                            }
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    futures::future::join_all(workers).await;
}

const FAIR_PROJECTS: &str = r#"
[[project]]
id = 1
name = "attacked"
quota = { per_second = 100000, burst = 100000 }
keys = [{ public_key = "ka" }]

[[project]]
id = 2
name = "bystander"
quota = { per_second = 100000, burst = 100000 }
keys = [{ public_key = "kb" }]
"#;

/// Regression: the global in-flight permit was taken before the body was read and a body could
/// take the whole `--body-read-timeout-ms`, so one HTTP/2 connection with more streams than
/// `--max-in-flight-requests`, never sending their bodies, left every other tenant 503
/// `overloaded` for 10 s at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_cannot_hold_every_in_flight_slot() {
    let Some(tansu) = testbed::kafka::Tansu::start().await else {
        eprintln!("skipping: tansu not available");
        return;
    };
    tansu.create_topic("fair", 1).await.unwrap();
    let server = Server::start(
        FAIR_PROJECTS,
        &tansu.bootstrap(),
        &[
            "--kafka-topic",
            "fair",
            "--max-in-flight-requests",
            "32",
            // The attack is about held slots, not request rate: lift the per-IP rate limit.
            "--ip-rate-per-second",
            "100000",
            "--ip-burst",
            "100000",
        ],
    )
    .await;
    let addr = server.public_addr;
    let report = |i: u32| {
        format!(
            r#"{{"csp-report":{{"document-uri":"https://b.example/{i}","blocked-uri":"https://evil.example/x.js","violated-directive":"script-src-elem"}}}}"#
        )
    };
    let browser = reqwest::Client::builder()
        .no_proxy()
        .user_agent("Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0 Safari/537.36")
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let send = |i: u32| {
        browser
            .post(server.url("/api/2/security/?sentry_key=kb"))
            .header("content-type", "application/csp-report")
            .body(report(i))
            .send()
    };
    // Warm the producer (the first publish fetches metadata) before the attack.
    assert_eq!(send(0).await.unwrap().status(), 202);

    let stop = Arc::new(AtomicBool::new(false));
    let attack_path = "/api/1/security/?sentry_key=ka";
    // One HTTP/2 connection from 127.0.0.2 with 64 streams (twice the global cap) every
    // 500 ms on another project, and 40 HTTP/1 connections from 127.0.0.3 trickling their
    // bodies with the bystander's own key (it is public): the per-project share alone would
    // let them take every slot of the bystander's project, the per-IP share stops that.
    let bystander_path = "/api/2/security/?sentry_key=kb";
    let h2 = {
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            let mut connections = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                connections.push(tokio::spawn(h2_attack::run(
                    "127.0.0.2",
                    addr,
                    attack_path,
                    64,
                    Arc::clone(&stop),
                )));
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            let mut advertised = Vec::new();
            for connection in connections {
                advertised.push(connection.await.unwrap());
            }
            advertised
        })
    };
    let slow_answers = Arc::new(AtomicU64::new(0));
    let slow = tokio::spawn(slow_bodies(
        "127.0.0.3",
        addr,
        bystander_path,
        40,
        Arc::clone(&stop),
        Arc::clone(&slow_answers),
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The bystander's browser sends a report every 100 ms for 5 s (past the body grace, so
    // the slots the attack holds have been taken, cut and retaken meanwhile).
    let mut statuses = std::collections::BTreeMap::<String, u32>::new();
    for i in 1..=50 {
        let response = send(i).await.unwrap();
        let status = response.status().as_u16();
        let key = if status == 202 {
            "202".to_owned()
        } else {
            format!("{status} {}", support::error_label(response).await)
        };
        *statuses.entry(key).or_default() += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let advertised = h2.await.unwrap();
    slow.await.unwrap();

    let refused = |reason: &str| {
        let series = format!(r#"ingest_rejections_total{{reason="{reason}"}}"#);
        let server = &server;
        async move { server.metric(&series).await }
    };
    println!(
        "bystander: {statuses:?}; attack refusals: client_in_flight {}, body_too_slow {}, \
         overloaded {}, body_timeout {}; slow HTTP/1 bodies answered {}",
        refused("client_in_flight").await,
        refused("body_too_slow").await,
        refused("overloaded").await,
        refused("body_timeout").await,
        slow_answers.load(Ordering::SeqCst),
    );
    assert_eq!(
        statuses.keys().collect::<Vec<_>>(),
        ["202"],
        "the bystander got only 202s during the attack: {statuses:?}"
    );
    assert!(
        advertised.iter().all(|max| *max == Some(16)),
        "every HTTP/2 connection was limited to 16 concurrent streams: {advertised:?}"
    );
    assert!(
        refused("client_in_flight").await > 0.0,
        "the attack met its per-IP share"
    );
    assert!(
        refused("body_too_slow").await > 0.0,
        "held slots were cut by the minimum body rate"
    );
}
