//! `PostgresBackend`: the `Backend` contract on a PostgreSQL table.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use idempotent_core::{BackendError, BackendErrorKind};
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row, Statement};

use crate::error;
use crate::migrate::{self, MigrateError};
use crate::names::{Table, DEFAULT_SCHEMA, DEFAULT_TABLE};
use crate::sql::Statements;

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
    /// connection included (default 5 s).
    #[must_use]
    pub fn with_operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout;
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

    /// Runs `sql` (prepared once per connection) and returns its rows.
    pub(crate) async fn query(
        &self,
        operation: &str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, BackendError> {
        let context = format!("Postgres {operation} failed");
        self.within_timeout(&context, async {
            let (client, statement) = self.prepare(&context, sql).await?;
            client
                .query(&statement, params)
                .await
                .map_err(|error| error::database(error, &context))
        })
        .await
    }

    /// Runs `sql` (prepared once per connection) and returns how many rows
    /// it changed.
    pub(crate) async fn execute(
        &self,
        operation: &str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, BackendError> {
        let context = format!("Postgres {operation} failed");
        self.within_timeout(&context, async {
            let (client, statement) = self.prepare(&context, sql).await?;
            client
                .execute(&statement, params)
                .await
                .map_err(|error| error::database(error, &context))
        })
        .await
    }

    /// A pooled connection and `sql` prepared on it (from its cache after
    /// the first time, so the statement itself is one round trip).
    async fn prepare(
        &self,
        context: &str,
        sql: &str,
    ) -> Result<(deadpool_postgres::Object, Statement), BackendError> {
        self.table
            .check()
            .map_err(|reason| BackendError::new(BackendErrorKind::Other, reason))?;
        let client = self
            .pool
            .get()
            .await
            .map_err(|error| error::pool(error, context))?;
        let statement = client
            .prepare_cached(sql)
            .await
            .map_err(|error| error::database(error, context))?;
        Ok((client, statement))
    }

    /// Fails `operation` with an `Unavailable` error past the operation
    /// timeout.
    async fn within_timeout<T>(
        &self,
        context: &str,
        operation: impl Future<Output = Result<T, BackendError>>,
    ) -> Result<T, BackendError> {
        tokio::time::timeout(self.operation_timeout, operation)
            .await
            .unwrap_or_else(|_| Err(error::timeout(context, self.operation_timeout)))
    }
}

impl fmt::Debug for PostgresBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresBackend")
            .field("table", &self.table.to_string())
            .field("max_output_bytes", &self.max_output_bytes)
            .field("operation_timeout", &self.operation_timeout)
            .field("pool", &self.pool.status())
            .finish_non_exhaustive()
    }
}
