//! The in-process store: bounded, expiring, and the process default.

mod eviction;
mod index;
mod record;
mod store;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio::time::Instant;

use self::eviction::{Evicted, EvictedKind};
use self::index::Indices;
use self::record::{deadline, Record, State};
use self::store::Store;
use crate::{
    Backend, BackendError, BackendErrorKind, CasOutcome, ClaimOutcome, FencingToken, Fingerprint,
};

const DEFAULT_MAX_ENTRIES: usize = 100_000;
const DEFAULT_MAX_OUTPUT_BYTES: usize = 1024 * 1024;

/// An in-process [`Backend`]: records live in this process's memory, shared
/// by every task and thread that uses the same `MemoryBackend`.
///
/// It is the process default (see [`set_default_backend`] to swap it for a
/// shared store), and the store to use in tests. Records do not survive a
/// restart and are not shared between processes.
///
/// Memory stays bounded whatever the stream of keys:
///
/// - at most [`with_max_entries`](Self::with_max_entries) records (100 000 by
///   default). When a new key arrives and the store is full, the completed
///   record closest to its expiry is evicted (a retry of that key runs the
///   body again, and a warning is logged). A running call's claim is never
///   evicted: when every record is a live claim, [`claim`](Backend::claim)
///   fails with [`BackendErrorKind::Capacity`].
/// - at most [`max_output_bytes`](Self::max_output_bytes) per stored output
///   (1 MiB by default); larger outputs fail with
///   [`BackendErrorKind::TooLarge`].
/// - expired records are dropped as later operations come by.
///
/// A claim whose lease ran out is kept for one more lease, so that the decision
/// table can apply to it: a call with the same arguments takes it over, a call
/// with other arguments gets [`ClaimOutcome::Mismatch`], and a holder that was
/// merely slow (and not taken over) can still complete it. After that it is
/// forgotten, and a full store drops such claims before any completed record.
///
/// Expiry follows [`tokio::time::Instant`], so tests can control it with
/// `tokio::time::pause` and `advance`.
///
/// ```
/// use std::sync::Arc;
/// use idempotent_core::{Backend, MemoryBackend};
///
/// let store: Arc<dyn Backend> = Arc::new(
///     MemoryBackend::with_max_entries(10_000).max_output_bytes(64 * 1024),
/// );
/// # let _ = store;
/// ```
///
/// [`set_default_backend`]: crate::set_default_backend
pub struct MemoryBackend {
    store: Mutex<Store>,
    /// Unique per backend rather than per key, so a stale holder's token can
    /// never equal the token of whoever claimed the key after it.
    next_token: AtomicU64,
    max_entries: usize,
    max_output_bytes: usize,
}

impl MemoryBackend {
    /// A store with the default bounds: 100 000 records, 1 MiB per output.
    pub fn new() -> Self {
        Self::with_max_entries(DEFAULT_MAX_ENTRIES)
    }

    /// A store holding at most `max_entries` records (at least 1), with the
    /// default output limit of 1 MiB.
    pub fn with_max_entries(max_entries: usize) -> Self {
        Self {
            store: Mutex::new(Store::default()),
            next_token: AtomicU64::new(1),
            max_entries: max_entries.max(1),
            max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES,
        }
    }

    /// Sets the largest output [`complete`](Backend::complete) accepts, in
    /// bytes; larger ones fail with [`BackendErrorKind::TooLarge`].
    #[must_use]
    pub fn max_output_bytes(mut self, bytes: usize) -> Self {
        self.max_output_bytes = bytes;
        self
    }

    /// How many records the store holds: claims (including those whose lease
    /// ran out, while they are kept) and completed results, expired ones not
    /// counted.
    pub fn len(&self) -> usize {
        let mut store = self.lock();
        store.purge(Instant::now());
        store.records.len()
    }

    /// Whether the store holds no record, expired ones aside.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The store's lock. A panic while it was held cannot have left a record
    /// half-written (no code under the lock panics), so poisoning is ignored
    /// rather than turned into a panic of every later call.
    fn lock(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn new_token(&self) -> u64 {
        // The lock already orders claims; the counter only has to be unique.
        self.next_token.fetch_add(1, Ordering::Relaxed)
    }

    fn claim_now(
        &self,
        key: &str,
        fingerprint: &Fingerprint,
        lease: Duration,
    ) -> Result<ClaimOutcome, BackendError> {
        let mut evicted = None;
        let decided = {
            let mut guard = self.lock();
            let now = Instant::now();
            guard.purge(now);
            let Store { records, index } = &mut *guard;
            match records.get_mut(key) {
                Some(record) => Ok(self.claim_existing(record, index, fingerprint, lease, now)),
                None => match guard.make_room(self.max_entries, now) {
                    Err(live_claims) => Err(live_claims),
                    Ok(victim) => {
                        evicted = victim;
                        let record = Record {
                            key: Arc::from(key),
                            fingerprint: *fingerprint,
                            token: self.new_token(),
                            state: State::Claimed {
                                lease_until: deadline(now, lease),
                                lease,
                                notify: Arc::new(Notify::new()),
                            },
                        };
                        let token = FencingToken::new(record.token);
                        guard.index.insert(&record, now);
                        guard.records.insert(Arc::clone(&record.key), record);
                        Ok(ClaimOutcome::Acquired {
                            token,
                            took_over: false,
                        })
                    }
                },
            }
        };
        // Logged, and the evicted output freed, outside the lock.
        if let Some(evicted) = evicted {
            self.report_eviction(&evicted);
        }
        decided.map_err(|live_claims| {
            BackendError::new(
                BackendErrorKind::Capacity,
                format!(
                    "the MemoryBackend is full: all {live_claims} records are live claims of \
                     running calls (max_entries = {}), and a running call's claim is never \
                     evicted; raise the bound with MemoryBackend::with_max_entries",
                    self.max_entries
                ),
            )
        })
    }

    fn claim_existing(
        &self,
        record: &mut Record,
        index: &mut Indices,
        fingerprint: &Fingerprint,
        lease: Duration,
        now: Instant,
    ) -> ClaimOutcome {
        if record.fingerprint != *fingerprint {
            return ClaimOutcome::Mismatch;
        }
        let lease_until = match &record.state {
            State::Completed { output, .. } => {
                return ClaimOutcome::Completed {
                    output: output.clone(),
                }
            }
            State::Claimed { lease_until, .. } => *lease_until,
        };
        if lease_until > now {
            return ClaimOutcome::InProgress {
                lease_remaining: lease_until.saturating_duration_since(now),
            };
        }
        index.remove(record);
        record.token = self.new_token();
        if let State::Claimed {
            lease_until,
            lease: current,
            ..
        } = &mut record.state
        {
            // The Notify is kept: duplicates already waiting on the crashed
            // holder are then woken by whatever the new holder does.
            *lease_until = deadline(now, lease);
            *current = lease;
        }
        index.insert(record, now);
        ClaimOutcome::Acquired {
            token: FencingToken::new(record.token),
            took_over: true,
        }
    }

    fn report_eviction(&self, evicted: &Evicted) {
        match evicted.kind {
            EvictedKind::Completed { ttl_left } => tracing::warn!(
                key = %evicted.key,
                ?ttl_left,
                max_entries = self.max_entries,
                "the MemoryBackend is full, so a completed record was evicted before its ttl \
                 ran out: a retry with that key will run the body again; raise the bound \
                 with MemoryBackend::with_max_entries"
            ),
            EvictedKind::StaleClaim => tracing::debug!(
                key = %evicted.key,
                max_entries = self.max_entries,
                "the MemoryBackend is full, so a claim whose lease had run out was dropped early"
            ),
        }
    }

    fn complete_now(
        &self,
        key: &str,
        token: FencingToken,
        output: &[u8],
        ttl: Duration,
    ) -> Result<CasOutcome, BackendError> {
        if output.len() > self.max_output_bytes {
            return Err(BackendError::output_too_large(
                output.len(),
                self.max_output_bytes,
                "MemoryBackend::max_output_bytes",
            ));
        }
        // Copied before locking, so the lock is never held for a large copy.
        let output = output.to_vec();
        let notify = {
            let mut guard = self.lock();
            let now = Instant::now();
            guard.purge(now);
            let Store { records, index } = &mut *guard;
            let Some(record) = records.get_mut(key).filter(|record| record.held_by(token)) else {
                // A retried complete of this very claim: already applied.
                let completed_by_token = records.get(key).is_some_and(|record| {
                    matches!(record.state, State::Completed { .. }) && record.token == token.get()
                });
                return Ok(if completed_by_token {
                    CasOutcome::Applied
                } else {
                    CasOutcome::Fenced
                });
            };
            index.remove(record);
            let claim = std::mem::replace(
                &mut record.state,
                State::Completed {
                    output,
                    expires_at: deadline(now, ttl),
                },
            );
            index.insert(record, now);
            claim.into_notify()
        };
        if let Some(notify) = notify {
            notify.notify_waiters();
        }
        Ok(CasOutcome::Applied)
    }

    fn release_now(&self, key: &str, token: FencingToken) -> CasOutcome {
        let released = {
            let mut guard = self.lock();
            guard.purge(Instant::now());
            let Store { records, index } = &mut *guard;
            match records.get(key) {
                Some(record) if record.held_by(token) => {
                    index.remove(record);
                    records.remove(key)
                }
                _ => None,
            }
        };
        match released {
            Some(record) => {
                if let Some(notify) = record.state.into_notify() {
                    notify.notify_waiters();
                }
                CasOutcome::Applied
            }
            None => CasOutcome::Fenced,
        }
    }

    fn renew_now(&self, key: &str, token: FencingToken, lease: Duration) -> CasOutcome {
        let mut guard = self.lock();
        let now = Instant::now();
        guard.purge(now);
        let Store { records, index } = &mut *guard;
        let Some(record) = records.get_mut(key).filter(|record| record.held_by(token)) else {
            return CasOutcome::Fenced;
        };
        index.remove(record);
        if let State::Claimed {
            lease_until,
            lease: current,
            ..
        } = &mut record.state
        {
            *lease_until = deadline(now, lease);
            *current = lease;
        }
        index.insert(record, now);
        CasOutcome::Applied
    }

    /// Records and index entries, which must stay equal in number: the index
    /// is what bounds the memory, so a leak there would be unbounded.
    #[cfg(test)]
    fn index_len(&self) -> (usize, usize) {
        let store = self.lock();
        (store.records.len(), store.index.len())
    }
}

impl Default for MemoryBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (claims, completed) = {
            let mut store = self.lock();
            store.purge(Instant::now());
            (
                store.index.live.len() + store.index.stale.len(),
                store.index.completed.len(),
            )
        };
        f.debug_struct("MemoryBackend")
            .field("len", &(claims + completed))
            .field("claims", &claims)
            .field("completed", &completed)
            .field("max_entries", &self.max_entries)
            .field("max_output_bytes", &self.max_output_bytes)
            .finish()
    }
}

#[async_trait]
impl Backend for MemoryBackend {
    async fn claim(
        &self,
        key: &str,
        fingerprint: &Fingerprint,
        lease: Duration,
    ) -> Result<ClaimOutcome, BackendError> {
        self.claim_now(key, fingerprint, lease)
    }

    async fn complete(
        &self,
        key: &str,
        token: FencingToken,
        output: &[u8],
        ttl: Duration,
    ) -> Result<CasOutcome, BackendError> {
        self.complete_now(key, token, output, ttl)
    }

    async fn release(&self, key: &str, token: FencingToken) -> Result<CasOutcome, BackendError> {
        Ok(self.release_now(key, token))
    }

    async fn renew(
        &self,
        key: &str,
        token: FencingToken,
        lease: Duration,
    ) -> Result<CasOutcome, BackendError> {
        Ok(self.renew_now(key, token, lease))
    }

    /// Returns as soon as the running call completes or releases the key, at
    /// the end of its lease, or after `at_most`, whichever comes first; at
    /// once when the key is not held by a live claim.
    async fn wait_for_change(&self, key: &str, at_most: Duration) -> Result<(), BackendError> {
        let notify: Arc<Notify>;
        let (notified, lease_remaining) = {
            let mut guard = self.lock();
            let now = Instant::now();
            guard.purge(now);
            let Some((live_notify, lease_remaining)) = guard.live_claim(key, now) else {
                return Ok(());
            };
            notify = live_notify;
            // Created under the lock: a `Notified` receives every
            // `notify_waiters` from its creation on, and complete and release
            // change the record under the lock before notifying, so a change
            // made after this look can never be missed.
            (notify.notified(), lease_remaining)
        };
        // Elapsing is an expected way to return: the caller claims again.
        let _elapsed = tokio::time::timeout(at_most.min(lease_remaining), notified).await;
        Ok(())
    }

    /// Releases at once: a release is only a short lock, nothing to wait for.
    fn release_in_background(&self, key: &str, token: FencingToken) {
        let _ = self.release_now(key, token);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_secs(30);
    const TTL: Duration = Duration::from_secs(3600);

    fn fp(byte: u8) -> Fingerprint {
        Fingerprint::from_bytes([byte; 32])
    }

    async fn acquire(backend: &MemoryBackend, key: &str, lease: Duration) -> FencingToken {
        match backend.claim(key, &fp(1), lease).await.unwrap() {
            ClaimOutcome::Acquired {
                token,
                took_over: false,
            } => token,
            other => panic!("expected a fresh claim of {key}, got {other:?}"),
        }
    }

    fn holds(backend: &MemoryBackend, key: &str) -> bool {
        backend.lock().records.contains_key(key)
    }

    /// Records and index entries agree, and the bound holds.
    fn assert_bounded(backend: &MemoryBackend) {
        let (records, indexed) = backend.index_len();
        assert_eq!(records, indexed, "every record is indexed exactly once");
        assert!(
            records <= backend.max_entries,
            "{records} > {}",
            backend.max_entries
        );
    }

    #[test]
    fn is_send_sync_and_object_safe() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<MemoryBackend>();
        let _: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    }

    #[test]
    fn bounds_default_and_clamp() {
        let backend = MemoryBackend::default();
        assert_eq!(backend.max_entries, 100_000);
        assert_eq!(backend.max_output_bytes, 1024 * 1024);
        assert_eq!(MemoryBackend::with_max_entries(0).max_entries, 1);
        assert_eq!(MemoryBackend::new().max_output_bytes(7).max_output_bytes, 7);
        assert!(backend.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn absent_key_is_acquired_with_any_fingerprint() {
        let backend = MemoryBackend::new();
        let first = acquire(&backend, "s:a", LEASE).await;
        let outcome = backend.claim("s:b", &fp(2), LEASE).await.unwrap();
        let ClaimOutcome::Acquired { token, took_over } = outcome else {
            panic!("{outcome:?}");
        };
        assert!(!took_over);
        assert_ne!(token, first, "tokens are unique per backend");
        assert_eq!(first.get(), 1, "the counter starts at 1");
        assert_eq!(backend.len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn live_claim_is_in_progress_or_mismatch() {
        let backend = MemoryBackend::new();
        acquire(&backend, "k", LEASE).await;
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(
            backend.claim("k", &fp(1), LEASE).await.unwrap(),
            ClaimOutcome::InProgress {
                lease_remaining: Duration::from_secs(20)
            }
        );
        assert_eq!(
            backend.claim("k", &fp(2), LEASE).await.unwrap(),
            ClaimOutcome::Mismatch
        );
    }

    #[tokio::test(start_paused = true)]
    async fn expired_lease_is_taken_over_with_same_fingerprint() {
        let backend = MemoryBackend::new();
        let old = acquire(&backend, "k", LEASE).await;
        tokio::time::advance(LEASE).await;
        let outcome = backend.claim("k", &fp(1), LEASE).await.unwrap();
        let ClaimOutcome::Acquired {
            token,
            took_over: true,
        } = outcome
        else {
            panic!("{outcome:?}");
        };
        assert_ne!(token, old);
        assert_eq!(
            backend.claim("k", &fp(1), LEASE).await.unwrap(),
            ClaimOutcome::InProgress {
                lease_remaining: LEASE
            }
        );
        assert_bounded(&backend);
    }

    #[tokio::test(start_paused = true)]
    async fn expired_lease_with_other_fingerprint_is_mismatch() {
        let backend = MemoryBackend::new();
        acquire(&backend, "k", LEASE).await;
        tokio::time::advance(LEASE + Duration::from_secs(1)).await;
        assert_eq!(
            backend.claim("k", &fp(2), LEASE).await.unwrap(),
            ClaimOutcome::Mismatch
        );
    }

    #[tokio::test(start_paused = true)]
    async fn expired_claim_is_forgotten_one_lease_after_it_ran_out() {
        let backend = MemoryBackend::new();
        let old = acquire(&backend, "k", LEASE).await;
        tokio::time::advance(LEASE * 2).await;
        assert!(backend.is_empty());
        let outcome = backend.claim("k", &fp(2), LEASE).await.unwrap();
        assert!(
            matches!(
                outcome,
                ClaimOutcome::Acquired {
                    took_over: false,
                    ..
                }
            ),
            "{outcome:?}"
        );
        assert_eq!(
            backend.complete("k", old, b"late", TTL).await.unwrap(),
            CasOutcome::Fenced
        );
        assert_bounded(&backend);
    }

    #[tokio::test(start_paused = true)]
    async fn completed_is_replayed_or_mismatch() {
        let backend = MemoryBackend::new();
        let token = acquire(&backend, "k", LEASE).await;
        assert_eq!(
            backend.complete("k", token, b"out", TTL).await.unwrap(),
            CasOutcome::Applied
        );
        tokio::time::advance(TTL - Duration::from_millis(1)).await;
        assert_eq!(
            backend.claim("k", &fp(1), LEASE).await.unwrap(),
            ClaimOutcome::Completed {
                output: b"out".to_vec()
            }
        );
        assert_eq!(
            backend.claim("k", &fp(2), LEASE).await.unwrap(),
            ClaimOutcome::Mismatch
        );
    }

    #[tokio::test(start_paused = true)]
    async fn expired_completed_record_is_claimed_afresh() {
        let backend = MemoryBackend::new();
        for fingerprint in [fp(1), fp(2)] {
            let token = acquire(&backend, "k", LEASE).await;
            backend.complete("k", token, b"out", TTL).await.unwrap();
            tokio::time::advance(TTL).await;
            assert!(backend.is_empty());
            let outcome = backend.claim("k", &fingerprint, LEASE).await.unwrap();
            assert!(
                matches!(
                    outcome,
                    ClaimOutcome::Acquired {
                        took_over: false,
                        ..
                    }
                ),
                "{outcome:?}"
            );
            let ClaimOutcome::Acquired { token, .. } = outcome else {
                unreachable!()
            };
            backend.release("k", token).await.unwrap();
            assert_bounded(&backend);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn zero_ttl_completes_into_nothing() {
        let backend = MemoryBackend::new();
        let token = acquire(&backend, "k", LEASE).await;
        backend
            .complete("k", token, b"out", Duration::ZERO)
            .await
            .unwrap();
        acquire(&backend, "k", LEASE).await;
        assert_bounded(&backend);
    }

    #[tokio::test(start_paused = true)]
    async fn huge_durations_saturate_instead_of_panicking() {
        let backend = MemoryBackend::new();
        let token = acquire(&backend, "k", Duration::MAX).await;
        assert_eq!(
            backend.renew("k", token, Duration::MAX).await.unwrap(),
            CasOutcome::Applied
        );
        backend
            .complete("k", token, b"out", Duration::MAX)
            .await
            .unwrap();
        tokio::time::advance(Duration::from_secs(86_400 * 365)).await;
        assert_eq!(
            backend.claim("k", &fp(1), LEASE).await.unwrap(),
            ClaimOutcome::Completed {
                output: b"out".to_vec()
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn release_lets_the_next_call_run() {
        let backend = MemoryBackend::new();
        let token = acquire(&backend, "k", LEASE).await;
        assert_eq!(
            backend.release("k", token).await.unwrap(),
            CasOutcome::Applied
        );
        assert!(backend.is_empty());
        assert_bounded(&backend);
        let outcome = backend.claim("k", &fp(2), LEASE).await.unwrap();
        assert!(
            matches!(
                outcome,
                ClaimOutcome::Acquired {
                    took_over: false,
                    ..
                }
            ),
            "{outcome:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn release_in_background_releases_at_once() {
        let backend = MemoryBackend::new();
        let token = acquire(&backend, "k", LEASE).await;
        backend.release_in_background("k", token);
        assert!(backend.is_empty());
        acquire(&backend, "k", LEASE).await;
    }

    #[tokio::test(start_paused = true)]
    async fn renew_extends_the_lease_from_now() {
        let backend = MemoryBackend::new();
        let token = acquire(&backend, "k", LEASE).await;
        tokio::time::advance(Duration::from_secs(20)).await;
        assert_eq!(
            backend.renew("k", token, LEASE).await.unwrap(),
            CasOutcome::Applied
        );
        tokio::time::advance(Duration::from_secs(20)).await;
        assert_eq!(
            backend.claim("k", &fp(1), LEASE).await.unwrap(),
            ClaimOutcome::InProgress {
                lease_remaining: Duration::from_secs(10)
            }
        );
        assert_bounded(&backend);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lapsed_holder_nobody_took_over_may_still_finish() {
        let backend = MemoryBackend::new();
        let lease = Duration::from_secs(10);
        let token = acquire(&backend, "k", lease).await;
        tokio::time::advance(Duration::from_secs(15)).await;
        assert_eq!(
            backend.renew("k", token, lease).await.unwrap(),
            CasOutcome::Applied
        );
        assert_eq!(
            backend.claim("k", &fp(1), lease).await.unwrap(),
            ClaimOutcome::InProgress {
                lease_remaining: lease
            }
        );
        tokio::time::advance(Duration::from_secs(15)).await;
        assert_eq!(
            backend.complete("k", token, b"late", TTL).await.unwrap(),
            CasOutcome::Applied
        );
        assert_eq!(
            backend.claim("k", &fp(1), lease).await.unwrap(),
            ClaimOutcome::Completed {
                output: b"late".to_vec()
            }
        );
        assert_bounded(&backend);

        let token = acquire(&backend, "other", lease).await;
        tokio::time::advance(Duration::from_secs(15)).await;
        assert_eq!(
            backend.release("other", token).await.unwrap(),
            CasOutcome::Applied
        );
        assert!(!holds(&backend, "other"));
        assert_bounded(&backend);
    }

    #[tokio::test(start_paused = true)]
    async fn stale_token_is_fenced_after_takeover_and_changes_nothing() {
        let backend = MemoryBackend::new();
        let old = acquire(&backend, "k", LEASE).await;
        tokio::time::advance(LEASE).await;
        let ClaimOutcome::Acquired { token: new, .. } =
            backend.claim("k", &fp(1), LEASE).await.unwrap()
        else {
            panic!("expected a takeover");
        };
        tokio::time::advance(Duration::from_secs(5)).await;

        assert_eq!(
            backend.renew("k", old, LEASE).await.unwrap(),
            CasOutcome::Fenced
        );
        assert_eq!(
            backend.complete("k", old, b"stale", TTL).await.unwrap(),
            CasOutcome::Fenced
        );
        assert_eq!(backend.release("k", old).await.unwrap(), CasOutcome::Fenced);
        backend.release_in_background("k", old);
        assert_eq!(
            backend.claim("k", &fp(1), LEASE).await.unwrap(),
            ClaimOutcome::InProgress {
                lease_remaining: Duration::from_secs(25)
            },
            "the new holder's lease is untouched"
        );

        assert_eq!(
            backend.complete("k", new, b"new", TTL).await.unwrap(),
            CasOutcome::Applied
        );
        assert_eq!(
            backend.complete("k", old, b"stale", TTL).await.unwrap(),
            CasOutcome::Fenced
        );
        assert_eq!(
            backend.complete("k", new, b"again", TTL).await.unwrap(),
            CasOutcome::Applied,
            "a retried complete of the completing claim is told it applied"
        );
        assert_eq!(backend.release("k", new).await.unwrap(), CasOutcome::Fenced);
        assert_eq!(
            backend.renew("k", new, LEASE).await.unwrap(),
            CasOutcome::Fenced
        );
        assert_eq!(
            backend.claim("k", &fp(1), LEASE).await.unwrap(),
            ClaimOutcome::Completed {
                output: b"new".to_vec()
            }
        );
        assert_bounded(&backend);
    }

    #[tokio::test(start_paused = true)]
    async fn unknown_key_or_token_is_fenced() {
        let backend = MemoryBackend::new();
        let token = acquire(&backend, "k", LEASE).await;
        let wrong = FencingToken::new(token.get() + 100);
        assert_eq!(
            backend.complete("k", wrong, b"x", TTL).await.unwrap(),
            CasOutcome::Fenced
        );
        assert_eq!(
            backend.release("k", wrong).await.unwrap(),
            CasOutcome::Fenced
        );
        assert_eq!(
            backend.renew("k", wrong, LEASE).await.unwrap(),
            CasOutcome::Fenced
        );
        assert_eq!(
            backend.release("absent", token).await.unwrap(),
            CasOutcome::Fenced
        );
        assert_eq!(
            backend.complete("absent", token, b"x", TTL).await.unwrap(),
            CasOutcome::Fenced
        );
        assert!(!holds(&backend, "absent"));
        assert_eq!(backend.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn too_large_output_fails_and_keeps_the_claim() {
        let backend = MemoryBackend::new().max_output_bytes(4);
        let token = acquire(&backend, "k", LEASE).await;
        let error = backend
            .complete("k", token, b"12345", TTL)
            .await
            .unwrap_err();
        assert_eq!(error.kind(), BackendErrorKind::TooLarge);
        for needle in ["5 bytes", "4 bytes", "MemoryBackend::max_output_bytes"] {
            assert!(error.message().contains(needle), "{error}");
        }
        assert!(matches!(
            backend.claim("k", &fp(1), LEASE).await.unwrap(),
            ClaimOutcome::InProgress { .. }
        ));
        assert_eq!(
            backend.complete("k", token, b"1234", TTL).await.unwrap(),
            CasOutcome::Applied
        );
    }

    #[tokio::test(start_paused = true)]
    async fn full_of_live_claims_fails_with_capacity() {
        let backend = MemoryBackend::with_max_entries(2);
        let a = acquire(&backend, "a", LEASE).await;
        acquire(&backend, "b", LEASE).await;
        let error = backend.claim("c", &fp(1), LEASE).await.unwrap_err();
        assert_eq!(error.kind(), BackendErrorKind::Capacity);
        for needle in [
            "2 records are live claims",
            "max_entries = 2",
            "with_max_entries",
        ] {
            assert!(error.message().contains(needle), "{error}");
        }
        assert!(holds(&backend, "a") && holds(&backend, "b") && !holds(&backend, "c"));
        assert!(
            matches!(
                backend.claim("a", &fp(1), LEASE).await.unwrap(),
                ClaimOutcome::InProgress { .. }
            ),
            "keys already held are still answered"
        );
        backend.release("a", a).await.unwrap();
        acquire(&backend, "c", LEASE).await;
        assert_bounded(&backend);
    }

    #[tokio::test(start_paused = true)]
    async fn eviction_takes_the_soonest_expiring_completed_record_never_a_claim() {
        let backend = MemoryBackend::with_max_entries(4);
        acquire(&backend, "claim", Duration::from_secs(1)).await;
        for (key, ttl) in [("late", 300), ("soon", 100), ("middle", 200)] {
            let token = acquire(&backend, key, LEASE).await;
            backend
                .complete(key, token, b"out", Duration::from_secs(ttl))
                .await
                .unwrap();
        }
        // The claim's lease ends first of all, yet it is never the one evicted.
        let present = |keys: &[&str]| keys.iter().all(|key| holds(&backend, key));

        acquire(&backend, "new1", LEASE).await;
        assert!(!holds(&backend, "soon"));
        assert!(present(&["claim", "late", "middle", "new1"]));

        acquire(&backend, "new2", LEASE).await;
        assert!(!holds(&backend, "middle"));
        assert!(present(&["claim", "late", "new1", "new2"]));

        acquire(&backend, "new3", LEASE).await;
        assert!(!holds(&backend, "late"));
        assert!(present(&["claim", "new1", "new2", "new3"]));

        let error = backend.claim("new4", &fp(1), LEASE).await.unwrap_err();
        assert_eq!(error.kind(), BackendErrorKind::Capacity);
        assert!(present(&["claim", "new1", "new2", "new3"]));
        assert_bounded(&backend);
    }

    #[tokio::test(start_paused = true)]
    async fn eviction_prefers_a_claim_whose_lease_ran_out() {
        let backend = MemoryBackend::with_max_entries(2);
        let token = acquire(&backend, "done", LEASE).await;
        backend.complete("done", token, b"out", TTL).await.unwrap();
        acquire(&backend, "crashed", Duration::from_secs(10)).await;
        tokio::time::advance(Duration::from_secs(15)).await;
        acquire(&backend, "new", LEASE).await;
        assert!(!holds(&backend, "crashed"));
        assert!(holds(&backend, "done") && holds(&backend, "new"));
        assert_bounded(&backend);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_of_distinct_keys_stays_bounded() {
        let max = 16;
        let backend = MemoryBackend::with_max_entries(max);
        // Short ttls expire while the stream runs; long ones force eviction.
        for (round, ttl) in [Duration::from_millis(50), TTL].into_iter().enumerate() {
            for i in 0..10 * max {
                let key = format!("s:{round}:{i}");
                let token = acquire(&backend, &key, LEASE).await;
                backend.complete(&key, token, b"out", ttl).await.unwrap();
                tokio::time::advance(Duration::from_millis(10)).await;
                assert!(backend.len() <= max);
                assert_bounded(&backend);
            }
        }
        // Claims abandoned by crashed holders expire and make room as well.
        for i in 0..10 * max {
            acquire(&backend, &format!("crash:{i}"), Duration::from_millis(50)).await;
            tokio::time::advance(Duration::from_millis(10)).await;
            assert_bounded(&backend);
        }
        tokio::time::advance(TTL).await;
        assert!(backend.is_empty());
        assert_eq!(backend.index_len(), (0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn wait_for_change_returns_when_the_holder_completes() {
        let backend = Arc::new(MemoryBackend::new());
        let token = acquire(&backend, "k", LEASE).await;
        let holder = {
            let backend = Arc::clone(&backend);
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(1)).await;
                backend.complete("k", token, b"out", TTL).await.unwrap();
            })
        };
        let start = Instant::now();
        backend
            .wait_for_change("k", Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        holder.await.unwrap();
        assert_eq!(
            backend.claim("k", &fp(1), LEASE).await.unwrap(),
            ClaimOutcome::Completed {
                output: b"out".to_vec()
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn wait_for_change_returns_when_the_holder_releases() {
        let backend = Arc::new(MemoryBackend::new());
        let token = acquire(&backend, "k", LEASE).await;
        let holder = {
            let backend = Arc::clone(&backend);
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(2)).await;
                backend.release_in_background("k", token);
            })
        };
        let start = Instant::now();
        backend
            .wait_for_change("k", Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(2));
        holder.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn wait_for_change_ends_at_the_lease_or_at_most() {
        let backend = MemoryBackend::new();
        acquire(&backend, "k", Duration::from_secs(3)).await;
        let start = Instant::now();
        backend
            .wait_for_change("k", Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(1), "at_most first");
        backend
            .wait_for_change("k", Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(
            start.elapsed(),
            Duration::from_secs(3),
            "then the lease end"
        );
        assert!(matches!(
            backend.claim("k", &fp(1), LEASE).await.unwrap(),
            ClaimOutcome::Acquired {
                took_over: true,
                ..
            }
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn wait_for_change_returns_at_once_without_a_live_claim() {
        let backend = MemoryBackend::new();
        let token = acquire(&backend, "done", LEASE).await;
        backend.complete("done", token, b"out", TTL).await.unwrap();
        acquire(&backend, "lapsed", Duration::from_secs(1)).await;
        tokio::time::advance(Duration::from_secs(1)).await;
        let start = Instant::now();
        for key in ["absent", "done", "lapsed"] {
            backend
                .wait_for_change(key, Duration::from_secs(60))
                .await
                .unwrap();
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_claims_of_one_key_acquire_exactly_once() {
        let backend = Arc::new(MemoryBackend::new());
        let start = Arc::new(tokio::sync::Barrier::new(100));
        let tasks: Vec<_> = (0..100)
            .map(|_| {
                let backend = Arc::clone(&backend);
                let start = Arc::clone(&start);
                tokio::spawn(async move {
                    start.wait().await;
                    backend.claim("k", &fp(1), LEASE).await.unwrap()
                })
            })
            .collect();
        let mut acquired = 0;
        for task in tasks {
            match task.await.unwrap() {
                ClaimOutcome::Acquired { took_over, .. } => {
                    assert!(!took_over);
                    acquired += 1;
                }
                ClaimOutcome::InProgress { .. } => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(acquired, 1);
        assert_eq!(backend.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn debug_shows_counts_not_contents() {
        let backend = MemoryBackend::with_max_entries(10).max_output_bytes(100);
        let token = acquire(&backend, "secret-key", LEASE).await;
        backend
            .complete("secret-key", token, b"secret-output", TTL)
            .await
            .unwrap();
        acquire(&backend, "other-key", LEASE).await;
        let debug = format!("{backend:?}");
        assert_eq!(
            debug,
            "MemoryBackend { len: 2, claims: 1, completed: 1, max_entries: 10, \
             max_output_bytes: 100 }"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_poisoned_lock_is_recovered() {
        let backend = MemoryBackend::new();
        let token = acquire(&backend, "k", LEASE).await;
        std::thread::scope(|scope| {
            let panicked = scope
                .spawn(|| {
                    let _guard = backend.store.lock();
                    panic!("poisoning the lock on purpose");
                })
                .join();
            assert!(panicked.is_err());
        });
        assert!(backend.store.is_poisoned());
        assert_eq!(
            backend.complete("k", token, b"out", TTL).await.unwrap(),
            CasOutcome::Applied
        );
        assert_eq!(backend.len(), 1);
    }
}
