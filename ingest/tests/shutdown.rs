//! Shutdown drains and flushes: requests in flight when the token is cancelled still finish, every
//! report answered 2xx is in Kafka, new connections are refused, and `run` returns within its
//! drain + flush bounds.
//!
//! Needs tansu (skips when missing, panics with `CI=true`; see `testbed::kafka`).

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use schemas::ReportMessage;
use support::Server;
use testbed::kafka::Tansu;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const PROJECTS: &str = r#"
[[project]]
id = 7
name = "drain"
quota = { per_second = 100000, burst = 100000 }
keys = [{ public_key = "drain-key" }]
"#;

/// Longest `run` may take to return after the cancel: the drain timeout (2 s here) plus the
/// flush timeout (2 s) plus slack for a loaded machine.
const RUN_RETURN_BOUND: Duration = Duration::from_secs(10);

fn body(marker: &str) -> String {
    format!(
        r#"{{"csp-report":{{"document-uri":"https://drain.example/{marker}","blocked-uri":"inline","violated-directive":"script-src"}}}}"#
    )
}

/// The status line and body of a raw HTTP/1.1 exchange (`Connection: close`).
async fn read_response(stream: &mut TcpStream) -> (u16, String) {
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .await
        .expect("read response");
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {response:?}"));
    (status, response)
}

#[tokio::test]
async fn in_flight_requests_finish_and_every_accepted_report_is_in_kafka() {
    let Some(tansu) = Tansu::start().await else {
        return;
    };
    tansu.create_topic("drain", 2).await.expect("create topic");

    let args = [
        "--kafka-topic",
        "drain",
        "--drain-timeout-ms",
        "2000",
        "--flush-timeout-ms",
        "2000",
    ];
    let mut server = Server::start(PROJECTS, &tansu.bootstrap(), &args).await;
    let addr = server.public_addr;
    let run = server.task.take().expect("the server was just started");
    let shutdown = server.shutdown.clone();
    let url = format!("http://{addr}/api/7/security/?sentry_key=drain-key");
    let client = reqwest::Client::new();

    // Warm-up: the producer is connected before the interesting part starts.
    let warm = client
        .post(&url)
        .body(body("warm"))
        .send()
        .await
        .expect("warm-up answered");
    assert_eq!(warm.status(), 202);
    let mut accepted = vec!["warm".to_owned()];

    // 1. A request whose body is only half sent when the token is cancelled: it is in flight.
    let slow_body = body("slow");
    let (head, tail) = slow_body.split_at(slow_body.len() / 2);
    let mut slow = TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "POST /api/7/security/?sentry_key=drain-key HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/csp-report\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{head}",
        slow_body.len()
    );
    slow.write_all(request.as_bytes()).await.expect("send head");

    // 2. A burst of concurrent requests, racing the cancel.
    let burst: Vec<_> = (0..40)
        .map(|n| {
            let client = client.clone();
            let url = url.clone();
            tokio::spawn(async move {
                let marker = format!("burst-{n}");
                let answer = client.post(&url).body(body(&marker)).send().await;
                (marker, answer.map(|response| response.status().as_u16()))
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let cancelled = Instant::now();
    shutdown.cancel();

    // The half-sent request completes after the cancel and is still accepted.
    tokio::time::sleep(Duration::from_millis(300)).await;
    slow.write_all(tail.as_bytes()).await.expect("send tail");
    let (status, response) = read_response(&mut slow).await;
    assert_eq!(status, 202, "in-flight request finished: {response}");
    accepted.push("slow".to_owned());

    let mut refused = 0;
    for task in burst {
        let (marker, answer) = task.await.expect("burst task");
        match answer {
            Ok(202) => accepted.push(marker),
            Ok(status) => panic!("{marker}: unexpected {status}"),
            // Connections that arrived after the listener closed are refused: not accepted.
            Err(_) => refused += 1,
        }
    }

    let result = tokio::time::timeout(RUN_RETURN_BOUND, run).await;
    let returned_after = cancelled.elapsed();
    result
        .expect("run returns within the drain + flush bound")
        .expect("run task")
        .expect("run flushed and returned Ok");
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the public listener is closed after run returned"
    );

    let stored = testbed::kafka::consume_all(
        &tansu.bootstrap(),
        "drain",
        Duration::from_secs(2),
        Duration::from_secs(30),
    )
    .await
    .expect("consume");
    let documents: HashSet<String> = stored
        .iter()
        .map(|record| ReportMessage::decode(&record.payload).expect("decodes"))
        .filter_map(|message| message.report.document_url)
        .collect();
    for marker in &accepted {
        let document = format!("https://drain.example/{marker}");
        assert!(
            documents.contains(&document),
            "{document} answered 202 but not in kafka"
        );
    }
    eprintln!(
        "shutdown: {} accepted, {refused} refused, run returned {returned_after:?} after cancel",
        accepted.len()
    );
}
