//! Rate limiting with governor: a per-client-IP request limiter with a bounded number of tracked
//! IPs, and the per-project quota counted per report.
//!
//! Bounding the IP map: governor's keyed limiter keeps one entry per key forever unless
//! `retain_recent()` runs, so [`IpLimiter`] uses a [`CappedStore`]: a DashMap that admits new IPs
//! only while it holds fewer than `max_tracked` of them. Once full, requests from IPs not in the
//! map all share ONE overflow bucket (counted in `ingest_ip_limiter_overflow_total`) until the
//! periodic [`IpLimiter::sweep`] (`retain_recent()`) forgets IPs whose bucket refilled. Under a
//! flood of distinct IPs the overflow bucket throttles the newcomers together, and memory stays
//! at `max_tracked` entries: every insertion of a new IP happens under one mutex that re-checks
//! the size, so racing requests cannot push the map past the cap (known IPs never take it).

use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::{DashMapStateStore, ShrinkableKeyedStateStore};
use governor::state::{InMemoryState, NotKeyed, StateStore};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::rejection::Rejection;

/// A keyed state store with at most `cap` keys; keys beyond share one overflow state.
#[derive(Debug)]
pub struct CappedStore<K: Hash + Eq + Clone> {
    map: DashMapStateStore<K>,
    overflow: InMemoryState,
    cap: usize,
    /// Serialises insertions of new keys so the size check and the insert are one step.
    /// (`retain_recent` only removes, so it needs no lock.)
    insert: Mutex<()>,
}

impl<K: Hash + Eq + Clone> CappedStore<K> {
    pub fn new(cap: usize) -> Self {
        Self {
            map: DashMapStateStore::default(),
            overflow: InMemoryState::default(),
            cap,
            insert: Mutex::new(()),
        }
    }

    fn measure_overflow<T, F, E>(&self, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        crate::metrics::ip_limiter_overflow();
        self.overflow.measure_and_replace(&NotKeyed::NonKey, f)
    }
}

impl<K: Hash + Eq + Clone> StateStore for CappedStore<K> {
    type Key = K;

    fn measure_and_replace<T, F, E>(&self, key: &K, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        // A known key: measure its own state in place (never inserts, so needs no lock).
        if let Some(state) = self.map.get(key) {
            return state.measure_and_replace(&NotKeyed::NonKey, f);
        }
        // Full: skip the lock, the common case under a flood of new IPs.
        if self.map.len() >= self.cap {
            return self.measure_overflow(f);
        }
        // A poisoned lock only means another insert panicked; the map itself is still sound.
        let _insert = self.insert.lock().unwrap_or_else(PoisonError::into_inner);
        if !self.map.contains_key(key) && self.map.len() >= self.cap {
            return self.measure_overflow(f);
        }
        let state = self.map.entry(key.clone()).or_default();
        state.measure_and_replace(&NotKeyed::NonKey, f)
    }
}

impl<K: Hash + Eq + Clone> ShrinkableKeyedStateStore<K> for CappedStore<K> {
    fn retain_recent(&self, drop_below: Nanos) {
        self.map.retain_recent(drop_below);
    }

    fn shrink_to_fit(&self) {
        self.map.shrink_to_fit();
    }

    fn len(&self) -> usize {
        self.map.len()
    }

    fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// Requests per client IP, over a clock (the real one in production, a fake one in tests).
pub struct IpLimiter<C: Clock = DefaultClock> {
    limiter: RateLimiter<IpAddr, CappedStore<IpAddr>, C, NoOpMiddleware<C::Instant>>,
}

impl<C: Clock> std::fmt::Debug for IpLimiter<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IpLimiter")
            .field("tracked", &self.len())
            .finish_non_exhaustive()
    }
}

impl IpLimiter<DefaultClock> {
    pub fn new(per_second: NonZeroU32, burst: NonZeroU32, max_tracked: usize) -> Self {
        Self::with_clock(per_second, burst, max_tracked, DefaultClock::default())
    }
}

impl<C: Clock> IpLimiter<C> {
    pub fn with_clock(
        per_second: NonZeroU32,
        burst: NonZeroU32,
        max_tracked: usize,
        clock: C,
    ) -> Self {
        let quota = Quota::per_second(per_second).allow_burst(burst);
        let limiter = RateLimiter::new(quota, CappedStore::new(max_tracked), clock);
        Self { limiter }
    }

    /// Counts one request from `ip`.
    pub fn check(&self, ip: IpAddr) -> Result<(), Rejection> {
        self.limiter
            .check_key(&ip)
            .map_err(|not_until| Rejection::IpRateLimited {
                retry_after: not_until.wait_time_from(self.limiter.clock().now()),
            })
    }

    /// Forgets IPs whose bucket is full again; call periodically.
    pub fn sweep(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
        crate::metrics::ip_limiter_tracked(self.len());
    }

    /// IPs currently tracked.
    pub fn len(&self) -> usize {
        self.limiter.len()
    }

    pub fn is_empty(&self) -> bool {
        self.limiter.is_empty()
    }
}

/// Counts `n` reports against a project's quota. `n == 0` (everything filtered) always passes.
/// A batch larger than the burst can never pass: it is answered 429 with the time to refill
/// the whole burst (configure `burst >= max_batch_len` to avoid it).
pub fn check_quota(
    limiter: &DefaultDirectRateLimiter,
    quota: Quota,
    n: usize,
) -> Result<(), Rejection> {
    let Some(n) = u32::try_from(n).ok().and_then(NonZeroU32::new) else {
        return Ok(());
    };
    match limiter.check_n(n) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(not_until)) => Err(Rejection::QuotaExceeded {
            retry_after: not_until.wait_time_from(limiter.clock().now()),
        }),
        Err(_insufficient) => Err(Rejection::QuotaExceeded {
            retry_after: quota.burst_size_replenished_in(),
        }),
    }
}

/// How long until the `Retry-After` of a refusal, for tests and logs.
pub fn retry_after(rejection: &Rejection) -> Option<Duration> {
    match rejection {
        Rejection::IpRateLimited { retry_after } | Rejection::QuotaExceeded { retry_after } => {
            Some(*retry_after)
        }
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;
    use std::net::Ipv4Addr;

    fn nz(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).unwrap()
    }

    fn ip(n: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, n))
    }

    #[test]
    fn per_ip_burst_then_refill() {
        let clock = FakeRelativeClock::default();
        let l = IpLimiter::with_clock(nz(1), nz(2), 10, clock.clone());
        assert!(l.check(ip(1)).is_ok());
        assert!(l.check(ip(1)).is_ok());
        let refused = l.check(ip(1)).unwrap_err();
        assert_eq!(refused.reason(), "ip_rate_limited");
        assert_eq!(retry_after(&refused), Some(Duration::from_secs(1)));
        assert!(l.check(ip(2)).is_ok(), "another IP has its own bucket");
        clock.advance(Duration::from_secs(1));
        assert!(l.check(ip(1)).is_ok());
    }

    #[test]
    fn tracked_ips_are_bounded_and_newcomers_share_the_overflow_bucket() {
        let clock = FakeRelativeClock::default();
        let l = IpLimiter::with_clock(nz(1), nz(1), 2, clock.clone());
        assert!(l.check(ip(1)).is_ok());
        assert!(l.check(ip(2)).is_ok());
        assert_eq!(l.len(), 2);
        assert!(
            l.check(ip(3)).is_ok(),
            "first newcomer takes the overflow bucket"
        );
        assert!(
            l.check(ip(4)).is_err(),
            "second newcomer shares the same, now empty, bucket"
        );
        assert_eq!(l.len(), 2, "the map never grows past the cap");
        clock.advance(Duration::from_secs(5));
        l.sweep();
        assert_eq!(l.len(), 0, "refilled buckets are forgotten");
        assert!(l.check(ip(4)).is_ok());
        assert_eq!(l.len(), 1);
    }

    /// Regression: the size check and the insert used to be separate steps, so threads racing
    /// with new IPs could push the map past the cap.
    #[test]
    fn racing_new_ips_never_exceed_the_cap() {
        let l = std::sync::Arc::new(IpLimiter::new(nz(1), nz(1), 100));
        let threads: Vec<_> = (0..4u8)
            .map(|t| {
                let l = std::sync::Arc::clone(&l);
                std::thread::spawn(move || {
                    for i in 0..=255u8 {
                        let _ = l.check(IpAddr::V4(Ipv4Addr::new(10, t, i, 1)));
                        assert!(l.len() <= 100);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(l.len(), 100, "filled up to the cap, not past it");
    }

    #[test]
    fn quota_counts_reports_not_requests() {
        let quota = Quota::per_second(nz(1)).allow_burst(nz(5));
        let limiter = governor::RateLimiter::direct(quota);
        assert!(
            check_quota(&limiter, quota, 0).is_ok(),
            "filtered-only batches consume nothing"
        );
        assert!(check_quota(&limiter, quota, 3).is_ok());
        let refused = check_quota(&limiter, quota, 3).unwrap_err();
        assert_eq!(refused.reason(), "quota_exceeded");
        assert!(
            check_quota(&limiter, quota, 2).is_ok(),
            "a refused batch consumed nothing"
        );
        let too_big = check_quota(&limiter, quota, 6).unwrap_err();
        assert_eq!(retry_after(&too_big), Some(Duration::from_secs(5)));
    }
}
