//! Fair shares of what one sender may hold at once: report requests in flight (the global
//! `--max-in-flight-requests` cap, and within it a cap per client IP and per project) and, for
//! the accept loop in [`crate::server`], open connections per peer IP.
//!
//! Without the shares one client could hold every global slot (e.g. one HTTP/2 connection
//! opening many streams that never send their bodies) and every other tenant would be answered
//! 503 `overloaded` (RELIABILITY.md). The per-key counts live in a [`KeyedSlots`] map whose
//! entries exist only while a slot is held; slots are taken only after the global permit (or
//! the connection permit), so the map never holds more keys than that global cap.
//!
//! Every report request takes and gives back a slot in two of these maps, so their cost is per
//! request: they hash with [`crate::keyed_hash`] (foldhash, seeded from the OS), not std's
//! SipHash, and the global cap is one atomic counter, not a semaphore (nothing ever waits for a
//! permit: a request over the cap is refused at once).

use std::collections::hash_map::Entry;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::keyed_hash::{keyed_map, KeyedMap};
use crate::limit::ClientKeys;
use crate::rejection::Rejection;

/// How long a client refused for holding too many slots is asked to wait (`Retry-After`).
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// At most `per_key` slots per key, counted in a map that holds only keys with a slot taken.
#[derive(Debug)]
pub struct KeyedSlots<K: Hash + Eq + Clone> {
    counts: Mutex<KeyedMap<K, usize>>,
    per_key: usize,
}

/// One slot of `key`, given back on drop.
#[derive(Debug)]
pub struct Slot<K: Hash + Eq + Clone> {
    slots: Arc<KeyedSlots<K>>,
    key: K,
}

impl<K: Hash + Eq + Clone> KeyedSlots<K> {
    pub fn new(per_key: usize) -> Arc<Self> {
        Arc::new(Self {
            counts: Mutex::new(keyed_map()),
            per_key,
        })
    }

    /// The most slots one key may hold.
    pub fn per_key(&self) -> usize {
        self.per_key
    }

    /// A slot of `key`, or `None` when the key already holds `per_key`.
    pub fn try_take(self: &Arc<Self>, key: K) -> Option<Slot<K>> {
        // A poisoned lock only means a holder panicked between two integer updates.
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let held = counts.entry(key.clone()).or_insert(0);
        if *held >= self.per_key {
            return None;
        }
        *held += 1;
        Some(Slot {
            slots: Arc::clone(self),
            key,
        })
    }

    /// Keys holding at least one slot.
    pub fn len(&self) -> usize {
        self.counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<K: Hash + Eq + Clone> Drop for Slot<K> {
    fn drop(&mut self) {
        let mut counts = self
            .slots
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // One lookup (`get_mut` then `remove` hashed the key twice).
        if let Entry::Occupied(mut held) = counts.entry(self.key.clone()) {
            if *held.get() <= 1 {
                held.remove();
            } else {
                *held.get_mut() -= 1;
            }
        }
    }
}

/// The in-flight budget of report requests.
#[derive(Debug)]
pub struct InFlight {
    /// Requests admitted and not yet answered, at most `global_cap`.
    global: AtomicUsize,
    global_cap: usize,
    /// Who one client is: the same networks as the rate limiter (`--ip-limit-ipv4-prefix`,
    /// `--ip-limit-ipv6-prefix`), so an IPv6 sender cannot take a share per address.
    keys: ClientKeys,
    per_ip: Arc<KeyedSlots<IpAddr>>,
    per_project: Arc<KeyedSlots<u64>>,
}

/// What one admitted request holds until its answer is built.
#[derive(Debug)]
pub struct Admission<'a> {
    _global: GlobalSlot<'a>,
    _ip: Slot<IpAddr>,
    _project: Slot<u64>,
}

/// One of the global cap's slots, given back on drop.
#[derive(Debug)]
struct GlobalSlot<'a>(&'a AtomicUsize);

impl Drop for GlobalSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl InFlight {
    pub fn new(global: usize, per_ip: usize, per_project: usize, keys: ClientKeys) -> Self {
        Self {
            global: AtomicUsize::new(0),
            global_cap: global,
            keys,
            per_ip: KeyedSlots::new(per_ip),
            per_project: KeyedSlots::new(per_project),
        }
    }

    /// Admits one request of `project` from `ip`, or refuses it at once: 503 `overloaded` when
    /// the global cap is reached, 429 `client_in_flight` / `project_in_flight` when this client
    /// or project already holds its share. The global slot is taken first so the per-key maps
    /// never hold more keys than the global cap.
    pub fn admit(&self, ip: IpAddr, project: u64) -> Result<Admission<'_>, Rejection> {
        let global = self.take_global().ok_or(Rejection::Overloaded {
            retry_after: RETRY_AFTER,
        })?;
        let ip =
            self.per_ip
                .try_take(self.keys.key(ip))
                .ok_or_else(|| Rejection::ClientInFlight {
                    limit: self.per_ip.per_key(),
                    retry_after: RETRY_AFTER,
                })?;
        let project =
            self.per_project
                .try_take(project)
                .ok_or_else(|| Rejection::ProjectInFlight {
                    limit: self.per_project.per_key(),
                    retry_after: RETRY_AFTER,
                })?;
        Ok(Admission {
            _global: global,
            _ip: ip,
            _project: project,
        })
    }

    /// A global slot, or `None` at the cap. Never counts past the cap, even for a moment, so
    /// racing requests cannot both see room for one. (The count guards no other memory:
    /// relaxed ordering is enough.)
    fn take_global(&self) -> Option<GlobalSlot<'_>> {
        self.global
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
                (held < self.global_cap).then_some(held + 1)
            })
            .ok()
            .map(|_| GlobalSlot(&self.global))
    }

    /// Requests admitted and not yet answered.
    pub fn admitted(&self) -> usize {
        self.global.load(Ordering::Relaxed)
    }

    /// Client keys and projects with a request in flight (the maps' sizes).
    pub fn tracked(&self) -> (usize, usize) {
        (self.per_ip.len(), self.per_project.len())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_client_is_the_network_the_rate_limiter_keys_by() {
        let keys = ClientKeys {
            v4_prefix: 24,
            v6_prefix: 56,
        };
        let in_flight = InFlight::new(8, 1, 8, keys);
        let held = in_flight.admit(ip("2001:db8:1:200::1"), 1).unwrap();
        // Another address of the same /56 (another /64 within it) is the same client ...
        let refused = in_flight
            .admit(ip("2001:db8:1:2ff:aaaa::9"), 1)
            .unwrap_err();
        assert_eq!(refused.reason(), "client_in_flight");
        // ... the next /56 is not.
        let other = in_flight.admit(ip("2001:db8:1:300::1"), 1).unwrap();
        // IPv4 by its /24, IPv4-mapped IPv6 as IPv4.
        let v4 = in_flight.admit(ip("10.0.0.1"), 1).unwrap();
        let refused = in_flight.admit(ip("::ffff:10.0.0.77"), 1).unwrap_err();
        assert_eq!(refused.reason(), "client_in_flight");
        drop((held, other, v4));
        assert_eq!(in_flight.tracked(), (0, 0));
    }

    #[test]
    fn slots_are_capped_per_key_and_forgotten_when_all_are_back() {
        let slots = KeyedSlots::new(2);
        let a1 = slots.try_take("a").unwrap();
        let a2 = slots.try_take("a").unwrap();
        assert!(slots.try_take("a").is_none(), "a holds its share");
        let b = slots.try_take("b").unwrap();
        assert_eq!(slots.len(), 2);
        drop(a1);
        let a3 = slots.try_take("a").unwrap();
        drop(a2);
        assert_eq!(slots.len(), 2, "a still holds one slot");
        assert!(slots.try_take("a").is_some(), "a holds one of two");
        drop((a3, b));
        assert!(slots.is_empty(), "no key without a slot stays in the map");
    }

    #[test]
    fn one_client_or_project_cannot_take_every_global_slot() {
        let in_flight = InFlight::new(4, 2, 3, ClientKeys::default());
        let (a, b, c) = (ip("10.0.0.1"), ip("10.0.0.2"), ip("10.0.0.3"));
        let held = [
            in_flight.admit(a, 1).unwrap(),
            in_flight.admit(a, 1).unwrap(),
        ];
        let refused = in_flight.admit(a, 2).unwrap_err();
        assert_eq!(
            (refused.status().as_u16(), refused.reason()),
            (429, "client_in_flight")
        );
        let third = in_flight.admit(b, 1).unwrap();
        let refused = in_flight.admit(c, 1).unwrap_err();
        assert_eq!(
            (refused.status().as_u16(), refused.reason()),
            (429, "project_in_flight")
        );
        let other_project = in_flight.admit(c, 2).unwrap();
        let refused = in_flight.admit(c, 3).unwrap_err();
        assert_eq!(
            (refused.status().as_u16(), refused.reason()),
            (503, "overloaded")
        );
        assert_eq!(in_flight.tracked(), (3, 2));
        assert_eq!(in_flight.admitted(), 4);
        drop((held, third, other_project));
        assert_eq!(in_flight.tracked(), (0, 0));
        assert_eq!(in_flight.admitted(), 0);
        assert!(in_flight.admit(c, 3).is_ok(), "refusals held nothing");
        assert_eq!(
            in_flight.admitted(),
            0,
            "an admission dropped at once gives its slot back"
        );
    }

    /// Guards the global cap as an atomic count (it was a semaphore): racing admissions never
    /// hold more than the cap at once, and every slot comes back.
    #[test]
    fn racing_admissions_never_exceed_the_global_cap() {
        const CAP: usize = 3;
        let in_flight = InFlight::new(CAP, 1000, 1000, ClientKeys::default());
        let admitted = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for thread in 0..8u8 {
                let (in_flight, admitted) = (&in_flight, &admitted);
                scope.spawn(move || {
                    for round in 0..2000u64 {
                        if let Ok(held) = in_flight.admit(IpAddr::from([10, 0, 0, thread]), round) {
                            let now = in_flight.admitted();
                            assert!(now <= CAP, "{now} admitted with a cap of {CAP}");
                            admitted.fetch_add(1, Ordering::Relaxed);
                            drop(held);
                        }
                    }
                });
            }
        });
        assert!(admitted.into_inner() > 0);
        assert_eq!(in_flight.admitted(), 0);
        assert_eq!(in_flight.tracked(), (0, 0));
    }
}
