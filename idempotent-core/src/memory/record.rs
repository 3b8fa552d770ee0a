//! One stored record, a claim or a completed result, and what it weighs
//! against the store's byte budget.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::{FencingToken, Fingerprint};

/// What a record costs beyond its key and output: its map slot, its index
/// entry, the key's `Arc` header, a claim's `Notify`, and the allocator's
/// rounding. An estimate, kept above the sizes it stands for by a test, so a
/// store full of tiny records is still bounded by bytes that mean something.
pub(super) const RECORD_OVERHEAD: usize = 384;

/// What a claim is charged for the output it will store. A completion with
/// an output up to this size replaces the reservation and needs no new room,
/// so the runtime's small "not stored" marker always fits, even in a full
/// store: a body that ran can always be recorded as having run.
pub(super) const CLAIM_RESERVE: usize = 256;

/// Stands in for "never" when a ttl or lease is too long to add to the clock
/// (`Duration::MAX`), so huge values saturate instead of panicking.
const FAR_FUTURE: Duration = Duration::from_secs(60 * 60 * 24 * 365 * 30);

pub(super) struct Record {
    /// Shared with the index entries, so re-indexing never allocates.
    pub(super) key: Arc<str>,
    pub(super) fingerprint: Fingerprint,
    /// The token of the claim that wrote the record, kept once completed.
    pub(super) token: FencingToken,
    pub(super) state: State,
}

impl Record {
    /// A new claim of `key`, its lease starting `now`.
    pub(super) fn claim(
        key: &str,
        fingerprint: Fingerprint,
        token: FencingToken,
        lease: Duration,
        now: Instant,
    ) -> Self {
        Self {
            key: Arc::from(key),
            fingerprint,
            token,
            state: State::Claimed {
                lease_until: deadline(now, lease),
                lease,
                notify: Arc::new(Notify::new()),
            },
        }
    }

    /// Whether the record is a claim holding `token`, its lease live or not:
    /// a slow holder nobody took over may still finish its work.
    pub(super) fn held_by(&self, token: FencingToken) -> bool {
        matches!(self.state, State::Claimed { .. }) && self.token == token
    }

    /// The bytes the record is charged against the store's byte budget.
    pub(super) fn charge(&self) -> usize {
        let output = match &self.state {
            State::Claimed { .. } => CLAIM_RESERVE,
            State::Completed { output, .. } => output.len(),
        };
        charge(self.key.len(), output)
    }
}

/// The charge of a record with a key of `key_len` bytes and an output of
/// `output_len` bytes.
pub(super) fn charge(key_len: usize, output_len: usize) -> usize {
    key_len
        .saturating_add(output_len)
        .saturating_add(RECORD_OVERHEAD)
}

pub(super) enum State {
    Claimed {
        lease_until: Instant,
        /// The lease last granted, which is also how long the claim is kept
        /// once it runs out.
        lease: Duration,
        /// Wakes duplicates waiting in `wait_for_change` on complete and
        /// release.
        notify: Arc<Notify>,
    },
    Completed {
        output: Vec<u8>,
        expires_at: Instant,
    },
}

impl State {
    /// Grants a claim `lease` from `now`; a completed record is left alone.
    pub(super) fn lease(&mut self, now: Instant, lease: Duration) {
        if let State::Claimed {
            lease_until,
            lease: current,
            ..
        } = self
        {
            *lease_until = deadline(now, lease);
            *current = lease;
        }
    }

    pub(super) fn into_notify(self) -> Option<Arc<Notify>> {
        match self {
            State::Claimed { notify, .. } => Some(notify),
            State::Completed { .. } => None,
        }
    }
}

/// `from + after`, saturating at a far future instead of overflowing.
pub(super) fn deadline(from: Instant, after: Duration) -> Instant {
    from.checked_add(after)
        .or_else(|| from.checked_add(FAR_FUTURE))
        .unwrap_or(from)
}

/// When a claim whose lease ended at `lease_until` is forgotten: one more
/// lease later (see `MemoryBackend`'s docs for why it is kept at all).
pub(super) fn forget_at(lease_until: Instant, lease: Duration) -> Instant {
    deadline(lease_until, lease)
}

#[cfg(test)]
mod tests {
    use std::mem::size_of;

    use super::*;

    #[test]
    fn the_overhead_covers_what_a_record_holds_besides_key_and_output() {
        // One map slot (key and record), one index entry, and the headers of
        // the key's and the Notify's allocations; half as much again for the
        // maps' spare capacity and the allocator's rounding.
        let slot = size_of::<(Arc<str>, Record)>();
        let index_entry = size_of::<((Instant, Arc<str>), usize)>();
        let arc_header = 2 * size_of::<usize>();
        let notify = arc_header + size_of::<Notify>();
        let measured = slot + index_entry + arc_header + notify;
        assert!(
            measured * 3 / 2 <= RECORD_OVERHEAD,
            "{measured} bytes measured: raise RECORD_OVERHEAD"
        );
    }

    #[test]
    fn a_claim_is_charged_its_key_the_reserve_and_the_overhead() {
        let now = Instant::now();
        let token = FencingToken::new(1);
        let fingerprint = Fingerprint::from_bytes([0; 32]);
        let mut record = Record::claim("scope:key", fingerprint, token, Duration::MAX, now);
        assert_eq!(record.charge(), 9 + CLAIM_RESERVE + RECORD_OVERHEAD);
        record.state = State::Completed {
            output: vec![0; 1000],
            expires_at: now,
        };
        assert_eq!(record.charge(), 9 + 1000 + RECORD_OVERHEAD);
        assert_eq!(charge(usize::MAX, 1), usize::MAX, "saturates");
        assert_eq!(
            (CLAIM_RESERVE, RECORD_OVERHEAD),
            (256, 384),
            "as MemoryBackend's docs say"
        );
    }
}
