//! Connection-level behaviour of the ingest edge against a real server on `127.0.0.1:0`:
//! streamed-body caps, body and header timeouts, TLS with HTTP/2 and HTTP/1.1, idle keep-alive,
//! the connection cap and the in-flight request cap.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use reqwest::header::RETRY_AFTER;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A chunked body without Content-Length is capped while it streams.
#[tokio::test]
async fn chunked_body_over_the_cap_is_413() {
    let server = Server::without_kafka(PROJECTS, &["--max-body-bytes", "1000"]).await;
    let mut stream = tokio::net::TcpStream::connect(server.public_addr)
        .await
        .unwrap();
    let chunk = "x".repeat(600);
    let request = format!(
        "POST /api/1/security/?sentry_key=k1 HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n\
         258\r\n{chunk}\r\n258\r\n{chunk}\r\n0\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let answer = read_head(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
}

async fn read_head(stream: &mut tokio::net::TcpStream) -> String {
    let mut buf = vec![0; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test]
async fn slow_body_is_408() {
    let server = Server::without_kafka(PROJECTS, &["--body-read-timeout-ms", "300"]).await;
    let mut stream = tokio::net::TcpStream::connect(server.public_addr)
        .await
        .unwrap();
    let head =
        "POST /api/1/security/?sentry_key=k1 HTTP/1.1\r\nhost: t\r\ncontent-length: 100\r\n\r\n{";
    stream.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let answer = read_head(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body_timeout"), "{answer}");
    assert!(started.elapsed() >= Duration::from_millis(250));
}

#[tokio::test]
async fn tls_serves_http2_and_http1() {
    let cert = testbed::tls::SelfSigned::generate().unwrap();
    let flags = [
        "--tls-cert",
        cert.cert_path().to_str().unwrap(),
        "--tls-key",
        cert.key_path().to_str().unwrap(),
    ];
    let server = Server::without_kafka(PROJECTS, &flags).await;
    let url = format!("https://{}/api/1/security/", server.public_addr);
    let root = reqwest::Certificate::from_der(&cert.cert_der).unwrap();
    for (http1_only, version) in [
        (false, reqwest::Version::HTTP_2),
        (true, reqwest::Version::HTTP_11),
    ] {
        let mut builder = reqwest::Client::builder()
            .no_proxy()
            .add_root_certificate(root.clone());
        if http1_only {
            builder = builder.http1_only();
        }
        let response = builder
            .build()
            .unwrap()
            .request(reqwest::Method::OPTIONS, &url)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 204);
        assert_eq!(response.version(), version);
    }
    let plain = format!("http://{}/api/1/security/", server.public_addr);
    assert!(
        client()
            .request(reqwest::Method::OPTIONS, plain)
            .send()
            .await
            .is_err(),
        "plain HTTP is refused"
    );
}

/// A keep-alive connection with nothing in flight is closed after the idle timeout.
#[tokio::test]
async fn idle_keep_alive_connection_is_closed() {
    let server = Server::without_kafka(PROJECTS, &["--idle-timeout-ms", "300"]).await;
    let mut stream = tokio::net::TcpStream::connect(server.public_addr)
        .await
        .unwrap();
    stream
        .write_all(b"OPTIONS /api/1/security/ HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    assert!(read_head(&mut stream).await.starts_with("HTTP/1.1 204"));
    let started = Instant::now();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "server closed the idle connection");
    assert!(started.elapsed() >= Duration::from_millis(250));
}

/// Slowloris: headers not complete within the header read timeout close the connection.
#[tokio::test]
async fn slow_headers_are_cut_off() {
    let server = Server::without_kafka(PROJECTS, &["--header-read-timeout-ms", "300"]).await;
    let mut stream = tokio::net::TcpStream::connect(server.public_addr)
        .await
        .unwrap();
    stream
        .write_all(b"POST /api/1/security/ HTTP/1.1\r\nhost: t\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(n == 0 || answer.starts_with("HTTP/1.1 408"), "{answer}");
}

/// At the connection cap the server stops accepting until a connection closes.
#[tokio::test]
async fn connection_cap_holds_new_connections() {
    let server = Server::without_kafka(PROJECTS, &["--max-connections", "1"]).await;
    let mut first = tokio::net::TcpStream::connect(server.public_addr)
        .await
        .unwrap();
    first
        .write_all(b"OPTIONS /api/1/security/ HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    assert!(read_head(&mut first).await.starts_with("HTTP/1.1 204"));
    let url = server.url("/api/1/security/");
    let second = tokio::spawn(async move {
        client()
            .request(reqwest::Method::OPTIONS, url)
            .send()
            .await
            .unwrap()
            .status()
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !second.is_finished(),
        "second connection waits while the first is open"
    );
    drop(first);
    let status = tokio::time::timeout(Duration::from_secs(5), second)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, 204);
}

/// The in-flight request cap answers 503 + Retry-After at once instead of buffering more bodies.
#[tokio::test]
async fn in_flight_cap_answers_503() {
    let server = Server::without_kafka(PROJECTS, &["--max-in-flight-requests", "1"]).await;
    // Hold the only permit: headers sent, body still coming.
    let mut slow = tokio::net::TcpStream::connect(server.public_addr)
        .await
        .unwrap();
    let head =
        "POST /api/1/security/?sentry_key=k1 HTTP/1.1\r\nhost: t\r\ncontent-length: 100\r\n\r\n{";
    slow.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let response = post(&server, "/api/1/security/?sentry_key=k1", "{}").await;
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()[RETRY_AFTER], "1");
    assert_eq!(error_label(response).await, "overloaded");
    drop(slow);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let response = post(&server, "/api/1/security/?sentry_key=k1", "{}").await;
    assert_eq!(
        response.status(),
        400,
        "permit released when the slow client left"
    );
}

/// A client trusting only `cert` (a fresh connection pool, so every request makes a new TLS
/// connection).
fn trusting(cert: &testbed::tls::SelfSigned) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .add_root_certificate(reqwest::Certificate::from_der(&cert.cert_der).unwrap())
        .build()
        .unwrap()
}

/// Writes `contents` to `path` atomically (a temp file renamed over it), as cert-manager and
/// certbot deploy hooks do.
fn replace(path: &std::path::Path, contents: &str) {
    let temp = path.with_extension("new");
    std::fs::write(&temp, contents).unwrap();
    std::fs::rename(&temp, path).unwrap();
}

/// Regression: the certificate was read once at start-up, so a renewed one needed a restart.
#[tokio::test]
async fn tls_certificate_is_reloaded_from_its_files_without_a_restart() {
    let (a, b) = (
        testbed::tls::SelfSigned::generate().unwrap(),
        testbed::tls::SelfSigned::generate().unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    replace(&cert, &a.cert_pem);
    replace(&key, &a.key_pem);
    let flags = [
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
        "--tls-reload-interval-ms",
        "100",
    ];
    let server = Server::without_kafka(PROJECTS, &flags).await;
    let url = format!("https://{}/api/1/security/", server.public_addr);
    let preflight = |cert| {
        let request = trusting(cert).request(reqwest::Method::OPTIONS, &url);
        async move { request.send().await.map(|r| r.status().as_u16()) }
    };
    assert_eq!(preflight(&a).await.unwrap(), 204, "serves certificate A");
    assert!(preflight(&b).await.is_err(), "not B yet");

    // A bad pair (B's certificate with A's key) keeps A.
    replace(&cert, &b.cert_pem);
    let errors = r#"ingest_tls_reloads_total{result="error"}"#;
    testbed::wait::wait_for(
        "the bad pair to be noticed",
        Duration::from_secs(10),
        || async {
            if server.metric(errors).await >= 1.0 {
                Ok(())
            } else {
                Err("no reload error yet".to_owned())
            }
        },
    )
    .await;
    assert_eq!(
        preflight(&a).await.unwrap(),
        204,
        "still A after a bad pair"
    );

    replace(&key, &b.key_pem);
    testbed::wait::wait_for("certificate B", Duration::from_secs(10), || async {
        match preflight(&b).await {
            Ok(204) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert!(preflight(&a).await.is_err(), "A is no longer served");
}
