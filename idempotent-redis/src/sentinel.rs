//! A connection to the primary that Redis Sentinel names, moved to the
//! promoted primary after a failover.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use redis::sentinel::SentinelClient;
use redis::{Client, RedisError};

use crate::connection;

/// The least time between two look-ups of the primary: a dead primary fails
/// every call, and each failure asks for one.
const MIN_RESOLVE_INTERVAL: Duration = Duration::from_millis(250);

/// How long one look-up may take: asking the sentinels, then checking that
/// the node they name says it is the primary.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(4);

/// The current primary's connection, and how to find the next one.
///
/// The connection manager reconnects by itself to the address it was given,
/// which after a failover is a dead node or a demoted one (a replica, which
/// answers writes with `READONLY`). So a command that failed that way asks
/// the sentinels for the primary in the background, and when they name
/// another node, later calls use a connection to it; calls in between fail
/// closed.
pub(crate) struct Sentinel {
    client: tokio::sync::Mutex<SentinelClient>,
    primary: RwLock<Primary>,
    resolving: AtomicBool,
    last_resolved: Mutex<Option<Instant>>,
}

struct Primary {
    address: String,
    connection: ConnectionManager,
}

impl Sentinel {
    /// Asks the sentinels for the primary and connects to it.
    pub(crate) async fn connect(mut client: SentinelClient) -> Result<Arc<Self>, RedisError> {
        let primary = resolve(&mut client).await?;
        let (address, mut connection) = primary;
        connection::check_eviction_policy(&mut connection).await;
        Ok(Arc::new(Self {
            client: tokio::sync::Mutex::new(client),
            primary: RwLock::new(Primary {
                address,
                connection,
            }),
            resolving: AtomicBool::new(false),
            last_resolved: Mutex::new(None),
        }))
    }

    /// The current primary's connection.
    pub(crate) fn connection(&self) -> ConnectionManager {
        self.primary
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .connection
            .clone()
    }

    /// After a failed command: when the node may not be the primary any
    /// more, looks the primary up again in the background.
    pub(crate) fn failed(self: &Arc<Self>, error: &RedisError) {
        let may_have_moved = error.is_io_error()
            || error.is_timeout()
            || error.is_connection_dropped()
            || error.is_connection_refusal()
            || error.code() == Some("READONLY")
            || error.code() == Some("MASTERDOWN");
        if may_have_moved {
            self.resolve_in_background();
        }
    }

    /// Looks the primary up again in the background, at most every 250 ms.
    pub(crate) fn resolve_in_background(self: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        {
            let mut last = self
                .last_resolved
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if last.is_some_and(|at| at.elapsed() < MIN_RESOLVE_INTERVAL) {
                return;
            }
            if self.resolving.swap(true, Ordering::AcqRel) {
                return;
            }
            *last = Some(Instant::now());
        }
        let sentinel = Arc::downgrade(self);
        runtime.spawn(async move {
            let Some(sentinel) = sentinel.upgrade() else {
                return;
            };
            sentinel.resolve_now().await;
            sentinel.resolving.store(false, Ordering::Release);
        });
    }

    async fn resolve_now(&self) {
        let resolved = {
            let mut client = self.client.lock().await;
            resolve_address(&mut client).await
        };
        let client = match resolved {
            Ok(client) => client,
            Err(error) => {
                tracing::debug!(%error, "Redis Sentinel named no reachable primary yet");
                return;
            }
        };
        let address = client.get_connection_info().addr().to_string();
        let current = self
            .primary
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .address
            .clone();
        if address == current {
            return;
        }
        match connection::connect(client).await {
            Ok(connection) => {
                tracing::warn!(primary = %address, previous = %current, "following the promoted Redis primary");
                *self.primary.write().unwrap_or_else(PoisonError::into_inner) = Primary {
                    address,
                    connection,
                };
            }
            Err(error) => {
                tracing::debug!(primary = %address, %error, "could not connect to the promoted Redis primary");
            }
        }
    }
}

/// The primary the sentinels name, checked to say it is one, and a
/// connection to it.
async fn resolve(client: &mut SentinelClient) -> Result<(String, ConnectionManager), RedisError> {
    let primary = resolve_address(client).await?;
    let address = primary.get_connection_info().addr().to_string();
    Ok((address, connection::connect(primary).await?))
}

async fn resolve_address(client: &mut SentinelClient) -> Result<Client, RedisError> {
    match tokio::time::timeout(RESOLVE_TIMEOUT, client.async_get_client()).await {
        Ok(resolved) => resolved,
        Err(_) => Err(RedisError::from((
            redis::ErrorKind::Io,
            "asking Redis Sentinel for the primary timed out",
        ))),
    }
}
