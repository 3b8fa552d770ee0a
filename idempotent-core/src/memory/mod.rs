//! The in-process store: bounded in entries and bytes, expiring, failing
//! closed when full, and the process default.

mod budget;
mod eviction;
mod index;
mod record;
mod store;
#[cfg(test)]
mod test_support;

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio::time::Instant;

use self::budget::{Limits, DEFAULT_MAX_ENTRIES};
use self::eviction::Evicted;
use self::store::Store;
use crate::backend::KeyForm;
use crate::{Backend, BackendError, CasOutcome, ClaimOutcome, FencingToken, Fingerprint};

/// An in-process [`Backend`]: records live in this process's memory, shared
/// by every task and thread that uses the same `MemoryBackend` or a clone of
/// it.
///
/// It is the process default (see [`set_default_backend`] to swap it for a
/// shared store), and the store to use in tests. Records do not survive a
/// restart and are not shared between processes.
///
/// # Clones share the store
///
/// A `MemoryBackend` is a handle (an `Arc` inside, like `RedisBackend` and
/// `PostgresBackend`): a clone reads and writes the same records, under the
/// same bounds, so `backend = self.store.clone()` or a clone moved into a
/// task is the same store, and cloning costs a reference count. The bounds
/// belong to the store: a builder called on any clone changes them for all.
/// Two calls of [`new`](Self::new) make two separate stores.
///
/// # Bounded, and failing closed when full
///
/// Memory stays bounded whatever the stream of keys:
///
/// - at most [`with_max_entries`](Self::with_max_entries) records (100 000 by
///   default);
/// - at most [`with_max_bytes`](Self::with_max_bytes) bytes for all records
///   (128 MiB by default), counting for each its stored key, its output (a
///   claim counts 256 bytes for the output it will store) and 384 bytes of
///   overhead for its map and index entries;
/// - at most [`max_output_bytes`](Self::max_output_bytes) per stored output
///   (1 MiB by default); larger outputs fail with
///   [`BackendErrorKind::TooLarge`].
///
/// A full store never drops what promises something: a live claim (a call
/// running its body) or an unexpired completed record (a result every retry
/// must replay). To make room for a new key it drops only claims whose lease
/// ran out; when that is not enough, [`claim`](Backend::claim) fails with
/// [`BackendErrorKind::Capacity`] (the caller gets [`Error::Backend`], 503 at
/// the HTTP edge, and the body does not run). Keys already stored are still
/// answered. A store full of results refuses new keys until some expire, so
/// size the bounds for the keys one `ttl` brings; [`evict_completed_when_full`]
/// trades the guarantee for availability.
///
/// ```
/// use idempotent_core::{BackendErrorKind, Error, Idempotency, MemoryBackend};
///
/// async fn charge(store: &MemoryBackend, order: &str) -> Result<String, Error> {
///     Idempotency::new(store)
///         .scope("shop::charge")
///         .run(order, &(), || async { Ok(format!("charged {order}")) })
///         .await
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let store = MemoryBackend::with_max_entries(1);
/// charge(&store, "order-1").await.unwrap();
/// // Full: a new key fails closed, and its body does not run...
/// let refused = charge(&store, "order-2").await;
/// assert!(matches!(refused, Err(Error::Backend(e)) if e.kind() == BackendErrorKind::Capacity));
/// // ...while the stored key still replays rather than run again.
/// assert_eq!(charge(&store, "order-1").await.unwrap(), "charged order-1");
/// # }
/// ```
///
/// A completion whose output does not fit the byte budget fails with
/// [`BackendErrorKind::TooLarge`]: the body already ran, so the runtime stores
/// its small "not stored" marker instead (every claim holds room for one),
/// and retries get [`Error::ResultNotStored`]; the body never runs again
/// because the store was full.
///
/// Expired records are dropped as later operations come by.
///
/// A claim whose lease ran out is kept for one more lease, so that the decision
/// table can apply to it: a call with the same arguments takes it over, a call
/// with other arguments gets [`ClaimOutcome::Mismatch`], and a holder that was
/// merely slow (and not taken over) can still complete it. After that it is
/// forgotten.
///
/// Expiry follows [`tokio::time::Instant`], so tests can control it with
/// `tokio::time::pause` and `advance`.
///
/// ```
/// use std::sync::Arc;
/// use idempotent_core::{Backend, MemoryBackend};
///
/// let store = MemoryBackend::with_max_entries(10_000)
///     .with_max_bytes(64 * 1024 * 1024)
///     .max_output_bytes(64 * 1024);
/// let shared: Arc<dyn Backend> = Arc::new(store.clone()); // the same records
/// # let _ = shared;
/// ```
///
/// [`set_default_backend`]: crate::set_default_backend
/// [`evict_completed_when_full`]: Self::evict_completed_when_full
/// [`BackendErrorKind::TooLarge`]: crate::BackendErrorKind::TooLarge
/// [`BackendErrorKind::Capacity`]: crate::BackendErrorKind::Capacity
/// [`Error::Backend`]: crate::Error::Backend
/// [`Error::ResultNotStored`]: crate::Error::ResultNotStored
#[derive(Clone)]
pub struct MemoryBackend {
    shared: Arc<Shared>,
}

/// What every clone of one `MemoryBackend` shares.
struct Shared {
    store: Mutex<Store>,
    limits: Limits,
}

impl MemoryBackend {
    /// A store with the default bounds: 100 000 records, 128 MiB, 1 MiB per
    /// output, failing closed when full.
    pub fn new() -> Self {
        Self::with_max_entries(DEFAULT_MAX_ENTRIES)
    }

    /// A store holding at most `max_entries` records (at least 1), with the
    /// default byte budget (128 MiB) and output limit (1 MiB).
    pub fn with_max_entries(max_entries: usize) -> Self {
        Self {
            shared: Arc::new(Shared {
                store: Mutex::new(Store::default()),
                limits: Limits::new(max_entries),
            }),
        }
    }

    /// Sets how many bytes all records may take together (128 MiB by
    /// default): each record counts its stored key, its output (256 bytes
    /// for a claim, room for the output it will store) and 384 bytes of
    /// overhead. A claim of a new key that does not fit fails with
    /// [`Capacity`](crate::BackendErrorKind::Capacity); a completion that does
    /// not fit fails with [`TooLarge`](crate::BackendErrorKind::TooLarge)
    /// (see the type's docs). Applies to every clone of this store.
    #[must_use]
    pub fn with_max_bytes(self, bytes: usize) -> Self {
        self.shared.limits.set_max_bytes(bytes);
        self
    }

    /// Sets the largest output [`complete`](Backend::complete) accepts, in
    /// bytes; larger ones fail with
    /// [`BackendErrorKind::TooLarge`](crate::BackendErrorKind::TooLarge).
    /// Applies to every clone of this store.
    #[must_use]
    pub fn max_output_bytes(self, bytes: usize) -> Self {
        self.shared.limits.set_max_output_bytes(bytes);
        self
    }

    /// Lets a full store evict unexpired completed records, the soonest to
    /// expire first, instead of failing a new key's claim with
    /// [`Capacity`](crate::BackendErrorKind::Capacity). Off by default.
    ///
    /// **A retry of an evicted key may run the body again**: its result is
    /// gone, so the store no longer knows the call ran. Turn it on only for
    /// bodies that are safe to repeat, where availability matters more than
    /// running once; each eviction logs a warning with the key and scope.
    /// Live claims are never evicted, whatever this says. Applies to every
    /// clone of this store.
    #[must_use]
    pub fn evict_completed_when_full(self, evict: bool) -> Self {
        self.shared.limits.set_evict_completed(evict);
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

    /// The bytes the records are charged against
    /// [`with_max_bytes`](Self::with_max_bytes), expired ones not counted.
    pub fn used_bytes(&self) -> usize {
        let mut store = self.lock();
        store.purge(Instant::now());
        store.tallies().total().bytes
    }

    /// The store's lock. A panic while it was held cannot have left a record
    /// half-written (no code under the lock panics), so poisoning is ignored
    /// rather than turned into a panic of every later call.
    fn lock(&self) -> MutexGuard<'_, Store> {
        self.shared
            .store
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// One claim with the caller's `token` (see `Store::claim` for a claim
    /// that finds its own token), and the instant its lease counts from.
    fn claim_now(
        &self,
        key: &str,
        fingerprint: &Fingerprint,
        token: FencingToken,
        lease: Duration,
    ) -> Result<(ClaimOutcome, Instant), BackendError> {
        let bounds = self.shared.limits.get();
        let (claimed, now) = {
            let mut store = self.lock();
            let now = Instant::now();
            store.purge(now);
            (
                store.claim(key, fingerprint, token, lease, now, &bounds),
                now,
            )
        };
        match claimed {
            Ok(claimed) => {
                report(claimed.evicted);
                Ok((claimed.outcome, now))
            }
            Err(full) => Err(full.into_claim_error()),
        }
    }

    fn complete_now(
        &self,
        key: &str,
        token: FencingToken,
        output: &[u8],
        ttl: Duration,
    ) -> Result<CasOutcome, BackendError> {
        let bounds = self.shared.limits.get();
        if output.len() > bounds.max_output_bytes {
            return Err(BackendError::output_too_large(
                output.len(),
                bounds.max_output_bytes,
                "MemoryBackend::max_output_bytes",
            ));
        }
        // Copied before locking, so the lock is never held for a large copy.
        let len = output.len();
        let output = output.to_vec();
        let completed = {
            let mut store = self.lock();
            let now = Instant::now();
            store.purge(now);
            store.complete(key, token, output, ttl, now, &bounds)
        };
        let completed = completed.map_err(|full| full.into_complete_error(len))?;
        if let Some(notify) = completed.notify {
            notify.notify_waiters();
        }
        report(completed.evicted);
        Ok(completed.outcome)
    }

    fn release_now(&self, key: &str, token: FencingToken) -> CasOutcome {
        let released = {
            let mut store = self.lock();
            store.purge(Instant::now());
            store.release(key, token)
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
        let mut store = self.lock();
        let now = Instant::now();
        store.purge(now);
        store.renew(key, token, lease, now)
    }
}

/// Logs what was evicted and frees it, outside the lock.
fn report(evicted: Vec<Evicted>) {
    for evicted in &evicted {
        evicted.report();
    }
}

impl Default for MemoryBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tallies = {
            let mut store = self.lock();
            store.purge(Instant::now());
            store.tallies()
        };
        let bounds = self.shared.limits.get();
        let claims = tallies.live.entries + tallies.stale.entries;
        f.debug_struct("MemoryBackend")
            .field("len", &tallies.total().entries)
            .field("claims", &claims)
            .field("completed", &tallies.completed.entries)
            .field("used_bytes", &tallies.total().bytes)
            .field("max_entries", &bounds.max_entries)
            .field("max_bytes", &bounds.max_bytes)
            .field("max_output_bytes", &bounds.max_output_bytes)
            .field("evict_completed_when_full", &bounds.evict_completed)
            .finish()
    }
}

#[async_trait]
impl Backend for MemoryBackend {
    async fn claim(
        &self,
        key: &str,
        fingerprint: &Fingerprint,
        token: FencingToken,
        lease: Duration,
    ) -> Result<ClaimOutcome, BackendError> {
        self.claim_now(key, fingerprint, token, lease)
            .map(|(outcome, _)| outcome)
    }

    /// Always answers: a claim is one short lock.
    fn claim_in_place(
        &self,
        key: &str,
        fingerprint: &Fingerprint,
        token: FencingToken,
        lease: Duration,
    ) -> Option<Result<(ClaimOutcome, Instant), BackendError>> {
        Some(self.claim_now(key, fingerprint, token, lease))
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
            let mut store = self.lock();
            let now = Instant::now();
            store.purge(now);
            let Some((live_notify, lease_remaining)) = store.live_claim(key, now) else {
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

    /// `None`: every operation is a short lock, finished when first polled,
    /// so a dropped call's release or completion runs in place.
    fn detached(&self) -> Option<Arc<dyn Backend>> {
        None
    }

    /// [`KeyForm::Local`]: the records live and die with this process, so
    /// a key need not read the same elsewhere, and a short one is not hashed.
    fn key_form(&self) -> KeyForm {
        KeyForm::Local
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};

    use super::test_support::*;
    use super::*;
    use crate::BackendErrorKind;

    #[test]
    fn is_send_sync_and_object_safe() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<MemoryBackend>();
        let _: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    }

    #[test]
    fn bounds_default_and_clamp() {
        let backend = MemoryBackend::default();
        let bounds = backend.shared.limits.get();
        assert_eq!(
            (
                bounds.max_entries,
                bounds.max_bytes,
                bounds.max_output_bytes
            ),
            (100_000, 128 * 1024 * 1024, 1024 * 1024)
        );
        assert!(!bounds.evict_completed, "fails closed by default");
        assert_eq!(
            MemoryBackend::with_max_entries(0)
                .shared
                .limits
                .get()
                .max_entries,
            1
        );
        let set = MemoryBackend::new()
            .max_output_bytes(70)
            .with_max_bytes(9)
            .evict_completed_when_full(true);
        let bounds = set.shared.limits.get();
        assert_eq!(
            (
                bounds.max_output_bytes,
                bounds.max_bytes,
                bounds.evict_completed
            ),
            (70, 9, true)
        );
        assert!(backend.is_empty());
        assert_eq!(backend.used_bytes(), 0);
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
            backend
                .claim("k", &fp(1), FencingToken::generate(), LEASE)
                .await
                .unwrap(),
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
                crate::backend::release_in_background(&*backend, "tests", "k", token);
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
            backend
                .claim("k", &fp(1), FencingToken::generate(), LEASE)
                .await
                .unwrap(),
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

    /// Scopes and keys that would run together in a plain `{scope}:{key}`
    /// (or differ only around the local form's length limit) each get a
    /// record of their own: every call replays its own result, never
    /// another's, and nothing is refused as a mismatch.
    #[tokio::test(start_paused = true)]
    async fn tricky_scopes_and_keys_never_share_a_record() {
        let store = MemoryBackend::new();
        let long = "k".repeat(62);
        let keys: Vec<&str> = vec![
            "b",
            ":b",
            "a:b",
            "",
            ":",
            "\"b",
            "#b",
            "z",
            "y:\"z",
            &long,
            &long[1..],
        ];
        let scopes = ["a", "a:", "a:b", "1:a", "", "a\"", "2:a:", "x", "x:\"y"];
        let call = |scope: &'static str, key: &str, label: String| {
            let store = &store;
            let key = key.to_owned();
            async move {
                crate::Idempotency::new(store)
                    .scope(scope)
                    .run(&key, &(), || async { Ok::<_, crate::Error>(label) })
                    .await
            }
        };
        for (round, label_of) in [(0, "first"), (1, "retry")] {
            for scope in scopes {
                for key in &keys {
                    let label = format!("{label_of}:{scope}|{key}");
                    let answer = call(scope, key, label).await.unwrap();
                    assert_eq!(
                        answer,
                        format!("first:{scope}|{key}"),
                        "round {round}: scope {scope:?}, key {key:?} got another call's result"
                    );
                }
            }
        }
        assert_eq!(store.len(), scopes.len() * keys.len());
    }

    /// The in-place claim the engine uses is the same operation as
    /// `claim`, and says when the lease it granted started.
    #[tokio::test(start_paused = true)]
    async fn a_claim_in_place_answers_as_claim_does() {
        let backend = MemoryBackend::new();
        let token = FencingToken::generate();
        let granted_at = Instant::now();
        let (outcome, at) = backend
            .claim_in_place("k", &fp(1), token, LEASE)
            .unwrap()
            .unwrap();
        assert_eq!(
            outcome,
            ClaimOutcome::Acquired {
                token,
                took_over: false
            }
        );
        assert_eq!(at, granted_at);
        tokio::time::advance(Duration::from_secs(10)).await;
        let again = backend.claim_in_place("k", &fp(1), FencingToken::generate(), LEASE);
        assert_eq!(
            again.unwrap().unwrap().0,
            ClaimOutcome::InProgress {
                lease_remaining: LEASE - Duration::from_secs(10)
            },
            "the lease counts from the instant answered"
        );
        backend.complete("k", token, b"out", TTL).await.unwrap();
        let (completed, _) = backend
            .claim_in_place("k", &fp(1), FencingToken::generate(), LEASE)
            .unwrap()
            .unwrap();
        assert_eq!(
            completed,
            ClaimOutcome::Completed {
                output: b"out".to_vec()
            }
        );
        let (mismatch, _) = backend
            .claim_in_place("k", &fp(2), FencingToken::generate(), LEASE)
            .unwrap()
            .unwrap();
        assert_eq!(mismatch, ClaimOutcome::Mismatch);
        let full = MemoryBackend::with_max_entries(1);
        acquire(&full, "a", LEASE).await;
        let refused = full.claim_in_place("b", &fp(1), FencingToken::generate(), LEASE);
        assert!(
            matches!(&refused, Some(Err(e)) if e.kind() == BackendErrorKind::Capacity),
            "{refused:?}"
        );
        let wrapped: &dyn Backend = &&backend;
        assert!(
            wrapped
                .claim_in_place("k", &fp(1), FencingToken::generate(), LEASE)
                .is_some(),
            "forwarded through references"
        );
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
                    backend
                        .claim("k", &fp(1), FencingToken::generate(), LEASE)
                        .await
                        .unwrap()
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
            format!(
                "MemoryBackend {{ len: 2, claims: 1, completed: 1, used_bytes: {}, \
                 max_entries: 10, max_bytes: 134217728, max_output_bytes: 100, \
                 evict_completed_when_full: false }}",
                backend.used_bytes()
            )
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_poisoned_lock_is_recovered() {
        let backend = MemoryBackend::new();
        let token = acquire(&backend, "k", LEASE).await;
        std::thread::scope(|scope| {
            let panicked = scope
                .spawn(|| {
                    let _guard = backend.shared.store.lock();
                    panic!("poisoning the lock on purpose");
                })
                .join();
            assert!(panicked.is_err());
        });
        assert!(backend.shared.store.is_poisoned());
        assert_eq!(
            backend.complete("k", token, b"out", TTL).await.unwrap(),
            CasOutcome::Applied
        );
        assert_eq!(backend.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn clones_share_the_records_and_the_bounds() {
        let backend = MemoryBackend::with_max_entries(2);
        let clone = backend.clone();
        let token = acquire(&backend, "k", LEASE).await;
        assert!(matches!(
            clone
                .claim("k", &fp(1), FencingToken::generate(), LEASE)
                .await
                .unwrap(),
            ClaimOutcome::InProgress { .. }
        ));
        assert_eq!(
            clone.complete("k", token, b"out", TTL).await.unwrap(),
            CasOutcome::Applied,
            "a clone completes the original's claim"
        );
        assert!(replays(&backend, "k", b"out").await);
        let clone = clone.with_max_bytes(12_345).evict_completed_when_full(true);
        assert_eq!(backend.shared.limits.get().max_bytes, 12_345);
        assert!(backend.shared.limits.get().evict_completed);
        acquire(&clone, "other", LEASE).await;
        assert_eq!((backend.len(), clone.len()), (2, 2));
        let other = MemoryBackend::new();
        acquire(&other, "k", LEASE).await;
        assert_eq!(
            (other.len(), backend.len()),
            (1, 2),
            "a new store is a store of its own"
        );
        // Owned handles for tasks, as a `&self.store` clone gives.
        let task = tokio::spawn({
            let backend = backend.clone();
            async move { backend.len() }
        });
        assert_eq!(task.await.unwrap(), 2);
    }

    /// Counts the runs of a body run through the runtime on `store`.
    async fn run_counted(
        store: &MemoryBackend,
        key: &str,
        output_len: usize,
        runs: &AtomicUsize,
    ) -> Result<usize, crate::Error> {
        crate::Idempotency::new(store)
            .scope("tests::memory")
            .run(key, &1, || async {
                runs.fetch_add(1, AtomicOrdering::SeqCst);
                Ok::<_, crate::Error>("x".repeat(output_len))
            })
            .await
            .map(|output| output.len())
    }

    #[tokio::test(start_paused = true)]
    async fn new_keys_cannot_make_a_completed_call_run_again() {
        let store = MemoryBackend::with_max_entries(1);
        let runs = AtomicUsize::new(0);
        assert_eq!(run_counted(&store, "charge", 10, &runs).await.unwrap(), 10);
        // A client that controls keys floods the store with new ones.
        for attacker in ["a", "b", "c"] {
            let refused = run_counted(&store, attacker, 10, &runs).await;
            assert!(
                matches!(&refused, Err(crate::Error::Backend(e)) if e.kind() == BackendErrorKind::Capacity),
                "{refused:?}"
            );
        }
        assert_eq!(run_counted(&store, "charge", 10, &runs).await.unwrap(), 10);
        assert_eq!(
            runs.load(AtomicOrdering::SeqCst),
            1,
            "replayed, never run again"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_result_beyond_the_byte_budget_is_not_stored_and_never_run_again() {
        // Room for the claims, and for results far smaller than this one.
        let store = MemoryBackend::new().with_max_bytes(4096);
        let runs = AtomicUsize::new(0);
        assert_eq!(
            run_counted(&store, "big", 8000, &runs).await.unwrap(),
            8000,
            "the caller gets its own result"
        );
        for _ in 0..3 {
            let retry = run_counted(&store, "big", 8000, &runs).await;
            match retry {
                Err(crate::Error::ResultNotStored { reason }) => {
                    assert!(reason.contains("too large for the store"), "{reason}")
                }
                other => panic!("expected ResultNotStored, got {other:?}"),
            }
        }
        assert_eq!(runs.load(AtomicOrdering::SeqCst), 1);
        assert_bounded(&store);
    }

    #[tokio::test(start_paused = true)]
    async fn opted_in_eviction_lets_a_retry_of_an_evicted_key_run_again() {
        let store = MemoryBackend::with_max_entries(1).evict_completed_when_full(true);
        let runs = AtomicUsize::new(0);
        run_counted(&store, "first", 10, &runs).await.unwrap();
        run_counted(&store, "second", 10, &runs).await.unwrap();
        run_counted(&store, "first", 10, &runs).await.unwrap();
        assert_eq!(
            runs.load(AtomicOrdering::SeqCst),
            3,
            "the documented price of evict_completed_when_full"
        );
    }
}
