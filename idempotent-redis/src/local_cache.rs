//! An in-process read-through cache of completed records, so repeated
//! replays in one process cost no round trip.
//!
//! Sound because a completed record never changes until it expires: no
//! operation of this crate writes over or deletes a completed record. An
//! entry lives until the record's own expiry as seen from this process, never
//! later: the remaining time is measured by the server and counted from an
//! instant taken before the request was sent. It also lives at most
//! `max_age`, the bound on how long a record deleted by hand (or lost by a
//! server without persistence) keeps replaying here.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use idempotent_core::backend::Fingerprint;

/// What a cache lookup found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Cached {
    /// A live completed record with the caller's fingerprint: its output.
    Completed(Vec<u8>),
    /// A live completed record with another fingerprint.
    Mismatch,
}

struct Entry {
    fingerprint: Fingerprint,
    output: Vec<u8>,
    expires_at: Instant,
    /// The insert that wrote this entry, to tell its position in `order`
    /// from positions left behind by earlier entries of the same key.
    inserted: u64,
}

struct Entries {
    by_key: HashMap<String, Entry>,
    /// Keys in insertion order with their insert's number, for evicting the
    /// oldest when full. An entry removed on read (expired) leaves its
    /// position behind; a position whose number is not its key's current
    /// entry's is stale and skipped.
    order: VecDeque<(String, u64)>,
    inserts: u64,
}

impl Entries {
    fn is_current(&self, (key, inserted): &(String, u64)) -> bool {
        self.by_key
            .get(key)
            .is_some_and(|entry| entry.inserted == *inserted)
    }
}

/// A bounded map from record keys to completed records.
pub(crate) struct LocalCache {
    max_entries: usize,
    max_age: Duration,
    entries: Mutex<Entries>,
}

impl LocalCache {
    pub(crate) fn new(max_entries: usize, max_age: Duration) -> Self {
        Self {
            max_entries,
            max_age,
            entries: Mutex::new(Entries {
                by_key: HashMap::with_capacity(max_entries.min(1024)),
                order: VecDeque::new(),
                inserts: 0,
            }),
        }
    }

    /// The live record at `key`, if cached.
    pub(crate) fn get(&self, key: &str, fingerprint: &Fingerprint) -> Option<Cached> {
        let mut entries = self.lock();
        let entry = entries.by_key.get(key)?;
        if Instant::now() >= entry.expires_at {
            entries.by_key.remove(key);
            return None;
        }
        Some(if entry.fingerprint == *fingerprint {
            Cached::Completed(entry.output.clone())
        } else {
            Cached::Mismatch
        })
    }

    /// Caches the completed record at `key`, which the server said expires
    /// `expires_in` after `measured_from` (an instant taken before the
    /// request that learned it was sent).
    pub(crate) fn insert(
        &self,
        key: &str,
        fingerprint: &Fingerprint,
        output: &[u8],
        measured_from: Instant,
        expires_in: Duration,
    ) {
        if self.max_entries == 0 {
            return;
        }
        let expires_at = measured_from + expires_in.min(self.max_age);
        if expires_at <= Instant::now() {
            return;
        }
        let mut entries = self.lock();
        entries.inserts += 1;
        let inserted = entries.inserts;
        let entry = Entry {
            fingerprint: *fingerprint,
            output: output.to_vec(),
            expires_at,
            inserted,
        };
        entries.by_key.insert(key.to_owned(), entry);
        entries.order.push_back((key.to_owned(), inserted));
        while entries.by_key.len() > self.max_entries {
            let Some(oldest) = entries.order.pop_front() else {
                break;
            };
            if entries.is_current(&oldest) {
                entries.by_key.remove(&oldest.0);
            }
        }
        // Stale positions pile up when entries are replaced or expire on
        // read; drop them before the queue outgrows the map by much.
        if entries.order.len() > 2 * self.max_entries {
            let mut order = std::mem::take(&mut entries.order);
            order.retain(|position| entries.is_current(position));
            entries.order = order;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // An entry is inserted or removed whole, so a panic elsewhere while
        // the lock was held cannot leave a half-written one.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn fingerprint(byte: u8) -> Fingerprint {
        Fingerprint::from_bytes([byte; 32])
    }

    #[test]
    fn a_cached_record_is_served_to_its_fingerprint_and_refused_to_others() {
        let cache = LocalCache::new(10, HOUR);
        cache.insert("k", &fingerprint(1), b"out", Instant::now(), HOUR);
        assert_eq!(
            cache.get("k", &fingerprint(1)),
            Some(Cached::Completed(b"out".to_vec()))
        );
        assert_eq!(cache.get("k", &fingerprint(2)), Some(Cached::Mismatch));
        assert_eq!(cache.get("other", &fingerprint(1)), None);
    }

    #[test]
    fn an_entry_expires_with_its_record_or_at_max_age() {
        let cache = LocalCache::new(10, Duration::from_millis(40));
        let now = Instant::now();
        cache.insert(
            "short",
            &fingerprint(1),
            b"",
            now,
            Duration::from_millis(20),
        );
        cache.insert("long", &fingerprint(1), b"", now, HOUR);
        std::thread::sleep(Duration::from_millis(25));
        assert_eq!(
            cache.get("short", &fingerprint(1)),
            None,
            "the record's expiry"
        );
        assert!(cache.get("long", &fingerprint(1)).is_some());
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(cache.get("long", &fingerprint(1)), None, "max_age");
    }

    #[test]
    fn an_expiry_already_past_is_not_cached() {
        let cache = LocalCache::new(10, HOUR);
        let long_ago = Instant::now() - Duration::from_millis(50);
        cache.insert(
            "k",
            &fingerprint(1),
            b"",
            long_ago,
            Duration::from_millis(10),
        );
        assert_eq!(cache.get("k", &fingerprint(1)), None);
    }

    #[test]
    fn the_oldest_entry_is_evicted_when_full() {
        let cache = LocalCache::new(2, HOUR);
        for key in ["a", "b", "c"] {
            cache.insert(key, &fingerprint(1), b"", Instant::now(), HOUR);
        }
        assert_eq!(cache.get("a", &fingerprint(1)), None);
        assert!(cache.get("b", &fingerprint(1)).is_some());
        assert!(cache.get("c", &fingerprint(1)).is_some());
        assert!(cache.lock().order.len() <= 4);
    }

    #[test]
    fn the_queue_stays_bounded_when_entries_expire_and_return() {
        let cache = LocalCache::new(4, HOUR);
        for _ in 0..20 {
            for key in ["k0", "k1", "k2"] {
                let expires_in = Duration::from_millis(2);
                cache.insert(key, &fingerprint(1), b"", Instant::now(), expires_in);
            }
            std::thread::sleep(Duration::from_millis(3));
            for key in ["k0", "k1", "k2"] {
                assert_eq!(cache.get(key, &fingerprint(1)), None);
            }
        }
        let queued = cache.lock().order.len();
        assert!(queued <= 8, "{queued} positions for at most 4 entries");
    }

    #[test]
    fn a_zero_sized_cache_keeps_nothing() {
        let cache = LocalCache::new(0, HOUR);
        cache.insert("k", &fingerprint(1), b"", Instant::now(), HOUR);
        assert_eq!(cache.get("k", &fingerprint(1)), None);
    }
}
