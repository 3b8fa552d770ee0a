//! The backend conformance suite: every rule of the [`Backend`] contract, as
//! one check per rule, written once and run by every store.
//!
//! Each check is an `async fn` taking a backend; it panics with the rule's
//! name and what it observed when the store breaks the rule. The checks work
//! at the trait level (claim, complete, release, renew, `wait_for_change`,
//! `release_in_background`), not through [`Idempotency`](crate::Idempotency),
//! so a failure points at the store itself.
//!
//! Available with the crate's `conformance` feature, meant for the
//! dev-dependencies of store crates.
//!
//! # Running the suite on a store
//!
//! Enable the `conformance` feature in the store's dev-dependencies and invoke
//! [`conformance_tests!`](crate::conformance_tests) in a test file with a
//! factory: a closure (or the path of an `async fn`) whose future gives a
//! fresh [`ConformanceFixture`], that is either the backend itself or a
//! `(backend, guard)` pair whose guard is kept alive until the test ends (a
//! private server, a temporary database):
//!
//! ```toml
//! [dev-dependencies]
//! idempotent-core = { version = "0.1", features = ["conformance"] }
//! ```
//!
//! ```ignore
//! // tests/conformance.rs of a store crate
//! use idempotent_core::MemoryBackend;
//!
//! idempotent_core::conformance_tests!(|| async { MemoryBackend::new() });
//!
//! // A store needing a server: the guard (here a redis-server process killed
//! // on drop) lives as long as the test.
//! mod redis {
//!     idempotent_core::conformance_tests!(|| async {
//!         let server = RedisServer::start();
//!         let backend = RedisBackend::connect(&server.url()).await.unwrap();
//!         (backend, server)
//!     });
//! }
//! ```
//!
//! The macro expands to one `#[test]` per rule, named after the rule's check
//! function. Each test builds its own multi-thread Tokio runtime (see
//! [`run`]), so the calling crate needs no Tokio dev-dependency, and the
//! factory runs inside that runtime (it may connect, spawn, await). Invoke the
//! macro once per module; put each configuration of a store (standalone,
//! cluster, ...) in its own `mod`.
//!
//! # What a fixture must provide
//!
//! - A store whose clock runs in real time: the checks sleep for real (leases
//!   of 1 s, sleeps of up to 2.5 s), since a server's clock cannot be paused.
//! - Outputs of at least 1 MiB accepted (the suite stores 512 KiB; the
//!   runtime wraps outputs in a small envelope, so leave room).
//! - Nothing else: a fresh store per test is not needed. Every check uses keys
//!   unique to the check and to the run (`idempotent-conformance:{run}:...`),
//!   so one server may be shared by all tests, by several runs, and by other
//!   tests. Records left behind expire within a minute.
//!
//! The store must also meet these bounds, checked generously:
//! [`release_in_background`](Backend::release_in_background) takes effect
//! within 5 s, and [`wait_for_change`](Backend::wait_for_change) returns
//! within its `at_most` plus 2 s. A test fails (rather than hangs) after 60 s.
//!
//! # The rules
//!
//! One check per rule, each run by the macro:
//!
//! | check | rule |
//! | --- | --- |
//! | [`absent_key_is_acquired`] | an absent key is acquired, not taken over |
//! | [`completed_key_replays_its_output`] | a completed key replays its output, byte-exact |
//! | [`completed_key_with_other_fingerprint_is_mismatch`] | a completed key claimed with another fingerprint is a mismatch |
//! | [`live_claim_is_in_progress`] | a live claim is in progress, with `0 < lease_remaining <= lease` |
//! | [`live_claim_with_other_fingerprint_is_mismatch`] | a live claim claimed with another fingerprint is a mismatch |
//! | [`expired_lease_is_taken_over_with_a_new_token`] | an expired lease is taken over, with a new token |
//! | [`expired_lease_with_other_fingerprint_is_mismatch`] | an expired lease claimed with another fingerprint is a mismatch |
//! | [`stale_token_is_fenced_after_takeover`] | after a takeover, the old token changes nothing |
//! | [`unknown_token_or_absent_key_is_fenced`] | a token never issued, or an absent key, is fenced |
//! | [`released_key_is_acquired_afresh`] | after a release, the key is absent |
//! | [`renew_extends_the_lease`] | renewing keeps a claim live past its first lease |
//! | [`completed_record_expires_after_its_ttl`] | a completed record is replayed until its ttl, then absent |
//! | [`abandoned_claim_is_forgotten_after_twice_its_lease`] | a claim left alone is absent after 2 × its lease |
//! | [`slow_holder_not_taken_over_may_still_finish`] | a lease ran out but nobody took over: the holder may still complete, renew, release |
//! | [`concurrent_claims_acquire_exactly_once`] | 100 concurrent claims: exactly one acquires |
//! | [`concurrent_takeovers_acquire_exactly_once`] | 100 concurrent claims of an expired lease: exactly one takes over |
//! | [`outputs_are_binary_safe`] | any bytes round-trip: all 256 values, NULs, invalid UTF-8 |
//! | [`large_output_round_trips`] | a 512 KiB output round-trips |
//! | [`empty_output_round_trips`] | an empty output round-trips and is a record, not an absence |
//! | [`unusual_keys_work_and_are_independent`] | long, `:`-laden, unicode and look-alike keys are distinct records |
//! | [`distinct_keys_are_independent`] | operations on one key never affect another |
//! | [`wait_for_change_returns`] | `wait_for_change` returns within its bound and sees a completion |
//! | [`release_in_background_releases`] | `release_in_background` releases the claim |
//! | [`repeated_complete_is_applied_once`] | completing again with the same token is `Applied` and changes nothing; release and renew are fenced |
//!
//! [`output_over_the_limit_is_too_large`] depends on the store's configured
//! limit, so it is not part of the macro: call it from a test of a store
//! built with a small limit.

use std::fmt::{self, Debug};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::{sleep, Instant};

use crate::{Backend, BackendErrorKind, CasOutcome, ClaimOutcome, FencingToken, Fingerprint};

/// What a conformance test gets from a store's factory: the backend to check,
/// and a guard kept alive until the test ends.
///
/// Implemented for every backend (no guard) and for `(backend, guard)` pairs,
/// so a factory returns whichever it needs; the guard can be anything (a
/// server process killed on drop, a temporary directory, `()`).
pub trait ConformanceFixture {
    /// The store under test.
    type Backend: Backend + 'static;
    /// Dropped after the backend, at the end of the test.
    type Guard;

    /// Splits the fixture into its backend and its guard.
    fn into_parts(self) -> (Self::Backend, Self::Guard);
}

impl<B: Backend + 'static> ConformanceFixture for B {
    type Backend = B;
    type Guard = ();

    fn into_parts(self) -> (B, ()) {
        (self, ())
    }
}

impl<B: Backend + 'static, G> ConformanceFixture for (B, G) {
    type Backend = B;
    type Guard = G;

    fn into_parts(self) -> (B, G) {
        self
    }
}

/// How long one conformance test may run before it fails as hung.
const TEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs one conformance test: `future` on a fresh multi-thread Tokio runtime
/// (4 workers, time and I/O drivers enabled), failing the test if it does not
/// finish within 60 s. `test` names it in that failure.
///
/// [`conformance_tests!`](crate::conformance_tests) wraps every rule in it;
/// hand-written tests of a store can use it too, and then need no Tokio
/// dependency of their own.
///
/// ```
/// use idempotent_core::{conformance, MemoryBackend};
///
/// conformance::run("too_large", async {
///     let backend = MemoryBackend::new().max_output_bytes(1024);
///     conformance::output_over_the_limit_is_too_large(&backend, 1024).await;
/// });
/// ```
pub fn run<F: Future>(test: &str, future: F) -> F::Output {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap_or_else(|error| panic!("conformance test `{test}`: no Tokio runtime: {error}"));
    runtime.block_on(async {
        match tokio::time::timeout(TEST_TIMEOUT, future).await {
            Ok(output) => output,
            Err(_) => panic!(
                "conformance test `{test}` did not finish within {TEST_TIMEOUT:?}: \
                 a store operation hangs"
            ),
        }
    })
}

/// Expands to the whole conformance suite: one `#[test]` per rule of the
/// [`Backend`] contract, each on a fresh fixture from `$factory`.
///
/// `$factory` is a closure (or the path of an `async fn`) taking no argument
/// and returning a future whose output is a
/// [`ConformanceFixture`](crate::conformance::ConformanceFixture): the backend,
/// or a `(backend, guard)` pair. It is called once per test, inside that
/// test's runtime.
///
/// ```ignore
/// idempotent_core::conformance_tests!(|| async { idempotent_core::MemoryBackend::new() });
/// ```
///
/// The tests are named after the check functions of
/// [`conformance`](crate::conformance) and run on a runtime built by
/// [`conformance::run`](crate::conformance::run): the calling crate needs
/// `idempotent-core` with the `conformance` feature, and nothing else (no
/// Tokio of its own). See the module documentation for what a fixture must
/// provide.
#[macro_export]
macro_rules! conformance_tests {
    ($factory:expr $(,)?) => {
        $crate::conformance_tests!(@rules ($factory)
            absent_key_is_acquired,
            completed_key_replays_its_output,
            completed_key_with_other_fingerprint_is_mismatch,
            live_claim_is_in_progress,
            live_claim_with_other_fingerprint_is_mismatch,
            expired_lease_is_taken_over_with_a_new_token,
            expired_lease_with_other_fingerprint_is_mismatch,
            stale_token_is_fenced_after_takeover,
            unknown_token_or_absent_key_is_fenced,
            released_key_is_acquired_afresh,
            renew_extends_the_lease,
            completed_record_expires_after_its_ttl,
            abandoned_claim_is_forgotten_after_twice_its_lease,
            slow_holder_not_taken_over_may_still_finish,
            concurrent_claims_acquire_exactly_once,
            concurrent_takeovers_acquire_exactly_once,
            outputs_are_binary_safe,
            large_output_round_trips,
            empty_output_round_trips,
            unusual_keys_work_and_are_independent,
            distinct_keys_are_independent,
            wait_for_change_returns,
            release_in_background_releases,
            repeated_complete_is_applied_once,
            a_claim_sent_twice_is_acquired,
        );
    };
    (@rules ($factory:expr) $($rule:ident,)*) => {$(
        #[test]
        #[allow(clippy::redundant_closure_call)]
        fn $rule() {
            $crate::conformance::run(::core::stringify!($rule), async {
                let (backend, _guard) =
                    $crate::conformance::ConformanceFixture::into_parts(($factory)().await);
                // Shared, so the concurrency rules can spawn tasks on it;
                // dropped before the guard (a server outlives its clients).
                let backend = ::std::sync::Arc::new(backend);
                $crate::conformance::$rule(&backend).await;
            });
        }
    )*};
}

// ---------------------------------------------------------------------------
// Timing. Real time: a store's clock (a Redis server's) cannot be paused.

/// The short lease of the expiry rules.
const LEASE: Duration = Duration::from_secs(1);
/// Past [`LEASE`] but well before twice it: the claim is expired but kept.
const PAST_LEASE: Duration = Duration::from_millis(1400);
/// Well past twice [`LEASE`]: an abandoned claim is forgotten.
const PAST_TWICE_LEASE: Duration = Duration::from_millis(2500);
/// A lease that never runs out during a check.
const LONG_LEASE: Duration = Duration::from_secs(30);
/// A ttl that never runs out during a check, yet cleans up shared stores.
const TTL: Duration = Duration::from_secs(60);
/// The short ttl of the expiry rule.
const SHORT_TTL: Duration = Duration::from_secs(1);
/// Past [`SHORT_TTL`].
const PAST_SHORT_TTL: Duration = Duration::from_millis(1500);
/// Slack allowed on top of a bound a store must meet.
const MARGIN: Duration = Duration::from_secs(2);
/// How long `release_in_background` may take to take effect.
const BACKGROUND_BOUND: Duration = Duration::from_secs(5);
/// How many tasks race in the concurrency rules.
const RACERS: usize = 100;

// ---------------------------------------------------------------------------
// Helpers: a check's context, its keys, and failure messages.

fn fp(value: &str) -> Fingerprint {
    Fingerprint::of(value).expect("a string always serializes")
}

/// Identifies this process's run, so keys never collide with those of an
/// earlier run against the same (shared, persistent) store.
fn run_id() -> &'static str {
    static RUN: OnceLock<String> = OnceLock::new();
    RUN.get_or_init(|| {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos());
        format!("{:x}-{nanos:x}", std::process::id())
    })
}

/// A printable summary of a claim's outcome, without dumping large outputs.
struct Show<'a>(&'a ClaimOutcome);

impl Debug for Show<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            ClaimOutcome::Completed { output } => {
                write!(f, "Completed {{ output: {} }}", ShowBytes(output))
            }
            other => Debug::fmt(other, f),
        }
    }
}

/// Bytes as `N bytes [first bytes...]`.
struct ShowBytes<'a>(&'a [u8]);

impl fmt::Display for ShowBytes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 32;
        let bytes = self.0;
        write!(
            f,
            "{} bytes {:?}",
            bytes.len(),
            &bytes[..bytes.len().min(SHOWN)]
        )?;
        if bytes.len() > SHOWN {
            f.write_str("...")?;
        }
        Ok(())
    }
}

/// One check in progress: the rule it checks, the store, and its keys.
struct Check<'b, B: ?Sized> {
    rule: &'static str,
    backend: &'b B,
    prefix: String,
}

impl<'b, B: Backend + ?Sized> Check<'b, B> {
    fn new(rule: &'static str, backend: &'b B) -> Self {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        Self {
            rule,
            backend,
            prefix: format!("idempotent-conformance:{}:{seq}:{rule}", run_id()),
        }
    }

    /// A key unique to this check (and run), named `name`.
    fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.prefix)
    }

    fn fail(&self, step: &str, expected: &str, observed: impl Debug) -> ! {
        panic!(
            "conformance rule `{}` failed: {step}: expected {expected}, observed {observed:?}",
            self.rule
        )
    }

    async fn claim(
        &self,
        key: &str,
        fingerprint: &Fingerprint,
        token: FencingToken,
        lease: Duration,
    ) -> ClaimOutcome {
        match self.backend.claim(key, fingerprint, token, lease).await {
            Ok(ClaimOutcome::Acquired { token: echoed, .. }) if echoed != token => self.fail(
                &format!("claim({key:?}, {token:?}, lease {lease:?})"),
                "Acquired with the caller's token",
                echoed,
            ),
            Ok(outcome) => outcome,
            Err(error) => self.fail(
                &format!("claim({key:?}, lease {lease:?})"),
                "an outcome",
                format_args!("Err({error})"),
            ),
        }
    }

    async fn complete(
        &self,
        key: &str,
        token: FencingToken,
        output: &[u8],
        ttl: Duration,
    ) -> CasOutcome {
        match self.backend.complete(key, token, output, ttl).await {
            Ok(outcome) => outcome,
            Err(error) => self.fail(
                &format!(
                    "complete({key:?}, {token:?}, output of {} bytes, ttl {ttl:?})",
                    output.len()
                ),
                "an outcome",
                format_args!("Err({error})"),
            ),
        }
    }

    async fn release(&self, key: &str, token: FencingToken) -> CasOutcome {
        match self.backend.release(key, token).await {
            Ok(outcome) => outcome,
            Err(error) => self.fail(
                &format!("release({key:?}, {token:?})"),
                "an outcome",
                format_args!("Err({error})"),
            ),
        }
    }

    async fn renew(&self, key: &str, token: FencingToken, lease: Duration) -> CasOutcome {
        match self.backend.renew(key, token, lease).await {
            Ok(outcome) => outcome,
            Err(error) => self.fail(
                &format!("renew({key:?}, {token:?}, lease {lease:?})"),
                "an outcome",
                format_args!("Err({error})"),
            ),
        }
    }

    /// Asserts that a compare-and-set had the `expected` outcome.
    fn expect_cas(&self, step: &str, observed: CasOutcome, expected: CasOutcome) {
        if observed != expected {
            self.fail(step, &format!("{expected:?}"), observed);
        }
    }

    /// Claims `key` and asserts it was absent: `Acquired { took_over: false }`.
    async fn expect_fresh(
        &self,
        step: &str,
        key: &str,
        fingerprint: &Fingerprint,
        lease: Duration,
    ) -> FencingToken {
        match self
            .claim(key, fingerprint, FencingToken::generate(), lease)
            .await
        {
            ClaimOutcome::Acquired {
                token,
                took_over: false,
            } => token,
            other => self.fail(step, "Acquired { took_over: false, .. }", Show(&other)),
        }
    }

    /// Claims `key` and asserts a takeover: `Acquired { took_over: true }`.
    async fn expect_takeover(
        &self,
        step: &str,
        key: &str,
        fingerprint: &Fingerprint,
        lease: Duration,
    ) -> FencingToken {
        match self
            .claim(key, fingerprint, FencingToken::generate(), lease)
            .await
        {
            ClaimOutcome::Acquired {
                token,
                took_over: true,
            } => token,
            other => self.fail(step, "Acquired { took_over: true, .. }", Show(&other)),
        }
    }

    /// Claims `key` and asserts a live claim: `InProgress` with
    /// `0 < lease_remaining <= at_most`.
    async fn expect_in_progress(
        &self,
        step: &str,
        key: &str,
        fingerprint: &Fingerprint,
        at_most: Duration,
    ) -> Duration {
        match self
            .claim(key, fingerprint, FencingToken::generate(), LONG_LEASE)
            .await
        {
            ClaimOutcome::InProgress { lease_remaining }
                if !lease_remaining.is_zero() && lease_remaining <= at_most =>
            {
                lease_remaining
            }
            other => self.fail(
                step,
                &format!(
                    "InProgress {{ lease_remaining }} with 0 < lease_remaining <= {at_most:?}"
                ),
                Show(&other),
            ),
        }
    }

    /// Claims `key` and asserts `Mismatch`.
    async fn expect_mismatch(&self, step: &str, key: &str, fingerprint: &Fingerprint) {
        let outcome = self
            .claim(key, fingerprint, FencingToken::generate(), LONG_LEASE)
            .await;
        if outcome != ClaimOutcome::Mismatch {
            self.fail(step, "Mismatch", Show(&outcome));
        }
    }

    /// Claims `key` and asserts a replay of exactly `expected`.
    async fn expect_completed(
        &self,
        step: &str,
        key: &str,
        fingerprint: &Fingerprint,
        expected: &[u8],
    ) {
        match self
            .claim(key, fingerprint, FencingToken::generate(), LONG_LEASE)
            .await
        {
            ClaimOutcome::Completed { output } if output == expected => {}
            ClaimOutcome::Completed { output } => {
                let first_difference = output
                    .iter()
                    .zip(expected)
                    .position(|(a, b)| a != b)
                    .unwrap_or(output.len().min(expected.len()));
                self.fail(
                    step,
                    &format!("Completed {{ output: {} }}", ShowBytes(expected)),
                    format_args!(
                        "Completed {{ output: {} }}, first difference at byte {first_difference}",
                        ShowBytes(&output)
                    ),
                )
            }
            other => self.fail(
                step,
                &format!("Completed {{ output: {} }}", ShowBytes(expected)),
                Show(&other),
            ),
        }
    }

    /// Claims a fresh `key`, completes it with `output` and checks the replay.
    async fn round_trip(&self, name: &str, output: &[u8]) {
        let key = self.key(name);
        let a = fp("a");
        let token = self
            .expect_fresh(
                &format!("claim of the fresh key {name:?}"),
                &key,
                &a,
                LONG_LEASE,
            )
            .await;
        let completed = self.complete(&key, token, output, TTL).await;
        self.expect_cas(
            &format!("complete {name:?} with {}", ShowBytes(output)),
            completed,
            CasOutcome::Applied,
        );
        self.expect_completed(&format!("replay of {name:?}, byte-exact"), &key, &a, output)
            .await;
    }
}

// ---------------------------------------------------------------------------
// The rules.

/// An absent key is acquired, not taken over: `Acquired { took_over: false }`;
/// the claim is then live (`InProgress`).
pub async fn absent_key_is_acquired<B: Backend + ?Sized>(backend: &B) {
    let check = Check::new("absent_key_is_acquired", backend);
    let key = check.key("k");
    let token = check
        .expect_fresh("claim of an absent key", &key, &fp("a"), LONG_LEASE)
        .await;
    check
        .expect_in_progress("claim again after acquiring", &key, &fp("a"), LONG_LEASE)
        .await;
    let released = check.release(&key, token).await;
    check.expect_cas("release by the holder", released, CasOutcome::Applied);
}

/// A completed key claimed with the same fingerprint replays the output given
/// to `complete`, byte-exact, every time, without changing the record.
pub async fn completed_key_replays_its_output<B: Backend + ?Sized>(backend: &B) {
    let check = Check::new("completed_key_replays_its_output", backend);
    let key = check.key("k");
    let output = b"{\"receipt\":42}\n";
    let token = check
        .expect_fresh("claim of an absent key", &key, &fp("a"), LONG_LEASE)
        .await;
    let completed = check.complete(&key, token, output, TTL).await;
    check.expect_cas("complete by the holder", completed, CasOutcome::Applied);
    for attempt in 1..=3 {
        check
            .expect_completed(
                &format!("replay #{attempt} with the same fingerprint"),
                &key,
                &fp("a"),
                output,
            )
            .await;
    }
}

/// A completed key claimed with another fingerprint is `Mismatch`, and the
/// record stays: the original fingerprint still replays it.
pub async fn completed_key_with_other_fingerprint_is_mismatch<B: Backend + ?Sized>(backend: &B) {
    let check = Check::new("completed_key_with_other_fingerprint_is_mismatch", backend);
    let key = check.key("k");
    let token = check
        .expect_fresh("claim of an absent key", &key, &fp("a"), LONG_LEASE)
        .await;
    let completed = check.complete(&key, token, b"out", TTL).await;
    check.expect_cas("complete by the holder", completed, CasOutcome::Applied);
    check
        .expect_mismatch(
            "claim of a completed key with another fingerprint",
            &key,
            &fp("b"),
        )
        .await;
    check
        .expect_completed(
            "replay with the original fingerprint after the mismatch",
            &key,
            &fp("a"),
            b"out",
        )
        .await;
}

/// A live claim claimed again with the same fingerprint is `InProgress`, with
/// `0 < lease_remaining <= lease`; the holder still holds it.
pub async fn live_claim_is_in_progress<B: Backend + ?Sized>(backend: &B) {
    let check = Check::new("live_claim_is_in_progress", backend);
    let key = check.key("k");
    let lease = Duration::from_secs(20);
    let token = check
        .expect_fresh("claim of an absent key", &key, &fp("a"), lease)
        .await;
    for attempt in 1..=2 {
        check
            .expect_in_progress(
                &format!("claim #{attempt} of a live claim (lease {lease:?})"),
                &key,
                &fp("a"),
                lease,
            )
            .await;
    }
    let completed = check.complete(&key, token, b"out", TTL).await;
    check.expect_cas(
        "complete by the holder after duplicates were refused",
        completed,
        CasOutcome::Applied,
    );
}

/// A live claim claimed with another fingerprint is `Mismatch`, and the claim
/// stays live for its fingerprint.
pub async fn live_claim_with_other_fingerprint_is_mismatch<B: Backend + ?Sized>(backend: &B) {
    let check = Check::new("live_claim_with_other_fingerprint_is_mismatch", backend);
    let key = check.key("k");
    let token = check
        .expect_fresh("claim of an absent key", &key, &fp("a"), LONG_LEASE)
        .await;
    check
        .expect_mismatch(
            "claim of a live claim with another fingerprint",
            &key,
            &fp("b"),
        )
        .await;
    check
        .expect_in_progress(
            "claim with the original fingerprint after the mismatch",
            &key,
            &fp("a"),
            LONG_LEASE,
        )
        .await;
    let released = check.release(&key, token).await;
    check.expect_cas("release by the holder", released, CasOutcome::Applied);
}

/// A claim whose lease ran out (but not twice over) is taken over by a claim
/// with the same fingerprint: `Acquired { took_over: true }` with a token
/// other than the old one; the new claim is live.
pub async fn expired_lease_is_taken_over_with_a_new_token<B: Backend + ?Sized>(backend: &B) {
    let check = Check::new("expired_lease_is_taken_over_with_a_new_token", backend);
    let key = check.key("k");
    let old = check
        .expect_fresh("claim of an absent key", &key, &fp("a"), LEASE)
        .await;
    sleep(PAST_LEASE).await;
    let new = check
        .expect_takeover(
            &format!("claim {PAST_LEASE:?} after a claim with lease {LEASE:?}"),
            &key,
            &fp("a"),
            LEASE,
        )
        .await;
    if new == old {
        check.fail(
            "the takeover's token",
            &format!("a token other than the old one, {old:?}"),
            new,
        );
    }
    check
        .expect_in_progress("claim right after the takeover", &key, &fp("a"), LEASE)
        .await;
    let released = check.release(&key, new).await;
    check.expect_cas("release by the new holder", released, CasOutcome::Applied);
}

/// A claim whose lease ran out, claimed with another fingerprint, is
/// `Mismatch` (an expired lease is not an absent key); a claim with the
/// original fingerprint then still takes it over.
pub async fn expired_lease_with_other_fingerprint_is_mismatch<B: Backend + ?Sized>(backend: &B) {
    let check = Check::new("expired_lease_with_other_fingerprint_is_mismatch", backend);
    let key = check.key("k");
    check
        .expect_fresh("claim of an absent key", &key, &fp("a"), LEASE)
        .await;
    sleep(PAST_LEASE).await;
    check
        .expect_mismatch(
            &format!(
                "claim with another fingerprint {PAST_LEASE:?} after a claim with lease {LEASE:?}"
            ),
            &key,
            &fp("b"),
        )
        .await;
    let token = check
        .expect_takeover(
            "claim with the original fingerprint after the mismatch",
            &key,
            &fp("a"),
            LONG_LEASE,
        )
        .await;
    let released = check.release(&key, token).await;
    check.expect_cas("release by the new holder", released, CasOutcome::Applied);
}

/// Fencing: after a takeover, the stale holder's complete, release, renew and
/// `release_in_background` are `Fenced` (or no-ops) and change nothing; the
/// new holder completes, the stale complete is still `Fenced`, and the stored
/// output is the new holder's.
pub async fn stale_token_is_fenced_after_takeover<B: Backend + ?Sized>(backend: &B) {
    let check = Check::new("stale_token_is_fenced_after_takeover", backend);
    let key = check.key("k");
    let a = fp("a");
    let old = check
        .expect_fresh("claim of an absent key", &key, &a, LEASE)
        .await;
    sleep(PAST_LEASE).await;
    let new = check
        .expect_takeover("claim after the lease ran out", &key, &a, LONG_LEASE)
        .await;

    let completed = check.complete(&key, old, b"stale", TTL).await;
    check.expect_cas(
        "complete with the stale token",
        completed,
        CasOutcome::Fenced,
    );
    let released = check.release(&key, old).await;
    check.expect_cas("release with the stale token", released, CasOutcome::Fenced);
    let renewed = check.renew(&key, old, LEASE).await;
    check.expect_cas("renew with the stale token", renewed, CasOutcome::Fenced);
    crate::backend::release_in_background(backend, "conformance", &key, old);
    // A network store releases in the background: give it time to do harm.
    sleep(Duration::from_millis(300)).await;
    check
        .expect_in_progress(
            "claim after the stale holder's complete, release, renew and \
             release_in_background (the new claim must be untouched)",
            &key,
            &a,
            LONG_LEASE,
        )
        .await;

    let completed = check.complete(&key, new, b"new", TTL).await;
    check.expect_cas("complete by the new holder", completed, CasOutcome::Applied);
    let completed = check.complete(&key, old, b"stale", TTL).await;
    check.expect_cas(
        "complete with the stale token after the new holder completed",
        completed,
        CasOutcome::Fenced,
    );
    check
        .expect_completed("replay: the new holder's output", &key, &a, b"new")
        .await;
}

/// Complete, release and renew with a token never issued for the key are
/// `Fenced` and change nothing; on an absent key they are `Fenced` and leave
/// it absent.
pub async fn unknown_token_or_absent_key_is_fenced<B: Backend + ?Sized>(backend: &B) {
    let check = Check::new("unknown_token_or_absent_key_is_fenced", backend);
    let key = check.key("held");
    let a = fp("a");
    let token = check
        .expect_fresh("claim of an absent key", &key, &a, LONG_LEASE)
        .await;
    let value = token.get();
    let mut wrong: Vec<u64> = vec![
        value.wrapping_add(1),
        value.wrapping_sub(1),
        !value,
        0,
        u64::MAX,
    ];
    wrong.retain(|&candidate| candidate != value);
    for wrong in wrong.into_iter().map(FencingToken::new) {
        let completed = check.complete(&key, wrong, b"forged", TTL).await;
        check.expect_cas(
            &format!("complete with {wrong:?} while {token:?} holds the key"),
            completed,
            CasOutcome::Fenced,
        );
        let renewed = check.renew(&key, wrong, LEASE).await;
        check.expect_cas(
            &format!("renew with {wrong:?} while {token:?} holds the key"),
            renewed,
            CasOutcome::Fenced,
        );
        let released = check.release(&key, wrong).await;
        check.expect_cas(
            &format!("release with {wrong:?} while {token:?} holds the key"),
            released,
            CasOutcome::Fenced,
        );
    }
    check
        .expect_in_progress(
            "claim after the forged tokens (the claim must be untouched)",
            &key,
            &a,
            LONG_LEASE,
        )
        .await;
    let completed = check.complete(&key, token, b"out", TTL).await;
    check.expect_cas(
        "complete by the real holder",
        completed,
        CasOutcome::Applied,
    );
    check
        .expect_completed("replay of the real holder's output", &key, &a, b"out")
        .await;

    let absent = check.key("absent");
    for token in [token, FencingToken::new(1), FencingToken::new(0)] {
        let completed = check.complete(&absent, token, b"forged", TTL).await;
        check.expect_cas(
            &format!("complete of an absent key with {token:?}"),
            completed,
            CasOutcome::Fenced,
        );
        let renewed = check.renew(&absent, token, LONG_LEASE).await;
        check.expect_cas(
            &format!("renew of an absent key with {token:?}"),
            renewed,
            CasOutcome::Fenced,
        );
        let released = check.release(&absent, token).await;
        check.expect_cas(
            &format!("release of an absent key with {token:?}"),
            released,
            CasOutcome::Fenced,
        );
    }
    check
        .expect_fresh(
            "claim of the key that complete, renew and release were fenced on \
             (it must still be absent)",
            &absent,
            &fp("b"),
            LONG_LEASE,
        )
        .await;
}

/// A release by the holder is `Applied` and deletes the claim: the next claim,
/// with any fingerprint, is `Acquired { took_over: false }`; releasing again
/// is `Fenced`.
pub async fn released_key_is_acquired_afresh<B: Backend + ?Sized>(backend: &B) {
    let check = Check::new("released_key_is_acquired_afresh", backend);
    let key = check.key("k");
    let token = check
        .expect_fresh("claim of an absent key", &key, &fp("a"), LONG_LEASE)
        .await;
    let released = check.release(&key, token).await;
    check.expect_cas("release by the holder", released, CasOutcome::Applied);
    let released = check.release(&key, token).await;
    check.expect_cas(
        "second release with the same token",
        released,
        CasOutcome::Fenced,
    );
    let token = check
        .expect_fresh("claim after the release", &key, &fp("a"), LONG_LEASE)
        .await;
    let released = check.release(&key, token).await;
    check.expect_cas("release of the new claim", released, CasOutcome::Applied);
    let token = check
        .expect_fresh(
            "claim with another fingerprint after a release (the record is gone)",
            &key,
            &fp("b"),
            LONG_LEASE,
        )
        .await;
    let released = check.release(&key, token).await;
    check.expect_cas("release of the last claim", released, CasOutcome::Applied);
}

/// Renewing sets the lease to `lease` from now: a claim renewed every 0.6 s
/// with a 1 s lease is still `InProgress` past its first lease (and past twice
/// it); a renew with a longer lease lengthens it.
pub async fn renew_extends_the_lease<B: Backend + ?Sized>(backend: &B) {
    let check = Check::new("renew_extends_the_lease", backend);
    let key = check.key("k");
    let a = fp("a");
    let start = Instant::now();
    let token = check
        .expect_fresh("claim of an absent key", &key, &a, LEASE)
        .await;
    for round in 1..=4 {
        sleep(Duration::from_millis(600)).await;
        let renewed = check.renew(&key, token, LEASE).await;
        check.expect_cas(
            &format!("renew #{round} by the holder, at {:?}", start.elapsed()),
            renewed,
            CasOutcome::Applied,
        );
    }
    check
        .expect_in_progress(
            &format!(
                "claim at {:?}, after renewals of a {LEASE:?} lease every 600ms",
                start.elapsed()
            ),
            &key,
            &a,
            LEASE,
        )
        .await;
    let longer = Duration::from_secs(20);
    let renewed = check.renew(&key, token, longer).await;
    check.expect_cas(
        &format!("renew with a longer lease of {longer:?}"),
        renewed,
        CasOutcome::Applied,
    );
    let remaining = check
        .expect_in_progress("claim after the longer renew", &key, &a, longer)
        .await;
    if remaining <= LEASE {
        check.fail(
            &format!("claim after a renew with a lease of {longer:?}"),
            &format!("lease_remaining > {LEASE:?}"),
            remaining,
        );
    }
    let completed = check.complete(&key, token, b"out", TTL).await;
    check.expect_cas("complete by the holder", completed, CasOutcome::Applied);
}

/// A completed record is replayed until its ttl runs out, then the key is
/// absent: `Acquired { took_over: false }` with the same fingerprint or
/// another.
pub async fn completed_record_expires_after_its_ttl<B: Backend + ?Sized>(backend: &B) {
    let check = Check::new("completed_record_expires_after_its_ttl", backend);
    let (same, other) = (check.key("same"), check.key("other"));
    for key in [&same, &other] {
        let token = check
            .expect_fresh("claim of an absent key", key, &fp("a"), LONG_LEASE)
            .await;
        let completed = check.complete(key, token, b"out", SHORT_TTL).await;
        check.expect_cas(
            &format!("complete with a ttl of {SHORT_TTL:?}"),
            completed,
            CasOutcome::Applied,
        );
        check
            .expect_completed("replay before the ttl ran out", key, &fp("a"), b"out")
            .await;
    }
    sleep(PAST_SHORT_TTL).await;
    let step = format!("claim {PAST_SHORT_TTL:?} after completing with a ttl of {SHORT_TTL:?}");
    let token = check.expect_fresh(&step, &same, &fp("a"), LONG_LEASE).await;
    let released = check.release(&same, token).await;
    check.expect_cas("release of the new claim", released, CasOutcome::Applied);
    let token = check
        .expect_fresh(
            &format!("{step}, with another fingerprint"),
            &other,
            &fp("b"),
            LONG_LEASE,
        )
        .await;
    let released = check.release(&other, token).await;
    check.expect_cas("release of the new claim", released, CasOutcome::Applied);
}

/// A claim neither renewed, completed nor released is kept after its lease
/// runs out (for takeover and mismatch, see
/// [`expired_lease_is_taken_over_with_a_new_token`]) but forgotten by twice
/// its lease after it was granted: 2.5 × the lease later the key is absent,
/// `Acquired { took_over: false }` with the same fingerprint or another.
///
/// So a store bounds its memory by expiring claims at 2 × lease (the
/// `MemoryBackend` forgets them then; a Redis store sets `PEXPIRE` to it).
pub async fn abandoned_claim_is_forgotten_after_twice_its_lease<B: Backend + ?Sized>(backend: &B) {
    let check = Check::new(
        "abandoned_claim_is_forgotten_after_twice_its_lease",
        backend,
    );
    let (same, other) = (check.key("same"), check.key("other"));
    for key in [&same, &other] {
        check
            .expect_fresh("claim of an absent key", key, &fp("a"), LEASE)
            .await;
    }
    sleep(PAST_TWICE_LEASE).await;
    let step = format!("claim {PAST_TWICE_LEASE:?} after an abandoned claim with lease {LEASE:?}");
    let token = check.expect_fresh(&step, &same, &fp("a"), LONG_LEASE).await;
    let released = check.release(&same, token).await;
    check.expect_cas("release of the new claim", released, CasOutcome::Applied);
    let token = check
        .expect_fresh(
            &format!("{step}, with another fingerprint"),
            &other,
            &fp("b"),
            LONG_LEASE,
        )
        .await;
    let released = check.release(&other, token).await;
    check.expect_cas("release of the new claim", released, CasOutcome::Applied);
}

/// Complete, release and renew compare the token, not the clock: a holder
/// whose lease ran out but whom nobody took over (a slow call, not a crashed
/// one) may still complete (`Applied`, then replayed), renew (`Applied`, the
/// claim is live again) or release (`Applied`, the key is absent).
pub async fn slow_holder_not_taken_over_may_still_finish<B: Backend + ?Sized>(backend: &B) {
    let check = Check::new("slow_holder_not_taken_over_may_still_finish", backend);
    let a = fp("a");
    let (completes, renews, releases) = (
        check.key("completes"),
        check.key("renews"),
        check.key("releases"),
    );
    let mut tokens = Vec::new();
    for key in [&completes, &renews, &releases] {
        tokens.push(
            check
                .expect_fresh("claim of an absent key", key, &a, LEASE)
                .await,
        );
    }
    sleep(PAST_LEASE).await;
    let late = format!("{PAST_LEASE:?} after a claim with lease {LEASE:?}, nobody took over");

    let completed = check.complete(&completes, tokens[0], b"late", TTL).await;
    check.expect_cas(&format!("complete {late}"), completed, CasOutcome::Applied);
    check
        .expect_completed("replay of the late completion", &completes, &a, b"late")
        .await;

    let renewed = check.renew(&renews, tokens[1], LONG_LEASE).await;
    check.expect_cas(&format!("renew {late}"), renewed, CasOutcome::Applied);
    check
        .expect_in_progress("claim after the late renew", &renews, &a, LONG_LEASE)
        .await;
    let released = check.release(&renews, tokens[1]).await;
    check.expect_cas(
        "release after the late renew",
        released,
        CasOutcome::Applied,
    );

    let released = check.release(&releases, tokens[2]).await;
    check.expect_cas(&format!("release {late}"), released, CasOutcome::Applied);
    let token = check
        .expect_fresh(
            "claim after the late release",
            &releases,
            &fp("b"),
            LONG_LEASE,
        )
        .await;
    let released = check.release(&releases, token).await;
    check.expect_cas("release of the new claim", released, CasOutcome::Applied);
}

/// Races `RACERS` tasks, started together on the multi-thread runtime, each
/// claiming `key`; returns their outcomes.
async fn race_claims<B>(check: &Check<'_, B>, key: &str, lease: Duration) -> Vec<ClaimOutcome>
where
    B: Backend + Clone + 'static,
{
    let start = Arc::new(tokio::sync::Barrier::new(RACERS));
    let tasks: Vec<_> = (0..RACERS)
        .map(|_| {
            let backend = check.backend.clone();
            let start = Arc::clone(&start);
            let key = key.to_owned();
            tokio::spawn(async move {
                start.wait().await;
                backend
                    .claim(&key, &fp("a"), FencingToken::generate(), lease)
                    .await
            })
        })
        .collect();
    let mut outcomes = Vec::with_capacity(RACERS);
    for (racer, task) in tasks.into_iter().enumerate() {
        match task.await {
            Ok(Ok(outcome)) => outcomes.push(outcome),
            Ok(Err(error)) => check.fail(
                &format!("concurrent claim #{racer} of {key:?}"),
                "an outcome",
                format_args!("Err({error})"),
            ),
            Err(error) => check.fail(
                &format!("concurrent claim #{racer} of {key:?}"),
                "an outcome",
                format_args!("the task failed: {error}"),
            ),
        }
    }
    outcomes
}

/// Checks that exactly one of `outcomes` is `Acquired { took_over }` and all
/// others `InProgress`; returns the winner's token.
fn exactly_one_acquired<B: Backend + ?Sized>(
    check: &Check<'_, B>,
    step: &str,
    outcomes: &[ClaimOutcome],
    took_over: bool,
) -> FencingToken {
    let mut winners = Vec::new();
    let mut others = Vec::new();
    for outcome in outcomes {
        match outcome {
            ClaimOutcome::Acquired {
                token,
                took_over: taken,
            } if *taken == took_over => winners.push(*token),
            ClaimOutcome::InProgress { .. } => {}
            other => others.push(other.clone()),
        }
    }
    if winners.len() != 1 || !others.is_empty() {
        check.fail(
            step,
            &format!(
                "exactly one Acquired {{ took_over: {took_over} }} and {} InProgress",
                RACERS - 1
            ),
            format_args!(
                "{} Acquired {{ took_over: {took_over} }} (tokens {winners:?}), {} InProgress, \
                 and {} other outcomes: {others:?}",
                winners.len(),
                outcomes.len() - winners.len() - others.len(),
                others.len()
            ),
        );
    }
    winners[0]
}

/// 100 tasks claiming one absent key at once, on a multi-thread runtime: exactly
/// one is `Acquired { took_over: false }`, the other 99 `InProgress`. Once the
/// winner completes, 100 concurrent claims all replay its output.
///
/// Takes a cloneable backend (an `Arc` of the store) to share with the tasks.
pub async fn concurrent_claims_acquire_exactly_once<B: Backend + Clone + 'static>(backend: &B) {
    let check = Check::new("concurrent_claims_acquire_exactly_once", backend);
    let key = check.key("k");
    let outcomes = race_claims(&check, &key, LONG_LEASE).await;
    let token = exactly_one_acquired(
        &check,
        &format!("{RACERS} concurrent claims of an absent key"),
        &outcomes,
        false,
    );
    let completed = check.complete(&key, token, b"winner", TTL).await;
    check.expect_cas("complete by the winner", completed, CasOutcome::Applied);
    let outcomes = race_claims(&check, &key, LONG_LEASE).await;
    let expected = ClaimOutcome::Completed {
        output: b"winner".to_vec(),
    };
    if let Some(other) = outcomes.iter().find(|outcome| **outcome != expected) {
        check.fail(
            &format!("{RACERS} concurrent claims of the completed key"),
            "each one Completed { output: b\"winner\" }",
            Show(other),
        );
    }
}

/// 100 tasks claiming at once a key whose lease ran out: exactly one takes it
/// over (`Acquired { took_over: true }`), the other 99 are `InProgress` (the
/// takeover is atomic, never two holders).
///
/// Takes a cloneable backend (an `Arc` of the store) to share with the tasks.
pub async fn concurrent_takeovers_acquire_exactly_once<B: Backend + Clone + 'static>(backend: &B) {
    let check = Check::new("concurrent_takeovers_acquire_exactly_once", backend);
    let key = check.key("k");
    let old = check
        .expect_fresh("claim of an absent key", &key, &fp("a"), LEASE)
        .await;
    sleep(PAST_LEASE).await;
    let outcomes = race_claims(&check, &key, LONG_LEASE).await;
    let token = exactly_one_acquired(
        &check,
        &format!("{RACERS} concurrent claims after the lease ran out"),
        &outcomes,
        true,
    );
    if token == old {
        check.fail(
            "the takeover's token",
            &format!("a token other than the old one, {old:?}"),
            token,
        );
    }
    let released = check.release(&key, token).await;
    check.expect_cas("release by the new holder", released, CasOutcome::Applied);
}

/// Outputs are bytes, not text: all 256 byte values, embedded and trailing
/// NULs, invalid UTF-8 and protocol-like bytes each round-trip byte-exact.
pub async fn outputs_are_binary_safe<B: Backend + ?Sized>(backend: &B) {
    let check = Check::new("outputs_are_binary_safe", backend);
    let every_byte: Vec<u8> = (0..=255).collect();
    let every_byte_reversed: Vec<u8> = (0..=255).rev().collect();
    let cases: [(&str, &[u8]); 9] = [
        ("every-byte", &every_byte),
        ("every-byte-reversed", &every_byte_reversed),
        ("nul", b"\0"),
        ("embedded-nuls", b"a\0b\0\0c"),
        ("trailing-nuls", b"abc\0\0"),
        ("invalid-utf8", b"\xff\xfe\x80\xc0\xaf\xed\xa0\x80"),
        ("protocol-like", b"$-1\r\n*0\r\n:1\r\n+OK\r\n"),
        ("quotes-and-escapes", b"'\"\\%_\n\t"),
        ("high-bytes", &[0x80; 64]),
    ];
    for (name, output) in cases {
        check.round_trip(name, output).await;
    }
}

/// A 512 KiB output round-trips byte-exact (fixtures must accept at least
/// 1 MiB).
pub async fn large_output_round_trips<B: Backend + ?Sized>(backend: &B) {
    let check = Check::new("large_output_round_trips", backend);
    // A pattern that does not repeat with any power-of-two period, so a
    // truncated, shifted or chunk-swapped copy is caught.
    let output: Vec<u8> = (0..512 * 1024u32)
        .map(|i| (i.wrapping_mul(7) % 251) as u8 ^ (i >> 13) as u8)
        .collect();
    check.round_trip("large", &output).await;
}

/// An empty output round-trips as `Completed { output: [] }`, and is a record
/// (another fingerprint is `Mismatch`), not an absent key.
pub async fn empty_output_round_trips<B: Backend + ?Sized>(backend: &B) {
    let check = Check::new("empty_output_round_trips", backend);
    check.round_trip("empty", b"").await;
    let key = check.key("empty");
    check
        .expect_mismatch(
            "claim of the key completed with an empty output, with another fingerprint",
            &key,
            &fp("b"),
        )
        .await;
    check
        .expect_completed("replay of the empty output, again", &key, &fp("a"), b"")
        .await;
}

/// Keys of the runtime's shape (`{scope}:{64 hex digits}`, with a scope of
/// 200 characters), keys with `:`, unicode, spaces, braces, glob, SQL and
/// quote characters, and look-alike keys (prefixes of each other, differing
/// only in case or trailing space) all work and are distinct records.
pub async fn unusual_keys_work_and_are_independent<B: Backend + ?Sized>(backend: &B) {
    let check = Check::new("unusual_keys_work_and_are_independent", backend);
    let hex = "0123456789abcdef".repeat(4);
    let other_hex = "fedcba9876543210".repeat(4);
    let names = [
        // Same long scope, digests differing in every digit: a store that
        // truncates or hashes keys badly merges them.
        format!("{}:{hex}", "s".repeat(200)),
        format!("{}:{other_hex}", "s".repeat(200)),
        format!("my_app::payments::charge_card:{hex}"),
        format!("zahlung::überweisung::支払い::🦀:{hex}"),
        "a:b:c::d:".to_owned(),
        "k".to_owned(),
        "k:".to_owned(),
        "k:k".to_owned(),
        "Key".to_owned(),
        "key".to_owned(),
        "key ".to_owned(),
        " key".to_owned(),
        "{tag}*?[x]".to_owned(),
        "{tag}".to_owned(),
        "100%_'\";--\\".to_owned(),
    ];
    let keys: Vec<String> = names.iter().map(|name| check.key(name)).collect();
    let mut tokens = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let step = format!("claim of the absent key {key:?} (fingerprint #{i})");
        tokens.push(
            check
                .expect_fresh(&step, key, &fp(&i.to_string()), LONG_LEASE)
                .await,
        );
    }
    for (i, (key, token)) in keys.iter().zip(&tokens).enumerate() {
        let completed = check
            .complete(key, *token, format!("output #{i}").as_bytes(), TTL)
            .await;
        check.expect_cas(
            &format!("complete of {key:?}"),
            completed,
            CasOutcome::Applied,
        );
    }
    for (i, key) in keys.iter().enumerate() {
        check
            .expect_completed(
                &format!("replay of {key:?} (its own output)"),
                key,
                &fp(&i.to_string()),
                format!("output #{i}").as_bytes(),
            )
            .await;
    }
}

/// Operations on one key never affect another, even with the same
/// fingerprint: claims, completes and releases of `k1` leave `k2` and `k3`
/// as they were.
pub async fn distinct_keys_are_independent<B: Backend + ?Sized>(backend: &B) {
    let check = Check::new("distinct_keys_are_independent", backend);
    let (k1, k2, k3) = (check.key("k1"), check.key("k2"), check.key("k3"));
    let (a, b) = (fp("a"), fp("b"));
    let t1 = check.expect_fresh("claim of k1", &k1, &a, LONG_LEASE).await;
    let t2 = check
        .expect_fresh(
            "claim of k2, same fingerprint, while k1 is held",
            &k2,
            &a,
            LONG_LEASE,
        )
        .await;
    check
        .expect_fresh(
            "claim of k3, another fingerprint, while k1 is held",
            &k3,
            &b,
            LONG_LEASE,
        )
        .await;
    let completed = check.complete(&k1, t1, b"one", TTL).await;
    check.expect_cas("complete of k1", completed, CasOutcome::Applied);
    check
        .expect_in_progress("claim of k2 after k1 completed", &k2, &a, LONG_LEASE)
        .await;
    check
        .expect_in_progress("claim of k3 after k1 completed", &k3, &b, LONG_LEASE)
        .await;
    let released = check.release(&k2, t2).await;
    check.expect_cas("release of k2", released, CasOutcome::Applied);
    check
        .expect_completed("replay of k1 after k2 was released", &k1, &a, b"one")
        .await;
    check
        .expect_in_progress("claim of k3 after k2 was released", &k3, &b, LONG_LEASE)
        .await;
    let t2 = check
        .expect_fresh("claim of k2 after its release", &k2, &b, LONG_LEASE)
        .await;
    let completed = check.complete(&k2, t2, b"two", TTL).await;
    check.expect_cas("complete of k2", completed, CasOutcome::Applied);
    check
        .expect_completed("replay of k1 after k2 completed", &k1, &a, b"one")
        .await;
    check
        .expect_completed("replay of k2", &k2, &b, b"two")
        .await;
}

/// Calls `wait_for_change(key, at_most)`, asserting it is `Ok` and returns
/// within `at_most` plus a margin.
async fn wait<B: Backend + ?Sized>(check: &Check<'_, B>, step: &str, key: &str, at_most: Duration) {
    let start = Instant::now();
    if let Err(error) = check.backend.wait_for_change(key, at_most).await {
        check.fail(step, "Ok(())", format_args!("Err({error})"));
    }
    let waited = start.elapsed();
    if waited > at_most + MARGIN {
        check.fail(
            step,
            &format!("a return within at_most ({at_most:?}) + {MARGIN:?}"),
            format_args!("a return after {waited:?}"),
        );
    }
}

/// `wait_for_change` returns `Ok` within its `at_most` (plus a generous
/// margin) on an absent key, a completed key and a live claim nobody touches;
/// and a duplicate waiting on a live claim that another task completes then
/// finds it `Completed` (an early or spurious return is allowed: the waiter
/// claims again and may wait again).
pub async fn wait_for_change_returns<B: Backend + ?Sized>(backend: &B) {
    let check = Check::new("wait_for_change_returns", backend);
    let a = fp("a");
    let short = Duration::from_millis(300);

    let absent = check.key("absent");
    wait(&check, "wait_for_change on an absent key", &absent, short).await;
    check
        .expect_fresh("claim of the absent key waited on", &absent, &a, LONG_LEASE)
        .await;

    let done = check.key("done");
    let token = check
        .expect_fresh("claim of an absent key", &done, &a, LONG_LEASE)
        .await;
    let completed = check.complete(&done, token, b"done", TTL).await;
    check.expect_cas("complete by the holder", completed, CasOutcome::Applied);
    wait(&check, "wait_for_change on a completed key", &done, short).await;

    let idle = check.key("idle");
    check
        .expect_fresh("claim of an absent key", &idle, &a, LONG_LEASE)
        .await;
    wait(
        &check,
        &format!("wait_for_change({short:?}) on a live claim with a {LONG_LEASE:?} lease"),
        &idle,
        short,
    )
    .await;

    let busy = check.key("busy");
    let token = check
        .expect_fresh("claim of an absent key", &busy, &a, LONG_LEASE)
        .await;
    let at_most = Duration::from_secs(2);
    let holder = async {
        sleep(Duration::from_millis(200)).await;
        let completed = check.complete(&busy, token, b"result", TTL).await;
        check.expect_cas(
            "complete by the holder while a duplicate waits",
            completed,
            CasOutcome::Applied,
        );
    };
    let waiter = async {
        let start = Instant::now();
        loop {
            wait(
                &check,
                &format!("wait_for_change({at_most:?}) on a live claim the holder completes"),
                &busy,
                at_most,
            )
            .await;
            match check
                .claim(&busy, &a, FencingToken::generate(), LONG_LEASE)
                .await
            {
                ClaimOutcome::Completed { output } if output == b"result" => break,
                ClaimOutcome::InProgress { .. } if start.elapsed() < at_most + MARGIN => {}
                other => check.fail(
                    &format!(
                        "claim by the duplicate after waiting {:?} for a holder that completes \
                         after 200ms",
                        start.elapsed()
                    ),
                    "Completed { output: b\"result\" }",
                    Show(&other),
                ),
            }
        }
    };
    tokio::join!(holder, waiter);
}

/// `release_in_background` by the holder releases the claim, at once or
/// soon (within 5 s): the key becomes absent, `Acquired { took_over: false }`.
pub async fn release_in_background_releases<B: Backend + ?Sized>(backend: &B) {
    let check = Check::new("release_in_background_releases", backend);
    let key = check.key("k");
    let a = fp("a");
    let token = check
        .expect_fresh("claim of an absent key", &key, &a, LONG_LEASE)
        .await;
    let start = Instant::now();
    crate::backend::release_in_background(backend, "conformance", &key, token);
    loop {
        match check
            .claim(&key, &a, FencingToken::generate(), LONG_LEASE)
            .await
        {
            ClaimOutcome::Acquired {
                token,
                took_over: false,
            } => {
                let released = check.release(&key, token).await;
                check.expect_cas("release of the new claim", released, CasOutcome::Applied);
                return;
            }
            ClaimOutcome::InProgress { .. } if start.elapsed() < BACKGROUND_BOUND => {
                sleep(Duration::from_millis(20)).await;
            }
            other => check.fail(
                &format!(
                    "claim {:?} after release_in_background by the holder",
                    start.elapsed()
                ),
                &format!("Acquired {{ took_over: false, .. }} within {BACKGROUND_BOUND:?}"),
                Show(&other),
            ),
        }
    }
}

/// Completing again with the completing claim's token (a retry whose first
/// reply was lost) is `Applied` and leaves the first output; release and
/// renew with that token are `Fenced`: a completed record is no claim.
pub async fn repeated_complete_is_applied_once<B: Backend + ?Sized>(backend: &B) {
    let check = Check::new("repeated_complete_is_applied_once", backend);
    let key = check.key("k");
    let a = fp("a");
    let token = check
        .expect_fresh("claim of an absent key", &key, &a, LONG_LEASE)
        .await;
    let completed = check.complete(&key, token, b"first", TTL).await;
    check.expect_cas("first complete", completed, CasOutcome::Applied);
    // A retry of a complete whose reply was lost (the connection dropped
    // after the store applied it) must not look fenced to its caller.
    let completed = check.complete(&key, token, b"second", TTL).await;
    check.expect_cas(
        "second complete with the same token (a retried completion)",
        completed,
        CasOutcome::Applied,
    );
    let released = check.release(&key, token).await;
    check.expect_cas(
        "release with the completed claim's token",
        released,
        CasOutcome::Fenced,
    );
    let renewed = check.renew(&key, token, LONG_LEASE).await;
    check.expect_cas(
        "renew with the completed claim's token",
        renewed,
        CasOutcome::Fenced,
    );
    check
        .expect_completed("replay: the first output, untouched", &key, &a, b"first")
        .await;
}

/// A claim sent again with the token of the live claim it made (a transport
/// that retried it, a reply that was lost) finds itself: `Acquired {
/// took_over: false }`, not `InProgress`. Another token still finds the key
/// in progress, and the same token with another fingerprint a mismatch.
pub async fn a_claim_sent_twice_is_acquired<B: Backend + ?Sized>(backend: &B) {
    let check = Check::new("a_claim_sent_twice_is_acquired", backend);
    let key = check.key("k");
    let (a, b) = (fp("a"), fp("b"));
    let token = check
        .expect_fresh("claim of an absent key", &key, &a, LONG_LEASE)
        .await;
    match check.claim(&key, &a, token, LONG_LEASE).await {
        ClaimOutcome::Acquired {
            took_over: false, ..
        } => {}
        other => check.fail(
            "the same claim, sent again",
            "Acquired { took_over: false, .. }",
            Show(&other),
        ),
    }
    check
        .expect_in_progress("a claim with another token", &key, &a, LONG_LEASE)
        .await;
    let other = check.claim(&key, &b, token, LONG_LEASE).await;
    if other != ClaimOutcome::Mismatch {
        check.fail(
            "the same token, another fingerprint",
            "Mismatch",
            Show(&other),
        );
    }
    let completed = check.complete(&key, token, b"done", TTL).await;
    check.expect_cas("complete of the claim", completed, CasOutcome::Applied);
    check
        .expect_completed("the same token after completion", &key, &a, b"done")
        .await;
}

/// The marker the runtime stores for a body whose result could not be
/// stored ([`stored_result::NOT_STORED_LEN`](crate::backend::stored_result::NOT_STORED_LEN)
/// bytes) is accepted by a store configured with its smallest output limit
/// (`limit`, which must be at least
/// [`MIN_OUTPUT_LIMIT`](crate::limits::MIN_OUTPUT_LIMIT)): the key then
/// records that the body ran, so a retry never runs it again.
///
/// Like [`output_over_the_limit_is_too_large`], call it by hand on a store
/// configured with the smallest limit it allows.
pub async fn not_stored_marker_fits_the_smallest_limit<B: Backend + ?Sized>(
    backend: &B,
    limit: usize,
) {
    let check = Check::new("not_stored_marker_fits_the_smallest_limit", backend);
    if limit < crate::limits::MIN_OUTPUT_LIMIT {
        check.fail(
            "the store's smallest output limit",
            &format!("at least {} bytes", crate::limits::MIN_OUTPUT_LIMIT),
            limit,
        );
    }
    let key = check.key("k");
    let a = fp("a");
    let token = check
        .expect_fresh("claim of an absent key", &key, &a, LONG_LEASE)
        .await;
    let marker = crate::backend::stored_result::not_stored_marker();
    let completed = check.complete(&key, token, &marker, TTL).await;
    check.expect_cas("complete with the marker", completed, CasOutcome::Applied);
    check
        .expect_completed("replay of the marker", &key, &a, &marker)
        .await;
}

/// An output longer than the store's limit fails with
/// [`BackendErrorKind::TooLarge`] and changes nothing (the claim is still in
/// progress, its holder may complete with a smaller output); an output of
/// exactly `limit` bytes is stored.
///
/// `limit` is the largest output `backend` accepts, so this check is not part
/// of [`conformance_tests!`](crate::conformance_tests): call it on a store
/// configured with a small limit (see [`run`] for an example).
pub async fn output_over_the_limit_is_too_large<B: Backend + ?Sized>(backend: &B, limit: usize) {
    let check = Check::new("output_over_the_limit_is_too_large", backend);
    let key = check.key("k");
    let a = fp("a");
    let token = check
        .expect_fresh("claim of an absent key", &key, &a, LONG_LEASE)
        .await;
    let too_large = vec![b'x'; limit + 1];
    let step = format!(
        "complete with {} bytes, over the limit of {limit}",
        limit + 1
    );
    match backend.complete(&key, token, &too_large, TTL).await {
        Err(error) if error.kind() == BackendErrorKind::TooLarge => {}
        Err(error) => check.fail(
            &step,
            "Err with kind TooLarge",
            format_args!("Err({error}) of kind {:?}", error.kind()),
        ),
        Ok(outcome) => check.fail(&step, "Err with kind TooLarge", outcome),
    }
    check
        .expect_in_progress("claim after the failed complete", &key, &a, LONG_LEASE)
        .await;
    let at_limit = vec![b'y'; limit];
    let completed = check.complete(&key, token, &at_limit, TTL).await;
    check.expect_cas(
        &format!("complete with exactly the limit of {limit} bytes"),
        completed,
        CasOutcome::Applied,
    );
    check
        .expect_completed("replay of the output at the limit", &key, &a, &at_limit)
        .await;
}
