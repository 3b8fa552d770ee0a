//! The process-wide default store, used by `#[idempotent]` functions without
//! a `backend = ...` option.

use std::sync::OnceLock;

use crate::{Backend, MemoryBackend};

static DEFAULT_BACKEND: OnceLock<Box<dyn Backend>> = OnceLock::new();

/// Installs the process default store. Call it once at start-up, before the
/// first idempotent call; swapping the store is this one line:
///
/// ```
/// use idempotent_core::{set_default_backend, MemoryBackend};
///
/// set_default_backend(MemoryBackend::with_max_entries(10_000))
///     .expect("set once, at start-up");
/// ```
///
/// Without it, the default is a [`MemoryBackend`] with default bounds.
///
/// Fails when a default is already in place: set earlier, or already created
/// by an idempotent call. Records written to the first store would be invisible
/// to the second, so the default never changes once chosen.
pub fn set_default_backend(
    backend: impl Backend + 'static,
) -> Result<(), DefaultBackendAlreadySet> {
    DEFAULT_BACKEND
        .set(Box::new(backend))
        .map_err(|_rejected| DefaultBackendAlreadySet)
}

/// The process default store: the one given to [`set_default_backend`], or a
/// [`MemoryBackend`] created on first use.
pub fn default_backend() -> &'static dyn Backend {
    DEFAULT_BACKEND
        .get_or_init(|| Box::new(MemoryBackend::new()))
        .as_ref()
}

/// [`set_default_backend`] was called after the default store was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the default idempotency store is already chosen (set before, or created by an earlier \
     idempotent call); call `set_default_backend` once, at start-up, before any idempotent call"
)]
pub struct DefaultBackendAlreadySet;
