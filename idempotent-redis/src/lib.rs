//! Redis store for `idempotent`: share idempotency records between
//! processes and machines.
//!
//! ```no_run
//! use idempotent_core::{idempotent, set_default_backend, Error};
//! use idempotent_redis::RedisBackend;
//!
//! #[idempotent(key = order_id, ttl = "24h", wait = "10s")]
//! async fn charge(order_id: String, amount: u64) -> Result<String, Error> {
//!     Ok(format!("charged {amount} for {order_id}"))
//! }
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // One line at start-up swaps the store; no annotated function changes.
//! set_default_backend(RedisBackend::connect("redis://127.0.0.1:6379").await?)?;
//! charge("order-7".into(), 1999).await?;
//! # Ok(()) }
//! ```
//!
//! Each store operation is one atomic command on one key: one round trip,
//! and ready for Redis Cluster. A claim is a plain `SET .. NX GET`, so a
//! replay runs no Lua; completion, release and renewal are compare-and-set
//! Lua scripts. Leases and expiry follow the server's clock; every key
//! written expires. Needs Redis 7.0 or newer, or Valkey.
//!
//! [`RedisBackend::with_local_cache`] adds a bounded in-process cache of
//! completed records, so repeated replays in one process cost no round trip.
//!
//! # Memory: run Redis with `maxmemory-policy noeviction`
//!
//! Every key this store writes has an expiry, so both `allkeys-*` and
//! `volatile-*` policies may evict its keys when Redis is full (`volatile-ttl`
//! picks claims first: they expire soonest). An evicted claim lets a
//! duplicate acquire the key and run the body while the first call still
//! runs (the first's result is then fenced off); an evicted result lets a
//! retry run the body again. With `noeviction` a full Redis refuses writes
//! instead, and calls fail closed with
//! [`Error::Backend`](idempotent_core::Error). [`RedisBackend::connect`],
//! [`RedisBackend::from_client`] and the cluster constructors that connect
//! read `maxmemory-policy` (on every master of a cluster) and log a warning
//! with the `policy` (and the `node`) unless it is `noeviction`; where
//! `CONFIG` is disabled or renamed, as on managed services, they log at debug
//! level and go on.
//!
//! # Redis Cluster
//!
//! [`RedisBackend::connect_cluster`] connects to a Redis Cluster and gives
//! the same `RedisBackend`: annotated functions do not change.
//!
//! ```no_run
//! # async fn start() -> Result<(), Box<dyn std::error::Error>> {
//! use idempotent_redis::RedisBackend;
//!
//! // Any reachable node is enough; the others are discovered.
//! let store = RedisBackend::connect_cluster(&["redis://10.0.0.1:6379", "redis://10.0.0.2:6379"])
//!     .await?;
//! idempotent_core::set_default_backend(store)?;
//! # Ok(()) }
//! ```
//!
//! - Every operation is one command on one key, so it runs on the master that
//!   owns the key's hash slot, and records spread over all the masters.
//! - Scripts are cached per node. A node that has not cached one (new,
//!   restarted, promoted from replica, or flushed) answers `EVALSHA` with
//!   `NOSCRIPT`, and the call is sent again as `EVAL` with the source, to
//!   that node only: one more round trip, once per script and node.
//! - Redirections during a resharding or a failover (`MOVED`, `ASK`) are
//!   followed, and `TRYAGAIN`, `CLUSTERDOWN` or a dropped connection are
//!   retried with a short backoff, within a bound of 5 s per command. Past
//!   it, as when the master owning a key is dead or hung, the call fails
//!   closed with [`Error::Backend`](idempotent_core::Error) and its body does
//!   not run; calls whose keys live on other masters keep working (if the
//!   cluster serves partial coverage: `cluster-require-full-coverage no`),
//!   and the same backend uses the master again once it is back.
//! - After a command that timed out, the backend opens a fresh cluster
//!   connection in the background (at most once per 5 s) and uses it for
//!   later calls. The `redis` crate's cluster connection can wedge for good
//!   when a master dies while commands are in flight (every later command
//!   times out); this replaces a wedged connection, so calls work again
//!   after one or two command bounds (5 to 10 s).
//! - Braces in a scope are a cluster hash tag: a record key is the key
//!   prefix, the scope, `:` and a hex digest, and Redis hashes only the part
//!   between the first `{` and the next `}` when there is one. A scope such as
//!   `"{tenant-7}"` keeps all its records in one slot, on one master; a
//!   scope without braces spreads them. The key prefix acts the same way.
//! - A record lives on one master: what that master loses (a restart without
//!   persistence, a failover to a replica that had not received the last
//!   writes) is forgotten, and a retry of a forgotten call runs its body
//!   again. Give masters replicas and persistence as for any data you keep.
//!
//! For TLS, credentials or other client settings, start from
//! [`RedisBackend::cluster_client_builder`] and finish with
//! [`RedisBackend::from_cluster_client`].

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod backend;
mod connection;
mod error;
mod local_cache;
mod operations;
mod record;
mod scripts;

pub use crate::backend::{RedisBackend, DEFAULT_KEY_PREFIX, DEFAULT_MAX_OUTPUT_BYTES};
