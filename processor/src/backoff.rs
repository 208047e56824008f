//! Exponential backoff for retries that last until they succeed (dead-letter deliveries, Kafka
//! calls during a rebalance): the wait doubles after each failure up to a cap, and resets on
//! success, so a broker that stays away costs one try per `max` instead of a hot loop.

use std::time::Duration;

/// Consecutive failures and the wait they earn: `initial * 2^(failures-1)`, capped at `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    /// No failure yet. `Config::validate` guarantees `0 < initial <= max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            failures: 0,
        }
    }

    /// Record one more failure and return how long to wait before the next try.
    pub fn fail(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        self.current()
    }

    /// The wait the last failure earned (zero before any).
    pub fn current(&self) -> Duration {
        if self.failures == 0 {
            return Duration::ZERO;
        }
        let doublings = (self.failures - 1).min(31);
        self.initial.saturating_mul(1u32 << doublings).min(self.max)
    }

    /// Failures since the last success.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// A success: the next failure waits `initial` again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_resets() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        assert_eq!(backoff.current(), Duration::ZERO);
        assert_eq!(backoff.fail(), Duration::from_millis(100));
        assert_eq!(backoff.fail(), Duration::from_millis(200));
        assert_eq!(backoff.fail(), Duration::from_millis(350));
        for _ in 0..100 {
            backoff.fail();
        }
        assert_eq!(backoff.current(), Duration::from_millis(350));
        assert_eq!(backoff.failures(), 103);
        backoff.reset();
        assert_eq!(backoff.fail(), Duration::from_millis(100));
    }
}
