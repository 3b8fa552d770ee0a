//! What a store's factory hands the suite.

use idempotent_core::Backend;

/// What a conformance test gets from a store's factory: the store to check,
/// and a guard kept alive until the test ends.
///
/// Implemented for every backend (no guard) and for `(backend, guard)` pairs,
/// so a factory returns whichever it needs; the guard can be anything (a
/// server process killed on drop, a temporary directory, `()`).
///
/// `Form` is [`BackendOnly`] or [`BackendAndGuard`], inferred from the
/// fixture's type: code calls `fixture.into_parts()` and never names it.
pub trait ConformanceFixture<Form> {
    /// The store under test.
    type Backend: Backend + 'static;
    /// Dropped after the store, at the end of the test.
    type Guard;

    /// Splits the fixture into its backend and its guard.
    fn into_parts(self) -> (Self::Backend, Self::Guard);
}

// Why `Form` exists: `Backend` is another crate's trait here, so coherence
// must assume idempotent-core could one day implement it for tuples, and a
// blanket impl for every backend would then overlap the impl for pairs.
// Impls of `ConformanceFixture<BackendOnly>` and
// `ConformanceFixture<BackendAndGuard>` are of different traits, so they never
// overlap, and only one of them applies to any fixture.

/// The [`ConformanceFixture`] form of a store on its own.
#[derive(Debug)]
pub enum BackendOnly {}

/// The [`ConformanceFixture`] form of a `(backend, guard)` pair.
#[derive(Debug)]
pub enum BackendAndGuard {}

impl<B: Backend + 'static> ConformanceFixture<BackendOnly> for B {
    type Backend = B;
    type Guard = ();

    fn into_parts(self) -> (B, ()) {
        (self, ())
    }
}

impl<B: Backend + 'static, G> ConformanceFixture<BackendAndGuard> for (B, G) {
    type Backend = B;
    type Guard = G;

    fn into_parts(self) -> (B, G) {
        self
    }
}
