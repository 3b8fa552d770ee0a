#![doc = include_str!("../README.md")]
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
