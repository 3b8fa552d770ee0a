//! One server for the tests of a binary that run at the same time.

use std::sync::{Arc, Mutex, PoisonError, Weak};

/// The value in `slot` while any test still holds it, or a new one from
/// `start` (kept in `slot` for the tests that come while this one runs).
/// When the last holder drops it, it stops, so a binary's servers live only
/// as long as its tests need them.
///
/// `start` runs under the slot's lock: tests that ask meanwhile wait for it
/// and then share what it started. Call it from the test's own thread, not
/// from a runtime's worker, since a start blocks.
pub fn shared<T>(slot: &Mutex<Weak<T>>, start: impl FnOnce() -> T) -> Arc<T> {
    let mut shared = slot.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(running) = shared.upgrade() {
        return running;
    }
    let started = Arc::new(start());
    *shared = Arc::downgrade(&started);
    started
}
