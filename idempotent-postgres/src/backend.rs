//! `PostgresBackend`: the `Backend` contract on a PostgreSQL table.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use futures_util::TryStreamExt;
use idempotent_core::{BackendError, BackendErrorKind};
use tokio::time::Instant;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{NoTls, SimpleQueryMessage, SimpleQueryRow};

use crate::builder::builder_methods;
use crate::claim::Returned;
use crate::driver::{server_bound, Driver, Param, Settings, DEFAULT_OPERATION_TIMEOUT};
use crate::error;
use crate::literal;
use crate::migrate;
use crate::names::{Table, DEFAULT_SCHEMA, DEFAULT_TABLE};
use crate::operations::backend_on_driver;
use crate::prepared::{self, NOT_PREPARED};
use crate::purge::purge_methods;
use crate::sql::Sql;
use crate::text_value;

/// The size of the pool [`PostgresBackend::connect`] builds.
pub const DEFAULT_POOL_SIZE: usize = 16;
/// How long [`PostgresBackend::connect`]'s pool waits to open a connection,
/// unless the URL says otherwise (`connect_timeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A [`Backend`](idempotent_core::Backend) on PostgreSQL: records in a table next to your data, shared
/// by every process and machine using the database.
///
/// Each operation is one SQL statement (one round trip once prepared),
/// atomic, and timed by the database's clock. Records expire (claims after
/// two leases, results after their `ttl`); an expired row counts as absent,
/// and [`purge_expired`](Self::purge_expired) or a
/// [reaper](Self::spawn_reaper) deletes it.
///
/// ```no_run
/// # async fn start() -> Result<(), Box<dyn std::error::Error>> {
/// use idempotent_postgres::PostgresBackend;
///
/// let store = PostgresBackend::connect("postgres://app@127.0.0.1/app").await?;
/// store.migrate().await?; // creates the table once; a no-op afterwards
/// idempotent_core::set_default_backend(store)?;
/// # Ok(()) }
/// ```
///
/// Cloning is cheap and shares the pool. See
/// [`transactional`](Self::transactional) for calls whose body writes to the
/// same database.
#[derive(Clone)]
pub struct PostgresBackend {
    pub(crate) pool: Pool,
    pub(crate) settings: Settings,
}

impl PostgresBackend {
    /// Connects to the database at `url` (`postgres://user:password@host:port/db`
    /// or `host=... user=...`), without TLS, with a pool of
    /// [`DEFAULT_POOL_SIZE`] connections; for TLS or other pool settings,
    /// build the pool yourself and use [`from_pool`](Self::from_pool).
    ///
    /// Fails at once when the database cannot be reached, so a misconfigured
    /// URL shows at start-up, not at the first payment.
    pub async fn connect(url: &str) -> Result<Self, BackendError> {
        let mut config: tokio_postgres::Config = url.parse().map_err(|error| {
            // The URL itself is left out: it may hold a password.
            BackendError::new(BackendErrorKind::Other, "invalid Postgres connection URL")
                .with_source(error)
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            // Shows the store's connections in `pg_stat_activity`.
            config.application_name("idempotent");
        }
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(DEFAULT_POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(DEFAULT_OPERATION_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|error| {
                BackendError::new(
                    BackendErrorKind::Other,
                    "could not build the connection pool",
                )
                .with_source(error)
            })?;
        // The first connection, opened now and kept in the pool.
        let _first = pool
            .get()
            .await
            .map_err(|error| error::pool(error, "could not connect to Postgres"))?;
        Ok(Self::from_pool(pool))
    }

    /// Uses an existing pool (with its TLS, sizes and timeouts), for example
    /// the one the application already has.
    ///
    /// The [transactional mode](Self::transactional) holds one connection
    /// for each running body's transaction while renewing the claim on
    /// another: size the pool above the number of such calls at once.
    pub fn from_pool(pool: Pool) -> Self {
        Self {
            pool,
            settings: Settings::new(Table::new(DEFAULT_SCHEMA, DEFAULT_TABLE)),
        }
    }

    /// Whether the store's statements are prepared once per connection and
    /// then run by name (default `true`, the fastest).
    ///
    /// Prepared, the operations use SQL `PREPARE` and `EXECUTE` (statements
    /// named `idempotent_*` in `pg_prepared_statements`); a connection that
    /// lost one (`DEALLOCATE ALL`) prepares it again. Turn it off behind a
    /// pooler in transaction mode (PgBouncer's `pool_mode = transaction`,
    /// before 1.21 or without `max_prepared_statements`): there each
    /// transaction may run on another server connection, so the `PREPARE`
    /// and the `EXECUTE` after it may land on different ones. Each operation
    /// then sends its statement's text with the parameters written in:
    /// still one round trip, but parsed and planned each time, and nothing
    /// is left on the server connection. The transactional mode's
    /// completion is then sent unnamed with its parameters' types.
    #[must_use]
    pub fn with_prepared_statements(mut self, prepared: bool) -> Self {
        self.settings.prepared_statements = prepared;
        self
    }

    /// The pool the store runs its statements on.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Creates the schema, the records table and its index unless they
    /// exist, and checks that an existing table has the records' columns.
    ///
    /// Safe to run at every start, from several processes at once (they are
    /// serialized by an advisory lock). A role allowed only to read and
    /// write an existing table can run it too: nothing is created then.
    pub async fn migrate(&self) -> Result<(), BackendError> {
        self.settings.check_table()?;
        let client = self
            .pool
            .get()
            .await
            .map_err(|error| error::pool(error, "could not connect to migrate"))?;
        migrate::migrate(&mut Session(&client), &self.settings.table).await
    }

    /// Runs one store statement within the operation timeout, bounded on
    /// the server too: a statement the caller gave up on must not apply
    /// later (a claim would block its key for a lease; a release would
    /// delete a claim its caller believes it still holds).
    ///
    /// One simple query, one round trip: `SET LOCAL statement_timeout` to a
    /// little under the time left, so in the normal case the server cancels
    /// the statement and says so (`57014`, which is `Unavailable`) before
    /// the client-side timeout fires; then the statement, as `EXECUTE` of
    /// the statement prepared on this connection (by SQL `PREPARE`, the
    /// first time the connection runs it) with its parameters written in
    /// as literals, or, without prepared statements, as its text. A simple query of several statements is one implicit
    /// transaction: the setting holds for this statement alone and never
    /// leaks into the pool's other uses, the statement commits when the
    /// query ends, and a failure (the server's cancellation too) rolls it
    /// back. The server executes two statements and answers once, where an
    /// explicit `BEGIN`, the statement and `COMMIT` cost it four statements
    /// and three answers (BENCHMARKS.md measures both). If the client-side
    /// timeout fires anyway (the answer is stuck on the network), the
    /// connection is closed rather than pooled.
    async fn run(
        &self,
        operation: &str,
        sql: &Sql,
        params: &[Param<'_>],
    ) -> Result<(Vec<SimpleQueryRow>, u64), BackendError> {
        let context = format!("Postgres {operation} failed");
        self.settings.check_table()?;
        // Refused before a connection is taken: a value no literal can hold.
        let (prepared, statement) =
            prepared::statement(sql, params, self.settings.prepared_statements)?;
        let limit = self.settings.operation_timeout;
        let deadline = Instant::now() + limit;
        let timed_out = || error::timeout(&context, limit);
        let client = tokio::time::timeout_at(deadline, self.pool.get())
            .await
            .map_err(|_| timed_out())?
            .map_err(|error| error::pool(error, &context))?;
        let ran = async {
            match (bounded(&client, deadline, &statement).await, &prepared) {
                (Err(error), Some(prepared)) if not_prepared(&error) => {
                    client.batch_execute(&prepared.prepare(params)).await?;
                    bounded(&client, deadline, &statement).await
                }
                (ran, _) => ran,
            }
        };
        match tokio::time::timeout_at(deadline, ran).await {
            Ok(Ok(ran)) => Ok(ran),
            Ok(Err(error)) => Err(error::database(error, &context)),
            Err(_) => {
                drop(deadpool_postgres::Object::take(client));
                Err(timed_out())
            }
        }
    }
}

fn not_prepared(error: &tokio_postgres::Error) -> bool {
    error.code().map(SqlState::code) == Some(NOT_PREPARED)
}

/// `statement` after a `statement_timeout` of the time left to `deadline`
/// (see [`server_bound`]), as one simple query.
async fn bounded(
    client: &tokio_postgres::Client,
    deadline: Instant,
    statement: &str,
) -> Result<(Vec<SimpleQueryRow>, u64), tokio_postgres::Error> {
    let left = server_bound(deadline.saturating_duration_since(Instant::now()));
    simple(client, &literal::bounded(left, statement)).await
}

/// Runs a simple query; returns its rows and the rows its statements
/// changed.
async fn simple(
    client: &tokio_postgres::Client,
    query: &str,
) -> Result<(Vec<SimpleQueryRow>, u64), tokio_postgres::Error> {
    let stream = client.simple_query_raw(query).await?;
    let mut stream = std::pin::pin!(stream);
    let (mut rows, mut changed) = (Vec::new(), 0);
    while let Some(message) = stream.try_next().await? {
        match message {
            SimpleQueryMessage::Row(row) => rows.push(row),
            SimpleQueryMessage::CommandComplete(count) => changed += count,
            _ => {}
        }
    }
    Ok((rows, changed))
}

/// A parameter as tokio-postgres binds it.
pub(crate) fn to_sql<'a>(param: &'a Param<'_>) -> &'a (dyn ToSql + Sync) {
    match param {
        Param::Text(text) => text,
        Param::Bytes(bytes) => bytes,
        Param::BigInt(int) => int,
    }
}

/// A parameter's type, which a statement sent unnamed must say itself.
pub(crate) fn sql_type(param: &Param<'_>) -> Type {
    match param {
        Param::Text(_) => Type::TEXT,
        Param::Bytes(_) => Type::BYTEA,
        Param::BigInt(_) => Type::INT8,
    }
}

/// Reads the claim statement's row (see `claim.rs`), its values as text.
fn returned(rows: &[SimpleQueryRow]) -> Result<Returned, Box<dyn std::error::Error + Send + Sync>> {
    let Some(row) = rows.first() else {
        return Ok(Returned::Nothing);
    };
    let text = |column: &str| row.try_get(column);
    let required = |column: &str| {
        text(column)?
            .ok_or_else(|| text_value::Unreadable(format!("column {column:?} is NULL")).into())
            as Result<&str, Box<dyn std::error::Error + Send + Sync>>
    };
    if text_value::boolean("acquired", required("acquired")?)? {
        return Ok(Returned::Claimed {
            token: text_value::bigint("token", required("token")?)?,
            took_over: text_value::boolean("took_over", required("took_over")?)?,
        });
    }
    Ok(Returned::Found {
        same_fingerprint: text_value::boolean("same_fingerprint", required("same_fingerprint")?)?,
        state: required("state")?.to_owned(),
        lease_remaining_us: text("lease_remaining_us")?
            .map(|value| text_value::bigint("lease_remaining_us", value))
            .transpose()?,
        output: text("output")?
            .map(|value| text_value::bytea("output", value))
            .transpose()?,
    })
}

#[async_trait]
impl Driver for PostgresBackend {
    fn settings(&self) -> &Settings {
        &self.settings
    }

    fn output_limit_setting(&self) -> &'static str {
        "PostgresBackend::with_max_output_bytes"
    }

    async fn claim(&self, params: &[Param<'_>]) -> Result<Returned, BackendError> {
        let (rows, _) = self
            .run("claim", &self.settings.statements.claim, params)
            .await?;
        returned(&rows).map_err(|error| {
            BackendError::new(
                BackendErrorKind::Other,
                "Postgres claim returned an unexpected row",
            )
            .with_source(error)
        })
    }

    async fn execute(
        &self,
        operation: &'static str,
        sql: &Sql,
        params: &[Param<'_>],
    ) -> Result<u64, BackendError> {
        Ok(self.run(operation, sql, params).await?.1)
    }
}

backend_on_driver!(PostgresBackend);
builder_methods!(PostgresBackend);
purge_methods!(PostgresBackend);

/// A pooled connection running a migration's statements.
struct Session<'a>(&'a tokio_postgres::Client);

#[async_trait]
impl migrate::Session for Session<'_> {
    async fn simple_query(
        &mut self,
        sql: &str,
        context: &str,
    ) -> Result<Vec<Vec<Option<String>>>, BackendError> {
        let messages = self
            .0
            .simple_query(sql)
            .await
            .map_err(|error| error::database(error, context))?;
        Ok(messages
            .iter()
            .filter_map(|message| match message {
                tokio_postgres::SimpleQueryMessage::Row(row) => Some(
                    (0..row.len())
                        .map(|column| row.get(column).map(str::to_owned))
                        .collect(),
                ),
                _ => None,
            })
            .collect())
    }
}

impl fmt::Debug for PostgresBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresBackend")
            .field("table", &self.settings.table.to_string())
            .field("max_output_bytes", &self.settings.max_output_bytes)
            .field("operation_timeout", &self.settings.operation_timeout)
            .field("prepared_statements", &self.settings.prepared_statements)
            .field("pool", &self.pool.status())
            .finish_non_exhaustive()
    }
}
