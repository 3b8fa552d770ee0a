//! The records behind the lock and their index.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::index::Indices;
use super::record::{forget_at, Record, State};

#[derive(Default)]
pub(super) struct Store {
    pub(super) records: HashMap<Arc<str>, Record>,
    pub(super) index: Indices,
}

impl Store {
    /// Drops every record expired at `now`, and moves claims whose lease ran
    /// out to `stale`. Each record passes through here at most twice, so the
    /// cost is amortised O(log n) per record.
    pub(super) fn purge(&mut self, now: Instant) {
        while let Some(entry) = self.index.live.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let ((_, token), key) = entry.remove_entry();
            if let Some(record) = self.records.get(&key).filter(|r| r.token == token) {
                if let State::Claimed {
                    lease_until, lease, ..
                } = record.state
                {
                    self.index
                        .stale
                        .insert((forget_at(lease_until, lease), token), key);
                }
            }
        }
        drop_expired(&mut self.index.stale, &mut self.records, now);
        drop_expired(&mut self.index.completed, &mut self.records, now);
    }

    /// The waiters' `Notify` of the live claim at `key`, and its lease left.
    pub(super) fn live_claim(&self, key: &str, now: Instant) -> Option<(Arc<Notify>, Duration)> {
        match &self.records.get(key)?.state {
            State::Claimed {
                lease_until,
                notify,
                ..
            } if *lease_until > now => Some((
                Arc::clone(notify),
                lease_until.saturating_duration_since(now),
            )),
            _ => None,
        }
    }
}

fn drop_expired(
    index: &mut BTreeMap<(Instant, u64), Arc<str>>,
    records: &mut HashMap<Arc<str>, Record>,
    now: Instant,
) {
    while let Some(entry) = index.first_entry() {
        if entry.key().0 > now {
            break;
        }
        let ((_, token), key) = entry.remove_entry();
        if records
            .get(&key)
            .is_some_and(|record| record.token == token)
        {
            records.remove(&key);
        }
    }
}
