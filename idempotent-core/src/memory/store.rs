//! The records behind the lock, and the four operations of the decision
//! table on them. Each function here is one whole operation under one lock
//! acquisition, taking the time as `now`, so none of it awaits.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::budget::Bounds;
use super::eviction::{Evicted, Full, Room};
use super::index::{Indices, Tallies};
use super::record::{charge, deadline, Record, State, CLAIM_RESERVE};
use crate::{CasOutcome, ClaimOutcome, FencingToken, Fingerprint};

/// The records by key. Looked up on every call, so hashed with foldhash: a
/// key is some 80 bytes, where SipHash costs more than the rest of the
/// lookup; its per-map random seed keeps keys a caller chose (the store is
/// public) from being made to collide.
pub(super) type Records = HashMap<Arc<str>, Record, foldhash::fast::RandomState>;

/// The records and their index, which must agree: every record is indexed
/// exactly once and charged as it is. The index is what bounds the memory, so
/// records change only through [`Store::insert`], [`Store::remove`] and
/// [`Store::update`] here, and through eviction, which takes entries out of
/// the index and then forgets their records.
#[derive(Default)]
pub(super) struct Store {
    pub(super) records: Records,
    pub(super) index: Indices,
}

/// What a claim did, with the records it evicted to make room: those are
/// dropped and reported once the lock is released.
pub(super) struct Claimed {
    pub(super) outcome: ClaimOutcome,
    pub(super) evicted: Vec<Evicted>,
}

/// What a completion did: the waiters to wake, and the records evicted to
/// make room, both handled once the lock is released.
pub(super) struct Completed {
    pub(super) outcome: CasOutcome,
    pub(super) notify: Option<Arc<Notify>>,
    pub(super) evicted: Vec<Evicted>,
}

impl Completed {
    fn nothing(outcome: CasOutcome) -> Self {
        Self {
            outcome,
            notify: None,
            evicted: Vec::new(),
        }
    }
}

impl Store {
    /// Drops every record expired at `now`, and moves claims whose lease ran
    /// out to `stale`. Every operation starts here, so what it finds is never
    /// expired.
    pub(super) fn purge(&mut self, now: Instant) {
        self.index.lapse(now, &self.records);
        while let Some(key) = self.index.pop_expired(now) {
            self.records.remove(&key);
        }
    }

    pub(super) fn tallies(&self) -> Tallies {
        self.index.tallies()
    }

    /// Claims `key` for `token`, following the decision table.
    ///
    /// The token is the caller's: a claim that finds a claim already holding
    /// `token` (its own, applied by an earlier attempt whose answer was lost)
    /// is `Acquired` without a takeover. A new key needs room; a full store
    /// answers [`Full`] rather than evict what it may not.
    pub(super) fn claim(
        &mut self,
        key: &str,
        fingerprint: &Fingerprint,
        token: FencingToken,
        lease: Duration,
        now: Instant,
        bounds: &Bounds,
    ) -> Result<Claimed, Full> {
        let Some(record) = self.records.get(key) else {
            let room = Room::for_record(charge(key.len(), CLAIM_RESERVE));
            let evicted = self.make_room(room, bounds, now)?;
            self.insert(Record::claim(key, *fingerprint, token, lease, now), now);
            return Ok(Claimed {
                outcome: ClaimOutcome::Acquired {
                    token,
                    took_over: false,
                },
                evicted,
            });
        };
        let answer = |outcome| {
            Ok(Claimed {
                outcome,
                evicted: Vec::new(),
            })
        };
        if record.fingerprint != *fingerprint {
            return answer(ClaimOutcome::Mismatch);
        }
        let lease_until = match &record.state {
            State::Completed { output, .. } => {
                return answer(ClaimOutcome::Completed {
                    output: output.clone(),
                })
            }
            State::Claimed { lease_until, .. } => *lease_until,
        };
        let own = record.token == token;
        if !own && lease_until > now {
            return answer(ClaimOutcome::InProgress {
                lease_remaining: lease_until.saturating_duration_since(now),
            });
        }
        // A takeover, or the caller's own claim: either way the caller runs
        // the body from now on, believing its lease starts now, so the lease
        // is granted again from now (an own claim's older lease end would
        // otherwise come before the end its holder counts on). The Notify is
        // kept: duplicates already waiting are woken by whatever the holder
        // does next.
        self.update(key, now, |record| {
            record.token = token;
            record.state.lease(now, lease);
        });
        answer(ClaimOutcome::Acquired {
            token,
            took_over: !own,
        })
    }

    /// Replaces the claim holding `token` by the completed `output`.
    ///
    /// A completion comes after the body ran, so a byte budget with no room
    /// for the output cannot be answered like a full store at claim time.
    /// `Err` is reported as `TooLarge`, which the runtime answers by storing
    /// its small "not stored" marker: retries get `ResultNotStored` and never
    /// run the body again. The marker fits without new room because every
    /// claim is charged [`CLAIM_RESERVE`] bytes for its output from the start
    /// (the output's size is unknown at claim time; reserving the largest
    /// allowed output per claim instead would let a few running calls fill
    /// the budget). Any other error would leave the claim to lapse, and the
    /// retry after it would run the body again.
    pub(super) fn complete(
        &mut self,
        key: &str,
        token: FencingToken,
        output: Vec<u8>,
        ttl: Duration,
        now: Instant,
        bounds: &Bounds,
    ) -> Result<Completed, Full> {
        match self.records.get(key) {
            Some(record) if record.held_by(token) => {}
            // A retried complete of this very claim: already applied.
            Some(record) if record.token == token => {
                return Ok(Completed::nothing(CasOutcome::Applied));
            }
            _ => return Ok(Completed::nothing(CasOutcome::Fenced)),
        }
        // Out of the index while it changes, and while room is made for it:
        // a lapsed claim is an eviction candidate, and this one must not be
        // the one to go. Its own bytes then count as free, as they become
        // once the output replaces it.
        self.unindex(key);
        let mut evicted = Vec::new();
        let needed = charge(key.len(), output.len());
        if needed > charge(key.len(), CLAIM_RESERVE) {
            match self.make_room(Room::for_output(needed), bounds, now) {
                Ok(made) => evicted = made,
                Err(full) => {
                    self.reindex(key, now);
                    return Err(full);
                }
            }
        }
        let notify = self.records.get_mut(key).and_then(|record| {
            let claim = std::mem::replace(
                &mut record.state,
                State::Completed {
                    output,
                    expires_at: deadline(now, ttl),
                },
            );
            claim.into_notify()
        });
        self.reindex(key, now);
        Ok(Completed {
            outcome: CasOutcome::Applied,
            notify,
            evicted,
        })
    }

    /// Deletes the claim holding `token`; the record is handed back, so its
    /// waiters are woken and it is dropped outside the lock.
    pub(super) fn release(&mut self, key: &str, token: FencingToken) -> Option<Record> {
        if self.records.get(key)?.held_by(token) {
            self.remove(key)
        } else {
            None
        }
    }

    /// Extends the lease of the claim holding `token` to `lease` from `now`.
    pub(super) fn renew(
        &mut self,
        key: &str,
        token: FencingToken,
        lease: Duration,
        now: Instant,
    ) -> CasOutcome {
        if !self.records.get(key).is_some_and(|r| r.held_by(token)) {
            return CasOutcome::Fenced;
        }
        self.update(key, now, |record| record.state.lease(now, lease));
        CasOutcome::Applied
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

    /// Adds a record for a key the store does not hold.
    fn insert(&mut self, record: Record, now: Instant) {
        debug_assert!(!self.records.contains_key(&record.key));
        self.index.insert(&record, now);
        self.records.insert(Arc::clone(&record.key), record);
    }

    fn remove(&mut self, key: &str) -> Option<Record> {
        let record = self.records.remove(key)?;
        self.index.remove(&record);
        Some(record)
    }

    /// Changes the record at `key` in place, re-indexing and re-charging it.
    fn update(&mut self, key: &str, now: Instant, change: impl FnOnce(&mut Record)) {
        if let Some(record) = self.records.get_mut(key) {
            self.index.remove(record);
            change(record);
            self.index.insert(record, now);
        }
    }

    fn unindex(&mut self, key: &str) {
        if let Some(record) = self.records.get(key) {
            self.index.remove(record);
        }
    }

    fn reindex(&mut self, key: &str, now: Instant) {
        if let Some(record) = self.records.get(key) {
            self.index.insert(record, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::budget::Limits;
    use super::super::test_support::*;
    use super::super::MemoryBackend;
    use super::*;
    use crate::{Backend, BackendErrorKind};

    #[tokio::test(start_paused = true)]
    async fn absent_key_is_acquired_with_any_fingerprint() {
        let backend = MemoryBackend::new();
        let first = acquire(&backend, "s:a", LEASE).await;
        let outcome = backend
            .claim("s:b", &fp(2), FencingToken::generate(), LEASE)
            .await
            .unwrap();
        let ClaimOutcome::Acquired { token, took_over } = outcome else {
            panic!("{outcome:?}");
        };
        assert!(!took_over);
        assert_ne!(token, first, "each claim has its own token");
        assert_eq!(backend.len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn live_claim_is_in_progress_or_mismatch() {
        let backend = MemoryBackend::new();
        acquire(&backend, "k", LEASE).await;
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(
            backend
                .claim("k", &fp(1), FencingToken::generate(), LEASE)
                .await
                .unwrap(),
            ClaimOutcome::InProgress {
                lease_remaining: Duration::from_secs(20)
            }
        );
        assert_eq!(
            backend
                .claim("k", &fp(2), FencingToken::generate(), LEASE)
                .await
                .unwrap(),
            ClaimOutcome::Mismatch
        );
    }

    #[tokio::test(start_paused = true)]
    async fn expired_lease_is_taken_over_with_same_fingerprint() {
        let backend = MemoryBackend::new();
        let old = acquire(&backend, "k", LEASE).await;
        tokio::time::advance(LEASE).await;
        let outcome = backend
            .claim("k", &fp(1), FencingToken::generate(), LEASE)
            .await
            .unwrap();
        let ClaimOutcome::Acquired {
            token,
            took_over: true,
        } = outcome
        else {
            panic!("{outcome:?}");
        };
        assert_ne!(token, old);
        assert_eq!(
            backend
                .claim("k", &fp(1), FencingToken::generate(), LEASE)
                .await
                .unwrap(),
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
            backend
                .claim("k", &fp(2), FencingToken::generate(), LEASE)
                .await
                .unwrap(),
            ClaimOutcome::Mismatch
        );
    }

    #[tokio::test(start_paused = true)]
    async fn expired_claim_is_forgotten_one_lease_after_it_ran_out() {
        let backend = MemoryBackend::new();
        let old = acquire(&backend, "k", LEASE).await;
        tokio::time::advance(LEASE * 2).await;
        assert!(backend.is_empty());
        let outcome = backend
            .claim("k", &fp(2), FencingToken::generate(), LEASE)
            .await
            .unwrap();
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
            backend
                .claim("k", &fp(1), FencingToken::generate(), LEASE)
                .await
                .unwrap(),
            ClaimOutcome::Completed {
                output: b"out".to_vec()
            }
        );
        assert_eq!(
            backend
                .claim("k", &fp(2), FencingToken::generate(), LEASE)
                .await
                .unwrap(),
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
            let outcome = backend
                .claim("k", &fingerprint, FencingToken::generate(), LEASE)
                .await
                .unwrap();
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
    async fn release_lets_the_next_call_run() {
        let backend = MemoryBackend::new();
        let token = acquire(&backend, "k", LEASE).await;
        assert_eq!(
            backend.release("k", token).await.unwrap(),
            CasOutcome::Applied
        );
        assert!(backend.is_empty());
        assert_bounded(&backend);
        let outcome = backend
            .claim("k", &fp(2), FencingToken::generate(), LEASE)
            .await
            .unwrap();
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
        crate::backend::release_in_background(&backend, "tests", "k", token);
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
            backend
                .claim("k", &fp(1), FencingToken::generate(), LEASE)
                .await
                .unwrap(),
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
            backend
                .claim("k", &fp(1), FencingToken::generate(), lease)
                .await
                .unwrap(),
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
            backend
                .claim("k", &fp(1), FencingToken::generate(), lease)
                .await
                .unwrap(),
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
        let ClaimOutcome::Acquired { token: new, .. } = backend
            .claim("k", &fp(1), FencingToken::generate(), LEASE)
            .await
            .unwrap()
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
        crate::backend::release_in_background(&backend, "tests", "k", old);
        assert_eq!(
            backend
                .claim("k", &fp(1), FencingToken::generate(), LEASE)
                .await
                .unwrap(),
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
            backend
                .claim("k", &fp(1), FencingToken::generate(), LEASE)
                .await
                .unwrap(),
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
        let backend = MemoryBackend::new().max_output_bytes(20);
        let token = acquire(&backend, "k", LEASE).await;
        let error = backend
            .complete("k", token, &[b'x'; 21], TTL)
            .await
            .unwrap_err();
        assert_eq!(error.kind(), BackendErrorKind::TooLarge);
        for needle in ["21 bytes", "20 bytes", "MemoryBackend::max_output_bytes"] {
            assert!(error.message().contains(needle), "{error}");
        }
        assert!(matches!(
            backend
                .claim("k", &fp(1), FencingToken::generate(), LEASE)
                .await
                .unwrap(),
            ClaimOutcome::InProgress { .. }
        ));
        assert_eq!(
            backend
                .complete("k", token, &[b'x'; 20], TTL)
                .await
                .unwrap(),
            CasOutcome::Applied
        );
    }

    // The inner claim takes the caller's token: these drive `Store::claim`
    // directly, as the `Backend` impl will once callers choose tokens.

    fn claim_with(
        store: &mut Store,
        key: &str,
        token: u64,
        lease: Duration,
        now: Instant,
    ) -> ClaimOutcome {
        let bounds = Limits::new(100).get();
        let claimed = store.claim(key, &fp(1), FencingToken::new(token), lease, now, &bounds);
        claimed.unwrap_or_else(|full| panic!("{full:?}")).outcome
    }

    #[test]
    fn a_claim_finding_its_own_live_claim_is_acquired_without_a_takeover() {
        let mut store = Store::default();
        let start = Instant::now();
        let acquired = ClaimOutcome::Acquired {
            token: FencingToken::new(7),
            took_over: false,
        };
        assert_eq!(claim_with(&mut store, "k", 7, LEASE, start), acquired);
        // An earlier attempt was applied but its answer lost: asked again,
        // the holder is told it holds the key, and its lease counts from now.
        let later = start + Duration::from_secs(20);
        assert_eq!(claim_with(&mut store, "k", 7, LEASE, later), acquired);
        assert_eq!(
            claim_with(&mut store, "k", 8, LEASE, later),
            ClaimOutcome::InProgress {
                lease_remaining: LEASE
            }
        );
        assert_eq!(store.tallies().total().entries, 1);
    }

    #[test]
    fn a_claim_finding_its_own_lapsed_claim_is_not_a_takeover_but_anothers_is() {
        let mut store = Store::default();
        let start = Instant::now();
        claim_with(&mut store, "k", 7, LEASE, start);
        let lapsed = start + LEASE + Duration::from_secs(1);
        store.purge(lapsed);
        assert_eq!(
            claim_with(&mut store, "k", 7, LEASE, lapsed),
            ClaimOutcome::Acquired {
                token: FencingToken::new(7),
                took_over: false
            }
        );
        let lapsed_again = lapsed + LEASE;
        store.purge(lapsed_again);
        assert_eq!(
            claim_with(&mut store, "k", 9, LEASE, lapsed_again),
            ClaimOutcome::Acquired {
                token: FencingToken::new(9),
                took_over: true
            }
        );
        assert_eq!(
            store.renew("k", FencingToken::new(7), LEASE, lapsed_again),
            CasOutcome::Fenced,
            "the earlier holder is fenced off"
        );
    }

    #[test]
    fn tokens_shared_by_several_keys_change_nothing() {
        let mut store = Store::default();
        let now = Instant::now();
        let bounds = Limits::new(100).get();
        for key in ["a", "b", "c"] {
            claim_with(&mut store, key, 5, LEASE, now);
        }
        let token = FencingToken::new(5);
        let completed = store
            .complete("b", token, b"out".to_vec(), TTL, now, &bounds)
            .unwrap();
        assert_eq!(completed.outcome, CasOutcome::Applied);
        assert!(store.release("a", token).is_some());
        assert_eq!(store.renew("c", token, LEASE, now), CasOutcome::Applied);
        let tallies = store.tallies();
        assert_eq!(
            (tallies.live.entries, tallies.completed.entries),
            (1, 1),
            "each record keeps its own index entry"
        );
        store.purge(now + TTL);
        assert_eq!(store.tallies().total().entries, 0);
        assert!(store.records.is_empty());
    }
}
