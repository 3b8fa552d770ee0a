//! The runtime API: configure an idempotent call, then run a body through it.

use std::borrow::Cow;
use std::future::Future;
use std::time::Duration;

use serde::Serialize;

use crate::bounds::{IdempotentResult, StorableError};
use crate::default_scope::ScopeConflict;
use crate::engine::{self, CacheErrors, Options, ReleaseErrors};
use crate::private::HashInto;
use crate::stored_key::Target;
use crate::{default_backend, Backend, CodecError, Fingerprint};

/// How long a completed result is kept when no `ttl` is given: 24 hours.
pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// How long a claim lives without renewal when no `lease` is given: 30 seconds.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);
/// The scope of calls that set none.
pub const DEFAULT_SCOPE: &str = "idempotent";

/// The configuration of idempotent calls on one store: what `#[idempotent]`
/// expands into, and what code without the macro calls directly.
///
/// ```
/// use idempotent_core::{Error, Idempotency, MemoryBackend};
/// use std::time::Duration;
///
/// async fn charge(store: &MemoryBackend, order: &str, amount: u64) -> Result<String, Error> {
///     Idempotency::new(store)
///         .scope("payments::charge")
///         .ttl(Duration::from_secs(24 * 60 * 60))
///         .run(order, &amount, || async {
///             // The side effect: runs once per key.
///             Ok(format!("charged {amount} cents"))
///         })
///         .await
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let store = MemoryBackend::new();
/// assert_eq!(charge(&store, "order-42", 1999).await.unwrap(), "charged 1999 cents");
/// // A retry replays the stored result instead of charging again.
/// assert_eq!(charge(&store, "order-42", 1999).await.unwrap(), "charged 1999 cents");
/// // The same key with another amount is refused.
/// assert!(matches!(charge(&store, "order-42", 5).await, Err(Error::PayloadMismatch)));
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Idempotency<B> {
    backend: B,
    options: Options,
}

impl Idempotency<&'static dyn Backend> {
    /// Calls on the process default store (see
    /// [`set_default_backend`](crate::set_default_backend)).
    pub fn with_default_backend() -> Self {
        Self::new(default_backend())
    }
}

impl<B: Backend> Idempotency<B> {
    /// Calls on `backend`, with the default scope, ttl and lease, and no wait.
    pub fn new(backend: B) -> Self {
        Self {
            backend,
            options: Options {
                scope: Cow::Borrowed(DEFAULT_SCOPE),
                ttl: DEFAULT_TTL,
                lease: DEFAULT_LEASE,
                wait: None,
                require_key: false,
                scope_conflict: None,
            },
        }
    }

    /// The namespace of the stored keys. Keep it stable across deploys:
    /// records are found by scope and key, and checked against the scope.
    #[must_use]
    pub fn scope(mut self, scope: impl Into<Cow<'static, str>>) -> Self {
        self.options.scope = scope.into();
        self.options.scope_conflict = None;
        self
    }

    /// The scope `#[idempotent]` gives a function without `scope = "..."`,
    /// or the conflict that refuses every call of it.
    #[doc(hidden)]
    #[must_use]
    pub fn __default_scope(mut self, scope: Result<&'static str, ScopeConflict>) -> Self {
        match scope {
            Ok(scope) => {
                self.options.scope = Cow::Borrowed(scope);
                self.options.scope_conflict = None;
            }
            Err(conflict) => {
                self.options.scope = Cow::Borrowed(conflict.scope);
                self.options.scope_conflict = Some(conflict);
            }
        }
        self
    }

    /// How long a completed result is kept and replayed: from
    /// [`MIN_DURATION`](crate::limits::MIN_DURATION) to
    /// [`MAX_TTL`](crate::limits::MAX_TTL). A call with another ttl fails
    /// with [`Error::InvalidConfig`](crate::Error::InvalidConfig) before
    /// anything is claimed.
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.options.ttl = ttl;
        self
    }

    /// How long a claim lives without renewal. The claim is renewed every
    /// `lease / 3` while the body runs, so the lease bounds how long a crashed
    /// holder blocks its key, not how long a body may take. From
    /// [`MIN_LEASE`](crate::limits::MIN_LEASE) (250 ms: a shorter lease can
    /// lapse between two renewals) to
    /// [`MAX_LEASE`](crate::limits::MAX_LEASE), checked as [`ttl`](Self::ttl) is.
    #[must_use]
    pub fn lease(mut self, lease: Duration) -> Self {
        self.options.lease = lease;
        self
    }

    /// How long a duplicate waits for a running call's result before
    /// [`Error::InProgress`](crate::Error::InProgress). Without it, a
    /// duplicate fails at once. From
    /// [`MIN_DURATION`](crate::limits::MIN_DURATION) to
    /// [`MAX_WAIT`](crate::limits::MAX_WAIT), checked as [`ttl`](Self::ttl) is.
    #[must_use]
    pub fn wait(mut self, wait: Duration) -> Self {
        self.options.wait = Some(wait);
        self
    }

    /// A key whose value is `None` (or unit) is an error,
    /// [`Error::MissingKey`](crate::Error::MissingKey), and the body does
    /// not run. Without it, such a call runs the body without a record, as
    /// an HTTP request without an `Idempotency-Key` does.
    #[must_use]
    pub fn require_key(mut self) -> Self {
        self.options.require_key = true;
        self
    }

    /// Hashes `key` into the stored key and `input` into the fingerprint.
    ///
    /// Borrows of `key` and `input` end here, so the body may take them over.
    pub fn prepare<K, I>(self, key: &K, input: &I) -> Call<B>
    where
        K: Serialize + ?Sized,
        I: Serialize + ?Sized,
    {
        let form = self.backend.key_form();
        let target = Target::new(&self.options.scope, Some(&key), form, |hasher| {
            input.hash_into(hasher)
        });
        Call {
            config: self,
            target,
        }
    }

    /// Like [`prepare`](Self::prepare), with the fingerprint of `input` as
    /// the key: the same arguments are the same call.
    pub fn prepare_unkeyed<I: Serialize + ?Sized>(self, input: &I) -> Call<B> {
        let form = self.backend.key_form();
        let target = Target::new(&self.options.scope, None, form, |hasher| {
            input.hash_into(hasher)
        });
        Call {
            config: self,
            target,
        }
    }

    /// Runs `body` once for `key`: see [`Call::run`].
    pub fn run<K, I, F, Fut, R>(self, key: &K, input: &I, body: F) -> impl Future<Output = R>
    where
        K: Serialize + ?Sized,
        I: Serialize + ?Sized,
        F: FnOnce() -> Fut,
        Fut: Future<Output = R>,
        R: IdempotentResult,
    {
        self.prepare(key, input).run(body)
    }

    /// What `#[idempotent]` expands into: arguments arrive type-checked and
    /// erased, the key is optional.
    #[doc(hidden)]
    pub fn __prepare_args(self, key: Option<&dyn HashInto>, args: &[&dyn HashInto]) -> Call<B> {
        let form = self.backend.key_form();
        let target = Target::new(&self.options.scope, key, form, |hasher| {
            hasher.put(&(args.len() as u64).to_le_bytes());
            args.iter().try_for_each(|arg| arg.hash_into(hasher))
        });
        Call {
            config: self,
            target,
        }
    }
}

/// One prepared idempotent call: its stored key and fingerprint are computed.
#[derive(Debug)]
#[must_use = "a prepared call does nothing until `run` is awaited"]
pub struct Call<B> {
    config: Idempotency<B>,
    target: Result<Target, CodecError>,
}

impl<B: Backend> Call<B> {
    /// The call's key as a shared store keeps it (`{scope}:{hex digest}`),
    /// or `None` when there is no record: the key was `None`, or the key or
    /// arguments could not be serialized.
    ///
    /// It is stable across processes, retries and stores, so it also serves
    /// as the idempotency key to pass on to a downstream provider. A store
    /// whose records stay in this process (the memory store) is handed a
    /// cheaper form instead, [`record_key`](Self::record_key).
    pub fn stored_key(&self) -> Option<&str> {
        self.target.as_ref().ok()?.public_key()
    }

    /// The key this call's record has in its store, in the store's own
    /// [`KeyForm`](crate::backend::KeyForm): what to pass to the store's
    /// operations to reach the record (a test that plants one). The same
    /// as [`stored_key`](Self::stored_key) except on a store that asks for
    /// [`KeyForm::Local`](crate::backend::KeyForm::Local).
    pub fn record_key(&self) -> Option<&str> {
        match &self.target {
            Ok(Target::Keyed { key, .. }) => Some(key),
            _ => None,
        }
    }

    /// The fingerprint the record is checked against (of the scope and the
    /// arguments), when there is a record.
    pub fn fingerprint(&self) -> Option<&Fingerprint> {
        match &self.target {
            Ok(Target::Keyed { fingerprint, .. }) => Some(fingerprint),
            _ => None,
        }
    }

    /// Runs `body` at most once for this key, following the decision table:
    ///
    /// - key new (or expired): claim it, run the body; `Ok` is stored for
    ///   `ttl` and returned; `Err` releases the claim (a retry runs again);
    /// - key completed with the same arguments: the stored `Ok` is decoded and
    ///   returned, the body does not run;
    /// - key running with the same arguments: wait for its result (up to
    ///   `wait`), else [`Error::InProgress`](crate::Error::InProgress);
    /// - key used with other arguments: [`Error::PayloadMismatch`](crate::Error::PayloadMismatch);
    /// - key `None`: the body runs without a record (or
    ///   [`Error::MissingKey`](crate::Error::MissingKey) with
    ///   [`require_key`](Idempotency::require_key)).
    ///
    /// A panicking body, or a call dropped before its body returned, releases
    /// the claim, so a retry runs the body. A call dropped after its body
    /// returned never releases it: the result is still stored, in the
    /// background. Store failures before the body runs fail closed with
    /// [`Error::Backend`](crate::Error::Backend).
    //
    // Not an `async fn`: returning the engine's future itself spares a
    // wrapping state machine and one move of the whole call per await.
    pub fn run<F, Fut, R>(self, body: F) -> impl Future<Output = R>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = R>,
        R: IdempotentResult,
    {
        let Call { config, target } = self;
        engine::execute::<_, _, _, _, ReleaseErrors>(config.backend, config.options, target, body)
    }

    /// Runs `work` at most once for this key in the committing mode: for a
    /// store that writes the record in the same transaction as the body's
    /// own writes (the Postgres store's transactional mode), so both commit
    /// or neither does. `work` gets the record to write (`None` when the key
    /// was `None`: no record) and says how it [`Settled`](crate::backend::Settled).
    ///
    /// The engine claims, waits, replays and answers mismatches as for
    /// [`run`](Self::run); while `work` runs it renews the claim, and stops
    /// `work` (drops it, rolling its transaction back) when a renewal finds
    /// the claim lost; whenever nothing was committed it releases the key.
    pub fn run_committing<W, T, E>(self, work: W) -> impl Future<Output = Result<T, E>>
    where
        W: AsyncFnOnce(Option<crate::backend::Commit<'_>>) -> crate::backend::Settled<T, E>,
        T: crate::StorableOutput,
        E: crate::FromIdempotencyError,
    {
        let Call { config, target } = self;
        engine::execute_committing(config.backend, config.options, target, work)
    }

    /// Like [`run`](Self::run), but an `Err` is stored and replayed too.
    pub fn run_cache_err<F, Fut, R>(self, body: F) -> impl Future<Output = R>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = R>,
        R: IdempotentResult,
        R::Err: StorableError,
    {
        let Call { config, target } = self;
        engine::execute::<_, _, _, _, CacheErrors>(config.backend, config.options, target, body)
    }
}
