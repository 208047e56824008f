//! d) SIGTERM to ingest under load: the request in flight at the signal completes (202), the
//! producer flushes, ingest exits 0, and every report answered 2xx is counted once. Requests
//! that find the listener closed are unanswered (a browser retries them): allowed here.

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::stack::{check_answers, FaultStack};
use crate::support::children::signal;
use crate::support::load::{body, marker, Load, KEY, PROJECT};

const SCENARIO: &str = "ingest_sigterm_under_load";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_sigterm_under_load() {
    let Some(stack) = FaultStack::start().await else {
        return;
    };
    let Some(mut ingest) = stack
        .ingest(&["--drain-timeout-ms", "5000", "--flush-timeout-ms", "5000"])
        .await
    else {
        return;
    };
    let Some(_processor) = stack.processor(&[]).await else {
        return;
    };
    ingest.wait_ready(200, Duration::from_secs(60)).await;
    let mut plan = FaultStack::plan(SCENARIO, &ingest);
    plan.requests_per_sec *= 2;
    let load = Load::start(plan);
    tokio::time::sleep(Duration::from_secs(5)).await;

    // A request whose body is half sent when SIGTERM arrives: it is in flight.
    let slow = [marker(SCENARIO, u64::MAX, 0)];
    let slow_body = body(&slow);
    let (head, tail) = slow_body.split_at(slow_body.len() / 2);
    let mut stream = TcpStream::connect(("127.0.0.1", ingest.public_port))
        .await
        .unwrap();
    let request = format!(
        "POST /api/{PROJECT}/security/?sentry_key={KEY} HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Content-Type: application/reports+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{head}",
        slow_body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    signal(ingest.pid(), "-TERM");
    tokio::time::sleep(Duration::from_millis(300)).await;
    stream.write_all(tail.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(
        response.starts_with("HTTP/1.1 202"),
        "the in-flight request completes after SIGTERM: {response}"
    );

    let status = ingest.wait_exit(Duration::from_secs(30)).await;
    assert!(status.success(), "exit {status}: {}", ingest.log_tail());
    let mut tally = load.stop().await;
    check_answers(SCENARIO, &tally, true);
    assert_eq!(tally.refused_requests, 0, "no 503 while draining");
    tally.accepted.extend(slow);
    tally.offered += 1;
    tally.accepted_requests += 1;
    let ledger = stack.ledger(SCENARIO, &tally).await;
    ledger.assert_exact();
}
