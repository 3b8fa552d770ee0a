//! The store's statements prepared with SQL `PREPARE` and run by SQL
//! `EXECUTE` inside a simple query, where no protocol-level parameters can
//! go (both stores run their operations so, see `PostgresBackend::run`).

use idempotent_core::BackendError;

use crate::driver::Param;
use crate::literal;
use crate::sql::Sql;

/// SQLSTATE `invalid_sql_statement_name`: `EXECUTE` of a statement this
/// session has not prepared (a new connection, or one whose session was
/// reset). Nothing ran then: prepare it and run it again.
pub(crate) const NOT_PREPARED: &str = "26000";

/// What an operation sends after its bound: `EXECUTE` of `sql` with the
/// literals of `params` when `prepared` (and the statement, to prepare it on
/// a connection that lacks it), else `sql`'s text with them written in.
pub(crate) fn statement<'a>(
    sql: &'a Sql,
    params: &[Param<'_>],
    prepared: bool,
) -> Result<(Option<Prepared<'a>>, String), BackendError> {
    if prepared {
        let prepared = Prepared::new(sql);
        let execute = prepared.execute(params)?;
        Ok((Some(prepared), execute))
    } else {
        Ok((None, literal::inline(sql, params)?))
    }
}

/// A store statement to run by SQL `EXECUTE` under its name
/// ([`Sql::name`]).
pub(crate) struct Prepared<'a> {
    sql: &'a Sql,
}

impl<'a> Prepared<'a> {
    pub(crate) fn new(sql: &'a Sql) -> Self {
        Self { sql }
    }

    /// `PREPARE name (types) AS statement`, the types those of `params`.
    pub(crate) fn prepare(&self, params: &[Param<'_>]) -> String {
        let types: Vec<&str> = params
            .iter()
            .map(|param| match param {
                Param::Text(_) => "text",
                Param::Bytes(_) => "bytea",
                Param::BigInt(_) => "bigint",
            })
            .collect();
        format!(
            "PREPARE {} ({}) AS {}",
            self.sql.name,
            types.join(", "),
            self.sql.text
        )
    }

    /// `EXECUTE name (literals)`.
    pub(crate) fn execute(&self, params: &[Param<'_>]) -> Result<String, BackendError> {
        let args = literal::list(self.sql, params)?;
        Ok(format!("EXECUTE {} ({args})", self.sql.name))
    }
}
