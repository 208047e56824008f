//! Webhook delivery: the signature receivers verify, the URL check, and the delivery worker
//! (bounded queue, bounded concurrency, retries with exponential backoff, every attempt logged
//! in `alert_deliveries` and counted in `api_webhook_deliveries_total{result}`).
//!
//! Signature (README, "Alerts"): each request carries
//! `X-Palisade-Timestamp: <unix seconds>` and
//! `X-Palisade-Signature: sha256=<hex of HMAC-SHA256(secret, "<timestamp>.<body>")>`. A receiver
//! recomputes the HMAC over the timestamp header, a `.` and the raw body, compares in constant
//! time, and refuses timestamps older than a few minutes (replays).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sha2::{Digest as _, Sha256};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::error::ApiError;
use crate::metrics;
use crate::store::{now_secs, DeliveryRow};

/// Header carrying `sha256=<hex>`.
pub const SIGNATURE_HEADER: &str = "x-palisade-signature";
/// Header carrying the Unix seconds the signature covers.
pub const TIMESTAMP_HEADER: &str = "x-palisade-timestamp";
/// Header carrying the alert id (the same for every attempt: receivers deduplicate on it).
pub const ALERT_ID_HEADER: &str = "x-palisade-alert-id";
/// Header carrying the attempt number (1-based).
pub const ATTEMPT_HEADER: &str = "x-palisade-delivery-attempt";
/// Prefix of generated webhook secrets.
pub const SECRET_PREFIX: &str = "whsec_";
/// Shortest and longest webhook secret a tenant may set, in bytes.
pub const SECRET_LEN: std::ops::RangeInclusive<usize> = 32..=256;
/// Longest error text kept in the delivery log, in bytes.
const MAX_ERROR_BYTES: usize = 200;

/// HMAC-SHA256 (RFC 2104) of `message` under `key`.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    inner.update(message);
    let inner = inner.finalize();
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner);
    outer.finalize().into()
}

/// The `X-Palisade-Signature` value of `body` sent at `timestamp`.
pub fn signature(secret: &str, timestamp: u32, body: &[u8]) -> String {
    let mut message = timestamp.to_string().into_bytes();
    message.push(b'.');
    message.extend_from_slice(body);
    format!(
        "sha256={}",
        hex::encode(hmac_sha256(secret.as_bytes(), &message))
    )
}

/// A new webhook secret: `whsec_` + 64 hex digits (256 random bits).
pub fn generate_secret() -> Result<String, ApiError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(ApiError::Random)?;
    Ok(format!("{SECRET_PREFIX}{}", hex::encode(bytes)))
}

/// Checks a webhook URL: http or https, a host, at most `max_bytes`, and (unless
/// `allow_private`) no loopback, private, link-local or unspecified IP literal and no
/// `localhost`. Host names are not resolved. Returns the URL as normalised by the parser.
pub fn check_url(text: &str, max_bytes: usize, allow_private: bool) -> Result<String, String> {
    if text.len() > max_bytes {
        return Err(format!("longer than {max_bytes} bytes"));
    }
    let url = url::Url::parse(text).map_err(|error| format!("not a URL: {error}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("only http and https URLs".to_owned());
    }
    let private = match url.host() {
        None => return Err("no host".to_owned()),
        Some(url::Host::Domain(name)) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            name == "localhost" || name.ends_with(".localhost")
        }
        Some(url::Host::Ipv4(ip)) => private_ip(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => private_ip(IpAddr::V6(ip)),
    };
    if private && !allow_private {
        return Err(
            "a loopback, private or link-local address (see --webhook-allow-private)".to_owned(),
        );
    }
    Ok(url.to_string())
}

fn private_ip(ip: IpAddr) -> bool {
    let v4 = |ip: Ipv4Addr| {
        let [a, b, ..] = ip.octets();
        ip.is_loopback()
            || ip.is_private()
            || ip.is_link_local()
            || ip.is_unspecified()
            || ip.is_broadcast()
            || (a == 100 && (64..128).contains(&b)) // shared address space (RFC 6598)
    };
    match ip {
        IpAddr::V4(ip) => v4(ip),
        IpAddr::V6(ip) => {
            let first = ip.segments()[0];
            ip.is_loopback()
                || ip.is_unspecified()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link-local
                || ip.to_ipv4_mapped().is_some_and(v4)
        }
    }
}

/// One alert to send to one endpoint.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub project: u64,
    pub alert_id: String,
    pub url: String,
    pub secret: String,
    pub body: Bytes,
}

/// The delivery queue: bounded by `--webhook-queue`.
pub fn queue(capacity: usize) -> (mpsc::Sender<Delivery>, mpsc::Receiver<Delivery>) {
    mpsc::channel(capacity)
}

/// Queues `delivery`; a full queue drops it (logged as `dropped`, counted).
pub async fn enqueue(app: &App, sender: &mpsc::Sender<Delivery>, delivery: Delivery) {
    let Err(error) = sender.try_send(delivery) else {
        return;
    };
    let delivery = match error {
        mpsc::error::TrySendError::Full(delivery) | mpsc::error::TrySendError::Closed(delivery) => {
            delivery
        }
    };
    tracing::warn!(project = delivery.project, alert = %delivery.alert_id, "webhook queue full, delivery dropped");
    log(
        app,
        &delivery,
        0,
        "dropped",
        0,
        "delivery queue full (--webhook-queue)",
    )
    .await;
}

/// Sends queued deliveries until `shutdown` (deliveries still queued or waiting to retry at
/// shutdown are abandoned; their alerts stay listed as `pending`).
pub async fn deliver(
    app: Arc<App>,
    mut queue: mpsc::Receiver<Delivery>,
    shutdown: CancellationToken,
) {
    let settings = &app.config.alerts;
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_millis(settings.webhook_timeout_ms))
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(error = %error, "cannot build the webhook client; no webhook is sent");
            return;
        }
    };
    let permits = Arc::new(Semaphore::new(settings.webhook_concurrency));
    let mut tasks = JoinSet::new();
    loop {
        let delivery = tokio::select! {
            () = shutdown.cancelled() => break,
            delivery = queue.recv() => match delivery {
                Some(delivery) => delivery,
                None => break,
            },
        };
        let permit = tokio::select! {
            () = shutdown.cancelled() => break,
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_closed) => break,
            },
        };
        let (app, client, shutdown) = (Arc::clone(&app), client.clone(), shutdown.clone());
        tasks.spawn(async move {
            attempts(&app, &client, &delivery, &shutdown).await;
            drop(permit);
        });
        while tasks.try_join_next().is_some() {}
    }
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
}

/// Sends one delivery, retrying with exponential backoff up to `--webhook-max-attempts`.
async fn attempts(
    app: &App,
    client: &reqwest::Client,
    delivery: &Delivery,
    shutdown: &CancellationToken,
) {
    let settings = &app.config.alerts;
    let mut backoff = Duration::from_millis(settings.webhook_backoff_ms);
    let max_backoff = Duration::from_millis(settings.webhook_max_backoff_ms);
    for attempt in 1..=settings.webhook_max_attempts {
        let timestamp = now_secs();
        let sent = client
            .post(&delivery.url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(
                SIGNATURE_HEADER,
                signature(&delivery.secret, timestamp, &delivery.body),
            )
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header(ALERT_ID_HEADER, &delivery.alert_id)
            .header(ATTEMPT_HEADER, attempt.to_string())
            .body(delivery.body.clone())
            .send()
            .await;
        let (status, error) = match sent {
            Ok(response) if response.status().is_success() => (response.status().as_u16(), None),
            Ok(response) => (
                response.status().as_u16(),
                Some(format!("HTTP {}", response.status().as_u16())),
            ),
            // reqwest's top-level message alone hides the cause.
            Err(error) => (0, Some(schemas::error_chain(&error))),
        };
        let last = attempt == settings.webhook_max_attempts;
        let result = match (&error, last) {
            (None, _) => "ok",
            (Some(_), false) => "retry",
            (Some(_), true) => "failed",
        };
        log(
            app,
            delivery,
            attempt,
            result,
            status,
            error.as_deref().unwrap_or(""),
        )
        .await;
        if error.is_none() || last {
            return;
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(max_backoff);
    }
}

/// Logs one attempt in `alert_deliveries` and counts it.
async fn log(
    app: &App,
    delivery: &Delivery,
    attempt: u32,
    result: &'static str,
    status: u16,
    error: &str,
) {
    metrics::webhook_delivery(result);
    let mut error = error.to_owned();
    if error.len() > MAX_ERROR_BYTES {
        let mut end = MAX_ERROR_BYTES;
        while !error.is_char_boundary(end) {
            end -= 1;
        }
        error.truncate(end);
    }
    let row = DeliveryRow {
        alert_id: delivery.alert_id.clone(),
        url: delivery.url.clone(),
        attempt,
        at: now_secs(),
        result: result.to_owned(),
        status_code: status,
        error,
    };
    if let Err(error) = app.store.log_delivery(delivery.project, &row).await {
        tracing::warn!(error = %error, alert = %delivery.alert_id, "cannot log a webhook delivery");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test case 2.
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than the block is hashed first.
        assert_eq!(
            hex::encode(hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn signature_covers_timestamp_and_body() {
        let a = signature("s3cret", 1_700_000_000, b"{}");
        assert!(a.starts_with("sha256=") && a.len() == 7 + 64);
        assert_ne!(a, signature("s3cret", 1_700_000_001, b"{}"));
        assert_ne!(a, signature("s3cret", 1_700_000_000, b"{ }"));
        assert_ne!(a, signature("other", 1_700_000_000, b"{}"));
        assert_eq!(
            a,
            format!(
                "sha256={}",
                hex::encode(hmac_sha256(b"s3cret", b"1700000000.{}"))
            )
        );
    }

    #[test]
    fn webhook_urls_are_checked() {
        let ok = |url: &str| check_url(url, 2048, false);
        assert!(ok("https://hooks.example.com/x?y=1").is_ok());
        assert!(ok("ftp://hooks.example.com/").is_err());
        assert!(ok("not a url").is_err());
        for private in [
            "http://127.0.0.1:9000/",
            "http://10.1.2.3/",
            "http://192.168.0.1/",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]/",
            "http://[fd00::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://localhost:8080/",
            "http://0.0.0.0/",
        ] {
            assert!(ok(private).is_err(), "{private}");
            assert!(check_url(private, 2048, true).is_ok(), "{private}");
        }
        assert!(check_url("https://a.example/", 10, false).is_err());
    }

    #[test]
    fn generated_secrets_are_distinct() {
        let a = generate_secret().unwrap();
        assert!(a.starts_with(SECRET_PREFIX) && a.len() == SECRET_PREFIX.len() + 64);
        assert_ne!(a, generate_secret().unwrap());
    }
}
