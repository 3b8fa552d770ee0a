//! `SqlxBackend`: the `Backend` contract on a PostgreSQL table, on the
//! application's `sqlx::PgPool`.

use std::fmt;

use async_trait::async_trait;
use futures_util::TryStreamExt;
use idempotent_core::BackendError;
use sqlx::pool::PoolConnection;
use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, Either, PgPool, Postgres, Row};
use tokio::time::Instant;

use crate::builder::builder_methods;
use crate::claim::Returned;
use crate::driver::{server_bound, Driver, Param, Settings};
use crate::error;
use crate::literal;
use crate::migrate;
use crate::names::{Table, DEFAULT_SCHEMA, DEFAULT_TABLE};
use crate::operations::backend_on_driver;
use crate::prepared::{self, NOT_PREPARED};
use crate::purge::purge_methods;
use crate::sql::Sql;
use crate::text_value;

/// A [`Backend`](idempotent_core::Backend) on PostgreSQL through sqlx: the
/// same table, statements, migration and purge as
/// [`PostgresBackend`](crate::PostgresBackend) (the two can share a
/// table), on the [`PgPool`] the application already has.
///
/// ```no_run
/// # async fn start() -> Result<(), Box<dyn std::error::Error>> {
/// use idempotent_postgres::SqlxBackend;
///
/// let pool = sqlx::PgPool::connect("postgres://app@127.0.0.1/app").await?;
/// let store = SqlxBackend::new(pool);
/// store.migrate().await?; // creates the table once; a no-op afterwards
/// idempotent_core::set_default_backend(store)?;
/// # Ok(()) }
/// ```
///
/// Each operation is one simple query, one round trip: a `SET LOCAL
/// statement_timeout` that bounds it on the server (see
/// [`with_operation_timeout`](Self::with_operation_timeout)), then the
/// statement, run by `EXECUTE` with its parameters written in as literals
/// (prepared with SQL `PREPARE` the first time a connection runs it), as
/// on [`PostgresBackend`](crate::PostgresBackend). The crate's README
/// compares the two stores' speed.
///
/// Cloning is cheap and shares the pool. See
/// [`transactional`](Self::transactional) for calls whose body writes to the
/// same database.
#[derive(Clone)]
pub struct SqlxBackend {
    pub(crate) pool: PgPool,
    pub(crate) settings: Settings,
}

impl SqlxBackend {
    /// Uses `pool` (with its TLS, sizes and timeouts), usually the one the
    /// application already has.
    ///
    /// The [transactional mode](Self::transactional) holds one connection
    /// for each running body's transaction while renewing the claim on
    /// another: size the pool above the number of such calls at once.
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            settings: Settings::new(Table::new(DEFAULT_SCHEMA, DEFAULT_TABLE)),
        }
    }

    /// Whether the store's statements are prepared once per connection and
    /// then run by name (default `true`, the fastest); turn it off behind a
    /// pooler in transaction mode, as for
    /// [`PostgresBackend::with_prepared_statements`](crate::PostgresBackend::with_prepared_statements).
    ///
    /// Prepared, the operations use SQL `PREPARE` and `EXECUTE` (statements
    /// named `idempotent_*` in `pg_prepared_statements`), and the
    /// transactional mode's completion is a sqlx persistent statement.
    /// Unprepared, each operation sends its statement's text with the
    /// parameters written in, and the completion is unnamed: nothing is left
    /// on the server connection, and the server plans each statement anew.
    #[must_use]
    pub fn with_prepared_statements(mut self, prepared: bool) -> Self {
        self.settings.prepared_statements = prepared;
        self
    }

    /// The pool the store runs its statements on.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Creates the schema, the records table and its index unless they
    /// exist, and checks that an existing table has the records' columns;
    /// safe to run at every start, from several processes at once, as
    /// [`PostgresBackend::migrate`](crate::PostgresBackend::migrate).
    pub async fn migrate(&self) -> Result<(), BackendError> {
        self.settings.check_table()?;
        let mut connection = self
            .pool
            .acquire()
            .await
            .map_err(|error| error::sqlx(error, "could not connect to migrate"))?;
        migrate::migrate(&mut Session(&mut connection), &self.settings.table).await
    }

    /// Runs one store statement within the operation timeout, bounded on
    /// the server too, in the same wire shape as `PostgresBackend::run` and
    /// for the same reasons.
    ///
    /// One simple query: `SET LOCAL statement_timeout`, then the statement,
    /// as `EXECUTE` of the statement prepared on this connection (with SQL
    /// `PREPARE`, so the server plans it once) or, without prepared
    /// statements, as its text. A simple query of several statements is one
    /// implicit transaction, so the setting holds for this statement alone,
    /// the statement commits when the query ends, and a failure (the
    /// server's cancellation too) rolls it back. If the client-side timeout
    /// fires anyway, the connection is closed rather than pooled.
    async fn run(
        &self,
        operation: &str,
        sql: &Sql,
        params: &[Param<'_>],
    ) -> Result<(Vec<PgRow>, u64), BackendError> {
        let context = format!("Postgres {operation} failed");
        self.settings.check_table()?;
        // Refused before a connection is taken: a value no literal can hold.
        let (prepared, statement) =
            prepared::statement(sql, params, self.settings.prepared_statements)?;
        let limit = self.settings.operation_timeout;
        let deadline = Instant::now() + limit;
        let timed_out = || error::timeout(&context, limit);
        let mut connection = tokio::time::timeout_at(deadline, self.pool.acquire())
            .await
            .map_err(|_| timed_out())?
            .map_err(|error| error::sqlx(error, &context))?;
        let ran = async {
            match (
                bounded(&mut connection, deadline, &statement).await,
                &prepared,
            ) {
                // Not prepared on this connection yet (a new one, or one
                // whose session was reset): nothing ran, the implicit
                // transaction rolled back. Prepare it, run it again.
                (Err(error), Some(prepared)) if code(&error).as_deref() == Some(NOT_PREPARED) => {
                    run_simple(&mut connection, prepared.prepare(params)).await?;
                    bounded(&mut connection, deadline, &statement).await
                }
                (ran, _) => ran,
            }
        };
        match tokio::time::timeout_at(deadline, ran).await {
            Ok(Ok(ran)) => Ok(ran),
            Ok(Err(error)) => Err(error::sqlx(error, &context)),
            Err(_) => {
                connection.close_on_drop();
                Err(timed_out())
            }
        }
    }
}

fn code(error: &sqlx::Error) -> Option<String> {
    error
        .as_database_error()
        .and_then(|db| db.code())
        .map(|code| code.into_owned())
}

/// `statement` after a `statement_timeout` of the time left to `deadline`
/// (see [`server_bound`]), as one simple query.
async fn bounded(
    connection: &mut PoolConnection<Postgres>,
    deadline: Instant,
    statement: &str,
) -> Result<(Vec<PgRow>, u64), sqlx::Error> {
    let left = server_bound(deadline.saturating_duration_since(Instant::now()));
    run_simple(connection, literal::bounded(left, statement)).await
}

/// Runs a simple query; returns its rows and the rows its statements changed.
async fn run_simple(
    connection: &mut PoolConnection<Postgres>,
    query: String,
) -> Result<(Vec<PgRow>, u64), sqlx::Error> {
    let mut results = sqlx::raw_sql(AssertSqlSafe(query)).fetch_many(&mut **connection);
    let (mut rows, mut changed) = (Vec::new(), 0);
    while let Some(result) = results.try_next().await? {
        match result {
            Either::Left(done) => changed += done.rows_affected(),
            Either::Right(row) => rows.push(row),
        }
    }
    Ok((rows, changed))
}

/// Reads the claim statement's row (see `claim.rs`).
fn returned(rows: &[PgRow]) -> Result<Returned, sqlx::Error> {
    let Some(row) = rows.first() else {
        return Ok(Returned::Nothing);
    };
    if row.try_get::<bool, _>("acquired")? {
        return Ok(Returned::Claimed {
            token: row.try_get("token")?,
            took_over: row.try_get("took_over")?,
        });
    }
    Ok(Returned::Found {
        same_fingerprint: row.try_get("same_fingerprint")?,
        state: row.try_get("state")?,
        lease_remaining_us: row.try_get("lease_remaining_us")?,
        // As text, read by the crate: sqlx reads a text `bytea` in hex only,
        // and a database may be set to `bytea_output = escape`.
        output: row
            .try_get_unchecked::<Option<&str>, _>("output")?
            .map(|text| text_value::bytea("output", text))
            .transpose()
            .map_err(|error| sqlx::Error::ColumnDecode {
                index: "\"output\"".to_owned(),
                source: Box::new(error),
            })?,
    })
}

#[async_trait]
impl Driver for SqlxBackend {
    fn settings(&self) -> &Settings {
        &self.settings
    }

    fn output_limit_setting(&self) -> &'static str {
        "SqlxBackend::with_max_output_bytes"
    }

    async fn claim(&self, params: &[Param<'_>]) -> Result<Returned, BackendError> {
        let (rows, _) = self
            .run("claim", &self.settings.statements.claim, params)
            .await?;
        returned(&rows)
            .map_err(|error| error::sqlx(error, "Postgres claim returned an unexpected row"))
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

backend_on_driver!(SqlxBackend);
builder_methods!(SqlxBackend);
purge_methods!(SqlxBackend);

/// A pooled connection running a migration's statements.
struct Session<'a>(&'a mut PoolConnection<Postgres>);

#[async_trait]
impl migrate::Session for Session<'_> {
    async fn simple_query(
        &mut self,
        sql: &str,
        context: &str,
    ) -> Result<Vec<Vec<Option<String>>>, BackendError> {
        let rows = sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
            .fetch_all(&mut **self.0)
            .await
            .map_err(|error| error::sqlx(error, context))?;
        // A simple query's values come as text whatever their type (the
        // advisory lock's is `void`): read them unchecked, as text.
        rows.iter()
            .map(|row| {
                (0..row.len())
                    .map(|column| row.try_get_unchecked::<Option<String>, _>(column))
                    .collect::<Result<Vec<_>, _>>()
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| error::sqlx(error, context))
    }
}

impl fmt::Debug for SqlxBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlxBackend")
            .field("table", &self.settings.table.to_string())
            .field("max_output_bytes", &self.settings.max_output_bytes)
            .field("operation_timeout", &self.settings.operation_timeout)
            .field("prepared_statements", &self.settings.prepared_statements)
            .field("pool_size", &self.pool.size())
            .finish_non_exhaustive()
    }
}
