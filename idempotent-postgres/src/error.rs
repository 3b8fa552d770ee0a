//! Turning driver and pool errors into the store's `BackendError`s, with a
//! kind callers can act on.

#[cfg(feature = "tokio-postgres")]
use std::error::Error as _;

#[cfg(feature = "tokio-postgres")]
use deadpool_postgres::PoolError;
use idempotent_core::{BackendError, BackendErrorKind};

/// An error the server sent, as both drivers give it.
pub(crate) struct ServerError<'a> {
    pub(crate) severity: &'a str,
    pub(crate) code: &'a str,
    pub(crate) message: &'a str,
    pub(crate) detail: Option<&'a str>,
    pub(crate) hint: Option<&'a str>,
}

/// An error the server sent is said in the message, with its severity,
/// SQLSTATE, detail and hint, and has no source: the driver's error would
/// only repeat it. Connection trouble and an overloaded or restarting
/// server are `Unavailable` (the runtime retries storing a result on
/// them); anything else is `Other`.
/// `store` names the store's type, for the hint to migrate.
pub(crate) fn server(error: ServerError<'_>, store: &str, context: &str) -> BackendError {
    let ServerError {
        severity,
        code,
        message,
        detail,
        hint,
    } = error;
    let mut text = format!("{context}: {severity} {code}: {message}");
    if let Some(detail) = detail {
        text.push_str(&format!(" (detail: {detail})"));
    }
    if let Some(hint) = hint {
        text.push_str(&format!(" (hint: {hint})"));
    }
    if code == "42P01" {
        text.push_str(&format!(
            " (the records table does not exist: run {store}::migrate)"
        ));
    }
    BackendError::new(sqlstate_kind(code), text)
}

/// A failed statement on tokio-postgres: the server's error as [`server`]
/// says; other driver errors (I/O, a closed connection) are the source,
/// their text not repeated.
#[cfg(feature = "tokio-postgres")]
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
    let severity = db.severity();
    server(
        ServerError {
            severity,
            code: db.code().code(),
            message: db.message(),
            detail: db.detail(),
            hint: db.hint(),
        },
        "PostgresBackend",
        context,
    )
}

/// A failed statement or acquisition on sqlx: the server's error as
/// [`server`] says; I/O, TLS, protocol and pool failures are
/// `Unavailable`, with the driver's error as the source.
#[cfg(feature = "sqlx")]
pub(crate) fn sqlx(error: sqlx::Error, context: &str) -> BackendError {
    use sqlx::postgres::{PgDatabaseError, PgSeverity};
    if let Some(db) = error
        .as_database_error()
        .and_then(|db| db.try_downcast_ref::<PgDatabaseError>())
    {
        let severity = match db.severity() {
            PgSeverity::Panic => "PANIC",
            PgSeverity::Fatal => "FATAL",
            PgSeverity::Error => "ERROR",
            PgSeverity::Warning => "WARNING",
            PgSeverity::Notice => "NOTICE",
            PgSeverity::Debug => "DEBUG",
            PgSeverity::Info => "INFO",
            PgSeverity::Log => "LOG",
        };
        return server(
            ServerError {
                severity,
                code: db.code(),
                message: db.message(),
                detail: db.detail(),
                hint: db.hint(),
            },
            "SqlxBackend",
            context,
        );
    }
    let kind = match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => BackendErrorKind::Unavailable,
        _ => BackendErrorKind::Other,
    };
    BackendError::new(kind, context).with_source(error)
}

/// No connection could be had from the pool.
#[cfg(feature = "tokio-postgres")]
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

#[cfg(feature = "tokio-postgres")]
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

    #[cfg(feature = "sqlx")]
    #[test]
    fn sqlx_connection_trouble_is_unavailable() {
        for error in [
            sqlx::Error::PoolTimedOut,
            sqlx::Error::PoolClosed,
            sqlx::Error::Io(std::io::Error::other("reset")),
        ] {
            assert_eq!(sqlx(error, "x").kind(), BackendErrorKind::Unavailable);
        }
        assert_eq!(
            sqlx(sqlx::Error::RowNotFound, "x").kind(),
            BackendErrorKind::Other
        );
    }
}
