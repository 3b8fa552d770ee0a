//! The connection a `RedisBackend` talks through: one shared, multiplexed,
//! reconnecting handle, cheap to clone, onto a single server or a Redis
//! Cluster.

use std::fmt;
#[cfg(any(feature = "cluster", feature = "sentinel"))]
use std::sync::Arc;
#[cfg(feature = "cluster")]
use std::sync::{Mutex, PoisonError, RwLock};
use std::time::Duration;
#[cfg(feature = "cluster")]
use std::time::Instant;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
#[cfg(feature = "cluster")]
use redis::cluster::{ClusterClient, ClusterClientBuilder};
#[cfg(feature = "cluster")]
use redis::cluster_async::ClusterConnection;
use redis::{Client, Cmd, Pipeline, RedisError, RedisFuture, Value};

/// How long `connect` waits for a TCP connection, and a command for its
/// reply, before failing closed with a `Backend` error.
pub(crate) const CONNECTION_TIMEOUT: Duration = Duration::from_secs(2);
pub(crate) const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Reconnection attempts per failed command before it reports the outage.
const RECONNECT_ATTEMPTS: usize = 2;

/// On a cluster, the bound on one whole command: every redirection
/// (`MOVED`, `ASK`), every retry of `TRYAGAIN`, `CLUSTERDOWN` or a lost
/// connection, and every reconnection. A brief hiccup (a slot migration, a
/// node that drops a connection) is absorbed; a dead master or a cluster down
/// for longer fails the call closed after this long.
#[cfg(feature = "cluster")]
pub(crate) const CLUSTER_COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
/// On a cluster, retries of one command (the time bound above usually ends
/// them first).
#[cfg(feature = "cluster")]
const CLUSTER_RETRIES: u32 = 10;
/// On a cluster, the wait before the n-th retry of `TRYAGAIN`, `CLUSTERDOWN`,
/// `MASTERDOWN` or `LOADING` is drawn from `MIN..min(MAX, FACTOR * 2^n)`
/// milliseconds: 50 ms at first, growing to at most 500 ms.
#[cfg(feature = "cluster")]
const CLUSTER_MIN_RETRY_WAIT_MS: u64 = 50;
#[cfg(feature = "cluster")]
const CLUSTER_MAX_RETRY_WAIT_MS: u64 = 500;
#[cfg(feature = "cluster")]
const CLUSTER_RETRY_WAIT_FACTOR_MS: u64 = 25;

pub(crate) async fn connect(client: Client) -> Result<ConnectionManager, RedisError> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECTION_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_number_of_retries(RECONNECT_ATTEMPTS)
        .set_max_delay(Duration::from_millis(500));
    ConnectionManager::new_with_config(client, config).await
}

/// A cluster client builder seeded with `urls`, with the bounded timeouts
/// and retries above.
#[cfg(feature = "cluster")]
pub(crate) fn cluster_client_builder<S: AsRef<str>>(urls: &[S]) -> ClusterClientBuilder {
    ClusterClient::builder(urls.iter().map(|url| url.as_ref().to_owned()))
        .connection_timeout(CONNECTION_TIMEOUT)
        .response_timeout(RESPONSE_TIMEOUT)
        .overall_response_timeout(Some(CLUSTER_COMMAND_TIMEOUT))
        .retries(CLUSTER_RETRIES)
        .min_retry_wait(CLUSTER_MIN_RETRY_WAIT_MS)
        .max_retry_wait(CLUSTER_MAX_RETRY_WAIT_MS)
        .retry_wait_formula(CLUSTER_RETRY_WAIT_FACTOR_MS, 2)
}

/// A single server's connection or a cluster's: both are handles onto
/// shared, multiplexed connections, cheap to clone.
#[derive(Clone)]
pub(crate) enum Connection {
    /// One server (or a proxy in front of many), reconnecting by itself.
    Single(ConnectionManager),
    /// The primary that Redis Sentinel names, followed after a failover.
    #[cfg(feature = "sentinel")]
    Sentinel(Arc<crate::sentinel::Sentinel>),
    /// A Redis Cluster, replaced after a timed-out command (see [`Cluster`]).
    #[cfg(feature = "cluster")]
    Cluster(Arc<Cluster>),
}

impl Connection {
    /// A cluster connection, replaced after a timed-out command when
    /// `client` is given.
    #[cfg(feature = "cluster")]
    pub(crate) fn cluster(client: Option<ClusterClient>, connection: ClusterConnection) -> Self {
        Self::Cluster(Arc::new(Cluster {
            client,
            connection: RwLock::new(connection),
            last_replaced: Mutex::new(None),
        }))
    }

    /// What one call talks through. A clone of a shared handle: concurrent
    /// calls share the underlying connections.
    pub(crate) fn handle(&self) -> Handle {
        match self {
            Self::Single(connection) => Handle::Single(connection.clone()),
            #[cfg(feature = "sentinel")]
            Self::Sentinel(sentinel) => Handle::Single(sentinel.connection()),
            #[cfg(feature = "cluster")]
            Self::Cluster(cluster) => Handle::Cluster(
                cluster
                    .connection
                    .read()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone(),
            ),
        }
    }

    /// Tells the connection that a command through it failed with `error`.
    pub(crate) fn failed(&self, error: &RedisError) {
        // A single server's connection manager reconnects by itself.
        match self {
            Self::Single(_) => {}
            #[cfg(feature = "sentinel")]
            Self::Sentinel(sentinel) => sentinel.failed(error),
            #[cfg(feature = "cluster")]
            Self::Cluster(cluster) => {
                if error.is_timeout() {
                    cluster.replace_in_background();
                }
            }
        }
        #[cfg(not(any(feature = "cluster", feature = "sentinel")))]
        let _ = error;
    }
}

impl Connection {
    /// Tells the connection that a write through it was not acknowledged
    /// by enough replicas.
    pub(crate) fn unacknowledged(&self) {
        #[cfg(feature = "sentinel")]
        if let Self::Sentinel(sentinel) = self {
            sentinel.resolve_in_background();
        }
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Single(_) => "Single",
            #[cfg(feature = "sentinel")]
            Self::Sentinel(_) => "Sentinel",
            #[cfg(feature = "cluster")]
            Self::Cluster(_) => "Cluster",
        })
    }
}

/// A cluster connection that replaces itself after a timed-out command.
///
/// The cluster client of the `redis` crate (1.8) can wedge: when a master
/// dies while commands are in flight, its slot-map refresh may wait forever
/// for a lock held by a request it no longer polls, and from then on every
/// command times out, even after the master is back. A command that timed
/// out (a hung or dead node, or that wedge) therefore opens a fresh
/// connection in the background, at most once per command bound, and later
/// calls use it. The old one is closed when its last in-flight call ends.
#[cfg(feature = "cluster")]
pub(crate) struct Cluster {
    /// Where fresh connections come from; `None` for a connection handed
    /// over without its client, which is then never replaced.
    client: Option<ClusterClient>,
    connection: RwLock<ClusterConnection>,
    last_replaced: Mutex<Option<Instant>>,
}

#[cfg(feature = "cluster")]
impl Cluster {
    fn replace_in_background(self: &Arc<Self>) {
        let Some(client) = self.client.clone() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        {
            let mut last = self
                .last_replaced
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if last.is_some_and(|at| at.elapsed() < CLUSTER_COMMAND_TIMEOUT) {
                return;
            }
            *last = Some(Instant::now());
        }
        let cluster = Arc::downgrade(self);
        runtime.spawn(async move {
            match tokio::time::timeout(CLUSTER_COMMAND_TIMEOUT, client.get_async_connection()).await
            {
                Ok(Ok(fresh)) => {
                    if let Some(cluster) = cluster.upgrade() {
                        *cluster
                            .connection
                            .write()
                            .unwrap_or_else(PoisonError::into_inner) = fresh;
                        tracing::warn!(
                            "a Redis Cluster command timed out: opened a new cluster connection"
                        );
                    }
                }
                Ok(Err(error)) => tracing::warn!(
                    %error,
                    "a Redis Cluster command timed out, and a new cluster connection could not \
                     be opened; keeping the old one"
                ),
                Err(_) => tracing::warn!(
                    "a Redis Cluster command timed out, and opening a new cluster connection \
                     timed out too; keeping the old one"
                ),
            }
        });
    }
}

/// The connection one call talks through.
pub(crate) enum Handle {
    Single(ConnectionManager),
    #[cfg(feature = "cluster")]
    Cluster(ClusterConnection),
}

impl ConnectionLike for Handle {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(connection) => connection.req_packed_command(cmd),
            #[cfg(feature = "cluster")]
            Self::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(connection) => connection.req_packed_commands(pipeline, offset, count),
            #[cfg(feature = "cluster")]
            Self::Cluster(connection) => connection.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(connection) => connection.get_db(),
            #[cfg(feature = "cluster")]
            Self::Cluster(connection) => connection.get_db(),
        }
    }
}

/// The only `maxmemory-policy` that never deletes a key before its expiry.
const NO_EVICTION: &str = "noeviction";

/// Warns when the server may evict keys to free memory. Every key this
/// crate writes has an expiry, so `volatile-*` policies may evict them as
/// well as `allkeys-*`: an evicted claim lets a duplicate run the body while
/// the first call still runs, an evicted result lets a retry run it again.
/// Managed services often disable or rename `CONFIG`; then nothing is known
/// and the connection is used all the same.
pub(crate) async fn check_eviction_policy(connection: &mut ConnectionManager) {
    let reply = policy_query().query_async::<Value>(connection).await;
    match reply.map_err(|error| error.to_string()).and_then(policy) {
        Ok(policy) if policy == NO_EVICTION => {}
        Ok(policy) => tracing::warn!(%policy, "Redis may evict claims and results"),
        Err(error) => tracing::debug!(%error, "could not read maxmemory-policy"),
    }
}

/// [`check_eviction_policy`] on every master of a cluster.
#[cfg(feature = "cluster")]
pub(crate) async fn check_cluster_eviction_policy(connection: &mut ClusterConnection) {
    use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo};

    let routing = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
    let replies = match connection.route_command(policy_query(), routing).await {
        Ok(Value::Map(replies)) => replies,
        Ok(other) => {
            tracing::debug!(reply = ?other, "could not read maxmemory-policy");
            return;
        }
        Err(error) => {
            tracing::debug!(%error, "could not read maxmemory-policy");
            return;
        }
    };
    for (node, reply) in replies {
        let node = match &node {
            Value::BulkString(address) => String::from_utf8_lossy(address).into_owned(),
            other => format!("{other:?}"),
        };
        match policy(reply) {
            Ok(policy) if policy == NO_EVICTION => {}
            Ok(policy) => tracing::warn!(%node, %policy, "Redis may evict claims and results"),
            Err(error) => tracing::debug!(%node, %error, "could not read maxmemory-policy"),
        }
    }
}

fn policy_query() -> Cmd {
    let mut command = redis::cmd("CONFIG");
    command.arg("GET").arg("maxmemory-policy");
    command
}

/// The policy in a `CONFIG GET maxmemory-policy` reply: `[name, value]`
/// (RESP2) or `{name: value}` (RESP3).
fn policy(reply: Value) -> Result<String, String> {
    let value = match reply {
        Value::Array(mut items) if items.len() == 2 => items.pop(),
        Value::Map(mut entries) if entries.len() == 1 => entries.pop().map(|(_, value)| value),
        Value::ServerError(error) => return Err(error.to_string()),
        _ => None,
    };
    match value {
        Some(Value::BulkString(policy)) => Ok(String::from_utf8_lossy(&policy).into_owned()),
        Some(Value::SimpleString(policy)) => Ok(policy),
        _ => Err(format!("unexpected reply {value:?}")),
    }
}
