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
//! Behind the `cluster` feature, on by default: without it
//! (`default-features = false`) the store talks to a single server and the
//! `redis` crate's cluster client is not compiled.
//!
#![cfg_attr(feature = "cluster", doc = include_str!("cluster.md"))]
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod backend;
mod connection;
mod error;
mod local_cache;
mod operations;
mod record;
mod replica_acks;
mod scripts;
#[cfg(feature = "sentinel")]
mod sentinel;

pub use crate::backend::{RedisBackend, DEFAULT_KEY_PREFIX, DEFAULT_MAX_OUTPUT_BYTES};
