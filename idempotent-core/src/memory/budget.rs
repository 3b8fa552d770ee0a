//! The store's bounds, shared by every clone of a `MemoryBackend`.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

pub(super) const DEFAULT_MAX_ENTRIES: usize = 100_000;
pub(super) const DEFAULT_MAX_BYTES: usize = 128 * 1024 * 1024;
pub(super) const DEFAULT_MAX_OUTPUT_BYTES: usize = 1024 * 1024;

/// Atomics rather than plain fields: the bounds belong to the shared store, so
/// a builder called on one clone must reach all of them. Each operation reads
/// them once, as [`Bounds`]; they are settings, not state the records depend
/// on, so they need no ordering with anything else.
pub(super) struct Limits {
    max_entries: AtomicUsize,
    max_bytes: AtomicUsize,
    max_output_bytes: AtomicUsize,
    evict_completed: AtomicBool,
}

/// The bounds as one operation sees them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Bounds {
    pub(super) max_entries: usize,
    pub(super) max_bytes: usize,
    pub(super) max_output_bytes: usize,
    /// Whether unexpired completed records may be evicted to make room.
    pub(super) evict_completed: bool,
}

impl Limits {
    /// The default bounds, with at most `max_entries` records (at least 1).
    pub(super) fn new(max_entries: usize) -> Self {
        Self {
            max_entries: AtomicUsize::new(max_entries.max(1)),
            max_bytes: AtomicUsize::new(DEFAULT_MAX_BYTES),
            max_output_bytes: AtomicUsize::new(DEFAULT_MAX_OUTPUT_BYTES),
            evict_completed: AtomicBool::new(false),
        }
    }

    pub(super) fn get(&self) -> Bounds {
        Bounds {
            max_entries: self.max_entries.load(Ordering::Relaxed),
            max_bytes: self.max_bytes.load(Ordering::Relaxed),
            max_output_bytes: self.max_output_bytes.load(Ordering::Relaxed),
            evict_completed: self.evict_completed.load(Ordering::Relaxed),
        }
    }

    pub(super) fn set_max_bytes(&self, bytes: usize) {
        self.max_bytes.store(bytes, Ordering::Relaxed);
    }

    pub(super) fn set_max_output_bytes(&self, bytes: usize) {
        // Never below the not-stored marker's room, so a body whose result
        // is refused can still record that it ran.
        let bytes = bytes.max(crate::limits::MIN_OUTPUT_LIMIT);
        self.max_output_bytes.store(bytes, Ordering::Relaxed);
    }

    pub(super) fn set_evict_completed(&self, evict: bool) {
        self.evict_completed.store(evict, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_the_entry_clamp() {
        let limits = Limits::new(DEFAULT_MAX_ENTRIES);
        assert_eq!(
            limits.get(),
            Bounds {
                max_entries: 100_000,
                max_bytes: 128 * 1024 * 1024,
                max_output_bytes: 1024 * 1024,
                evict_completed: false,
            }
        );
        assert_eq!(Limits::new(0).get().max_entries, 1);
        limits.set_max_bytes(0);
        // Clamped to the smallest limit, which the not-stored marker fits.
        limits.set_max_output_bytes(7);
        limits.set_evict_completed(true);
        let bounds = limits.get();
        assert_eq!(
            (
                bounds.max_bytes,
                bounds.max_output_bytes,
                bounds.evict_completed
            ),
            (0, crate::limits::MIN_OUTPUT_LIMIT, true),
            "a zero byte budget is kept: every claim then fails with Capacity"
        );
    }
}
