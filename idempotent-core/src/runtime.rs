//! The runtime API: configure an idempotent call, then run a body through it.

use std::borrow::Cow;
use std::future::Future;
use std::time::Duration;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::bounds::{IdempotentResult, StorableError};
use crate::engine::{CacheErrors, ReleaseErrors};
use crate::fingerprint::new_hasher;
use crate::private::HashInto;
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
    pub(crate) backend: B,
    pub(crate) scope: Cow<'static, str>,
    pub(crate) ttl: Duration,
    pub(crate) lease: Duration,
    pub(crate) wait: Option<Duration>,
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
            scope: Cow::Borrowed(DEFAULT_SCOPE),
            ttl: DEFAULT_TTL,
            lease: DEFAULT_LEASE,
            wait: None,
        }
    }

    /// The namespace of the stored keys. Keep it stable across deploys:
    /// records are found by scope and key.
    #[must_use]
    pub fn scope(mut self, scope: impl Into<Cow<'static, str>>) -> Self {
        self.scope = scope.into();
        self
    }

    /// How long a completed result is kept and replayed.
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// How long a claim lives without renewal. The claim is renewed every
    /// `lease / 3` while the body runs, so the lease bounds how long a crashed
    /// holder blocks its key, not how long a body may take.
    #[must_use]
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// How long a duplicate waits for a running call's result before
    /// [`Error::InProgress`](crate::Error::InProgress). Without it, a duplicate fails at once.
    #[must_use]
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = Some(wait).filter(|wait| !wait.is_zero());
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
        let target = digest(|hasher| key.hash_into(hasher)).and_then(|key_digest| {
            Ok(Target {
                key: record_key(&self.scope, &key_digest),
                fingerprint: Fingerprint::of(input)?,
            })
        });
        Call {
            config: self,
            target,
        }
    }

    /// Like [`prepare`](Self::prepare), with the fingerprint of `input` as
    /// the key: the same arguments are the same call.
    pub fn prepare_unkeyed<I: Serialize + ?Sized>(self, input: &I) -> Call<B> {
        let target = Fingerprint::of(input).map(|fingerprint| Target {
            key: record_key(&self.scope, &fingerprint),
            fingerprint,
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
        let fingerprint = digest(|hasher| {
            hasher.update((args.len() as u64).to_le_bytes());
            args.iter().try_for_each(|arg| arg.hash_into(hasher))
        });
        let target = fingerprint.and_then(|fingerprint| {
            let key_digest = match key {
                Some(key) => digest(|hasher| key.hash_into(hasher))?,
                None => fingerprint,
            };
            Ok(Target {
                key: record_key(&self.scope, &key_digest),
                fingerprint,
            })
        });
        Call {
            config: self,
            target,
        }
    }
}

fn digest(
    feed: impl FnOnce(&mut Sha256) -> Result<(), CodecError>,
) -> Result<Fingerprint, CodecError> {
    let mut hasher = new_hasher();
    feed(&mut hasher)?;
    Ok(Fingerprint::from_bytes(hasher.finalize().into()))
}

/// `{scope}:{hex digest}`: bounded by the scope, whatever the key's size.
fn record_key(scope: &str, digest: &Fingerprint) -> String {
    let mut key = String::with_capacity(scope.len() + 65);
    key.push_str(scope);
    key.push(':');
    digest.write_hex(&mut key);
    key
}

#[derive(Debug)]
pub(crate) struct Target {
    pub(crate) key: String,
    pub(crate) fingerprint: Fingerprint,
}

/// One prepared idempotent call: its stored key and fingerprint are computed.
#[derive(Debug)]
#[must_use = "a prepared call does nothing until `run` is awaited"]
pub struct Call<B> {
    pub(crate) config: Idempotency<B>,
    pub(crate) target: Result<Target, CodecError>,
}

impl<B: Backend> Call<B> {
    /// The key under which the record is stored (`{scope}:{hex digest}`), or
    /// `None` when the key or arguments could not be serialized.
    ///
    /// It is stable across processes and retries, so it also serves as the
    /// idempotency key to pass on to a downstream provider.
    pub fn stored_key(&self) -> Option<&str> {
        self.target.as_ref().ok().map(|target| target.key.as_str())
    }

    /// Runs `body` at most once for this key, following the decision table:
    ///
    /// - key new (or expired): claim it, run the body; `Ok` is stored for
    ///   `ttl` and returned; `Err` releases the claim (a retry runs again);
    /// - key completed with the same arguments: the stored `Ok` is decoded and
    ///   returned, the body does not run;
    /// - key running with the same arguments: wait for its result (up to
    ///   `wait`), else [`Error::InProgress`](crate::Error::InProgress);
    /// - key used with other arguments: [`Error::PayloadMismatch`](crate::Error::PayloadMismatch).
    ///
    /// A panicking body or a dropped call releases the claim. Store failures
    /// before the body runs fail closed with [`Error::Backend`](crate::Error::Backend).
    //
    // Not an `async fn`: returning the engine's future itself spares a
    // wrapping state machine and one move of the whole call per await.
    pub fn run<F, Fut, R>(self, body: F) -> impl Future<Output = R>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = R>,
        R: IdempotentResult,
    {
        self.execute::<_, _, _, ReleaseErrors>(body)
    }

    /// Like [`run`](Self::run), but an `Err` is stored and replayed too.
    pub fn run_cache_err<F, Fut, R>(self, body: F) -> impl Future<Output = R>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = R>,
        R: IdempotentResult,
        R::Err: StorableError,
    {
        self.execute::<_, _, _, CacheErrors>(body)
    }
}
