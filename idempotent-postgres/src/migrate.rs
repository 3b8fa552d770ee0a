//! Creating the records table, idempotently, and checking an existing one.

use async_trait::async_trait;
use idempotent_core::{BackendError, BackendErrorKind};

use crate::literal;
use crate::names::{fnv1a, quote_literal, Table};

/// The table's DDL, as `migration_sql` on either store gives it.
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

/// The columns the statements use, with their types (`pg_type.typname`):
/// an existing table must have them (it may have more).
const COLUMNS: [(&str, &str); 8] = [
    ("key", "text"),
    ("fingerprint", "bytea"),
    ("state", "text"),
    ("token", "int8"),
    ("took_over", "bool"),
    ("lease_until", "timestamptz"),
    ("output", "bytea"),
    ("expires_at", "timestamptz"),
];

/// A connection the migration runs on, with either driver: simple queries
/// (no parameters, several statements each), whose rows come back as text.
#[async_trait]
pub(crate) trait Session: Send + Sync {
    /// `context` starts the message of a failure.
    async fn simple_query(
        &mut self,
        sql: &str,
        context: &str,
    ) -> Result<Vec<Vec<Option<String>>>, BackendError>;
}

/// Creates what is missing, in one transaction, serialized between processes
/// by an advisory lock (two `CREATE TABLE IF NOT EXISTS` racing can both
/// try to create it and one fails), then checks the table's columns.
///
/// Existing objects are detected first rather than left to `IF NOT EXISTS`:
/// PostgreSQL checks the `CREATE` privilege before it looks, so a role that
/// may only read and write an existing table (created by a DBA from
/// [`ddl`]) could not migrate otherwise.
pub(crate) async fn migrate(session: &mut impl Session, table: &Table) -> Result<(), BackendError> {
    let context = format!("could not migrate {table}");
    let name = literal::text(&table.to_string())?;
    let schema = literal::text(&table.schema)?;
    session
        .simple_query(
            &format!("BEGIN; SELECT pg_advisory_xact_lock({})", lock_id(table)),
            &context,
        )
        .await?;
    let result = async {
        let found = session
            .simple_query(
                &format!(
                    "SELECT (to_regclass({name}) IS NOT NULL)::text,
                        EXISTS (SELECT FROM pg_namespace WHERE nspname = {schema})::text"
                ),
                &context,
            )
            .await?;
        let flag = |column: usize| {
            found
                .first()
                .and_then(|row| row.get(column).cloned().flatten())
                .is_some_and(|value| value == "true")
        };
        let (table_exists, schema_exists) = (flag(0), flag(1));
        if !table_exists {
            if !schema_exists {
                session.simple_query(&schema_ddl(table), &context).await?;
            }
            session.simple_query(&table_ddl(table), &context).await?;
        }
        let columns = session
            .simple_query(
                &format!(
                    "SELECT a.attname::text, t.typname::text
                   FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
                  WHERE a.attrelid = to_regclass({name}) AND a.attnum > 0
                    AND NOT a.attisdropped"
                ),
                &context,
            )
            .await?;
        Ok::<_, BackendError>(check_columns(&columns))
    }
    .await;
    let outcome = match result {
        Ok(Ok(())) => session.simple_query("COMMIT", &context).await.map(|_| ()),
        Ok(Err(foreign)) => Err(BackendError::new(
            BackendErrorKind::Other,
            format!(
                "{table} exists but is not a records table of this version ({foreign}); \
                 choose another name with with_schema/with_table"
            ),
        )),
        Err(error) => Err(error),
    };
    if outcome.is_err() {
        // Best effort: a broken connection has rolled back already.
        let _ = session.simple_query("ROLLBACK", &context).await;
    }
    outcome
}

/// Why the table's columns `(name, type)` are not the records': a missing
/// column or one of another type.
fn check_columns(columns: &[Vec<Option<String>>]) -> Result<(), String> {
    for (name, expected) in COLUMNS {
        let found = columns
            .iter()
            .find(|row| row.first().and_then(Option::as_deref) == Some(name));
        let Some(row) = found else {
            return Err(format!("column \"{name}\" does not exist"));
        };
        let actual = row.get(1).and_then(Option::as_deref).unwrap_or("?");
        if actual != expected {
            return Err(format!("column {name} is {actual}, expected {expected}"));
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

    fn row(name: &str, ty: &str) -> Vec<Option<String>> {
        vec![Some(name.to_owned()), Some(ty.to_owned())]
    }

    #[test]
    fn a_table_missing_a_column_or_of_another_type_is_foreign() {
        let mut columns: Vec<_> = COLUMNS.iter().map(|(n, t)| row(n, t)).collect();
        columns.push(row("extra", "int4"));
        assert_eq!(check_columns(&columns), Ok(()));
        columns[3] = row("token", "int4");
        assert_eq!(
            check_columns(&columns),
            Err("column token is int4, expected int8".to_owned())
        );
        columns.remove(3);
        assert_eq!(
            check_columns(&columns),
            Err("column \"token\" does not exist".to_owned())
        );
    }

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
