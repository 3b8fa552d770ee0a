//! What a full store evicts to make room.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::record::Record;
use super::store::Store;

impl Store {
    /// Makes room for one more record: evicts a claim whose lease ran out,
    /// else the completed record that expires soonest. `Err` carries the
    /// number of live claims when nothing may be evicted.
    pub(super) fn make_room(
        &mut self,
        max_entries: usize,
        now: Instant,
    ) -> Result<Option<Evicted>, usize> {
        // Insertion always goes through here, so the store never holds more
        // than `max_entries` and one eviction is always enough.
        if self.records.len() < max_entries {
            return Ok(None);
        }
        let (kind, entry) = if let Some(entry) = self.index.stale.pop_first() {
            (EvictedKind::StaleClaim, entry)
        } else if let Some(entry) = self.index.completed.pop_first() {
            let ttl_left = entry.0 .0.saturating_duration_since(now);
            (EvictedKind::Completed { ttl_left }, entry)
        } else {
            return Err(self.index.live.len());
        };
        let ((_, token), key) = entry;
        let record = match self.records.get(&key) {
            Some(record) if record.token == token => self.records.remove(&key),
            _ => None,
        };
        Ok(Some(Evicted {
            key,
            kind,
            _record: record,
        }))
    }
}

/// A record evicted to make room, reported once the lock is released.
pub(super) struct Evicted {
    pub(super) key: Arc<str>,
    pub(super) kind: EvictedKind,
    /// Dropped with this value, so a large output is freed outside the lock.
    pub(super) _record: Option<Record>,
}

pub(super) enum EvictedKind {
    StaleClaim,
    Completed { ttl_left: Duration },
}
