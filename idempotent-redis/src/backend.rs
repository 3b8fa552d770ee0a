//! `RedisBackend`: the store, how it is built and configured. Its operations
//! are in `operations.rs`, its errors in `error.rs`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use idempotent_core::{BackendError, BackendErrorKind};
use redis::aio::ConnectionManager;
#[cfg(feature = "cluster")]
use redis::cluster::{ClusterClient, ClusterClientBuilder};
#[cfg(feature = "cluster")]
use redis::cluster_async::ClusterConnection;
use redis::Client;

use crate::capabilities::Capabilities;
use crate::connection::{self, Connection};
use crate::error::backend_error;
use crate::held_claims::HeldClaims;
use crate::local_cache::LocalCache;
use crate::replica_acks::ReplicaAcks;

/// The default key prefix: every record key is `{prefix}{scope}:{digest}`.
pub const DEFAULT_KEY_PREFIX: &str = "idempotent:";
/// The default limit on a stored output: 1 MiB. Large values block Redis'
/// single thread while they are written and read; raise it with care.
pub const DEFAULT_MAX_OUTPUT_BYTES: usize = 1024 * 1024;

/// A [`Backend`](idempotent_core::Backend) on Redis: records shared by every process and machine that
/// uses the same server, or the same Redis Cluster
/// (`connect_cluster`, behind the `cluster` feature).
///
/// Every operation is one atomic command on one key. A claim is a plain
/// `SET key claim NX GET PX ..`: it claims an absent key and returns a
/// completed record as it is, so a replay costs one command and no Lua, and
/// a first run two (the claim, then the completion). Completion, release,
/// renewal and the claim of a key in progress are Lua scripts (run with
/// `EVALSHA`, reloaded after a server restart), compare-and-set on the
/// fencing token; on a server with `SET .. IFEQ` and `DELIFEQ` (Valkey 9)
/// the completion, release and renewal are those plain commands whenever
/// they can decide (see the crate docs). Leases and expiry follow the server's clock, and every key
/// written has an expiry. Needs Redis 7.0 or newer (or Valkey), for `SET`
/// with both `NX` and `GET`.
///
/// A lease or ttl outside [`idempotent_core::limits`] (under 1 ms, a lease
/// over a day, a ttl over 10 years), which only a direct caller of the
/// [`Backend`](idempotent_core::Backend) trait can pass (the runtime refuses them first), is refused
/// with [`BackendErrorKind::Other`] before anything is sent.
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
/// the store. Cloning is cheap and shares the connection.
#[derive(Clone)]
pub struct RedisBackend {
    pub(crate) connection: Connection,
    pub(crate) key_prefix: String,
    pub(crate) max_output_bytes: usize,
    pub(crate) local_cache: Option<Arc<LocalCache>>,
    pub(crate) replica_acks: Option<ReplicaAcks>,
    /// The plain commands the server has; shared by clones, which talk to
    /// the same server.
    pub(crate) capabilities: Arc<Capabilities>,
    pub(crate) held_claims: Arc<HeldClaims>,
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

    /// Connects with an already configured [`redis::Client`], and warns when
    /// the server's `maxmemory-policy` may evict records (see the crate docs).
    pub async fn from_client(client: Client) -> Result<Self, BackendError> {
        let mut connection = connection::connect(client)
            .await
            .map_err(|error| backend_error(error, "could not connect to Redis"))?;
        connection::check_eviction_policy(&mut connection).await;
        Ok(Self::from_connection_manager(connection)
            .detect_plain_commands()
            .await)
    }

    /// Uses an existing [`ConnectionManager`], with its own timeouts and
    /// reconnection settings. Unlike [`connect`](Self::connect), it sends
    /// nothing, so it does not check the server's `maxmemory-policy` (see the
    /// crate docs).
    pub fn from_connection_manager(connection: ConnectionManager) -> Self {
        Self::with_connection(Connection::Single(connection))
    }

    #[cfg(feature = "sentinel")]
    /// Connects to the primary that the Redis Sentinels at `sentinel_urls`
    /// (`redis://host:port` of the sentinels, not of the servers) name
    /// `master_name`, and follows the primary they promote after a failover.
    /// Behind the `sentinel` feature.
    ///
    /// When a command fails in a way that says the node may not be the
    /// primary any more (the connection dropped or timed out, the node
    /// refused, or answered `READONLY` because it was demoted to a replica),
    /// the store asks the sentinels for the primary again in the background
    /// (at most every 250 ms) and, when they name another node, uses it for
    /// later calls. Calls in between fail closed with
    /// [`Error::Backend`](idempotent_core::Error); their bodies do not run.
    ///
    /// ```no_run
    /// # async fn start() -> Result<(), idempotent_core::BackendError> {
    /// use std::time::Duration;
    /// use idempotent_redis::RedisBackend;
    ///
    /// let store = RedisBackend::connect_sentinel(
    ///     &["redis://10.0.0.1:26379", "redis://10.0.0.2:26379", "redis://10.0.0.3:26379"],
    ///     "payments",
    /// )
    /// .await?
    /// .with_replica_acks(1, Duration::from_millis(100))?;
    /// idempotent_core::set_default_backend(store).expect("set once, at start-up");
    /// # Ok(()) }
    /// ```
    ///
    /// Fails at once when no sentinel answers, none knows `master_name`, or
    /// the primary they name cannot be reached. For credentials or TLS,
    /// build a [`SentinelClient`](redis::sentinel::SentinelClient) (its
    /// `SentinelClientBuilder`) and pass it to
    /// [`from_sentinel_client`](Self::from_sentinel_client).
    pub async fn connect_sentinel(
        sentinel_urls: &[impl AsRef<str>],
        master_name: &str,
    ) -> Result<Self, BackendError> {
        let urls: Vec<&str> = sentinel_urls.iter().map(AsRef::as_ref).collect();
        let client = redis::sentinel::SentinelClient::build(
            urls.clone(),
            master_name.to_owned(),
            None,
            redis::sentinel::SentinelServerType::Master,
        )
        .map_err(|error| {
            BackendError::new(
                BackendErrorKind::Other,
                format!("invalid Redis Sentinel URLs {urls:?}"),
            )
            .with_source(error)
        })?;
        Self::from_sentinel_client(client).await
    }

    #[cfg(feature = "sentinel")]
    /// Connects through an already configured
    /// [`SentinelClient`](redis::sentinel::SentinelClient) for the primary
    /// (`SentinelServerType::Master`), as
    /// [`connect_sentinel`](Self::connect_sentinel) does, and warns when the
    /// primary's `maxmemory-policy` may evict records (see the crate docs).
    pub async fn from_sentinel_client(
        client: redis::sentinel::SentinelClient,
    ) -> Result<Self, BackendError> {
        let sentinel = crate::sentinel::Sentinel::connect(client)
            .await
            .map_err(|error| {
                backend_error(
                    error,
                    "could not connect to the primary named by Redis Sentinel",
                )
            })?;
        Ok(Self::with_connection(Connection::Sentinel(sentinel))
            .detect_plain_commands()
            .await)
    }

    #[cfg(feature = "cluster")]
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
    /// After a command that timed out, the store opens a fresh cluster
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

    #[cfg(feature = "cluster")]
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

    #[cfg(feature = "cluster")]
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
        let mut connection = client
            .get_async_connection()
            .await
            .map_err(|error| backend_error(error, "could not connect to the Redis Cluster"))?;
        connection::check_cluster_eviction_policy(&mut connection).await;
        Ok(
            Self::with_connection(Connection::cluster(Some(client), connection))
                .detect_plain_commands()
                .await,
        )
    }

    #[cfg(feature = "cluster")]
    /// Uses an existing [`ClusterConnection`], with its own timeouts and
    /// retries.
    ///
    /// Without its client, the store cannot replace the connection after a
    /// timed-out command; prefer [`from_cluster_client`](Self::from_cluster_client).
    /// It sends nothing, so it does not check the masters' `maxmemory-policy`.
    pub fn from_cluster_connection(connection: ClusterConnection) -> Self {
        Self::with_connection(Connection::cluster(None, connection))
    }

    fn with_connection(connection: Connection) -> Self {
        Self {
            connection,
            key_prefix: DEFAULT_KEY_PREFIX.to_owned(),
            max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES,
            local_cache: None,
            replica_acks: None,
            capabilities: Arc::new(Capabilities::none()),
            held_claims: Arc::new(HeldClaims::new()),
        }
    }

    fn with_capabilities(mut self, capabilities: Capabilities) -> Self {
        self.capabilities = Arc::new(capabilities);
        self
    }

    /// Asks the server (on a cluster, every node) whether it has the plain
    /// compare-and-set commands, `SET .. IFEQ` and `DELIFEQ`, as the
    /// `connect` constructors do, for a store made with
    /// [`from_connection_manager`](Self::from_connection_manager) (or
    /// `from_cluster_connection`), which sends nothing and so runs the Lua
    /// scripts for every completion, release and renewal. See the crate docs
    /// for which servers have them. A server that does not answer has none.
    pub async fn detect_plain_commands(self) -> Self {
        let capabilities = match &self.connection {
            Connection::Single(connection) => Capabilities::detect(&mut connection.clone()).await,
            #[cfg(feature = "sentinel")]
            Connection::Sentinel(sentinel) => {
                Capabilities::detect(&mut sentinel.connection()).await
            }
            #[cfg(feature = "cluster")]
            Connection::Cluster(_) => match self.connection.handle() {
                connection::Handle::Cluster(mut connection) => {
                    Capabilities::detect_cluster(&mut connection).await
                }
                connection::Handle::Single(mut connection) => {
                    Capabilities::detect(&mut connection).await
                }
            },
        };
        self.with_capabilities(capabilities)
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

    /// Sets the largest output [`complete`](idempotent_core::Backend::complete) stores, in
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
    /// remaining time in the same round trip and the same transaction
    /// (`MULTI`, `SET .. NX GET`, `PTTL`, `EXEC`), so the time is the found
    /// record's own. Entries are keyed by the whole Redis key, key prefix and
    /// scope included, so one scope's record is never served to another, nor
    /// one prefix's to a clone with another prefix.
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

    /// Waits, after each claim, completion and renewal, until `replicas`
    /// replicas have it (`WAIT replicas timeout`, in the same pipeline: one
    /// round trip still, longer by the replication lag), so that a failover
    /// to one of them does not forget it. A claim that fewer replicas
    /// acknowledge in time is not relied on: the call fails closed with
    /// [`Error::Backend`](idempotent_core::Error) (`Unavailable`), its body
    /// does not run, and the engine releases the claim. A completion or a
    /// renewal that fewer replicas acknowledge is reported `Unavailable`,
    /// and the engine retries it as any failed one. A release sends no
    /// `WAIT`, and a replay's is not checked: it wrote nothing (see the crate
    /// docs). On Redis Cluster the `WAIT` goes to the master that owns the
    /// key and counts its replicas.
    ///
    /// `replicas` must be at least 1 and `timeout` between 1 ms and 1 s: a
    /// `WAIT` holds every later command on the store's shared connection
    /// until it returns, so while a replica is slow or down every call on
    /// this backend waits up to `timeout` (and then fails closed). Pick a
    /// `timeout` a few times the replication lag, not more.
    ///
    /// `WAIT` does not make Redis strongly consistent: a failover may promote
    /// a replica that did not acknowledge (with more replicas than
    /// `replicas`), and a replica that did may lose the write in its own
    /// crash before it persisted it. The crate docs' table says what
    /// survives what.
    ///
    /// ```no_run
    /// # async fn start() -> Result<(), idempotent_core::BackendError> {
    /// use std::time::Duration;
    /// use idempotent_redis::RedisBackend;
    ///
    /// let store = RedisBackend::connect("redis://10.0.0.1:6379")
    ///     .await?
    ///     .with_replica_acks(1, Duration::from_millis(100))?;
    /// # Ok(()) }
    /// ```
    pub fn with_replica_acks(
        mut self,
        replicas: usize,
        timeout: Duration,
    ) -> Result<Self, BackendError> {
        self.replica_acks = Some(ReplicaAcks::new(replicas, timeout)?);
        Ok(self)
    }

    /// The Redis key of the record stored under `key`.
    pub fn record_key(&self, key: &str) -> String {
        let mut record_key = String::with_capacity(self.key_prefix.len() + key.len());
        record_key.push_str(&self.key_prefix);
        record_key.push_str(key);
        record_key
    }
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackend")
            .field("mode", &self.connection)
            .field("key_prefix", &self.key_prefix)
            .field("max_output_bytes", &self.max_output_bytes)
            .field("local_cache", &self.local_cache.is_some())
            .field("replica_acks", &self.replica_acks)
            .field("set_ifeq", &self.capabilities.set_ifeq())
            .field("delifeq", &self.capabilities.delifeq())
            .finish_non_exhaustive()
    }
}
