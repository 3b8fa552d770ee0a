//! Postgres store for `idempotent`: idempotency records in a table next to
//! your data, and calls whose database writes commit with their record.
//!
//! ```no_run
//! use idempotent_core::{idempotent, set_default_backend, Error};
//! use idempotent_postgres::PostgresBackend;
//!
//! #[idempotent(key = order_id, ttl = "24h", wait = "10s")]
//! async fn charge(order_id: String, amount: u64) -> Result<String, Error> {
//!     Ok(format!("charged {amount} for {order_id}"))
//! }
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = PostgresBackend::connect("postgres://app@127.0.0.1/app").await?;
//! store.migrate().await?;
//! // One line at start-up swaps the store; no annotated function changes.
//! set_default_backend(store)?;
//! charge("order-7".into(), 1999).await?;
//! # Ok(()) }
//! ```
//!
//! Each store operation is one SQL statement on one row, timed by the
//! database's clock; complete, release and renew are fenced on the claim's
//! token. [`PostgresBackend::transactional`] runs a body in a transaction
//! that also stores its result, so its writes and the record commit
//! together: exactly once, even across crashes.
//!
//! Two stores, one per driver, on the same table and statements:
//! [`PostgresBackend`] on `tokio-postgres` pooled by `deadpool-postgres`
//! (feature `tokio-postgres`, the default), and `SqlxBackend` on the
//! application's `sqlx::PgPool` (feature `sqlx`). Each re-exports its
//! driver, so versions always match this crate's. Behind PgBouncer in
//! transaction mode, turn off prepared statements with
//! `with_prepared_statements(false)`.
//!
//! The crate's README (on its crates.io page) has the whole story: both
//! drivers measured side by side, the table, every statement, the
//! transactional mode and PgBouncer.

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
mod claim;
mod driver;
mod error;
mod literal;
mod migrate;
mod names;
mod operations;
mod purge;
mod sql;
#[cfg(feature = "sqlx")]
mod sqlx_backend;
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
