//! The bounded LRU behind the enrichment caches (user agents, URLs), counting its hits and
//! misses for `processor_*_cache_lookups_total`.

use std::borrow::Borrow;
use std::hash::Hash;
use std::num::NonZeroUsize;

use lru::LruCache;

/// At most `capacity` values, the least recently used evicted first.
pub struct CountedLru<K, V> {
    cache: LruCache<K, V>,
    hits: u64,
    misses: u64,
}

impl<K: Hash + Eq, V> std::fmt::Debug for CountedLru<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CountedLru")
            .field("cached", &self.cache.len())
            .field("capacity", &self.cache.cap())
            .field("hits", &self.hits)
            .field("misses", &self.misses)
            .finish()
    }
}

impl<K: Hash + Eq, V: Clone> CountedLru<K, V> {
    pub fn new(capacity: NonZeroUsize) -> Self {
        Self {
            cache: LruCache::new(capacity),
            hits: 0,
            misses: 0,
        }
    }

    /// The value cached for `key`, or `compute()`'s, which is then cached.
    pub fn get_or_compute<Q>(&mut self, key: &Q, compute: impl FnOnce() -> V) -> V
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        self.read_or_compute(key, compute, V::clone)
    }

    /// `read` of the value cached for `key`, or of `compute()`'s, which is then cached: for a
    /// caller that needs a part of the value, without cloning all of it.
    pub fn read_or_compute<Q, R>(
        &mut self,
        key: &Q,
        compute: impl FnOnce() -> V,
        read: impl FnOnce(&V) -> R,
    ) -> R
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        if let Some(cached) = self.cache.get(key) {
            self.hits += 1;
            return read(cached);
        }
        self.misses += 1;
        let value = compute();
        let answer = read(&value);
        self.cache.put(key.to_owned(), value);
        answer
    }

    /// Values cached now.
    pub fn len(&self) -> usize {
        self.cache.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
    }

    /// (hits, misses) since start.
    pub fn stats(&self) -> (u64, u64) {
        (self.hits, self.misses)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn computes_once_per_cached_key_and_counts() {
        let mut cache: CountedLru<String, usize> = CountedLru::new(NonZeroUsize::new(1).unwrap());
        let mut computed = 0;
        let mut len = |s: &str| {
            computed += 1;
            s.len()
        };
        assert_eq!(cache.get_or_compute("ab", || len("ab")), 2);
        assert_eq!(cache.get_or_compute("ab", || len("ab")), 2);
        // Capacity 1: "abc" evicts "ab".
        assert_eq!(cache.get_or_compute("abc", || len("abc")), 3);
        assert_eq!(cache.get_or_compute("ab", || len("ab")), 2);
        assert_eq!(computed, 3);
        assert_eq!(cache.stats(), (1, 3));
    }
}
