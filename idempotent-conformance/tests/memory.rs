//! The backend conformance suite, run on the in-process `MemoryBackend`: the
//! reference store, so this also checks the suite itself (its fixtures, the
//! rules run by hand). Here rather than in idempotent-core's tests, so the
//! core has no dev-dependency cycle through this crate.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use idempotent_conformance::{
    self as conformance, claim, concurrency, outputs, ConformanceFixture,
};
use idempotent_core::{Backend, MemoryBackend};

idempotent_conformance::conformance_tests!(|| async { MemoryBackend::new() });

/// The output limit is the store's own, so this rule is run by hand.
#[test]
fn output_over_the_limit_is_too_large() {
    conformance::run("output_over_the_limit_is_too_large", async {
        let backend = MemoryBackend::new().max_output_bytes(1024);
        outputs::output_over_the_limit_is_too_large(&backend, 1024).await;
    });
}

/// A `(backend, guard)` fixture, as a store with a private server returns:
/// the backend (here an `Arc<dyn Backend>`) is checked like any other, and the
/// guard lives until the check is over.
#[test]
fn a_fixture_with_a_guard_keeps_it_alive() {
    struct Guard(Arc<AtomicBool>);
    impl Drop for Guard {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    let dropped = Arc::new(AtomicBool::new(false));
    let fixture = {
        let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
        (backend, Guard(Arc::clone(&dropped)))
    };
    conformance::run("a_fixture_with_a_guard_keeps_it_alive", async {
        let (backend, _guard) = fixture.into_parts();
        let backend = Arc::new(backend);
        concurrency::concurrent_claims_acquire_exactly_once(&backend).await;
        claim::completed_key_replays_its_output(&backend).await;
        assert!(
            !dropped.load(Ordering::SeqCst),
            "the guard outlives the checks"
        );
    });
    assert!(
        dropped.load(Ordering::SeqCst),
        "the guard is dropped with the test"
    );
}

/// The smallest output limit still takes the not-stored marker.
#[test]
fn not_stored_marker_fits_the_smallest_limit() {
    conformance::run("not_stored_marker_fits_the_smallest_limit", async {
        let backend = MemoryBackend::new().max_output_bytes(0);
        let limit = idempotent_core::limits::MIN_OUTPUT_LIMIT;
        outputs::not_stored_marker_fits_the_smallest_limit(&backend, limit).await;
    });
}
