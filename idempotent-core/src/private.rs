//! Support for the code `#[idempotent]` expands into. Not public API: names
//! here may change in any release.

use serde::Serialize;
use sha2::Sha256;

pub use core::time::Duration;

use crate::{canonical, CodecError};

/// A value that can be hashed canonically, behind a trait object so that the
/// macro can pass arguments of any type through one slice.
pub trait HashInto {
    /// Feeds the value's canonical encoding into `hasher`.
    fn hash_into(&self, hasher: &mut Sha256) -> Result<(), CodecError>;
}

impl<T: Serialize + ?Sized> HashInto for T {
    fn hash_into(&self, hasher: &mut Sha256) -> Result<(), CodecError> {
        canonical::write(self, hasher)
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

/// The `key = <expr>` value.
#[diagnostic::on_unimplemented(
    message = "the idempotency key `{Self}` must implement `Serialize`",
    label = "`key = ...` is hashed into the stored key, so it must implement `serde::Serialize`",
    note = "use a field or value that is `Serialize` (a string, a number, an id newtype deriving `Serialize`)"
)]
pub trait IdempotencyKey: Serialize {}

#[diagnostic::do_not_recommend]
impl<T: Serialize + ?Sized> IdempotencyKey for T {}

/// Checks and erases one hashed argument.
pub fn arg<T: HashedArgument>(value: &T) -> &dyn HashInto {
    value
}

/// Checks and erases the key expression's value.
pub fn key<T: IdempotencyKey>(value: &T) -> &dyn HashInto {
    value
}
