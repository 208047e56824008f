//! Who a client is, over HTTP against a real ingest (issue 10, items 4 and 5): an IPv6 /64 is
//! one client however many addresses it rotates through; `X-Forwarded-For` is believed only
//! from `--trusted-proxies`, walked right to left past them; and a full per-IP map does not get
//! a new browser in another network refused because of one sender's flood of new addresses.
//!
//! Every request here uses an unknown key: past the per-IP limit it is 401 `unknown_key`, at
//! the limit 429 `ip_rate_limited`, so no Kafka is needed and the status says which bucket paid.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Instant;

use support::{client, error_label, Server, PROJECTS};

/// Per-IP rate 1/s, burst 5.
const RATE: u64 = 1;
const BURST: u64 = 5;

/// POSTs from the client named by `forwarded` (an `X-Forwarded-For` value); `true` when the
/// per-IP limit let it through (401), `false` when it refused it (429).
async fn passes(server: &Server, forwarded: &str) -> bool {
    let response = client()
        .post(server.url("/api/1/security/?sentry_key=nope"))
        .header("content-type", "application/csp-report")
        .header("x-forwarded-for", forwarded)
        .body("{}")
        .send()
        .await
        .unwrap();
    match response.status().as_u16() {
        401 => true,
        429 => {
            assert_eq!(error_label(response).await, "ip_rate_limited");
            false
        }
        other => panic!("unexpected {other}: {}", error_label(response).await),
    }
}

async fn start(trusted: &str, extra: &[&str]) -> Server {
    let mut flags = vec![
        "--trusted-proxies",
        trusted,
        "--ip-rate-per-second",
        "1",
        "--ip-burst",
        "5",
    ];
    flags.extend_from_slice(extra);
    Server::without_kafka(PROJECTS, &flags).await
}

/// How many of `forwarded` passed, and the most GCRA lets one client pass in that time.
async fn count(server: &Server, forwarded: impl IntoIterator<Item = String>) -> (u64, u64) {
    let started = Instant::now();
    let mut passed = 0;
    for f in forwarded {
        passed += u64::from(passes(server, &f).await);
    }
    let bound = BURST + (RATE as f64 * started.elapsed().as_secs_f64()).floor() as u64 + 1;
    (passed, bound)
}

/// Regression (issue 10, item 4): every IPv6 address had its own bucket, so a host rotating
/// through its /64 (2^64 addresses) was never limited.
#[tokio::test]
async fn an_ipv6_64_rotating_addresses_is_limited_as_one_client() {
    let server = start("127.0.0.1", &[]).await;
    let (passed, bound) = count(
        &server,
        (0..30u32).map(|i| format!("2001:db8:aa:bb:{i:x}:{:x}::{i:x}", i * 7)),
    )
    .await;
    assert!(
        (BURST..=bound).contains(&passed),
        "30 addresses of one /64 got {passed} through; one client may pass {BURST}..={bound}"
    );
    assert!(
        passes(&server, "2001:db8:aa:cc::1").await,
        "the next /64 is another client"
    );
    // IPv4 clients stay one per address.
    for i in 0..10 {
        assert!(passes(&server, &format!("198.51.100.{i}")).await);
    }
    server.shutdown_and_wait().await.expect("run succeeds");
}

/// Regression (issue 10, item 5): with forwarding trusted, any peer's header was believed, so a
/// direct client chose its own IP (and a fresh bucket per request).
#[tokio::test]
async fn an_untrusted_peers_forwarded_for_is_ignored() {
    // The test client (127.0.0.1) is not one of the trusted proxies.
    let server = start("10.0.0.0/8", &[]).await;
    let (passed, bound) = count(&server, (0..20).map(|i| format!("203.0.113.{i}"))).await;
    assert!(
        (BURST..=bound).contains(&passed),
        "20 spoofed addresses got {passed} through; the one real client may pass {BURST}..={bound}"
    );
    server.shutdown_and_wait().await.expect("run succeeds");
}

/// Regression (issue 10, item 5): the last `X-Forwarded-For` entry was taken even when it was
/// another trusted proxy of the chain, and anything the client prepends must not matter.
#[tokio::test]
async fn the_chain_is_walked_right_to_left_past_trusted_hops() {
    let server = start("127.0.0.0/8", &[]).await;
    // Twenty clients behind the same two proxies (127.0.0.9 appended by the outer one): each
    // is its own client, so none is limited.
    for i in 0..20 {
        assert!(
            passes(&server, &format!("6.6.6.6, 203.0.113.{i}, 127.0.0.9")).await,
            "client {i} behind the proxies was limited: keyed by a proxy"
        );
    }
    // One client rotating what it prepends is still one client.
    let (passed, bound) = count(
        &server,
        (0..20).map(|i| format!("192.0.2.{i}, 198.51.100.50, 127.0.0.9")),
    )
    .await;
    assert!(
        (BURST..=bound).contains(&passed),
        "a client prepending spoofed hops got {passed} through; {BURST}..={bound} allowed"
    );
    server.shutdown_and_wait().await.expect("run succeeds");
}

/// Regression (issue 10, item 4): once `--ip-max-tracked` clients were tracked, every new
/// client shared ONE overflow bucket, so one sender's stream of new addresses got every new
/// browser 429. Now a new client uses its network's overflow bucket; with 65536 buckets a
/// browser elsewhere shares the sender's with odds 1 in 65536.
#[tokio::test]
async fn a_full_limiter_map_does_not_refuse_new_browsers_elsewhere() {
    let server = start(
        "127.0.0.1",
        &[
            "--ip-max-tracked",
            "4",
            "--ip-overflow-buckets",
            "65536",
            // No sweep during the test: the map stays full.
            "--ip-sweep-interval-ms",
            "600000",
        ],
    )
    .await;
    // The sender fills the map, then keeps coming from new addresses of its /24.
    for i in 0..4 {
        assert!(passes(&server, &format!("198.51.100.{i}")).await);
    }
    let (passed, bound) = count(&server, (4..40).map(|i| format!("198.51.100.{i}"))).await;
    assert!(
        passed <= bound,
        "the sender's new addresses share its network's overflow bucket: {passed} > {bound}"
    );
    assert!(server.metric("ingest_ip_limiter_overflow_total").await >= 36.0);
    // New browsers in other networks (IPv4 and IPv6) still get through, each a full burst.
    for browser in ["203.0.113.9", "2001:db8:77::1"] {
        for i in 0..BURST {
            assert!(
                passes(&server, browser).await,
                "request {i} of new browser {browser} refused"
            );
        }
    }
    server.shutdown_and_wait().await.expect("run succeeds");
}
