//! The records in order of when they stop mattering.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::time::Instant;

use super::record::{forget_at, Record, State};

/// Each ordered by when its records stop mattering, so expired records are
/// found at the fronts, each in O(log n), instead of by scanning the map.
///
/// Keys are `(instant, token)`: tokens are unique per backend and a record
/// keeps its claim's token once completed, so no two records share a key.
/// After [`Store::purge`] at `now`, every record is in exactly one index:
/// claims with `lease_until > now` in `live`, other claims in `stale`, and
/// completed records in `completed`.
#[derive(Default)]
pub(super) struct Indices {
    /// Running claims, by `lease_until`.
    pub(super) live: BTreeMap<(Instant, u64), Arc<str>>,
    /// Claims whose lease ran out, by when they are forgotten.
    pub(super) stale: BTreeMap<(Instant, u64), Arc<str>>,
    /// Completed records, by `expires_at`.
    pub(super) completed: BTreeMap<(Instant, u64), Arc<str>>,
}

impl Indices {
    pub(super) fn insert(&mut self, record: &Record, now: Instant) {
        let (index, at) = match &record.state {
            State::Claimed { lease_until, .. } if *lease_until > now => {
                (&mut self.live, *lease_until)
            }
            State::Claimed {
                lease_until, lease, ..
            } => (&mut self.stale, forget_at(*lease_until, *lease)),
            State::Completed { expires_at, .. } => (&mut self.completed, *expires_at),
        };
        index.insert((at, record.token), Arc::clone(&record.key));
    }

    pub(super) fn remove(&mut self, record: &Record) {
        match &record.state {
            // A claim may sit in either index depending on when the last purge
            // ran; removing from both keeps this independent of that.
            State::Claimed {
                lease_until, lease, ..
            } => {
                self.live.remove(&(*lease_until, record.token));
                self.stale
                    .remove(&(forget_at(*lease_until, *lease), record.token));
            }
            State::Completed { expires_at, .. } => {
                self.completed.remove(&(*expires_at, record.token));
            }
        }
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.live.len() + self.stale.len() + self.completed.len()
    }
}
