//! The connection a `RedisBackend` talks through: one shared, multiplexed,
//! reconnecting connection to a server or to a cluster, cheap to clone.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Client, Cmd, Pipeline, RedisError, RedisFuture, Value};

/// How long `connect` waits for a TCP connection, and a command for its
/// reply, before failing closed with a `Backend` error.
pub(crate) const CONNECTION_TIMEOUT: Duration = Duration::from_secs(2);
pub(crate) const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Reconnection attempts per failed command before it reports the outage.
const RECONNECT_ATTEMPTS: usize = 2;
/// Retries of a cluster request (MOVED/ASK redirections, TRYAGAIN during a
/// resharding, a failover), all within one response timeout overall.
const CLUSTER_RETRIES: u32 = 4;

/// A single server or a cluster; scripts are routed by their one key.
#[derive(Clone)]
pub(crate) enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Connection {
    pub(crate) fn mode(&self) -> &'static str {
        match self {
            Self::Single(_) => "single server",
            Self::Cluster(_) => "cluster",
        }
    }
}

pub(crate) async fn connect(client: Client) -> Result<ConnectionManager, RedisError> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECTION_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_number_of_retries(RECONNECT_ATTEMPTS)
        .set_max_delay(Duration::from_millis(500));
    ConnectionManager::new_with_config(client, config).await
}

pub(crate) fn cluster_client<T: AsRef<str>>(urls: &[T]) -> Result<ClusterClient, RedisError> {
    ClusterClient::builder(urls.iter().map(|url| url.as_ref().to_owned()))
        .connection_timeout(CONNECTION_TIMEOUT)
        .response_timeout(RESPONSE_TIMEOUT)
        .retries(CLUSTER_RETRIES)
        .min_retry_wait(10)
        .max_retry_wait(500)
        .build()
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(connection) => connection.req_packed_command(cmd),
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
            Self::Cluster(connection) => connection.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(connection) => connection.get_db(),
            Self::Cluster(connection) => connection.get_db(),
        }
    }
}
