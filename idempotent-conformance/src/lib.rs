//! The store conformance suite of the idempotent framework: every rule of
//! the [`Backend`](idempotent_core::Backend) contract, as one check per rule, written once and run by
//! every store.
//!
//! Each check is an `async fn` taking a store; it panics with the rule's
//! name and what it observed when the store breaks the rule. The checks work
//! at the trait level (claim, complete, release, renew, `wait_for_change`,
//! [`release_in_background`](idempotent_core::backend::release_in_background)),
//! not through [`Idempotency`](idempotent_core::Idempotency), so a failure
//! points at the store itself.
//!
//! # Running the suite on a store
//!
//! Add this crate to the store's dev-dependencies and invoke
//! [`conformance_tests!`] in a test file with a factory: a closure (or the
//! path of an `async fn`) whose future gives a fresh [`ConformanceFixture`],
//! that is either the store itself or a `(backend, guard)` pair whose guard
//! is kept alive until the test ends (a private server, a temporary database):
//!
//! ```toml
//! [dev-dependencies]
//! idempotent-conformance = "0.1"
//! ```
//!
//! ```ignore
//! // tests/conformance.rs of a store crate
//! use idempotent_core::MemoryBackend;
//!
//! idempotent_conformance::conformance_tests!(|| async { MemoryBackend::new() });
//!
//! // A store needing a server: the guard (here a redis-server process killed
//! // on drop) lives as long as the test.
//! mod redis {
//!     idempotent_conformance::conformance_tests!(|| async {
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
//! [`release_in_background`](idempotent_core::backend::release_in_background)
//! takes effect within 5 s, and
//! [`wait_for_change`](idempotent_core::Backend::wait_for_change) returns within its `at_most`
//! plus 2 s. A test fails (rather than hangs) after 60 s.
//!
//! # The rules
//!
//! One check per rule, each run by the macro, in one module per rule group:
//!
//! | check | rule |
//! | --- | --- |
//! | **[`claim`]**: what a claim finds | |
//! | [`claim::absent_key_is_acquired`] | an absent key is acquired, not taken over |
//! | [`claim::completed_key_replays_its_output`] | a completed key replays its output, byte-exact |
//! | [`claim::completed_key_with_other_fingerprint_is_mismatch`] | a completed key claimed with another fingerprint is a mismatch |
//! | [`claim::live_claim_is_in_progress`] | a live claim is in progress, with `0 < lease_remaining <= lease` |
//! | [`claim::live_claim_with_other_fingerprint_is_mismatch`] | a live claim claimed with another fingerprint is a mismatch |
//! | [`claim::a_claim_sent_twice_is_acquired`] | the same claim sent again (same token) finds itself: acquired, not in progress |
//! | **[`lease`]**: a lease in time | |
//! | [`lease::expired_lease_is_taken_over_with_a_new_token`] | an expired lease is taken over, with a new token |
//! | [`lease::expired_lease_with_other_fingerprint_is_mismatch`] | an expired lease claimed with another fingerprint is a mismatch |
//! | [`lease::a_takeover_sent_twice_is_acquired`] | a takeover sent again with its token finds itself: acquired, not in progress |
//! | [`lease::renew_extends_the_lease`] | renewing keeps a claim live past its first lease |
//! | [`lease::slow_holder_not_taken_over_may_still_finish`] | a lease ran out but nobody took over: the holder may still complete, renew, release |
//! | **[`expiry`]**: what a store forgets on its own | |
//! | [`expiry::completed_record_expires_after_its_ttl`] | a completed record is replayed until its ttl, then absent |
//! | [`expiry::abandoned_claim_is_forgotten_after_twice_its_lease`] | a claim left alone is absent after 2 × its lease |
//! | **[`fencing`]**: the token compare-and-set | |
//! | [`fencing::stale_token_is_fenced_after_takeover`] | after a takeover, the old token changes nothing |
//! | [`fencing::unknown_token_or_absent_key_is_fenced`] | a token never issued, or an absent key, is fenced |
//! | [`fencing::repeated_complete_is_applied_once`] | completing again with the same token is `Applied` and changes nothing; release and renew are fenced |
//! | **[`release`]**: releasing a claim | |
//! | [`release::released_key_is_acquired_afresh`] | after a release, the key is absent |
//! | [`release::release_in_background_releases`] | `release_in_background` releases the claim |
//! | **[`concurrency`]**: racing claims | |
//! | [`concurrency::concurrent_claims_acquire_exactly_once`] | 100 concurrent claims: exactly one acquires |
//! | [`concurrency::concurrent_takeovers_acquire_exactly_once`] | 100 concurrent claims of an expired lease: exactly one takes over |
//! | **[`outputs`]**: stored outputs | |
//! | [`outputs::outputs_are_binary_safe`] | any bytes round-trip: all 256 values, NULs, invalid UTF-8 |
//! | [`outputs::large_output_round_trips`] | a 512 KiB output round-trips |
//! | [`outputs::empty_output_round_trips`] | an empty output round-trips and is a record, not an absence |
//! | **[`keys`]**: keys | |
//! | [`keys::unusual_keys_work_and_are_independent`] | long, `:`-laden, unicode and look-alike keys are distinct records |
//! | [`keys::distinct_keys_are_independent`] | operations on one key never affect another |
//! | **[`wait`]**: the wake-up hint | |
//! | [`wait::wait_for_change_returns`] | `wait_for_change` returns within its bound and sees a completion |
//!
//! Two rules of [`outputs`] depend on the store's configured output limit,
//! so they are not part of the macro: call
//! [`outputs::output_over_the_limit_is_too_large`] from a test of a store
//! built with a small limit, and
//! [`outputs::not_stored_marker_fits_the_smallest_limit`] from one built with
//! the smallest limit it allows.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod claim;
pub mod concurrency;
pub mod expiry;
pub mod fencing;
pub mod keys;
pub mod lease;
pub mod outputs;
pub mod release;
pub mod wait;

mod check;
mod fixture;
mod macros;
mod run;
mod show;
mod timing;

pub use crate::fixture::{BackendAndGuard, BackendOnly, ConformanceFixture};
pub use crate::run::run;
