#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod body;
mod buffer;
mod config;
mod detach;
mod fingerprint;
mod flow;
mod key;
pub mod key_space;
mod layer;
mod outcome;
mod policy;
mod problem;
mod service;
mod stored;

pub use crate::body::MaybeBuffered;
pub use crate::layer::IdempotencyLayer;
pub use crate::policy::{default_store_policy, default_stream_policy};
pub use crate::service::IdempotencyService;

/// `Idempotency-Key`: the request header of the IETF draft, read by default.
pub const IDEMPOTENCY_KEY: http::HeaderName = config::DEFAULT_HEADER;

/// `Idempotent-Replayed`: set to `true` on replayed responses (as Stripe
/// does), absent on the response of the request that ran.
pub const IDEMPOTENT_REPLAYED: http::HeaderName = stored::REPLAYED;

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
