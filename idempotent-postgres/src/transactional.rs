//! The transactional mode: the body's writes and the record's completion
//! commit in one transaction.

use std::borrow::Cow;
use std::time::Duration;

use idempotent_core::{Error, Idempotency, DEFAULT_LEASE, DEFAULT_SCOPE, DEFAULT_TTL};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio_postgres::Transaction;

use crate::PostgresBackend;

mod commit;

/// What the store's errors in a transactional call say.
pub(crate) const CONTEXT: &str = "Postgres transactional call failed";

impl PostgresBackend {
    /// Idempotent calls whose body writes to this database: the body gets a
    /// transaction, and its writes commit together with the stored result,
    /// or not at all.
    ///
    /// ```no_run
    /// use idempotent_postgres::{tokio_postgres, PostgresBackend};
    ///
    /// #[derive(Debug, thiserror::Error)]
    /// enum OrderError {
    ///     #[error(transparent)]
    ///     Idempotency(#[from] idempotent_core::Error),
    ///     #[error(transparent)]
    ///     Database(#[from] tokio_postgres::Error),
    /// }
    ///
    /// async fn place(store: &PostgresBackend, key: &str, sku: &str) -> Result<i64, OrderError> {
    ///     store
    ///         .transactional()
    ///         .scope("orders::place")
    ///         .run(key, sku, async |tx| {
    ///             let row = tx
    ///                 .query_one("INSERT INTO orders (sku) VALUES ($1) RETURNING id", &[&sku])
    ///                 .await?;
    ///             Ok(row.get::<_, i64>(0))
    ///         })
    ///         .await
    /// }
    /// ```
    ///
    /// See [`Transactional::run`] for what happens at each step.
    pub fn transactional(&self) -> Transactional<'_> {
        Transactional {
            backend: self,
            scope: Cow::Borrowed(DEFAULT_SCOPE),
            ttl: DEFAULT_TTL,
            lease: DEFAULT_LEASE,
            wait: None,
            require_key: false,
        }
    }
}

/// The configuration of transactional calls on one [`PostgresBackend`],
/// from [`PostgresBackend::transactional`]. The options mean what they mean
/// for [`Idempotency`]; records are shared with it (same scope, key and
/// arguments: same record).
#[derive(Clone, Debug)]
#[must_use = "a transactional call does nothing until `run` is awaited"]
pub struct Transactional<'a> {
    backend: &'a PostgresBackend,
    scope: Cow<'static, str>,
    ttl: Duration,
    lease: Duration,
    wait: Option<Duration>,
    require_key: bool,
}

impl Transactional<'_> {
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

    /// Runs `body` at most once for `key` (with arguments `input`), in a
    /// transaction that also stores its result.
    ///
    /// 1. The key is claimed in its own statement, committed at once, so
    ///    concurrent duplicates see it: they get [`Error::InProgress`] (or
    ///    wait, with [`wait`](Self::wait)), a replay, or
    ///    [`Error::PayloadMismatch`], as in [`Idempotency::run`] — it is the
    ///    same engine, with the same stats and tracing.
    /// 2. The body runs in a new `READ COMMITTED` transaction on a pooled
    ///    connection, while the claim is renewed on another.
    /// 3. On `Ok`, the same transaction turns the claim into the completed
    ///    record (fenced on the claim's token) and commits: the body's
    ///    writes and the record are stored together or not at all.
    ///
    /// So a crash (of this process, its connection, or the database) at any
    /// point before the commit leaves neither: the claim lapses after its
    /// lease and a retry runs the body again, its earlier writes never
    /// having happened. After the commit both are there and retries replay.
    ///
    /// Failures, and what they leave behind:
    ///
    /// - the body returns `Err`: the transaction rolls back, the claim is
    ///   released (a retry runs again), the `Err` is returned;
    /// - the body panics or the call is dropped: the same, in the background;
    /// - the claim was taken over (this call stalled past its lease): the
    ///   transaction rolls back as soon as a renewal or the completion finds
    ///   out, and the call gets [`Error::InProgress`]: the record will be the
    ///   other call's, and this call's writes never happened;
    /// - the result cannot be serialized, or exceeds the store's limit:
    ///   rolled back and released, [`Error::Codec`] or [`Error::Backend`];
    /// - the commit fails or does not answer: [`Error::CommitUnknown`];
    ///   whether it committed is unknown, but effect and record are one: a
    ///   retry either replays or runs the body again, never half of it.
    ///
    /// A key whose value is `None` runs the body in a transaction of its own
    /// without a record (or fails with [`Error::MissingKey`], see
    /// [`require_key`](Self::require_key)).
    ///
    /// The transaction's isolation is `READ COMMITTED`: the record's row is
    /// renewed concurrently, outside it, which a `REPEATABLE READ` or
    /// `SERIALIZABLE` transaction would refuse to update afterwards.
    pub async fn run<K, I, T, E, F>(self, key: &K, input: &I, body: F) -> Result<T, E>
    where
        K: Serialize + ?Sized,
        I: Serialize + ?Sized,
        T: Serialize + DeserializeOwned,
        E: From<Error>,
        F: AsyncFnOnce(&Transaction<'_>) -> Result<T, E>,
    {
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
        let backend = self.backend;
        runtime
            .prepare(key, input)
            .run_committing(async |record| commit::transact(backend, record, body).await)
            .await
    }
}
