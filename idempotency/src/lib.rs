#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![forbid(unsafe_code)]

#[doc(no_inline)]
pub use idempotent_core::*;

/// The Redis store (`idempotent-redis`).
#[cfg(feature = "redis")]
pub mod redis {
    #[doc(inline)]
    pub use idempotent_redis::*;
}

/// The Postgres stores and their transactional mode (`idempotent-postgres`):
/// `PostgresBackend` with the `postgres` feature, `SqlxBackend` with `sqlx`.
#[cfg(any(feature = "postgres", feature = "sqlx"))]
pub mod postgres {
    #[doc(inline)]
    pub use idempotent_postgres::*;
}

/// The tower/axum layer for the `Idempotency-Key` header (`idempotent-http`).
#[cfg(feature = "http")]
pub mod http {
    #[doc(inline)]
    pub use idempotent_http::*;
}
