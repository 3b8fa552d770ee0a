//! `PostgresBackend`: the `Backend` contract on a PostgreSQL table.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use futures_util::TryStreamExt;
use idempotent_core::{BackendError, BackendErrorKind};
use tokio::time::Instant;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row, Statement};

use crate::error;
use crate::migrate::{self, MigrateError};
use crate::names::{Table, DEFAULT_SCHEMA, DEFAULT_TABLE};
use crate::sql::{Sql, Statements};

/// The default limit on a stored output: 1 MiB, as on the other stores.
/// PostgreSQL stores far larger values (out of line, compressed), so raise
/// it freely with [`PostgresBackend::with_max_output_bytes`].
pub const DEFAULT_MAX_OUTPUT_BYTES: usize = 1024 * 1024;
/// The default limit on one store operation, from asking the pool for a
/// connection to the statement's answer: 5 seconds. Past it the operation
/// fails closed with an `Unavailable` error.
pub const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_secs(5);
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
    pub(crate) table: Arc<Table>,
    pub(crate) statements: Arc<Statements>,
    max_output_bytes: usize,
    operation_timeout: Duration,
    pub(crate) prepared_statements: bool,
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
        let table = Table::new(DEFAULT_SCHEMA, DEFAULT_TABLE);
        Self {
            pool,
            statements: Arc::new(Statements::for_table(&table)),
            table: Arc::new(table),
            max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES,
            operation_timeout: DEFAULT_OPERATION_TIMEOUT,
            prepared_statements: true,
        }
    }

    /// Keeps the records in `schema` (default `public`). Names are quoted:
    /// any name works, as written (`"Billing"` is not `billing`), up to
    /// PostgreSQL's 63 bytes. A longer one, which PostgreSQL would silently
    /// cut, is refused: [`migrate`](Self::migrate) and every operation fail
    /// with an error saying so.
    #[must_use]
    pub fn with_schema(self, schema: impl Into<String>) -> Self {
        let table = Table::new(schema, self.table.name.clone());
        self.with_table_name(table)
    }

    /// Keeps the records in the table `table` (default `idempotent_records`);
    /// names longer than 63 bytes are refused, as for
    /// [`with_schema`](Self::with_schema). The expiry index's name is derived
    /// from it and always fits.
    #[must_use]
    pub fn with_table(self, table: impl Into<String>) -> Self {
        let table = Table::new(self.table.schema.clone(), table);
        self.with_table_name(table)
    }

    fn with_table_name(mut self, table: Table) -> Self {
        self.statements = Arc::new(Statements::for_table(&table));
        self.table = Arc::new(table);
        self
    }

    /// Sets the largest output [`complete`](idempotent_core::Backend::complete) stores, in
    /// bytes (default 1 MiB); larger ones fail with
    /// [`BackendErrorKind::TooLarge`].
    #[must_use]
    pub fn with_max_output_bytes(mut self, bytes: usize) -> Self {
        self.max_output_bytes = bytes;
        self
    }

    /// Sets how long one store operation may take, waiting for a pooled
    /// connection included (default 5 s). Past it the operation fails with
    /// an `Unavailable` error and has not applied: the server is told to
    /// stop the statement by then too (a `statement_timeout` set for that
    /// statement alone), so a claim waiting on a lock cannot land later.
    #[must_use]
    pub fn with_operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout;
        self
    }

    /// Whether the store's statements are prepared once per connection and
    /// then run by name (default `true`, the fastest).
    ///
    /// Turn it off behind a pooler in transaction mode (PgBouncer's
    /// `pool_mode = transaction`, before 1.21 or without
    /// `max_prepared_statements`): there each transaction may run on another
    /// server connection, which does not have the statements a client
    /// prepared on the previous one. Statements are then sent unnamed with
    /// their parameters' types: still one round trip, but parsed and planned
    /// each time, and nothing is left on the server connection.
    #[must_use]
    pub fn with_prepared_statements(mut self, prepared: bool) -> Self {
        self.prepared_statements = prepared;
        self
    }

    /// The pool the store runs its statements on.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The records table, quoted and schema-qualified: `"public"."idempotent_records"`.
    pub fn table_name(&self) -> String {
        self.table.to_string()
    }

    /// The DDL [`migrate`](Self::migrate) runs, for migration tools that
    /// keep their own history: the schema, the table, its index. Every
    /// statement is `IF NOT EXISTS`.
    pub fn migration_sql(&self) -> String {
        migrate::ddl(&self.table)
    }

    /// Creates the schema, the records table and its index unless they
    /// exist, and checks that an existing table has the records' columns.
    ///
    /// Safe to run at every start, from several processes at once (they are
    /// serialized by an advisory lock). A role allowed only to read and
    /// write an existing table can run it too: nothing is created then.
    pub async fn migrate(&self) -> Result<(), BackendError> {
        self.table
            .check()
            .map_err(|reason| BackendError::new(BackendErrorKind::Other, reason))?;
        let mut client = self
            .pool
            .get()
            .await
            .map_err(|error| error::pool(error, "could not connect to migrate"))?;
        migrate::migrate(&mut client, &self.table)
            .await
            .map_err(|error| match error {
                MigrateError::Database(error) => {
                    error::database(error, &format!("could not migrate {}", self.table))
                }
                MigrateError::Foreign(reason) => BackendError::new(
                    BackendErrorKind::Other,
                    format!(
                        "{} exists but is not a records table of this version ({reason}); \
                         choose another name with with_schema/with_table",
                        self.table
                    ),
                ),
            })
    }

    pub(crate) fn operation_timeout(&self) -> Duration {
        self.operation_timeout
    }

    pub(crate) fn check_output_size(&self, output: &[u8]) -> Result<(), BackendError> {
        if output.len() > self.max_output_bytes {
            return Err(BackendError::output_too_large(
                output.len(),
                self.max_output_bytes,
                "PostgresBackend::with_max_output_bytes",
            ));
        }
        Ok(())
    }

    /// Runs `sql` and returns its rows.
    pub(crate) async fn query(
        &self,
        operation: &str,
        sql: &Sql,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, BackendError> {
        Ok(self.run(operation, sql, params).await?.0)
    }

    /// Runs `sql` and returns how many rows it changed.
    pub(crate) async fn execute(
        &self,
        operation: &str,
        sql: &Sql,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, BackendError> {
        Ok(self.run(operation, sql, params).await?.1)
    }

    /// Runs one store statement within the operation timeout, bounded on
    /// the server too: a statement the caller gave up on must not apply
    /// later (a claim would block its key for a lease; a release would
    /// delete a claim its caller believes it still holds).
    ///
    /// The statement runs in a transaction of its own whose
    /// `statement_timeout` is a little under the time left, so in the
    /// normal case the server cancels it and says so (`57014`, which is
    /// `Unavailable`) before the client-side timeout fires. `BEGIN`, the
    /// statement and `COMMIT` are pipelined: still one round trip. The
    /// setting is `SET LOCAL`, so it never leaks into the pool's other uses.
    /// If the client-side timeout fires anyway (the answer is stuck on the
    /// network), the connection is closed rather than pooled.
    async fn run(
        &self,
        operation: &str,
        sql: &Sql,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<(Vec<Row>, u64), BackendError> {
        let context = format!("Postgres {operation} failed");
        self.table
            .check()
            .map_err(|reason| BackendError::new(BackendErrorKind::Other, reason))?;
        let deadline = Instant::now() + self.operation_timeout;
        let timed_out = || error::timeout(&context, self.operation_timeout);
        let client = tokio::time::timeout_at(deadline, self.pool.get())
            .await
            .map_err(|_| timed_out())?
            .map_err(|error| error::pool(error, &context))?;
        let statement = if self.prepared_statements {
            let prepare = client.prepare_cached(&sql.text);
            let prepared = tokio::time::timeout_at(deadline, prepare).await;
            match prepared {
                Ok(Ok(statement)) => Some(statement),
                Ok(Err(error)) => return Err(error::database(error, &context)),
                Err(_) => {
                    drop(deadpool_postgres::Object::take(client));
                    return Err(timed_out());
                }
            }
        } else {
            None
        };
        let begin = format!(
            "BEGIN; SET LOCAL statement_timeout = {}",
            server_bound(deadline.saturating_duration_since(Instant::now())).as_millis()
        );
        let pipeline = async {
            // Each request is sent when its future is first polled, and
            // `join!` first polls them in order: BEGIN, the statement, COMMIT.
            let (begun, ran, committed) = tokio::join!(
                client.batch_execute(&begin),
                rows(&client, statement.as_ref(), sql, params),
                client.batch_execute("COMMIT"),
            );
            begun?;
            let ran = ran?;
            committed?;
            Ok::<_, tokio_postgres::Error>(ran)
        };
        match tokio::time::timeout_at(deadline, pipeline).await {
            Ok(Ok(ran)) => Ok(ran),
            Ok(Err(error)) => Err(error::database(error, &context)),
            Err(_) => {
                drop(deadpool_postgres::Object::take(client));
                Err(timed_out())
            }
        }
    }
}

/// The server's bound on a statement that has `left` until the client
/// gives up: 90% of it, so the server's answer normally arrives first, and
/// at least 1 ms (0 would mean no bound at all).
fn server_bound(left: Duration) -> Duration {
    (left * 9 / 10).max(Duration::from_millis(1))
}

/// Runs `sql`: as `statement` when prepared, else unnamed with its
/// parameters' types (one message sequence, no state on the connection).
/// Returns the rows and the number of rows changed.
async fn rows(
    client: &tokio_postgres::Client,
    statement: Option<&Statement>,
    sql: &Sql,
    params: &[&(dyn ToSql + Sync)],
) -> Result<(Vec<Row>, u64), tokio_postgres::Error> {
    let stream = match statement {
        Some(statement) => client.query_raw(statement, params.iter().copied()).await?,
        None => {
            let typed = params.iter().copied().zip(sql.types.iter().cloned());
            client.query_typed_raw(&sql.text, typed).await?
        }
    };
    let mut stream = std::pin::pin!(stream);
    let mut rows = Vec::new();
    while let Some(row) = stream.try_next().await? {
        rows.push(row);
    }
    let changed = stream.rows_affected().unwrap_or(0);
    Ok((rows, changed))
}

impl fmt::Debug for PostgresBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresBackend")
            .field("table", &self.table.to_string())
            .field("max_output_bytes", &self.max_output_bytes)
            .field("operation_timeout", &self.operation_timeout)
            .field("prepared_statements", &self.prepared_statements)
            .field("pool", &self.pool.status())
            .finish_non_exhaustive()
    }
}
