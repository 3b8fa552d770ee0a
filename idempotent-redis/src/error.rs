//! How Redis failures become `BackendError`s: unreachable, refused or
//! corrupt.

use idempotent_core::{BackendError, BackendErrorKind};
use redis::{ErrorKind, RedisError, ServerErrorKind, Value};

use crate::scripts;
use crate::RedisBackend;

impl RedisBackend {
    pub(crate) fn failed(
        &self,
        record_key: &str,
        error: RedisError,
        operation: &str,
    ) -> BackendError {
        if error.code() == Some("WRONGTYPE") {
            return corrupt(
                record_key,
                operation,
                "the value at this key is not a string",
            );
        }
        if is_out_of_memory(&error) {
            return BackendError::new(
                BackendErrorKind::Capacity,
                format!("Redis is full and refused the {operation} (used memory over `maxmemory`, and the policy does not evict)"),
            )
            .with_source(error);
        }
        self.connection.failed(&error);
        backend_error(error, &format!("Redis {operation} failed"))
    }
}

/// A write refused because the server is over `maxmemory`. Inside a
/// transaction (the local cache's claim) the refusal comes back as the
/// transaction's abort, which names each queued command's error in its text
/// only.
fn is_out_of_memory(error: &RedisError) -> bool {
    error.code() == Some("OOM") || error.to_string().contains("\"OOM\"")
}

/// A reply no command of this crate gives for a record it wrote: the corrupt
/// marker of a script, or anything else.
pub(crate) fn unexpected(key: &str, operation: &str, reply: &Value) -> BackendError {
    let reason = match reply {
        Value::Array(items) => match items.as_slice() {
            [Value::Int(scripts::CORRUPT), Value::BulkString(reason)] => {
                String::from_utf8_lossy(reason).into_owned()
            }
            _ => format!("unexpected reply {reply:?}"),
        },
        _ => format!("unexpected reply {reply:?}"),
    };
    corrupt(key, operation, &reason)
}

pub(crate) fn corrupt(key: &str, operation: &str, reason: &str) -> BackendError {
    BackendError::new(
        BackendErrorKind::Corrupt,
        format!("Redis {operation} at {key:?}: {reason} (the key holds data this library did not write)"),
    )
}

pub(crate) fn backend_error(error: RedisError, context: &str) -> BackendError {
    let kind = if is_unavailable(&error) {
        BackendErrorKind::Unavailable
    } else {
        BackendErrorKind::Other
    };
    BackendError::new(kind, context).with_source(error)
}

/// The server, or the part of a cluster that owns the key, is down, hung,
/// unreachable, or busy changing hands; once it is back, the same call works.
fn is_unavailable(error: &RedisError) -> bool {
    error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || matches!(
            error.kind(),
            ErrorKind::ClusterConnectionNotFound
                | ErrorKind::Server(
                    ServerErrorKind::BusyLoading
                        | ServerErrorKind::ClusterDown
                        | ServerErrorKind::MasterDown
                        | ServerErrorKind::TryAgain
                        | ServerErrorKind::Moved
                        | ServerErrorKind::Ask
                        | ServerErrorKind::ReadOnly
                )
        )
}
