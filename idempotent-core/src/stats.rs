//! Process-wide counters of what idempotent calls did, for dashboards and
//! alerts: read them with [`stats`] and export them however you like.

use std::sync::atomic::{AtomicU64, Ordering};

/// A monotonically increasing, process-wide count.
pub(crate) struct Counter(AtomicU64);

impl Counter {
    const fn new() -> Self {
        Self(AtomicU64::new(0))
    }

    pub(crate) fn increment(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

pub(crate) static CALLS: Counter = Counter::new();
pub(crate) static EXECUTIONS: Counter = Counter::new();
pub(crate) static REPLAYS: Counter = Counter::new();
pub(crate) static TAKEOVERS: Counter = Counter::new();
pub(crate) static WAITS: Counter = Counter::new();
pub(crate) static IN_PROGRESS: Counter = Counter::new();
pub(crate) static MISMATCHES: Counter = Counter::new();
pub(crate) static STORE_ERRORS: Counter = Counter::new();
pub(crate) static CODEC_ERRORS: Counter = Counter::new();
pub(crate) static RELEASES: Counter = Counter::new();
pub(crate) static ABANDONED: Counter = Counter::new();
pub(crate) static RENEW_FAILURES: Counter = Counter::new();
pub(crate) static LEASES_LOST: Counter = Counter::new();
pub(crate) static FENCED: Counter = Counter::new();
pub(crate) static COMPLETE_RETRIES: Counter = Counter::new();
pub(crate) static RESULTS_NOT_STORED: Counter = Counter::new();
pub(crate) static KEYLESS: Counter = Counter::new();
pub(crate) static MISSING_KEYS: Counter = Counter::new();
pub(crate) static INVALID_CONFIGS: Counter = Counter::new();
pub(crate) static COMMITS_UNKNOWN: Counter = Counter::new();

/// A snapshot of the process-wide counters. Each only grows; rates come from
/// the difference of two snapshots.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Idempotent calls started.
    pub calls: u64,
    /// Bodies run: the key was claimed (fresh or taken over).
    pub executions: u64,
    /// Stored results replayed instead of running the body.
    pub replays: u64,
    /// Expired claims of another caller taken over (that caller crashed or
    /// stalled past its lease).
    pub takeovers: u64,
    /// Calls that waited for a running duplicate (`wait`).
    pub waits: u64,
    /// Calls answered [`Error::InProgress`](crate::Error::InProgress).
    pub in_progress: u64,
    /// Calls answered [`Error::PayloadMismatch`](crate::Error::PayloadMismatch).
    pub mismatches: u64,
    /// Calls that failed closed because the store failed before the body ran.
    pub store_errors: u64,
    /// Calls answered [`Error::Codec`](crate::Error::Codec) (corrupt or
    /// foreign record, changed type, unserializable key).
    pub codec_errors: u64,
    /// Claims released because the body returned `Err`.
    pub releases: u64,
    /// Claims released because the call was cancelled or the body panicked.
    pub abandoned: u64,
    /// Lease renewals that failed to reach the store.
    pub renew_failures: u64,
    /// Renewals that found the claim gone: the holder could not renew it for
    /// a whole lease (stalled, or the store was unreachable), and another call
    /// took it over or the store forgot it. Its result will not be stored.
    pub leases_lost: u64,
    /// Completions or releases refused because the claim was no longer this
    /// call's (taken over, or forgotten by the store). A fenced completion
    /// means this call's result was not stored: alert on it together with
    /// `results_not_stored`.
    pub fenced: u64,
    /// Completions retried after a store failure.
    pub complete_retries: u64,
    /// Bodies that ran but whose result could not be stored (store down until
    /// the claim lapsed, result too large, result not serializable). Alert on it.
    pub results_not_stored: u64,
    /// Calls whose key was `None`: run without a record, like an HTTP request
    /// without an `Idempotency-Key`.
    pub keyless: u64,
    /// Calls refused with [`Error::MissingKey`](crate::Error::MissingKey)
    /// (`require_key` and a `None` key).
    pub missing_keys: u64,
    /// Calls refused with [`Error::InvalidConfig`](crate::Error::InvalidConfig).
    pub invalid_configs: u64,
    /// Committing calls whose commit failed or did not answer
    /// ([`Error::CommitUnknown`](crate::Error::CommitUnknown)).
    pub commits_unknown: u64,
}

/// The current values of the process-wide counters.
///
/// ```
/// let before = idempotent_core::stats();
/// // ... idempotent calls ...
/// let after = idempotent_core::stats();
/// assert!(after.calls >= before.calls);
/// ```
pub fn stats() -> Stats {
    Stats {
        calls: CALLS.get(),
        executions: EXECUTIONS.get(),
        replays: REPLAYS.get(),
        takeovers: TAKEOVERS.get(),
        waits: WAITS.get(),
        in_progress: IN_PROGRESS.get(),
        mismatches: MISMATCHES.get(),
        store_errors: STORE_ERRORS.get(),
        codec_errors: CODEC_ERRORS.get(),
        releases: RELEASES.get(),
        abandoned: ABANDONED.get(),
        renew_failures: RENEW_FAILURES.get(),
        leases_lost: LEASES_LOST.get(),
        fenced: FENCED.get(),
        complete_retries: COMPLETE_RETRIES.get(),
        results_not_stored: RESULTS_NOT_STORED.get(),
        keyless: KEYLESS.get(),
        missing_keys: MISSING_KEYS.get(),
        invalid_configs: INVALID_CONFIGS.get(),
        commits_unknown: COMMITS_UNKNOWN.get(),
    }
}
