//! The trait bounds of an idempotent call, each with a diagnostic that says
//! what to write instead. The `#[idempotent]` macro points them at the
//! user's return type or argument, so a missing bound reads as advice, not as
//! a failure inside generated code. Hidden from the docs and sealed: they
//! name what the attribute requires, not something to implement.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::Error;

/// The result type of an idempotent call: `Result<T, E>` with a storable `T`
/// and an `E` that can carry an [`Error`].
#[diagnostic::on_unimplemented(
    message = "`#[idempotent]` functions must return `Result<T, E>`, not `{Self}`",
    label = "this must be `Result<T, E>` with `T: Serialize + DeserializeOwned` and `E: From<idempotent_core::Error>`",
    note = "the `Ok` value is stored and replayed to retries; an `Err` releases the key so a retry runs again"
)]
pub trait IdempotentResult: Sized + sealed::Sealed {
    /// The success type, stored and replayed.
    type Ok: StorableOutput;
    /// The error type.
    type Err: FromIdempotencyError;

    /// Splits into the standard `Result`.
    fn into_result(self) -> Result<Self::Ok, Self::Err>;
    /// Builds from the standard `Result`.
    fn from_result(result: Result<Self::Ok, Self::Err>) -> Self;
}

/// Only `Result` is an idempotent result; the other bounds are sealed by
/// their blanket impls, which no other impl may overlap.
mod sealed {
    pub trait Sealed {}

    impl<T, E> Sealed for Result<T, E> {}
}

impl<T: StorableOutput, E: FromIdempotencyError> IdempotentResult for Result<T, E> {
    type Ok = T;
    type Err = E;

    fn into_result(self) -> Result<T, E> {
        self
    }

    fn from_result(result: Result<T, E>) -> Self {
        result
    }
}

/// A success value that can be stored and replayed.
#[diagnostic::on_unimplemented(
    message = "the `Ok` type `{Self}` of an `#[idempotent]` function must implement `Serialize` and `DeserializeOwned`",
    label = "`{Self}` is stored and replayed to retries, so it must be serializable and deserializable",
    note = "add `#[derive(serde::Serialize, serde::Deserialize)]` to `{Self}`, or return a type that has them"
)]
pub trait StorableOutput: Serialize + DeserializeOwned {}

#[diagnostic::do_not_recommend]
impl<T: Serialize + DeserializeOwned> StorableOutput for T {}

/// An error type that idempotency failures convert into.
#[diagnostic::on_unimplemented(
    message = "the error type `{Self}` of an `#[idempotent]` function must implement `From<idempotent_core::Error>`",
    label = "`{Self}` must be able to carry an `idempotent_core::Error` (in progress, payload mismatch, store failure)",
    note = "use an error enum of your own with a variant `#[error(transparent)] Idempotency(#[from] idempotent_core::Error)`, or return `idempotent_core::Error` itself",
    note = "a type of yours can get that variant (or a `From<idempotent_core::Error>` impl); `String`, `&str` and other crates' types cannot, so wrap them in such an enum"
)]
pub trait FromIdempotencyError: From<Error> {}

#[diagnostic::do_not_recommend]
impl<E: From<Error>> FromIdempotencyError for E {}

/// An error type that can be stored and replayed, as `cache_err` requires.
#[diagnostic::on_unimplemented(
    message = "`cache_err` stores the error type `{Self}`, so it must implement `Serialize` and `DeserializeOwned`",
    label = "`{Self}` is stored and replayed to retries because of `cache_err`",
    note = "derive `serde::Serialize` and `serde::Deserialize` for `{Self}`, or remove `cache_err` so errors release the key instead"
)]
pub trait StorableError: Serialize + DeserializeOwned {}

#[diagnostic::do_not_recommend]
impl<E: Serialize + DeserializeOwned> StorableError for E {}
