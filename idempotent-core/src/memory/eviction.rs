//! What a full store may drop to make room, and what it answers instead.
//!
//! The store fails closed: a live claim promises its holder the key, and an
//! unexpired completed record promises every retry a replay, so neither is
//! dropped to make room. What may go are claims whose lease ran out (kept one
//! more lease only so the decision table can apply to them) and, when the
//! user opted in with `evict_completed_when_full`, completed records, the
//! soonest to expire first. Expired records are gone before this runs.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::budget::Bounds;
use super::index::{Tallies, Tally};
use super::record::Record;
use super::store::Store;
use crate::{BackendError, BackendErrorKind};

/// The room an operation needs: bytes, and for a new key an entry too.
#[derive(Clone, Copy, Debug)]
pub(super) struct Room {
    new_record: bool,
    bytes: usize,
}

impl Room {
    /// A new record charged `bytes`.
    pub(super) fn for_record(bytes: usize) -> Self {
        Self {
            new_record: true,
            bytes,
        }
    }

    /// A completed output charged `bytes` in place of its claim, which is not
    /// counted in the store while room is made for it.
    pub(super) fn for_output(bytes: usize) -> Self {
        Self {
            new_record: false,
            bytes,
        }
    }

    fn fits(&self, used: Tally, bounds: &Bounds) -> bool {
        let entries = !self.new_record || used.entries < bounds.max_entries;
        entries && used.bytes.saturating_add(self.bytes) <= bounds.max_bytes
    }
}

/// There is no room, and nothing that may be evicted would make it.
#[derive(Debug)]
pub(super) struct Full {
    room: Room,
    tallies: Tallies,
    bounds: Bounds,
}

impl Store {
    /// Makes `room` by evicting what may go (see the module docs), or fails
    /// without evicting anything when that would not be enough.
    pub(super) fn make_room(
        &mut self,
        room: Room,
        bounds: &Bounds,
        now: Instant,
    ) -> Result<Vec<Evicted>, Full> {
        let tallies = self.tallies();
        if room.fits(tallies.total(), bounds) {
            return Ok(Vec::new());
        }
        let full = Full {
            room,
            tallies,
            bounds: *bounds,
        };
        // Counted first, so nothing is evicted for an operation refused anyway.
        if !room.fits(tallies.total() - full.evictable(), bounds) {
            return Err(full);
        }
        let mut evicted = Vec::new();
        while !room.fits(self.tallies().total(), bounds) {
            let (kind, key) = if let Some((_, key)) = self.index.pop_stale() {
                (EvictedKind::StaleClaim, key)
            } else if let Some((expires_at, key)) = bounds
                .evict_completed
                .then(|| self.index.pop_completed())
                .flatten()
            {
                let ttl_left = expires_at.saturating_duration_since(now);
                (EvictedKind::Completed { ttl_left }, key)
            } else {
                // Unreachable: what may go was counted above.
                return Err(full);
            };
            let record = self.records.remove(&key);
            evicted.push(Evicted {
                key,
                kind,
                _record: record,
            });
        }
        Ok(evicted)
    }
}

impl Full {
    /// What the store may evict.
    fn evictable(&self) -> Tally {
        let completed = if self.bounds.evict_completed {
            self.tallies.completed
        } else {
            Tally::default()
        };
        self.tallies.stale + completed
    }

    /// What nothing may evict: live claims, and unexpired results unless
    /// their eviction is on.
    fn kept(&self) -> Tally {
        self.tallies.total() - self.evictable()
    }

    fn entries_bound_hit(&self) -> bool {
        self.room.new_record && self.kept().entries >= self.bounds.max_entries
    }

    /// How the records that stay are made up, for the error messages.
    fn kept_records(&self) -> String {
        let live = counted(self.tallies.live.entries, "live claim");
        if self.bounds.evict_completed || self.tallies.completed.entries == 0 {
            format!("{live} of running calls, which are never evicted")
        } else {
            format!(
                "{live} and {}, kept until they expire so that no retry runs its body \
                 again (see MemoryBackend::evict_completed_when_full)",
                counted(self.tallies.completed.entries, "unexpired result")
            )
        }
    }

    /// The `Capacity` error of a claim of a new key.
    pub(super) fn into_claim_error(self) -> BackendError {
        let message = if self.entries_bound_hit() {
            format!(
                "the MemoryBackend is full (max_entries = {}): its records are {}; raise the \
                 bound with MemoryBackend::with_max_entries",
                self.bounds.max_entries,
                self.kept_records()
            )
        } else {
            format!(
                "the MemoryBackend's byte budget is full (max_bytes = {}): a new claim needs \
                 {} bytes, and {} bytes are taken by {}; raise the budget with \
                 MemoryBackend::with_max_bytes",
                self.bounds.max_bytes,
                self.room.bytes,
                self.kept().bytes,
                self.kept_records()
            )
        };
        BackendError::new(BackendErrorKind::Capacity, message)
    }

    /// The error of a completion with an output of `len` bytes: `TooLarge`,
    /// because the body already ran (see `Store::complete`). The budget comes
    /// first in the message, which the runtime shortens into its marker.
    pub(super) fn into_complete_error(self, len: usize) -> BackendError {
        BackendError::new(
            BackendErrorKind::TooLarge,
            format!(
                "no room for a {len}-byte output in the MemoryBackend's byte budget \
                 (max_bytes = {}; raise it with MemoryBackend::with_max_bytes): {} bytes \
                 are taken by {}",
                self.bounds.max_bytes,
                self.kept().bytes,
                self.kept_records()
            ),
        )
    }
}

/// A record evicted to make room, reported once the lock is released.
pub(super) struct Evicted {
    key: Arc<str>,
    kind: EvictedKind,
    /// Dropped with this value, so a large output is freed outside the lock.
    _record: Option<Record>,
}

enum EvictedKind {
    StaleClaim,
    Completed { ttl_left: Duration },
}

impl Evicted {
    pub(super) fn report(&self) {
        // Named as the call's `stored_key` names it, when the engine made it.
        let public = crate::stored_key::public_form(&self.key);
        let (scope, key) = match &public {
            Some((scope, public)) => (*scope, public.as_str()),
            None => (scope_of(&self.key), &*self.key),
        };
        match self.kind {
            EvictedKind::Completed { ttl_left } => tracing::warn!(
                scope,
                key,
                ?ttl_left,
                "memory store full: evicted an unexpired result; a retry of its key runs \
                 the body again"
            ),
            EvictedKind::StaleClaim => tracing::debug!(
                scope,
                key,
                "memory store full: dropped a claim whose lease had run out"
            ),
        }
    }
}

/// `n` and `noun`, in the plural unless `n` is 1.
fn counted(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// The scope part of a stored key (`{scope}:{hex digest}`), or `""` for a key
/// written by hand.
fn scope_of(key: &str) -> &str {
    key.rsplit_once(':').map_or("", |(scope, _digest)| scope)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::record::{charge, CLAIM_RESERVE};
    use super::super::test_support::*;
    use super::super::MemoryBackend;
    use crate::{Backend, BackendErrorKind, CasOutcome, ClaimOutcome};

    #[tokio::test(start_paused = true)]
    async fn full_of_live_claims_fails_with_capacity() {
        let backend = MemoryBackend::with_max_entries(2);
        let a = acquire(&backend, "a", LEASE).await;
        acquire(&backend, "b", LEASE).await;
        let error = backend
            .claim("c", &fp(1), FencingToken::generate(), LEASE)
            .await
            .unwrap_err();
        assert_eq!(error.kind(), BackendErrorKind::Capacity);
        for needle in [
            "2 live claims of running calls, which are never evicted",
            "max_entries = 2",
            "with_max_entries",
        ] {
            assert!(error.message().contains(needle), "{error}");
        }
        assert!(holds(&backend, "a") && holds(&backend, "b") && !holds(&backend, "c"));
        assert!(
            matches!(
                backend
                    .claim("a", &fp(1), FencingToken::generate(), LEASE)
                    .await
                    .unwrap(),
                ClaimOutcome::InProgress { .. }
            ),
            "keys already held are still answered"
        );
        backend.release("a", a).await.unwrap();
        acquire(&backend, "c", LEASE).await;
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
    async fn opted_in_eviction_takes_the_soonest_expiring_result_never_a_claim() {
        let backend = MemoryBackend::with_max_entries(4).evict_completed_when_full(true);
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

        let error = backend
            .claim("new4", &fp(1), FencingToken::generate(), LEASE)
            .await
            .unwrap_err();
        assert_eq!(error.kind(), BackendErrorKind::Capacity);
        assert!(present(&["claim", "new1", "new2", "new3"]));
        assert_bounded(&backend);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_of_distinct_keys_stays_bounded_with_eviction_opted_in() {
        let max = 16;
        let backend = MemoryBackend::with_max_entries(max).evict_completed_when_full(true);
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
        assert_eq!(backend.used_bytes(), 0);
        assert_bounded(&backend);
    }

    /// The charge of a claim of `key`.
    fn claim_charge(key: &str) -> usize {
        charge(key.len(), CLAIM_RESERVE)
    }

    async fn claim_err(backend: &MemoryBackend, key: &str) -> crate::BackendError {
        backend
            .claim(key, &fp(1), FencingToken::generate(), LEASE)
            .await
            .unwrap_err()
    }

    fn assert_mentions(error: &crate::BackendError, needles: &[&str]) {
        for needle in needles {
            assert!(error.message().contains(needle), "{needle:?} in {error}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_store_refuses_a_new_key_and_keeps_unexpired_results() {
        let backend = MemoryBackend::with_max_entries(3);
        store(&backend, "a", b"out", TTL).await;
        store(&backend, "b", b"out", Duration::from_secs(1)).await;
        acquire(&backend, "running", LEASE).await;
        let error = claim_err(&backend, "c").await;
        assert_eq!(error.kind(), BackendErrorKind::Capacity);
        assert_mentions(
            &error,
            &[
                "max_entries = 3",
                "1 live claim and 2 unexpired results",
                "evict_completed_when_full",
                "with_max_entries",
            ],
        );
        for key in ["a", "b"] {
            assert!(replays(&backend, key, b"out").await, "{key} replays");
        }
        assert!(holds(&backend, "running") && !holds(&backend, "c"));
        assert_bounded(&backend);

        // Expiry, not eviction, makes room.
        tokio::time::advance(Duration::from_secs(1)).await;
        acquire(&backend, "c", LEASE).await;
        assert!(replays(&backend, "a", b"out").await);
        assert_bounded(&backend);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_of_distinct_keys_on_a_full_store_is_refused_until_results_expire() {
        let max = 16;
        let backend = MemoryBackend::with_max_entries(max);
        for i in 0..max {
            store(&backend, &format!("kept:{i}"), b"out", TTL).await;
        }
        // Crashed holders' claims come and go while the store is full.
        for i in 0..10 * max {
            let error = claim_err(&backend, &format!("new:{i}")).await;
            assert_eq!(error.kind(), BackendErrorKind::Capacity);
            tokio::time::advance(Duration::from_millis(10)).await;
            assert_bounded(&backend);
        }
        for i in 0..max {
            assert!(replays(&backend, &format!("kept:{i}"), b"out").await);
        }
        tokio::time::advance(TTL).await;
        for i in 0..max {
            acquire(&backend, &format!("crash:{i}"), Duration::from_millis(50)).await;
        }
        assert_eq!(
            claim_err(&backend, "one-more").await.kind(),
            BackendErrorKind::Capacity
        );
        tokio::time::advance(Duration::from_millis(50)).await;
        // Lapsed, kept one more lease, and dropped early to make room.
        for i in 0..max {
            store(&backend, &format!("after:{i}"), b"out", TTL).await;
            assert_bounded(&backend);
        }
        assert_eq!(backend.len(), max);
    }

    #[tokio::test(start_paused = true)]
    async fn opted_in_eviction_warns_with_the_scope_and_key() {
        let captured = Captured::default();
        let _guard = captured.set_default();
        let backend = MemoryBackend::with_max_entries(1).evict_completed_when_full(true);
        store(&backend, "payments::charge:00ff", b"out", TTL).await;
        acquire(&backend, "payments::charge:11ee", LEASE).await;
        assert!(!holds(&backend, "payments::charge:00ff"));
        let warnings: Vec<_> = captured
            .events()
            .into_iter()
            .filter(|(level, _)| *level == tracing::Level::WARN)
            .map(|(_, fields)| fields)
            .collect();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        let fields = &warnings[0];
        for field in [
            "scope=payments::charge",
            "key=payments::charge:00ff",
            "ttl_left=3600s",
        ] {
            assert!(fields.iter().any(|f| f == field), "{field} in {fields:?}");
        }
        let message = fields.iter().find(|f| f.starts_with("message=")).unwrap();
        assert!(message.contains("runs the body again"), "{message}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_claim_beyond_the_byte_budget_fails_with_capacity() {
        let budget = claim_charge("a") + claim_charge("b");
        let backend = MemoryBackend::new().with_max_bytes(budget);
        let a = acquire(&backend, "a", LEASE).await;
        acquire(&backend, "b", LEASE).await;
        assert_eq!(backend.used_bytes(), budget);
        let error = claim_err(&backend, "c").await;
        assert_eq!(error.kind(), BackendErrorKind::Capacity);
        assert_mentions(
            &error,
            &[
                &format!("max_bytes = {budget}"),
                &format!("needs {} bytes", claim_charge("c")),
                "2 live claims",
                "with_max_bytes",
            ],
        );
        assert!(matches!(
            backend
                .claim("a", &fp(1), FencingToken::generate(), LEASE)
                .await
                .unwrap(),
            ClaimOutcome::InProgress { .. }
        ));
        backend.release("a", a).await.unwrap();
        acquire(&backend, "c", LEASE).await;
        assert_bounded(&backend);
    }

    #[tokio::test(start_paused = true)]
    async fn a_completion_beyond_the_byte_budget_is_too_large_and_keeps_the_claim() {
        let budget = claim_charge("k") + 1000;
        let backend = MemoryBackend::new().with_max_bytes(budget);
        let token = acquire(&backend, "k", LEASE).await;
        // Room for 1000 bytes beyond the claim's reserve, not one more.
        let fits = CLAIM_RESERVE + 1000;
        let error = backend
            .complete("k", token, &vec![0; fits + 1], TTL)
            .await
            .unwrap_err();
        assert_eq!(error.kind(), BackendErrorKind::TooLarge);
        assert_mentions(
            &error,
            &[
                &format!("{}-byte output", fits + 1),
                &format!("max_bytes = {budget}"),
                "with_max_bytes",
            ],
        );
        assert!(matches!(
            backend
                .claim("k", &fp(1), FencingToken::generate(), LEASE)
                .await
                .unwrap(),
            ClaimOutcome::InProgress { .. }
        ));
        assert_bounded(&backend);
        assert_eq!(
            backend
                .complete("k", token, &vec![0; fits], TTL)
                .await
                .unwrap(),
            CasOutcome::Applied
        );
        assert_eq!(backend.used_bytes(), budget);
        assert_bounded(&backend);
    }

    #[tokio::test(start_paused = true)]
    async fn an_output_within_the_claims_reserve_completes_in_a_full_store() {
        let backend = MemoryBackend::new().with_max_bytes(3 * claim_charge("a"));
        let tokens = [
            acquire(&backend, "a", LEASE).await,
            acquire(&backend, "b", LEASE).await,
            acquire(&backend, "c", LEASE).await,
        ];
        assert_eq!(
            claim_err(&backend, "d").await.kind(),
            BackendErrorKind::Capacity
        );
        // The runtime's "not stored" marker is one such output.
        let marker = crate::backend::stored_result::not_stored_marker();
        assert!(marker.len() <= CLAIM_RESERVE);
        for (key, token) in ["a", "b", "c"].into_iter().zip(tokens) {
            assert_eq!(
                backend.complete(key, token, &marker, TTL).await.unwrap(),
                CasOutcome::Applied
            );
            assert_bounded(&backend);
        }
        assert!(replays(&backend, "a", &marker).await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lapsed_holder_completing_is_not_evicted_to_make_its_own_room() {
        let lease = Duration::from_secs(10);
        let budget = claim_charge("slow") + claim_charge("gone") + 100;
        let backend = MemoryBackend::new().with_max_bytes(budget);
        let slow = acquire(&backend, "slow", lease).await;
        acquire(&backend, "gone", lease).await;
        tokio::time::advance(lease + Duration::from_secs(1)).await;
        // Both lapsed; "slow" completes with an output that needs the room of
        // the other lapsed claim, which goes instead of it.
        let output = vec![1; CLAIM_RESERVE + 100 + claim_charge("gone")];
        assert_eq!(
            backend.complete("slow", slow, &output, TTL).await.unwrap(),
            CasOutcome::Applied
        );
        assert!(!holds(&backend, "gone"));
        assert!(replays(&backend, "slow", &output).await);
        assert_eq!(backend.used_bytes(), budget);
        assert_bounded(&backend);
    }

    #[tokio::test(start_paused = true)]
    async fn opted_in_eviction_makes_byte_room_soonest_expiring_first() {
        let result = charge(1, 1000);
        let backend = MemoryBackend::new()
            .with_max_bytes(3 * result)
            .evict_completed_when_full(true);
        for (key, ttl) in [("a", 300), ("b", 100), ("c", 200)] {
            store(&backend, key, &[0; 1000], Duration::from_secs(ttl)).await;
        }
        // Twice a result's room: the two that expire soonest go.
        let big = vec![0; 2 * result - charge(1, 0)];
        store(&backend, "d", &big, TTL).await;
        assert!(holds(&backend, "a") && !holds(&backend, "b") && !holds(&backend, "c"));
        assert!(replays(&backend, "d", &big).await);
        assert_bounded(&backend);
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_is_evicted_for_a_claim_that_is_refused_anyway() {
        let backend = MemoryBackend::new()
            .with_max_bytes(claim_charge("running") + claim_charge("done"))
            .evict_completed_when_full(true);
        acquire(&backend, "running", LEASE).await;
        store(&backend, "done", &[0; 100], TTL).await;
        // A key so long that even evicting "done" leaves no room for it.
        let long = "k".repeat(200);
        assert_eq!(
            claim_err(&backend, &long).await.kind(),
            BackendErrorKind::Capacity
        );
        assert!(replays(&backend, "done", &[0; 100]).await);
        assert_bounded(&backend);
    }

    #[tokio::test(start_paused = true)]
    async fn zero_and_huge_limits() {
        let none = MemoryBackend::new().with_max_bytes(0);
        let error = claim_err(&none, "k").await;
        assert_eq!(error.kind(), BackendErrorKind::Capacity);
        assert_mentions(&error, &["max_bytes = 0"]);
        assert!(none.is_empty());

        let one = MemoryBackend::with_max_entries(0);
        acquire(&one, "k", LEASE).await;
        assert_eq!(
            claim_err(&one, "l").await.kind(),
            BackendErrorKind::Capacity
        );

        let unbounded = MemoryBackend::with_max_entries(usize::MAX)
            .with_max_bytes(usize::MAX)
            .max_output_bytes(usize::MAX);
        for i in 0..100 {
            store(&unbounded, &format!("k{i}"), &[0; 4096], Duration::MAX).await;
        }
        assert_eq!(
            unbounded.used_bytes(),
            10 * charge(2, 4096) + 90 * charge(3, 4096)
        );
        assert_bounded(&unbounded);
    }

    #[tokio::test(start_paused = true)]
    async fn the_default_budget_bounds_the_bytes_of_outputs() {
        let backend = MemoryBackend::new();
        let output = vec![7u8; 1024 * 1024];
        let mut stored = 0;
        let mut too_large = 0;
        for i in 0..200 {
            let key = format!("big:{i}");
            let token = acquire(&backend, &key, LEASE).await;
            match backend.complete(&key, token, &output, TTL).await {
                Ok(CasOutcome::Applied) => stored += 1,
                Err(error) if error.kind() == BackendErrorKind::TooLarge => {
                    too_large += 1;
                    backend.release(&key, token).await.unwrap();
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(backend.used_bytes() <= 128 * 1024 * 1024);
        assert_eq!((stored, too_large), (127, 73));
        assert_bounded(&backend);
    }

    /// A small deterministic generator, so a failing schedule is replayed
    /// from its seed.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            // xorshift64*
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
        }
    }

    /// Random schedules of claims, completions of random sizes, releases,
    /// renewals and clock jumps on small stores with random bounds. After
    /// every step: the bounds hold, records and index agree, a live claim is
    /// never dropped, and an unexpired result is never dropped unless eviction
    /// was opted into. A holder is fenced off only once its lease ran out.
    #[tokio::test(start_paused = true)]
    async fn random_schedules_never_break_a_promise_nor_a_bound() {
        use std::collections::HashMap;

        use crate::FencingToken;
        use tokio::time::Instant;

        for seed in 1..=300u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let evict = rng.below(3) == 0;
            let backend = MemoryBackend::with_max_entries(1 + rng.below(8) as usize)
                .with_max_bytes(rng.below(8) as usize * 700 + rng.below(2000) as usize)
                .evict_completed_when_full(evict);
            // What the store promised: claims held (token, lease end), and
            // results kept (expiry).
            let mut claims: HashMap<String, (FencingToken, Instant)> = HashMap::new();
            let mut results: HashMap<String, Instant> = HashMap::new();
            for step in 0..200 {
                let at = format!("seed {seed}, step {step}");
                let now = Instant::now();
                let key = format!("scope:{}", rng.below(10));
                let lease = Duration::from_secs([1, 10][rng.below(2) as usize]);
                let live = |claims: &HashMap<String, (FencingToken, Instant)>| {
                    claims.get(&key).filter(|(_, until)| *until > now).copied()
                };
                match rng.below(5) {
                    0 => match backend
                        .claim(&key, &fp(1), FencingToken::generate(), lease)
                        .await
                    {
                        Ok(ClaimOutcome::Acquired { token, .. }) => {
                            assert!(live(&claims).is_none(), "{at}: a live claim taken");
                            let kept = results.get(&key).is_some_and(|until| *until > now);
                            assert!(!kept || evict, "{at}: a kept result claimed again");
                            results.remove(&key);
                            claims.insert(key, (token, now + lease));
                        }
                        Ok(ClaimOutcome::Completed { .. }) => {
                            assert!(results.get(&key).is_some_and(|until| *until > now), "{at}")
                        }
                        Ok(ClaimOutcome::InProgress { .. }) => {
                            assert!(live(&claims).is_some(), "{at}")
                        }
                        Ok(ClaimOutcome::Mismatch) => panic!("{at}: one fingerprint only"),
                        Err(error) => assert_eq!(error.kind(), BackendErrorKind::Capacity, "{at}"),
                    },
                    1 => {
                        let Some(&(token, until)) = claims.get(&key) else {
                            continue;
                        };
                        let output = vec![0; rng.below(1500) as usize];
                        let ttl = Duration::from_secs([0, 5, 60][rng.below(3) as usize]);
                        match backend.complete(&key, token, &output, ttl).await {
                            Ok(CasOutcome::Applied) => {
                                claims.remove(&key);
                                results.insert(key, now + ttl);
                            }
                            Ok(CasOutcome::Fenced) => {
                                assert!(until <= now, "{at}: a live holder fenced");
                                claims.remove(&key);
                            }
                            Err(error) => {
                                assert_eq!(error.kind(), BackendErrorKind::TooLarge, "{at}")
                            }
                        }
                    }
                    2 | 3 => {
                        let Some(&(token, until)) = claims.get(&key) else {
                            continue;
                        };
                        let renew = rng.below(2) == 0;
                        let outcome = if renew {
                            backend.renew(&key, token, lease).await.unwrap()
                        } else {
                            backend.release(&key, token).await.unwrap()
                        };
                        assert!(
                            outcome == CasOutcome::Applied || until <= now,
                            "{at}: a live holder fenced"
                        );
                        if renew && outcome == CasOutcome::Applied {
                            claims.insert(key, (token, now + lease));
                        } else {
                            claims.remove(&key);
                        }
                    }
                    _ => {
                        let jump = Duration::from_millis(rng.below(15_000));
                        tokio::time::advance(jump).await;
                    }
                }
                assert_bounded(&backend);
                let now = Instant::now();
                let store = backend.lock();
                for (key, (token, until)) in &claims {
                    if *until > now {
                        let record = store.records.get(key.as_str());
                        assert!(
                            record.is_some_and(|record| record.held_by(*token)),
                            "{at}: the live claim of {key} was dropped"
                        );
                    }
                }
                for (key, until) in &results {
                    if *until > now && !evict {
                        assert!(
                            store.records.contains_key(key.as_str()),
                            "{at}: the result of {key} was dropped"
                        );
                    }
                }
            }
        }
    }
}
