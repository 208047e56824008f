//! A minimum body data rate: once a request head has arrived, its connection must deliver
//! bytes at `--min-body-bytes-per-second` after a grace of `--body-grace-ms`, or the request is
//! answered 408 `body_too_slow` and gives its in-flight slot back.
//!
//! The rate is measured on the bytes the connection received (counted by [`crate::server`]
//! below TLS and handed to the request as a [`ReceivedBytes`] extension) while the body is
//! awaited. That catches a body that never comes (an HTTP/2 stream that sends only its
//! headers) and a body trickled a byte at a time, within seconds instead of the whole
//! `--body-read-timeout-ms`, which still caps every body. On HTTP/2 the streams of one
//! connection share its bytes: a connection delivering the rate keeps all its streams alive,
//! and the per-IP in-flight share ([`crate::inflight`]) bounds what that can hold.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use crate::rejection::Rejection;

/// How often a body being awaited is checked against the rate.
const CHECK_EVERY: Duration = Duration::from_millis(250);

/// Bytes received on one connection so far (shared by its requests).
#[derive(Debug, Clone, Default)]
pub struct ReceivedBytes(Arc<AtomicU64>);

impl ReceivedBytes {
    pub fn add(&self, n: usize) {
        self.0.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The minimum rate a body must arrive at.
#[derive(Debug, Clone, Copy)]
pub struct MinRate {
    /// 0 turns the check off.
    pub bytes_per_second: u64,
    pub grace: Duration,
}

impl MinRate {
    /// Whether `received` bytes, `elapsed` after the head, are behind the rate: during the grace
    /// nothing is owed, then `bytes_per_second` for every second past it.
    pub fn is_behind(&self, received: u64, elapsed: Duration) -> bool {
        let Some(past_grace) = elapsed.checked_sub(self.grace) else {
            return false;
        };
        let owed = past_grace.as_secs_f64() * self.bytes_per_second as f64;
        self.bytes_per_second > 0 && (received as f64) < owed
    }

    /// Runs `read` (reading a body) and refuses it with `BodyTooSlow` as soon as the
    /// connection's `meter` falls behind the rate. Without a meter (or with the check off) it
    /// is just `read`.
    pub async fn enforce<T>(
        &self,
        meter: Option<&ReceivedBytes>,
        read: impl Future<Output = Result<T, Rejection>>,
    ) -> Result<T, Rejection> {
        let Some(meter) = meter.filter(|_| self.bytes_per_second > 0) else {
            return read.await;
        };
        let start = meter.get();
        tokio::pin!(read);
        // A small body on a keep-alive connection has usually arrived with its head: read on the
        // first poll, it needs no timer (registering and cancelling one cost ~2,600 instructions
        // per request, deploy/scripts/profile-ingest.sh), nor the clock.
        let first = std::future::poll_fn(|cx| Poll::Ready(read.as_mut().poll(cx))).await;
        if let Poll::Ready(result) = first {
            return result;
        }
        // The first poll took no time worth counting: the rate is owed from here.
        let started = tokio::time::Instant::now();
        let mut checks = tokio::time::interval_at(started + self.grace + CHECK_EVERY, CHECK_EVERY);
        loop {
            tokio::select! {
                result = &mut read => return result,
                _ = checks.tick() => {
                    let received = meter.get().saturating_sub(start);
                    if self.is_behind(received, started.elapsed()) {
                        return Err(Rejection::BodyTooSlow {
                            min_bytes_per_second: self.bytes_per_second,
                        });
                    }
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const RATE: MinRate = MinRate {
        bytes_per_second: 1000,
        grace: Duration::from_secs(2),
    };

    #[test]
    fn nothing_is_owed_during_the_grace_then_the_rate_per_second_past_it() {
        assert!(!RATE.is_behind(0, Duration::from_secs(2)));
        assert!(RATE.is_behind(0, Duration::from_millis(2100)));
        assert!(!RATE.is_behind(100, Duration::from_millis(2100)));
        assert!(RATE.is_behind(2999, Duration::from_secs(5)));
        assert!(!RATE.is_behind(3000, Duration::from_secs(5)));
        let off = MinRate {
            bytes_per_second: 0,
            ..RATE
        };
        assert!(!off.is_behind(0, Duration::from_secs(3600)));
    }

    #[tokio::test]
    async fn a_silent_body_is_refused_after_the_grace_a_flowing_one_is_not() {
        let rate = MinRate {
            bytes_per_second: 1000,
            grace: Duration::from_millis(100),
        };
        let meter = ReceivedBytes::default();
        let silent = rate.enforce(Some(&meter), std::future::pending::<Result<(), _>>());
        let refused = tokio::time::timeout(Duration::from_secs(10), silent)
            .await
            .expect("refused long before 10 s")
            .unwrap_err();
        assert_eq!(refused.reason(), "body_too_slow");

        // 4 KB/s against a minimum of 1 KB/s: the read completes after one second.
        let feeder = {
            let meter = meter.clone();
            tokio::spawn(async move {
                for _ in 0..25 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    meter.add(200);
                }
            })
        };
        let read = async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok::<_, Rejection>("body")
        };
        assert_eq!(rate.enforce(Some(&meter), read).await.unwrap(), "body");
        feeder.await.unwrap();
        let read = async { Ok::<_, Rejection>(1) };
        assert_eq!(
            rate.enforce(None, read).await.unwrap(),
            1,
            "no meter, no check"
        );
    }
}
