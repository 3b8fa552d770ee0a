//! For store authors: the storage contract ([`Backend`]: four atomic
//! single-key operations, a wait hint, and a handle for work that outlives a
//! dropped call), what its operations answer, the stored-result format, and
//! the committing mode for stores that write a record in the body's own
//! transaction.
//!
//! An application only names [`Backend`] (re-exported at the crate root, as
//! in `Arc<dyn Backend>`); the rest of this module is for crates that
//! implement a store. Run the store contract on a new store with the
//! `idempotent-conformance` crate.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

pub use crate::commit::{Commit, Settled};
pub use crate::envelope::stored_result;
pub use crate::error::{BackendError, BackendErrorKind, ErrorChain};
pub use crate::fingerprint::Fingerprint;
pub use crate::phase::release_in_background;

/// Identifies one claim of one key. Complete, release and renew succeed only
/// with the token of the claim currently stored, so a holder whose lease
/// expired and was taken over can never touch the new holder's record.
///
/// The caller chooses a claim's token before it sends the claim
/// ([`FencingToken::generate`]), so that a claim whose answer never arrives
/// (the call was dropped, the reply was lost) can still be released by its
/// token, and a claim the transport sends twice recognises itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FencingToken(u64);

impl FencingToken {
    /// A token for a new claim: never repeated by this process, and drawn
    /// from a per-process random sequence, so two processes collide on one
    /// key with probability 2^-64.
    pub fn generate() -> Self {
        crate::token::next()
    }

    /// Wraps a token value read back from a store.
    pub const fn new(value: u64) -> Self {
        Self(value)
    }

    /// The token's value, for stores that keep it.
    pub const fn get(self) -> u64 {
        self.0
    }
}

/// What [`Backend::claim`] found and did, one row of the decision table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// The key was absent or expired, or held by a claim whose lease expired
    /// (with the same fingerprint), or already held by this very claim (the
    /// same token, sent again): the caller now holds it and runs the body.
    Acquired {
        /// The claim's token: the one the caller passed to [`Backend::claim`].
        token: FencingToken,
        /// Whether an expired claim of another caller was taken over.
        took_over: bool,
    },
    /// A live claim with the same fingerprint is running.
    InProgress {
        /// How long until that claim's lease expires unless it is renewed.
        lease_remaining: Duration,
    },
    /// A completed record with the same fingerprint: its stored output.
    Completed {
        /// The bytes given to [`Backend::complete`].
        output: Vec<u8>,
    },
    /// The key holds a record (claimed or completed) with another fingerprint.
    Mismatch,
}

/// The result of a compare-and-set on a [`FencingToken`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CasOutcome {
    /// The token matched the stored claim and the write was applied.
    Applied,
    /// The token did not match: the claim was taken over by another call,
    /// released, completed, or forgotten by the store (a claim whose lease ran
    /// out may be forgotten after one more lease). Nothing was changed. A
    /// claim whose lease ran out but that nobody took over still matches.
    Fenced,
}

/// The form of the keys the engine hands a store ([`Backend::key_form`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyForm {
    /// `{scope}:{64 hex digits}`, the SHA-256 of the key's canonical
    /// encoding: bounded whatever the key's size, and the same in every
    /// process and release, so records written before a deploy or by
    /// another process are found. What every store that keeps records
    /// beyond one process needs, and the default.
    #[default]
    Digest,
    /// A form that only this process's build reads: the scope framed by its
    /// length, then a short key's canonical encoding as it is (or, for a key
    /// longer than 64 bytes, its digest). Cheaper to build, as it hashes no
    /// short key, and as collision-free as the digest form: two calls get
    /// the same key exactly when they share the scope and the key. For a
    /// store whose records never leave the process nor outlive it (the
    /// memory store).
    Local,
}

/// A store of idempotency records.
///
/// Each method is one atomic operation on one key (one lock, one Lua script,
/// one SQL statement): never read-then-write across two round trips. Keys are
/// `{scope}:{hex digest}` strings of bounded length (or another bounded form
/// a store may ask for, [`key_form`](Self::key_form)). Time (leases, expiry)
/// is the store's own clock.
///
/// A record is absent, in progress `{fingerprint, token, lease_until}` or
/// completed `{fingerprint, output}` (expiring after its `ttl`). An expired
/// record counts as absent.
///
/// The trait is object safe: `Arc<dyn Backend>` and `&dyn Backend` are
/// stores too, as are `&B`, `Box<B>` and `Arc<B>` for any backend `B`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an idempotency store (it does not implement `idempotent_core::Backend`)",
    label = "expected a store such as `&MemoryBackend`, `Arc<dyn Backend>` or `RedisBackend`",
    note = "`backend = ...` takes any `B: Backend`: a store, a reference to one, or an `Arc`/`Box` of one"
)]
#[async_trait]
pub trait Backend: Send + Sync {
    /// Claims `key` with `token` for a call with `fingerprint`, for `lease`,
    /// following the decision table:
    ///
    /// | found | same fingerprint | other fingerprint |
    /// | --- | --- | --- |
    /// | absent or expired | `Acquired` | `Acquired` |
    /// | in progress with this `token` (a claim sent twice) | `Acquired` | `Mismatch` |
    /// | in progress, lease live | `InProgress` | `Mismatch` |
    /// | in progress, lease expired | `Acquired { took_over: true }` | `Mismatch` |
    /// | completed | `Completed` | `Mismatch` |
    ///
    /// A claim may be applied after its caller stopped waiting for it (the
    /// call was dropped while the claim was on the way, or its answer was
    /// lost). The caller then releases it by its token, and keeps trying
    /// while the claim may still land, for two leases after sending it. So a
    /// store must apply a claim within two leases of its sending or never
    /// (operation timeouts that the server enforces do that), or apply a
    /// release after any claim with the same token sent before it (one
    /// ordered connection does).
    async fn claim(
        &self,
        key: &str,
        fingerprint: &Fingerprint,
        token: FencingToken,
        lease: Duration,
    ) -> Result<ClaimOutcome, BackendError>;

    /// [`claim`](Self::claim) done in place, for a store whose operations
    /// never wait (its records are in this process's memory): no future to
    /// box, and with the outcome the instant, on tokio's clock, that the
    /// store's lease counts from, so the caller needs no clock read of its
    /// own to know when its lease ends. An `Err` means the claim was not
    /// applied.
    ///
    /// `None`, the default: the store has no such path, and the caller
    /// awaits [`claim`](Self::claim). A store that answers here answers as
    /// `claim` would.
    fn claim_in_place(
        &self,
        key: &str,
        fingerprint: &Fingerprint,
        token: FencingToken,
        lease: Duration,
    ) -> Option<Result<(ClaimOutcome, tokio::time::Instant), BackendError>> {
        let _ = (key, fingerprint, token, lease);
        None
    }

    /// Replaces the claim holding `token` by a completed record with `output`,
    /// kept for `ttl`. Fails with kind
    /// [`TooLarge`](crate::BackendErrorKind::TooLarge) when `output` exceeds
    /// the store's limit (nothing changes then).
    async fn complete(
        &self,
        key: &str,
        token: FencingToken,
        output: &[u8],
        ttl: Duration,
    ) -> Result<CasOutcome, BackendError>;

    /// Deletes the claim holding `token`, so the next call runs the body.
    async fn release(&self, key: &str, token: FencingToken) -> Result<CasOutcome, BackendError>;

    /// Extends the lease of the claim holding `token` to `lease` from now.
    async fn renew(
        &self,
        key: &str,
        token: FencingToken,
        lease: Duration,
    ) -> Result<CasOutcome, BackendError>;

    /// Waits until the record at `key` may have changed, or at most `at_most`.
    ///
    /// Called by a duplicate that found the key in progress and may wait for
    /// its result; it claims again afterwards, so an early or spurious return
    /// is harmless. The runtime passes growing bounds (a backoff); the default
    /// just sleeps for them. A store that can be notified (the memory store
    /// wakes waiters on complete and release) returns as soon as it changes.
    async fn wait_for_change(&self, key: &str, at_most: Duration) -> Result<(), BackendError> {
        let _ = key;
        tokio::time::sleep(at_most).await;
        Ok(())
    }

    /// A handle on this store that may outlive the call, for the work a
    /// dropped call leaves to a background task: releasing its claim, or
    /// storing the result of a body that already ran.
    ///
    /// A network store returns a clone of itself (a cheap, shared handle).
    /// `None` means the store's operations finish when first polled (the
    /// memory store): the dropped call then runs that work in place.
    fn detached(&self) -> Option<Arc<dyn Backend>>;

    /// The form of the keys the engine hands this store:
    /// [`KeyForm::Digest`] unless the store's records never leave this
    /// process. Asked once per call, before the key is computed.
    fn key_form(&self) -> KeyForm {
        KeyForm::Digest
    }
}

/// The boxed future `#[async_trait]` methods return.
type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

// The forwarding impls hand out the inner backend's boxed future as it is:
// written with `#[async_trait]` they would box it a second time, and every
// store operation through `&dyn Backend` (what `#[idempotent]` uses) would
// pay two allocations instead of one.
macro_rules! forward_backend {
    ($($(#[$doc:meta])* $ty:ty),* $(,)?) => {$(
        $(#[$doc])*
        // Not suggested in diagnostics: "`str` is not a store" would hide
        // that the user wrote `&str`.
        #[diagnostic::do_not_recommend]
        impl<B: Backend + ?Sized> Backend for $ty {
            fn claim<'s, 'k, 'f, 'async_trait>(
                &'s self,
                key: &'k str,
                fingerprint: &'f Fingerprint,
                token: FencingToken,
                lease: Duration,
            ) -> BoxFuture<'async_trait, Result<ClaimOutcome, BackendError>>
            where
                's: 'async_trait,
                'k: 'async_trait,
                'f: 'async_trait,
                Self: 'async_trait,
            {
                (**self).claim(key, fingerprint, token, lease)
            }

            fn complete<'s, 'k, 'o, 'async_trait>(
                &'s self,
                key: &'k str,
                token: FencingToken,
                output: &'o [u8],
                ttl: Duration,
            ) -> BoxFuture<'async_trait, Result<CasOutcome, BackendError>>
            where
                's: 'async_trait,
                'k: 'async_trait,
                'o: 'async_trait,
                Self: 'async_trait,
            {
                (**self).complete(key, token, output, ttl)
            }

            fn release<'s, 'k, 'async_trait>(
                &'s self,
                key: &'k str,
                token: FencingToken,
            ) -> BoxFuture<'async_trait, Result<CasOutcome, BackendError>>
            where
                's: 'async_trait,
                'k: 'async_trait,
                Self: 'async_trait,
            {
                (**self).release(key, token)
            }

            fn renew<'s, 'k, 'async_trait>(
                &'s self,
                key: &'k str,
                token: FencingToken,
                lease: Duration,
            ) -> BoxFuture<'async_trait, Result<CasOutcome, BackendError>>
            where
                's: 'async_trait,
                'k: 'async_trait,
                Self: 'async_trait,
            {
                (**self).renew(key, token, lease)
            }

            fn wait_for_change<'s, 'k, 'async_trait>(
                &'s self,
                key: &'k str,
                at_most: Duration,
            ) -> BoxFuture<'async_trait, Result<(), BackendError>>
            where
                's: 'async_trait,
                'k: 'async_trait,
                Self: 'async_trait,
            {
                (**self).wait_for_change(key, at_most)
            }

            fn detached(&self) -> Option<Arc<dyn Backend>> {
                (**self).detached()
            }

            fn key_form(&self) -> KeyForm {
                (**self).key_form()
            }

            fn claim_in_place(
                &self,
                key: &str,
                fingerprint: &Fingerprint,
                token: FencingToken,
                lease: Duration,
            ) -> Option<Result<(ClaimOutcome, tokio::time::Instant), BackendError>> {
                (**self).claim_in_place(key, fingerprint, token, lease)
            }
        }
    )*};
}

forward_backend!(
    /// A borrowed backend, as in `backend = &self.store`.
    &B,
    /// A shared backend, as in `backend = self.store.clone()`.
    Arc<B>,
    /// An owned, boxed backend.
    Box<B>,
);
