//! The transactional mode: the body's writes and the record's completion
//! commit in one transaction.

use std::borrow::Cow;
use std::time::Duration;

#[cfg(doc)]
use idempotent_core::Error;
use idempotent_core::{Idempotency, DEFAULT_LEASE, DEFAULT_SCOPE, DEFAULT_TTL};

mod commit;
#[cfg(feature = "sqlx")]
mod on_sqlx;
#[cfg(feature = "tokio-postgres")]
mod on_tokio_postgres;

#[cfg(feature = "tokio-postgres")]
use crate::PostgresBackend;

/// What the store's errors in a transactional call say.
pub(crate) const CONTEXT: &str = "Postgres transactional call failed";

// Declares `Transactional`, whose store type defaults to `PostgresBackend`
// when that store is built.
macro_rules! transactional_struct {
    ($($default:tt)*) => {
        /// The configuration of transactional calls on one store
        /// ([`PostgresBackend`](crate::PostgresBackend) or `SqlxBackend`), from its
        /// `transactional()`. The options mean what they mean for
        /// [`Idempotency`]; records are shared with it (same scope, key and
        /// arguments: same record).
        #[derive(Clone, Debug)]
        #[must_use = "a transactional call does nothing until `run` is awaited"]
        pub struct Transactional<'a, B $($default)*> {
            backend: &'a B,
            scope: Cow<'static, str>,
            ttl: Duration,
            lease: Duration,
            wait: Option<Duration>,
            require_key: bool,
        }
    };
}
#[cfg(feature = "tokio-postgres")]
transactional_struct!(= PostgresBackend);
#[cfg(not(feature = "tokio-postgres"))]
transactional_struct!();

impl<'a, B: idempotent_core::Backend> Transactional<'a, B> {
    pub(crate) fn new(backend: &'a B) -> Self {
        Self {
            backend,
            scope: Cow::Borrowed(DEFAULT_SCOPE),
            ttl: DEFAULT_TTL,
            lease: DEFAULT_LEASE,
            wait: None,
            require_key: false,
        }
    }

    /// The runtime the engine runs these calls with: the same options, so
    /// the same records as [`Idempotency`] on this store.
    fn runtime(&self) -> Idempotency<&'a B> {
        let mut runtime = Idempotency::new(self.backend)
            .scope(self.scope.clone())
            .ttl(self.ttl)
            .lease(self.lease);
        if let Some(wait) = self.wait {
            runtime = runtime.wait(wait);
        }
        if self.require_key {
            runtime = runtime.require_key();
        }
        runtime
    }

    /// The namespace of the stored keys (default `"idempotent"`); keep it
    /// stable across deploys.
    pub fn scope(mut self, scope: impl Into<Cow<'static, str>>) -> Self {
        self.scope = scope.into();
        self
    }

    /// How long the result is kept and replayed (default 24 h). Like `lease`
    /// and `wait`, it must lie within `idempotent_core::limits`, or the call
    /// fails with [`Error::InvalidConfig`] before anything is claimed.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// How long the claim lives without renewal (default 30 s); it is
    /// renewed every `lease / 3` while the body runs.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// How long a duplicate waits for a running call's result before
    /// [`Error::InProgress`] (default: no wait).
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = Some(wait);
        self
    }

    /// A key whose value is `None` is [`Error::MissingKey`] (the body does
    /// not run) instead of a call without a record, whose body's writes
    /// commit on their own.
    pub fn require_key(mut self) -> Self {
        self.require_key = true;
        self
    }
}
