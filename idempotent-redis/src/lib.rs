#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod backend;
mod capabilities;
mod connection;
mod error;
mod held_claims;
mod local_cache;
mod operations;
mod plain_commands;
mod record;
mod replica_acks;
mod scripts;
#[cfg(feature = "sentinel")]
mod sentinel;

pub use crate::backend::{RedisBackend, DEFAULT_KEY_PREFIX, DEFAULT_MAX_OUTPUT_BYTES};
