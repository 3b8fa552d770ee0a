//! The layer's key space as a type: a layer becomes a tower `Layer` only once
//! its builder chose between per-client keys and one shared key space, so
//! forgetting the choice is a compile error, not a leak between clients.

/// The state of an [`IdempotencyLayer`](crate::IdempotencyLayer) whose key
/// space is not chosen yet: call
/// [`client_id`](crate::IdempotencyLayer::client_id) or
/// [`shared_key_space`](crate::IdempotencyLayer::shared_key_space).
#[derive(Clone, Copy, Debug)]
pub struct Unchosen;

/// The state of an [`IdempotencyLayer`](crate::IdempotencyLayer) whose key
/// space is chosen: it wraps services.
#[derive(Clone, Copy, Debug)]
pub struct Chosen;

/// Implemented by the states in which the layer may wrap a service.
#[diagnostic::on_unimplemented(
    message = "the idempotency layer's key space is not chosen",
    label = "this layer needs `.client_id(..)` or `.shared_key_space()`",
    note = "call `.client_id(|parts| ..)` so one client can never replay another's response, or \
            `.shared_key_space()` if all clients may share keys"
)]
pub trait KeySpace: sealed::Sealed {}

impl KeySpace for Chosen {}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Chosen {}
}
