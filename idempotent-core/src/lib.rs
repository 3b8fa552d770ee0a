#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod backend;
mod bounds;
mod canonical;
mod commit;
mod completion;
mod default_backend;
mod default_scope;
mod engine;
mod envelope;
mod error;
mod fingerprint;
mod hasher;
mod lease;
pub mod limits;
mod memory;
mod phase;
mod private;
mod runtime;
mod stats;
mod stored_key;
mod token;

// The macro's expansion names `::idempotent_core`, also in this crate's tests.
extern crate self as idempotent_core;

pub use crate::backend::Backend;
#[doc(hidden)]
pub use crate::bounds::{FromIdempotencyError, IdempotentResult, StorableError, StorableOutput};
pub use crate::default_backend::{default_backend, set_default_backend, DefaultBackendAlreadySet};
pub use crate::error::{BackendError, BackendErrorKind, CodecError, Error};
pub use crate::memory::MemoryBackend;
pub use crate::runtime::{Call, Idempotency, DEFAULT_LEASE, DEFAULT_SCOPE, DEFAULT_TTL};
pub use crate::stats::{stats, Stats};

// Store-author items, public in `backend`, used unqualified inside the crate.
pub(crate) use crate::backend::{CasOutcome, ClaimOutcome, FencingToken, Fingerprint};

/// Makes an `async fn` idempotent: see the crate documentation.
pub use idempotent_macros::idempotent;

/// What `#[idempotent]` expands into; not public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::private::*;
}
