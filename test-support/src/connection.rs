//! Plain synchronous connections to a local server.

use std::time::Duration;

use redis::{Client, Connection, IntoConnectionInfo, RedisResult};

/// The URL of a server on a loopback port.
pub(crate) fn url(port: u16) -> String {
    format!("redis://127.0.0.1:{port}")
}

/// A fresh connection with `timeout` for connecting, reading and writing, so that a paused or
/// wedged server fails the test instead of hanging it.
///
/// It skips redis-rs's `CLIENT SETINFO` handshake: that would show up in `INFO commandstats`,
/// and it would block the connect itself against a paused server.
pub(crate) fn connect(port: u16, timeout: Duration) -> RedisResult<Connection> {
    let info = url(port).into_connection_info()?;
    let settings = info.redis_settings().clone().set_skip_set_lib_name();
    let client = Client::open(info.set_redis_settings(settings))?;
    let connection = client.get_connection_with_timeout(timeout)?;
    connection.set_read_timeout(Some(timeout))?;
    connection.set_write_timeout(Some(timeout))?;
    Ok(connection)
}
