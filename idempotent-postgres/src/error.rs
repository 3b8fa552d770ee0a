//! Turning driver and pool errors into the store's `BackendError`s, with a
//! kind callers can act on.

use std::error::Error as _;

use deadpool_postgres::PoolError;
use idempotent_core::{BackendError, BackendErrorKind};

/// A failed statement. Connection trouble and an overloaded or restarting
/// server are `Unavailable` (the runtime retries storing a result on them);
/// anything else is `Other`.
///
/// An error the server sent is said in the message, with its severity,
/// SQLSTATE, detail and hint, and has no source: the driver's error would
/// only repeat it (its own text is "db error"). Other driver errors (I/O, a
/// closed connection) are the source, their text not repeated.
pub(crate) fn database(error: tokio_postgres::Error, context: &str) -> BackendError {
    let Some(db) = error.as_db_error() else {
        // Not an error the server sent: the connection broke, timed out or
        // was closed.
        let kind = if error.is_closed() || io_caused(&error) {
            BackendErrorKind::Unavailable
        } else {
            BackendErrorKind::Other
        };
        return BackendError::new(kind, context).with_source(error);
    };
    let code = db.code().code();
    let mut message = format!("{context}: {} {code}: {}", db.severity(), db.message());
    if let Some(detail) = db.detail() {
        message.push_str(&format!(" (detail: {detail})"));
    }
    if let Some(hint) = db.hint() {
        message.push_str(&format!(" (hint: {hint})"));
    }
    if code == "42P01" {
        message.push_str(" (the records table does not exist: run PostgresBackend::migrate)");
    }
    BackendError::new(sqlstate_kind(code), message)
}

/// No connection could be had from the pool.
pub(crate) fn pool(error: PoolError, context: &str) -> BackendError {
    match error {
        PoolError::Backend(error) => database(error, context),
        other => BackendError::new(
            BackendErrorKind::Unavailable,
            format!("{context}: no database connection"),
        )
        .with_source(other),
    }
}

/// The statement did not answer within the operation timeout.
pub(crate) fn timeout(context: &str, limit: std::time::Duration) -> BackendError {
    BackendError::new(
        BackendErrorKind::Unavailable,
        format!("{context}: no answer within {limit:?}"),
    )
}

fn io_caused(error: &tokio_postgres::Error) -> bool {
    error
        .source()
        .is_some_and(|source| source.downcast_ref::<std::io::Error>().is_some())
}

/// SQLSTATE classes meaning "try again later": 08 connection exception,
/// 53 insufficient resources (too many connections, out of memory or disk),
/// 57014 a statement cancelled (`statement_timeout`, the store's bound on
/// each operation), 55P03 a lock not granted in time (`lock_timeout`),
/// 57P01..57P05 the server shutting down, restarting, or not accepting
/// connections yet, 40001/40P01 a serialization failure or deadlock.
fn sqlstate_kind(code: &str) -> BackendErrorKind {
    match code {
        c if c.starts_with("08") || c.starts_with("53") => BackendErrorKind::Unavailable,
        "57014" | "55P03" | "57P01" | "57P02" | "57P03" | "57P04" | "57P05" | "40001" | "40P01" => {
            BackendErrorKind::Unavailable
        }
        _ => BackendErrorKind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_sqlstates_are_unavailable() {
        for code in [
            "08006", "08001", "53300", "57014", "55P03", "57P01", "57P03", "40001",
        ] {
            assert_eq!(sqlstate_kind(code), BackendErrorKind::Unavailable, "{code}");
        }
        for code in ["42P01", "23505", "22001", "42501"] {
            assert_eq!(sqlstate_kind(code), BackendErrorKind::Other, "{code}");
        }
    }
}
