//! The connection a `RedisBackend` talks through: one shared, multiplexed,
//! reconnecting connection, cheap to clone.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, RedisError};

/// How long `connect` waits for a TCP connection, and a command for its
/// reply, before failing closed with a `Backend` error.
pub(crate) const CONNECTION_TIMEOUT: Duration = Duration::from_secs(2);
pub(crate) const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Reconnection attempts per failed command before it reports the outage.
const RECONNECT_ATTEMPTS: usize = 2;

pub(crate) async fn connect(client: Client) -> Result<ConnectionManager, RedisError> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECTION_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_number_of_retries(RECONNECT_ATTEMPTS)
        .set_max_delay(Duration::from_millis(500));
    ConnectionManager::new_with_config(client, config).await
}
