//! Support for the code `#[idempotent]` expands into. Not public API: names
//! here may change in any release.

use serde::Serialize;

pub use core::time::Duration;

pub use crate::default_scope::{ScopeConflict, ScopeSite};
pub use crate::hasher::Hasher;
pub use crate::stored_key::KeyBytes;

use crate::{canonical, CodecError};

/// A value that can be hashed canonically, behind a trait object so that the
/// macro can pass arguments of any type through one slice.
pub trait HashInto {
    /// Feeds the value's canonical encoding into `hasher`.
    fn hash_into(&self, hasher: &mut Hasher) -> Result<(), CodecError>;

    /// Feeds the value's canonical encoding into a local key.
    fn key_into(&self, key: &mut KeyBytes) -> Result<(), CodecError>;

    /// Appends the value's canonical encoding to `bytes`.
    fn encode_into(&self, bytes: &mut Vec<u8>) -> Result<(), CodecError>;
}

impl<T: Serialize + ?Sized> HashInto for T {
    fn hash_into(&self, hasher: &mut Hasher) -> Result<(), CodecError> {
        canonical::write(self, hasher)
    }

    fn key_into(&self, key: &mut KeyBytes) -> Result<(), CodecError> {
        canonical::write(self, key)
    }

    fn encode_into(&self, bytes: &mut Vec<u8>) -> Result<(), CodecError> {
        canonical::write(self, bytes)
    }
}

/// An argument hashed into the fingerprint.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be part of the idempotency fingerprint: it does not implement `Serialize`",
    label = "this argument is hashed into the fingerprint, so it must implement `serde::Serialize`",
    note = "leave handles, clients and connections out of the fingerprint with `#[idempotent(skip(<argument name>))]`, or derive `serde::Serialize` for `{Self}`"
)]
pub trait HashedArgument: Serialize {}

#[diagnostic::do_not_recommend]
impl<T: Serialize + ?Sized> HashedArgument for T {}

/// An argument hashed into the fingerprint whose type looks like a wrapper of
/// one `Inner` value (`Json<Order>`), so the advice can name `Inner`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be part of the idempotency fingerprint: it does not implement `Serialize`",
    label = "this argument is hashed into the fingerprint, so it must implement `serde::Serialize`",
    note = "if `{Self}` only wraps the request (an extractor such as `Json<T>` or `Form<T>`), hash the `{Inner}` inside: take it out before the call (`.0`, `.into_inner()`) and pass the `{Inner}` as the argument",
    note = "or leave the argument out of the fingerprint with `#[idempotent(skip(<argument name>))]` and key the call on its contents with `key = ...`"
)]
pub trait HashedWrapper<Inner: ?Sized>: Serialize {}

#[diagnostic::do_not_recommend]
impl<T: Serialize + ?Sized, Inner: ?Sized> HashedWrapper<Inner> for T {}

/// The `key = <expr>` value.
#[diagnostic::on_unimplemented(
    message = "the idempotency key `{Self}` must implement `Serialize`",
    label = "`key = ...` is hashed into the stored key, so it must implement `serde::Serialize`",
    note = "use a field or value that is `Serialize` (a string, a number, an id newtype deriving `Serialize`)"
)]
pub trait IdempotencyKey: Serialize {}

#[diagnostic::do_not_recommend]
impl<T: Serialize + ?Sized> IdempotencyKey for T {}

/// A store borrowed from `self` in a method that may mutate or move `self`.
#[diagnostic::on_unimplemented(
    message = "the store `{Self}` must be `Clone`: it is borrowed from `self` in a method that takes `&mut self` or `self`",
    label = "the body may change or move `self` while the store is in use, so the store is cloned out of `self` before the call",
    note = "network stores such as `RedisBackend` are cheap-clone handles; keep any other store in an `Arc` (`Arc<MemoryBackend>`, `Arc<dyn Backend>`), or take `&self`"
)]
pub trait DetachedStore: Clone {}

#[diagnostic::do_not_recommend]
impl<B: Clone> DetachedStore for B {}

/// Clones the store of `backend = &self.store` out of `self` before the body
/// of a `&mut self` or `self` method runs: the body may mutate or move
/// `self`, so a borrow of it cannot live through the call. The `Backend`
/// bound is checked where the macro coerces the result, so a value that is
/// not a store gets one message.
pub fn detach<B: DetachedStore>(store: &B) -> B {
    store.clone()
}

/// Checks and erases one hashed argument.
pub fn arg<T: HashedArgument>(value: &T) -> &dyn HashInto {
    value
}

/// Checks and erases one hashed argument of a wrapper-like type `T`, which
/// the macro believes wraps an `Inner`: only the diagnostic differs from
/// [`arg`].
pub fn wrapped_arg<Inner: ?Sized, T: HashedWrapper<Inner>>(value: &T) -> &dyn HashInto {
    value
}

/// Checks and erases the key expression's value.
pub fn key<T: IdempotencyKey>(value: &T) -> &dyn HashInto {
    value
}
