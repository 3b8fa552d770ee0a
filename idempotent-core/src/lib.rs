//! Make async operations safe to retry.
//!
//! Annotate an `async fn` with `#[idempotent]`: the first call with a given key
//! runs the body; every later call with that key, from any task, process or
//! machine sharing the store, gets the stored result back without running it.
//!
//! ```
//! use idempotent_core::idempotent;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct ChargeRequest { idempotency_key: String, amount: u64 }
//!
//! #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
//! struct Receipt { charged: u64 }
//!
//! #[derive(Debug, thiserror::Error)]
//! enum ChargeError {
//!     #[error(transparent)]
//!     Idempotency(#[from] idempotent_core::Error),
//!     #[error("card declined")]
//!     Declined,
//! }
//!
//! #[idempotent(key = req.idempotency_key, ttl = "24h")]
//! async fn charge(req: ChargeRequest) -> Result<Receipt, ChargeError> {
//!     Ok(Receipt { charged: req.amount }) // the side effect runs once per key
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let request = || ChargeRequest { idempotency_key: "order-7".into(), amount: 1999 };
//! let first = charge(request()).await.unwrap();
//! let retry = charge(request()).await.unwrap(); // replayed, not charged again
//! assert_eq!(first, retry);
//! # }
//! ```
//!
//! The macro only expands into the runtime API, [`Idempotency`], which code
//! can also call directly. Records live in a [`Backend`]: the process default
//! is a [`MemoryBackend`]; [`set_default_backend`] swaps it at start-up.
//!
//! Each call follows one decision table, applied atomically by the store:
//!
//! | found at claim | same arguments | other arguments |
//! | --- | --- | --- |
//! | nothing, or expired | claim it, run the body | (same) |
//! | a running call, lease live | [`Error::InProgress`] (or wait) | [`Error::PayloadMismatch`] |
//! | a running call, lease expired | take it over, run the body | [`Error::PayloadMismatch`] |
//! | a completed call | replay its result | [`Error::PayloadMismatch`] |

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod backend;
mod bounds;
mod canonical;
mod commit;
mod completion;
mod default_backend;
mod engine;
mod envelope;
mod error;
mod fingerprint;
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
