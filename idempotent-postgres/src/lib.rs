#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![forbid(unsafe_code)]
// The docs link `PostgresBackend` throughout; built without it (sqlx only),
// those links have nothing to point at. docs.rs builds every feature.
#![cfg_attr(
    not(feature = "tokio-postgres"),
    allow(rustdoc::broken_intra_doc_links)
)]

#[cfg(feature = "tokio-postgres")]
mod backend;
mod builder;
mod claim;
mod driver;
mod error;
mod literal;
mod migrate;
mod names;
mod operations;
mod prepared;
mod purge;
mod sql;
#[cfg(feature = "sqlx")]
mod sqlx_backend;
mod text_value;
mod transactional;

#[cfg(feature = "tokio-postgres")]
pub use crate::backend::{PostgresBackend, DEFAULT_POOL_SIZE};
pub use crate::driver::{DEFAULT_MAX_OUTPUT_BYTES, DEFAULT_OPERATION_TIMEOUT};
pub use crate::names::{DEFAULT_SCHEMA, DEFAULT_TABLE};
pub use crate::purge::Reaper;
#[cfg(feature = "sqlx")]
pub use crate::sqlx_backend::SqlxBackend;
pub use crate::transactional::Transactional;

/// The connection pool [`PostgresBackend`] uses, for [`PostgresBackend::from_pool`].
#[cfg(feature = "tokio-postgres")]
pub use deadpool_postgres;
/// The driver [`SqlxBackend`] runs on, for its pool and the transactional
/// mode's connection.
#[cfg(feature = "sqlx")]
pub use sqlx;
/// The driver of [`PostgresBackend`], for the transactional mode's
/// [`Transaction`](tokio_postgres::Transaction).
#[cfg(feature = "tokio-postgres")]
pub use tokio_postgres;

#[cfg(not(any(feature = "tokio-postgres", feature = "sqlx")))]
compile_error!(
    "idempotent-postgres needs a driver: enable the `tokio-postgres` or the `sqlx` feature"
);
