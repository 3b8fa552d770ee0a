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
//! Each store operation is one Lua script on one key: atomic, one round
//! trip, and ready for Redis Cluster. Leases and expiry follow the server's
//! clock; every key written expires.
//!
//! # Redis Cluster
//!
//! [`RedisBackend::connect_cluster`] takes the URLs of any cluster nodes and
//! returns the same `RedisBackend`. Each record is one key, so each operation
//! runs on the master owning its slot; redirections and brief failovers are
//! retried within the response timeout. While a master is down, calls whose
//! keys it owns fail closed with `Error::Backend` (the body does not run) and
//! the others go on. Braces in a scope act as a hash tag (`"{orders}"` keeps a
//! scope's records on one node).

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod backend;
mod connection;
mod scripts;
mod token;

pub use crate::backend::{RedisBackend, DEFAULT_KEY_PREFIX, DEFAULT_MAX_OUTPUT_BYTES};
