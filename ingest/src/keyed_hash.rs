//! The hasher of the maps a request looks up keys in that a sender picks (client networks,
//! project ids, public keys): foldhash with a per-map seed from the OS.
//!
//! std's `HashMap` hashes with SipHash-1-3, about 100 to 150 instructions per small key; a
//! report request hashes five keys (its public key and project in the projects snapshot, its
//! client network and project in the in-flight shares, twice). foldhash costs about 20 per key.
//! It is not a cryptographic hash, so the seed is what keeps a sender from aiming its keys at one
//! bucket: it comes from std's `RandomState`, whose keys come from the OS (foldhash's own
//! `RandomState` seeds from addresses and the clock). Every such map is bounded by config (the
//! in-flight caps, the projects file), which bounds what a collision could cost anyway.

use std::hash::BuildHasher;

use foldhash::fast::SeedableRandomState;
use foldhash::SharedSeed;

/// foldhash under a secret seed.
pub type KeyedHasher = SeedableRandomState;

/// A hasher with a fresh seed from the OS (through std's `RandomState`).
pub fn keyed_hasher() -> KeyedHasher {
    let seed = std::hash::RandomState::new().hash_one(0_u64);
    SeedableRandomState::with_seed(seed, SharedSeed::global_random())
}

/// A `HashMap` with a [`keyed_hasher`].
pub type KeyedMap<K, V> = std::collections::HashMap<K, V, KeyedHasher>;

/// An empty [`KeyedMap`].
pub fn keyed_map<K, V>() -> KeyedMap<K, V> {
    KeyedMap::with_hasher(keyed_hasher())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two maps hash the same key differently: the seed is per map, not a constant.
    #[test]
    fn every_hasher_has_its_own_seed() {
        let key = "load-key";
        let hashes: std::collections::HashSet<u64> =
            (0..8).map(|_| keyed_hasher().hash_one(key)).collect();
        assert_eq!(hashes.len(), 8);
    }
}
