//! The `Backend` operations of `RedisBackend`: one command or one script on
//! one key each, and how their replies are read.

use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use idempotent_core::backend::{CasOutcome, ClaimOutcome, FencingToken, Fingerprint};
use idempotent_core::{limits, Backend, BackendError, BackendErrorKind, Error};
use redis::{ErrorKind, RedisWrite, ServerErrorKind, ToRedisArgs, Value};

use crate::error::{corrupt, unexpected};
use crate::local_cache::Cached;
use crate::record::{self, Found};
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
        operation: &str,
    ) -> Result<Value, BackendError> {
        self.invoke_at(script, &self.record_key(key), args, operation)
            .await
    }

    async fn invoke_at(
        &self,
        script: &LuaScript,
        record_key: &str,
        args: &[&[u8]],
        operation: &str,
    ) -> Result<Value, BackendError> {
        let command = |name: &str, script_arg: &str| {
            let mut command = redis::cmd(name);
            command.arg(script_arg).arg(1).arg(record_key);
            for arg in args {
                command.arg(*arg);
            }
            command
        };
        let mut connection = self.connection.handle();
        let reply = match command("EVALSHA", script.sha1())
            .query_async(&mut connection)
            .await
        {
            Err(error) if error.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                command("EVAL", script.source())
                    .query_async(&mut connection)
                    .await
            }
            reply => reply,
        };
        reply.map_err(|error| self.failed(record_key, error, operation))
    }

    /// Sends the plain claim, `SET key claim NX GET PX 2*lease`, and with a
    /// local cache the record's `PTTL` in the same round trip.
    async fn send_claim(
        &self,
        key: &str,
        claim: &[u8],
        lease_ms: u64,
    ) -> Result<(Value, Option<i64>), BackendError> {
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
        let sent = if self.local_cache.is_some() {
            // In one transaction: pipelined alone, the record could expire
            // and be claimed again between the two, and the cache would keep
            // the old result for the new record's lifetime. Both name one
            // key, so on a cluster they go to one master.
            let mut transaction = redis::pipe();
            transaction
                .atomic()
                .add_command(command)
                .cmd("PTTL")
                .arg(record_key);
            transaction
                .query_async::<(Value, i64)>(&mut connection)
                .await
                .map(|(reply, expires_in_ms)| (reply, Some(expires_in_ms)))
        } else {
            command
                .query_async(&mut connection)
                .await
                .map(|reply| (reply, None))
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
            // This claim landed before (its answer was lost) and holds the key.
            Some(Ok(Found::Mine)) => Ok(ClaimOutcome::Acquired {
                token,
                took_over: false,
            }),
            Some(Ok(Found::InProgress)) | None => Err(full),
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
        let reply = self
            .invoke_at(
                &CLAIM,
                record_key,
                &[fingerprint.as_bytes(), &record::token_hex(token), lease_arg],
                "claim",
            )
            .await?;
        parse_claim(key, token, reply)
    }

    async fn compare_and_set(
        &self,
        script: &LuaScript,
        key: &str,
        args: &[&[u8]],
        operation: &str,
    ) -> Result<CasOutcome, BackendError> {
        match self.invoke(script, key, args, operation).await? {
            Value::Int(1) => Ok(CasOutcome::Applied),
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
        let (reply, expires_in_ms) = match self.send_claim(key, &claim, lease_ms).await {
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
            Value::Nil => Ok(ClaimOutcome::Acquired {
                token,
                took_over: false,
            }),
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
                Ok(Found::Mine) => Ok(ClaimOutcome::Acquired {
                    token,
                    took_over: false,
                }),
                Ok(Found::InProgress) => {
                    let lease_arg = &claim[record::HEADER_LEN..];
                    self.claim_with_script(key, &record_key(), fingerprint, token, lease_arg)
                        .await
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
        let token_arg = record::token_hex(token);
        let ttl_arg = checked_millis(ttl, limits::check_ttl, "complete")?.to_string();
        self.compare_and_set(
            &COMPLETE,
            key,
            &[&token_arg, output, ttl_arg.as_bytes()],
            "complete",
        )
        .await
    }

    async fn release(&self, key: &str, token: FencingToken) -> Result<CasOutcome, BackendError> {
        let token_arg = record::token_hex(token);
        self.compare_and_set(&RELEASE, key, &[&token_arg], "release")
            .await
    }

    async fn renew(
        &self,
        key: &str,
        token: FencingToken,
        lease: Duration,
    ) -> Result<CasOutcome, BackendError> {
        let token_arg = record::token_hex(token);
        let lease_arg = checked_millis(lease, limits::check_lease, "renew")?.to_string();
        self.compare_and_set(&RENEW, key, &[&token_arg, lease_arg.as_bytes()], "renew")
            .await
    }

    /// A clone: a shared handle on the same connection, so a dropped
    /// call's release is sent after its claim on that one connection.
    fn detached(&self) -> Option<Arc<dyn Backend>> {
        Some(Arc::new(self.clone()))
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
