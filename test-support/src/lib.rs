//! Private servers for the workspace's tests.
//!
//! Tests never touch the machine's own Redis on port 6379: each test (or test binary) starts its
//! own `redis-server` on a free loopback port, with a temporary working directory, and the
//! process is killed (SIGKILL) and the directory removed when the handle is dropped. Fault tests
//! can [`kill`](RedisServer::kill), [`restart`](RedisServer::restart),
//! [`pause`](RedisServer::pause) and [`resume`](RedisServer::resume) a server,
//! [`RedisCluster`] starts a three-master Redis Cluster (with or without a replica per master),
//! [`RedisReplicaSet`] a primary with replicas and [`RedisSentinel`] sentinels to fail it over.
//!
//! A missing `redis-server` (or `redis-cli`, for the cluster) is a panic that says how to install
//! it, never a silent skip.
//!
//! ```
//! use idempotent_test_support::RedisServer;
//!
//! let server = RedisServer::start();
//! let _: () = server.query(redis::cmd("SET").arg("greeting").arg("hello"));
//! let value: String = server.query(redis::cmd("GET").arg("greeting"));
//! assert_eq!(value, "hello");
//! assert_eq!(server.command_count("set"), 1);
//! ```
//!
//! Contents:
//! - [`RedisServer`] and [`RedisOptions`] (`redis_server.rs`): one private server.
//! - [`RedisCluster`] (`redis_cluster.rs`): three private servers joined into a cluster, or
//!   three masters with a replica each.
//! - [`RedisReplicaSet`] (`redis_replica_set.rs`): a primary and its replicas, promoted by hand.
//! - [`RedisSentinel`] (`redis_sentinel.rs`): sentinels that watch a replica set and fail it
//!   over.
//! - `valkey.rs`: [`RedisServer::start_valkey`] (and [`RedisCluster::start_valkey`]), the same
//!   private servers run by `valkey-server` (found by [`valkey_server`]), which has `SET .. IFEQ`
//!   and `DELIFEQ`.
//! - [`postgres`]: a private PostgreSQL server (`initdb` + `postgres`) in a temporary directory.
//! - [`shared`]: one server for the tests of a binary that run at the same time.
//! - `binaries.rs`: finding `redis-server` and `redis-cli` on `PATH`.
//! - `ports.rs`: free loopback ports.
//! - `process.rs`: spawning, signalling and reaping the server process.
//! - `readiness.rs`: waiting until a freshly spawned server answers.
//! - `connection.rs`: plain synchronous connections with timeouts.
//! - `info.rs`: parsing `INFO` replies.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod binaries;
mod connection;
mod info;
mod ports;
pub mod postgres;
mod process;
mod readiness;
mod redis_cluster;
mod redis_replica_set;
mod redis_sentinel;
mod redis_server;
mod shared;
mod valkey;

pub use redis_cluster::RedisCluster;
pub use redis_replica_set::RedisReplicaSet;
pub use redis_sentinel::{RedisSentinel, MASTER_NAME};
pub use redis_server::{RedisOptions, RedisServer};
pub use shared::shared;
pub use valkey::{valkey_server, VALKEY_SERVER_ENV};
