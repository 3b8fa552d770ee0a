//! `RedisBackend`: the `Backend` contract on a Redis server.

use std::fmt;
use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use idempotent_core::{
    Backend, BackendError, BackendErrorKind, CasOutcome, ClaimOutcome, FencingToken, Fingerprint,
};
use redis::aio::ConnectionManager;
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::{Client, ErrorKind, RedisError, RedisWrite, ServerErrorKind, ToRedisArgs, Value};

use crate::connection::{self, Connection};
use crate::local_cache::{Cached, LocalCache};
use crate::record::{self, Found};
use crate::scripts::{self, LuaScript, CLAIM, COMPLETE, RELEASE, RENEW};

/// The default key prefix: every record key is `{prefix}{scope}:{digest}`.
pub const DEFAULT_KEY_PREFIX: &str = "idempotent:";
/// The default limit on a stored output: 1 MiB. Large values block Redis'
/// single thread while they are written and read; raise it with care.
pub const DEFAULT_MAX_OUTPUT_BYTES: usize = 1024 * 1024;

/// A [`Backend`] on Redis: records shared by every process and machine that
/// uses the same server, or the same Redis Cluster
/// ([`connect_cluster`](Self::connect_cluster)).
///
/// Every operation is one atomic command on one key. A claim is a plain
/// `SET key claim NX GET PX ..`: it claims an absent key and returns a
/// completed record as it is, so a replay costs one command and no Lua, and
/// a first run two (the claim, then the completion). Completion, release,
/// renewal and the claim of a key in progress are Lua scripts (run with
/// `EVALSHA`, reloaded after a server restart), compare-and-set on the
/// fencing token. Leases and expiry follow the server's clock, and every key
/// written has an expiry. Needs Redis 7.0 or newer (or Valkey), for `SET`
/// with both `NX` and `GET`.
///
/// ```no_run
/// # async fn start() -> Result<(), idempotent_core::BackendError> {
/// use idempotent_redis::RedisBackend;
///
/// let store = RedisBackend::connect("redis://127.0.0.1:6379").await?;
/// idempotent_core::set_default_backend(store).expect("set once, at start-up");
/// # Ok(()) }
/// ```
///
/// The connection is shared and reconnects by itself: when the server goes
/// away, calls fail closed with [`Error::Backend`](idempotent_core::Error)
/// within a few seconds, and work again once it is back, without rebuilding
/// the backend. Cloning is cheap and shares the connection.
#[derive(Clone)]
pub struct RedisBackend {
    connection: Connection,
    key_prefix: String,
    max_output_bytes: usize,
    local_cache: Option<Arc<LocalCache>>,
}

impl RedisBackend {
    /// Connects to the server at `url` (`redis://host:port/db`, `rediss://`
    /// for TLS when the `redis` crate's TLS feature is enabled).
    ///
    /// Fails at once when the server cannot be reached, so a misconfigured
    /// URL shows at start-up, not at the first payment.
    pub async fn connect(url: &str) -> Result<Self, BackendError> {
        let client = Client::open(url).map_err(|error| {
            BackendError::new(
                BackendErrorKind::Other,
                format!("invalid Redis URL {url:?}"),
            )
            .with_source(error)
        })?;
        Self::from_client(client).await
    }

    /// Connects with an already configured [`redis::Client`].
    pub async fn from_client(client: Client) -> Result<Self, BackendError> {
        let connection = connection::connect(client)
            .await
            .map_err(|error| backend_error(error, "could not connect to Redis"))?;
        Ok(Self::from_connection_manager(connection))
    }

    /// Uses an existing [`ConnectionManager`], with its own timeouts and
    /// reconnection settings.
    pub fn from_connection_manager(connection: ConnectionManager) -> Self {
        Self::with_connection(Connection::Single(connection))
    }

    /// Connects to the Redis Cluster that the nodes at `urls` belong to
    /// (`redis://host:port`; one reachable node is enough, the others are
    /// discovered), with bounded timeouts: 2 s to connect to a node, 2 s for
    /// a node's reply, and 5 s for a whole command including its
    /// redirections and retries.
    ///
    /// Redirections (`MOVED`, `ASK`) during a resharding or a failover are
    /// followed, and `TRYAGAIN`, `CLUSTERDOWN` or a dropped connection are
    /// retried with a short backoff, all within those 5 s; past them the
    /// call fails closed with [`Error::Backend`](idempotent_core::Error).
    /// After a command that timed out, the backend opens a fresh cluster
    /// connection in the background (at most once per 5 s) for later calls:
    /// the `redis` crate's cluster connection can wedge for good when a
    /// master dies under load, and this heals it.
    ///
    /// ```no_run
    /// # async fn start() -> Result<(), idempotent_core::BackendError> {
    /// use idempotent_redis::RedisBackend;
    ///
    /// let store = RedisBackend::connect_cluster(&[
    ///     "redis://10.0.0.1:6379",
    ///     "redis://10.0.0.2:6379",
    ///     "redis://10.0.0.3:6379",
    /// ])
    /// .await?;
    /// idempotent_core::set_default_backend(store).expect("set once, at start-up");
    /// # Ok(()) }
    /// ```
    ///
    /// Fails at once when no node can be reached or a URL is invalid. For
    /// TLS, a password or other settings, build the client with
    /// [`cluster_client_builder`](Self::cluster_client_builder) and pass it
    /// to [`from_cluster_client`](Self::from_cluster_client).
    pub async fn connect_cluster(urls: &[impl AsRef<str>]) -> Result<Self, BackendError> {
        let client = Self::cluster_client_builder(urls)
            .build()
            .map_err(|error| {
                let urls: Vec<&str> = urls.iter().map(AsRef::as_ref).collect();
                BackendError::new(
                    BackendErrorKind::Other,
                    format!("invalid Redis Cluster URLs {urls:?}"),
                )
                .with_source(error)
            })?;
        Self::from_cluster_client(client).await
    }

    /// A [`ClusterClientBuilder`] seeded with `urls` and set up as
    /// [`connect_cluster`](Self::connect_cluster) sets it up (its timeouts
    /// and retries), to add TLS, credentials or other settings before
    /// [`from_cluster_client`](Self::from_cluster_client).
    ///
    /// ```no_run
    /// # async fn start() -> Result<(), Box<dyn std::error::Error>> {
    /// use idempotent_redis::RedisBackend;
    ///
    /// let client = RedisBackend::cluster_client_builder(&["redis://10.0.0.1:6379"])
    ///     .username("payments")
    ///     .password("secret")
    ///     .build()?;
    /// let store = RedisBackend::from_cluster_client(client).await?;
    /// # Ok(()) }
    /// ```
    pub fn cluster_client_builder(urls: &[impl AsRef<str>]) -> ClusterClientBuilder {
        connection::cluster_client_builder(urls)
    }

    /// Connects with an already configured [`ClusterClient`], with its own
    /// timeouts and retries. Like [`connect_cluster`](Self::connect_cluster),
    /// it opens a fresh connection from `client` after a command that timed
    /// out.
    ///
    /// A client built with [`ClusterClient::new`] has no response timeout:
    /// a node that hangs then hangs the calls whose keys it owns. Set
    /// `response_timeout` (and `overall_response_timeout`) on its builder, or
    /// start from [`cluster_client_builder`](Self::cluster_client_builder).
    /// Keep reads on the masters (the default): every operation writes or
    /// decides on the record, and a replica may not have a claim or a result
    /// yet.
    pub async fn from_cluster_client(client: ClusterClient) -> Result<Self, BackendError> {
        let connection = client
            .get_async_connection()
            .await
            .map_err(|error| backend_error(error, "could not connect to the Redis Cluster"))?;
        Ok(Self::with_connection(Connection::cluster(
            Some(client),
            connection,
        )))
    }

    /// Uses an existing [`ClusterConnection`], with its own timeouts and
    /// retries.
    ///
    /// Without its client, the backend cannot replace the connection after a
    /// timed-out command; prefer [`from_cluster_client`](Self::from_cluster_client).
    pub fn from_cluster_connection(connection: ClusterConnection) -> Self {
        Self::with_connection(Connection::cluster(None, connection))
    }

    fn with_connection(connection: Connection) -> Self {
        Self {
            connection,
            key_prefix: DEFAULT_KEY_PREFIX.to_owned(),
            max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES,
            local_cache: None,
        }
    }

    /// Puts every record key under `prefix` (default `"idempotent:"`), to
    /// share a server with other data or other applications.
    ///
    /// On Redis Cluster, braces in the prefix (or in a scope) are a hash
    /// tag: `"{idem}:"` would put every record in one slot, on one master.
    #[must_use]
    pub fn with_key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// Sets the largest output [`complete`](Backend::complete) stores, in
    /// bytes (default 1 MiB); larger ones fail with
    /// [`BackendErrorKind::TooLarge`].
    #[must_use]
    pub fn with_max_output_bytes(mut self, bytes: usize) -> Self {
        self.max_output_bytes = bytes;
        self
    }

    /// Keeps up to `max_entries` completed records in this process, so
    /// that replaying them again costs no round trip at all. Off by
    /// default; clones of this backend share the cache.
    ///
    /// A completed record never changes until it expires, so the cache
    /// cannot serve a stale result: an entry lives until the record's own
    /// expiry (the server's remaining time, counted from before the request
    /// was sent), and at most `max_age`. Records are cached when a claim
    /// finds them completed; such a claim asks the server for the record's
    /// remaining time in the same round trip (`SET .. NX GET` and `PTTL`,
    /// pipelined). Keys include the scope, so one scope's record is never
    /// served to another.
    ///
    /// `max_age` bounds how long a record deleted by hand, or forgotten by
    /// a server without persistence, keeps replaying in this process. The
    /// cache holds up to `max_entries` outputs in memory; the oldest entry
    /// is evicted first.
    ///
    /// ```no_run
    /// # async fn start() -> Result<(), idempotent_core::BackendError> {
    /// use std::time::Duration;
    /// use idempotent_redis::RedisBackend;
    ///
    /// let store = RedisBackend::connect("redis://127.0.0.1:6379")
    ///     .await?
    ///     .with_local_cache(10_000, Duration::from_secs(60));
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn with_local_cache(mut self, max_entries: usize, max_age: Duration) -> Self {
        self.local_cache = Some(Arc::new(LocalCache::new(max_entries, max_age)));
        self
    }

    /// The Redis key of the record stored under `key`.
    pub fn record_key(&self, key: &str) -> String {
        let mut record_key = String::with_capacity(self.key_prefix.len() + key.len());
        record_key.push_str(&self.key_prefix);
        record_key.push_str(key);
        record_key
    }

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

    fn failed(&self, record_key: &str, error: RedisError, operation: &str) -> BackendError {
        if error.code() == Some("WRONGTYPE") {
            return corrupt(
                record_key,
                operation,
                "the value at this key is not a string",
            );
        }
        self.connection.failed(&error);
        backend_error(error, &format!("Redis {operation} failed"))
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
        let mut command = redis::cmd("SET");
        command
            .arg(record_key)
            .arg(claim)
            .arg("NX")
            .arg("GET")
            .arg("PX")
            .arg(lease_ms.saturating_mul(2));
        let mut connection = self.connection.handle();
        let sent = if self.local_cache.is_some() {
            let mut pipeline = redis::pipe();
            pipeline.add_command(command).cmd("PTTL").arg(record_key);
            pipeline
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
            if error
                .detail()
                .is_some_and(|detail| detail.contains("syntax error"))
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
        if let Some(cache) = &self.local_cache {
            match cache.get(key, fingerprint) {
                Some(Cached::Completed(output)) => return Ok(ClaimOutcome::Completed { output }),
                Some(Cached::Mismatch) => return Ok(ClaimOutcome::Mismatch),
                None => {}
            }
        }
        let lease_ms = millis(lease);
        let claim = record::claim(fingerprint, token, lease_ms);
        let sent_at = Instant::now();
        let (reply, expires_in_ms) = self.send_claim(key, &claim, lease_ms).await?;
        let record_key = || self.record_key(key);
        match reply {
            Value::Nil => Ok(ClaimOutcome::Acquired {
                token,
                took_over: false,
            }),
            Value::BulkString(found) => match record::read(found, fingerprint, token) {
                Ok(Found::Completed(output)) => {
                    if let (Some(cache), Some(Ok(expires_in_ms))) =
                        (&self.local_cache, expires_in_ms.map(u64::try_from))
                    {
                        let expires_in = Duration::from_millis(expires_in_ms);
                        cache.insert(key, fingerprint, &output, sent_at, expires_in);
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
        let ttl_arg = millis(ttl).to_string();
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
        let lease_arg = millis(lease).to_string();
        self.compare_and_set(&RENEW, key, &[&token_arg, lease_arg.as_bytes()], "renew")
            .await
    }

    /// A clone: a shared handle on the same connection, so a dropped
    /// call's release is sent after its claim on that one connection.
    fn detached(&self) -> Option<Arc<dyn Backend>> {
        Some(Arc::new(self.clone()))
    }
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackend")
            .field("mode", &self.connection)
            .field("key_prefix", &self.key_prefix)
            .field("max_output_bytes", &self.max_output_bytes)
            .field("local_cache", &self.local_cache.is_some())
            .finish_non_exhaustive()
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

/// Whole milliseconds, at least 1: Redis deletes a key given a zero expiry.
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
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

/// A reply no command of this crate gives for a record it wrote: the corrupt
/// marker of a script, or anything else.
fn unexpected(key: &str, operation: &str, reply: &Value) -> BackendError {
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

fn corrupt(key: &str, operation: &str, reason: &str) -> BackendError {
    BackendError::new(
        BackendErrorKind::Corrupt,
        format!("Redis {operation} at {key:?}: {reason} (the key holds data this library did not write)"),
    )
}

fn backend_error(error: RedisError, context: &str) -> BackendError {
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
