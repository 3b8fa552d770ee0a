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
