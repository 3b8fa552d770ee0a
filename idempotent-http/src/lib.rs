//! The IETF `Idempotency-Key` header for tower and axum: a retried POST gets
//! the stored response instead of charging the card twice.
//!
//! ```no_run
//! use axum::{routing::post, Router};
//! use idempotent_core::MemoryBackend;
//! use idempotent_http::IdempotencyLayer;
//!
//! # async fn serve() -> std::io::Result<()> {
//! let app = Router::new()
//!     .route("/payments", post(|| async { "charged once" }))
//!     .layer(
//!         IdempotencyLayer::new(MemoryBackend::new())
//!             .required(true)
//!             // One trusted caller here; behind authentication, use `client_id`.
//!             .shared_key_space(),
//!     );
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app).await
//! # }
//! ```
//!
//! ```text
//! POST /payments  Idempotency-Key: "order-7"  -> 200 charged once
//! POST /payments  Idempotency-Key: "order-7"  -> 200 charged once   Idempotent-Replayed: true
//! POST /payments  (no key)                    -> 400 application/problem+json
//! ```
//!
//! [`IdempotencyLayer`] documents every answer (400, 409, 413, 422, 503 and
//! the replay); the README compares it with the `#[idempotent]` attribute.
//!
//! It is a plain tower layer, so it also wraps services outside axum. The
//! inner service receives the request body as [`MaybeBuffered`] (bodies of
//! keyed requests are buffered to be fingerprinted):
//!
//! ```
//! use std::convert::Infallible;
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::Full;
//! use idempotent_core::MemoryBackend;
//! use idempotent_http::{IdempotencyLayer, MaybeBuffered};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let service = ServiceBuilder::new()
//!     .layer(IdempotencyLayer::new(MemoryBackend::new()).shared_key_space())
//!     .service(service_fn(|_: Request<MaybeBuffered<Full<Bytes>>>| async {
//!         Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("created"))))
//!     }));
//!
//! let request = || {
//!     Request::post("/things")
//!         .header("idempotency-key", "\"k-1\"")
//!         .body(Full::new(Bytes::from("{}")))
//!         .unwrap()
//! };
//! let first = service.clone().oneshot(request()).await.unwrap();
//! assert!(first.headers().get("idempotent-replayed").is_none());
//! let retry = service.oneshot(request()).await.unwrap();
//! assert_eq!(retry.headers()["idempotent-replayed"], "true");
//! # }
//! ```
//!
//! Contents:
//! - `layer.rs`: [`IdempotencyLayer`], the settings and the tower `Layer`.
//! - `service.rs`: [`IdempotencyService`], the tower `Service`.
//! - `flow.rs`: one request through the layer, around the runtime call.
//! - `key.rs`: reading and validating the key header.
//! - `key_space.rs`: the builder's choice of per-client or shared keys.
//! - `buffer.rs`: reading the request body up to the limit.
//! - `fingerprint.rs`: what makes two requests the same request.
//! - `stored.rs`: the stored form of a response, and its replay.
//! - `policy.rs`: [`default_store_policy`], which statuses are stored, and
//!   [`default_stream_policy`], which responses stream through unstored.
//! - `outcome.rs`: runtime errors and unstored responses.
//! - `problem.rs`: RFC 9457 problem responses.
//! - `body.rs`: [`MaybeBuffered`], the body type on both sides.
//! - `config.rs`: the settings and their defaults.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod body;
mod buffer;
mod config;
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
