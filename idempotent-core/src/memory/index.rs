//! The records in order of when they stop mattering, with what they weigh:
//! how the store finds expired records and eviction candidates without
//! scanning, and knows its size in O(1).

use std::collections::BTreeMap;
use std::ops::{Add, Sub};
use std::sync::Arc;

use tokio::time::Instant;

use super::record::{forget_at, Record, State};
use super::store::Records;

/// Every record is in exactly one class after [`Indices::lapse`] at `now`:
/// claims with `lease_until > now` in `live`, other claims in `stale`, and
/// completed records in `completed`.
///
/// Entries are keyed by `(instant, record key)`. The record key is unique in
/// the store, so no two records ever share an entry, whatever their tokens:
/// tokens are chosen by callers and nothing here relies on them differing.
#[derive(Default)]
pub(super) struct Indices {
    /// Running claims, by `lease_until`.
    live: Class,
    /// Claims whose lease ran out, by when they are forgotten.
    stale: Class,
    /// Completed records, by `expires_at`.
    completed: Class,
}

/// How many records, and how many bytes they are charged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Tally {
    pub(super) entries: usize,
    pub(super) bytes: usize,
}

impl Add for Tally {
    type Output = Tally;

    fn add(self, other: Tally) -> Tally {
        Tally {
            entries: self.entries + other.entries,
            bytes: self.bytes.saturating_add(other.bytes),
        }
    }
}

impl Sub for Tally {
    type Output = Tally;

    fn sub(self, other: Tally) -> Tally {
        Tally {
            entries: self.entries.saturating_sub(other.entries),
            bytes: self.bytes.saturating_sub(other.bytes),
        }
    }
}

/// The tally of each class.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Tallies {
    pub(super) live: Tally,
    pub(super) stale: Tally,
    pub(super) completed: Tally,
}

impl Tallies {
    pub(super) fn total(&self) -> Tally {
        self.live + self.stale + self.completed
    }
}

impl Indices {
    /// Indexes `record`, charged as it is now.
    pub(super) fn insert(&mut self, record: &Record, now: Instant) {
        let (class, at) = match &record.state {
            State::Claimed { lease_until, .. } if *lease_until > now => {
                (&mut self.live, *lease_until)
            }
            State::Claimed {
                lease_until, lease, ..
            } => (&mut self.stale, forget_at(*lease_until, *lease)),
            State::Completed { expires_at, .. } => (&mut self.completed, *expires_at),
        };
        class.insert(at, Arc::clone(&record.key), record.charge());
    }

    /// Takes `record` out of the index; call it before changing the record,
    /// which decides where its entry is.
    pub(super) fn remove(&mut self, record: &Record) {
        match &record.state {
            // A claim may sit in either class depending on when the last
            // lapse ran; trying both keeps this independent of that.
            State::Claimed {
                lease_until, lease, ..
            } => {
                if !self.live.remove(*lease_until, &record.key) {
                    self.stale
                        .remove(forget_at(*lease_until, *lease), &record.key);
                }
            }
            State::Completed { expires_at, .. } => {
                self.completed.remove(*expires_at, &record.key);
            }
        }
    }

    /// Moves claims whose lease ended by `now` from `live` to `stale`. Each
    /// record passes through here at most once per lease, so the cost is
    /// amortised O(log n) per operation.
    pub(super) fn lapse(&mut self, now: Instant, records: &Records) {
        while let Some(((_, key), charge)) = self.live.pop_due(now) {
            if let Some(State::Claimed {
                lease_until, lease, ..
            }) = records.get(&key).map(|record| &record.state)
            {
                self.stale
                    .insert(forget_at(*lease_until, *lease), key, charge);
            }
        }
    }

    /// The key of a stale claim or completed record expired at `now`, taken
    /// out of the index.
    pub(super) fn pop_expired(&mut self, now: Instant) -> Option<Arc<str>> {
        let ((_, key), _) = self
            .stale
            .pop_due(now)
            .or_else(|| self.completed.pop_due(now))?;
        Some(key)
    }

    /// The stale claim forgotten soonest, taken out of the index.
    pub(super) fn pop_stale(&mut self) -> Option<(Instant, Arc<str>)> {
        self.stale.pop_first()
    }

    /// The completed record expiring soonest, taken out of the index.
    pub(super) fn pop_completed(&mut self) -> Option<(Instant, Arc<str>)> {
        self.completed.pop_first()
    }

    pub(super) fn tallies(&self) -> Tallies {
        Tallies {
            live: self.live.tally(),
            stale: self.stale.tally(),
            completed: self.completed.tally(),
        }
    }
}

/// One ordered class of records, with the sum of their charges.
#[derive(Default)]
struct Class {
    order: BTreeMap<(Instant, Arc<str>), usize>,
    bytes: usize,
}

impl Class {
    fn insert(&mut self, at: Instant, key: Arc<str>, charge: usize) {
        // A record's key is unique, so nothing is replaced; were it otherwise,
        // the replaced charge leaves the sum with it.
        if let Some(replaced) = self.order.insert((at, key), charge) {
            self.bytes -= replaced;
        }
        self.bytes += charge;
    }

    /// Whether the entry was there.
    fn remove(&mut self, at: Instant, key: &Arc<str>) -> bool {
        match self.order.remove(&(at, Arc::clone(key))) {
            Some(charge) => {
                self.bytes -= charge;
                true
            }
            None => false,
        }
    }

    /// The first entry if it is due at `now`, taken out.
    fn pop_due(&mut self, now: Instant) -> Option<((Instant, Arc<str>), usize)> {
        let entry = self
            .order
            .first_entry()
            .filter(|entry| entry.key().0 <= now)?;
        let (at_key, charge) = entry.remove_entry();
        self.bytes -= charge;
        Some((at_key, charge))
    }

    fn pop_first(&mut self) -> Option<(Instant, Arc<str>)> {
        let (at_key, charge) = self.order.pop_first()?;
        self.bytes -= charge;
        Some(at_key)
    }

    fn tally(&self) -> Tally {
        Tally {
            entries: self.order.len(),
            bytes: self.bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{FencingToken, Fingerprint};

    fn claim(key: &str, token: u64, lease: Duration, now: Instant) -> Record {
        Record::claim(
            key,
            Fingerprint::from_bytes([0; 32]),
            FencingToken::new(token),
            lease,
            now,
        )
    }

    fn records(list: Vec<Record>) -> Records {
        list.into_iter()
            .map(|record| (Arc::clone(&record.key), record))
            .collect()
    }

    #[test]
    fn records_sharing_an_instant_and_a_token_keep_their_own_entries() {
        let now = Instant::now();
        let lease = Duration::from_secs(30);
        let (a, b) = (claim("a", 7, lease, now), claim("b", 7, lease, now));
        let mut index = Indices::default();
        index.insert(&a, now);
        index.insert(&b, now);
        assert_eq!(index.tallies().live.entries, 2);
        assert_eq!(index.tallies().live.bytes, a.charge() + b.charge());
        index.remove(&a);
        assert_eq!(index.tallies().live.entries, 1);
        assert_eq!(index.tallies().live.bytes, b.charge());
        index.remove(&a);
        assert_eq!(
            index.tallies().live.entries,
            1,
            "removing twice is harmless"
        );
    }

    #[test]
    fn a_lapsed_claim_moves_to_stale_then_expires_one_lease_later() {
        let start = Instant::now();
        let lease = Duration::from_secs(10);
        let records = records(vec![claim("k", 1, lease, start)]);
        let mut index = Indices::default();
        index.insert(&records["k"], start);

        index.lapse(start + Duration::from_secs(9), &records);
        assert_eq!(index.tallies().live.entries, 1);
        let at_lease_end = start + lease;
        index.lapse(at_lease_end, &records);
        assert_eq!(index.tallies().live, Tally::default());
        assert_eq!(index.tallies().stale.entries, 1);
        assert_eq!(index.tallies().stale.bytes, records["k"].charge());
        assert_eq!(index.pop_expired(at_lease_end), None);

        // Found and removed in `stale`, where it now is.
        index.remove(&records["k"]);
        assert_eq!(index.tallies().total(), Tally::default());
        index.insert(&records["k"], at_lease_end);
        assert_eq!(index.pop_expired(start + lease * 2).as_deref(), Some("k"));
        assert_eq!(index.tallies().total(), Tally::default());
    }

    #[test]
    fn candidates_come_soonest_first() {
        let now = Instant::now();
        let mut index = Indices::default();
        let mut completed = Vec::new();
        for (key, ttl) in [("late", 300), ("soon", 100), ("middle", 200)] {
            let mut record = claim(key, 1, Duration::from_secs(1), now);
            record.state = State::Completed {
                output: vec![0; ttl],
                expires_at: now + Duration::from_secs(ttl as u64),
            };
            index.insert(&record, now);
            completed.push(record);
        }
        let order: Vec<_> = std::iter::from_fn(|| index.pop_completed())
            .map(|(_, key)| key.to_string())
            .collect();
        assert_eq!(order, ["soon", "middle", "late"]);
        assert_eq!(index.tallies().total(), Tally::default());
        assert_eq!(index.pop_stale(), None);
    }
}
