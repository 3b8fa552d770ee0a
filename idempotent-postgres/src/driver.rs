//! What the store's operations need of a driver (tokio-postgres or sqlx),
//! so each operation is written once, in `operations.rs` and `purge.rs`,
//! for both.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use idempotent_core::{BackendError, BackendErrorKind};

use crate::claim::Returned;
use crate::names::Table;
use crate::sql::{Sql, Statements};

/// The default limit on a stored output: 1 MiB, as on the other stores.
/// PostgreSQL stores far larger values (out of line, compressed), so raise
/// it freely with `with_max_output_bytes`.
pub const DEFAULT_MAX_OUTPUT_BYTES: usize = 1024 * 1024;
/// The default limit on one store operation, from asking the pool for a
/// connection to the statement's answer: 5 seconds. Past it the operation
/// fails closed with an `Unavailable` error.
pub const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_secs(5);

/// One parameter of a store statement; its variant is its SQL type.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Param<'a> {
    /// `text`.
    Text(&'a str),
    /// `bytea`.
    Bytes(&'a [u8]),
    /// `bigint`.
    BigInt(i64),
}

/// The configuration both stores share: where the records are, and the
/// limits on each operation.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) table: Arc<Table>,
    pub(crate) statements: Arc<Statements>,
    pub(crate) max_output_bytes: usize,
    pub(crate) operation_timeout: Duration,
    pub(crate) prepared_statements: bool,
}

impl Settings {
    pub(crate) fn new(table: Table) -> Self {
        Self {
            statements: Arc::new(Statements::for_table(&table)),
            table: Arc::new(table),
            max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES,
            operation_timeout: DEFAULT_OPERATION_TIMEOUT,
            prepared_statements: true,
        }
    }

    pub(crate) fn with_schema(self, schema: String) -> Self {
        let name = self.table.name.clone();
        self.with_table_name(Table::new(schema, name))
    }

    pub(crate) fn with_table(self, table: String) -> Self {
        let schema = self.table.schema.clone();
        self.with_table_name(Table::new(schema, table))
    }

    fn with_table_name(self, table: Table) -> Self {
        Self {
            statements: Arc::new(Statements::for_table(&table)),
            table: Arc::new(table),
            ..self
        }
    }

    /// Refuses names PostgreSQL would cut, before any statement runs.
    pub(crate) fn check_table(&self) -> Result<(), BackendError> {
        self.table
            .check()
            .map_err(|reason| BackendError::new(BackendErrorKind::Other, reason))
    }

    /// `setting` names the builder method that raises the limit.
    pub(crate) fn check_output_size(
        &self,
        output: &[u8],
        setting: &'static str,
    ) -> Result<(), BackendError> {
        if output.len() > self.max_output_bytes {
            return Err(BackendError::output_too_large(
                output.len(),
                self.max_output_bytes,
                setting,
            ));
        }
        Ok(())
    }
}

/// A store on one driver: it runs a statement from `sql.rs` in a transaction
/// of its own, bounded by the operation timeout on the client and on the
/// server (see `PostgresBackend::run` for why both).
#[async_trait]
pub(crate) trait Driver: Send + Sync {
    /// The store's configuration.
    fn settings(&self) -> &Settings;

    /// The builder method that raises the output limit, for errors.
    fn output_limit_setting(&self) -> &'static str;

    /// Runs the claim statement and reads its row.
    async fn claim(&self, params: &[Param<'_>]) -> Result<Returned, BackendError>;

    /// Runs `sql` and returns how many rows it changed.
    async fn execute(
        &self,
        operation: &'static str,
        sql: &Sql,
        params: &[Param<'_>],
    ) -> Result<u64, BackendError>;
}

/// The server's bound on a statement that has `left` until the client
/// gives up: 90% of it, so the server's answer normally arrives first, and
/// at least 1 ms (0 would mean no bound at all).
pub(crate) fn server_bound(left: Duration) -> Duration {
    (left * 9 / 10).max(Duration::from_millis(1))
}
