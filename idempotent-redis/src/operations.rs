//! The `Backend` operations of `RedisBackend`: one command or one script on
//! one key each, and how their replies are read.

use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use idempotent_core::backend::{CasOutcome, ClaimOutcome, FencingToken, Fingerprint};
use idempotent_core::{limits, Backend, BackendError, BackendErrorKind, Error};
use redis::{ErrorKind, RedisError, RedisWrite, ServerErrorKind, ToRedisArgs, Value};

use crate::connection::Handle;
use crate::error::{corrupt, unexpected};
use crate::held_claims::HeldClaims;
use crate::local_cache::Cached;
use crate::plain_commands;
use crate::record::{self, Found};
use crate::replica_acks::ReplicaAcks;
use crate::scripts::{self, LuaScript, CLAIM, COMPLETE, RELEASE, RENEW};
use crate::RedisBackend;

impl RedisBackend {
    /// Runs `script` on the record of `key`: `EVALSHA`, and once more as
    /// `EVAL` with the source when the server answers `NOSCRIPT` (it has not
    /// cached the script: it is new, restarted or flushed, or a cluster node
    /// that never ran it). Both are routed by the record key, so on a cluster
    /// they reach the node that owns it and no other.
    async fn invoke(
        &self,
        script: &LuaScript,
        key: &str,
        args: &[&[u8]],
        operation: Operation,
    ) -> Result<(Value, Option<Value>), BackendError> {
        self.invoke_at(script, &self.record_key(key), args, operation)
            .await
    }

    /// As [`invoke`](Self::invoke) on a record key; with
    /// [`RedisBackend::with_replica_acks`], `WAIT` follows the script in the
    /// same pipeline and its reply comes second.
    async fn invoke_at(
        &self,
        script: &LuaScript,
        record_key: &str,
        args: &[&[u8]],
        operation: Operation,
    ) -> Result<(Value, Option<Value>), BackendError> {
        let acks = self.replica_acks.as_ref().filter(|_| operation.waits());
        let command = |name: &str, script_arg: &str| {
            let mut command = redis::cmd(name);
            command.arg(script_arg).arg(1).arg(record_key);
            for arg in args {
                command.arg(*arg);
            }
            command
        };
        let mut connection = self.connection.handle();
        let reply = match self
            .send(&mut connection, command("EVALSHA", script.sha1()), acks)
            .await
        {
            Err(error) if error.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                self.send(&mut connection, command("EVAL", script.source()), acks)
                    .await
            }
            reply => reply,
        };
        reply.map_err(|error| self.failed(record_key, error, operation.name()))
    }

    /// Sends `command`, followed by `WAIT` when acks are asked for.
    pub(crate) async fn send(
        &self,
        connection: &mut Handle,
        command: redis::Cmd,
        acks: Option<&ReplicaAcks>,
    ) -> Result<(Value, Option<Value>), RedisError> {
        let Some(acks) = acks else {
            return command
                .query_async(connection)
                .await
                .map(|reply| (reply, None));
        };
        let mut pipeline = redis::pipe();
        // Each reply on its own: a script's NOSCRIPT must not hide the WAIT
        // reply, nor the other way round.
        pipeline.ignore_errors().add_command(command);
        acks.append_to(&mut pipeline);
        let replies: Vec<Value> = pipeline.query_async(connection).await?;
        let mut replies = replies.into_iter();
        match (replies.next(), replies.next()) {
            (Some(Value::ServerError(error)), Some(_)) => Err(error.into()),
            (Some(reply), Some(wait)) => Ok((reply, Some(wait))),
            _ => Err(RedisError::from((
                ErrorKind::Parse,
                "a pipeline of a command and WAIT did not answer twice",
            ))),
        }
    }

    /// Sends the plain claim, `SET key claim NX GET PX 2*lease`, with a
    /// local cache the record's `PTTL`, and with replica acks `WAIT`, all in
    /// the same round trip.
    async fn send_claim(
        &self,
        key: &str,
        claim: &[u8],
        lease_ms: u64,
    ) -> Result<(Value, Option<i64>, Option<Value>), BackendError> {
        let record_key = RecordKey {
            prefix: &self.key_prefix,
            key,
        };
        // Sized for the whole command up front: grown argument by argument,
        // its buffers were reallocated several times per claim.
        let data_len = 3 + self.key_prefix.len() + key.len() + claim.len() + 2 + 3 + 2 + 20;
        let mut command = redis::Cmd::with_capacity(7, data_len);
        command
            .arg("SET")
            .arg(record_key)
            .arg(claim)
            .arg("NX")
            .arg("GET")
            .arg("PX")
            .arg(2 * lease_ms);
        let mut connection = self.connection.handle();
        let sent = match (self.local_cache.is_some(), &self.replica_acks) {
            (false, None) => command
                .query_async(&mut connection)
                .await
                .map(|reply| (reply, None, None)),
            (true, None) => {
                // In one transaction: pipelined alone, the record could
                // expire and be claimed again between the two, and the cache
                // would keep the old result for the new record's lifetime.
                // Both name one key, so on a cluster they go to one master.
                let mut transaction = redis::pipe();
                transaction
                    .atomic()
                    .add_command(command)
                    .cmd("PTTL")
                    .arg(record_key);
                transaction
                    .query_async::<(Value, i64)>(&mut connection)
                    .await
                    .map(|(reply, expires_in_ms)| (reply, Some(expires_in_ms), None))
            }
            (false, Some(acks)) => self
                .send(&mut connection, command, Some(acks))
                .await
                .map(|(reply, wait)| (reply, None, wait)),
            (true, Some(acks)) => {
                // The transaction as above, spelled out, and WAIT after it:
                // inside MULTI a WAIT would not wait. Every reply is read,
                // so a refusal of the queued SET (READONLY on a demoted
                // primary, a syntax error) shows as itself, not as EXEC's
                // abort.
                let mut pipeline = redis::pipe();
                pipeline
                    .ignore_errors()
                    .cmd("MULTI")
                    .add_command(command)
                    .cmd("PTTL")
                    .arg(record_key)
                    .cmd("EXEC");
                acks.append_to(&mut pipeline);
                match pipeline.query_async::<Vec<Value>>(&mut connection).await {
                    Ok(replies) => transaction_with_wait(replies),
                    Err(error) => Err(error),
                }
            }
        };
        sent.map_err(|error| {
            // Inside a transaction the refusal comes back as its abort, which
            // names the queued command's error in its text only.
            if error
                .detail()
                .is_some_and(|detail| detail.contains("syntax error"))
                || error.to_string().contains("syntax error")
            {
                BackendError::new(
                    BackendErrorKind::Other,
                    "Redis refused SET with both NX and GET: RedisBackend needs Redis 7.0 or newer (or Valkey)",
                )
                .with_source(error)
            } else {
                self.failed(&self.record_key(key), error, "claim")
            }
        })
    }

    /// A claim on a full server: a plain `GET`, which a full server still
    /// answers. Only a completed record is an answer; anything else (absent,
    /// in progress) would need a write, so the claim stays refused as full.
    async fn read_while_full(
        &self,
        key: &str,
        fingerprint: &Fingerprint,
        token: FencingToken,
        full: BackendError,
    ) -> Result<ClaimOutcome, BackendError> {
        let record_key = self.record_key(key);
        let found: Option<Vec<u8>> = redis::cmd("GET")
            .arg(&record_key)
            .query_async(&mut self.connection.handle())
            .await
            .map_err(|error| self.failed(&record_key, error, "claim"))?;
        match found.map(|record| record::read(record, fingerprint, token)) {
            Some(Ok(Found::Completed(output))) => Ok(ClaimOutcome::Completed { output }),
            Some(Ok(Found::Mismatch)) => Ok(ClaimOutcome::Mismatch),
            Some(Err(reason)) => Err(corrupt(&record_key, "claim", &reason)),
            // This claim landed before (its answer was lost) and holds the
            // key; with replica acks, nothing here says the replicas have it.
            Some(Ok(Found::Mine)) if self.replica_acks.is_none() => Ok(ClaimOutcome::Acquired {
                token,
                took_over: false,
            }),
            Some(Ok(Found::InProgress | Found::Mine)) | None => Err(full),
        }
    }

    /// The claim script, for a key found in progress by the plain claim.
    async fn claim_with_script(
        &self,
        key: &str,
        record_key: &str,
        fingerprint: &Fingerprint,
        token: FencingToken,
        lease_arg: &[u8],
    ) -> Result<ClaimOutcome, BackendError> {
        let (reply, wait) = self
            .invoke_at(
                &CLAIM,
                record_key,
                &[fingerprint.as_bytes(), &record::token_hex(token), lease_arg],
                Operation::Claim,
            )
            .await?;
        let outcome = parse_claim(key, token, reply)?;
        if matches!(outcome, ClaimOutcome::Acquired { .. }) {
            self.check_acks(wait.as_ref(), record_key, "claim")?;
        }
        Ok(outcome)
    }

    /// With replica acks, whether the `WAIT` after a write counted enough
    /// replicas; the write is not relied on otherwise.
    pub(crate) fn check_acks(
        &self,
        wait: Option<&Value>,
        record_key: &str,
        operation: &str,
    ) -> Result<(), BackendError> {
        match (&self.replica_acks, wait) {
            (Some(acks), Some(wait)) => acks.check(wait, record_key, operation).inspect_err(|_| {
                // A primary whose replicas went away may have been replaced
                // by one of them.
                self.connection.unacknowledged();
            }),
            (Some(_), None) => Err(unexpected(record_key, operation, &Value::Nil)),
            (None, _) => Ok(()),
        }
    }

    /// The claim `token` holds at `key`, as this process wrote it, and its
    /// record key, read from the table by `look`: `HeldClaims::take` for
    /// the completion and the release, which end it whatever they answer,
    /// `HeldClaims::get` for a renewal.
    fn held_claim(
        &self,
        key: &str,
        token: FencingToken,
        look: fn(&HeldClaims, &str, FencingToken) -> Option<Vec<u8>>,
    ) -> Option<(String, Vec<u8>)> {
        if !self.capabilities.any() {
            return None;
        }
        let record_key = self.record_key(key);
        look(&self.held_claims, &record_key, token).map(|claim| (record_key, claim))
    }

    async fn compare_and_set(
        &self,
        script: &LuaScript,
        key: &str,
        args: &[&[u8]],
        operation: Operation,
    ) -> Result<CasOutcome, BackendError> {
        let (reply, wait) = self.invoke(script, key, args, operation).await?;
        let waits = operation.waits();
        let operation = operation.name();
        match reply {
            Value::Int(1) => {
                if waits {
                    self.check_acks(wait.as_ref(), &self.record_key(key), operation)?;
                }
                Ok(CasOutcome::Applied)
            }
            Value::Int(0) => Ok(CasOutcome::Fenced),
            other => Err(unexpected(key, operation, &other)),
        }
    }
}

#[async_trait]
impl Backend for RedisBackend {
    async fn claim(
        &self,
        key: &str,
        fingerprint: &Fingerprint,
        token: FencingToken,
        lease: Duration,
    ) -> Result<ClaimOutcome, BackendError> {
        let lease_ms = checked_millis(lease, limits::check_lease, "claim")?;
        // Cached by the whole Redis key: clones with other key prefixes share
        // the cache, and their records are other records.
        let cached_as = self
            .local_cache
            .as_ref()
            .map(|cache| (cache, self.record_key(key)));
        if let Some((cache, record_key)) = &cached_as {
            match cache.get(record_key, fingerprint) {
                Some(Cached::Completed(output)) => return Ok(ClaimOutcome::Completed { output }),
                Some(Cached::Mismatch) => return Ok(ClaimOutcome::Mismatch),
                None => {}
            }
        }
        let claim = record::claim(fingerprint, token, lease_ms);
        // Only a cached result needs to know when it was read.
        let sent_at = cached_as.as_ref().map(|_| Instant::now());
        let (reply, expires_in_ms, wait) = match self.send_claim(key, &claim, lease_ms).await {
            Ok(sent) => sent,
            // A full server refuses the claim's `SET` even when it would only
            // have returned a stored record: read it, so stored results still
            // replay (and mismatch), and only new keys fail closed.
            Err(error) if error.kind() == BackendErrorKind::Capacity => {
                return self.read_while_full(key, fingerprint, token, error).await;
            }
            Err(error) => return Err(error),
        };
        let record_key = || self.record_key(key);
        match reply {
            Value::Nil => {
                let record_key = record_key();
                self.check_acks(wait.as_ref(), &record_key, "claim")?;
                self.remember_claim(&record_key, token, claim, lease_ms);
                Ok(ClaimOutcome::Acquired {
                    token,
                    took_over: false,
                })
            }
            Value::BulkString(found) => match record::read(found, fingerprint, token) {
                Ok(Found::Completed(output)) => {
                    if let (Some((cache, record_key)), Some(sent_at), Some(Ok(expires_in_ms))) =
                        (&cached_as, sent_at, expires_in_ms.map(u64::try_from))
                    {
                        let expires_in = Duration::from_millis(expires_in_ms);
                        cache.insert(record_key, fingerprint, &output, sent_at, expires_in);
                    }
                    Ok(ClaimOutcome::Completed { output })
                }
                Ok(Found::Mismatch) => Ok(ClaimOutcome::Mismatch),
                // This claim, sent again (the transport retried it): the
                // first one holds the key.
                Ok(Found::Mine) if self.replica_acks.is_none() => {
                    self.remember_claim(&record_key(), token, claim, lease_ms);
                    Ok(ClaimOutcome::Acquired {
                        token,
                        took_over: false,
                    })
                }
                // Sent again on a fresh connection, this claim wrote nothing
                // there, and a WAIT on it would count nothing of the first
                // copy's write: the claim script rewrites the record, and
                // waits for that.
                Ok(Found::Mine | Found::InProgress) => {
                    let record_key = record_key();
                    let lease_arg = &claim[record::HEADER_LEN..];
                    let outcome = self
                        .claim_with_script(key, &record_key, fingerprint, token, lease_arg)
                        .await?;
                    // The script wrote the same bytes as the plain claim.
                    if matches!(outcome, ClaimOutcome::Acquired { .. }) {
                        self.remember_claim(&record_key, token, claim, lease_ms);
                    }
                    Ok(outcome)
                }
                Err(reason) => Err(corrupt(&record_key(), "claim", &reason)),
            },
            other => Err(unexpected(&record_key(), "claim", &other)),
        }
    }

    async fn complete(
        &self,
        key: &str,
        token: FencingToken,
        output: &[u8],
        ttl: Duration,
    ) -> Result<CasOutcome, BackendError> {
        if output.len() > self.max_output_bytes {
            return Err(BackendError::output_too_large(
                output.len(),
                self.max_output_bytes,
                "RedisBackend::with_max_output_bytes",
            ));
        }
        let ttl_ms = checked_millis(ttl, limits::check_ttl, "complete")?;
        if let Some((record_key, claim)) = self.held_claim(key, token, HeldClaims::take) {
            if self.capabilities.set_ifeq() {
                if let Some(outcome) = self
                    .complete_plain(&record_key, &claim, output, ttl_ms)
                    .await?
                {
                    return Ok(outcome);
                }
            }
        }
        let token_arg = record::token_hex(token);
        let ttl_arg = ttl_ms.to_string();
        self.compare_and_set(
            &COMPLETE,
            key,
            &[&token_arg, output, ttl_arg.as_bytes()],
            Operation::Complete,
        )
        .await
    }

    async fn release(&self, key: &str, token: FencingToken) -> Result<CasOutcome, BackendError> {
        if let Some((record_key, claim)) = self.held_claim(key, token, HeldClaims::take) {
            if self.capabilities.delifeq() {
                if let Some(outcome) = self.release_plain(&record_key, &claim).await? {
                    return Ok(outcome);
                }
            }
        }
        let token_arg = record::token_hex(token);
        self.compare_and_set(&RELEASE, key, &[&token_arg], Operation::Release)
            .await
    }

    async fn renew(
        &self,
        key: &str,
        token: FencingToken,
        lease: Duration,
    ) -> Result<CasOutcome, BackendError> {
        let lease_ms = checked_millis(lease, limits::check_lease, "renew")?;
        let lease_arg = lease_ms.to_string();
        let held = self.held_claim(key, token, HeldClaims::get);
        if let Some((record_key, claim)) = &held {
            if self.capabilities.set_ifeq() {
                let renewed = plain_commands::renewed(claim, lease_arg.as_bytes());
                if let Some(outcome) = self
                    .renew_plain(record_key, claim, &renewed, lease_ms)
                    .await?
                {
                    self.held_claims
                        .renewed(record_key, token, renewed, lease_ms);
                    return Ok(outcome);
                }
            }
        }
        let token_arg = record::token_hex(token);
        let outcome = self
            .compare_and_set(
                &RENEW,
                key,
                &[&token_arg, lease_arg.as_bytes()],
                Operation::Renew,
            )
            .await?;
        // The script wrote the claim's header with the new lease.
        if let (CasOutcome::Applied, Some((record_key, claim))) = (outcome, &held) {
            let renewed = plain_commands::renewed(claim, lease_arg.as_bytes());
            self.held_claims
                .renewed(record_key, token, renewed, lease_ms);
        }
        Ok(outcome)
    }

    /// A clone: a shared handle on the same connection, so a dropped
    /// call's release is sent after its claim on that one connection.
    fn detached(&self) -> Option<Arc<dyn Backend>> {
        Some(Arc::new(self.clone()))
    }
}

/// The replies of `MULTI`, `SET`, `PTTL`, `EXEC`, `WAIT`: the claim's reply,
/// the record's `PTTL` and the `WAIT` reply, or the first refusal.
fn transaction_with_wait(
    replies: Vec<Value>,
) -> Result<(Value, Option<i64>, Option<Value>), RedisError> {
    if let Some(refused) = replies.iter().find_map(|reply| match reply {
        Value::ServerError(error) => Some(error.clone()),
        _ => None,
    }) {
        return Err(refused.into());
    }
    let mut replies = replies.into_iter().skip(3);
    match (replies.next(), replies.next()) {
        (Some(Value::Array(executed)), Some(wait)) => {
            let mut executed = executed.into_iter();
            match (executed.next(), executed.next()) {
                (Some(reply), Some(Value::Int(expires_in_ms))) => {
                    Ok((reply, Some(expires_in_ms), Some(wait)))
                }
                other => Err(RedisError::from((
                    ErrorKind::Parse,
                    "unexpected reply to a claim in a transaction",
                    format!("{other:?}"),
                ))),
            }
        }
        _ => Err(RedisError::from((
            ErrorKind::Parse,
            "unexpected reply to a claim in a transaction",
        ))),
    }
}

/// The operation a script runs for, in error messages, and whether it waits
/// for replicas.
#[derive(Clone, Copy, Debug)]
enum Operation {
    Claim,
    Complete,
    Release,
    Renew,
}

impl Operation {
    fn name(self) -> &'static str {
        match self {
            Self::Claim => "claim",
            Self::Complete => "complete",
            Self::Release => "release",
            Self::Renew => "renew",
        }
    }

    /// What a failover must not forget: a claim (or a duplicate runs), a
    /// result (or a retry runs the body again), a renewal (or the promoted
    /// replica holds the shorter lease, and another caller may take over a
    /// body still running). A lost release only leaves a claim that lapses
    /// at its lease end: retries wait or answer `InProgress` until then, and
    /// none runs twice; a release is not worth the wait.
    fn waits(self) -> bool {
        !matches!(self, Self::Release)
    }
}

/// A record key written straight into a command, `{prefix}{key}`, without
/// building the `String` first: the claim is on every call's path.
#[derive(Clone, Copy)]
struct RecordKey<'a> {
    prefix: &'a str,
    key: &'a str,
}

impl ToRedisArgs for RecordKey<'_> {
    fn write_redis_args<W: ?Sized + RedisWrite>(&self, out: &mut W) {
        let mut arg = out.writer_for_next_arg();
        // Writing into the command's own buffer cannot fail.
        let _ = arg.write_all(self.prefix.as_bytes());
        let _ = arg.write_all(self.key.as_bytes());
    }
}

/// Whole milliseconds of a lease or ttl within the core's limits
/// (`idempotent_core::limits`), or a refusal before anything is sent.
///
/// The engine checks its options before it claims; this guards a caller of
/// the trait: Redis deletes a key given a zero expiry, and refuses one past
/// `i64::MAX` ms only once the body ran, at the completion. Within the
/// limits, twice the longest lease and the longest ttl are far below that.
fn checked_millis(
    duration: Duration,
    check: fn(Duration) -> Result<Duration, Error>,
    operation: &str,
) -> Result<u64, BackendError> {
    match check(duration) {
        // At most 10 years: the millis fit.
        Ok(duration) => Ok(duration.as_millis() as u64),
        Err(Error::InvalidConfig { reason, .. }) => Err(BackendError::new(
            BackendErrorKind::Other,
            format!("RedisBackend refused the {operation}: {reason}"),
        )),
        Err(error) => Err(BackendError::new(
            BackendErrorKind::Other,
            format!("RedisBackend refused the {operation}: {error}"),
        )),
    }
}

fn parse_claim(key: &str, token: FencingToken, reply: Value) -> Result<ClaimOutcome, BackendError> {
    let Value::Array(items) = &reply else {
        return Err(unexpected(key, "claim", &reply));
    };
    match items.as_slice() {
        [Value::Int(scripts::ACQUIRED), Value::Int(took_over)] => Ok(ClaimOutcome::Acquired {
            token,
            took_over: *took_over == 1,
        }),
        [Value::Int(scripts::IN_PROGRESS), Value::Int(remaining)] => Ok(ClaimOutcome::InProgress {
            lease_remaining: Duration::from_millis(u64::try_from(*remaining).unwrap_or(0)),
        }),
        [Value::Int(scripts::COMPLETED), Value::BulkString(output)] => {
            Ok(ClaimOutcome::Completed {
                output: output.clone(),
            })
        }
        [Value::Int(scripts::MISMATCH)] => Ok(ClaimOutcome::Mismatch),
        _ => Err(unexpected(key, "claim", &reply)),
    }
}

#[cfg(test)]
mod tests {
    use idempotent_test_support::RedisServer;

    use super::*;

    /// A claim of another caller whose lease ran out while its key lives on
    /// (60 s held, 30 s left), so the claim script takes it over.
    fn plant_expired_claim(server: &RedisServer, record_key: &str, fingerprint: &Fingerprint) {
        let claim = record::claim(fingerprint, FencingToken::new(0xaa), 60_000);
        let () = server.query(
            redis::cmd("SET")
                .arg(record_key)
                .arg(claim)
                .arg("PX")
                .arg(30_000),
        );
    }

    async fn script_sent_twice(store: &RedisBackend, plant: impl FnOnce(&str)) {
        let fingerprint = Fingerprint::from_bytes([5; 32]);
        let key = "script:sent-twice";
        let record_key = store.record_key(key);
        plant(&record_key);
        let token = FencingToken::generate();
        let lease_arg = b"30000";
        let first = store
            .claim_with_script(key, &record_key, &fingerprint, token, lease_arg)
            .await
            .unwrap();
        assert_eq!(
            first,
            ClaimOutcome::Acquired {
                token,
                took_over: true
            }
        );
        // The transport sends the same script again (its reply was lost).
        let again = store
            .claim_with_script(key, &record_key, &fingerprint, token, lease_arg)
            .await
            .unwrap();
        assert!(
            matches!(again, ClaimOutcome::Acquired { token: held, .. } if held == token),
            "{again:?}"
        );
        // Another token still finds the key in progress.
        let other = store
            .claim_with_script(
                key,
                &record_key,
                &fingerprint,
                FencingToken::generate(),
                lease_arg,
            )
            .await
            .unwrap();
        assert!(
            matches!(other, ClaimOutcome::InProgress { .. }),
            "{other:?}"
        );
    }

    #[tokio::test]
    async fn the_claim_script_sent_twice_acquires_both_times() {
        let server = RedisServer::start();
        let store = RedisBackend::connect(&server.url()).await.unwrap();
        let fingerprint = Fingerprint::from_bytes([5; 32]);
        script_sent_twice(&store, |record_key| {
            plant_expired_claim(&server, record_key, &fingerprint);
        })
        .await;
    }

    #[cfg(feature = "cluster")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_claim_script_sent_twice_acquires_both_times_on_a_cluster() {
        let cluster = idempotent_test_support::RedisCluster::start();
        let store = RedisBackend::connect_cluster(&cluster.urls())
            .await
            .unwrap();
        let fingerprint = Fingerprint::from_bytes([5; 32]);
        script_sent_twice(&store, |record_key| {
            // Planted on the master that owns the key: the others answer MOVED.
            let planted = cluster.nodes().iter().any(|node| {
                node.try_query::<i64>(redis::cmd("EXISTS").arg(record_key))
                    .is_ok()
                    && {
                        plant_expired_claim(node, record_key, &fingerprint);
                        true
                    }
            });
            assert!(planted);
        })
        .await;
    }
}
