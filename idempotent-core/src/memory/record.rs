//! One stored record: a claim or a completed result.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::{FencingToken, Fingerprint};

/// Stands in for "never" when a ttl or lease is too long to add to the clock
/// (`Duration::MAX`), so huge values saturate instead of panicking.
const FAR_FUTURE: Duration = Duration::from_secs(60 * 60 * 24 * 365 * 30);

/// `from + after`, saturating at a far future instead of overflowing.
pub(super) fn deadline(from: Instant, after: Duration) -> Instant {
    from.checked_add(after)
        .or_else(|| from.checked_add(FAR_FUTURE))
        .unwrap_or(from)
}

/// When a claim whose lease ended at `lease_until` is forgotten: one more
/// lease later (see the type's docs for why it is kept at all).
pub(super) fn forget_at(lease_until: Instant, lease: Duration) -> Instant {
    deadline(lease_until, lease)
}

pub(super) struct Record {
    /// Shared with the index entries, so re-indexing never allocates.
    pub(super) key: Arc<str>,
    pub(super) fingerprint: Fingerprint,
    /// The token of the claim that wrote the record, kept once completed.
    pub(super) token: u64,
    pub(super) state: State,
}

impl Record {
    /// Whether the record is a claim holding `token`, its lease live or not:
    /// a slow holder nobody took over may still finish its work.
    pub(super) fn held_by(&self, token: FencingToken) -> bool {
        matches!(self.state, State::Claimed { .. }) && self.token == token.get()
    }
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
    pub(super) fn into_notify(self) -> Option<Arc<Notify>> {
        match self {
            State::Claimed { notify, .. } => Some(notify),
            State::Completed { .. } => None,
        }
    }
}
