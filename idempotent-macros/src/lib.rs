#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod attr;
mod errors;
mod expand;
mod runtime_crate;
mod signature;

use proc_macro::TokenStream;

/// Makes an `async fn` idempotent: the first call with a key runs the body,
/// every later call with that key replays the stored result.
///
/// Options: `key = <expr>`, `skip(a, b)`, `scope = "name"`, `ttl = "24h"`,
/// `lease = "30s"`, `wait = "10s"`, `require_key`, `cache_err`, `backend = <expr>`,
/// `crate = "path"`, each with its default in the options table of the
/// `idempotency` crate docs. The runtime is named by the crate the caller
/// depends on (`idempotent-core` or the `idempotency` facade, found in its
/// `Cargo.toml`), or by `crate = "path"`.
///
/// # The default scope
///
/// Records are stored under `{scope}:{digest}`. Without `scope = "..."`, the
/// scope is the package's name, a `/` (then `bin/` in a binary or an
/// example), and the function's exact path as `core::any::type_name` spells
/// it: the crate and modules, the `Self` type of a method or associated
/// function (`app/app::shop::Orders::cancel`,
/// `app/<app::shop::Usd as app::shop::Cancel>::cancel`), and the type
/// arguments of a generic function or impl
/// (`app/app::shop::price<app::shop::Usd>`). So same-named functions, methods
/// of different types, instantiations of one generic function and a binary
/// and the library of its package never share records. Lifetimes are not
/// part of it.
///
/// Two definitions whose paths print the same in one process (same-named
/// functions in two blocks or closures of one function) do not share a scope
/// either: the first one called keeps it, and the other's calls fail with
/// `Error::InvalidConfig`, asking for a `scope = "..."`. Types declared
/// inside function bodies print as that function's path and their name, so
/// two such types named alike are one type argument to the scope.
///
/// The default scope changes when the package, the crate, a module, the
/// `Self` type or the function is renamed or moved, or a type argument
/// changes (an `impl Trait` argument's type is one); records under the old
/// scope are then not found. Its text comes from the compiler and is not
/// promised across Rust versions (the workspace pins what it relies on in a
/// test). `scope = "..."` pins the scope against all of this: use it for
/// records that must survive refactors and upgrades.
///
/// # Arguments
///
/// Every argument not in `skip(...)` is hashed into the fingerprint, so it
/// must be `Serialize`, bound to a plain name, and not a `&mut` reference
/// (its value may change while the body runs). The receiver is never hashed.
/// On a `&mut self` or `self` method, `backend = &self.store` clones the
/// store out of `self` before the body runs (network stores are cheap
/// handles; wrap another store in an `Arc`), since the body may move or
/// mutate `self` while the store is in use.
#[proc_macro_attribute]
pub fn idempotent(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::idempotent(args.into(), item.into()).into()
}
