//! Rate limiting with governor: a per-client limiter with a bounded number of tracked clients,
//! and the per-project quota counted per report.
//!
//! Who "one client" is ([`ClientKeys`]): an IPv4 address (`--ip-limit-ipv4-prefix`, default
//! /32) or an IPv6 /64 (`--ip-limit-ipv6-prefix`, default 64). One host or home usually holds
//! a whole /64, so keying IPv6 by address would let it rotate through 2^64 buckets.
//!
//! Bounding the map: governor's keyed limiter keeps one entry per key forever unless
//! `retain_recent()` runs, so [`IpLimiter`] uses a [`CappedStore`]: a DashMap that admits new
//! clients only while it holds fewer than `max_tracked` of them. Once full, a client not in the
//! map is limited by one of `--ip-overflow-buckets` overflow buckets, picked by a (per-process
//! seeded) hash of its network (IPv4 /24, IPv6 /48; counted in
//! `ingest_ip_limiter_overflow_total`), until the periodic [`IpLimiter::sweep`]
//! (`retain_recent()`) forgets clients whose bucket refilled. So a flood of new addresses from
//! one network drains that network's overflow bucket, and a browser elsewhere keeps its own
//! (it shares a bucket with a given network with odds 1 in `--ip-overflow-buckets`). Memory
//! stays at `max_tracked` entries plus 8 bytes per overflow bucket: every insertion of a new
//! client happens under one mutex that re-checks the size, so racing requests cannot push the
//! map past the cap (known clients never take it).

use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
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

/// The overflow bucket of an untracked client is picked by its network: IPv4 /24.
const OVERFLOW_V4_PREFIX: u8 = 24;
/// ... and IPv6 /48 (a typical site allocation).
const OVERFLOW_V6_PREFIX: u8 = 48;

/// How a client IP becomes a limiter key: the network of `v4_prefix` / `v6_prefix` bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientKeys {
    pub v4_prefix: u8,
    pub v6_prefix: u8,
}

impl Default for ClientKeys {
    /// One IPv4 address, one IPv6 /64.
    fn default() -> Self {
        Self {
            v4_prefix: 32,
            v6_prefix: 64,
        }
    }
}

impl ClientKeys {
    /// The key of `ip`: its network's first address (IPv4-mapped IPv6 counts as IPv4).
    pub fn key(&self, ip: IpAddr) -> IpAddr {
        network(ip, self.v4_prefix, self.v6_prefix)
    }
}

/// `ip` with every bit past the prefix cleared (prefixes beyond the address length keep it whole).
pub fn network(ip: IpAddr, v4_prefix: u8, v6_prefix: u8) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let keep = u32::MAX
                .checked_shl(32 - u32::from(v4_prefix.min(32)))
                .unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(v4) & keep))
        }
        IpAddr::V6(v6) => {
            let keep = u128::MAX
                .checked_shl(128 - u32::from(v6_prefix.min(128)))
                .unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & keep))
        }
    }
}

/// The overflow bucket (of `buckets`) of the client keyed `key`: a hash of its network.
fn overflow_bucket(hasher: &std::hash::RandomState, buckets: usize, key: &IpAddr) -> usize {
    let net = network(*key, OVERFLOW_V4_PREFIX, OVERFLOW_V6_PREFIX);
    (hasher.hash_one(net) % buckets.max(1) as u64) as usize
}

/// A keyed state store with at most `cap` clients; clients beyond share the overflow bucket of
/// their network.
#[derive(Debug)]
pub struct CappedStore {
    map: DashMapStateStore<IpAddr>,
    overflow: Box<[InMemoryState]>,
    /// Seeded per process, so a sender cannot aim its networks at a victim's overflow bucket.
    overflow_hasher: std::hash::RandomState,
    cap: usize,
    /// Serialises insertions of new keys so the size check and the insert are one step.
    /// (`retain_recent` only removes, so it needs no lock.)
    insert: Mutex<()>,
}

impl CappedStore {
    /// At most `cap` clients, and `overflow_buckets` (at least 1) buckets beyond, picked with
    /// `overflow_hasher`.
    pub fn new(
        cap: usize,
        overflow_buckets: usize,
        overflow_hasher: std::hash::RandomState,
    ) -> Self {
        Self {
            map: DashMapStateStore::default(),
            overflow: (0..overflow_buckets.max(1))
                .map(|_| InMemoryState::default())
                .collect(),
            overflow_hasher,
            cap,
            insert: Mutex::new(()),
        }
    }

    /// Which overflow bucket the client keyed `key` uses once the map is full.
    pub fn overflow_bucket(&self, key: &IpAddr) -> usize {
        overflow_bucket(&self.overflow_hasher, self.overflow.len(), key)
    }

    fn measure_overflow<T, F, E>(&self, key: &IpAddr, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        crate::metrics::ip_limiter_overflow();
        self.overflow[self.overflow_bucket(key)].measure_and_replace(&NotKeyed::NonKey, f)
    }
}

impl StateStore for CappedStore {
    type Key = IpAddr;

    fn measure_and_replace<T, F, E>(&self, key: &IpAddr, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        // A known key: measure its own state in place (never inserts, so needs no lock).
        if let Some(state) = self.map.get(key) {
            return state.measure_and_replace(&NotKeyed::NonKey, f);
        }
        // Full: skip the lock, the common case under a flood of new IPs.
        if self.map.len() >= self.cap {
            return self.measure_overflow(key, f);
        }
        // A poisoned lock only means another insert panicked; the map itself is still sound.
        let _insert = self.insert.lock().unwrap_or_else(PoisonError::into_inner);
        if !self.map.contains_key(key) && self.map.len() >= self.cap {
            return self.measure_overflow(key, f);
        }
        let state = self.map.entry(*key).or_default();
        state.measure_and_replace(&NotKeyed::NonKey, f)
    }
}

impl ShrinkableKeyedStateStore<IpAddr> for CappedStore {
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

/// The per-client limiter's settings (`--ip-*` flags).
#[derive(Debug, Clone, Copy)]
pub struct IpLimits {
    pub per_second: NonZeroU32,
    pub burst: NonZeroU32,
    /// Most clients tracked (`--ip-max-tracked`).
    pub max_tracked: usize,
    /// `--ip-overflow-buckets`.
    pub overflow_buckets: usize,
    pub keys: ClientKeys,
}

/// Requests per client (IPv4 address, IPv6 /64), over a clock (the real one in production, a
/// fake one in tests).
pub struct IpLimiter<C: Clock = DefaultClock> {
    limiter: RateLimiter<IpAddr, CappedStore, C, NoOpMiddleware<C::Instant>>,
    keys: ClientKeys,
    /// The store's overflow hasher and bucket count (governor does not lend out its store).
    overflow_hasher: std::hash::RandomState,
    overflow_buckets: usize,
}

impl<C: Clock> std::fmt::Debug for IpLimiter<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IpLimiter")
            .field("tracked", &self.len())
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl IpLimiter<DefaultClock> {
    pub fn new(limits: IpLimits) -> Self {
        Self::with_clock(limits, DefaultClock::default())
    }
}

impl<C: Clock> IpLimiter<C> {
    pub fn with_clock(limits: IpLimits, clock: C) -> Self {
        let quota = Quota::per_second(limits.per_second).allow_burst(limits.burst);
        let overflow_hasher = std::hash::RandomState::new();
        let overflow_buckets = limits.overflow_buckets.max(1);
        let store = CappedStore::new(
            limits.max_tracked,
            overflow_buckets,
            overflow_hasher.clone(),
        );
        let limiter = RateLimiter::new(quota, store, clock);
        Self {
            limiter,
            keys: limits.keys,
            overflow_hasher,
            overflow_buckets,
        }
    }

    /// Counts one request from `ip` against its client's bucket.
    pub fn check(&self, ip: IpAddr) -> Result<(), Rejection> {
        self.limiter
            .check_key(&self.keys.key(ip))
            .map_err(|not_until| Rejection::IpRateLimited {
                retry_after: not_until.wait_time_from(self.limiter.clock().now()),
            })
    }

    /// Which overflow bucket `ip` would use if it arrived while the map is full.
    pub fn overflow_bucket(&self, ip: IpAddr) -> usize {
        overflow_bucket(
            &self.overflow_hasher,
            self.overflow_buckets,
            &self.keys.key(ip),
        )
    }

    /// Forgets clients whose bucket is full again; call periodically.
    pub fn sweep(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
        crate::metrics::ip_limiter_tracked(self.len());
    }

    /// Clients currently tracked.
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

    fn limits(per_second: u32, burst: u32, max_tracked: usize) -> IpLimits {
        IpLimits {
            per_second: nz(per_second),
            burst: nz(burst),
            max_tracked,
            overflow_buckets: 1024,
            keys: ClientKeys::default(),
        }
    }

    #[test]
    fn per_ip_burst_then_refill() {
        let clock = FakeRelativeClock::default();
        let l = IpLimiter::with_clock(limits(1, 2, 10), clock.clone());
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
    fn tracked_ips_are_bounded_and_newcomers_of_one_network_share_an_overflow_bucket() {
        let clock = FakeRelativeClock::default();
        let l = IpLimiter::with_clock(limits(1, 1, 2), clock.clone());
        assert!(l.check(ip(1)).is_ok());
        assert!(l.check(ip(2)).is_ok());
        assert_eq!(l.len(), 2);
        assert!(
            l.check(ip(3)).is_ok(),
            "first newcomer takes the overflow bucket"
        );
        assert!(
            l.check(ip(4)).is_err(),
            "second newcomer of the same /24 shares the same, now empty, bucket"
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
        let l = std::sync::Arc::new(IpLimiter::new(limits(1, 1, 100)));
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

    fn addr(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// Regression (issue 10, item 4): every IPv6 address had its own bucket, so one host
    /// rotating through its /64 was never limited.
    #[test]
    fn an_ipv6_64_rotating_addresses_is_one_client() {
        let clock = FakeRelativeClock::default();
        let l = IpLimiter::with_clock(limits(1, 5, 1000), clock.clone());
        let mut accepted = 0;
        for i in 0..100u16 {
            let addr = addr(&format!("2001:db8:aa:bb:{i:x}:{i:x}::{i:x}"));
            accepted += usize::from(l.check(addr).is_ok());
        }
        assert_eq!(accepted, 5, "one burst for the whole /64");
        assert_eq!(l.len(), 1, "one entry for the whole /64");
        assert!(
            l.check(addr("2001:db8:aa:cc::1")).is_ok(),
            "the next /64 is another client"
        );
        // IPv4 stays per address by default; a coarser prefix is configurable.
        assert!(l.check(ip(1)).is_ok());
        assert!(l.check(ip(2)).is_ok());
        let per_24 = IpLimiter::with_clock(
            IpLimits {
                keys: ClientKeys {
                    v4_prefix: 24,
                    v6_prefix: 48,
                },
                ..limits(1, 1, 10)
            },
            clock,
        );
        assert!(per_24.check(ip(1)).is_ok());
        assert!(per_24.check(ip(2)).is_err(), "one bucket for the /24");
        assert!(per_24.check(addr("2001:db8:aa:1::1")).is_ok());
        assert!(
            per_24.check(addr("2001:db8:aa:2::1")).is_err(),
            "one for the /48"
        );
    }

    #[test]
    fn keys_are_networks() {
        let k = ClientKeys::default();
        assert_eq!(k.key(addr("2001:db8:1:2:3:4:5:6")), addr("2001:db8:1:2::"));
        assert_eq!(k.key(addr("::ffff:203.0.113.7")), addr("203.0.113.7"));
        assert_eq!(k.key(ip(9)), ip(9));
        assert_eq!(network(ip(9), 0, 0), addr("0.0.0.0"));
        assert_eq!(network(addr("2001:db8::1"), 32, 128), addr("2001:db8::1"));
        assert_eq!(network(addr("10.1.2.3"), 8, 128), addr("10.0.0.0"));
    }

    /// Regression (issue 10, item 4): once the map was full, every new client shared ONE
    /// overflow bucket, so one sender's stream of new addresses got every new browser 429.
    #[test]
    fn a_full_map_does_not_refuse_newcomers_of_other_networks() {
        let clock = FakeRelativeClock::default();
        let l = IpLimiter::with_clock(limits(1, 3, 2), clock);
        // The attacker fills the map, then keeps coming from new addresses of its /24.
        let attacker = |n: u8| IpAddr::V4(Ipv4Addr::new(198, 51, 100, n));
        assert!(l.check(attacker(1)).is_ok());
        assert!(l.check(attacker(2)).is_ok());
        let refused = (3..=200u8)
            .filter(|n| l.check(attacker(*n)).is_err())
            .count();
        assert!(
            refused > 190,
            "the attacker's newcomers are limited: {refused}"
        );
        assert_eq!(l.len(), 2);
        // A browser elsewhere, in a bucket other than the attacker's (the hash is seeded per
        // process, so pick one that does not collide; 1 in 1024 would).
        let browser = (0..=255u8)
            .map(|n| IpAddr::V4(Ipv4Addr::new(203, 0, n, 9)))
            .find(|b| l.overflow_bucket(*b) != l.overflow_bucket(attacker(3)))
            .unwrap();
        for i in 0..3 {
            assert!(l.check(browser).is_ok(), "request {i} of a new browser");
        }
        assert!(l.check(browser).is_err(), "and it is still limited");
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
