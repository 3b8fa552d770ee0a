//! Waiting for replicas: `WAIT replicas timeout` after the writes that a
//! failover must not lose (a claim, a completion, a renewal), in the same
//! pipeline, and what its answer means.

use std::time::Duration;

use idempotent_core::{BackendError, BackendErrorKind};
use redis::{Pipeline, RedisError, Value};

/// The longest `WAIT` this store sends. A `WAIT` holds every later command
/// on the same multiplexed connection until it returns, and the connection's
/// response timeout (2 s) must outlast it.
pub(crate) const MAX_ACK_TIMEOUT: Duration = Duration::from_secs(1);

/// How many replicas must have a write, and how long to wait for them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ReplicaAcks {
    replicas: usize,
    timeout_ms: u64,
}

impl ReplicaAcks {
    /// Checks the bounds: at least one replica, and 1 ms to 1 s (a `WAIT` of
    /// 0 ms would block until the replicas answer, however long that takes).
    pub(crate) fn new(replicas: usize, timeout: Duration) -> Result<Self, BackendError> {
        if replicas == 0 {
            return Err(BackendError::new(
                BackendErrorKind::Other,
                "RedisBackend::with_replica_acks needs at least 1 replica \
                 (0 would wait for nothing)",
            ));
        }
        if timeout < Duration::from_millis(1) || timeout > MAX_ACK_TIMEOUT {
            return Err(BackendError::new(
                BackendErrorKind::Other,
                format!(
                    "RedisBackend::with_replica_acks: timeout {timeout:?} is out of bounds \
                     (1 ms to {MAX_ACK_TIMEOUT:?}): a WAIT holds every later command on its \
                     connection"
                ),
            ));
        }
        Ok(Self {
            replicas,
            // At most 1 s: the millis fit.
            timeout_ms: timeout.as_millis() as u64,
        })
    }

    /// Appends `WAIT replicas timeout` to `pipeline`. It has no key, so on a
    /// cluster the pipeline goes where its keyed command goes: the master
    /// that owns the record, whose replicas it then counts.
    pub(crate) fn append_to(&self, pipeline: &mut Pipeline) {
        pipeline.cmd("WAIT").arg(self.replicas).arg(self.timeout_ms);
    }

    /// `Ok` when the `WAIT` reply counts enough replicas; otherwise the write
    /// is not relied on: an `Unavailable` error, so the engine treats it as a
    /// store that failed (a claim fails closed and is released, a completion
    /// is retried).
    pub(crate) fn check(
        &self,
        reply: &Value,
        record_key: &str,
        operation: &str,
    ) -> Result<(), BackendError> {
        let acked = match reply {
            Value::Int(acked) => *acked,
            Value::ServerError(error) => {
                return Err(BackendError::new(
                    BackendErrorKind::Unavailable,
                    format!("Redis {operation}: WAIT for replicas failed"),
                )
                .with_source(RedisError::from(error.clone())))
            }
            other => {
                return Err(BackendError::new(
                    BackendErrorKind::Other,
                    format!("Redis {operation}: unexpected WAIT reply {other:?}"),
                ))
            }
        };
        if usize::try_from(acked).is_ok_and(|acked| acked >= self.replicas) {
            return Ok(());
        }
        tracing::warn!(
            key = record_key,
            acked,
            wanted = self.replicas,
            "Redis {operation} not acknowledged by enough replicas"
        );
        Err(BackendError::new(
            BackendErrorKind::Unavailable,
            format!(
                "Redis {operation} acknowledged by {acked} of {} replicas within {} ms",
                self.replicas, self.timeout_ms
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_checked() {
        assert!(ReplicaAcks::new(0, Duration::from_millis(100)).is_err());
        assert!(ReplicaAcks::new(1, Duration::ZERO).is_err());
        assert!(ReplicaAcks::new(1, Duration::from_micros(999)).is_err());
        assert!(ReplicaAcks::new(1, Duration::from_millis(1001)).is_err());
        let acks = ReplicaAcks::new(2, Duration::from_secs(1)).unwrap();
        assert_eq!(acks.timeout_ms, 1000);
    }

    #[test]
    fn too_few_acks_are_unavailable() {
        let acks = ReplicaAcks::new(2, Duration::from_millis(50)).unwrap();
        assert!(acks.check(&Value::Int(2), "k", "claim").is_ok());
        assert!(acks.check(&Value::Int(3), "k", "claim").is_ok());
        let error = acks.check(&Value::Int(1), "k", "claim").unwrap_err();
        assert_eq!(error.kind(), BackendErrorKind::Unavailable);
        assert!(
            error
                .to_string()
                .contains("acknowledged by 1 of 2 replicas within 50 ms"),
            "{error}"
        );
        assert!(acks.check(&Value::Nil, "k", "claim").is_err());
    }
}
