//! The completion, release and renewal as plain commands, on a server that
//! has them (`capabilities.rs`): `SET key completed IFEQ claim PX ttl`,
//! `DELIFEQ key claim`, `SET key renewed IFEQ claim PX 2*lease`.
//!
//! Each applies in a subset of the cases where its script applies, and
//! writes the same bytes: the key holds exactly the claim this call wrote
//! (`held_claims.rs`), so it is in progress and holds this call's token,
//! which is all the scripts check. Every other case (another token, a
//! completed record, a claim renewed with another lease, a reply lost and
//! the command sent again, a value this crate did not write) makes the
//! command answer nil or 0, and the script decides it, as it would have
//! without the plain command: fencing is the scripts' own. A retried
//! completion whose first try applied is so told "applied", not "fenced".
//!
//! They are writes as the scripts are: a demoted primary refuses them with
//! `READONLY`, and with replica acks `WAIT` follows them in the same
//! pipeline.

use std::io::Write as _;

use idempotent_core::backend::{CasOutcome, FencingToken};
use idempotent_core::BackendError;
use redis::{RedisWrite, ToRedisArgs, Value};

use crate::capabilities::Plain;
use crate::error::unexpected;
use crate::record;
use crate::RedisBackend;

impl RedisBackend {
    /// `SET record_key completed IFEQ claim PX ttl`: `Some` when it decided,
    /// `None` when the script must.
    pub(crate) async fn complete_plain(
        &self,
        record_key: &str,
        claim: &[u8],
        output: &[u8],
        ttl_ms: u64,
    ) -> Result<Option<CasOutcome>, BackendError> {
        let completed = Completed {
            header: &claim[..record::HEADER_LEN],
            output,
        };
        let mut command = redis::Cmd::with_capacity(
            6,
            3 + record_key.len() + record::HEADER_LEN + output.len() + 4 + claim.len() + 2 + 20,
        );
        command
            .arg("SET")
            .arg(record_key)
            .arg(completed)
            .arg("IFEQ")
            .arg(claim)
            .arg("PX")
            .arg(ttl_ms);
        self.set_ifeq(record_key, command, "complete").await
    }

    /// `SET record_key renewed IFEQ claim PX 2*lease`, where `renewed` is
    /// the claim with the new lease; `Some` when it decided.
    pub(crate) async fn renew_plain(
        &self,
        record_key: &str,
        claim: &[u8],
        renewed: &[u8],
        lease_ms: u64,
    ) -> Result<Option<CasOutcome>, BackendError> {
        let mut command = redis::cmd("SET");
        command
            .arg(record_key)
            .arg(renewed)
            .arg("IFEQ")
            .arg(claim)
            .arg("PX")
            .arg(2 * lease_ms);
        self.set_ifeq(record_key, command, "renew").await
    }

    async fn set_ifeq(
        &self,
        record_key: &str,
        command: redis::Cmd,
        operation: &str,
    ) -> Result<Option<CasOutcome>, BackendError> {
        let mut connection = self.connection.handle();
        let sent = self
            .send(&mut connection, command, self.replica_acks.as_ref())
            .await;
        match sent {
            Ok((Value::Okay, wait)) => {
                self.check_acks(wait.as_ref(), record_key, operation)?;
                Ok(Some(CasOutcome::Applied))
            }
            Ok((Value::Nil, _)) => Ok(None),
            Ok((other, _)) => Err(unexpected(record_key, operation, &other)),
            Err(error) if self.capabilities.refused(Plain::SetIfeq, &error) => Ok(None),
            Err(error) => Err(self.failed(record_key, error, operation)),
        }
    }

    /// `DELIFEQ record_key claim`: `Some` when it deleted the claim, `None`
    /// when the script must decide. A release sends no `WAIT`.
    pub(crate) async fn release_plain(
        &self,
        record_key: &str,
        claim: &[u8],
    ) -> Result<Option<CasOutcome>, BackendError> {
        let reply = redis::cmd("DELIFEQ")
            .arg(record_key)
            .arg(claim)
            .query_async::<Value>(&mut self.connection.handle())
            .await;
        match reply {
            Ok(Value::Int(1)) => Ok(Some(CasOutcome::Applied)),
            Ok(Value::Int(0)) => Ok(None),
            Ok(other) => Err(unexpected(record_key, "release", &other)),
            Err(error) if self.capabilities.refused(Plain::DelIfeq, &error) => Ok(None),
            Err(error) => Err(self.failed(record_key, error, "release")),
        }
    }

    /// Remembers the claim `token` just acquired at `record_key`, when the
    /// server has a plain command that will need it.
    pub(crate) fn remember_claim(
        &self,
        record_key: &str,
        token: FencingToken,
        claim: Vec<u8>,
        lease_ms: u64,
    ) {
        if self.capabilities.any() {
            self.held_claims.insert(record_key, token, claim, lease_ms);
        }
    }
}

/// The claim with a new lease: what a renewal writes.
pub(crate) fn renewed(claim: &[u8], lease_ms: &[u8]) -> Vec<u8> {
    let mut renewed = Vec::with_capacity(record::HEADER_LEN + lease_ms.len());
    renewed.extend_from_slice(&claim[..record::HEADER_LEN]);
    renewed.extend_from_slice(lease_ms);
    renewed
}

/// The completed record written straight into the command: the claim's
/// header with the completed state, then the output, without copying the
/// output into a record first.
struct Completed<'a> {
    header: &'a [u8],
    output: &'a [u8],
}

impl ToRedisArgs for Completed<'_> {
    fn write_redis_args<W: ?Sized + RedisWrite>(&self, out: &mut W) {
        let mut arg = out.writer_for_next_arg();
        // Writing into the command's own buffer cannot fail.
        let _ = arg.write_all(&self.header[..record::STATE_AT]);
        let _ = arg.write_all(&[record::COMPLETED]);
        let _ = arg.write_all(&self.header[record::STATE_AT + 1..]);
        let _ = arg.write_all(self.output);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use idempotent_core::backend::{ClaimOutcome, Fingerprint};
    use idempotent_core::Backend;
    use idempotent_test_support::RedisServer;

    use super::*;
    use crate::capabilities::Capabilities;

    const LEASE: Duration = Duration::from_secs(60);
    const TTL: Duration = Duration::from_secs(600);

    fn fingerprint() -> Fingerprint {
        Fingerprint::from_bytes([3; 32])
    }

    /// A server that says it has the plain commands and refuses them all
    /// the same (here Redis 7.0, told so by hand): every call falls back to
    /// its script and succeeds, and the store stops sending them.
    #[tokio::test]
    async fn a_server_that_lists_the_commands_but_refuses_them_gets_the_scripts() {
        let server = RedisServer::start();
        let mut store = RedisBackend::connect(&server.url()).await.unwrap();
        store.capabilities = Arc::new(Capabilities::assumed(true, true));
        // Counted from here: the client's handshake has refusals of its own.
        server.reset_stats();
        let token = FencingToken::generate();
        let claimed = store.claim("k", &fingerprint(), token, LEASE).await;
        assert!(matches!(claimed, Ok(ClaimOutcome::Acquired { .. })));
        assert_eq!(
            store.renew("k", token, LEASE).await.unwrap(),
            CasOutcome::Applied
        );
        assert!(
            !store.capabilities.set_ifeq(),
            "SET IFEQ is off after its refusal"
        );
        assert_eq!(
            store.complete("k", token, b"out", TTL).await.unwrap(),
            CasOutcome::Applied
        );
        let token = FencingToken::generate();
        store
            .claim("r", &fingerprint(), token, LEASE)
            .await
            .unwrap();
        assert_eq!(
            store.release("r", token).await.unwrap(),
            CasOutcome::Applied
        );
        assert!(
            !store.capabilities.delifeq(),
            "DELIFEQ is off after its refusal"
        );
        assert_eq!(
            store
                .claim("k", &fingerprint(), token, LEASE)
                .await
                .unwrap(),
            ClaimOutcome::Completed {
                output: b"out".to_vec()
            }
        );
        // One refusal each, then the scripts only.
        let errors: String = server.query(redis::cmd("INFO").arg("errorstats"));
        assert!(errors.contains("errorstat_ERR:count=2"), "{errors}");
        let token = FencingToken::generate();
        store
            .claim("k2", &fingerprint(), token, LEASE)
            .await
            .unwrap();
        store.complete("k2", token, b"out", TTL).await.unwrap();
        let errors: String = server.query(redis::cmd("INFO").arg("errorstats"));
        assert!(errors.contains("errorstat_ERR:count=2"), "{errors}");
    }

    /// The plain completion sent again while the claim is still remembered
    /// (its first reply lost): `SET .. IFEQ` answers nil, and the script
    /// says "applied", since the completed record holds this token.
    #[tokio::test]
    async fn a_plain_completion_that_already_applied_is_left_to_the_script() {
        let server = RedisServer::start_valkey();
        let store = RedisBackend::connect(&server.url()).await.unwrap();
        assert!(store.capabilities.set_ifeq() && store.capabilities.delifeq());
        let token = FencingToken::generate();
        store
            .claim("k", &fingerprint(), token, LEASE)
            .await
            .unwrap();
        let record_key = store.record_key("k");
        let claim = store.held_claims.get(&record_key, token).unwrap();
        let first = store.complete_plain(&record_key, &claim, b"out", 600_000);
        assert_eq!(first.await.unwrap(), Some(CasOutcome::Applied));
        let again = store.complete_plain(&record_key, &claim, b"out", 600_000);
        assert_eq!(again.await.unwrap(), None);
        assert_eq!(
            store.complete("k", token, b"out", TTL).await.unwrap(),
            CasOutcome::Applied
        );
        assert_eq!(server.command_count("evalsha"), 1);
        assert_eq!(store.held_claims.len(), 0);
        // Nor does DELIFEQ delete a completed record.
        assert_eq!(
            store.release_plain(&record_key, &claim).await.unwrap(),
            None
        );
        assert_eq!(
            store
                .claim("k", &fingerprint(), token, LEASE)
                .await
                .unwrap(),
            ClaimOutcome::Completed {
                output: b"out".to_vec()
            }
        );
    }

    #[test]
    fn a_renewal_keeps_the_header_and_writes_the_new_lease() {
        let claim = record::claim(&fingerprint(), FencingToken::new(9), 60_000);
        let renewed = renewed(&claim, b"1500");
        assert_eq!(
            renewed,
            record::claim(&fingerprint(), FencingToken::new(9), 1500)
        );
    }
}
