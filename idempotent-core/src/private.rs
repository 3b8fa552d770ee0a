//! Support for the code `#[idempotent]` expands into. Not public API: names
//! here may change in any release.

use std::borrow::Cow;

use serde::Serialize;

pub use core::time::Duration;

pub use crate::hasher::Hasher;
use crate::{canonical, CodecError};

/// A value that can be hashed canonically, behind a trait object so that the
/// macro can pass arguments of any type through one slice.
pub trait HashInto {
    /// Feeds the value's canonical encoding into `hasher`.
    fn hash_into(&self, hasher: &mut Hasher) -> Result<(), CodecError>;
}

impl<T: Serialize + ?Sized> HashInto for T {
    fn hash_into(&self, hasher: &mut Hasher) -> Result<(), CodecError> {
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

/// The default scope of an `#[idempotent]` function, from the type name of a
/// closure written in its body (`type_name_of_val(&|| ())`).
///
/// That name is the function's full path as the compiler sees it, followed
/// by `::{{closure}}` for the async body and for the closure itself:
///
/// | function | scope |
/// | --- | --- |
/// | `fn cancel` in `shop` | `app::shop::cancel` |
/// | a method or associated fn of `Orders` | `app::shop::Orders::cancel` |
/// | a method of `impl<C> Subs<C>` | `app::shop::Subs<app::shop::Usd>::cancel` |
/// | `fn price<C>` called as `price::<Usd>` | `app::shop::price<app::shop::Usd>` |
/// | `impl Cancel for Usd` | `<app::shop::Usd as app::shop::Cancel>::cancel` |
///
/// Lifetimes are erased, so they never split a function's records. The
/// scope changes when the crate, a module, the `Self` type or the function is
/// renamed or moved, and when a type argument changes (an `impl Trait`
/// argument is a type argument too); `scope = "..."` pins it instead.
///
/// Stripping the trailing closures borrows the static name, so the common
/// case allocates nothing. A brace that remains (a function declared inside
/// another function's body has `{{closure}}` in the middle of its path) is
/// replaced by a parenthesis: in a stored key, `{...}` would be a Redis
/// Cluster hash tag and send every such function's records to one slot.
pub fn function_scope(type_name: &'static str) -> Cow<'static, str> {
    let mut path = type_name;
    while let Some(outer) = path.strip_suffix("::{{closure}}") {
        path = outer;
    }
    if path.contains(['{', '}']) {
        let unbraced = path
            .chars()
            .map(|c| match c {
                '{' => '(',
                '}' => ')',
                c => c,
            })
            .collect();
        Cow::Owned(unbraced)
    } else {
        Cow::Borrowed(path)
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::function_scope;

    #[test]
    fn trailing_closures_are_stripped_without_allocating() {
        let scope = function_scope("app::shop::Orders::cancel::{{closure}}::{{closure}}");
        assert!(matches!(scope, Cow::Borrowed("app::shop::Orders::cancel")));
        assert!(matches!(
            function_scope("<app::Usd as app::Cancel>::cancel::{{closure}}"),
            Cow::Borrowed("<app::Usd as app::Cancel>::cancel")
        ));
        assert!(matches!(
            function_scope("app::cancel"),
            Cow::Borrowed("app::cancel")
        ));
    }

    #[test]
    fn inner_braces_never_form_a_hash_tag() {
        let scope = function_scope("app::outer::{{closure}}::inner::{{closure}}::{{closure}}");
        assert_eq!(scope, "app::outer::((closure))::inner");
        assert!(matches!(scope, Cow::Owned(_)));
    }

    /// What the macro relies on, measured inside an `async fn` on this
    /// toolchain; `tests/function_identity.rs` pins the expansion's scopes.
    #[test]
    fn an_async_fn_body_names_its_function() {
        async fn cancel() -> &'static str {
            core::any::type_name_of_val(&|| ())
        }
        let name = block_on(cancel());
        assert_eq!(
            function_scope(name),
            "idempotent_core::private::tests::an_async_fn_body_names_its_function::cancel"
        );
    }

    /// Polls a future that never waits to its end, without a runtime.
    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        let mut future = std::pin::pin!(future);
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        loop {
            if let std::task::Poll::Ready(output) = future.as_mut().poll(&mut context) {
                return output;
            }
        }
    }
}
