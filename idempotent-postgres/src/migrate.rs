//! Creating the records table, idempotently, and checking an existing one.

use tokio_postgres::types::Type;

use crate::names::{fnv1a, quote_literal, Table};

/// The table's DDL, as [`PostgresBackend::migration_sql`] gives it.
///
/// - `key` sorts by bytes (`COLLATE "C"`): keys are compared exactly,
///   whatever the database's collation.
/// - `token` is the claim's fencing token, chosen by the caller before it
///   claims (tables created by earlier versions give it an identity default,
///   which is never used now).
/// - `took_over` records whether a claim replaced a lapsed one.
/// - The `CHECK`s keep every row a valid record: a running claim has a lease
///   and no output, a completed record an output and no lease.
/// - The index on `expires_at` serves `purge_expired`.
///
/// [`PostgresBackend::migration_sql`]: crate::PostgresBackend::migration_sql
pub(crate) fn ddl(table: &Table) -> String {
    schema_ddl(table) + &table_ddl(table)
}

fn schema_ddl(table: &Table) -> String {
    format!("CREATE SCHEMA IF NOT EXISTS {};\n", table.quoted_schema())
}

fn table_ddl(table: &Table) -> String {
    let index = table.quoted_expiry_index();
    format!(
        "CREATE TABLE IF NOT EXISTS {table} (
    key         text COLLATE \"C\" PRIMARY KEY,
    fingerprint bytea       NOT NULL CHECK (octet_length(fingerprint) = 32),
    state       text        NOT NULL CHECK (state IN ('running', 'completed')),
    token       bigint      NOT NULL,
    took_over   boolean     NOT NULL DEFAULT false,
    lease_until timestamptz,
    output      bytea,
    expires_at  timestamptz NOT NULL,
    CHECK (CASE state
               WHEN 'running' THEN lease_until IS NOT NULL AND output IS NULL
               ELSE lease_until IS NULL AND output IS NOT NULL
           END)
);
CREATE INDEX IF NOT EXISTS {index} ON {table} (expires_at);
COMMENT ON TABLE {table} IS {comment};
",
        comment = quote_literal("idempotent: records of idempotent calls (format 1)"),
    )
}

/// The columns the statements use, with their types: an existing table must
/// have them (it may have more).
const COLUMNS: [(&str, Type); 8] = [
    ("key", Type::TEXT),
    ("fingerprint", Type::BYTEA),
    ("state", Type::TEXT),
    ("token", Type::INT8),
    ("took_over", Type::BOOL),
    ("lease_until", Type::TIMESTAMPTZ),
    ("output", Type::BYTEA),
    ("expires_at", Type::TIMESTAMPTZ),
];

/// Why a migration failed.
#[derive(Debug)]
pub(crate) enum MigrateError {
    Database(tokio_postgres::Error),
    /// The table exists but is not a records table of this crate.
    Foreign(String),
}

impl From<tokio_postgres::Error> for MigrateError {
    fn from(error: tokio_postgres::Error) -> Self {
        Self::Database(error)
    }
}

/// Creates what is missing, in one transaction, serialized between processes
/// by an advisory lock (two `CREATE TABLE IF NOT EXISTS` racing can both
/// try to create it and one fails).
///
/// Existing objects are detected first rather than left to `IF NOT EXISTS`:
/// PostgreSQL checks the `CREATE` privilege before it looks, so a role that
/// may only read and write an existing table (created by a DBA from
/// [`ddl`]) could not migrate otherwise.
pub(crate) async fn migrate(
    client: &mut deadpool_postgres::Object,
    table: &Table,
) -> Result<(), MigrateError> {
    let transaction = client.transaction().await?;
    transaction
        .execute("SELECT pg_advisory_xact_lock($1)", &[&lock_id(table)])
        .await?;
    let exists: bool = transaction
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table.to_string()])
        .await?
        .get(0);
    if !exists {
        let schema_exists: bool = transaction
            .query_one(
                "SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = $1)",
                &[&table.schema],
            )
            .await?
            .get(0);
        if !schema_exists {
            transaction.batch_execute(&schema_ddl(table)).await?;
        }
        transaction.batch_execute(&table_ddl(table)).await?;
    }
    check_columns(&transaction, table).await?;
    transaction.commit().await?;
    Ok(())
}

/// Fails with [`MigrateError::Foreign`] unless `table` has [`COLUMNS`].
async fn check_columns(
    client: &tokio_postgres::Transaction<'_>,
    table: &Table,
) -> Result<(), MigrateError> {
    let names: Vec<&str> = COLUMNS.iter().map(|(name, _)| *name).collect();
    let probe = format!("SELECT {} FROM {table} WHERE false", names.join(", "));
    let statement = client.prepare(&probe).await.map_err(|error| {
        match error.as_db_error() {
            // undefined_column: a table of the same name, but another shape.
            Some(db) if db.code().code() == "42703" => {
                MigrateError::Foreign(db.message().to_owned())
            }
            _ => MigrateError::Database(error),
        }
    })?;
    for ((name, expected), column) in COLUMNS.iter().zip(statement.columns()) {
        if column.type_() != expected {
            return Err(MigrateError::Foreign(format!(
                "column {name} is {}, expected {expected}",
                column.type_()
            )));
        }
    }
    Ok(())
}

/// A key for the advisory lock serializing migrations of one table: a
/// 64-bit FNV-1a hash of its name, the same in every process.
fn lock_id(table: &Table) -> i64 {
    let hash = fnv1a(format!("idempotent-postgres migrate {table}").as_bytes());
    i64::from_ne_bytes(hash.to_ne_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_ids_differ_per_table_and_are_stable() {
        let a = lock_id(&Table::new("public", "a"));
        assert_eq!(a, lock_id(&Table::new("public", "a")));
        assert_ne!(a, lock_id(&Table::new("public", "b")));
        assert_ne!(a, lock_id(&Table::new("other", "a")));
    }

    #[test]
    fn the_ddl_creates_the_schema_then_the_table() {
        let ddl = ddl(&Table::new("s", "t"));
        assert!(
            ddl.starts_with("CREATE SCHEMA IF NOT EXISTS \"s\";\n"),
            "{ddl}"
        );
        assert!(
            ddl.contains("CREATE TABLE IF NOT EXISTS \"s\".\"t\" ("),
            "{ddl}"
        );
    }
}
